"""Activity-backed approval checks (``durable_agents.approval_check``): real replay through the test kit's
ReplayHarness, the check and the tool run as the app's registered activities, the model scripted."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from agents import Agent, Runner
from agents.testing import ScriptedModel as SdkScriptedModel

import durable_agents
from durable_agents import ApprovalCheck, ToolCall, ToolRetry, activity_tool, approval_check
from durable_agents._timeline import ARCHIVE_ACTIVITY  # generations archived at continue-as-new
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs

CUSTOMER = "jordan.rivera@example.com"
SETTINGS = {"APPROVAL_TIMEOUT": "PT1H", "REFUND_APPROVAL_THRESHOLD": "100"}

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


class Refunds:
    """An app whose ``refund`` tool is gated by the activity-backed check ``over_limit``.

    ``rule(check)`` is the check's body (it sees every :class:`ApprovalCheck`, recorded in ``checks``); ``legacy``
    is passed to ``approval_check`` as is; the tool records its :class:`ToolCall` in ``refunds``."""

    def __init__(self, script: list[Any], rule: Callable[[ApprovalCheck], Any], *, legacy: Any = None,
                 retry: ToolRetry | None = None) -> None:
        self.bp = durable_agents.Blueprint()
        self.checks: list[ApprovalCheck] = []
        self.refunds: list[tuple[str, ToolCall]] = []
        owner = self

        @approval_check(self.bp, legacy=legacy, retry=retry)
        def over_limit(check: ApprovalCheck) -> bool:
            owner.checks.append(check)
            return rule(check)

        @activity_tool(self.bp, needs_approval=over_limit)
        def refund(order_id: str, amount: int, call: ToolCall) -> dict:
            """Refund an order."""
            owner.refunds.append((order_id, call))
            return {"refunded": amount, "order_id": order_id}

        self.agent = Agent(name="support", instructions="Refund orders.", tools=[refund])
        agent = self.agent

        @self.bp.agent(agent, description="Refunds.", name="support")
        def support(context):
            return Runner.run_sync(agent, context.get_input()["input"])

        self.app = durable_agents.App(http_api=False)
        self.app.register_functions(self.bp)
        self.model = ScriptedModel(script)
        self.harness = ReplayHarness(self.app, model=self.model)

    def check_inputs(self) -> list[dict[str, Any]]:
        """The inputs of the ``over_limit`` activity executions, in execution order."""
        return [value for name, value in self.harness.activity_calls if name == "over_limit"]


def _refund(order: str, amount: int, call_id: str) -> Any:
    return function_call("refund", {"order_id": order, "amount": amount}, call_id=call_id)


def _check_json(order: str, amount: int, call_id: str, earlier: list[tuple[str, str, int]]) -> dict[str, Any]:
    """The ApprovalCheck JSON the run sends for one call of run ``r``."""
    return {
        "arguments": {"order_id": order, "amount": amount},
        "call": {"runId": "r", "callId": call_id, "tool": "refund", "agent": "support", "customer": CUSTOMER,
                 "approved": False},
        "earlier": [{"callId": cid, "arguments": {"order_id": o, "amount": a}} for cid, o, a in earlier],
        "settings": SETTINGS,
    }


def test_three_sequential_checks_run_as_activities_and_each_sees_the_calls_checked_before_it():
    shop = Refunds([[_refund("ORD-1", 10, "c1")], [_refund("ORD-2", 20, "c2")], [_refund("ORD-3", 30, "c3")],
                    [assistant_message("done")]], rule=lambda check: False)
    run = shop.harness.start_run("support", "refund three", settings=SETTINGS, run_id="r", customer=CUSTOMER)
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert shop.check_inputs() == [
        _check_json("ORD-1", 10, "c1", []),
        _check_json("ORD-2", 20, "c2", [("c1", "ORD-1", 10)]),
        _check_json("ORD-3", 30, "c3", [("c1", "ORD-1", 10), ("c2", "ORD-2", 20)]),
    ]
    assert [len(check.earlier) for check in shop.checks] == [0, 1, 2]
    assert shop.checks[2].earlier == (("c1", {"order_id": "ORD-1", "amount": 10}),
                                      ("c2", {"order_id": "ORD-2", "amount": 20}))
    assert shop.checks[0].setting("REFUND_APPROVAL_THRESHOLD") == "100" and shop.checks[0].setting("NOPE") is None
    # False: no approval; each check ran before its tool, in one activity of its own.
    assert [name for name, _ in shop.harness.activity_calls if name != ARCHIVE_ACTIVITY] == [
        "invoke_model", "over_limit", "refund", "invoke_model", "over_limit", "refund",
        "invoke_model", "over_limit", "refund", "invoke_model"]
    assert [(order, call.customer, call.approved) for order, call in shop.refunds] == [
        ("ORD-1", CUSTOMER, False), ("ORD-2", CUSTOMER, False), ("ORD-3", CUSTOMER, False)]
    assert run.custom_status["approvals"] == [] and run.custom_status["pendingApprovals"] == []


def test_three_parallel_calls_of_one_turn_are_checked_in_the_model_s_order():
    shop = Refunds([[_refund("ORD-1", 10, "c1"), _refund("ORD-2", 20, "c2"), _refund("ORD-3", 30, "c3")],
                    [assistant_message("done")]], rule=lambda check: False)
    run = shop.harness.start_run("support", "refund three", settings=SETTINGS, run_id="r", customer=CUSTOMER)
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert shop.check_inputs() == [
        _check_json("ORD-1", 10, "c1", []),
        _check_json("ORD-2", 20, "c2", [("c1", "ORD-1", 10)]),
        _check_json("ORD-3", 30, "c3", [("c1", "ORD-1", 10), ("c2", "ORD-2", 20)]),
    ]
    assert sorted(order for order, _ in shop.refunds) == ["ORD-1", "ORD-2", "ORD-3"]


def test_a_check_that_answers_true_makes_the_run_wait_and_the_approved_call_knows_it_was_approved():
    shop = Refunds([[_refund("ORD-1", 500, "c1")], [assistant_message("refunded")]],
                   rule=lambda check: check.arguments["amount"] > int(check.setting("REFUND_APPROVAL_THRESHOLD", "0")))
    run = shop.harness.start_run("support", "refund", settings=SETTINGS, run_id="r", customer=CUSTOMER)
    shop.harness.run(advance_timers=False)
    assert run.status == "Running"
    assert [p["id"] for p in shop.harness.pending_approvals(run)] == ["c1"]
    assert shop.refunds == []
    assert [name for name, _ in shop.harness.activity_calls] == ["invoke_model", "over_limit", "durable_agents_audit"]
    shop.harness.approve(run, "c1", "fine", decided_by={"id": "dev-ana", "name": "ana"})
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert shop.refunds == [("ORD-1", ToolCall("r", "c1", "refund", "support", customer=CUSTOMER, approved=True))]
    [refund_input] = [value for name, value in shop.harness.activity_calls if name == "refund"]
    assert refund_input["call"] == {"runId": "r", "callId": "c1", "tool": "refund", "agent": "support",
                                    "customer": CUSTOMER, "approved": True}
    # The check ran once: the replay after the approval read its answer from the history.
    assert len(shop.check_inputs()) == 1
    assert run.custom_status["approvals"][0]["decidedBy"] == {"id": "dev-ana", "name": "ana"}


def test_a_check_that_fails_needs_approval_fail_closed():
    def broken(check: ApprovalCheck) -> bool:
        raise ConnectionError("ledger unreachable")

    shop = Refunds([[_refund("ORD-1", 5, "c1")], [assistant_message("rejected noted")]], rule=broken,
                   retry=ToolRetry(max_attempts=2, first_retry_interval_ms=1000))
    run = shop.harness.start_run("support", "refund", settings=SETTINGS, run_id="r", customer=CUSTOMER)
    # Timers advance: the check's retry waits 1 s on a durable timer; the approval timer (1 h) is not reached
    # before the run is stopped at the approval (the harness stops when nothing but that timer is due).
    for _ in range(50):
        if shop.harness.pending_approvals(run) or not shop.harness.step(advance_timers=True):
            break
    assert len(shop.check_inputs()) == 2  # both attempts failed
    assert [p["id"] for p in shop.harness.pending_approvals(run)] == ["c1"]
    shop.harness.reject(run, "c1", "not now")
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed" and shop.refunds == []
    assert "not now" in function_outputs(shop.model.requests[1])["c1"]


@pytest.mark.parametrize("answer", [None, "yes", 1])
def test_a_check_that_answers_something_other_than_a_boolean_needs_approval(answer):
    shop = Refunds([[_refund("ORD-1", 5, "c1")], [assistant_message("ok")]], rule=lambda check: answer)
    run = shop.harness.start_run("support", "refund", settings=SETTINGS, run_id="r", customer=CUSTOMER)
    shop.harness.run(advance_timers=False)
    assert [p["id"] for p in shop.harness.pending_approvals(run)] == ["c1"] and shop.refunds == []


def test_a_call_with_nan_arguments_runs_no_check_and_the_tool_refuses_it():
    nan = function_call("refund", '{"order_id": "ORD-1", "amount": NaN}', call_id="c1")
    shop = Refunds([[nan], [assistant_message("sorry")]], rule=lambda check: True)
    run = shop.harness.start_run("support", "refund", settings=SETTINGS, run_id="r", customer=CUSTOMER)
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert shop.checks == [] and shop.refunds == []
    assert [name for name, _ in shop.harness.activity_calls] == ["invoke_model", "invoke_model"]
    # NaN is no int: the SDK asks for approval without calling the rule, and the run refuses the call unasked.
    assert function_outputs(shop.model.requests[1])["c1"] == (
        "The call to 'refund' was not run: its arguments are not valid JSON (NaN is not valid JSON); "
        "call it again with plain JSON numbers and strings.")
    assert all(not status["pendingApprovals"] for status in run.custom_statuses)


def _start_v1(shop: Refunds) -> Any:
    """A run started before version 2: a hand-made orchestration input without ``version`` (nor customer)."""
    return shop.harness.start("support", {"agent": "support", "input": "refund", "settings": SETTINGS}, "r")


def test_a_version_1_run_uses_the_legacy_rule_and_runs_no_check_activity():
    async def legacy(ctx, arguments: dict, call_id: str) -> bool:
        return arguments["amount"] > 100

    shop = Refunds([[_refund("ORD-1", 500, "c1"), _refund("ORD-2", 5, "c2")], [assistant_message("ok")]],
                   rule=lambda check: pytest.fail("the activity must not run for a version-1 run"), legacy=legacy)
    run = _start_v1(shop)
    shop.harness.run(advance_timers=False)
    assert [p["id"] for p in shop.harness.pending_approvals(run)] == ["c1"]
    assert shop.checks == [] and shop.check_inputs() == []
    # Version 1: no audit activity either; the ungated call of the turn ran before the wait.
    assert [name for name, _ in shop.harness.activity_calls] == ["invoke_model", "refund"]
    shop.harness.approve(run, "c1")
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert sorted((order, call.customer, call.approved) for order, call in shop.refunds) == [
        ("ORD-1", None, True), ("ORD-2", None, False)]


def test_a_version_1_run_takes_a_boolean_legacy_as_it_is_and_without_legacy_runs_the_activity():
    shop = Refunds([[_refund("ORD-1", 5, "c1")], [assistant_message("ok")]], rule=lambda check: False,
                   legacy=True)
    run = _start_v1(shop)
    shop.harness.run(advance_timers=False)
    assert [p["id"] for p in shop.harness.pending_approvals(run)] == ["c1"] and shop.checks == []

    shop = Refunds([[_refund("ORD-1", 5, "c1")], [assistant_message("ok")]], rule=lambda check: False)
    run = _start_v1(shop)
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed"
    assert [name for name, _ in shop.harness.activity_calls] == ["invoke_model", "over_limit", "refund",
                                                                "invoke_model"]
    assert shop.check_inputs()[0]["call"]["customer"] is None


def test_outside_an_orchestration_the_check_is_called_in_process(monkeypatch):
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", "100")
    shop = Refunds([], rule=lambda check: check.arguments["amount"] > int(check.setting("REFUND_APPROVAL_THRESHOLD")))

    big = SdkScriptedModel([[_refund("ORD-1", 500, "c1")], [assistant_message("waiting")]])
    result = asyncio.run(Runner.run(shop.agent.clone(model=big), "refund", context={"customer": CUSTOMER}))
    assert [item.raw_item.call_id for item in result.interruptions] == ["c1"] and shop.refunds == []
    [check] = shop.checks
    assert (check.arguments, check.call, check.earlier) == (
        {"order_id": "ORD-1", "amount": 500}, ToolCall("local", "c1", "refund", "", customer=CUSTOMER), ())

    small = SdkScriptedModel([[_refund("ORD-2", 5, "c2")], [assistant_message("refunded")]])
    result = asyncio.run(Runner.run(shop.agent.clone(model=small), "refund"))
    assert result.final_output == "refunded" and result.interruptions == []
    assert [(order, call.run_id) for order, call in shop.refunds] == [("ORD-2", "local")]
    assert shop.checks[1].earlier == ()  # outside a durable run nothing is remembered between calls
