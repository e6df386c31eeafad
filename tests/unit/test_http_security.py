"""The HTTP API's security rules (issue 8) through its real decorated functions and a real Durable client.

Same harness as ``test_http_api.py`` (the ``Api`` caller, ``FakeDurableHost`` on loopback): identity from the App
Service headers (401 / WWW-Authenticate), approver roles and separation of duties (403), the customer a run acts
for, who sees which run (404), media types (415), lone surrogates, concurrent starts of one id (409), paging with
continuation tokens, the ``decided`` audit record and ``GET runs/{id}/audit``, and answers that stay JSON when the
store holds NaN.
"""

import asyncio
import base64
import json
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import azure.functions as func
import pytest

from durable_agents._audit import AuditRecord, arguments_hash, get_audit_store
from tests.unit.test_http_api import (  # auth_env (autouse) and durable: the same fixtures as the API tests
    CAROL,
    CAROL_PRINCIPAL,
    ORCH,
    OTHER_ORCH,
    PENDING,
    STAFF,
    STAFF_PRINCIPAL,
    Api,
    Reply,
    _build_api,
    assert_problem,
    auth_env,  # noqa: F401
    durable,  # noqa: F401
    run_input,
    seed_awaiting,
)
from tests.unit.test_http_api_fake_durable import FakeDurableHost, _now
from tests.unit.test_identity import principal_headers


def _user(oid: str, email: str | None, *roles: str, name: str | None = None) -> tuple[dict[str, str], dict]:
    headers = principal_headers(oid=oid, name=name or oid, preferred_username=email, roles=roles)
    return headers, {"id": oid, "name": email or name or oid}


ALICE, ALICE_P = _user("a11ce000-0000-4000-8000-000000000001", "alice@example.com")
BOB, BOB_P = _user("b0b00000-0000-4000-8000-000000000002", "bob@example.com")
ANN, ANN_P = _user("a2200000-0000-4000-8000-000000000003", "ann@contoso.com", "Approver")
AL, AL_P = _user("a1000000-0000-4000-8000-000000000004", "al@contoso.com", "Approver")
SUE, SUE_P = _user("5e000000-0000-4000-8000-000000000005", "sue@contoso.com", "Support")
APP, APP_P = _user("a9900000-0000-4000-8000-000000000006", None, "Approver", name="refund-bot")


@pytest.fixture
def api(durable) -> Api:  # noqa: F811 (the imported fixture)
    return _build_api(durable, approval_wait_seconds=3.0, approval_poll_seconds=0.05)


def seed_for(host: FakeDurableHost, run_id: str, started_by: dict, customer: str | None, **kw: Any) -> None:
    """A running version-2 run awaiting approval ``call_1`` (:data:`PENDING`)."""
    seed_awaiting(host, run_id, input_text=run_input(customer=customer, started_by=started_by), **kw)


def audit_records(run_id: str) -> list[AuditRecord]:
    return get_audit_store().list_for_run(run_id)


def strict_json(raw: bytes) -> Any:
    """Parse an answer as RFC 8259 JSON: NaN / Infinity are refused."""
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} in an answer: not JSON")

    return json.loads(raw.decode("utf-8"), parse_constant=refuse)


# ------------------------------------------------------------------------------------------------------
# 401 without an identity


ROUTES = {
    "start": lambda api, **kw: api.start("support", {"input": "hi"}, **kw),
    "list_runs": lambda api, **kw: api.list_runs(**kw),
    "get_run": lambda api, **kw: api.get_run("run1", **kw),
    "decide": lambda api, **kw: api.decide("run1", "call_1", {"approved": True}, **kw),
    "cancel": lambda api, **kw: api.cancel("run1", **kw),
    "audit": lambda api, **kw: api.audit("run1", **kw),
}
INSTANCES = {"start": "/api/agents/support/runs", "list_runs": "/api/runs", "get_run": "/api/runs/run1",
             "decide": "/api/runs/run1/approvals/call_1", "cancel": "/api/runs/run1/cancel",
             "audit": "/api/runs/run1/audit"}


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_but_list_agents_needs_an_identity(api, route):
    seed_for(api.host, "run1", CAROL_PRINCIPAL, "carol@example.com")
    api.host.requests.clear()
    reply = ROUTES[route](api, user=None)
    doc = assert_problem(reply, 401, "unauthenticated", INSTANCES[route])
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert "X-Dev-User" in doc["detail"]
    assert api.host.requests == []  # refused before the task hub is asked anything
    assert audit_records("run1") == []


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_forged_principal_headers_are_401_when_the_platform_does_not_authenticate(api, monkeypatch, route):
    monkeypatch.delenv("WEBSITE_AUTH_ENABLED")
    seed_for(api.host, "run1", CAROL_PRINCIPAL, "carol@example.com")
    api.host.requests.clear()
    reply = ROUTES[route](api, user=STAFF)
    assert_problem(reply, 401, "unauthenticated", INSTANCES[route])
    assert api.host.mutations() == []


