"""End to end, issue 8: identities, separation of duties, the audit trail, and bad input, through the real app on the
local runtime (a separate process with its App Service authentication emulation), the real OpenAI client and the
scripted model server.

Identities are the local runtime's developer identities (``X-Dev-User`` / ``X-Dev-Roles``, loopback only), which
reach the app exactly as App Service authentication's ``X-MS-CLIENT-PRINCIPAL*`` headers do in Azure.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
from typing import Any

import pytest

from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack, http
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT

pytestmark = pytest.mark.integration

CUSTOMER = "jordan.rivera@example.com"


def step(tag: str, outputs: int, **fields: Any) -> dict[str, Any]:
    return {"when": {"userContains": tag, "toolOutputs": outputs}, **fields}


def calls(*items: tuple[str, Any]) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": args} for name, args in items]


LONG_REASON = "because " + "the parcel was soaked through and " * 620  # ~20 KB

SCRIPT = [
    step("[sec-refund]", 0, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                           "reason": "arrived broken"}))),
    step("[sec-refund]", 1, text="Refunded 291.50 USD for ORD-1001."),
    # A model that writes NaN into its arguments (the JSON text holds the bare constant).
    step("[sec-nan]", 0, calls=calls(("refund_order", '{"order_id": "ORD-1026", "amount": NaN, "reason": "x"}'))),
    step("[sec-nan]", 1, text="I could not refund that."),
    # "amount": true must never become 1.00.
    step("[sec-bool]", 0, calls=calls(("refund_order", {"order_id": "ORD-1026", "amount": True, "reason": "x"}))),
    step("[sec-bool]", 1, text="I could not refund that."),
    # Four gated refunds at once, decided with 4000-character comments; one with a 20 KB reason.
    step("[sec-big]", 0, calls=calls(*[("refund_order", {"order_id": order, "amount": amount, "reason": LONG_REASON})
                                      for order, amount in (("ORD-1060", 626.90), ("ORD-1061", 279.00),
                                                            ("ORD-1026", 119.00), ("ORD-1001", 291.50))])),
    step("[sec-big]", 4, text="Done with the four refunds."),
    step("[sec-quick]", 0, text="Hello."),
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp("security"), SCRIPT)
    yield app
    app.close()


def _problem(answer, status: int, slug: str | None = None) -> dict[str, Any]:
    assert answer.status == status, (answer.status, answer.body)
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.headers
    body = answer.json
    assert body["status"] == status and body["title"] and body["detail"], body
    if slug:
        assert body["type"] == f"urn:durable-agents:problem:{slug}", body
    return body


def _strict_json(text: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in an answer")

    return json.loads(text, parse_constant=refuse)


def _pending(stack: AppStack, run_id: str, count: int = 1, user: str = SUPPORT_USER) -> list[dict[str, Any]]:
    def ready() -> list[dict[str, Any]] | None:
        run = http("GET", stack.url(f"/api/runs/{run_id}"), user=user).json
        return run["pendingApprovals"] if len(run["pendingApprovals"]) >= count else None

    return wait_for(ready, timeout=60, what=f"{count} pending approvals of {run_id}")


def test_walkthrough_with_identities_and_the_audit_answer(stack):
    # The support agent starts a run for the customer.
    started = http("POST", stack.url("/api/agents/support/runs"), {
        "input": "Please refund ORD-1001, it arrived broken. [sec-refund]", "customer": CUSTOMER,
        "runId": "sec-walk"}, user=SUPPORT_USER)
    assert started.status == 202, started.body
    assert "management" not in started.json and "code=" not in started.body.decode()
    assert started.json["customer"] == CUSTOMER
    assert started.json["startedBy"] == {"id": f"dev-{SUPPORT_USER}", "name": SUPPORT_USER}
    [pending] = _pending(stack, "sec-walk")
    url = stack.url(f"/api/runs/sec-walk/approvals/{pending['id']}")

    _problem(http("POST", url, {"approved": True}, user=None), 401, "unauthenticated")
    # The requester may not approve its own run (separation of duties), even with the Approver role.
    _problem(http("POST", url, {"approved": True}, user=SUPPORT_USER), 403, "own-run")
    # Neither may the customer (no approver role), nor support staff without it.
    _problem(http("POST", url, {"approved": True}, user=CUSTOMER, roles=""), 403, "not-an-approver")
    _problem(http("POST", url, {"approved": True}, user="casey.support", roles="Support"), 403, "not-an-approver")
    # A stranger does not even see the run.
    _problem(http("POST", url, {"approved": True}, user="eve@example.com", roles=""), 404, "run-not-found")
    _problem(http("GET", stack.url("/api/runs/sec-walk"), user="eve@example.com", roles=""), 404)
    assert all(run["id"] != "sec-walk" for run in
               http("GET", stack.url("/api/runs"), user="eve@example.com", roles="").json["runs"])
    # A decision bound to other arguments is refused before anything is raised.
    _problem(http("POST", url, {"approved": True, "argumentsHash": "sha256:" + "0" * 64}, user=REVIEWER),
             409, "arguments-changed")
    assert http("GET", stack.url("/api/runs/sec-walk")).json["approvals"] == []

    decided = http("POST", url, {"approved": True, "comment": "Photos confirm it.",
                                 "argumentsHash": pending["argumentsHash"]}, user=REVIEWER)
    assert decided.status == 202, decided.body
    assert decided.json["decidedBy"] == {"id": f"dev-{REVIEWER}", "name": REVIEWER}
    run = wait_for(lambda: (lambda r: r if r["status"] == "completed" else None)(
        http("GET", stack.url("/api/runs/sec-walk"), user=CUSTOMER, roles="").json), timeout=60, what="completed")
    assert run["approvals"][0]["decidedBy"] == {"id": f"dev-{REVIEWER}", "name": REVIEWER}
    [refund] = stack.refunds("ORD-1001")
    assert str(refund.amount) == "291.50"

    audit = http("GET", stack.url("/api/runs/sec-walk/audit"), user=CUSTOMER, roles="")
    assert audit.status == 200, audit.body
    records = audit.json["records"]
    assert [(r["event"], r["decision"], (r["actor"] or {}).get("id")) for r in records] == [
        ("requested", None, None), ("decided", "approved", f"dev-{REVIEWER}")]
    assert {r["argumentsHash"] for r in records} == {pending["argumentsHash"]}
    assert records[0]["arguments"] == {"order_id": "ORD-1001", "amount": 291.5, "reason": "arrived broken"}
    assert records[1]["comment"] == "Photos confirm it."

    # The audit survives a purge of the run's history (operators purge through the Durable API).
    purge = http("DELETE", stack.url("/runtime/webhooks/durabletask/instances/sec-walk"), user=None)
    assert purge.status == 200, purge.body
    _problem(http("GET", stack.url("/api/runs/sec-walk")), 404)
    again = http("GET", stack.url("/api/runs/sec-walk/audit"), user=REVIEWER)
    assert again.status == 200 and again.json["records"] == records
    _problem(http("GET", stack.url("/api/runs/sec-walk/audit"), user=CUSTOMER, roles=""), 404)


def test_bad_requests_are_problems_and_change_nothing(stack):
    runs = stack.url("/api/agents/support/runs")
    body = {"input": "hi [sec-quick]", "customer": CUSTOMER}
    before = http("GET", stack.url("/api/runs?top=100"), user=REVIEWER).json["runs"]
    _problem(http("GET", stack.url("/api/runs?top=%C2%B2")), 400, "invalid-query")
    _problem(http("POST", runs, raw=b'{"input": "\\ud800 hi [sec-quick]"}'), 400, "malformed-json")
    _problem(http("POST", runs, body, content_type="text/plain"), 415, "unsupported-media-type")
    _problem(http("POST", runs, body, content_type="application/x-www-form-urlencoded"), 415)
    _problem(http("POST", runs, body, content_type=None), 415)
    _problem(http("POST", runs, {**body, "customer": "someone.else@example.com"}, user=CUSTOMER, roles=""),
             403, "customer-not-allowed")
    _problem(http("POST", runs, body, user=None), 401, "unauthenticated")
    wrong = http("PUT", stack.url("/api/runs/abc"))
    _problem(wrong, 405, "method-not-allowed")
    assert "GET" in wrong.headers["allow"] and "DELETE" in wrong.headers["allow"]
    _problem(http("GET", stack.url("/api/runs/%2e%2e")), 404, "route-not-found")
    _problem(http("GET", stack.url("/api/nothing-here")), 404, "route-not-found")
    _problem(http("GET", stack.url("/api/runs/" + "a" * 10_000)), 414, "uri-too-long")
    # None of these started anything.
    assert http("GET", stack.url("/api/runs?top=100"), user=REVIEWER).json["runs"] == before


def test_concurrent_starts_with_one_run_id_exactly_one_wins(stack):
    barrier = threading.Barrier(8)

    def start(i: int):
        barrier.wait()
        return http("POST", stack.url("/api/agents/support/runs"),
                    {"input": f"hello {i} [sec-quick]", "customer": CUSTOMER, "runId": "sec-race"})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(start, range(8)))
    statuses = sorted(a.status for a in answers)
    assert statuses == [202] + [409] * 7, [(a.status, a.body[:200]) for a in answers]
    winner = next(a for a in answers if a.status == 202)
    for loser in (a for a in answers if a.status == 409):
        _problem(loser, 409, "run-id-in-use")
    status = http("GET", stack.url("/runtime/webhooks/durabletask/instances/sec-race?showInput=true"), user=None).json
    assert json.loads(status["input"])["input"] if isinstance(status["input"], str) else status["input"]["input"]
    run = wait_for(lambda: (lambda r: r if r["status"] == "completed" else None)(
        http("GET", stack.url("/api/runs/sec-race")).json), timeout=60, what="sec-race completed")
    assert run["id"] == winner.json["id"] == "sec-race"


def test_nan_and_boolean_amounts_never_reach_a_refund_or_an_answer(stack):
    for tag, run_id in (("[sec-nan]", "sec-nan"), ("[sec-bool]", "sec-bool")):
        assert http("POST", stack.url("/api/agents/support/runs"),
                    {"input": f"refund ORD-1026 {tag}", "customer": CUSTOMER, "runId": run_id}).status == 202
        run = wait_for(lambda rid=run_id: (lambda r: r if r["status"] in ("completed", "failed") else None)(
            http("GET", stack.url(f"/api/runs/{rid}")).json), timeout=60, what=f"{run_id} finished")
        assert run["status"] == "completed", run
    assert stack.refunds("ORD-1026") == []
    seen = [json.dumps(r["body"]) for r in stack.model.requests]
    assert any("arguments are not valid JSON" in text for text in seen if "[sec-nan]" in text)
    assert any("invalid_amount" in text for text in seen if "[sec-bool]" in text)
    for path in ("/api/runs/sec-nan", "/api/runs/sec-bool", "/api/runs?top=100"):
        answer = http("GET", stack.url(path))
        assert answer.status == 200
        _strict_json(answer.body)


def test_long_comments_and_a_20_kb_reason_keep_the_custom_status_under_16_kb(stack):
    assert http("POST", stack.url("/api/agents/support/runs"),
                {"input": "four refunds please [sec-big]", "customer": CUSTOMER, "runId": "sec-big"},
                user=SUPPORT_USER).status == 202
    pending = _pending(stack, "sec-big", 4)
    assert all(p["truncated"] for p in pending)
    for item in pending:
        answer = http("POST", stack.url(f"/api/runs/sec-big/approvals/{item['id']}"),
                      {"approved": True, "comment": "c" * 4000}, user=REVIEWER)
        assert answer.status == 202, answer.body
        raw = http("GET", stack.url("/runtime/webhooks/durabletask/instances/sec-big"), user=None).json
        assert len(json.dumps(raw["customStatus"])) < 8_704  # the extension: at most 16 whole KB of UTF-16
    run = wait_for(lambda: (lambda r: r if r["status"] in ("completed", "failed") else None)(
        http("GET", stack.url("/api/runs/sec-big")).json), timeout=60, what="sec-big finished")
    assert run["status"] == "completed", run["error"]
    # The whole arguments stay available from the audit.
    records = http("GET", stack.url("/api/runs/sec-big/audit")).json["records"]
    requested = [r for r in records if r["event"] == "requested"]
    assert len(requested) == 4 and all(r["arguments"]["reason"] == LONG_REASON for r in requested)
    assert len([r for r in records if r["event"] == "decided"]) == 4


def test_every_run_is_reachable_through_the_continuation_token(stack):
    ids = [f"sec-page-{i:02d}" for i in range(23)]
    for run_id in ids:
        assert http("POST", stack.url("/api/agents/support/runs"),
                    {"input": "hi [sec-quick]", "customer": CUSTOMER, "runId": run_id}).status == 202
    seen: list[str] = []
    token = None
    while True:
        query = "agent=support&top=7" + (f"&continuationToken={token}" if token else "")
        page = http("GET", stack.url(f"/api/runs?{query}"), user=REVIEWER).json
        seen += [run["id"] for run in page["runs"]]
        token = page["continuationToken"]
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert [i for i in seen if i.startswith("sec-page-")] == list(reversed(ids))  # newest first
    _problem(http("GET", stack.url("/api/runs?continuationToken=bm90LWEtdG9rZW4")), 400, "invalid-continuation-token")


def test_function_keys_never_reach_the_logs(stack):
    secret = "k3y-that-must-not-be-logged"
    http("GET", stack.url(f"/api/runs?code={secret}"))
    http("GET", stack.url(f"/api/nothing-here?code={secret}"))
    http("POST", stack.url(f"/api/runs/nope/cancel?code={secret}"))
    http("GET", stack.url(f"/api/runs/{'b' * 9000}?code={secret}"))
    log = stack.runtime.log_path.read_text(encoding="utf-8", errors="replace")
    assert secret not in log


def test_a_lone_surrogate_in_a_tool_result_never_reaches_the_model_request(tmp_path):
    orders = json.loads((REPO_ROOT / "data" / "orders.json").read_text(encoding="utf-8"))
    order = next(o for o in orders if o["id"] == "ORD-1001")
    order["items"][0]["name"] = "Headphones \ud800 (refurbished)"  # a lone surrogate, as json.loads gives it
    dataset = tmp_path / "orders.json"
    dataset.write_text(json.dumps(orders), encoding="utf-8")  # ASCII-escaped: "\ud800" stays an escape
    script = [step("[sec-sur]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1001"}))),
              step("[sec-sur]", 1, text="Your headphones.")]
    (tmp_path / "stack").mkdir()
    app = AppStack(tmp_path / "stack", script, env={"ORDERS_DATA_PATH": str(dataset)})
    try:
        run_id = app.start_run("What did I buy in ORD-1001? [sec-sur]", customer=CUSTOMER)
        run = app.wait_status(run_id, "completed", "failed")
        assert run["status"] == "completed", run["error"]
        [second] = [r for r in app.model.requests if "Headphones" in json.dumps(r["body"])]
        text = json.dumps(second["body"], ensure_ascii=False)
        assert "Headphones \ufffd (refurbished)" in text and "\\ud800" not in json.dumps(second["body"])
    finally:
        app.close()
