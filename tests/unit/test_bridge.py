"""The thread bridge on its own, without Durable Functions: how a run's durable calls become steps.

The user's function runs in the session's worker thread; the test plays the orchestrator generator by calling
``Session.advance`` (answering each step) the way ``durable_agents._runner.episode`` does. Read it as the protocol:
calls made while the worker's event loop still has work to do land in one step; the answers resolve them together.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import warnings
from types import SimpleNamespace

import pytest

from durable_agents import NonDeterminismError
from durable_agents._run_settings import current_session
from durable_agents._runner.bridge import LoggedStep, Session, live_worker_count
from durable_agents._runner.episode import _replay_fresh
from durable_agents._runner.steps import (
    ActivityCall,
    ApprovalItem,
    ApprovalsCall,
    ApprovalsStep,
    CallOutcome,
    CallsStep,
    Progress,
    RunFailed,
    RunFinished,
    StepRequest,
    TimerCall,
)

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LATER = START + dt.timedelta(seconds=1)
RUN_INPUT = {"agent": "demo", "input": "hi", "settings": {}}
PROGRESS = Progress(agent="demo", current_agent="demo")


def _session(user_function) -> Session:
    return Session("run-1", RUN_INPUT, user_function, agent=None)


def test_two_concurrent_calls_become_one_step_and_one_answer_resolves_both():
    async def run() -> list:
        session = current_session()
        a, b = await asyncio.gather(session.call(ActivityCall("lookup", {"id": 1})),
                                    session.call(ActivityCall("lookup", {"id": 2})))
        return [a.value, b.value]

    def user_function(context):  # what Runner.run_sync does: run a coroutine on the thread's event loop
        return asyncio.get_event_loop().run_until_complete(run())

    session = _session(user_function)
    first = session.advance(None, START)  # starts the worker; it runs until it needs durable work
    # Each call gets the session's next key (the same on every replay); nothing else waits, so the step waits for all.
    assert first == StepRequest(CallsStep((ActivityCall("lookup", {"id": 1}, key=0),
                                           ActivityCall("lookup", {"id": 2}, key=1)), PROGRESS))
    done = session.advance((CallOutcome(ok=True, value="one"), CallOutcome(ok=True, value="two")), LATER)
    assert done == RunFinished(["one", "two"])
    assert [logged.outcome for logged in session.log] == [(CallOutcome(True, "one"), CallOutcome(True, "two"))]
    session.abandon(join_timeout=10)
    assert not session.thread_alive


def test_a_call_made_a_few_loop_iterations_later_still_joins_the_step():
    async def late(session: Session) -> CallOutcome:
        for _ in range(5):
            await asyncio.sleep(0)  # other work still runnable: the step is not handed over yet
        return await session.call(TimerCall(delay_ms=1000))

    async def run() -> int:
        session = current_session()
        outcomes = await asyncio.gather(session.call(ActivityCall("a", None)), late(session))
        return len(outcomes)

    session = _session(lambda context: asyncio.get_event_loop().run_until_complete(run()))
    first = session.advance(None, START)
    assert isinstance(first, StepRequest)
    assert first.step.calls == (ActivityCall("a", None, key=0), TimerCall(delay_ms=1000, key=1))
    assert session.advance((CallOutcome(True), CallOutcome(True)), LATER) == RunFinished(2)


def test_each_approvals_call_is_its_own_step_after_the_activities_of_the_same_round():
    item = ApprovalItem(id="call_1", tool="refund", arguments={"amount": 250})

    async def run() -> tuple:
        session = current_session()
        return await asyncio.gather(session.call(ActivityCall("a", 1)), session.call(ApprovalsCall((item,))))

    session = _session(lambda context: asyncio.get_event_loop().run_until_complete(run()))
    calls = session.advance(None, START)
    assert calls == StepRequest(CallsStep((ActivityCall("a", 1, key=0),), PROGRESS))
    approvals = session.advance((CallOutcome(True, "A"),), LATER)
    assert approvals == StepRequest(ApprovalsStep((item,), PROGRESS))
    decision = {"id": "call_1", "tool": "refund", "decision": "approved", "comment": None, "decidedAt": "x"}
    assert session.advance((decision,), LATER) == RunFinished([CallOutcome(True, "A"), (decision,)])


def test_a_run_that_makes_its_own_event_loop_still_batches_a_gather():
    async def run() -> int:
        session = current_session()
        await asyncio.gather(session.call(ActivityCall("a", 1)), session.call(ActivityCall("b", 2)))
        return 2

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        session = _session(lambda context: asyncio.run(run()))
        first = session.advance(None, START)
        assert first == StepRequest(CallsStep((ActivityCall("a", 1, key=0), ActivityCall("b", 2, key=1)),
                                              PROGRESS))
        assert session.advance((CallOutcome(True), CallOutcome(True)), LATER) == RunFinished(2)
        session.abandon(join_timeout=10)
        del session
        gc.collect()
    # asyncio.run unset the thread's loop; the worker still closed its own (nothing left for the collector).
    assert [w for w in caught if "unclosed event loop" in str(w.message)] == []


def test_an_error_of_the_user_function_is_reported_and_an_abandoned_worker_unwinds():
    def failing(context):
        raise ValueError(f"no input for {context.instance_id}")

    failed = _session(failing)
    message = failed.advance(None, START)
    assert isinstance(message, RunFailed) and str(message.error) == "no input for run-1"
    failed.abandon(join_timeout=10)  # its thread ends right after the message; wait for that before counting
    assert not failed.thread_alive

    before = live_worker_count()
    waiting = _session(lambda context: asyncio.get_event_loop().run_until_complete(
        current_session().call(ActivityCall("never", None))))
    assert isinstance(waiting.advance(None, START), StepRequest)
    assert live_worker_count() == before + 1
    waiting.abandon(join_timeout=10)  # as on eviction: the worker raises at its pending call and ends
    assert not waiting.thread_alive and live_worker_count() == before


def test_a_fresh_worker_that_asks_for_other_work_than_the_episode_resolved_is_a_non_determinism_error():
    recorded = CallsStep((ActivityCall("lookup_order", {"id": 1}),), PROGRESS)
    episode = SimpleNamespace(start=START, resolved=[LoggedStep(recorded, (CallOutcome(True, "A"),), LATER)])
    session = _session(lambda context: asyncio.get_event_loop().run_until_complete(
        current_session().call(ActivityCall("refund_order", {"id": 1}))))
    with pytest.raises(NonDeterminismError) as caught:
        _replay_fresh(episode, session)
    error = caught.value
    assert error.step == 0 and error.recorded == recorded
    assert error.requested == CallsStep((ActivityCall("refund_order", {"id": 1}, key=0),), PROGRESS)
    assert "step 0" in str(error) and "lookup_order" in str(error) and "refund_order" in str(error)
    session.abandon(join_timeout=10)