def test_list_agents_needs_no_identity(api):
    reply = api.list_agents(user=None)
    assert reply.status == 200 and "WWW-Authenticate" not in reply.headers
    assert [a["name"] for a in reply.body["agents"]] == ["broken", "support", "triage"]


def test_a_malformed_principal_header_is_401(api):
    headers = dict(ALICE)
    headers["X-MS-CLIENT-PRINCIPAL"] = base64.b64encode(b"{not json").decode()
    assert_problem(api.list_runs(user=headers), 401, "unauthenticated", "/api/runs")


# ------------------------------------------------------------------------------------------------------
# Deciding: approver roles and separation of duties


@pytest.mark.parametrize("who", ["customer", "support"])
def test_a_caller_without_an_approver_role_may_not_decide(api, who):
    user = {"customer": ALICE, "support": SUE}[who]
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    doc = assert_problem(api.decide("run1", "call_1", {"approved": True}, user=user), 403, "not-an-approver",
                         "/api/runs/run1/approvals/call_1")
    assert "Approver" in doc["detail"]
    assert api.host.mutations() == [] and audit_records("run1") == []


def test_approver_roles_and_groups_come_from_the_settings(api, monkeypatch):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    monkeypatch.setenv("APPROVER_ROLES", "Refunds.Approve")
    # Ann's "Approver" role no longer counts: she may neither decide nor see Alice's run.
    assert_problem(api.decide("run1", "call_1", {"approved": True}, user=ANN), 404, "run-not-found",
                   "/api/runs/run1/approvals/call_1")
    seed_for(api.host, "anns", ANN_P, "ann@contoso.com")
    assert_problem(api.decide("anns", "call_1", {"approved": True}, user=ANN), 403, "not-an-approver",
                   "/api/runs/anns/approvals/call_1")
    refunds = principal_headers(oid="f0000000-0000-4000-8000-000000000008", name="Flo",
                                preferred_username="flo@contoso.com", roles=("Refunds.Approve",))
    assert api.decide("anns", "call_1", {"approved": True}, user=refunds).status == 202
    group_member = principal_headers(oid="g0000000-0000-4000-8000-000000000007", name="Gil",
                                     preferred_username="gil@contoso.com", groups=("approvers-group-id",))
    monkeypatch.setenv("APPROVER_GROUPS", "approvers-group-id")
    assert api.decide("run1", "call_1", {"approved": True}, user=group_member).status == 202


def test_the_approver_who_started_a_run_may_not_decide_its_approvals(api):
    staff_id = STAFF_PRINCIPAL["id"]
    started = api.start("support", {"input": "refund ORD-1", "runId": "mine", "customer": "alice@example.com"},
                        user=STAFF)
    assert started.status == 202 and started.body["startedBy"]["id"] == staff_id
    api.host.update("mine", runtime_status="Running", custom_status={"pendingApprovals": [PENDING], "approvals": []})
    doc = assert_problem(api.decide("mine", "call_1", {"approved": True}, user=STAFF), 403, "own-run",
                         "/api/runs/mine/approvals/call_1")
    assert "You started this run" in doc["detail"]
    assert_problem(api.decide("mine", "call_1", {"approved": False}, user=STAFF), 403, "own-run",
                   "/api/runs/mine/approvals/call_1")  # rejecting is deciding too
    assert api.host.instances["mine"].events == [] and audit_records("mine") == []
    assert api.decide("mine", "call_1", {"approved": True}, user=ANN).status == 202


