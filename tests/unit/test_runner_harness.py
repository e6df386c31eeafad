"""The replay harness (durable_agents.testing) is the local runtime's extension emulation, driven in-process.

Plain azure-functions-durable orchestrators (no agents) run through the harness; what they produce is checked against
the protocol's transcripts (shared/docs/durable-functions-protocol.md §3.2, §3.4, §3.11) and against the local
runtime's own activity path (``local_runtime.worker.run_activity``), so that the runner's replay-level tests stand on
the same semantics as ``python -m local_runtime``.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor

import azure.durable_functions as df
import azure.functions as func

from durable_agents.testing import ReplayHarness
from local_runtime import worker
from local_runtime.app_loader import classify_function

ATTEMPTS: list[str] = []


def _app() -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.activity_trigger(input_name="value")
    def flaky(value: str) -> str:
        ATTEMPTS.append(value)
        raise ValueError(f"attempt {len(ATTEMPTS)} failed")

    @app.activity_trigger(input_name="value")
    async def echo(value: dict) -> dict:
        return {"echo": value}

    @app.orchestration_trigger(context_name="context")
    def retry_orch(context: df.DurableOrchestrationContext):
        try:
            yield context.call_activity_with_retry("flaky", df.RetryOptions(1000, 2), "x")
        except Exception as exc:  # noqa: BLE001 - the orchestration reports the last failure
            return {"error": str(exc).split(" \n ", 1)[0]}

    @app.orchestration_trigger(context_name="context")
    def fan_out(context: df.DurableOrchestrationContext):
        try:
            yield context.task_all([context.call_activity("flaky", "a"), context.call_activity("echo", {"n": 1})])
        except Exception:  # noqa: BLE001 - Python's task_all fails fast; the extension's WhenAll does not
            pass
        return (yield context.call_activity("echo", {"n": 2}))

    @app.orchestration_trigger(context_name="context")
    def unknown(context: df.DurableOrchestrationContext):
        return (yield context.call_activity("nope", None))

    return app


def _event_ids(harness: ReplayHarness, instance_id: str) -> list[tuple[int, int]]:
    """``(EventType, EventId)`` of the scheduling and terminal events, in history order."""
    return [(e["EventType"], e["EventId"]) for e in harness.instances[instance_id].history
            if e["EventType"] in (1, 4, 10)]


def test_retry_interceptor_ids_and_the_last_failure_as_in_the_protocol_transcript():
    ATTEMPTS.clear()
    harness = ReplayHarness(_app())
    inst = harness.start("retry_orch", None, "retry")
    harness.run()
    # §3.4 retry_exhaust_orch, max 2: task 0, timer 1 (+1 s), task 2, dummy timer 3 (now), ExecutionCompleted 4.
    assert _event_ids(harness, "retry") == [(4, 0), (10, 1), (4, 2), (10, 3), (1, 4)]
    timers = [a["timer"] for episode in inst.episode_actions for a in episode if "timer" in a]
    assert timers == ["2026-01-01T00:00:01.002Z", "2026-01-01T00:00:01.004Z"]
    assert inst.status == "Completed"
    assert inst.output == {"error": "Activity function 'flaky' failed:  ValueError: attempt 2 failed"}
    assert ATTEMPTS == ["x", "x"]


def test_when_all_waits_for_every_child_before_the_next_action_is_scheduled():
    ATTEMPTS.clear()
    harness = ReplayHarness(_app(), one_message_per_episode=True)
    inst = harness.start("fan_out", None, "fan")
    harness.run()
    # Episode 2 delivers the failure: Python already yields the next activity, the extension's WhenAll still
    # waits for the other child, so nothing is scheduled until episode 3 (§3.2, whenall_fail_orch).
    assert [[a.get("name") for a in actions] for actions in inst.episode_actions] == [
        ["flaky", "echo"], [], ["echo"], []
    ]
    assert _event_ids(harness, "fan") == [(4, 0), (4, 1), (4, 2), (1, 3)]
    assert inst.output == {"echo": {"n": 2}}


def test_an_unknown_activity_fails_the_orchestration_like_the_extension():
    harness = ReplayHarness(_app())
    inst = harness.start("unknown", None, "unknown")
    harness.run()
    assert inst.status == "Failed"
    assert inst.output.startswith("Orchestrator function 'unknown' failed: The function 'nope' doesn't exist")
    assert harness.activity_calls == []


def test_a_failed_commit_keeps_nothing_and_the_messages_are_delivered_again():
    harness = ReplayHarness(_app())
    inst = harness.start("fan_out", None, "commit")
    harness.failing_commits = 1
    assert harness.step()
    assert inst.failed_commits == 1 and inst.episodes == 0 and inst.history == []
    assert harness.activity_calls == [] and json.loads(inst.last_state)["actions"]
    harness.run()
    assert inst.status == "Completed" and inst.episodes == 3  # both results of the fan-out in one episode
    assert [name for name, _ in harness.activity_calls] == ["flaky", "echo", "echo"]


def test_inline_activities_give_the_local_runtime_results_and_failure_texts():
    functions = {f.get_function_name(): classify_function(f) for f in _app().get_functions()}
    with ThreadPoolExecutor(1) as pool:
        for name, input_text in (("echo", '{"n":1}'), ("flaky", '"z"')):
            info = functions[name]
            ATTEMPTS.clear()
            inline = worker.run_activity_inline(info, input_text, ".")
            ATTEMPTS.clear()
            hosted = asyncio.run(worker.run_activity(info, input_text, pool, "."))
            assert inline[:2] == hosted[:2]
            if not inline[0]:
                details = json.loads(inline[2]), json.loads(hosted[2])
                assert details[0]["Message"] == details[1]["Message"] == " ValueError: attempt 1 failed"
    assert inline[:2] == (False, "Activity function 'flaky' failed:  ValueError: attempt 1 failed")
    assert worker.run_activity_inline(functions["echo"], '{"n":1}', ".") == (True, '{"echo":{"n":1}}', None)
