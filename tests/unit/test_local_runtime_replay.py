"""Unit tests of the shim replay (``local_runtime.replay``) against the REAL azure-functions-durable ``handle``.

Each episode's message events are built by hand; the orchestrator is the real ``df.Orchestrator.create(fn)``
wrapper called with the context JSON of protocol §2.2; the replay's decision (new actions with their sequence ids,
outcome) is asserted exactly against the protocol's transcripts (§3.2, §3.4, §3.5, §3.6, §7).
"""

from __future__ import annotations

import datetime as dt
import json

import azure.durable_functions as df

from local_runtime import events as ev
from local_runtime.events import ET
from local_runtime.replay import replay
from local_runtime.worker import orchestrator_state

T0 = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
ACTIVITIES = ["say_hello", "flaky", "echo", "after", "square"]
ORCHESTRATORS = ["orch", "child"]


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


class Sim:
    """Feeds hand-built message events to a real orchestrator episode by episode.

    After each episode it appends what the host would append (``OrchestratorStarted``, the messages with
    ``IsPlayed`` true, the events of the new actions, the terminal event, ``OrchestratorCompleted``), so the next
    episode sees the history the extension would send.
    """

    def __init__(self, fn, input_text: str | None = None, instance_id: str = "inst", execution_id: str = "exec1"):
        self.handle = df.Orchestrator.create(fn)
        self.instance_id, self.execution_id = instance_id, execution_id
        self.input_text = input_text
        self.history: list[dict] = []
        self.states: list[dict] = []

    def episode(self, seconds: float, *messages: dict, history: list[dict] | None = None):
        ts = at(seconds)
        if not self.history and history is None:
            messages = (ev.execution_started(self.instance_id, self.execution_id, "orch", self.input_text, ts),
                        *messages)
        base = self.history if history is None else history
        os_event = ev.orchestrator_started(ts)
        sdk = [dict(e) for e in base] + [os_event] + [dict(m, IsPlayed=False) for m in messages]
        body = ev.context_json(sdk, self.instance_id, self.input_text)
        state = orchestrator_state(self.handle, body)
        self.states.append(state)
        decision = replay(sdk, state, orchestrator_name="orch", instance_id=self.instance_id,
                          execution_id=self.execution_id, activities=ACTIVITIES, orchestrators=ORCHESTRATORS)
        new = [os_event] + [dict(m, IsPlayed=True) for m in messages]
        for a in decision.new_actions:
            if a.kind == "activity":
                new.append(ev.task_scheduled(a.id, a.name, ts))
            elif a.kind == "timer":
                new.append(ev.timer_created(a.id, a.fire_at, ts))
            elif a.kind == "suborchestration":
                new.append(ev.suborch_created(a.id, a.name, a.instance_id, ts))
        if decision.outcome is not None:
            new.append(ev.execution_completed(decision.outcome.event_id, 1, decision.outcome.result, ts))
        new.append(ev.orchestrator_completed(ts))
        self.history = base + new
        return decision


def ids(decision) -> list[tuple[int, str, str | None]]:
    return [(a.id, a.kind, a.name) for a in decision.new_actions]


def done(sec, task_id, value):
    return ev.task_completed(task_id, ev.compact(value), at(sec))


def failed(sec, task_id, msg):
    return ev.task_failed(task_id, f"Activity function 'flaky' failed:  ValueError: {msg}",
                          json.dumps({"Message": f" ValueError: {msg}"}), at(sec))


def fired(sec, timer_id, fire_at):
    return ev.timer_fired(timer_id, fire_at, at(sec))


# ------------------------------------------------------------------ sequence / fan-out
def seq_orch(context: df.DurableOrchestrationContext):
    r1 = yield context.call_activity("say_hello", "Tokyo")
    r2 = yield context.call_activity("say_hello", "Seattle")
    r3 = yield context.call_activity("echo", {"city": "London", "n": [1, 2.5, None, True]})
    return [r1, r2, r3]


def test_sequence_assigns_one_id_per_episode_and_completes_with_next_id():
    sim = Sim(seq_orch)
    d = sim.episode(0)
    assert ids(d) == [(0, "activity", "say_hello")] and d.new_actions[0].input == '"Tokyo"'
    assert ids(sim.episode(1, done(0.5, 0, "Hello Tokyo!"))) == [(1, "activity", "say_hello")]
    assert ids(sim.episode(2, done(1.5, 1, "Hello Seattle!"))) == [(2, "activity", "echo")]
    d = sim.episode(3, done(2.5, 2, {"got": {"city": "London"}, "type": "dict"}))
    assert d.new_actions == []
    assert (d.outcome.kind, d.outcome.event_id) == ("completed", 3)
    assert json.loads(d.outcome.result) == ["Hello Tokyo!", "Hello Seattle!",
                                            {"got": {"city": "London"}, "type": "dict"}]
    assert "," in d.outcome.result and ", " not in d.outcome.result      # compact JSON text


