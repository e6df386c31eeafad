"""The shipped test kit, ``durable_agents.testing``, used as its docstring and README ("Testing your agents") show."""

from __future__ import annotations

import json

import openai
import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents.testing import (
    ReplayHarness,
    ScriptedModel,
    assistant_message,
    function_call,
    function_outputs,
    model_error,
    replay_history,
)

bp = durable_agents.Blueprint()


@durable_agents.activity_tool(bp, needs_approval=True)
def refund_order(order_id: str, amount: float) -> dict:
    """Refund an order."""
    return {"refunded": amount, "order_id": order_id}


agent = Agent(name="support", instructions="Help customers.", tools=[refund_order])


@bp.agent(agent, description="Customer support.", settings=("REFUND_APPROVAL_THRESHOLD",))
def support(context):
    return Runner.run_sync(agent, context.get_input()["input"])


app = durable_agents.App(http_api=False)
app.register_functions(bp)


pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


def _refund_script(*extra) -> list:
    return [[function_call("refund_order", {"order_id": "A-1", "amount": 250}, call_id="call_1")], *extra,
            [assistant_message("Refunded 250.")]]


def test_quick_start_an_approved_refund_and_a_429_retried_on_a_durable_timer():
    model = ScriptedModel(_refund_script(model_error(429, retry_after=30)))
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("support", "Please refund order A-1")
    harness.run(advance_timers=False)
    assert [p["id"] for p in harness.pending_approvals(run)] == ["call_1"]
    harness.approve(run, "call_1", "ok")
    harness.run()
    assert run.status == "Completed"
    assert run.output["finalOutput"] == "Refunded 250."
    assert [a["timer"] for actions in run.episode_actions for a in actions if "timer" in a][-1] == (
        "2026-01-01T00:00:30.006Z")  # retry-after 30 s after episode 6 (1 ms each), which received the 429
    # (episodes: model call, audit of the request, approval wait, refund, model answered 429, timer)
    assert model.results[1]["error"]["type"] == "RateLimitError" and model.remaining_steps == 0


def test_a_rejected_approval_reaches_the_model_with_the_comment():
    model = ScriptedModel(_refund_script())
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("support", "Please refund order A-1", run_id="run-r")
    harness.run(advance_timers=False)
    harness.reject("run-r", "call_1", "not this time")
    harness.run()
    assert run.status == "Completed" and harness.pending_approvals(run) == []
    assert "not this time" in function_outputs(model.requests[1])["call_1"]
    assert [name for name, _ in harness.activity_calls] == ["invoke_model", "durable_agents_audit", "invoke_model"]


def test_start_run_gives_the_orchestration_input_the_http_api_gives(monkeypatch):
    monkeypatch.setenv("APPROVAL_TIMEOUT", "PT5M")
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", "50")
    monkeypatch.delenv("MODEL_MAX_ATTEMPTS", raising=False)
    harness = ReplayHarness(app, model=ScriptedModel())
    run = harness.start_run("support", "hi", run_id="r1")
    assert (run.instance_id, run.name) == ("r1", "support")
    assert run.history == [] and harness.instances["r1"] is run
    started = harness.start_run("support", "hi", settings={"APPROVAL_TIMEOUT": "PT1S"})
    assert json.loads(json.loads(run.input_text)) == {
        "agent": "support", "input": "hi", "settings": {"APPROVAL_TIMEOUT": "PT5M", "REFUND_APPROVAL_THRESHOLD": "50"},
        "version": 3, "customer": None, "startedBy": None,
    }
    assert json.loads(json.loads(started.input_text))["settings"] == {"APPROVAL_TIMEOUT": "PT1S"}
    with pytest.raises(KeyError, match="no agent named 'nobody'"):
        harness.start_run("nobody", "hi")


