"""End to end: the real app (function_app.py) on the local runtime as a separate process, the real OpenAI client
in its `invoke_model` activity talking to a scripted OpenAI-compatible model server, driven over the HTTP API.

Each test's user text carries a tag (``[case-x]``) that the model server's script matches, so one server and one
runtime per API serve several tests; ``toolOutputs`` selects the step within a conversation.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.conftest import AppStack, http
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration


def step(tag: str, outputs: int, **fields: Any) -> dict[str, Any]:
    """A script step for conversation ``tag`` after ``outputs`` tool outputs."""
    return {"when": {"userContains": tag, "toolOutputs": outputs}, **fields}


def calls(*items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": args} for name, args in items]


SCRIPT = [
    # [case-lookup]: one tool call, then an answer.
    step("[case-lookup]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1005"}))),
    step("[case-lookup]", 1, text="Order ORD-1005 was delivered."),
    # [case-parallel]: two tool calls in one turn, then an answer.
    step("[case-parallel]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1001"}),
                                           ("list_orders", {}))),
    step("[case-parallel]", 2, text="You have several orders; ORD-1001 was delivered."),
    # [case-approve]: lookup, a refund above the threshold (approval), a message, an answer. The model call after
    # the refund is slow, so a second decision can be tried while the run still runs.
    step("[case-approve]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1001"}))),
    step("[case-approve]", 1, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                             "reason": "arrived broken"}))),
    step("[case-approve]", 2, delay=2.0, calls=calls(("send_message", {"text": "Your refund is on its way."}))),
    step("[case-approve]", 3, text="Refunded 291.50 USD for ORD-1001."),
    # [case-reject]: a refund that the reviewer rejects.
    step("[case-reject]", 0, calls=calls(("refund_order", {"order_id": "ORD-1003", "amount": 738.60,
                                                            "reason": "changed my mind"}))),
    step("[case-reject]", 1, text="The refund was not approved."),
    # [case-badreq]: waits for an approval forever (used to check that bad requests change nothing).
    step("[case-badreq]", 0, calls=calls(("refund_order", {"order_id": "ORD-1004", "amount": 308.00,
                                                            "reason": "late"}))),
    step("[case-badreq]", 1, text="Done."),
]


@pytest.fixture(scope="module", params=["responses", "chat_completions"])
def stack(request, tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp(f"stack-{request.param}"), SCRIPT, api=request.param)
    yield app
    app.close()


def _requests_for(stack: AppStack, tag: str) -> list[dict[str, Any]]:
    return [r for r in stack.model.requests if tag in json.dumps(r["body"])]


def test_run_without_approval_completes(stack):
    run_id = stack.start_run("Where is my order ORD-1005? [case-lookup]", customer="priya.natarajan@example.com")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == "Order ORD-1005 was delivered."
    assert run["demo"] is False
    assert run["turns"] == 2 and run["usage"]["requests"] == 2
    assert run["pendingApprovals"] == [] and run["error"] is None
    sent = _requests_for(stack, "[case-lookup]")
    assert len(sent) == 2
    # The second model call carries the lookup's result (from data/orders.json through the activity).
    assert "27.50" in json.dumps(sent[1]["body"])
    expected_path = "/v1/responses" if "responses" in stack.model.requests[-1]["path"] else "/v1/chat/completions"
    assert {r["path"] for r in sent} == {expected_path}


def test_parallel_tool_calls_run_and_reach_the_model(stack):
    run_id = stack.start_run("How are my orders? jordan.rivera@example.com [case-parallel]",
                             customer="jordan.rivera@example.com")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    history = http("GET", stack.url(f"/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true")).json
    scheduled = [e for e in history["historyEvents"] if e["EventType"] == "TaskCompleted"]
    names = [e["FunctionName"] for e in scheduled]
    assert names.count("lookup_order") == 1 and names.count("list_orders") == 1
    second = _requests_for(stack, "[case-parallel]")[1]
    assert "291.50" in json.dumps(second["body"]) and "ORD-1002" in json.dumps(second["body"])


def test_approved_refund_runs_once(stack):
    run_id = stack.start_run("Please refund ORD-1001, it arrived broken. [case-approve]",
                             customer="jordan.rivera@example.com")
    run = stack.wait_status(run_id, "awaiting_approval")
    [pending] = run["pendingApprovals"]
    assert pending["tool"] == "refund_order"
    assert pending["arguments"]["order_id"] == "ORD-1001"
    assert Decimal(str(pending["arguments"]["amount"])) == Decimal("291.50")
    requested = time.strptime(pending["requestedAt"][:19], "%Y-%m-%dT%H:%M:%S")
    expires = time.strptime(pending["expiresAt"][:19], "%Y-%m-%dT%H:%M:%S")
    assert time.mktime(expires) - time.mktime(requested) == 86400  # APPROVAL_TIMEOUT P1D
    assert stack.refunds("ORD-1001") == []

    url = stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}")
    first = http("POST", url, {"approved": True, "comment": "Photos confirm it."})
    assert first.status == 202, first.body
    assert first.json["decision"] == "approved" and first.json["recorded"] is True
    again = http("POST", url, {"approved": True, "comment": "Photos confirm it."})
    assert again.status == 200, again.body
    conflict = http("POST", url, {"approved": False})
    assert conflict.status == 409, conflict.body
    assert conflict.headers["content-type"].startswith("application/problem+json")

    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == "Refunded 291.50 USD for ORD-1001."
    assert [a["decision"] for a in run["approvals"]] == ["approved"]
    [refund] = stack.refunds("ORD-1001")
    assert refund.amount == Decimal("291.50") and refund.currency == "USD"
    assert refund.key == f"{run_id}:{pending['id']}"
    after_refund = _requests_for(stack, "[case-approve]")[2]
    assert refund.refund_id in json.dumps(after_refund["body"])


def test_rejected_refund_tells_the_model(stack):
    run_id = stack.start_run("Refund ORD-1003 please. [case-reject]", customer="amelia.chen@example.com")
    run = stack.wait_status(run_id, "awaiting_approval")
    [pending] = run["pendingApprovals"]
    answer = http("POST", stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}"),
                  {"approved": False, "comment": "Outside the return window."})
    assert answer.status == 202 and answer.json["decision"] == "rejected"
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "The refund was not approved."
    assert run["approvals"][0]["decision"] == "rejected"
    assert run["approvals"][0]["comment"] == "Outside the return window."
    assert stack.refunds("ORD-1003") == []
    seen_by_model = json.dumps(_requests_for(stack, "[case-reject]")[1]["body"])
    assert "Outside the return window." in seen_by_model and "rejected" in seen_by_model
    # A decision on a finished run.
    late = http("POST", stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}"), {"approved": True})
    assert late.status == 410 and late.json["status"] == 410


def _problem(answer, status: int) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def test_bad_requests_get_problems_and_change_nothing(stack):
    run_id = stack.start_run("Refund ORD-1004. [case-badreq]", run_id=f"badreq-{stack.runtime.port}",
                             customer="marcus.oconnell@example.net")
    before = stack.wait_status(run_id, "awaiting_approval")
    [pending] = before["pendingApprovals"]
    runs = stack.url("/api/agents/support/runs")
    approval = stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}")

    assert "JSON" in _problem(http("POST", runs, raw=b"{not json"), 400)["detail"]
    assert "object" in _problem(http("POST", runs, [1, 2]), 400)["detail"]
    assert "input" in _problem(http("POST", runs, {"input": 42}), 400)["detail"]
    assert "input" in _problem(http("POST", runs, {}), 400)["detail"]
    _problem(http("POST", runs, {"input": "x", "runId": "bad id!"}), 400)
    _problem(http("POST", runs, {"input": "x", "runId": "a" * 101}), 400)
    _problem(http("POST", runs, raw=json.dumps({"input": "x" * (1024 * 1024 + 10)}).encode()), 413)
    _problem(http("POST", stack.url("/api/agents/nobody/runs"), {"input": "x"}), 404)
    _problem(http("POST", runs, {"input": "again", "runId": run_id}), 409)
    _problem(http("GET", stack.url("/api/runs/no-such-run")), 404)
    _problem(http("POST", stack.url(f"/api/runs/{run_id}/approvals/call_unknown"), {"approved": True}), 404)
    _problem(http("POST", stack.url("/api/runs/no-such-run/approvals/x"), {"approved": True}), 404)
    _problem(http("POST", approval, {"approved": "yes"}), 400)
    _problem(http("POST", approval, raw=b"[]"), 400)
    _problem(http("POST", approval, raw=b"{"), 400)
    _problem(http("POST", stack.url("/api/runs/no-such-run/cancel")), 404)

    after = stack.run(run_id)
    assert after["status"] == "awaiting_approval"
    assert after["pendingApprovals"] == before["pendingApprovals"] and after["approvals"] == []
    # Cancel it: 202, then cancelled; cancelling again is 410.
    assert http("POST", stack.url(f"/api/runs/{run_id}/cancel")).status == 202
    assert stack.wait_status(run_id, "cancelled")["status"] == "cancelled"
    _problem(http("POST", stack.url(f"/api/runs/{run_id}/cancel")), 410)
    assert stack.refunds("ORD-1004") == []


def test_list_runs_and_agents(stack):
    agents = {a["name"]: a for a in http("GET", stack.url("/api/agents")).json["agents"]}
    assert {name: a["kind"] for name, a in agents.items()} == {
        "customer_message": "workflow", "order_audit": "workflow", "order_reviewer": "agent",
        "resolution": "workflow", "shipping": "agent", "support": "agent", "triage": "workflow"}
    assert {"name": "refund_order", "approval": "conditional"} in agents["support"]["approvalTools"]
    listed = http("GET", stack.url("/api/runs?agent=support&top=100")).json["runs"]
    assert listed and all(r["agent"] == "support" for r in listed)
    _problem(http("GET", stack.url("/api/runs?status=bogus")), 400)


def test_approval_times_out(tmp_path):
    script = [
        step("[case-timeout]", 0, calls=calls(("refund_order", {"order_id": "ORD-1010", "amount": 664.30,
                                                                 "reason": "damaged"}))),
        step("[case-timeout]", 1, text="Nobody approved the refund in time."),
    ]
    app = AppStack(tmp_path, script, env={"APPROVAL_TIMEOUT": "PT2S"})
    try:
        run_id = app.start_run("Refund ORD-1010. [case-timeout]", customer="pieter.vandijk@example.nl")
        run = app.wait_status(run_id, "awaiting_approval")
        [pending] = run["pendingApprovals"]
        run = app.wait_status(run_id, "completed", "failed", timeout=30)
        assert run["status"] == "completed" and run["output"] == "Nobody approved the refund in time."
        assert run["approvals"] == [{**run["approvals"][0], "id": pending["id"], "decision": "expired"}]
        assert "expired" in json.dumps(app.model.requests[-1]["body"])
        assert app.refunds("ORD-1010") == []
    finally:
        app.close()


def test_host_killed_midway_resumes_without_paying_twice(tmp_path):
    """SIGKILL the host while a model call is in flight after a refund; restart; the run completes with every
    finished model step billed once and the refund recorded once (in-flight work runs again: at-least-once)."""
    script = [
        step("[case-crash]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1006"}))),
        step("[case-crash]", 1, calls=calls(("refund_order", {"order_id": "ORD-1006", "amount": 25.00,
                                                               "reason": "wrong size"}))),
        step("[case-crash]", 2, delay=5.0, calls=calls(("send_message", {"text": "Refund of 25.00 USD sent."}))),
        step("[case-crash]", 3, text="Refunded 25.00 USD."),
    ]
    app = AppStack(tmp_path, script)
    try:
        run_id = app.start_run("Refund ORD-1006, wrong size. [case-crash]", customer="sam.whitaker@example.org")
        # The refund is recorded, then the third model call starts and takes 5 s: kill the host inside it.
        wait_for(lambda: app.refunds("ORD-1006"), timeout=60, what="the refund")
        time.sleep(1.0)
        assert not any(r["step"] == 2 for r in app.model.requests)  # not answered yet
        app.runtime.kill()
        assert len(app.refunds("ORD-1006")) == 1
        app.runtime.start()
        run = app.wait_status(run_id, "completed", "failed", timeout=60)
        assert run["status"] == "completed", run
        assert run["output"] == "Refunded 25.00 USD."
        counts = app.requests_by_step()
        assert counts[0] == 1 and counts[1] == 1 and counts[3] == 1, counts  # finished model steps: billed once
        assert counts[2] == 2, counts  # the call in flight at the crash ran again
        [refund] = app.refunds("ORD-1006")
        assert refund.amount == Decimal("25.00")
    finally:
        app.close()