def test_an_approver_may_not_approve_a_refund_for_themselves(api):
    # Support started the run for Ann (an approver); Ann is its customer.
    seed_for(api.host, "ann-refund", SUE_P, "ann@contoso.com")
    doc = assert_problem(api.decide("ann-refund", "call_1", {"approved": True}, user=ANN), 403, "own-run",
                         "/api/runs/ann-refund/approvals/call_1")
    assert "acts for you" in doc["detail"]
    assert api.host.mutations() == [] and audit_records("ann-refund") == []
    assert api.decide("ann-refund", "call_1", {"approved": True}, user=AL).status == 202


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "off"])
def test_separation_of_duties_can_be_switched_off(api, monkeypatch, value):
    monkeypatch.setenv("SEPARATION_OF_DUTIES", value)
    seed_for(api.host, "own", ANN_P, "ann@contoso.com")
    reply = api.decide("own", "call_1", {"approved": True}, user=ANN)
    assert reply.status == 202 and reply.body["decidedBy"] == ANN_P


@pytest.mark.parametrize("value", ["true", "yes", "on", "1", "anything"])
def test_separation_of_duties_stays_on_for_other_values(api, monkeypatch, value):
    monkeypatch.setenv("SEPARATION_OF_DUTIES", value)
    seed_for(api.host, "own", ANN_P, "ann@contoso.com")
    assert_problem(api.decide("own", "call_1", {"approved": True}, user=ANN), 403, "own-run",
                   "/api/runs/own/approvals/call_1")


def test_an_approver_decides_the_event_carries_who_and_the_hash_and_the_audit_records_it_first(api):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    seen_at_event: list[list[str]] = []

    def on_raise(_instance, _name, _payload):
        # The "decided" record is written before the event is raised (the task hub is serving the raise now).
        seen_at_event.append([r.event for r in audit_records("run1")])

    api.host.on_raise = on_raise
    reply = api.decide("run1", "call_1", {"approved": True, "comment": "ok",
                                          "argumentsHash": PENDING["argumentsHash"]}, user=ANN)
    assert reply.status == 202
    assert reply.body["decidedBy"] == ANN_P and reply.body["recorded"] is True
    assert seen_at_event == [["decided"]]
    (name, payload), = api.host.instances["run1"].events
    assert name == "approval:call_1"
    assert json.loads(payload) == {"approved": True, "comment": "ok", "decidedBy": ANN_P,
                                   "argumentsHash": PENDING["argumentsHash"]}
    (stored,) = audit_records("run1")
    assert (stored.event, stored.decision, stored.comment, stored.actor_id, stored.actor_name) == (
        "decided", "approved", "ok", ANN_P["id"], "ann@contoso.com")
    assert stored.arguments_hash == PENDING["argumentsHash"] and stored.tool == "refund_order"
    assert api.get_run("run1", user=ALICE).body["approvals"][0]["decidedBy"] == ANN_P
    # Only the decided record: "requested" records are written by the run's own activity, which the fake host
    # does not execute.
    audit = api.audit("run1", user=ANN)
    assert audit.status == 200
    assert audit.body == {"runId": "run1", "records": [{
        "runId": "run1", "approvalId": "call_1", "event": "decided", "kind": "tool", "tool": "refund_order",
        "argumentsHash": PENDING["argumentsHash"], "arguments": None, "decision": "approved", "comment": "ok",
        "actor": ANN_P, "at": stored.at}]}
    assert api.audit("run1", user=ALICE).body == audit.body  # the run's customer reads its audit too


def test_a_pending_approval_without_arguments_hash_is_decided_and_audited_with_the_shown_arguments_hash(api):
    # Custom status written before argumentsHash existed (a version-1 run, or the previous release).
    legacy = {k: v for k, v in PENDING.items() if k not in ("argumentsHash", "kind", "summary")}
    seed_for(api.host, "run1", ALICE_P, "alice@example.com", pendingApprovals=[legacy])
    reply = api.decide("run1", "call_1", {"approved": True}, user=ANN)
    assert reply.status == 202 and reply.body["recorded"] is True
    assert json.loads(api.host.instances["run1"].events[0][1])["argumentsHash"] is None
    (stored,) = audit_records("run1")
    assert stored.arguments_hash == arguments_hash(legacy["arguments"]) == PENDING["argumentsHash"]


def test_a_service_principal_with_the_approver_role_decides(api):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    reply = api.decide("run1", "call_1", {"approved": False, "comment": "policy"}, user=APP)
    assert reply.status == 202 and reply.body["decision"] == "rejected" and reply.body["decidedBy"] == APP_P
    assert audit_records("run1")[0].actor_id == APP_P["id"]