def fan_orch(context: df.DurableOrchestrationContext):
    results = yield context.task_all([context.call_activity("square", i) for i in range(4)])
    return sum(results)


def test_fan_out_schedules_all_in_one_episode_and_completes_on_batch():
    sim = Sim(fan_orch)
    assert ids(sim.episode(0)) == [(i, "activity", "square") for i in range(4)]
    d = sim.episode(1, *[done(0.5, i, i * i) for i in (2, 0, 3, 1)])
    assert d.outcome.kind == "completed" and d.outcome.result == "14" and d.outcome.event_id == 4


# ------------------------------------------------------------------ retries (§3.4)
def retry_orch(context: df.DurableOrchestrationContext):
    attempts = context.get_input()
    try:
        value = yield context.call_activity_with_retry("flaky", df.RetryOptions(1000, attempts), None)
        return {"ok": value}
    except Exception as exc:  # noqa: BLE001
        return {"error": str(exc)}


def test_retry_exhaust_uses_dummy_timer_and_exact_ids():
    sim = Sim(retry_orch, input_text=ev.compact("2"))
    assert ids(sim.episode(0)) == [(0, "activity", "flaky")]
    d = sim.episode(10, failed(9, 0, "attempt 1 failed"))
    assert ids(d) == [(1, "timer", None)] and d.new_actions[0].fire_at == at(11)      # now + 1 s
    assert ids(sim.episode(11, fired(11, 1, at(11)))) == [(2, "activity", "flaky")]
    d = sim.episode(20, failed(19, 2, "attempt 2 failed"))
    assert ids(d) == [(3, "timer", None)] and d.new_actions[0].fire_at == at(20)      # dummy: fires at once
    assert d.outcome is None
    d = sim.episode(20, fired(20, 3, at(20)))
    assert d.outcome.kind == "completed" and d.outcome.event_id == 4
    assert json.loads(d.outcome.result)["error"].startswith(
        "Activity function 'flaky' failed:  ValueError: attempt 2 failed \n ")


def test_retry_success_on_third_attempt():
    sim = Sim(retry_orch, input_text=ev.compact("5"))
    assert ids(sim.episode(0)) == [(0, "activity", "flaky")]
    assert ids(sim.episode(1, failed(1, 0, "1"))) == [(1, "timer", None)]
    assert ids(sim.episode(2, fired(2, 1, at(2)))) == [(2, "activity", "flaky")]
    assert ids(sim.episode(3, failed(3, 2, "2"))) == [(3, "timer", None)]
    assert ids(sim.episode(4, fired(4, 3, at(4)))) == [(4, "activity", "flaky")]
    d = sim.episode(5, done(5, 4, "third time lucky"))
    assert (d.outcome.kind, d.outcome.event_id) == ("completed", 5)
    assert json.loads(d.outcome.result) == {"ok": "third time lucky"}


def concurrent_retry_orch(context: df.DurableOrchestrationContext):
    opts = df.RetryOptions(1000, 3)
    results = yield context.task_all([context.call_activity_with_retry("flaky", opts, i) for i in range(2)])
    return results


def test_concurrent_retries_completing_out_of_order():
    sim = Sim(concurrent_retry_orch)
    assert ids(sim.episode(0)) == [(0, "activity", "flaky"), (1, "activity", "flaky")]
    assert ids(sim.episode(1, failed(1, 1, "b"))) == [(2, "timer", None)]
    assert ids(sim.episode(2, failed(2, 0, "a"))) == [(3, "timer", None)]
    assert ids(sim.episode(3, fired(3, 2, at(3)))) == [(4, "activity", "flaky")]
    assert ids(sim.episode(4, fired(4, 3, at(4)))) == [(5, "activity", "flaky")]
    d = sim.episode(5, done(5, 5, "A"), done(5, 4, "B"))
    assert d.outcome.kind == "completed" and json.loads(d.outcome.result) == ["A", "B"] and d.outcome.event_id == 6


# ------------------------------------------------------------------ WhenAll is not fail-fast on the .NET side
def whenall_fail_orch(context: df.DurableOrchestrationContext):
    try:
        yield context.task_all([context.call_activity("flaky", 1), context.call_activity("flaky", 2)])
    except Exception:  # noqa: BLE001
        yield context.call_activity("after", None)
        return "recovered"
    return "no error"


