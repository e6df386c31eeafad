"""The store's ``resolution`` (human gate between agents) and ``order_audit`` (fan-out / fan-in) workflows
(agents/resolution.py, agents/order_audit.py) through real azure-functions-durable replay (durable_agents.testing):
scripted models, the real tool activities over data/orders.json and a fresh SQLite ledger, with and without the
live-run cache; and both workflows offline on the demo model, as ``bash scripts/run-local.sh`` runs them."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from agents.testing import ModelStep

import durable_agents
from activities import bp as tools
from activities.ledger import get_ledger
from durable_agents import _demo
from durable_agents import _runner as durable_runner
from durable_agents._contracts import RUN_VERSION, parse_time
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, model_error

REPO_ROOT = Path(__file__).resolve().parents[2]
PLANNER = "You are the resolution planner"
EXECUTOR = "You are the resolution executor"
REVIEWER = "You are the order reviewer"
SUMMARIZER = "You are the audit summarizer"
PLAN = {"order_id": "ORD-1001", "steps": ["Refund 291.50 USD", "Write to the customer"], "refund_amount": 291.5,
        "customer_message": "We are refunding 291.50 USD for ORD-1001."}
SETTINGS = {"REFUND_APPROVAL_THRESHOLD": "100"}
JORDAN = "jordan.rivera@example.com"  # ORD-1001
SAM = "sam.whitaker@example.org"  # ORD-1042, ORD-1019, ORD-1006


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """A fresh ledger, no model configured, the process's demo responders empty, a fresh live-run cache."""
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    for name in ("REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING", "ORDERS_DATA_PATH",
                 "AGENT_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_demo, "_responders", [])
    durable_runner.clear_session_cache()
    yield
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()


@pytest.fixture(params=[64, 0], ids=["cached", "replaying"])
def cache_size(request):
    """Run the test with the live-run cache (64) and with every episode replayed from history (0)."""
    durable_runner.set_session_cache_size(request.param)
    yield request.param
    durable_runner.set_session_cache_size(64)


def _app() -> durable_agents.App:
    app = durable_agents.App(http_api=False, app_dir=REPO_ROOT)
    app.register_functions(tools)
    assert app.register_agent_modules("resolution", "order_audit") == ["resolution", "order_audit"]
    return app


def _refunds(tmp_path: Path, order_id: str) -> list[Any]:
    from activities.ledger import SqliteLedger

    return SqliteLedger(tmp_path / "ledger.sqlite3").list_refunds(order_id)


def _text(call) -> str:
    return json.dumps([item if isinstance(item, dict) else str(item) for item in call.input], default=str)


def _tool_outputs(call) -> int:
    return sum(1 for item in call.input if isinstance(item, dict) and item.get("type") == "function_call_output")


def _resolution_model(executor_steps: list[Any] | None = None) -> ScriptedModel:
    """The planner: lookup, then :data:`PLAN`; the executor: ``executor_steps`` (default: refund, message, done)."""
    executor_steps = executor_steps if executor_steps is not None else [
        [function_call("refund_order", {"order_id": "ORD-1001", "amount": 291.5, "reason": "arrived broken"},
                       call_id="call_refund")],
        [function_call("send_message", {"text": PLAN["customer_message"]}, call_id="call_msg")],
        [assistant_message("Refunded 291.50 USD and wrote to the customer.")],
    ]
    return ScriptedModel([
        [function_call("lookup_order", {"order_id": "ORD-1001"}, call_id="call_lookup")],
        [assistant_message(json.dumps(PLAN))],
        *executor_steps,
    ])


def test_an_approved_plan_is_carried_out_and_its_large_refund_still_needs_its_own_approval(cache_size, tmp_path):
    model = _resolution_model()
    harness = ReplayHarness(_app(), model=model)
    run = harness.start_run("resolution", "ORD-1001 arrived broken, please refund it.", settings=SETTINGS,
                            run_id="res-1", customer=JORDAN)
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    assert pending["id"] == "plan-1" and pending["kind"] == "workflow" and pending["tool"] == "plan"
    assert pending["arguments"] == PLAN
    assert pending["summary"] == "ORD-1001: refund 291.50; Refund 291.50 USD; Write to the customer"
    assert parse_time(pending["expiresAt"]) - parse_time(pending["requestedAt"]) == timedelta(days=1)  # default
    assert run.custom_status["stage"] == "awaiting plan approval"
    assert model.requests[0]["system_instructions"].startswith(PLANNER)
    assert model.requests[1]["output_schema"] is not None  # the plan is structured output

    harness.approve(run, "plan-1", "Photos confirm it.")
    harness.run(advance_timers=False)
    [refund_approval] = harness.pending_approvals(run)  # the executor's refund is above the threshold
    assert refund_approval["id"] == "call_refund" and refund_approval["kind"] == "tool"
    assert run.custom_status["stage"] == "executing" and _refunds(tmp_path, "ORD-1001") == []
    executor_input = model.requests[2]["input"][0]["content"]
    assert model.requests[2]["system_instructions"].startswith(EXECUTOR)
    assert "Reviewer's comment: Photos confirm it." in executor_input and '"refund_amount":291.5' in executor_input

    harness.approve(run, "call_refund", "ok")
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output["outcome"] == "executed" and run.output["result"] == (
        "Refunded 291.50 USD and wrote to the customer.")
    assert run.output["decision"] == {"decision": "approved", "comment": "Photos confirm it."}
    assert run.custom_status["stage"] == "done"
    assert [(a["id"], a["kind"], a["decision"]) for a in run.custom_status["approvals"]] == [
        ("plan-1", "workflow", "approved"), ("call_refund", "tool", "approved")]
    [refund] = _refunds(tmp_path, "ORD-1001")
    assert refund.key == "res-1:call_refund" and str(refund.amount) == "291.50"
    model.assert_complete()
    assert [name for name, _ in harness.activity_calls].count("refund_order") == 1


@pytest.mark.parametrize("outcome", ["rejected", "expired"])
def test_a_rejected_or_expired_plan_refunds_nothing_and_tells_the_customer(cache_size, tmp_path, outcome):
    model = _resolution_model(executor_steps=[])
    harness = ReplayHarness(_app(), model=model)
    settings = {**SETTINGS, "PLAN_APPROVAL_TIMEOUT": "PT2H"}
    run = harness.start_run("resolution", "Refund ORD-1001, I changed my mind.", settings=settings,
                            run_id=f"res-{outcome}", customer=JORDAN)
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    assert parse_time(pending["expiresAt"]) - parse_time(pending["requestedAt"]) == timedelta(hours=2)
    if outcome == "rejected":
        harness.reject(run, "plan-1", "Outside the return window.")
    harness.run()  # an expiry: the clock jumps to the plan's timer
    assert run.status == "Completed", run.output
    output = run.output
    assert output["outcome"] == outcome and output["result"] is None
    assert output["decision"]["decision"] == outcome
    assert output["customerMessage"]["status"] == "sent"
    [message] = get_ledger().list_messages(JORDAN)
    assert output["customerMessage"]["message_id"] == message.message_id
    assert "nothing was refunded and the customer was told" in output["summary"]
    assert _refunds(tmp_path, "ORD-1001") == []
    model.assert_complete()  # the executor never ran
    sent = [payload for name, payload in harness.activity_calls if name == "send_message"]
    assert len(sent) == 1 and sent[0]["call"] == {"runId": f"res-{outcome}", "callId": f"plan-{outcome}-send_message",
                                                  "tool": "send_message", "agent": "resolution",
                                                  "customer": JORDAN, "approved": False}
    assert set(sent[0]["args"]) == {"text"}
    assert "cannot resolve it" in sent[0]["args"]["text"] if outcome == "rejected" else "yet" in sent[0]["args"]["text"]


def _audit_model(failing_order: str | None) -> ScriptedModel:
    """Reviewers (any order of arrival): lookup, then a review; the one for ``failing_order`` gets a 400 (not
    retried); the summarizer echoes what it got."""

    def answer(call):
        text = _text(call)
        if call.system_instructions.startswith(SUMMARIZER):
            data = json.loads(call.input[0]["content"].split("\n", 1)[1])
            return [assistant_message(f"{len(data['reviews'])} reviewed, failed: "
                                      + ",".join(f["orderId"] for f in data["failedReviews"]))]
        assert call.system_instructions.startswith(REVIEWER)
        order_id = next(o for o in ("ORD-1006", "ORD-1019", "ORD-1042") if o in text)
        if order_id == failing_order:
            return model_error(400, message="scripted bad request")
        if _tool_outputs(call) == 0:
            return [function_call("lookup_order", {"order_id": order_id}, call_id=f"call_{order_id}")]
        verdict = "attention" if order_id == "ORD-1042" else "ok"
        return [assistant_message(json.dumps({"order_id": order_id, "verdict": verdict, "findings": "checked"}))]

    return ScriptedModel([ModelStep.respond(answer) for _ in range(6)])


def test_the_audit_fans_out_one_reviewer_per_order_and_tolerates_a_failing_one(cache_size):
    model = _audit_model("ORD-1019")
    harness = ReplayHarness(_app(), model=model)
    run = harness.start_run("order_audit", "Audit my orders please", settings={}, run_id="audit-1", customer=SAM)
    harness.run()
    assert run.status == "Completed", run.output
    output = run.output
    assert output["customerEmail"] == "sam.whitaker@example.org"
    assert output["orders"] == ["ORD-1042", "ORD-1019", "ORD-1006"]
    assert output["reviews"] == [
        {"order_id": "ORD-1042", "verdict": "attention", "findings": "checked"},
        {"order_id": "ORD-1006", "verdict": "ok", "findings": "checked"}]
    [failed] = output["failed"]
    assert failed["orderId"] == "ORD-1019" and "scripted bad request" in failed["error"]
    assert output["summary"] == "2 reviewed, failed: ORD-1019"
    # All three children were started in one episode, with deterministic instance ids.
    started = [a for actions in run.episode_actions for a in actions if "suborchestration" in a]
    assert [a["instanceId"] for a in started] == ["audit-1:ORD-1042", "audit-1:ORD-1019", "audit-1:ORD-1006"]
    assert len({id(actions) for actions in run.episode_actions for a in actions if "suborchestration" in a}) == 1
    child_input = started[0]["input"]  # the harness shows the JSON text the Python SDK sends
    child_input = json.loads(child_input) if isinstance(child_input, str) else child_input
    assert child_input == {"agent": "order_reviewer", "input": "Review order ORD-1042.", "settings": {},
                           "customer": SAM, "version": RUN_VERSION}
    assert harness.instances["audit-1:ORD-1019"].status == "Failed"
    assert harness.instances["audit-1:ORD-1042"].output["finalOutput"]["verdict"] == "attention"
    assert run.custom_status["stage"] == "done"
    assert model.remaining_steps == 0  # 2 x 2 reviewer calls, 1 failed one, the summary


def test_the_histories_of_an_audit_are_the_same_with_and_without_the_live_run_cache():
    histories = []
    for size in (64, 0):
        durable_runner.clear_session_cache()
        durable_runner.set_session_cache_size(size)
        try:
            harness = ReplayHarness(_app(), model=_audit_model("ORD-1006"))
            run = harness.start_run("order_audit", "audit", settings={}, run_id="audit-h", customer=SAM)
            harness.run()
        finally:
            durable_runner.set_session_cache_size(64)
        assert run.status == "Completed", run.output
        # Each child's ExecutionStarted names its parent's execution id, which is new in every harness: left out.
        histories.append([[event for event in harness.comparable_history(i) if ("EventType", "0") not in event]
                          for i in sorted(harness.instances)])
    assert histories[0] == histories[1]


def test_an_audit_without_a_customer_fails_and_one_where_every_review_fails_too():
    harness = ReplayHarness(_app(), model=ScriptedModel([ModelStep.respond(lambda call: model_error(400))] * 3))
    # An email in the text is not whom the run acts for: without a customer the audit fails at once.
    no_customer = harness.start_run("order_audit", f"Audit the orders of {SAM}", settings={})
    all_fail = harness.start_run("order_audit", "Audit my orders", settings={}, customer=SAM)
    harness.run()
    assert no_customer.status == "Failed" and "start it with a customer" in no_customer.output
    assert all_fail.status == "Failed" and "every review of sam.whitaker@example.org's orders failed" in all_fail.output


def test_both_workflows_run_offline_on_the_demo_model(tmp_path):
    harness = ReplayHarness(_app())  # no model: the real invoke_model, no model configured: the demo model
    run = harness.start_run("resolution", "Order ORD-1008 arrived broken, I want a refund.", settings=SETTINGS,
                            customer="jonas.becker@example.de")
    harness.run(advance_timers=False)
    [plan] = harness.pending_approvals(run)
    assert plan["arguments"]["order_id"] == "ORD-1008" and plan["arguments"]["refund_amount"] == 384.5
    harness.approve(run, "plan-1")
    harness.run(advance_timers=False)
    [refund] = harness.pending_approvals(run)
    assert refund["tool"] == "refund_order" and refund["arguments"]["amount"] == 384.5
    harness.approve(run, refund["id"])
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output["outcome"] == "executed" and run.custom_status["demo"] is True
    assert run.output["result"].startswith("[demo model] Refunded 384.50 EUR on ORD-1008")
    assert len(_refunds(tmp_path, "ORD-1008")) == 1

    audit = harness.start_run("order_audit", "Audit my orders", settings={}, customer=SAM)
    harness.run()
    assert audit.status == "Completed", audit.output
    assert [(r["order_id"], r["verdict"]) for r in audit.output["reviews"]] == [
        ("ORD-1042", "attention"), ("ORD-1019", "ok"), ("ORD-1006", "ok")]
    assert audit.output["summary"] == ("[demo model] 3 of 3 orders of sam.whitaker@example.org reviewed: 2 ok, 1 need "
                                       "attention. ORD-1042: high value (668.00 USD).")