def test_a_decision_for_other_arguments_is_409_and_raises_nothing(api):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    other = "sha256:" + "0" * 64
    doc = assert_problem(api.decide("run1", "call_1", {"approved": True, "argumentsHash": other}, user=ANN),
                         409, "arguments-changed", "/api/runs/run1/approvals/call_1")
    assert doc["argumentsHash"] == PENDING["argumentsHash"] and other in doc["detail"]
    assert api.host.mutations() == [] and audit_records("run1") == []
    assert api.get_run("run1", user=ANN).body["pendingApprovals"] == [PENDING]


@pytest.mark.parametrize("value", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "0" * 64, 5])
def test_a_malformed_arguments_hash_is_400(api, value):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    doc = assert_problem(api.decide("run1", "call_1", {"approved": True, "argumentsHash": value}, user=ANN), 400,
                         "invalid-body", "/api/runs/run1/approvals/call_1")
    assert doc["fields"] == ["argumentsHash"]
    assert api.host.mutations() == []


# ------------------------------------------------------------------------------------------------------
# The customer a run acts for


def _started_input(api: Api, run_id: str) -> dict[str, Any]:
    return json.loads(api.host.instances[run_id].input)


def test_a_customer_may_not_start_a_run_for_another_customer(api):
    doc = assert_problem(api.start("support", {"input": "refund", "customer": "bob@example.com"}, user=ALICE), 403,
                         "customer-not-allowed", "/api/agents/support/runs")
    assert "Support" in doc["detail"]
    assert api.host.mutations() == []


def test_a_customer_may_name_themselves_in_any_case_and_the_default_is_their_email(api):
    named = api.start("support", {"input": "refund", "runId": "named", "customer": "Alice@Example.COM"}, user=ALICE)
    assert named.status == 202 and named.body["customer"] == "alice@example.com"
    default = api.start("support", {"input": "refund", "runId": "dflt"}, user=ALICE)
    assert default.status == 202 and default.body["customer"] == "alice@example.com"
    for run_id in ("named", "dflt"):
        started = _started_input(api, run_id)
        assert started["customer"] == "alice@example.com" and started["startedBy"] == ALICE_P
        assert started["version"] == 3


def test_support_may_start_a_run_for_any_customer(api):
    reply = api.start("support", {"input": "refund", "runId": "for-bob", "customer": "Bob@Example.com"}, user=SUE)
    assert reply.status == 202
    assert reply.body["customer"] == "bob@example.com" and reply.body["startedBy"] == SUE_P
    assert _started_input(api, "for-bob")["customer"] == "bob@example.com"
    assert api.get_run("for-bob", user=BOB).status == 200  # Bob sees the run that acts for him


def test_a_caller_without_an_email_acts_for_nobody_by_default(api):
    reply = api.start("support", {"input": "batch job", "runId": "bot"}, user=APP)
    assert reply.status == 202 and reply.body["customer"] is None
    assert _started_input(api, "bot")["customer"] is None
    assert_problem(api.start("support", {"input": "x", "customer": "bob@example.com"}, user=APP), 403,
                   "customer-not-allowed", "/api/agents/support/runs")


@pytest.mark.parametrize("customer", ["", "has space@example.com", "a" * 255, "tab\there", 5, ["x"]])
def test_a_malformed_customer_is_400(api, customer):
    doc = assert_problem(api.start("support", {"input": "x", "customer": customer}, user=SUE), 400,
                         "invalid-body", "/api/agents/support/runs")
    assert doc["fields"] == ["customer"]


# ------------------------------------------------------------------------------------------------------
# Who sees which run


def _seed_bobs_and_alices(host: FakeDurableHost) -> None:
    seed_for(host, "bobs", BOB_P, "bob@example.com")
    seed_for(host, "alices", ALICE_P, "alice@example.com")
    seed_for(host, "for-alice", SUE_P, "alice@example.com")  # support started it for Alice


def test_another_customer_s_run_is_404_everywhere_and_not_listed(api):
    _seed_bobs_and_alices(api.host)
    assert_problem(api.get_run("bobs", user=ALICE), 404, "run-not-found", "/api/runs/bobs")
    assert_problem(api.decide("bobs", "call_1", {"approved": True}, user=ALICE), 404, "run-not-found",
                   "/api/runs/bobs/approvals/call_1")
    assert_problem(api.cancel("bobs", user=ALICE), 404, "run-not-found", "/api/runs/bobs/cancel")
    assert_problem(api.audit("bobs", user=ALICE), 404, "run-not-found", "/api/runs/bobs/audit")
    # The answers are the same as for an id that does not exist: run ids cannot be probed.
    unknown = api.get_run("nothing-here", user=ALICE).body
    assert set(unknown) == set(api.get_run("bobs", user=ALICE).body)
    assert sorted(r["id"] for r in api.list_runs(user=ALICE).body["runs"]) == ["alices", "for-alice"]
    assert [r["id"] for r in api.list_runs(user=BOB).body["runs"]] == ["bobs"]
    assert api.host.mutations() == []