def test_start_run_takes_the_customer_and_starter_and_approve_sends_the_hash_and_the_decider():
    harness = ReplayHarness(app, model=ScriptedModel(_refund_script()))
    run = harness.start_run("support", "hi", settings={}, run_id="r2", customer="jordan.rivera@example.com",
                            started_by={"id": "dev-sam", "name": "sam"})
    started = json.loads(json.loads(run.input_text))
    assert (started["version"], started["customer"], started["startedBy"]) == (
        3, "jordan.rivera@example.com", {"id": "dev-sam", "name": "sam"})
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    harness.approve(run, "call_1", "fine", decided_by={"id": "dev-ana", "name": "ana"})
    assert not [e for e in run.history if e["EventType"] == 15]  # queued, delivered by the next run()
    harness.run()
    [event] = [e for e in run.history if e["EventType"] == 15]  # EventRaised
    payload = json.loads(event["Input"])
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert (event["Name"], payload) == ("approval:call_1", {
        "approved": True, "comment": "fine", "decidedBy": {"id": "dev-ana", "name": "ana"},
        "argumentsHash": pending["argumentsHash"]})
    [refund_call] = [value["call"] for name, value in harness.activity_calls if name == "refund_order"]
    assert (refund_call["customer"], refund_call["approved"]) == ("jordan.rivera@example.com", True)


def test_approving_an_approval_the_run_does_not_wait_for_is_a_test_error():
    harness = ReplayHarness(app, model=ScriptedModel(_refund_script()))
    run = harness.start_run("support", "Please refund order A-1")
    with pytest.raises(ValueError, match="does not wait for approval 'call_1'"):
        harness.approve(run, "call_1")  # nothing ran yet
    harness.run(advance_timers=False)
    with pytest.raises(ValueError, match="pending: \\['call_1'\\]"):
        harness.approve(run, "call_2")


def test_model_error_steps_are_classified_by_the_real_model_activity():
    model = ScriptedModel([model_error(500), model_error(None, message="no route"), model_error(400),
                           model_error(503, retry_after=1.5)])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("support", "hi", settings={"MODEL_MAX_ATTEMPTS": "4"})
    harness.run()
    assert run.status == "Failed" and "HTTP 400" in run.output
    errors = [result["error"] for result in model.results]
    assert [(e["type"], e["status"], e["retryable"], e["retryAfter"]) for e in errors] == [
        ("InternalServerError", 500, True, None),
        ("APIConnectionError", None, True, None),
        ("BadRequestError", 400, False, None),
    ]
    assert errors[1]["message"] == "no route" and model.remaining_steps == 1
    raised = model.sdk_model.calls  # the SDK model saw every call
    assert len(raised) == 3
    with pytest.raises(openai.InternalServerError):
        raise model_error(503).error  # a step raises what the openai client raises for that status


def test_without_a_model_the_apps_own_activities_run():
    plain = durable_agents.Blueprint()
    model = ScriptedModel([[assistant_message("hello from the registered model")]])
    model.register(plain)
    hello = Agent(name="hello", instructions="Say hello.")

    @plain.agent(hello, description="Says hello.")
    def hello_run(context):
        return Runner.run_sync(hello, context.get_input()["input"])

    own = durable_agents.App(http_api=False, model_activity=False)
    own.register_functions(plain)
    for _ in range(2):  # one app serves many harnesses (its functions are read once)
        harness = ReplayHarness(own)
        run = harness.start_run("hello", "hi")
        harness.run()
        assert run.status == "Completed" and run.output["finalOutput"] == "hello from the registered model"
        model.extend([[assistant_message("hello from the registered model")]])


def test_a_history_recorded_by_the_harness_replays_clean():
    harness = ReplayHarness(app, model=ScriptedModel(_refund_script(model_error(503))))
    run = harness.start_run("support", "Please refund order A-1", run_id="recorded")
    harness.run(advance_timers=False)
    harness.approve(run, "call_1")
    harness.run()
    result = replay_history(app, run.history)
    assert (result.status, result.output, result.instance_id) == ("Completed", run.output, "recorded")
    assert result.custom_status == run.custom_status
    assert result.steps == 7  # model, audit of the request, approval timer, refund, model (503), retry timer, model


def test_the_quick_start_in_the_package_docstring_runs(tmp_path):
    """The docstring's example is code, not prose: extract it and run it with pytest in a subprocess."""
    import subprocess
    import sys
    import textwrap

    import durable_agents.testing

    code = textwrap.dedent(durable_agents.testing.__doc__.split("Quick start (pytest)::\n", 1)[1])
    (tmp_path / "test_quick_start.py").write_text(code.replace('\\"', '"'))
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                            capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