def test_whenall_failure_schedules_the_next_task_only_after_all_children():
    sim = Sim(whenall_fail_orch)
    assert ids(sim.episode(0)) == [(0, "activity", "flaky"), (1, "activity", "flaky")]
    d = sim.episode(1, failed(1, 0, "first"))
    # Python already lists the recovery activity, but the C# WhenAll still waits for child 1
    assert sim.states[-1]["actions"][0][-1]["functionName"] == "after"
    assert d.new_actions == [] and d.outcome is None
    assert ids(sim.episode(2, done(2, 1, "ok"))) == [(2, "activity", "after")]
    d = sim.episode(3, done(3, 2, None))
    assert d.outcome.result == '"recovered"' and d.outcome.event_id == 3


# ------------------------------------------------------------------ races, events
def race_orch(context: df.DurableOrchestrationContext):
    cancel = context.get_input()
    timer = context.create_timer(context.current_utc_datetime + dt.timedelta(hours=1))
    go = context.wait_for_external_event("Go")
    winner = yield context.task_any([go, timer])
    if winner == go:
        if cancel:
            timer.cancel()
        return "event"
    return "timer"


def test_race_with_cancel_completes_when_the_event_wins():
    sim = Sim(race_orch, input_text=ev.compact("true"))
    d = sim.episode(0)
    assert ids(d) == [(0, "timer", None)] and d.new_actions[0].fire_at == at(3600)
    d = sim.episode(5, ev.event_raised("Go", '"x"', at(5)))
    assert sim.states[-1]["actions"][0][0]["compoundActions"][1]["isCanceled"] is True
    assert d.new_actions == [] and (d.outcome.kind, d.outcome.result, d.outcome.event_id) == \
        ("completed", '"event"', 1)
    # the late TimerFired of a cancelled timer would be dropped by the host (instance completed)


def test_race_without_cancel_stays_running_until_the_timer_fires():
    sim = Sim(race_orch, input_text=ev.compact("false"))
    sim.episode(0)
    d = sim.episode(5, ev.event_raised("Go", '"x"', at(5)))
    assert sim.states[-1]["isDone"] is True
    assert d.outcome is None and d.open_task_ids == [0]        # isDone but an open timer: still Running
    d = sim.episode(3600, fired(3600, 0, at(3600)))
    assert d.outcome.kind == "completed" and d.outcome.result == '"event"'


def event_orch(context: df.DurableOrchestrationContext):
    yield context.call_activity("echo", "x")
    approval = yield context.wait_for_external_event("Approval")
    return {"approval": approval, "type": type(approval).__name__}


def test_event_raised_before_the_wait_is_buffered():
    sim = Sim(event_orch)
    assert ids(sim.episode(0)) == [(0, "activity", "echo")]
    d = sim.episode(1, ev.event_raised("Approval", '"{\\"ok\\": true}"', at(1)))   # Python-client encoding
    assert d.new_actions == [] and d.outcome is None
    d = sim.episode(2, done(2, 0, "x"))
    assert d.outcome.kind == "completed"
    assert json.loads(d.outcome.result) == {"approval": '{"ok": true}', "type": "str"}


def test_event_after_wait_with_raw_json_payload():
    sim = Sim(event_orch)
    sim.episode(0)
    d = sim.episode(1, done(1, 0, "x"))
    assert d.new_actions == [] and d.outcome is None
    d = sim.episode(2, ev.event_raised("approval", '{"ok":true}', at(2)))     # names: case-insensitive on C#
    # Python matches case-sensitively, so the SDK keeps waiting: nothing completes
    assert d.outcome is None
    d = sim.episode(3, ev.event_raised("Approval", '{"ok":true}', at(3)))
    assert json.loads(d.outcome.result) == {"approval": {"ok": True}, "type": "dict"}


# ------------------------------------------------------------------ failures
def test_nondeterminism_is_detected_from_a_hand_built_history():
    sim = Sim(seq_orch)
    es = ev.execution_started("inst", "exec1", "orch", None, at(0))
    history = [ev.orchestrator_started(at(0)), dict(es, IsPlayed=True), ev.task_scheduled(0, "other_activity", at(0)),
               ev.orchestrator_completed(at(0))]
    d = sim.episode(1, done(1, 0, "r"), history=history)
    assert d.outcome.kind == "failed" and d.new_actions == []
    assert d.outcome.result.startswith("Orchestrator function 'orch' failed: Non-Deterministic workflow detected")


def unknown_orch(context: df.DurableOrchestrationContext):
    yield context.call_activity("nope", 1)


