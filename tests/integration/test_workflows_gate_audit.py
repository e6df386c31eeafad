"""End to end: the ``resolution`` (human gate between agents) and ``order_audit`` (fan-out / fan-in) workflows of
the real app on the local runtime, the real OpenAI client talking to the scripted model server, over HTTP, on both
APIs.

The model server tells the workflows' agents apart by their instructions (``instructionsContain``); each case uses its
own order, which appears in the planner's complaint, in the executor's plan and in the reviewer's input.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from activities.ledger import SqliteLedger
from tests.integration.conftest import AppStack, http
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

PLANNER = "You are the resolution planner"
EXECUTOR = "You are the resolution executor"
REVIEWER = "You are the order reviewer"
SUMMARIZER = "You are the audit summarizer"


def step(instructions: str, contains: str, outputs: int | None = None, **fields: Any) -> dict[str, Any]:
    """A script step for the agent whose instructions contain ``instructions``, on the input that contains
    ``contains``, after ``outputs`` tool outputs (any number when ``None``)."""
    when: dict[str, Any] = {"instructionsContain": instructions, "userContains": contains}
    if outputs is not None:
        when["toolOutputs"] = outputs
    return {"when": when, **fields}


def call(name: str, **arguments: Any) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": arguments}]


def plan(order_id: str, amount: float | None, message: str) -> dict[str, Any]:
    steps = [f"Refund {amount} on {order_id}"] if amount else []
    return {"order_id": order_id, "steps": [*steps, "Write to the customer"], "refund_amount": amount,
            "customer_message": message}


def planner_steps(order_id: str, amount: float | None, *, delay: float = 0.0) -> list[dict[str, Any]]:
    return [
        step(PLANNER, order_id, 0, calls=call("lookup_order", order_id=order_id)),
        step(PLANNER, order_id, 1, delay=delay, json=plan(order_id, amount, f"About {order_id}: we refund you.")),
    ]


SCRIPT = [
    # approved: ORD-1001, a 291.50 USD refund (above the threshold: the executor's call waits for its approval).
    *planner_steps("ORD-1001", 291.50),
    step(EXECUTOR, "ORD-1001", 0, calls=call("refund_order", order_id="ORD-1001", amount=291.50,
                                             reason="arrived broken")),
    step(EXECUTOR, "ORD-1001", 1, calls=call("send_message",
                                             text="About ORD-1001: we refund you.")),
    step(EXECUTOR, "ORD-1001", 2, text="Refunded 291.50 USD for ORD-1001 and wrote to the customer."),
    # rejected: ORD-1003 (the executor is never asked).
    *planner_steps("ORD-1003", 738.60),
    # killed while the plan waits: ORD-1010, 50.00 EUR (below the threshold: no second approval).
    *planner_steps("ORD-1010", 50.00),
    step(EXECUTOR, "ORD-1010", 0, calls=call("refund_order", order_id="ORD-1010", amount=50.00, reason="late")),
    step(EXECUTOR, "ORD-1010", 1, calls=call("send_message",
                                             text="About ORD-1010: we refund you.")),
    step(EXECUTOR, "ORD-1010", 2, text="Refunded 50.00 EUR for ORD-1010."),
    # audit of sam.whitaker@example.org: ORD-1042, ORD-1019 (its reviewer's model call fails: 400), ORD-1006.
    step(REVIEWER, "ORD-1019", failures=[{"status": 400, "times": 100}], text="never answered"),
    *[s for order_id, verdict in (("ORD-1042", "attention"), ("ORD-1006", "ok")) for s in (
        step(REVIEWER, order_id, 0, calls=call("lookup_order", order_id=order_id)),
        step(REVIEWER, order_id, 1, json={"order_id": order_id, "verdict": verdict, "findings": f"{order_id} ok"}),
    )],
    step(SUMMARIZER, "sam.whitaker@example.org", text="2 of 3 orders reviewed; ORD-1042 needs attention; ORD-1019 "
                                                      "could not be reviewed."),
]


@pytest.fixture(scope="module", params=["responses", "chat_completions"])
def stack(request, tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp(f"gate-{request.param}"), SCRIPT, api=request.param)
    yield app
    app.close()


def _decide(stack: AppStack, run_id: str, approval_id: str, approved: bool, comment: str | None = None) -> Any:
    answer = http("POST", stack.url(f"/api/runs/{run_id}/approvals/{approval_id}"),
                  {"approved": approved, "comment": comment})
    assert answer.status == 202, answer.body
    assert answer.json["recorded"] is True
    return answer.json


def _messages(stack: AppStack, email: str) -> list[Any]:
    return SqliteLedger(stack.ledger_path).list_messages(email)


def _steps_of(stack: AppStack, order_id: str) -> dict[int, int]:
    """Requests per script step whose body mentions ``order_id``."""
    counts: dict[int, int] = {}
    for entry in stack.model.requests:
        if order_id in json.dumps(entry["body"]):
            counts[entry["step"]] = counts.get(entry["step"], 0) + 1
    return counts


def _wait_pending(stack: AppStack, run_id: str, approval_id: str) -> dict[str, Any]:
    def pending():
        run = stack.run(run_id)
        assert run["status"] not in ("completed", "failed", "cancelled"), run
        return next((p for p in run["pendingApprovals"] if p["id"] == approval_id), None)

    return wait_for(pending, timeout=60, what=f"approval {approval_id} of {run_id}")


def test_workflows_are_listed_with_their_agents(stack):
    listed = {a["name"]: a for a in http("GET", stack.url("/api/agents")).json["agents"]}
    assert listed["resolution"]["kind"] == "workflow" and listed["order_audit"]["kind"] == "workflow"
    assert {"name": "refund_order", "approval": "conditional"} in listed["resolution"]["approvalTools"]
    assert listed["order_reviewer"]["kind"] == "agent"


def test_an_approved_plan_runs_the_executor_whose_large_refund_needs_its_own_approval(stack):
    run_id = stack.start_run("My headphones ORD-1001 arrived broken, please refund them.", agent="resolution",
                             customer="jordan.rivera@example.com")
    plan_approval = _wait_pending(stack, run_id, "plan-1")
    assert plan_approval["kind"] == "workflow" and plan_approval["tool"] == "plan"
    assert plan_approval["arguments"]["order_id"] == "ORD-1001"
    assert plan_approval["summary"].startswith("ORD-1001: refund 291.50")
    run = stack.run(run_id)
    assert run["status"] == "awaiting_approval" and stack.refunds("ORD-1001") == []

    _decide(stack, run_id, "plan-1", True, "Photos confirm it.")
    refund_approval = wait_for(lambda: next((p for p in stack.run(run_id)["pendingApprovals"]
                                             if p["tool"] == "refund_order"), None), timeout=60, what="refund approval")
    assert refund_approval["kind"] == "tool"
    assert Decimal(str(refund_approval["arguments"]["amount"])) == Decimal("291.50")
    assert stack.refunds("ORD-1001") == []  # the plan's approval does not approve the refund itself

    _decide(stack, run_id, refund_approval["id"], True)
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    output = run["output"]
    assert output["outcome"] == "executed" and output["orderId"] == "ORD-1001"
    assert output["result"] == "Refunded 291.50 USD for ORD-1001 and wrote to the customer."
    assert output["decision"] == {"decision": "approved", "comment": "Photos confirm it."}
    assert [(a["id"], a["decision"]) for a in run["approvals"]] == [("plan-1", "approved"),
                                                                    (refund_approval["id"], "approved")]
    [refund] = stack.refunds("ORD-1001")
    assert refund.amount == Decimal("291.50") and refund.key == f"{run_id}:{refund_approval['id']}"
    assert [m.text for m in _messages(stack, "jordan.rivera@example.com")] == ["About ORD-1001: we refund you."]
    assert all(n == 1 for n in _steps_of(stack, "ORD-1001").values())


def test_a_rejected_plan_messages_the_customer_and_refunds_nothing(stack):
    run_id = stack.start_run("Refund ORD-1003, I changed my mind.", agent="resolution",
                             customer="amelia.chen@example.com")
    _wait_pending(stack, run_id, "plan-1")
    _decide(stack, run_id, "plan-1", False, "Outside the return window.")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    output = run["output"]
    assert output["outcome"] == "rejected" and output["result"] is None
    assert output["decision"] == {"decision": "rejected", "comment": "Outside the return window."}
    assert output["customerMessage"]["status"] == "sent"
    [message] = _messages(stack, "amelia.chen@example.com")
    assert "cannot resolve it as proposed" in message.text
    assert stack.refunds("ORD-1003") == []
    assert not any(EXECUTOR in json.dumps(r["body"]) for r in stack.model.requests if "ORD-1003" in json.dumps(r))


def test_the_audit_reviews_orders_in_parallel_and_reports_the_failed_review(stack):
    run_id = stack.start_run("Audit the orders of sam.whitaker@example.org", agent="order_audit",
                             customer="sam.whitaker@example.org")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    output = run["output"]
    assert output["orders"] == ["ORD-1042", "ORD-1019", "ORD-1006"]
    assert [(r["order_id"], r["verdict"]) for r in output["reviews"]] == [("ORD-1042", "attention"),
                                                                          ("ORD-1006", "ok")]
    [failed] = output["failed"]
    assert failed["orderId"] == "ORD-1019" and "400" in failed["error"]
    assert output["summary"].startswith("2 of 3 orders reviewed")
    # The children (instance ids "<run id>:<order id>", which no run started over HTTP can take) are listed as
    # order_reviewer runs; GET /api/runs/{id} refuses ids with ':' (RUN_ID_PATTERN), the Durable API shows them.
    listed = {r["id"]: r for r in http("GET", stack.url("/api/runs?agent=order_reviewer&top=100")).json["runs"]}
    assert listed[f"{run_id}:ORD-1019"]["status"] == "failed"
    assert listed[f"{run_id}:ORD-1042"]["status"] == listed[f"{run_id}:ORD-1006"]["status"] == "completed"
    child = http("GET", stack.url(f"/runtime/webhooks/durabletask/instances/{run_id}:ORD-1019")).json
    assert child["runtimeStatus"] == "Failed"


def test_host_killed_while_the_plan_waits_resumes_and_pays_nothing_twice(stack):
    run_id = stack.start_run("ORD-1010 came two weeks late, I want 50 EUR back.", agent="resolution",
                             customer="pieter.vandijk@example.nl")
    _wait_pending(stack, run_id, "plan-1")
    before = _steps_of(stack, "ORD-1010")
    assert sorted(before.values()) == [1, 1]  # the planner's two model calls
    stack.runtime.kill()
    stack.runtime.start()
    _wait_pending(stack, run_id, "plan-1")  # the approval survived the crash
    _decide(stack, run_id, "plan-1", True)
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"]["result"] == "Refunded 50.00 EUR for ORD-1010."
    counts = _steps_of(stack, "ORD-1010")
    assert len(counts) == 5 and all(n == 1 for n in counts.values()), counts  # no model call was paid twice
    [refund] = stack.refunds("ORD-1010")
    assert refund.amount == Decimal("50.00")
    assert len(_messages(stack, "pieter.vandijk@example.nl")) == 1


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_a_plan_nobody_decides_expires_after_plan_approval_timeout(tmp_path, api):
    app = AppStack(tmp_path, planner_steps("ORD-1004", 308.00), api=api, env={"PLAN_APPROVAL_TIMEOUT": "PT2S"})
    try:
        run_id = app.start_run("Refund ORD-1004, the sandals are too small.", agent="resolution",
                               customer="marcus.oconnell@example.net")
        pending = _wait_pending(app, run_id, "plan-1")
        requested = time.strptime(pending["requestedAt"][:19], "%Y-%m-%dT%H:%M:%S")
        expires = time.strptime(pending["expiresAt"][:19], "%Y-%m-%dT%H:%M:%S")
        assert time.mktime(expires) - time.mktime(requested) == 2
        run = app.wait_status(run_id, "completed", "failed", timeout=30)
        assert run["status"] == "completed", run
        assert run["output"]["outcome"] == "expired" and run["approvals"][0]["decision"] == "expired"
        [message] = _messages(app, "marcus.oconnell@example.net")
        assert "could not finish reviewing" in message.text
        assert app.refunds("ORD-1004") == []
    finally:
        app.close()
