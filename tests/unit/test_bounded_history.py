"""Bounded history: version-3 agent runs continue-as-new every K model turns with their SDK state
(docs/internals.md "Bounded history"), through real azure-functions-durable replay in the replay harness.

Each test counts what must not repeat across the hand-over (model calls, tool activities) and what the run must
still show as a whole (turns, usage, approvals), with the live-run cache on and off (off: every episode replays).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from agents import Agent, Runner, Usage, function_tool
from agents.testing import ModelStep

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents import activity_tool
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs
from local_runtime import events as ev

APP_DIR = Path(__file__).parent

TOOL_CALLS: list[str] = []


@pytest.fixture(params=["cache", "no-cache"])
def cache(request):
    durable_runner.set_session_cache_size(64 if request.param == "cache" else 0)
    durable_runner.clear_session_cache()
    yield request.param
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()


def _app(*, gated: bool = False, handoff: bool = False, max_turns: int | None = None):
    bp = durable_agents.Blueprint()

    @activity_tool(bp, needs_approval=gated)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        TOOL_CALLS.append(order_id)
        return {"order_id": order_id, "status": "shipped"}

    specialist = Agent(name="specialist", instructions="Specialist.", tools=[lookup_order])
    agent = Agent(name="bench", instructions="Benchmark.", tools=[lookup_order],
                  handoffs=[specialist] if handoff else [])

    @bp.agent(agent, description="Bounded history test agent.")
    def bench_run(context):
        kwargs = {"max_turns": max_turns} if max_turns is not None else {}
        return Runner.run_sync(agent, context.get_input()["input"], **kwargs)

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    return app


def _tool_turns(n: int, prefix: str = "call") -> list:
    return [[function_call("lookup_order", {"order_id": f"ORD-{i}"}, call_id=f"{prefix}_{i}")] for i in range(n)]


def _model_calls(inst) -> int:
    return sum(1 for e in inst.history if e.get("EventType") == ev.ET.TaskScheduled and e.get("Name") == "invoke_model")


def test_a_run_continues_as_new_every_k_turns_and_nothing_runs_twice(cache):
    TOOL_CALLS.clear()
    usage = Usage(requests=1, input_tokens=10, output_tokens=2, total_tokens=12)
    model = ScriptedModel([ModelStep(output=step, usage=usage) for step in _tool_turns(9)]
                          + [ModelStep(output=[assistant_message("done")], usage=usage)])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("bench", "go", settings={"AGENT_TURNS_PER_GENERATION": "3"}, run_id=f"k3-{cache}")
    harness.run()
    assert inst.status == "Completed", inst.output
    # 10 model turns, 3 per generation: generations of 3, 3, 3 and 1 turn
    assert inst.generations == 4
    assert _model_calls(inst) == 1  # the last generation's history holds only its own turn
    assert len(model.requests) == 10 and model.remaining_steps == 0  # no model call paid twice
    assert TOOL_CALLS == [f"ORD-{i}" for i in range(9)]  # every tool ran exactly once
    # the last model call still saw the whole run: the user's input and all nine tool results
    last = model.requests[-1]
    assert set(function_outputs(last)) == {f"call_{i}" for i in range(9)}
    assert any(isinstance(i, dict) and i.get("content") == "go" for i in last["input"])
    out = inst.output
    assert out["finalOutput"] == "done" and out["turns"] == 10 and out["lastAgent"] == "bench"
    assert out["usage"] == {"requests": 10, "inputTokens": 100, "outputTokens": 20, "totalTokens": 120}
    assert inst.custom_status["turns"] == 10
    assert inst.custom_status["usage"] == out["usage"]  # the status shows the whole run's usage as it goes
    mid = [s for s in inst.custom_statuses if s and s.get("turns") == 5]
    assert mid and mid[-1]["usage"]["requests"] == 5 and mid[-1]["usage"]["totalTokens"] == 60


def test_the_carried_state_is_in_the_next_generations_input_and_no_history_holds_more_than_k_turns(cache):
    model = ScriptedModel(_tool_turns(6) + [[assistant_message("done")]])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("bench", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"}, run_id=f"carry-{cache}")
    scheduled_per_generation: list[int] = []
    generation = inst.generations
    count = 0
    while harness.step():
        if inst.generations != generation:
            scheduled_per_generation.append(count)
            generation, count = inst.generations, 0
        count = _model_calls(inst)
    scheduled_per_generation.append(_model_calls(inst))
    assert inst.status == "Completed"
    assert max(scheduled_per_generation) <= 2
    started = next(e for e in inst.history if e.get("EventType") == ev.ET.ExecutionStarted)
    carried = json.loads(json.loads(started["Input"]))["$durableAgents"]
    assert carried["generation"] == 3 and carried["turns"] == 6
    assert carried["resume"]["agent"] == "bench" and carried["resume"]["turnsUsed"] == 6
    assert carried["startedAt"]  # the first generation's start, kept for the run's whole-run view


def test_approvals_before_the_hand_over_stay_in_the_runs_status(cache):
    model = ScriptedModel(_tool_turns(4) + [[assistant_message("done")]])
    harness = ReplayHarness(_app(gated=True), model=model)
    inst = harness.start_run("bench", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"}, run_id=f"appr-{cache}")
    for i in range(4):
        harness.run(advance_timers=False)
        pending = harness.pending_approvals(inst)
        assert [p["id"] for p in pending] == [f"call_{i}"], (i, inst.status, inst.output)
        harness.approve(inst, f"call_{i}", f"ok {i}")
    harness.run(advance_timers=False)
    assert inst.status == "Completed", inst.output
    assert inst.generations == 3
    approvals = inst.custom_status["approvals"]
    assert [(a["id"], a["decision"], a["comment"]) for a in approvals] == [
        (f"call_{i}", "approved", f"ok {i}") for i in range(4)]
    assert len(model.requests) == 5


def test_a_handoff_before_the_hand_over_resumes_at_the_agent_it_handed_off_to(cache):
    TOOL_CALLS.clear()
    steps = [[function_call("transfer_to_specialist", {}, call_id="h1")]] + _tool_turns(3, "s") + [
        [assistant_message("specialist done")]]
    model = ScriptedModel(steps)
    harness = ReplayHarness(_app(handoff=True), model=model)
    inst = harness.start_run("bench", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"}, run_id=f"hand-{cache}")
    harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output["lastAgent"] == "specialist" and inst.output["finalOutput"] == "specialist done"
    assert inst.generations == 3 and len(model.requests) == 5
    assert TOOL_CALLS == ["ORD-0", "ORD-1", "ORD-2"]


def test_max_turns_counts_the_whole_run_across_generations():
    model = ScriptedModel(_tool_turns(10))
    harness = ReplayHarness(_app(max_turns=5), model=model)
    inst = harness.start_run("bench", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"}, run_id="max-turns")
    harness.run()
    assert inst.status == "Failed"
    assert "Max turns (5) exceeded" in json.dumps(inst.output) or "MaxTurnsExceeded" in json.dumps(inst.output)
    assert len(model.requests) == 5


def test_k_zero_and_older_runs_never_continue():
    model = ScriptedModel(_tool_turns(5) + [[assistant_message("done")]])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("bench", "go", settings={"AGENT_TURNS_PER_GENERATION": "0"}, run_id="k0")
    harness.run()
    assert inst.status == "Completed" and inst.generations == 1 and inst.output["turns"] == 6
    model = ScriptedModel(_tool_turns(5) + [[assistant_message("done")]])
    harness = ReplayHarness(_app(), model=model)
    v2 = harness.start("bench_run", {"agent": "bench", "input": "go", "settings": {"AGENT_TURNS_PER_GENERATION": "2"},
                                     "version": 2}, "v2")
    harness.run()
    assert v2.status == "Completed" and v2.generations == 1


def test_a_function_tool_that_runs_in_the_orchestrator_is_not_repeated_by_the_hand_over(cache):
    seen: list[str] = []

    @function_tool
    def note(text: str) -> str:
        """Note something (deterministic, in the orchestrator)."""
        seen.append(text)
        return "noted"

    bp = durable_agents.Blueprint()
    agent = Agent(name="noter", instructions="Note.", tools=[note])

    @bp.agent(agent, description="Notes.")
    def noter_run(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    model = ScriptedModel([[function_call("note", {"text": f"t{i}"}, call_id=f"n{i}")] for i in range(4)]
                          + [[assistant_message("done")]])
    harness = ReplayHarness(app, model=model)
    inst = harness.start_run("noter", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"}, run_id=f"ft-{cache}")
    harness.run()
    assert inst.status == "Completed" and inst.generations == 3
    # a function tool runs again on every replay (it is orchestrator code), but each call's result reached the
    # model once and the next generation does not run the earlier calls again
    assert sorted(set(seen)) == ["t0", "t1", "t2", "t3"]
    assert len(model.requests) == 5


def test_a_run_beside_the_users_own_durable_work_never_continues_as_new(cache):
    notes: list[str] = []
    bp = durable_agents.Blueprint()

    @bp.activity_trigger(input_name="value")
    def note_activity(value: str) -> str:
        notes.append(value)
        return value

    @activity_tool(bp)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id}

    agent = Agent(name="side", instructions="Side by side.", tools=[lookup_order])

    @bp.workflow("side_by_side", description="A run beside an activity.", agents=(agent,))
    async def side_by_side(context):
        import asyncio

        result, noted = await asyncio.gather(Runner.run(agent, "go"), context.call_activity("note_activity", "x"))
        return [result.final_output, noted]

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    model = ScriptedModel(_tool_turns(4) + [[assistant_message("done")]])
    harness = ReplayHarness(app, model=model)
    inst = harness.start_run("side_by_side", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"},
                             run_id=f"side-{cache}")
    harness.run()
    assert inst.status == "Completed", inst.output
    # restarting the function in a new generation would run note_activity again: the run stays in one generation
    assert inst.generations == 1 and inst.output == ["done", "x"] and notes == ["x"]