def test_unknown_activity_fails_the_orchestration():
    d = Sim(unknown_orch).episode(0)
    assert d.outcome.kind == "failed" and d.new_actions == []
    assert d.outcome.result == (
        "Orchestrator function 'orch' failed: The function 'nope' doesn't exist, is disabled, or is not an activity "
        "function. Additional info: The following are the known activity functions: 'after', 'echo', 'flaky', "
        "'say_hello', 'square'.")


def raising_orch(context: df.DurableOrchestrationContext):
    yield context.call_activity("echo", 1)
    raise ValueError("boom")


def test_orchestrator_exception_fails_after_outstanding_work():
    sim = Sim(raising_orch)
    sim.episode(0)
    d = sim.episode(1, done(1, 0, 1))
    assert sim.states[-1]["error"] == "boom" and sim.states[-1]["isDone"] is False
    assert (d.outcome.kind, d.outcome.result, d.outcome.event_id) == \
        ("failed", "Orchestrator function 'orch' failed: boom", 1)


# ------------------------------------------------------------------ timers, sub-orchestrations, continue-as-new
def long_timer_orch(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + dt.timedelta(days=7))
    return "woke"


def test_long_timer_v3_is_split_into_sub_timers():
    sim = Sim(long_timer_orch)
    d = sim.episode(0)
    assert ids(d) == [(0, "timer", None)] and d.new_actions[0].fire_at == at(3 * 86400)
    d = sim.episode(3 * 86400, fired(3 * 86400, 0, at(3 * 86400)))
    assert ids(d) == [(1, "timer", None)] and d.new_actions[0].fire_at == at(7 * 86400)
    d = sim.episode(7 * 86400, fired(7 * 86400, 1, at(7 * 86400)))
    assert (d.outcome.kind, d.outcome.result, d.outcome.event_id) == ("completed", '"woke"', 2)


def suborch_orch(context: df.DurableOrchestrationContext):
    a = yield context.call_sub_orchestrator("child", "s")
    b = yield context.call_sub_orchestrator("child", None, "explicit-id")
    return [a, b]


def test_sub_orchestrations_default_and_explicit_ids():
    sim = Sim(suborch_orch)
    d = sim.episode(0)
    assert [(a.id, a.kind, a.instance_id, a.input) for a in d.new_actions] == \
        [(0, "suborchestration", "exec1:0", '"s"')]
    d = sim.episode(1, ev.suborch_completed(0, '"A"', at(1)))
    assert [(a.id, a.instance_id) for a in d.new_actions] == [(1, "explicit-id")]
    d = sim.episode(2, ev.suborch_failed(1, "Orchestrator function 'child' failed: no", "Message: no", at(2)))
    assert d.outcome.kind == "failed"
    assert d.outcome.result.startswith("Orchestrator function 'orch' failed: Orchestrator function 'child' failed")


def can_orch(context: df.DurableOrchestrationContext):
    n = context.get_input()
    context.continue_as_new(n + 1)
    return None


def test_continue_as_new_serializes_the_new_input_again():
    d = Sim(can_orch, input_text=ev.compact("1")).episode(0)
    assert (d.outcome.kind, d.outcome.result, d.outcome.event_id) == ("continued_as_new", '"2"', 0)


def test_custom_status_is_compact_text_and_history_events_have_the_sdk_shape():
    def status_orch(context: df.DurableOrchestrationContext):
        context.set_custom_status({"stage": 1})
        yield context.call_activity("echo", 1)
    sim = Sim(status_orch)
    d = sim.episode(0)
    assert d.custom_status == '{"stage":1}'
    started = sim.history[1]
    assert started["EventType"] == ET.ExecutionStarted and started["IsPlayed"] is True
    assert started["OrchestrationInstance"] == {"InstanceId": "inst", "ExecutionId": "exec1"}
    assert sim.history[0]["Timestamp"] == "2024-01-01T00:00:00Z"


def test_suspend_parks_new_work_until_resume():
    sim = Sim(seq_orch)
    assert ids(sim.episode(0)) == [(0, "activity", "say_hello")]
    d = sim.episode(1, ev.execution_suspended("pause", at(1)))
    assert d.suspended and d.new_actions == []
    d = sim.episode(2, done(2, 0, "Hello Tokyo!"))
    # the SDK already asked for the next activity, but the extension does not act while suspended
    assert len(sim.states[-1]["actions"][0]) == 2
    assert d.suspended and d.new_actions == [] and d.outcome is None
    d = sim.episode(3, ev.execution_resumed("go", at(3)))
    assert not d.suspended and ids(d) == [(1, "activity", "say_hello")]
