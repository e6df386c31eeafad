"""The forms an agent orchestrator function may take, through real azure-functions-durable replay
(durable_agents.testing): a generator written like a Durable orchestrator around agent runs, a plain function whose
durable calls block, an ``async def`` function whose agents and calls run concurrently in one fan-out; and
``Runner.run_sync`` in a plain Durable orchestrator failing at once, without any model call."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import timedelta

import azure.durable_functions as df
import pytest
from agents import Agent, RunConfig, Runner
from agents.models.interface import Model, ModelProvider
from agents.testing import ModelStep
from agents.testing import ScriptedModel as SdkScriptedModel

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents._contracts import parse_time
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message

ENGLISH = Agent(name="english", instructions="Answer in English.")
FRENCH = Agent(name="french", instructions="Answer in French.")


def _by_instructions(call):
    """One scripted answer per agent, whatever order the concurrent calls arrive in."""
    return [assistant_message("Hello" if call.system_instructions == "Answer in English." else "Bonjour")]


pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


def _app() -> durable_agents.App:
    app = durable_agents.App(http_api=False)

    @app.agent(ENGLISH, description="Greets in two languages at once.", name="greeter")
    async def greeter(context):
        english, french = await asyncio.gather(Runner.run(ENGLISH, context.get_input()["input"]),
                                               Runner.run(FRENCH, context.get_input()["input"]))
        return {"english": english.final_output, "french": french.final_output}

    return app


@pytest.mark.parametrize("cache_size", [64, 0])
def test_an_async_agent_orchestrator_runs_two_agents_concurrently_in_one_fan_out(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    try:
        model = ScriptedModel([ModelStep.respond(_by_instructions), ModelStep.respond(_by_instructions)])
        harness = ReplayHarness(_app(), model=model)
        run = harness.start_run("greeter", "Say hello.", settings={})
        harness.run()
    finally:
        durable_runner.set_session_cache_size(64)
    assert run.status == "Completed", run.output
    assert run.output == {"english": "Hello", "french": "Bonjour"}
    # Both agents' first (and only) model calls were scheduled in the same episode: one fan-out.
    assert [[a["name"] for a in actions] for actions in run.episode_actions] == [["invoke_model", "invoke_model"], []]


def test_runner_run_sync_in_a_plain_durable_orchestrator_fails_at_once_naming_agent_orchestrator():
    provided: list[str | None] = []

    class RecordingProvider(ModelProvider):
        """Where the SDK would get the model it calls inside the orchestrator, outside any activity."""

        def get_model(self, model_name: str | None) -> Model:
            provided.append(model_name)
            return SdkScriptedModel([[assistant_message("called outside an activity")]])

    app = durable_agents.App(http_api=False)

    @app.orchestration_trigger(context_name="context")
    def plain(context: df.DurableOrchestrationContext):
        return Runner.run_sync(ENGLISH, "hi", run_config=RunConfig(model_provider=RecordingProvider())).final_output

    harness = ReplayHarness(app, model=ScriptedModel([]))
    run = harness.start("plain", {"input": "hi"})
    harness.run()
    assert run.status == "Failed"
    assert "not an agent orchestrator" in run.output and "durable_agents.agent_orchestrator" in run.output
    assert provided == [] and harness.activity_calls == []


def _workflow_app(calls: list) -> durable_agents.App:
    """An agent, then a person's go-ahead raced against a timer, then an activity and a second agent."""
    app = durable_agents.App(http_api=False)

    @app.activity_trigger(input_name="payload", activity="record")
    def record(payload: dict) -> dict:
        calls.append(payload)
        return {"recorded": payload["text"]}

    @app.agent(ENGLISH, description="Two agents with a human gate between them.", name="gated")
    def gated(context):
        first = Runner.run_sync(ENGLISH, context.get_input()["input"]).final_output
        context.set_custom_status({"stage": "waiting for go", "first": first})
        go = context.wait_for_external_event("go")
        timeout = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
        winner = yield context.task_any([go, timeout])
        if winner is timeout:
            return {"first": first, "outcome": "timed out"}
        timeout.cancel()
        saved = yield context.call_activity("record", {"text": first, "id": context.new_uuid()})
        context.set_custom_status({"stage": "second agent"})
        note = json.loads(go.result)["note"]  # event data as the Durable SDK gives it (the Python client encodes twice)
        second = Runner.run_sync(FRENCH, note).final_output
        return {"first": first, "saved": saved, "second": second, "replaying": context.is_replaying,
                "timerCancelled": timeout.is_cancelled}

    return app


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_generator_agent_orchestrator_runs_agents_around_a_human_gate(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    calls: list = []
    try:
        model = ScriptedModel([ModelStep.respond(_by_instructions), ModelStep.respond(_by_instructions)])
        harness = ReplayHarness(_workflow_app(calls), model=model)
        run = harness.start_run("gated", "Say hello.", settings={})
        harness.run(advance_timers=False)
        assert run.status == "Running"
        assert run.custom_status["stage"] == "waiting for go" and run.custom_status["first"] == "Hello"
        assert run.custom_status["pendingApprovals"] == [] and run.custom_status["agent"] == "gated"
        harness.raise_event(run.instance_id, "go", {"note": "Dis bonjour."})
        harness.run(advance_timers=False)
    finally:
        durable_runner.set_session_cache_size(64)
    assert run.status == "Completed", run.output
    assert run.output["first"] == "Hello" and run.output["second"] == "Bonjour"
    assert run.output["saved"] == {"recorded": "Hello"} and run.output["replaying"] is False
    assert run.output["timerCancelled"] is True
    assert len(calls) == 1 and len(calls[0]["id"]) == 36
    assert run.custom_status["stage"] == "second agent"
    # The timer lost and was cancelled: nothing keeps the orchestration open, no TimerFired was needed.
    kinds = [[a.get("name") or "timer" for a in actions] for actions in run.episode_actions]
    assert kinds[0] == ["invoke_model"] and kinds[1] == ["timer"]
    assert ["record"] in kinds and kinds[-1] == []


def test_the_gate_s_timer_wins_when_nobody_answers_and_the_histories_match_with_and_without_the_cache():
    histories = []
    for cache_size in (64, 0):
        durable_runner.clear_session_cache()
        durable_runner.set_session_cache_size(cache_size)
        try:
            calls: list = []
            harness = ReplayHarness(_workflow_app(calls), model=ScriptedModel([ModelStep.respond(_by_instructions)]))
            run = harness.start_run("gated", "Say hello.", settings={}, run_id="gate-1")
            harness.run()
        finally:
            durable_runner.set_session_cache_size(64)
        assert run.status == "Completed" and run.output == {"first": "Hello", "outcome": "timed out"}
        assert calls == []
        histories.append(harness.comparable_history("gate-1"))
    assert histories[0] == histories[1]


@pytest.mark.parametrize("cache_size", [64, 0])
def test_task_all_raises_the_failure_of_a_child_into_the_generator_after_every_child_finished(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    app = durable_agents.App(http_api=False)
    ran = []

    @app.activity_trigger(input_name="payload", activity="maybe")
    def maybe(payload: int) -> int:
        ran.append(payload)
        if payload == 2:
            raise ValueError("two is not allowed")
        return payload * 10

    @app.agent(ENGLISH, description="Fan-out.", name="fan")
    def fan(context):
        try:
            yield context.task_all([context.call_activity("maybe", n) for n in (1, 2, 3)])
        except durable_agents.TaskFailedError as exc:
            failure = (exc.name, exc.message)
        values = yield context.task_all([context.call_activity("maybe", n) for n in (4, 5)])
        return {"failure": list(failure), "values": values}

    harness = ReplayHarness(app, model=ScriptedModel([]))
    run = harness.start_run("fan", "go", settings={})
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == {"failure": ["maybe", "ValueError: two is not allowed"], "values": [40, 50]}
    assert sorted(ran) == [1, 2, 3, 4, 5]
    assert [sorted(a["input"] for a in actions) for actions in run.episode_actions[:2]] == [[1, 2, 3], [4, 5]]


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_plain_function_gets_durable_results_directly_and_an_async_one_awaits_them(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    app = durable_agents.App(http_api=False)

    @app.activity_trigger(input_name="payload", activity="double")
    def double(payload: int) -> int:
        return payload * 2

    @app.agent(ENGLISH, description="Plain.", name="plain")
    def plain(context):
        value = context.call_activity("double", 21)
        note = context.wait_for_external_event("note")
        return {"value": value, "note": note}

    @app.agent(FRENCH, description="Async.", name="concurrent")
    async def concurrent(context):
        a, b = await asyncio.gather(context.call_activity("double", 1), context.call_activity("double", 2))
        return [a, b]

    harness = ReplayHarness(app, model=ScriptedModel([]))
    plain_run = harness.start_run("plain", "go", settings={})
    async_run = harness.start_run("concurrent", "go", settings={})
    harness.run()
    harness.raise_event(plain_run.instance_id, "note", "hi")
    harness.run()
    # The event data as the Durable SDK gives it: the Python client's raise_event encodes twice (protocol doc, #295).
    assert plain_run.status == "Completed" and plain_run.output == {"value": 42, "note": json.dumps("hi")}
    assert async_run.status == "Completed" and async_run.output == [2, 4]
    assert [a["input"] for a in async_run.episode_actions[0]] == [1, 2]  # both in one fan-out


def test_unsupported_context_members_and_yields_fail_saying_what_to_use():
    app = durable_agents.App(http_api=False)

    @app.agent(ENGLISH, description="Bad.", name="bad_member")
    def bad_member(context):
        return context.call_http("GET", "https://example.com")

    @app.agent(FRENCH, description="Bad yield.", name="bad_yield")
    def bad_yield(context):
        yield 42

    harness = ReplayHarness(app, model=ScriptedModel([]))
    member = harness.start_run("bad_member", "go", settings={})
    yielded = harness.start_run("bad_yield", "go", settings={})
    harness.run()
    assert member.status == "Failed" and "context.call_http is not available" in member.output
    assert "call_activity" in member.output and "Runner.run_sync" in member.output
    assert yielded.status == "Failed" and "may only yield tasks of its context, not int" in yielded.output
    assert harness.activity_calls == []


@pytest.mark.parametrize("cache_size", [64, 0])
def test_agents_fan_out_as_sub_orchestrations_and_one_failing_child_is_tolerated(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    reviewer = Agent(name="reviewer", instructions="Review the order.")
    app = durable_agents.App(http_api=False)

    @app.agent(reviewer, description="Reviews one order.")
    def review_order(context):
        order = context.get_input()["input"]
        if order == "ORD-BAD":
            raise ValueError(f"cannot review {order}")
        return Runner.run_sync(reviewer, f"Review {order}").final_output

    @app.agent(ENGLISH, description="Audits a customer's orders.", name="audit")
    def audit(context):
        orders = context.get_input()["input"].split()
        children = [
            context.call_sub_orchestrator("review_order", {"agent": "reviewer", "input": order, "settings": {}},
                                          f"{context.instance_id}-{order}")
            for order in orders
        ]
        try:
            return (yield context.task_all(children))
        except durable_agents.TaskFailedError:  # raised once every child has finished: keep the others' reviews
            return [f"{order}: {child.exception.message}" if child.is_faulted else child.result
                    for order, child in zip(orders, children, strict=True)]

    def review(call):
        return [assistant_message(f"reviewed {call.input[-1]['content'].split()[-1]}")]

    harness = ReplayHarness(app, model=ScriptedModel([ModelStep.respond(review), ModelStep.respond(review)]))
    run = harness.start_run("audit", "ORD-1 ORD-BAD ORD-2", settings={}, run_id="audit-1")
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == ["reviewed ORD-1", "ORD-BAD: cannot review ORD-BAD", "reviewed ORD-2"]
    # All three children were started in the parent's first episode (one fan-out of sub-orchestrations).
    assert [a.get("instanceId") for a in run.episode_actions[0]] == ["audit-1-ORD-1", "audit-1-ORD-BAD",
                                                                     "audit-1-ORD-2"]
    assert harness.instances["audit-1-ORD-BAD"].status == "Failed"


@pytest.mark.parametrize("cache_size", [64, 0])
def test_continue_as_new_starts_a_fresh_execution_with_the_new_input(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    app = durable_agents.App(http_api=False)

    @app.activity_trigger(input_name="payload", activity="tick")
    def tick(payload: int) -> int:
        return payload + 1

    @app.agent(ENGLISH, description="Counts to three, one execution per step.", name="counter")
    def counter(context):
        value = context.get_input()["input"]
        value = yield context.call_activity("tick", value)
        if value < 3:
            context.continue_as_new({"agent": "counter", "input": value, "settings": {}})
            return None
        return {"value": value}

    harness = ReplayHarness(app, model=ScriptedModel([]))
    run = harness.start_run("counter", 0, settings={})
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == {"value": 3} and run.generations == 3
    assert [event["EventType"] for event in run.history][:2] == [12, 0]  # this execution's history only
    assert sum(1 for event in run.history if event["EventType"] == 4) == 1  # one TaskScheduled in the last one


def _gate_app() -> durable_agents.App:
    app = durable_agents.App(http_api=False)

    @app.agent(ENGLISH, description="Plans, waits for a person's approval of the plan, then acts.", name="planner")
    def planner(context):
        plan = {"steps": ["refund 20.00", "write to the customer"]}
        decision = yield context.request_approval("Refund 20.00 and write to the customer.", plan, step="plan",
                                                  timeout="PT5M")
        if decision["decision"] != "approved":
            return {"done": False, "decision": decision["decision"], "comment": decision["comment"]}
        return {"done": True, "by": decision["id"]}

    @app.agent(FRENCH, description="The same, written as a plain function.", name="plain_planner")
    def plain_planner(context):
        decision = context.request_approval("Send the draft?", {"draft": "Bonjour"}, step="draft")
        return decision["decision"]

    return app


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_workflow_asks_a_person_to_approve_its_plan_like_a_tool_approval(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    harness = ReplayHarness(_gate_app(), model=ScriptedModel([]))
    run = harness.start_run("planner", "go", settings={})
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    plan = {"steps": ["refund 20.00", "write to the customer"]}
    canonical = json.dumps(plan, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # Episode 1 (1 ms) wrote the request to the approval audit (a version-2 run); episode 2 started the wait.
    assert pending == {
        "id": "plan-1", "kind": "workflow", "tool": "plan", "summary": "Refund 20.00 and write to the customer.",
        "arguments": plan, "argumentsHash": "sha256:" + hashlib.sha256(canonical.encode()).hexdigest(),
        "requestedAt": "2026-01-01T00:00:00.002Z", "expiresAt": "2026-01-01T00:05:00.002Z",
    }
    assert harness.activity_calls == [("durable_agents_audit", {
        "runId": run.instance_id, "event": "requested",
        "items": [{"id": "plan-1", "kind": "workflow", "tool": "plan", "arguments": plan,
                   "argumentsHash": pending["argumentsHash"]}]})]
    harness.approve(run, "plan-1", "looks right")
    harness.run()
    assert run.status == "Completed" and run.output == {"done": True, "by": "plan-1"}
    assert [(d["id"], d["kind"], d["decision"], d["comment"]) for d in run.custom_status["approvals"]] == [
        ("plan-1", "workflow", "approved", "looks right")]


def test_a_rejected_plan_ends_the_workflow_and_an_unanswered_one_expires_after_its_own_timeout():
    harness = ReplayHarness(_gate_app(), model=ScriptedModel([]))
    rejected = harness.start_run("planner", "go", settings={})
    expired = harness.start_run("planner", "go", settings={"APPROVAL_TIMEOUT": "P7D"})
    blocking = harness.start_run("plain_planner", "go", settings={"APPROVAL_TIMEOUT": "PT1H"})
    harness.run(advance_timers=False)
    harness.reject(rejected, "plan-1", "too generous")
    assert [p["id"] for p in harness.pending_approvals(blocking)] == ["draft-1"]
    pending = harness.pending_approvals(blocking)[0]
    assert parse_time(pending["expiresAt"]) - parse_time(pending["requestedAt"]) == timedelta(hours=1)  # the setting
    harness.run()  # the clock jumps to the timers: the plan's 5 minutes (not 7 days), the draft's hour
    assert rejected.output == {"done": False, "decision": "rejected", "comment": "too generous"}
    assert expired.output == {"done": False, "decision": "expired", "comment": None}
    assert blocking.status == "Completed" and blocking.output == "expired"


def test_a_sub_orchestration_s_approval_is_listed_by_the_parent_and_decided_on_the_child():
    app = durable_agents.App(http_api=False)

    @app.agent(ENGLISH, description="Asks for a go-ahead.", name="child_gate")
    def child_gate(context):
        decision = yield context.request_approval("Go ahead?", {"order": context.get_input()["input"]})
        return decision["decision"]

    @app.agent(FRENCH, description="Runs a gated child.", name="parent_flow")
    def parent_flow(context):
        return (yield context.call_sub_orchestrator("child_gate", {"agent": "child_gate", "input": "ORD-9",
                                                                   "settings": {}}))

    harness = ReplayHarness(app, model=ScriptedModel([]))
    run = harness.start_run("parent_flow", "go", settings={}, run_id="parent")
    harness.run(advance_timers=False)
    assert run.custom_status["children"] == ["parent:sub-1"]  # what the HTTP API reads to list the child's approvals
    child = harness.instances["parent:sub-1"]
    assert [p["id"] for p in harness.pending_approvals(child)] == ["approval-1"]
    harness.approve(child, "approval-1")
    harness.run()
    assert run.status == "Completed" and run.output == "approved"
