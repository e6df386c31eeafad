"""End to end: the ``triage`` (chaining + routing) and ``customer_message`` (evaluator loop) workflows of the real
app on the local runtime, the real OpenAI client (both APIs) talking to the scripted model server, driven over the
HTTP API. The server tells the agents of a workflow apart by their instructions (``instructionsContain``) and the
tests by a tag in the customer's text, which every agent of the workflow receives."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.conftest import AppStack, http
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

TRIAGE, SHIPPING, SUPPORT = "triage desk", "shipping desk", "customer support agent"
WRITER, JUDGE = "You write short messages", "You review messages"


def when(agent: str, tag: str, outputs: int | None = None, **fields: Any) -> dict[str, Any]:
    """A step for ``agent`` (a phrase of its instructions) in the conversation tagged ``tag``."""
    condition: dict[str, Any] = {"instructionsContain": agent, "userContains": tag}
    if outputs is not None:
        condition["toolOutputs"] = outputs
    return {"when": condition, **fields}


def calls(name: str, arguments: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": arguments}]


SCRIPT = [
    # [case-ship]: triage says shipping; the shipping agent tracks the parcel (slowly, so the stage can be seen).
    when(TRIAGE, "[case-ship]", json={"category": "shipping", "order_id": "ORD-1063",
                                      "summary": "Asks where the parcel is."}),
    when(SHIPPING, "[case-ship]", 0, delay=1.5, calls=calls("track_shipment", {"order_id": "ORD-1063"})),
    when(SHIPPING, "[case-ship]", 1, text="Your parcel ORD-1063 is on its way."),
    # [case-refund]: triage says refund; support looks the order up and refunds below the approval threshold.
    when(TRIAGE, "[case-refund]", json={"category": "refund", "order_id": "ORD-1002",
                                        "summary": "Wants the broken cable refunded."}),
    when(SUPPORT, "[case-refund]", 0, calls=calls("lookup_order", {"order_id": "ORD-1002"})),
    when(SUPPORT, "[case-refund]", 1, calls=calls("refund_order", {"order_id": "ORD-1002", "amount": 12.50,
                                                                    "reason": "cable arrived broken"})),
    when(SUPPORT, "[case-refund]", 2, text="Refunded 12.50 USD for ORD-1002."),
    # [case-other]: no specialist.
    when(TRIAGE, "[case-other]", json={"category": "other", "order_id": None, "summary": "Asks about gift cards."}),
    # [case-loop-pass]: the first draft scores 4, the revision (slow to write) 9.
    when(WRITER, "FIRST-PASS", delay=1.5, text="Dear customer, we are sorry. REVISED-PASS. Kind regards."),
    when(WRITER, "[case-loop-pass]", text="FIRST-PASS draft."),
    when(JUDGE, "REVISED-PASS", json={"score": 9, "feedback": "Good."}),
    when(JUDGE, "FIRST-PASS", json={"score": 4, "feedback": "Apologise and say what happens next."}),
    # [case-loop-fail]: every draft scores 3.
    when(WRITER, "[case-loop-fail]", text="A weak draft."),
    when(JUDGE, "[case-loop-fail]", json={"score": 3, "feedback": "Too vague."}),
]


@pytest.fixture(scope="module", params=["responses", "chat_completions"])
def stack(request, tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp(f"workflows-{request.param}"), SCRIPT, api=request.param)
    yield app
    app.close()


def _requests(stack: AppStack, tag: str) -> list[dict[str, Any]]:
    return [r for r in stack.model.requests if tag in json.dumps(r["body"])]


def _tool_names(stack: AppStack, run_id: str) -> list[str]:
    history = http("GET", stack.url(f"/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true")).json
    return [e["FunctionName"] for e in history["historyEvents"] if e["EventType"] == "TaskCompleted"]


def test_the_workflows_are_listed(stack):
    listed = {a["name"]: a for a in http("GET", stack.url("/api/agents")).json["agents"]}
    assert listed["triage"]["kind"] == "workflow" and listed["customer_message"]["kind"] == "workflow"
    assert listed["shipping"]["kind"] == "agent"
    assert {"name": "refund_order", "approval": "conditional"} in listed["triage"]["approvalTools"]


def test_triage_routes_a_shipping_question_to_the_shipping_agent(stack):
    run_id = stack.start_run("Where is my parcel? It is order ORD-1063. [case-ship]", agent="triage",
                             customer="sofia.rossi@example.it")
    answering = wait_for(lambda: (lambda r: r if r["progress"].get("stage") == "answering" else None)(
        stack.run(run_id)), timeout=30, what="the answering stage")
    assert answering["status"] == "running"
    assert answering["progress"] == {"stage": "answering", "category": "shipping", "specialist": "shipping"}
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == {"answer": "Your parcel ORD-1063 is on its way.",
                             "route": {"category": "shipping", "orderId": "ORD-1063", "specialist": "shipping",
                                       "summary": "Asks where the parcel is."}}
    assert run["progress"]["stage"] == "done" and run["lastAgent"] == "shipping" and run["turns"] == 3
    assert run["demo"] is False
    assert _tool_names(stack, run_id).count("track_shipment") == 1
    sent = _requests(stack, "[case-ship]")
    assert len(sent) == 3
    tracked = json.dumps(sent[2]["body"])  # the tool's result from data/orders.json reached the model
    assert "in_transit" in tracked and "Pulse wireless earbuds" in tracked


def test_triage_routes_a_refund_request_to_support(stack):
    run_id = stack.start_run("Please refund the broken USB-C cable of ORD-1002. [case-refund]", agent="triage",
                             customer="jordan.rivera@example.com")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"]["answer"] == "Refunded 12.50 USD for ORD-1002."
    assert run["output"]["route"] == {"category": "refund", "orderId": "ORD-1002", "specialist": "support",
                                      "summary": "Wants the broken cable refunded."}
    assert run["progress"] == {"stage": "done", "category": "refund", "specialist": "support"}
    assert "track_shipment" not in _tool_names(stack, run_id)
    [refund] = stack.refunds("ORD-1002")
    assert refund.amount == Decimal("12.50") and refund.key.startswith(f"{run_id}:")


def test_triage_answers_other_messages_without_a_specialist(stack):
    run_id = stack.start_run("Do you sell gift cards? [case-other]", agent="triage",
                             customer="jordan.rivera@example.com")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"]["route"]["specialist"] is None
    assert run["output"]["answer"].startswith("Thank you for your message.")
    assert len(_requests(stack, "[case-other]")) == 1


def test_the_loop_passes_in_round_two_with_rounds_visible_while_running(stack):
    run_id = stack.start_run("ORD-1069's espresso machine ships a week late. [case-loop-pass]",
                             customer="pieter.vandijk@example.nl",
                             agent="customer_message")
    running = wait_for(lambda: (lambda r: r if len(r["progress"].get("rounds") or []) == 1 else None)(
        stack.run(run_id)), timeout=30, what="round 1 in the progress")
    assert running["status"] == "running"
    assert running["progress"]["rounds"] == [{"round": 1, "draft": "FIRST-PASS draft.", "score": 4,
                                              "feedback": "Apologise and say what happens next."}]
    assert running["progress"]["round"] == 2 and running["progress"]["passingScore"] == 8
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    output = run["output"]
    assert (output["passed"], output["score"], output["roundsUsed"]) == (True, 9, 2)
    assert output["message"] == "Dear customer, we are sorry. REVISED-PASS. Kind regards."
    assert [r["score"] for r in output["rounds"]] == [4, 9]
    assert run["progress"]["rounds"] == output["rounds"] and run["progress"]["stage"] == "done"
    revision = json.dumps(_requests(stack, "[case-loop-pass]")[2]["body"])  # writer, round 2
    assert "Apologise and say what happens next." in revision and "FIRST-PASS draft." in revision


def test_the_loop_stops_at_max_rounds_when_it_never_passes(stack):
    run_id = stack.start_run("A refund takes longer than promised. [case-loop-fail]", agent="customer_message",
                             customer="jordan.rivera@example.com")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    output = run["output"]
    assert (output["passed"], output["score"], output["roundsUsed"], output["maxRounds"]) == (False, 3, 3, 3)
    assert [r["round"] for r in run["progress"]["rounds"]] == [1, 2, 3]
    assert len(_requests(stack, "[case-loop-fail]")) == 6  # three drafts, three verdicts
