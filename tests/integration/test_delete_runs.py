"""End to end: ``DELETE /api/runs/{id}`` and ``DELETE /api/conversations/{id}`` on the local runtime (a separate
process, its payload limits on) with the store app (function_app.py), the real OpenAI client talking to the scripted
model server, and the file payload store in ``PAYLOAD_PATH``.

A run whose user text is over the 8 KB threshold stores its model input as a blob; a conversation always writes its
message log. After a DELETE by support staff the blobs are gone from the folder, the run answers 404, and the
approval audit still holds its records (read from the audit store itself, and through ``GET .../audit`` as support
staff). Callers who are not support staff get 403 (they may see it) or 404; an active run or an open conversation
is 409 until it is cancelled or closed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from durable_agents._audit import SqliteAuditStore
from durable_agents._blobs import FileBlobStore, escape_instance_id, put_payload
from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack, HttpAnswer, http
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

CUSTOMER = "jordan.rivera@example.com"
REVIEWER_AGENT = "You are the order reviewer"
SUMMARIZER_AGENT = "You are the audit summarizer"
PADDING = " Details of the damage follow." + " The box was crushed on one side." * 400  # ~13 KB of user text


def step(tag: str, outputs: int, **fields: Any) -> dict[str, Any]:
    return {"when": {"userContains": tag, "toolOutputs": outputs}, **fields}


def refund(order_id: str, amount: float) -> list[dict[str, Any]]:
    return [{"name": "refund_order", "arguments": {"order_id": order_id, "amount": amount, "reason": "broken"}}]


SCRIPT = [
    step("[del-done]", 0, calls=refund("ORD-1001", 291.50)),
    step("[del-done]", 1, text="Refunded 291.50 USD for ORD-1001."),
    step("[del-wait]", 0, calls=refund("ORD-1002", 114.50)),
    step("[del-wait]", 1, text="Done."),
    # order_audit of grace.okafor@example.co.uk (ORD-1012, ORD-1059): one reviewer sub-orchestration per order.
    *[entry for order_id in ("ORD-1012", "ORD-1059") for entry in (
        {"when": {"instructionsContain": REVIEWER_AGENT, "userContains": order_id, "toolOutputs": 0},
         "calls": [{"name": "lookup_order", "arguments": {"order_id": order_id}}]},
        {"when": {"instructionsContain": REVIEWER_AGENT, "userContains": order_id, "toolOutputs": 1},
         "json": {"order_id": order_id, "verdict": "ok", "findings": f"{order_id} is fine."}})],
    {"when": {"instructionsContain": SUMMARIZER_AGENT}, "text": "2 of 2 orders reviewed; none needs attention."},
    {"when": {"toolOutputs": 0}, "text": "OK."},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("delete-runs")
    app = AppStack(tmp, SCRIPT, env={"PAYLOAD_PATH": str(tmp / "payloads")})
    yield app
    app.close()


def blob_files(stack: AppStack, instance_id: str) -> list[Path]:
    """The files of the instance's blobs in the payload folder (``runs/<escaped id>/...``)."""
    folder = stack.tmp / "payloads" / "runs" / escape_instance_id(instance_id)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def problem(answer: HttpAnswer, status: int, slug: str) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert answer.json["type"].endswith(":" + slug), answer.json
    return answer.json


def delete(stack: AppStack, path: str, *, user: str | None = SUPPORT_USER, roles: str | None = None) -> HttpAnswer:
    return http("DELETE", stack.url(path), user=user, roles=roles)


def approve_pending(stack: AppStack, run_id: str) -> None:
    waiting = stack.wait_status(run_id, "awaiting_approval", "failed", "completed")
    assert waiting["status"] == "awaiting_approval", waiting
    [pending] = waiting["pendingApprovals"]
    decided = http("POST", stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}"),
                   {"approved": True, "comment": "Photos confirm it."}, user=REVIEWER)
    assert decided.status in (200, 202), decided.body


def test_support_staff_delete_a_completed_run_its_blobs_go_and_its_audit_stays(stack):
    run_id = stack.start_run("Order ORD-1001 arrived broken, refund it please. [del-done]" + PADDING,
                             customer=CUSTOMER)
    approve_pending(stack, run_id)
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    stored = blob_files(stack, run_id)
    assert stored, "the run stored its large model input as a blob"

    problem(delete(stack, f"/api/runs/{run_id}", user=CUSTOMER, roles=""), 403, "not-allowed")  # sees, may not
    problem(delete(stack, f"/api/runs/{run_id}", user=REVIEWER, roles="Approver"), 403, "not-allowed")
    problem(delete(stack, f"/api/runs/{run_id}", user="nobody@example.com", roles=""), 404, "run-not-found")
    assert blob_files(stack, run_id) == stored and stack.run(run_id)["status"] == "completed"

    answer = delete(stack, f"/api/runs/{run_id}")
    assert answer.status == 200, answer.body
    assert answer.json == {"id": run_id, "deleted": True, "blobsDeleted": len(stored)}
    assert blob_files(stack, run_id) == []
    problem(http("GET", stack.url(f"/api/runs/{run_id}")), 404, "run-not-found")
    problem(delete(stack, f"/api/runs/{run_id}"), 404, "run-not-found")

    # The audit trail outlives the run: in the store, and through the audit route for support staff and approvers.
    events = [record.event for record in SqliteAuditStore(stack.tmp / "audit.sqlite3").list_for_run(run_id)]
    assert events == ["requested", "decided"], events
    audit = http("GET", stack.url(f"/api/runs/{run_id}/audit"), user=SUPPORT_USER)
    assert audit.status == 200 and [r["event"] for r in audit.json["records"]] == ["requested", "decided"]
    problem(http("GET", stack.url(f"/api/runs/{run_id}/audit"), user=CUSTOMER, roles=""), 404, "run-not-found")