def test_support_and_approvers_see_every_run(api):
    _seed_bobs_and_alices(api.host)
    for user in (SUE, ANN, APP):
        assert sorted(r["id"] for r in api.list_runs(user=user).body["runs"]) == ["alices", "bobs", "for-alice"]
        assert api.get_run("bobs", user=user).status == 200


def test_the_run_json_names_its_customer_and_starter(api):
    _seed_bobs_and_alices(api.host)
    run = api.get_run("for-alice", user=ALICE).body
    assert run["customer"] == "alice@example.com" and run["startedBy"] == SUE_P


def test_an_unrelated_caller_sees_no_version_1_run(api):
    api.host.add("v1", ORCH, json.dumps({"agent": "support", "input": "hi", "settings": {}}), runtime_status="Running")
    assert_problem(api.get_run("v1", user=ALICE), 404, "run-not-found", "/api/runs/v1")
    assert api.get_run("v1", user=SUE).body["customer"] is None


def test_cancel_by_a_stranger_is_404_by_the_customer_403_by_support_or_the_starter_202(api):
    _seed_bobs_and_alices(api.host)
    assert_problem(api.cancel("bobs", user=ALICE), 404, "run-not-found", "/api/runs/bobs/cancel")
    # Alice sees the run support started for her but did not start it herself.
    assert_problem(api.cancel("for-alice", user=ALICE), 403, "not-allowed", "/api/runs/for-alice/cancel")
    assert api.host.mutations() == []
    assert api.cancel("bobs", user=SUE).status == 202
    assert api.cancel("alices", user=ALICE).status == 202
    assert api.cancel("for-alice", user=ANN).status == 202
    terminated = sorted(path.split("/")[3] for method, path in api.host.mutations() if "/terminate" in path)
    assert terminated == ["alices", "bobs", "for-alice"]


def test_the_audit_of_a_purged_run_is_for_support_and_approvers_only(api):
    seed_for(api.host, "gone", ALICE_P, "alice@example.com")
    assert api.decide("gone", "call_1", {"approved": True}, user=ANN).status == 202
    del api.host.instances["gone"]
    assert [r["event"] for r in api.audit("gone", user=SUE).body["records"]] == ["decided"]
    assert api.audit("gone", user=ANN).status == 200
    assert_problem(api.audit("gone", user=ALICE), 404, "run-not-found", "/api/runs/gone/audit")
    assert_problem(api.audit("never", user=SUE), 404, "run-not-found", "/api/runs/never/audit")


# ------------------------------------------------------------------------------------------------------
# Media types and lone surrogates


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None,
                                          "multipart/form-data; boundary=x", "application/jsonp"])
@pytest.mark.parametrize("route", ["start", "decide", "cancel"])
def test_posts_that_are_not_json_are_415(api, route, content_type):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    api.host.requests.clear()
    if route == "start":
        reply = api.start("support", {"input": "hi"}, user=ALICE, content_type=content_type)
    elif route == "decide":
        reply = api.decide("run1", "call_1", {"approved": True}, user=ANN, content_type=content_type)
    else:
        reply = api.cancel("run1", {"reason": "x"}, user=ALICE, content_type=content_type)
    route_path = {"start": "/api/agents/support/runs", "decide": "/api/runs/run1/approvals/call_1",
                  "cancel": "/api/runs/run1/cancel"}[route]
    doc = assert_problem(reply, 415, "unsupported-media-type", route_path)
    assert doc["accept"] == "application/json"
    assert api.host.requests == [] and audit_records("run1") == []


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "Application/JSON",
                                          " application/json ;charset=UTF-8"])
def test_json_with_parameters_or_in_another_case_is_accepted(api, content_type):
    assert api.start("support", {"input": "hi"}, user=ALICE, content_type=content_type).status == 202


