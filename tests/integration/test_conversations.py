"""End to end: conversations with the store's ``support`` agent on the local runtime (a separate process, its payload
limits on), the real OpenAI client in ``invoke_model`` talking to the scripted model server, driven over the HTTP
API: three messages with an approval in the second turn, messages sent while a turn runs, close and 410, the idle
timeout, paging, and problem+json for caller mistakes.

Each message carries a tag (``[conv-a2]``) that the model server's script matches against the last user message;
``toolOutputs`` counts the tool outputs of the whole conversation so far (earlier turns included).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack, HttpAnswer, http
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

CUSTOMER = "jordan.rivera@example.com"


def step(tag: str, outputs: int, **fields: Any) -> dict[str, Any]:
    """A script step for the message tagged ``tag`` after ``outputs`` tool outputs in the conversation."""
    return {"when": {"userContains": tag, "toolOutputs": outputs}, **fields}


def calls(*items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": args} for name, args in items]


SCRIPT = [
    # Conversation A: a lookup; a refund above the threshold (approval); thanks.
    step("[conv-a1]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1001"}))),
    step("[conv-a1]", 1, text="Order ORD-1001 was delivered on 2024-05-03; it cost 291.50 USD."),
    step("[conv-a2]", 1, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                        "reason": "arrived broken"}))),
    step("[conv-a2]", 2, text="A reviewer approved it: 291.50 USD are refunded for ORD-1001."),
    step("[conv-a3]", 2, text="You're welcome! Anything else about ORD-1001?"),
    # Conversation B: the first answer is slow; three messages arrive meanwhile.
    step("[conv-b1]", 0, delay=2.5, text="B1 answered."),
    step("[conv-b2]", 0, text="B2 answered."),
    step("[conv-b3]", 0, text="B3 answered."),
    step("[conv-b4]", 0, text="B4 answered."),
    # Anything else: a short answer.
    {"when": {"toolOutputs": 0}, "text": "OK."},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("conversations")
    app = AppStack(tmp, SCRIPT, env={"PAYLOAD_PATH": str(tmp / "payloads")})
    yield app
    app.close()


def _problem(answer: HttpAnswer, status: int, slug: str | None = None) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"].startswith("application/problem+json")
    body = answer.json
    assert body["status"] == status and body["title"] and body["detail"]
    if slug is not None:
        assert body["type"].endswith(":" + slug), body
    return body


def _conversation(stack: AppStack, cid: str, user: str = REVIEWER, roles: str | None = None) -> dict[str, Any]:
    answer = http("GET", stack.url(f"/api/conversations/{cid}"), user=user, roles=roles)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.json


def _wait(stack: AppStack, cid: str, test: Callable[[dict[str, Any]], bool], what: str,
          timeout: float = 60.0) -> dict[str, Any]:
    return wait_for(lambda: (lambda c: c if test(c) else None)(_conversation(stack, cid)), timeout=timeout,
                    what=f"conversation {cid}: {what}")


def _answered(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda c: sum(1 for m in c["messages"] if m["role"] == "assistant") >= count and c["status"] == "idle"


Record = Callable[[str, str, Any, HttpAnswer], None]


def three_message_flow(stack: AppStack, record: Record | None = None) -> dict[str, Any]:
    """The README's walk-through: start with a first message, a second whose refund waits for a reviewer, a third;
    then close. ``record(method, path, body, answer)`` sees every request (the transcript script). Returns the
    conversation as GET shows it at the end."""

    def call(method: str, path: str, body: Any = None, *, user: str = SUPPORT_USER) -> HttpAnswer:
        answer = http(method, stack.url(path), body, user=user)
        if record is not None:
            record(method, path, body, answer)
        return answer

    started = call("POST", "/api/agents/support/conversations",
                   {"input": "Hi, where is my order ORD-1001? [conv-a1]", "customer": CUSTOMER})
    assert started.status == 201, started.body
    cid = started.json["id"]
    assert started.headers["location"] == f"/api/conversations/{cid}"
    assert started.json["firstMessage"] == {"id": "00000001-0", "seq": 1}
    assert started.json["customer"] == CUSTOMER and started.json["links"]["messages"].endswith("/messages")
    _wait(stack, cid, _answered(1), "first answer")
    call("GET", f"/api/conversations/{cid}")

    second = call("POST", f"/api/conversations/{cid}/messages",
                  {"input": "It arrived broken, please refund it. [conv-a2]"})
    assert second.status == 202, second.body
    assert second.json["messageId"] == "00000002-0" and second.json["seq"] == 2
    waiting = _wait(stack, cid, lambda c: c["status"] == "awaiting_approval", "the refund's approval")
    call("GET", f"/api/conversations/{cid}")
    [pending] = waiting["pendingApprovals"]
    assert pending["tool"] == "refund_order" and Decimal(str(pending["arguments"]["amount"])) == Decimal("291.50")
    decided = call("POST", f"/api/runs/{cid}/approvals/{pending['id']}",
                   {"approved": True, "comment": "Photos confirm the damage."}, user=REVIEWER)
    assert decided.status == 202 and decided.json["decision"] == "approved", decided.body
    _wait(stack, cid, _answered(2), "second answer")

    third = call("POST", f"/api/conversations/{cid}/messages", {"input": "Thanks! [conv-a3]"})
    assert third.status == 202, third.body
    _wait(stack, cid, _answered(3), "third answer")
    page = call("GET", f"/api/conversations/{cid}/messages?after=00000002-0&top=2")
    assert [m["id"] for m in page.json["messages"]] == ["00000002-1", "00000003-0"]
    assert page.json["nextCursor"] == "00000003-0" and page.json["hasMore"] is True

    closed = call("POST", f"/api/conversations/{cid}/close")
    assert closed.status == 202 and closed.json["status"] == "closed", closed.body
    late = call("POST", f"/api/conversations/{cid}/messages", {"input": "One more thing [conv-a3]"})
    _problem(late, 410, "conversation-closed")
    final = _wait(stack, cid, lambda c: c["status"] == "closed" and c["idleExpiresAt"] is None, "closed")
    end = call("GET", f"/api/conversations/{cid}")
    assert end.status == 200
    return final


def test_three_messages_with_an_approval_in_the_second_turn(stack):
    final = three_message_flow(stack)
    cid = final["id"]
    messages = final["messages"]
    assert [(m["id"], m["role"]) for m in messages] == [
        ("00000001-0", "user"), ("00000001-1", "assistant"), ("00000002-0", "user"), ("00000002-1", "assistant"),
        ("00000003-0", "user"), ("00000003-1", "assistant")]
    answers = [m for m in messages if m["role"] == "assistant"]
    assert answers[0]["content"].startswith("Order ORD-1001 was delivered")
    assert answers[0]["toolCalls"] == [{"tool": "lookup_order", "ok": True}]
    assert answers[1]["content"].startswith("A reviewer approved it")
    assert answers[1]["toolCalls"] == [{"tool": "refund_order", "ok": True}]
    assert answers[2]["toolCalls"] == [] and all(a["error"] is None for a in answers)
    assert all(a["usage"]["requests"] >= 1 for a in answers) and answers[0]["agent"] == "support"
    assert final["turns"] == 5 and final["usage"]["requests"] == 5 and final["answered"] == 3
    assert [a["decision"] for a in final["approvals"]] == ["approved"] and final["pendingApprovals"] == []
    assert final["closed"]["reason"] == "closed" and final["closed"]["by"]["id"] == f"dev-{SUPPORT_USER}"
    [refund] = stack.refunds("ORD-1001")
    assert refund.amount == Decimal("291.50") and refund.key.startswith(f"{cid}:")
    # The second turn's model requests carried the first turn (the history), the third's both.
    third_request = [r for r in stack.model.requests if "[conv-a3]" in json.dumps(r["body"])][0]
    assert "[conv-a1]" in json.dumps(third_request["body"]) and "291.50" in json.dumps(third_request["body"])
    # Closing again answers the first record; the conversation is no run.
    again = http("POST", stack.url(f"/api/conversations/{cid}/close"), user=SUPPORT_USER)
    assert again.status == 200 and again.json["closedAt"] == final["closed"]["closedAt"]
    _problem(http("GET", stack.url(f"/api/runs/{cid}")), 404, "run-not-found")
    runs = http("GET", stack.url("/api/runs?top=100")).json["runs"]
    assert cid not in {r["id"] for r in runs}
    listed = http("GET", stack.url("/api/conversations?agent=support&top=100")).json["conversations"]
    assert cid in {c["id"] for c in listed}
    audit = http("GET", stack.url(f"/api/runs/{cid}/audit")).json["records"]
    assert {r["event"] for r in audit} >= {"requested", "decided"}


def test_messages_sent_while_a_turn_runs_are_all_answered_in_order(stack):
    started = http("POST", stack.url("/api/agents/support/conversations"), {"input": "First [conv-b1]"},
                   user=SUPPORT_USER)
    cid = started.json["id"]
    _wait(stack, cid, lambda c: c["status"] == "answering", "answering", timeout=20)
    seqs = [http("POST", stack.url(f"/api/conversations/{cid}/messages"), {"input": f"More [conv-b{n}]"},
                 user=SUPPORT_USER).json["seq"] for n in (2, 3, 4)]
    assert seqs == [2, 3, 4]
    final = _wait(stack, cid, _answered(4), "four answers")
    answers = [m["content"] for m in final["messages"] if m["role"] == "assistant"]
    assert answers == ["B1 answered.", "B2 answered.", "B3 answered.", "B4 answered."]
    last = [r for r in stack.model.requests if "[conv-b4]" in json.dumps(r["body"])][0]
    assert "B3 answered." in json.dumps(last["body"])  # each turn saw the answers before it


def test_paging_messages_with_after(stack):
    cid = http("POST", stack.url("/api/agents/support/conversations"),
               {"conversationId": f"paging-{stack.runtime.port}"}, user=SUPPORT_USER).json["id"]
    for n in range(3):
        assert http("POST", stack.url(f"/api/conversations/{cid}/messages"), {"input": f"note {n}"},
                    user=SUPPORT_USER).status == 202
    _wait(stack, cid, _answered(3), "three answers")
    seen: list[str] = []
    cursor = None
    while True:
        query = f"?top=2&after={cursor}" if cursor else "?top=2"
        page = http("GET", stack.url(f"/api/conversations/{cid}/messages{query}")).json
        seen += [m["id"] for m in page["messages"]]
        cursor = page["nextCursor"]
        if not page["hasMore"]:
            break
    assert seen == ["00000001-0", "00000001-1", "00000002-0", "00000002-1", "00000003-0", "00000003-1"]
    empty = http("GET", stack.url(f"/api/conversations/{cid}/messages?after={cursor}")).json
    assert empty == {"messages": [], "nextCursor": cursor, "hasMore": False}


def test_caller_mistakes_get_problems(stack):
    start = stack.url("/api/agents/support/conversations")
    _problem(http("POST", start, raw=b"{not json"), 400, "malformed-json")
    _problem(http("POST", start, {"input": 42}), 400, "invalid-body")
    _problem(http("POST", start, {"input": "x", "extra": 1}), 400, "invalid-body")
    _problem(http("POST", start, {"conversationId": "bad id!"}), 400, "invalid-conversation-id")
    _problem(http("POST", start, {"input": "x"}, content_type="text/plain"), 415)
    _problem(http("POST", start, {"input": "x"}, user=None), 401)
    _problem(http("POST", start, {"customer": "someone@example.com"}, user="cara@example.com", roles=""), 403)
    _problem(http("POST", start, raw=json.dumps({"input": "x" * (1024 * 1024 + 10)}).encode()), 413)
    _problem(http("POST", stack.url("/api/agents/nobody/conversations"), {}), 404, "agent-not-found")
    _problem(http("POST", stack.url("/api/agents/triage/conversations"), {}), 400, "not-conversational")
    taken = http("POST", start, {"conversationId": f"taken-{stack.runtime.port}"}, user=SUPPORT_USER).json["id"]
    _problem(http("POST", start, {"conversationId": taken}), 409, "conversation-id-in-use")
    _problem(http("GET", stack.url("/api/conversations/no-such")), 404, "conversation-not-found")
    _problem(http("POST", stack.url("/api/conversations/no-such/messages"), {"input": "x"}), 404)
    _problem(http("POST", stack.url("/api/conversations/no-such/close")), 404)
    _problem(http("GET", stack.url("/api/conversations/bad%20id")), 404)
    messages = stack.url(f"/api/conversations/{taken}/messages")
    _problem(http("POST", messages, {"input": ""}), 400, "invalid-body")
    _problem(http("POST", messages, {}), 400, "invalid-body")
    _problem(http("POST", messages, raw=b"[]"), 400, "invalid-body")
    _problem(http("GET", messages + "?after=7"), 400, "invalid-query")
    _problem(http("GET", messages + "?top=201"), 400, "invalid-query")
    _problem(http("GET", stack.url("/api/conversations?status=bogus")), 400, "invalid-query")
    _problem(http("POST", stack.url(f"/api/conversations/{taken}/close"), {"reason": "x"}), 400, "invalid-body")
    # Someone else's conversation: 404 for a plain user, visible to its starter and to staff.
    own = http("POST", start, {"input": "Mine [x]"}, user="cara@example.com", roles="")
    assert own.status == 201 and own.json["customer"] == "cara@example.com"
    mine = own.json["id"]
    _problem(http("GET", stack.url(f"/api/conversations/{mine}"), user="dan@example.com", roles=""), 404)
    _problem(http("POST", stack.url(f"/api/conversations/{mine}/messages"), {"input": "hi"},
                  user="dan@example.com", roles=""), 404)
    _problem(http("POST", stack.url(f"/api/conversations/{mine}/close"), user="dan@example.com", roles=""), 404)
    assert mine not in {c["id"] for c in http("GET", stack.url("/api/conversations"), user="dan@example.com",
                                                roles="").json["conversations"]}
    assert mine in {c["id"] for c in http("GET", stack.url("/api/conversations"), user="cara@example.com",
                                            roles="").json["conversations"]}
    assert _conversation(stack, mine, user="cara@example.com", roles="")["customer"] == "cara@example.com"


def test_an_idle_conversation_closes_itself(tmp_path):
    app = AppStack(tmp_path, [{"text": "Hello!"}],
                   env={"PAYLOAD_PATH": str(tmp_path / "payloads"), "CONVERSATION_IDLE_TIMEOUT": "PT3S"})
    try:
        cid = http("POST", app.url("/api/agents/support/conversations"), {"input": "Hi"}, user=SUPPORT_USER).json["id"]
        answered = _wait(app, cid, _answered(1), "the answer", timeout=30)
        assert answered["idleExpiresAt"] > answered["lastActivityAt"]
        final = _wait(app, cid, lambda c: c["status"] == "closed", "closed by the idle timer", timeout=30)
        assert final["closed"]["reason"] == "idle" and final["closed"]["by"] is None
        _problem(http("POST", app.url(f"/api/conversations/{cid}/messages"), {"input": "Hi again"},
                      user=SUPPORT_USER), 410, "conversation-closed")
        done = http("GET", app.url(f"/runtime/webhooks/durabletask/instances/{cid}")).json
        assert done["runtimeStatus"] == "Completed" and done["output"]["reason"] == "idle"
    finally:
        app.close()