def test_a_run_awaiting_approval_is_409_until_it_is_cancelled(stack):
    run_id = stack.start_run("Refund ORD-1002. [del-wait]" + PADDING, customer=CUSTOMER)
    stack.wait_status(run_id, "awaiting_approval")
    stored = blob_files(stack, run_id)
    doc = problem(delete(stack, f"/api/runs/{run_id}"), 409, "run-active")
    assert "cancel" in doc["detail"]
    assert stack.run(run_id)["status"] == "awaiting_approval" and blob_files(stack, run_id) == stored

    cancelled = http("POST", stack.url(f"/api/runs/{run_id}/cancel"), user=SUPPORT_USER)
    assert cancelled.status == 202, cancelled.body
    stack.wait_status(run_id, "cancelled")
    answer = delete(stack, f"/api/runs/{run_id}")
    assert answer.status == 200 and answer.json["blobsDeleted"] == len(stored), answer.body
    assert blob_files(stack, run_id) == []


def _conversation(stack: AppStack, cid: str) -> dict[str, Any]:
    answer = http("GET", stack.url(f"/api/conversations/{cid}"))
    assert answer.status == 200, answer.body
    return answer.json


def test_a_conversation_is_409_while_open_and_deleted_with_its_message_log_once_closed(stack):
    started = http("POST", stack.url("/api/agents/support/conversations"),
                   {"input": "Hello there. [del-conv]", "customer": CUSTOMER}, user=SUPPORT_USER)
    assert started.status == 201, started.body
    cid = started.json["id"]
    wait_for(lambda: (lambda c: c if c["status"] == "idle" and len(c["messages"]) == 2 else None)(
        _conversation(stack, cid)), timeout=60, what="the first answer")
    names = [p.relative_to(stack.tmp / "payloads" / "runs" / cid).as_posix() for p in blob_files(stack, cid)]
    assert {"conversation.json", "messages/00000001-0.json", "messages/00000001-1.json"} <= set(names), names

    doc = problem(delete(stack, f"/api/conversations/{cid}"), 409, "run-active")
    assert "close" in doc["detail"]
    problem(delete(stack, f"/api/conversations/{cid}", user=CUSTOMER, roles=""), 403, "not-allowed")
    problem(delete(stack, f"/api/runs/{cid}"), 404, "run-not-found")  # a conversation is not a run

    closed = http("POST", stack.url(f"/api/conversations/{cid}/close"), user=SUPPORT_USER)
    assert closed.status == 202, closed.body
    # Closed as soon as closed.json exists; deletable once the orchestration has ended too.
    deleted = wait_for(lambda: (lambda a: a if a.status != 409 else None)(delete(stack, f"/api/conversations/{cid}")),
                       timeout=60, what="the conversation's orchestration to end")
    assert deleted.status == 200, deleted.body
    assert deleted.json["id"] == cid and deleted.json["deleted"] is True
    assert deleted.json["blobsDeleted"] >= len(names) + 1  # + closed.json
    assert blob_files(stack, cid) == []
    problem(http("GET", stack.url(f"/api/conversations/{cid}")), 404, "conversation-not-found")
    problem(delete(stack, f"/api/conversations/{cid}"), 404, "conversation-not-found")


def test_a_workflow_is_deleted_with_its_sub_orchestrations_and_their_blobs(stack):
    run_id = stack.start_run("Audit the orders of grace.okafor@example.co.uk", agent="order_audit",
                             customer="grace.okafor@example.co.uk")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    durable = f"/runtime/webhooks/durabletask/instances/{run_id}"
    children = http("GET", stack.url(durable)).json["customStatus"]["children"]
    assert sorted(children) == [f"{run_id}:ORD-1012", f"{run_id}:ORD-1059"]
    store = FileBlobStore(stack.tmp / "payloads")
    for child in children:  # as a large tool result of the reviewer would be stored
        put_payload(store, child, f"a large lookup result of {child}".encode())
    before = len(blob_files(stack, run_id)) + sum(len(blob_files(stack, child)) for child in children)

    answer = delete(stack, f"/api/runs/{run_id}")
    assert answer.status == 200, answer.body
    assert answer.json == {"id": run_id, "deleted": True, "blobsDeleted": before}
    for instance in (run_id, *children):
        assert blob_files(stack, instance) == []
        assert http("GET", stack.url(f"/runtime/webhooks/durabletask/instances/{instance}")).status == 404