def test_cancel_without_a_body_needs_no_content_type(api):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    reply = api.cancel("run1", user=ALICE, content_type=None)
    assert reply.status == 202 and reply.body["reason"] == "cancelled by caller"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"input": "\\ud800"}',
        b'{"input": "ok \\udfff"}',
        b'{"input": "\\ude00\\ud83d"}',  # a low surrogate before a high one is no pair
        b'{"input": "hi", "runId": "\\ud800"}',
        b'{"input": "hi", "customer": "x\\ud800@example.com"}',
        b'{"\\ud800": 1, "input": "hi"}',
    ],
)
def test_a_body_with_a_lone_surrogate_is_400_malformed_json_and_starts_nothing(api, raw):
    doc = assert_problem(api.start("support", raw, user=ALICE), 400, "malformed-json", "/api/agents/support/runs")
    assert "surrogate" in doc["detail"]
    assert api.host.mutations() == []


def test_a_surrogate_pair_is_an_ordinary_character(api):
    reply = api.start("support", b'{"input": "thanks \\ud83d\\ude00", "runId": "emoji"}', user=ALICE)
    assert reply.status == 202
    assert _started_input(api, "emoji")["input"] == "thanks \U0001f600"


def test_a_decision_comment_with_a_lone_surrogate_is_400(api):
    seed_for(api.host, "run1", ALICE_P, "alice@example.com")
    assert_problem(api.decide("run1", "call_1", b'{"approved": true, "comment": "\\ud800"}', user=ANN), 400,
                   "malformed-json", "/api/runs/run1/approvals/call_1")
    assert api.host.mutations() == [] and audit_records("run1") == []


@pytest.mark.parametrize("top", ["\u00b2", "\u0663", "1\u00b2"])
def test_top_in_digits_that_are_not_ascii_is_400(api, top):
    doc = assert_problem(api.list_runs(user=ALICE, top=top), 400, "invalid-query", "/api/runs")
    assert doc["fields"] == ["top"]
    assert api.host.requests == []


# ------------------------------------------------------------------------------------------------------
# Concurrent starts of one new id


def _request(api: Api, user: dict[str, str], body: dict[str, Any]) -> func.HttpRequest:
    raw = json.dumps(body).encode()
    return func.HttpRequest(
        "POST", "http://localhost:7071/api/agents/support/runs?" + urlencode({"code": "k"}),
        headers={"Content-Type": "application/json", "Content-Length": str(len(raw)), **user},
        params={"code": "k"}, route_params={"agent": "support"}, body=raw)


def test_eight_concurrent_starts_of_one_new_run_id_one_202_seven_409(api):
    user_function = api.functions["api_start_run"].get_user_function()
    client = api.host.client_json()

    async def race() -> list[func.HttpResponse]:
        requests = [_request(api, ALICE, {"input": f"attempt {n}", "runId": "once"}) for n in range(8)]
        return list(await asyncio.gather(*(user_function(req=req, client=client) for req in requests)))

    replies = [Reply(r.status_code, dict(r.headers), r.get_body()) for r in api.loop.run(race())]
    assert sorted(r.status for r in replies) == [202] + [409] * 7
    for reply in replies:
        if reply.status == 409:
            assert_problem(reply, 409, "run-id-in-use", "/api/agents/support/runs")
    # All eight passed the API's own existence check: the task hub refused seven of them.
    posts = [path for method, path in api.host.requests if method == "POST" and "/orchestrators/" in path]
    assert len(posts) == 8
    winner = next(r for r in replies if r.status == 202).body
    assert winner["id"] == "once"
    started = _started_input(api, "once")
    assert started["startedBy"] == ALICE_P and started["input"].startswith("attempt ")


def test_starting_over_a_finished_run_id_is_409_and_keeps_it(api):
    api.host.add("fin", ORCH, run_input(text="first"), runtime_status="Completed")
    assert_problem(api.start("support", {"input": "again", "runId": "fin"}, user=CAROL), 409, "run-id-in-use",
                   "/api/agents/support/runs")
    assert json.loads(api.host.instances["fin"].input)["input"] == "first"


# ------------------------------------------------------------------------------------------------------
# GET runs: pages newest first through continuationToken


def _seed_many(host: FakeDurableHost, count: int = 250) -> list[str]:
    """``count`` runs created one second apart a day ago (ids not in creation order); newest first ids."""
    base = _now() - timedelta(days=1)
    ids = []
    for n in range(count):
        run_id = f"r{(n * 7919) % 1000:03d}-{n}"
        agent, orch = ("triage", OTHER_ORCH) if n % 5 == 0 else ("support", ORCH)
        runtime = "Completed" if n % 3 == 0 else "Running"
        customer, started = ("alice@example.com", ALICE_P) if n % 2 else ("bob@example.com", BOB_P)
        host.add(run_id, orch, run_input(agent, customer=customer, started_by=started), runtime_status=runtime,
                 created=base + timedelta(seconds=n), output={"finalOutput": n} if runtime == "Completed" else None)
        ids.append(run_id)
    return ids[::-1]


def _walk(api: Api, user: dict[str, str], between: Any = None, **params: str) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while True:
        query = dict(params, **({"continuationToken": token} if token else {}))
        reply = api.list_runs(user=user, **query)
        assert reply.status == 200, reply.raw
        pages.append([r["id"] for r in reply.body["runs"]])
        token = reply.body["continuationToken"]
        if token is None:
            return pages
        assert isinstance(token, str) and token
        if between is not None:
            between(len(pages))
        assert len(pages) < 100


def test_250_runs_in_pages_of_100_newest_first_each_exactly_once(api):
    newest_first = _seed_many(api.host)
    api.host.max_page = 64  # the task hub answers in short pages: the API must follow its continuation header
    pages = _walk(api, SUE, top="100")
    assert [len(page) for page in pages] == [100, 100, 50]
    assert [run_id for page in pages for run_id in page] == newest_first
    # The extension was read page by page with its own continuation header (the SDK reads only the first page).
    tokens = [token for _, token in api.host.list_calls]
    assert tokens.count(None) == 3 and len(tokens) > 3  # one walk of the task hub per page of the API
    assert all(t is None or t.startswith("fake1.") for t in tokens)
    assert all(query.get("top") == ["500"] and query.get("showInput") == ["true"] for query, _ in api.host.list_calls)


def test_default_page_size_is_50(api):
    newest_first = _seed_many(api.host, 120)
    pages = _walk(api, SUE)
    assert [len(page) for page in pages] == [50, 50, 20]
    assert [run_id for page in pages for run_id in page] == newest_first


@pytest.mark.parametrize(("params", "keep"), [
    ({"status": "completed"}, lambda n: n % 3 == 0),
    ({"status": "running"}, lambda n: n % 3 != 0),
    ({"agent": "triage"}, lambda n: n % 5 == 0),
    ({"agent": "support", "status": "running,completed"}, lambda n: n % 5 != 0),
    ({"agent": "support", "status": "completed"}, lambda n: n % 5 != 0 and n % 3 == 0),
])
def test_paging_with_filters_reaches_every_matching_run_once(api, params, keep):
    newest_first = _seed_many(api.host)
    api.host.max_page = 70
    wanted = [run_id for run_id in newest_first if keep(int(run_id.split("-")[1]))]
    pages = _walk(api, SUE, top="30", **params)
    assert all(len(page) == 30 for page in pages[:-1]) and 0 < len(pages[-1]) <= 30
    assert [run_id for page in pages for run_id in page] == wanted


def test_paging_shows_a_customer_only_their_runs_in_full_pages(api):
    newest_first = _seed_many(api.host)
    alices = [run_id for run_id in newest_first if int(run_id.split("-")[1]) % 2]
    pages = _walk(api, ALICE, top="100")
    assert [len(page) for page in pages] == [100, 25]
    assert [run_id for page in pages for run_id in page] == alices


def test_runs_started_between_page_reads_are_not_in_later_pages(api):
    newest_first = _seed_many(api.host)
    started: list[str] = []

    def start_some(page_number: int) -> None:
        for n in range(3):
            reply = api.start("support", {"input": "new", "runId": f"new-{page_number}-{n}"}, user=ALICE)
            assert reply.status == 202
            started.append(reply.body["id"])

    pages = _walk(api, SUE, between=start_some, top="100")
    listed = [run_id for page in pages for run_id in page]
    assert listed == newest_first and len(set(listed)) == 250
    assert len(started) == 6
    # A fresh walk lists them first.
    assert set(_walk(api, SUE, top="100")[0][:6]) == set(started)


def test_runs_finishing_between_page_reads_are_neither_lost_nor_repeated(api):
    newest_first = _seed_many(api.host)
    running = {run_id for run_id, i in api.host.instances.items() if i.runtime_status == "Running"}

    def finish_some(_page: int) -> None:
        for run_id in newest_first[150:160] + newest_first[:5]:
            api.host.update(run_id, runtime_status="Completed", output={"finalOutput": "done"})

    pages = _walk(api, SUE, between=finish_some, top="100")
    assert [run_id for page in pages for run_id in page] == newest_first
    assert running  # the seed has running runs to finish


def test_runs_created_within_one_second_are_all_reached(api):
    # The store keeps sub-second creation times; the status JSON shows whole seconds (protocol §5.4), so the
    # cursor has whole seconds and many runs share one.
    base = _now() - timedelta(hours=1)
    for n in range(250):
        api.host.add(f"s{(n * 37) % 250:03d}", ORCH, run_input(customer="alice@example.com", started_by=ALICE_P),
                     runtime_status="Running", created=base + timedelta(milliseconds=97 * n))
    api.host.max_page = 64
    expected = sorted(api.host.instances.values(),
                      key=lambda i: (i.created.replace(microsecond=0), i.instance_id), reverse=True)
    pages = _walk(api, SUE, top="7")
    listed = [run_id for page in pages for run_id in page]
    assert len(listed) == 250 and len(set(listed)) == 250
    assert listed == [i.instance_id for i in expected]


@pytest.mark.parametrize("token", [
    base64.urlsafe_b64encode(b"not json").decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"c": "yesterday", "i": "x"}').decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"c": "2026-01-01T00:00:00+00:00", "i": 5}').decode().rstrip("="),
    base64.urlsafe_b64encode(b'{"i": "x"}').decode().rstrip("="),
    base64.urlsafe_b64encode(b"[1, 2]").decode().rstrip("="),
    "A",
])
def test_a_forged_continuation_token_is_400(api, token):
    _seed_many(api.host, 5)
    doc = assert_problem(api.list_runs(user=SUE, continuationToken=token), 400, "invalid-continuation-token",
                         "/api/runs")
    assert "continuationToken" in doc["detail"]


@pytest.mark.parametrize("token", ["has space", "a+b/c=", "x" * 601, ""])
def test_a_continuation_token_outside_base64url_is_an_invalid_query(api, token):
    doc = assert_problem(api.list_runs(user=SUE, continuationToken=token), 400, "invalid-query", "/api/runs")
    assert doc["fields"] == ["continuationToken"]
    assert api.host.requests == []


# ------------------------------------------------------------------------------------------------------
# NaN / Infinity in what the task hub stores never reach an answer


def test_nan_and_infinity_in_custom_status_and_output_give_valid_json(api):
    nan, inf = float("nan"), float("inf")
    arguments = {"order_id": "ORD-1", "amount": nan, "ratio": -inf}
    pending = {**PENDING, "arguments": arguments}
    seed_for(api.host, "nan-run", ALICE_P, "alice@example.com", pendingApprovals=[pending], score=nan,
             turns=inf, approvals=[{"id": "call_0", "tool": "refund_order", "decision": "approved", "comment": None,
                                    "decidedAt": "2026-01-01T00:00:00Z", "weight": nan}])
    api.host.add("nan-done", ORCH, run_input(customer="alice@example.com", started_by=ALICE_P),
                 runtime_status="Completed", output={"finalOutput": {"total": nan}, "lastAgent": "support",
                                                     "turns": 1, "usage": {"requests": inf}, "demo": False},
                 created=_now() - timedelta(minutes=1))
    # The fake writes Python's NaN / Infinity literally: the answer the client parses holds real floats.
    raw_status = api.loop.run(_raw_status(api.host, "nan-run"))
    assert "NaN" in raw_status and "-Infinity" in raw_status

    run = strict_json(api.get_run("nan-run", user=ALICE).raw)
    assert run["pendingApprovals"][0]["arguments"] == {"order_id": "ORD-1", "amount": None, "ratio": None}
    assert run["progress"]["score"] is None and run["turns"] is None
    assert run["approvals"][0]["weight"] is None
    done = strict_json(api.get_run("nan-done", user=ALICE).raw)
    assert done["output"] == {"total": None} and done["usage"] == {"requests": None}
    listed = strict_json(api.list_runs(user=ALICE).raw)
    assert [r["id"] for r in listed["runs"]] == ["nan-run", "nan-done"]
    decided = api.decide("nan-run", "call_1", {"approved": True}, user=ANN)
    assert decided.status == 202
    strict_json(decided.raw)
    assert strict_json(api.audit("nan-run", user=ANN).raw)["records"][0]["event"] == "decided"
    cancelled = api.cancel("nan-run", user=ALICE)
    assert cancelled.status == 202
    strict_json(cancelled.raw)


async def _raw_status(host: FakeDurableHost, run_id: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{host.port}/durabletask/instances/{run_id}") as response:
            return await response.text()
