"""The HTTP API (durable_agents._http) through its real decorated functions and a real Durable client.

Each test builds a ``df.DFApp``, registers ``http_api_blueprint(...)``, takes the functions from
``app.get_functions()`` (what the worker indexes) and calls their user functions (the DFApp durable-client
middleware) with a real ``func.HttpRequest`` and the ``durableClient`` binding string. The middleware builds a real
``DurableOrchestrationClient`` that talks HTTP to ``FakeDurableHost`` on 127.0.0.1 (see
``test_http_api_fake_durable.py``), which answers with the extension's JSON (protocol §5).

Every request carries the App Service identity headers (``tests.unit.test_identity.principal_headers``) with
``WEBSITE_AUTH_ENABLED=True``; by default the caller is :data:`STAFF` (roles Approver and Support), and the seeded
runs were started by :data:`CAROL` for herself. POSTs send ``Content-Type: application/json``. The approval audit
goes to a SQLite file under ``tmp_path`` (``AUDIT_PATH``). Identity, separation of duties, media types, paging
and the audit route are tested in ``test_http_security.py``.
"""

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import azure.durable_functions as df
import azure.functions as func
import pytest
from agents import Agent, function_tool

from durable_agents._audit import arguments_hash
from durable_agents._http import MAX_BODY_BYTES, http_api_blueprint
from durable_agents._http.bodies import MAX_INPUT_CHARS
from durable_agents._registry import AgentRegistry
from tests.unit.test_http_api_fake_durable import (
    FakeDurableHost,
    LoopThread,
    _now,
    start_fake_host,
    stop_fake_host,
)
from tests.unit.test_identity import principal_headers

ORCH = "support_agent_run"
OTHER_ORCH = "triage_agent_run"
API_FUNCTIONS = {
    "api_list_agents", "api_start_run", "api_list_runs", "api_get_run", "api_decide_approval", "api_cancel_run",
    "api_get_audit", "api_start_conversation", "api_list_conversations", "api_get_conversation", "api_post_message",
    "api_list_messages", "api_close_conversation", "api_delete_run", "api_delete_conversation",
    "api_list_approvals", "ui",
    "api_run_timeline", "api_run_events", "api_conversation_timeline", "api_conversation_events",
}

STAFF_ID = "5e1f0c3a-7d2b-4c41-9f0e-3b7a2d9c0001"
CAROL_ID = "5e1f0c3a-7d2b-4c41-9f0e-3b7a2d9c0002"
STAFF = principal_headers(oid=STAFF_ID, name="Sam Staff", preferred_username="sam@contoso.com",
                          roles=("Approver", "Support"))
"""An employee with the Approver and Support app roles: sees every run, may decide (not on runs Sam started)."""
CAROL = principal_headers(oid=CAROL_ID, name="Carol Customer", preferred_username="carol@example.com")
"""A customer without roles."""
CAROL_PRINCIPAL = {"id": CAROL_ID, "name": "carol@example.com"}
STAFF_PRINCIPAL = {"id": STAFF_ID, "name": "sam@contoso.com"}
_DEFAULT = object()


@function_tool
def lookup_order(order_id: str) -> str:
    """Look an order up."""
    return order_id


@function_tool(needs_approval=True)
def refund_order(order_id: str, amount: str) -> str:
    """Refund an order."""
    return order_id


async def _large_messages(_ctx: Any, params: dict[str, Any], _call_id: str) -> bool:
    return len(params.get("text", "")) > 100


@function_tool(needs_approval=_large_messages)
def send_message(text: str) -> str:
    """Write to the customer."""
    return text


SUPPORT_AGENT = Agent(name="support", instructions="help", tools=[lookup_order, refund_order, send_message])


# ------------------------------------------------------------------------------------------------------
# Harness


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes

    @property
    def body(self) -> Any:
        return json.loads(self.raw) if self.raw else None


class Api:
    """Calls the registered HTTP functions the way the worker does."""

    def __init__(self, loop: LoopThread, host: FakeDurableHost, functions: dict[str, Any]) -> None:
        self.loop = loop
        self.host = host
        self.functions = functions
        self.user: dict[str, str] | None = STAFF

    def call(
        self,
        name: str,
        method: str,
        path: str,
        *,
        route_params: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        body: Any = b"",
        headers: dict[str, str] | None = None,
        user: Any = _DEFAULT,
        content_type: str | None = "application/json",
    ) -> Reply:
        """``user``: identity headers (default :attr:`user`; ``None``: anonymous). ``content_type`` is sent on
        POSTs (``None``: no ``Content-Type``)."""
        if isinstance(body, dict | list):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        all_headers = {"Content-Length": str(len(body))} if body else {}
        if method == "POST" and content_type is not None:
            all_headers["Content-Type"] = content_type
        identity = self.user if user is _DEFAULT else user
        all_headers.update(identity or {})
        all_headers.update(headers or {})
        query = "?" + urlencode({"code": "function-key", **(params or {})})
        req = func.HttpRequest(
            method,
            "http://localhost:7071" + path + query,
            headers=all_headers,
            params={"code": "function-key", **(params or {})},
            route_params=route_params or {},
            body=body,
        )
        user_function = self.functions[name].get_user_function()
        response: func.HttpResponse = self.loop.run(user_function(req=req, client=self.host.client_json()))
        return Reply(response.status_code, dict(response.headers), response.get_body())

    def list_agents(self, **kw: Any) -> Reply:
        return self.call("api_list_agents", "GET", "/api/agents", **kw)

    def start(self, agent: str, body: Any, headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        return self.call("api_start_run", "POST", f"/api/agents/{agent}/runs", route_params={"agent": agent},
                         body=body, headers=headers, **kw)

    def get_run(self, run_id: str, **kw: Any) -> Reply:
        return self.call("api_get_run", "GET", f"/api/runs/{run_id}", route_params={"runId": run_id}, **kw)

    def list_runs(self, user: Any = _DEFAULT, **params: str) -> Reply:
        return self.call("api_list_runs", "GET", "/api/runs", params=params, user=user)

    def decide(self, run_id: str, approval_id: str, body: Any, headers: dict[str, str] | None = None,
               **kw: Any) -> Reply:
        return self.call("api_decide_approval", "POST", f"/api/runs/{run_id}/approvals/{approval_id}",
                         route_params={"runId": run_id, "approvalId": approval_id}, body=body, headers=headers,
                         **kw)

    def cancel(self, run_id: str, body: Any = b"", headers: dict[str, str] | None = None, **kw: Any) -> Reply:
        return self.call("api_cancel_run", "POST", f"/api/runs/{run_id}/cancel", route_params={"runId": run_id},
                         body=body, headers=headers, **kw)

    def audit(self, run_id: str, **kw: Any) -> Reply:
        return self.call("api_get_audit", "GET", f"/api/runs/{run_id}/audit", route_params={"runId": run_id}, **kw)


@pytest.fixture(autouse=True)
def auth_env(monkeypatch, tmp_path):
    """App Service authentication on, default role settings, the audit store under ``tmp_path``."""
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")
    monkeypatch.setenv("AUDIT_PATH", str(tmp_path / "approval-audit.sqlite3"))
    for name in ("APPROVER_ROLES", "APPROVER_GROUPS", "SUPPORT_ROLES", "SUPPORT_GROUPS", "SEPARATION_OF_DUTIES",
                 "AUDIT_TABLE_ENDPOINT", "AUDIT_TABLE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def durable():
    loop, host = start_fake_host((ORCH, OTHER_ORCH))
    yield loop, host
    stop_fake_host(loop, host)


def _build_api(durable, **blueprint_kwargs: Any) -> Api:
    loop, host = durable
    host.reset()
    registry = AgentRegistry()
    registry.register("support", orchestrator=ORCH, description="Customer support.", agent=SUPPORT_AGENT,
                      settings=("REFUND_APPROVAL_THRESHOLD",))
    registry.register("triage", orchestrator=OTHER_ORCH, description="Routes questions.")
    registry.register("broken", orchestrator="not_deployed_orch", description="Points at a missing orchestrator.")
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(http_api_blueprint(registry, **blueprint_kwargs))
    functions = {f.get_function_name(): f for f in app.get_functions()}
    return Api(loop, host, functions)


@pytest.fixture
def api(durable) -> Api:
    return _build_api(durable, approval_wait_seconds=3.0, approval_poll_seconds=0.1)


def run_input(agent: str = "support", text: str = "hello", *, customer: str | None = "carol@example.com",
              started_by: Any = _DEFAULT) -> str:
    """The status ``input`` of a Python-started version-2 agent run: JSON text (protocol §1). By default Carol
    started it for herself."""
    return json.dumps({"agent": agent, "input": text, "settings": {}, "version": 2, "customer": customer,
                       "startedBy": CAROL_PRINCIPAL if started_by is _DEFAULT else started_by})


PENDING_ARGUMENTS = {"order_id": "ORD-1", "amount": "250.00"}
PENDING = {"id": "call_1", "kind": "tool", "tool": "refund_order", "summary": None, "arguments": PENDING_ARGUMENTS,
           "argumentsHash": arguments_hash(PENDING_ARGUMENTS),
           "requestedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-02T00:00:00Z"}


def event_payload(approved: bool, comment: str | None, decided_by: dict[str, Any] | None = None,
                  hash_: str | None = PENDING["argumentsHash"]) -> str:
    """The ``approval:<id>`` event data as the client double-encodes it (protocol §1)."""
    return json.dumps({"approved": approved, "comment": comment, "decidedBy": decided_by or STAFF_PRINCIPAL,
                       "argumentsHash": hash_})


def seed_awaiting(host: FakeDurableHost, run_id: str = "run1", *, input_text: str | None = None,
                  **custom: Any) -> None:
    status = {"agent": "support", "currentAgent": "support", "turns": 2, "lastTool": "refund_order",
              "pendingApprovals": [PENDING], "approvals": [], "demo": False}
    status.update(custom)
    host.add(run_id, ORCH, input_text or run_input(), runtime_status="Running", custom_status=status)


def assert_problem(reply: Reply, status: int, slug: str, instance: str) -> dict[str, Any]:
    assert reply.status == status, reply.raw
    assert reply.headers["Content-Type"] == "application/problem+json"
    doc = reply.body
    assert doc["type"] == f"urn:durable-agents:problem:{slug}"
    assert doc["status"] == status
    assert doc["instance"] == instance
    assert isinstance(doc["title"], str) and doc["title"]
    assert isinstance(doc["detail"], str) and doc["detail"]
    return doc


# ------------------------------------------------------------------------------------------------------
# Function metadata


def test_functions_have_unique_names_routes_methods_and_inherit_function_auth(api):
    assert set(api.functions) == API_FUNCTIONS
    expected = {
        "api_list_agents": ("agents", ["GET"]),
        "api_start_run": ("agents/{agent}/runs", ["POST"]),
        "api_list_runs": ("runs", ["GET"]),
        "api_get_run": ("runs/{runId}", ["GET"]),
        "api_decide_approval": ("runs/{runId}/approvals/{approvalId}", ["POST"]),
        "api_cancel_run": ("runs/{runId}/cancel", ["POST"]),
        "api_get_audit": ("runs/{runId}/audit", ["GET"]),
        "api_start_conversation": ("agents/{agent}/conversations", ["POST"]),
        "api_list_conversations": ("conversations", ["GET"]),
        "api_get_conversation": ("conversations/{conversationId}", ["GET"]),
        "api_post_message": ("conversations/{conversationId}/messages", ["POST"]),
        "api_list_messages": ("conversations/{conversationId}/messages", ["GET"]),
        "api_close_conversation": ("conversations/{conversationId}/close", ["POST"]),
        "api_delete_run": ("runs/{runId}", ["DELETE"]),
        "api_delete_conversation": ("conversations/{conversationId}", ["DELETE"]),
        "api_list_approvals": ("approvals", ["GET"]),
        "api_run_timeline": ("runs/{runId}/timeline", ["GET"]),
        "api_run_events": ("runs/{runId}/events", ["GET"]),
        "api_conversation_timeline": ("conversations/{conversationId}/timeline", ["GET"]),
        "api_conversation_events": ("conversations/{conversationId}/events", ["GET"]),
    }
    for name, (route, methods) in expected.items():
        bindings = [json.loads(b) for b in api.functions[name].get_raw_bindings()]
        trigger = next(b for b in bindings if b["type"] == "httpTrigger")
        assert trigger["route"] == route and trigger["methods"] == methods
        assert trigger["authLevel"] == "FUNCTION"
        assert {"direction": "IN", "type": "durableClient", "name": "client"} in bindings
    # The browser app's static files: no data, so no key (the page's API calls send the caller's key and identity).
    ui_trigger = next(json.loads(b) for b in api.functions["ui"].get_raw_bindings()
                      if json.loads(b)["type"] == "httpTrigger")
    assert ui_trigger["route"] == "ui/{*path}" and ui_trigger["methods"] == ["GET"]
    assert ui_trigger["authLevel"] == "ANONYMOUS"


def test_route_prefix_constant_matches_host_json():
    from pathlib import Path

    from durable_agents._http import ROUTE_PREFIX

    host_json = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert ROUTE_PREFIX == "/" + host_json["extensions"]["http"]["routePrefix"]


# ------------------------------------------------------------------------------------------------------
# GET agents


def test_list_agents_shows_descriptions_approval_tools_and_links(api):
    reply = api.list_agents()
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    agents = {a["name"]: a for a in reply.body["agents"]}
    assert list(agents) == ["broken", "support", "triage"]
    assert agents["support"] == {
        "name": "support",
        "kind": "agent",
        "description": "Customer support.",
        "approvalTools": [{"name": "refund_order", "approval": "always"},
                          {"name": "send_message", "approval": "conditional"}],
        "links": {"runs": "/api/agents/support/runs"},
    }
    assert agents["triage"]["approvalTools"] == []


# ------------------------------------------------------------------------------------------------------
# POST agents/{agent}/runs


def test_start_run_snapshots_settings_and_answers_202_with_location_and_no_management_urls(api, monkeypatch):
    monkeypatch.setenv("APPROVAL_TIMEOUT", "PT2H")
    monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", " 150 ")
    monkeypatch.delenv("MODEL_MAX_ATTEMPTS", raising=False)
    reply = api.start("support", {"input": "Refund ORD-1001 please"})
    assert reply.status == 202
    body = reply.body
    run_id = body["id"]
    assert len(run_id) == 32 and int(run_id, 16) >= 0
    assert reply.headers["Location"] == f"/api/runs/{run_id}"
    assert body == {
        "id": run_id, "agent": "support", "status": "pending",
        "customer": "sam@contoso.com", "startedBy": STAFF_PRINCIPAL,
        "links": {"self": f"/api/runs/{run_id}", "approvals": f"/api/runs/{run_id}/approvals/{{approvalId}}",
                  "cancel": f"/api/runs/{run_id}/cancel", "audit": f"/api/runs/{run_id}/audit"},
    }
    # The Durable management URLs carry the task hub's system key: never in an answer.
    assert "webhooks" not in reply.raw.decode() and "SYSKEY" not in reply.raw.decode()
    instance = api.host.instances[run_id]
    assert instance.name == ORCH
    # The client double-encodes the input: the extension keeps the JSON text (protocol §1).
    assert json.loads(instance.input) == {
        "agent": "support",
        "input": "Refund ORD-1001 please",
        "settings": {"APPROVAL_TIMEOUT": "PT2H", "REFUND_APPROVAL_THRESHOLD": "150"},
        "version": 3,
        "customer": "sam@contoso.com",
        "startedBy": STAFF_PRINCIPAL,
    }


def test_start_run_with_run_id_uses_it_and_includes_max_attempts_when_set(api, monkeypatch):
    monkeypatch.delenv("APPROVAL_TIMEOUT", raising=False)
    monkeypatch.delenv("REFUND_APPROVAL_THRESHOLD", raising=False)
    monkeypatch.setenv("MODEL_MAX_ATTEMPTS", "3")
    reply = api.start("triage", {"input": "where is my parcel", "runId": "my-run_01"})
    assert reply.status == 202 and reply.body["id"] == "my-run_01"
    assert reply.headers["Location"] == "/api/runs/my-run_01"
    assert json.loads(api.host.instances["my-run_01"].input)["settings"] == {"MODEL_MAX_ATTEMPTS": "3"}
    assert ("POST", f"/durabletask/orchestrators/{OTHER_ORCH}/my-run_01") in api.host.requests


def test_start_run_with_null_run_id_generates_one(api):
    reply = api.start("support", {"input": "hi", "runId": None})
    assert reply.status == 202 and len(reply.body["id"]) == 32


def test_start_run_409_when_run_id_in_use_and_existing_run_untouched(api):
    api.host.add("taken", ORCH, run_input(text="first"), runtime_status="Completed", output={"finalOutput": "x"})
    reply = api.start("support", {"input": "second", "runId": "taken"})
    assert_problem(reply, 409, "run-id-in-use", "/api/agents/support/runs")
    assert api.host.mutations() == []
    assert json.loads(api.host.instances["taken"].input)["input"] == "first"


def test_start_run_id_is_free_again_after_purge(api):
    api.host.add("reused", ORCH, run_input(), runtime_status="Completed")
    api.loop.run(_purge(api.host, "reused"))
    reply = api.start("support", {"input": "again", "runId": "reused"})
    assert reply.status == 202 and reply.body["id"] == "reused"


async def _purge(host: FakeDurableHost, instance_id: str) -> None:
    client = df.DurableOrchestrationClient(host.client_json())
    result = await client.purge_instance_history(instance_id)
    assert result.instances_deleted == 1


def test_start_run_unknown_agent_is_404(api):
    reply = api.start("nobody", {"input": "hi"})
    doc = assert_problem(reply, 404, "agent-not-found", "/api/agents/nobody/runs")
    assert "nobody" in doc["detail"]
    assert api.host.requests == []


@pytest.mark.parametrize(
    "run_id",
    ["has space", "a" * 101, "", "slash/inside", "dot.ted", "ünï", "abc\n", 42, True, ["x"], {"id": "x"}],
)
def test_start_run_rejects_bad_run_ids(api, run_id):
    reply = api.start("support", {"input": "hi", "runId": run_id})
    doc = assert_problem(reply, 400, "invalid-run-id", "/api/agents/support/runs")
    assert doc["fields"] == ["runId"]
    assert api.host.mutations() == []


def test_start_run_accepts_longest_run_id(api):
    reply = api.start("support", {"input": "hi", "runId": "A" * 100})
    assert reply.status == 202 and reply.body["id"] == "A" * 100


@pytest.mark.parametrize(
    ("raw", "slug", "detail_part"),
    [
        (b'{"input": "hi"', "malformed-json", "not valid JSON"),
        (b"{'input': 'hi'}", "malformed-json", "not valid JSON"),
        (b'{"input": NaN}', "malformed-json", "NaN"),
        (b'{"input": "a", "input": "b"}', "malformed-json", "more than once"),
        (b'{"input": "\xff\xfe"}', "malformed-json", "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "malformed-json", "nested too deeply"),
        (b'["hi"]', "invalid-body", "JSON object, not an array"),
        (b'"hi"', "invalid-body", "JSON object, not a string"),
        (b"42", "invalid-body", "JSON object, not a number"),
        (b"null", "invalid-body", "JSON object, not null"),
        (b"", "invalid-body", "empty"),
        (b"   \n", "invalid-body", "empty"),
        (b"{}", "invalid-body", "'input'"),
        (b'{"runId": "abc"}', "invalid-body", "'input'"),
        (b'{"input": 5}', "invalid-body", "must be a string, not a number"),
        (b'{"input": null}', "invalid-body", "must be a string, not null"),
        (b'{"input": ["a"]}', "invalid-body", "must be a string, not an array"),
        (b'{"input": "  "}', "invalid-body", "must not be empty"),
    ],
)
def test_start_run_rejects_bad_bodies_with_problem_json(api, raw, slug, detail_part):
    reply = api.start("support", raw)
    doc = assert_problem(reply, 400, slug, "/api/agents/support/runs")
    assert detail_part in doc["detail"]
    assert api.host.mutations() == []


def test_start_run_rejects_unknown_members_naming_them(api):
    reply = api.start("support", {"input": "hi", "model": "gpt-5", "Input": "x"})
    doc = assert_problem(reply, 400, "invalid-body", "/api/agents/support/runs")
    assert doc["fields"] == ["model", "Input"]
    assert "'model'" in doc["detail"] and "'Input'" in doc["detail"]
    assert api.host.mutations() == []


def test_start_run_413_for_bodies_over_one_mib_by_length_or_header(api):
    big = json.dumps({"input": "x" * MAX_BODY_BYTES}).encode()
    assert len(big) > MAX_BODY_BYTES
    doc = assert_problem(api.start("support", big), 413, "body-too-large", "/api/agents/support/runs")
    assert doc["limit"] == MAX_BODY_BYTES
    # A body without Content-Length (chunked) is measured too.
    req_headers = {"Content-Length": ""}
    assert_problem(api.start("support", big, headers=req_headers), 413, "body-too-large", "/api/agents/support/runs")
    # A declared length over the limit is refused before the body is looked at.
    small = json.dumps({"input": "hi"}).encode()
    reply = api.start("support", small, headers={"Content-Length": str(MAX_BODY_BYTES + 1)})
    assert_problem(reply, 413, "body-too-large", "/api/agents/support/runs")
    assert api.host.mutations() == []


def test_start_run_accepts_a_body_of_exactly_one_mib(api):
    # The longest input (MAX_INPUT_CHARS) padded with JSON whitespace up to the body limit.
    text = json.dumps({"input": "y" * MAX_INPUT_CHARS})
    exact = (text[:-1] + " " * (MAX_BODY_BYTES - len(text)) + "}").encode()
    assert len(exact) == MAX_BODY_BYTES
    reply = api.start("support", exact)
    assert reply.status == 202
    assert json.loads(api.host.instances[reply.body["id"]].input)["input"] == "y" * MAX_INPUT_CHARS


def test_start_run_refuses_an_input_over_max_input_chars(api):
    doc = assert_problem(api.start("support", {"input": "y" * (MAX_INPUT_CHARS + 1)}), 400, "invalid-body",
                         "/api/agents/support/runs")
    assert doc["fields"] == ["input"]
    assert api.host.mutations() == []


def test_start_run_with_undeployed_orchestrator_is_a_500_problem_not_a_crash(api):
    reply = api.start("broken", {"input": "hi"})
    assert_problem(reply, 500, "internal-error", "/api/agents/broken/runs")


def test_problem_instance_never_contains_the_function_key(api):
    reply = api.start("support", b"{")
    assert "function-key" not in reply.raw.decode()


# ------------------------------------------------------------------------------------------------------
# GET runs/{runId}


def test_get_run_of_a_started_run_is_pending(api):
    run_id = api.start("support", {"input": "hi"}).body["id"]
    reply = api.get_run(run_id)
    assert reply.status == 200
    run = reply.body
    assert run["id"] == run_id and run["agent"] == "support" and run["status"] == "pending"
    assert run["output"] is None and run["error"] is None
    assert run["pendingApprovals"] == [] and run["approvals"] == []
    assert run["usage"] is None and run["demo"] is False
    assert run["createdAt"].endswith("Z") and run["updatedAt"].endswith("Z")
    assert run["links"]["self"] == f"/api/runs/{run_id}"


def test_get_run_awaiting_approval_shows_pending_approvals_and_progress(api):
    seed_awaiting(api.host, approvals=[{"id": "call_0", "tool": "refund_order", "decision": "approved",
                                        "comment": "ok", "decidedAt": "2026-01-01T00:00:30Z"}])
    run = api.get_run("run1").body
    assert run["status"] == "awaiting_approval"
    assert run["pendingApprovals"] == [PENDING]
    assert run["approvals"][0]["id"] == "call_0"
    assert run["lastAgent"] == "support" and run["turns"] == 2 and run["output"] is None
    assert run["progress"] == {}


def test_get_run_shows_what_a_workflow_published_with_set_custom_status_as_progress(api):
    seed_awaiting(api.host, stage="waiting for the plan's approval", rounds=[{"score": 5}], custom=None)
    run = api.get_run("run1").body
    assert run["progress"] == {"stage": "waiting for the plan's approval", "rounds": [{"score": 5}], "custom": None}
    assert run["pendingApprovals"] == [PENDING] and run["turns"] == 2  # the runner's own members stay where they are


@pytest.mark.parametrize("runtime", ["Running", "ContinuedAsNew", "Suspended"])
def test_get_run_maps_active_statuses_to_running_without_pending_approvals(api, runtime):
    api.host.add("r", ORCH, run_input(), runtime_status=runtime,
                 custom_status={"agent": "support", "currentAgent": "billing", "turns": 1, "pendingApprovals": []})
    run = api.get_run("r").body
    assert run["status"] == "running" and run["lastAgent"] == "billing"


def test_get_run_completed_returns_final_output_and_usage(api):
    output = {"finalOutput": "Refunded 250.00 EUR.", "lastAgent": "support", "turns": 4,
              "usage": {"requests": 4, "inputTokens": 1200, "outputTokens": 180, "totalTokens": 1380},
              "demo": True}
    api.host.add("done", ORCH, run_input(), runtime_status="Completed", output=output,
                 custom_status={"turns": 3, "pendingApprovals": [PENDING], "demo": False})
    run = api.get_run("done").body
    assert run["status"] == "completed" and run["output"] == "Refunded 250.00 EUR."
    assert run["usage"] == output["usage"] and run["turns"] == 4 and run["lastAgent"] == "support"
    assert run["demo"] is True and run["error"] is None
    assert run["pendingApprovals"] == []  # a finished run waits for nothing


def test_get_run_completed_with_structured_final_output(api):
    api.host.add("done2", ORCH, run_input(), runtime_status="Completed",
                 output={"finalOutput": {"refunded": "250.00"}, "lastAgent": "support", "turns": 1, "demo": False})
    assert api.get_run("done2").body["output"] == {"refunded": "250.00"}


def test_get_run_failed_trims_the_extension_prefix_but_keeps_the_message(api):
    text = ("Orchestrator function 'support_agent_run' failed: ModelError: the model endpoint answered 400: "
            "context length exceeded")
    api.host.add("bad", ORCH, run_input(), runtime_status="Failed", output=text)
    run = api.get_run("bad").body
    assert run["status"] == "failed"
    assert run["error"] == "ModelError: the model endpoint answered 400: context length exceeded"
    assert run["output"] is None


@pytest.mark.parametrize("runtime", ["Terminated", "Canceled"])
def test_get_run_terminated_is_cancelled_with_reason(api, runtime):
    api.host.add("gone", ORCH, run_input(), runtime_status=runtime, output="cancelled by caller")
    run = api.get_run("gone").body
    assert run["status"] == "cancelled" and run["error"] == "cancelled by caller"


def test_get_run_404_for_unknown_ids_bad_ids_and_instances_that_are_not_agent_runs(api):
    assert_problem(api.get_run("nope"), 404, "run-not-found", "/api/runs/nope")
    assert_problem(api.get_run("bad.id"), 404, "run-not-found", "/api/runs/bad.id")
    api.host.add("plain", "other", json.dumps({"x": 1}), runtime_status="Completed")
    api.host.add("text", "other", "just text", runtime_status="Completed")
    api.host.add("noinput", "other", None, runtime_status="Running")
    api.host.add("rawobj", "other", {"agent": "support", "input": "hi"}, runtime_status="Running")  # no settings
    for run_id in ("plain", "text", "noinput", "rawobj"):
        assert_problem(api.get_run(run_id), 404, "run-not-found", f"/api/runs/{run_id}")
    assert ("GET", "/durabletask/instances/bad.id") not in api.host.requests


def test_a_sub_orchestration_s_id_with_colons_can_be_read_but_odd_ones_are_404(api):
    api.host.add("audit-1:ORD-1019", ORCH, run_input("order_reviewer"), runtime_status="Completed",
                 output=json.dumps({"finalOutput": "ok", "lastAgent": "order_reviewer", "turns": 1, "usage": None,
                                    "demo": False}))
    run = api.get_run("audit-1:ORD-1019").body
    assert run["id"] == "audit-1:ORD-1019" and run["status"] == "completed" and run["output"] == "ok"
    for odd in (":x", "x:", "a::b", "a:b.c"):
        assert_problem(api.get_run(odd), 404, "run-not-found", f"/api/runs/{odd}")
    assert not [r for r in api.host.requests if r[1].endswith(("/:x", "/x:", "/a::b"))]


def test_get_run_accepts_input_posted_as_raw_json_object(api):
    api.host.add("raw", ORCH, {"agent": "support", "input": "hi", "settings": {}}, runtime_status="Running")
    assert api.get_run("raw").body["status"] == "running"


# ------------------------------------------------------------------------------------------------------
# GET runs


def _seed_runs(host: FakeDurableHost) -> None:
    now = _now()
    host.add("old", ORCH, run_input(), runtime_status="Completed", output={"finalOutput": "a"},
             created=now - timedelta(minutes=30))
    host.add("mid", ORCH, run_input(), runtime_status="Running", created=now - timedelta(minutes=20),
             custom_status={"pendingApprovals": [PENDING]})
    host.add("tri", OTHER_ORCH, run_input("triage"), runtime_status="Running", created=now - timedelta(minutes=10),
             custom_status={"pendingApprovals": []})
    host.add("new", ORCH, run_input(), runtime_status="Failed", output="boom", created=now - timedelta(minutes=5))
    host.add("foreign", "other", json.dumps({"x": 1}), runtime_status="Completed", created=now)


def test_list_runs_newest_first_and_skips_foreign_instances(api):
    _seed_runs(api.host)
    reply = api.list_runs()
    assert reply.status == 200
    assert [r["id"] for r in reply.body["runs"]] == ["new", "tri", "mid", "old"]
    statuses = {r["id"]: r["status"] for r in reply.body["runs"]}
    assert statuses == {"new": "failed", "tri": "running", "mid": "awaiting_approval", "old": "completed"}


def test_list_runs_filters_by_agent_status_and_top(api):
    _seed_runs(api.host)
    assert [r["id"] for r in api.list_runs(agent="support").body["runs"]] == ["new", "mid", "old"]
    assert [r["id"] for r in api.list_runs(status="awaiting_approval").body["runs"]] == ["mid"]
    assert [r["id"] for r in api.list_runs(status="running").body["runs"]] == ["tri"]
    assert [r["id"] for r in api.list_runs(status="completed,failed").body["runs"]] == ["new", "old"]
    assert [r["id"] for r in api.list_runs(top="2").body["runs"]] == ["new", "tri"]
    assert [r["id"] for r in api.list_runs(agent="triage", status="running", top="1").body["runs"]] == ["tri"]
    assert api.list_runs(agent="unknown-agent").body["runs"] == []
    # The status filter is pushed down to the extension as runtime statuses.
    assert any("runtimeStatus=Completed,Failed" in path for _, path in api.host.requests)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "done"}, "status"),
        ({"status": "running,"}, "status"),
        ({"status": ""}, "status"),
        ({"top": "0"}, "top"),
        ({"top": "101"}, "top"),
        ({"top": "ten"}, "top"),
        ({"top": "-1"}, "top"),
        ({"top": "\u00b2"}, "top"),  # "²".isdigit() is True, int("²") raises
        ({"top": "\u0663"}, "top"),  # ARABIC-INDIC DIGIT THREE: int() would accept it
        ({"top": "1" * 5000}, "top"),  # int() refuses more than 4300 digits
        ({"top": "1.5"}, "top"),
        ({"top": ""}, "top"),
        ({"agent": "bad name"}, "agent"),
        ({"sort": "asc"}, "sort"),
    ],
)
def test_list_runs_rejects_bad_query_parameters(api, params, field):
    doc = assert_problem(api.list_runs(**params), 400, "invalid-query", "/api/runs")
    assert doc["fields"] == [field]
    assert api.host.requests == []


def test_list_runs_top_bounds_are_inclusive(api):
    assert api.list_runs(top="1").status == 200
    assert api.list_runs(top="100").status == 200


# ------------------------------------------------------------------------------------------------------
# POST runs/{runId}/approvals/{approvalId}


def test_approve_raises_the_event_waits_for_the_record_and_answers_202(api):
    seed_awaiting(api.host)
    reply = api.decide("run1", "call_1", {"approved": True, "comment": "ok"})
    assert reply.status == 202
    body = reply.body
    assert body["runId"] == "run1" and body["approvalId"] == "call_1"
    assert body["decision"] == "approved" and body["comment"] == "ok" and body["recorded"] is True
    assert body["decidedAt"].endswith("Z") and body["status"] == "running"
    # The orchestrator receives the client's double-encoded JSON text (protocol §1) under approval:<id>.
    assert api.host.instances["run1"].events == [("approval:call_1", event_payload(True, "ok"))]
    assert api.get_run("run1").body["approvals"][0]["decision"] == "approved"


def test_an_approval_of_a_sub_orchestration_shows_in_the_parent_run_and_is_decided_there(api):
    plan_hash = arguments_hash({})
    plan = {"id": "plan-1", "kind": "workflow", "tool": "plan", "summary": "Refund 20.00?", "arguments": {},
            "argumentsHash": plan_hash, "requestedAt": "2026-01-01T00:00:00.000Z",
            "expiresAt": "2026-01-02T00:00:00.000Z"}
    seed_awaiting(api.host, "parent", pendingApprovals=[], children=["parent:sub-1", "parent:gone"])
    api.host.add("parent:sub-1", ORCH, run_input(), runtime_status="Running",
                 custom_status={"agent": "support", "pendingApprovals": [plan], "approvals": []})
    run = api.get_run("parent").body
    assert run["status"] == "awaiting_approval"
    assert run["pendingApprovals"] == [{**plan, "runId": "parent:sub-1"}]
    reply = api.decide("parent", "plan-1", {"approved": True, "comment": "go"})
    assert reply.status == 202 and reply.body["runId"] == "parent" and reply.body["recorded"] is True
    assert api.host.instances["parent:sub-1"].events == [
        ("approval:plan-1", event_payload(True, "go", hash_=plan_hash))]
    assert api.host.instances["parent"].events == []
    again = api.decide("parent", "plan-1", {"approved": True})
    assert again.status == 200 and again.body["decision"] == "approved"
    assert api.decide("parent", "plan-1", {"approved": False}).status == 409
    assert api.get_run("parent").body["pendingApprovals"] == []


def test_reject_with_null_comment(api):
    seed_awaiting(api.host)
    reply = api.decide("run1", "call_1", {"approved": False, "comment": None})
    assert reply.status == 202 and reply.body["decision"] == "rejected" and reply.body["comment"] is None
    assert json.loads(api.host.instances["run1"].events[0][1]) == {
        "approved": False, "comment": None, "decidedBy": STAFF_PRINCIPAL, "argumentsHash": PENDING["argumentsHash"]}


def test_repeating_the_same_decision_is_200_without_a_new_event(api):
    seed_awaiting(api.host)
    assert api.decide("run1", "call_1", {"approved": True}).status == 202
    again = api.decide("run1", "call_1", {"approved": True, "comment": "again"})
    assert again.status == 200
    assert again.body["decision"] == "approved" and again.body["recorded"] is True
    assert again.body["comment"] is None  # the recorded decision, not the repeated request's comment
    assert len(api.host.instances["run1"].events) == 1


def test_a_different_second_decision_is_409_and_changes_nothing(api):
    seed_awaiting(api.host)
    assert api.decide("run1", "call_1", {"approved": False, "comment": "too much"}).status == 202
    before = json.dumps(api.host.instances["run1"].custom_status)
    doc = assert_problem(api.decide("run1", "call_1", {"approved": True}), 409, "approval-conflict",
                         "/api/runs/run1/approvals/call_1")
    assert doc["decision"] == "rejected" and "rejected" in doc["detail"]
    assert len(api.host.instances["run1"].events) == 1
    assert json.dumps(api.host.instances["run1"].custom_status) == before


def test_deciding_an_expired_approval_is_409_saying_it_expired(api):
    seed_awaiting(api.host, pendingApprovals=[], approvals=[
        {"id": "call_1", "tool": "refund_order", "decision": "expired", "comment": None,
         "decidedAt": "2026-01-02T00:00:00Z"}])
    doc = assert_problem(api.decide("run1", "call_1", {"approved": True}), 409, "approval-expired",
                         "/api/runs/run1/approvals/call_1")
    assert "expired" in doc["detail"] and doc["decision"] == "expired"
    assert api.host.mutations() == []


def test_expiry_racing_the_decision_is_409(api):
    seed_awaiting(api.host)

    def timer_won(instance, name, _payload):
        custom = dict(instance.custom_status)
        custom["pendingApprovals"] = []
        custom["approvals"] = [{"id": "call_1", "tool": "refund_order", "decision": "expired", "comment": None,
                                "decidedAt": "2026-01-02T00:00:00Z"}]
        instance.custom_status = custom

    api.host.on_event = timer_won
    assert_problem(api.decide("run1", "call_1", {"approved": True}), 409, "approval-expired",
                   "/api/runs/run1/approvals/call_1")


@pytest.mark.parametrize(("runtime", "output"), [("Completed", {"finalOutput": "x"}), ("Failed", "boom"),
                                                 ("Terminated", "cancelled by caller"), ("Canceled", None)])
def test_deciding_on_a_finished_run_is_410(api, runtime, output):
    seed_awaiting(api.host)
    api.host.update("run1", runtime_status=runtime, output=output)
    assert_problem(api.decide("run1", "call_1", {"approved": True}), 410, "run-finished",
                   "/api/runs/run1/approvals/call_1")
    assert api.host.mutations() == []


def test_run_finishing_before_the_decision_is_recorded_is_410(api):
    seed_awaiting(api.host)

    def run_failed(instance, _name, _payload):
        instance.runtime_status = "Failed"
        instance.output = "Orchestrator function 'support_agent_run' failed: boom"

    api.host.on_event = run_failed
    assert_problem(api.decide("run1", "call_1", {"approved": True}), 410, "run-finished",
                   "/api/runs/run1/approvals/call_1")


def test_decision_not_recorded_within_the_wait_is_202_not_recorded(durable):
    api = _build_api(durable, approval_wait_seconds=0.4, approval_poll_seconds=0.1)
    seed_awaiting(api.host)
    api.host.on_event = lambda *_: None  # the orchestration is busy (e.g. a long activity) and has not replayed
    reply = api.decide("run1", "call_1", {"approved": True, "comment": "fine"})
    assert reply.status == 202
    assert reply.body["recorded"] is False and reply.body["decidedAt"] is None
    assert reply.body["decision"] == "approved" and reply.body["comment"] == "fine"
    assert reply.body["status"] == "awaiting_approval"
    assert len(api.host.instances["run1"].events) == 1


def test_unknown_run_or_approval_is_404(api):
    seed_awaiting(api.host)
    assert_problem(api.decide("nope", "call_1", {"approved": True}), 404, "run-not-found",
                   "/api/runs/nope/approvals/call_1")
    doc = assert_problem(api.decide("run1", "call_9", {"approved": True}), 404, "approval-not-found",
                         "/api/runs/run1/approvals/call_9")
    assert "call_9" in doc["detail"]
    api.host.add("foreign", "other", json.dumps({"x": 1}), runtime_status="Running")
    assert_problem(api.decide("foreign", "call_1", {"approved": True}), 404, "run-not-found",
                   "/api/runs/foreign/approvals/call_1")
    assert api.host.mutations() == []


@pytest.mark.parametrize(
    ("raw", "slug", "detail_part"),
    [
        (b"", "invalid-body", "empty"),
        (b"{", "malformed-json", "not valid JSON"),
        (b"[true]", "invalid-body", "not an array"),
        (b"{}", "invalid-body", "'approved'"),
        (b'{"comment": "ok"}', "invalid-body", "'approved'"),
        (b'{"approved": "yes"}', "invalid-body", "true or false, not a string"),
        (b'{"approved": "true"}', "invalid-body", "true or false, not a string"),
        (b'{"approved": 0}', "invalid-body", "true or false, not a number"),
        (b'{"approved": 1}', "invalid-body", "true or false, not a number"),
        (b'{"approved": null}', "invalid-body", "true or false, not null"),
        (b'{"approved": true, "comment": 5}', "invalid-body", "'comment' must be a string or null"),
        (b'{"approved": true, "comment": "' + b"c" * 4001 + b'"}', "invalid-body", "4001 characters"),
        (b'{"approved": true, "reviewer": "ann"}', "invalid-body", "'reviewer'"),
    ],
)
def test_bad_decision_bodies_are_400_and_change_nothing(api, raw, slug, detail_part):
    seed_awaiting(api.host)
    before = json.dumps(api.host.instances["run1"].custom_status)
    doc = assert_problem(api.decide("run1", "call_1", raw), 400, slug, "/api/runs/run1/approvals/call_1")
    assert detail_part in doc["detail"]
    assert api.host.mutations() == []
    assert json.dumps(api.host.instances["run1"].custom_status) == before


def test_decision_comment_of_4000_characters_is_accepted(api):
    seed_awaiting(api.host)
    reply = api.decide("run1", "call_1", {"approved": True, "comment": "c" * 4000})
    assert reply.status == 202 and len(reply.body["comment"]) == 4000


def test_oversized_decision_body_is_413_and_changes_nothing(api):
    seed_awaiting(api.host)
    big = json.dumps({"approved": True, "comment": "c" * MAX_BODY_BYTES})
    assert_problem(api.decide("run1", "call_1", big), 413, "body-too-large", "/api/runs/run1/approvals/call_1")
    assert api.host.mutations() == []


# ------------------------------------------------------------------------------------------------------
# POST runs/{runId}/cancel


def test_cancel_terminates_with_the_default_reason_and_the_run_becomes_cancelled(api):
    seed_awaiting(api.host)
    reply = api.cancel("run1")
    assert reply.status == 202
    assert reply.body == {"id": "run1", "agent": "support", "cancelRequested": True,
                          "reason": "cancelled by caller", "links": {"run": "/api/runs/run1"}}
    assert ("POST", "/durabletask/instances/run1/terminate?reason=cancelled%20by%20caller") in api.host.requests
    api.loop.run(_sleep(0.2))
    run = api.get_run("run1").body
    assert run["status"] == "cancelled" and run["error"] == "cancelled by caller" and run["pendingApprovals"] == []


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def test_cancel_with_a_reason(api):
    seed_awaiting(api.host)
    reply = api.cancel("run1", {"reason": "customer withdrew"})
    assert reply.status == 202 and reply.body["reason"] == "cancelled by caller: customer withdrew"
    api.loop.run(_sleep(0.2))
    assert api.get_run("run1").body["error"] == "cancelled by caller: customer withdrew"


def test_cancel_with_null_reason_or_empty_object(api):
    seed_awaiting(api.host, "a")
    seed_awaiting(api.host, "b")
    assert api.cancel("a", {"reason": None}).body["reason"] == "cancelled by caller"
    assert api.cancel("b", {}).body["reason"] == "cancelled by caller"


@pytest.mark.parametrize("runtime", ["Completed", "Failed", "Terminated", "Canceled"])
def test_cancel_a_finished_run_is_410(api, runtime):
    api.host.add("fin", ORCH, run_input(), runtime_status=runtime)
    assert_problem(api.cancel("fin"), 410, "run-finished", "/api/runs/fin/cancel")
    assert api.host.mutations() == []


def test_cancel_unknown_or_foreign_run_is_404(api):
    assert_problem(api.cancel("nope"), 404, "run-not-found", "/api/runs/nope/cancel")
    api.host.add("foreign", "other", json.dumps({"x": 1}), runtime_status="Running")
    assert_problem(api.cancel("foreign"), 404, "run-not-found", "/api/runs/foreign/cancel")
    assert api.host.mutations() == []


@pytest.mark.parametrize(
    ("raw", "status", "slug"),
    [
        (b"{", 400, "malformed-json"),
        (b'"stop"', 400, "invalid-body"),
        (b'{"reason": 3}', 400, "invalid-body"),
        (b'{"reason": "x", "force": true}', 400, "invalid-body"),
        (b'{"reason": "' + b"r" * 4001 + b'"}', 400, "invalid-body"),
        (b'{"reason": "' + b"r" * (MAX_BODY_BYTES + 1) + b'"}', 413, "body-too-large"),
    ],
)
def test_bad_cancel_bodies_change_nothing(api, raw, status, slug):
    seed_awaiting(api.host)
    assert_problem(api.cancel("run1", raw), status, slug, "/api/runs/run1/cancel")
    assert api.host.mutations() == []
    assert api.host.instances["run1"].runtime_status == "Running"


# ------------------------------------------------------------------------------------------------------
# End to end over the fake: start → awaiting approval → approve → completed


def test_start_approve_complete_flow(api):
    # Carol starts the run for herself; Sam (an approver who did not start it) decides.
    run_id = api.start("support", {"input": "refund ORD-1", "runId": "flow"}, user=CAROL).body["id"]
    api.host.update(run_id, runtime_status="Running", custom_status={
        "agent": "support", "currentAgent": "support", "turns": 1, "lastTool": "lookup_order",
        "pendingApprovals": [PENDING], "approvals": [], "demo": True})
    assert api.get_run(run_id, user=CAROL).body["status"] == "awaiting_approval"
    assert [r["id"] for r in api.list_runs(status="awaiting_approval", user=CAROL).body["runs"]] == ["flow"]
    assert_problem(api.decide(run_id, "call_1", {"approved": True}, user=CAROL), 403, "not-an-approver",
                   f"/api/runs/{run_id}/approvals/call_1")
    decided = api.decide(run_id, "call_1", {"approved": True, "argumentsHash": PENDING["argumentsHash"]})
    assert decided.status == 202 and decided.body["decidedBy"] == STAFF_PRINCIPAL
    api.host.update(run_id, runtime_status="Completed", output={
        "finalOutput": "[demo model] refunded", "lastAgent": "support", "turns": 3,
        "usage": {"requests": 3, "inputTokens": 10, "outputTokens": 5, "totalTokens": 15}, "demo": True})
    run = api.get_run(run_id, user=CAROL).body
    assert run["status"] == "completed" and run["output"] == "[demo model] refunded" and run["demo"] is True
    assert run["customer"] == "carol@example.com" and run["startedBy"] == CAROL_PRINCIPAL
    assert run["approvals"][0]["decision"] == "approved"
    # Retrying the applied decision after the run finished stays idempotent; changing it is too late.
    retry = api.decide(run_id, "call_1", {"approved": True})
    assert retry.status == 200 and retry.body["status"] == "completed" and retry.body["recorded"] is True
    assert_problem(api.decide(run_id, "call_1", {"approved": False}), 410, "run-finished",
                   f"/api/runs/{run_id}/approvals/call_1")
    assert len(api.host.instances[run_id].events) == 1


# ------------------------------------------------------------------------------------------------------
# The route prefix of links and Location headers


@pytest.mark.parametrize(("given", "prefix"), [("/v1", "/v1"), ("", ""), ("v1/", "/v1"), ("/", "")])
def test_every_link_and_location_uses_the_blueprint_route_prefix(durable, given, prefix):
    api = _build_api(durable, route_prefix=given, approval_wait_seconds=3.0, approval_poll_seconds=0.1)
    agents = {a["name"]: a for a in api.list_agents().body["agents"]}
    assert agents["support"]["links"] == {"runs": f"{prefix}/agents/support/runs"}
    started = api.start("support", {"input": "hi", "runId": "pre"})
    assert started.status == 202
    assert started.headers["Location"] == f"{prefix}/runs/pre"
    assert started.body["links"] == {"self": f"{prefix}/runs/pre",
                                     "approvals": f"{prefix}/runs/pre/approvals/{{approvalId}}",
                                     "cancel": f"{prefix}/runs/pre/cancel", "audit": f"{prefix}/runs/pre/audit"}
    assert api.get_run("pre").body["links"]["self"] == f"{prefix}/runs/pre"
    assert api.list_runs().body["runs"][0]["links"]["cancel"] == f"{prefix}/runs/pre/cancel"
    seed_awaiting(api.host)
    decided = api.decide("run1", "call_1", {"approved": True})
    assert decided.status == 202 and decided.body["links"] == {"run": f"{prefix}/runs/run1"}
    assert api.cancel("run1").body["links"] == {"run": f"{prefix}/runs/run1"}
    detail = api.start("nobody", {"input": "hi"}).body["detail"]
    assert f"GET {prefix}/agents" in detail
    assert "/api/" not in json.dumps([started.body, decided.body]).replace("/runtime/webhooks/", "")


def test_the_default_route_prefix_is_api(durable):
    api = _build_api(durable)
    assert api.start("support", {"input": "hi", "runId": "dflt"}).headers["Location"] == "/api/runs/dflt"


def test_blueprint_requires_a_registry_and_checks_its_settings():
    with pytest.raises(TypeError):
        http_api_blueprint()  # type: ignore[call-arg]
    registry = AgentRegistry()
    with pytest.raises(ValueError, match="approval_wait_seconds"):
        http_api_blueprint(registry, approval_wait_seconds=-1)
    with pytest.raises(ValueError, match="approval_poll_seconds"):
        http_api_blueprint(registry, approval_poll_seconds=0)
    with pytest.raises(TypeError, match="route_prefix"):
        http_api_blueprint(registry, route_prefix=None)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------------
# Validation details (durable_agents._http.bodies)


def test_bad_body_details_name_the_member_and_what_was_wrong(api):
    cases = {
        b'{"input": 5}': "'input' must be a string, not a number.",
        b'{"input": "  "}': "'input' must not be empty.",
        b"{}": "The member 'input' is required; it must be a non-empty string (the user's text).",
        b'{"input": "hi", "runId": "a b"}':
            "'runId' must be 1 to 100 characters from A-Z, a-z, 0-9, '_' and '-'; got 'a b'.",
        b'{"input": "hi", "runId": 7}': "'runId' must be a string or null, not a number.",
        b'{"input": "hi", "model": "x"}': "Unknown member(s) 'model'; allowed: input, runId, customer.",
    }
    for raw, detail in cases.items():
        doc = api.start("support", raw).body
        assert doc["detail"] == detail, raw


def test_every_failing_member_is_reported_unknown_ones_first(api):
    doc = assert_problem(api.start("support", {"Input": "hi", "runId": "a b"}), 400, "invalid-body",
                         "/api/agents/support/runs")
    assert doc["fields"] == ["Input", "input", "runId"]
    assert doc["detail"].startswith("Unknown member(s) 'Input'; allowed: input, runId, customer. The member "
                                    "'input'")
    assert "'runId' must be 1 to 100 characters" in doc["detail"]
    seed_awaiting(api.host)
    doc = assert_problem(api.decide("run1", "call_1", {"approved": "yes", "comment": 3}), 400, "invalid-body",
                         "/api/runs/run1/approvals/call_1")
    assert doc["fields"] == ["approved", "comment"]
    assert doc["detail"] == ("'approved' must be true or false, not a string. "
                             "'comment' must be a string or null, not a number.")
    assert api.host.mutations() == []


def test_a_bad_run_id_next_to_another_bad_member_is_an_invalid_body(api):
    doc = assert_problem(api.start("support", {"input": 5, "runId": "a b"}), 400, "invalid-body",
                         "/api/agents/support/runs")
    assert doc["fields"] == ["input", "runId"]


def test_cancel_reason_too_long_names_its_length(api):
    seed_awaiting(api.host)
    doc = api.cancel("run1", {"reason": "r" * 4001}).body
    assert doc["fields"] == ["reason"] and doc["detail"] == "'reason' has 4001 characters; the limit is 4000."


def test_start_run_keeps_the_input_text_as_sent(api):
    reply = api.start("support", {"input": "  two spaces\n", "runId": "kept"})
    assert reply.status == 202
    assert json.loads(api.host.instances["kept"].input)["input"] == "  two spaces\n"


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"top": "\u00b2"}, "'top' must be an integer from 1 to 100, not '\u00b2'."),
        ({"top": "0"}, "'top' must be an integer from 1 to 100, not '0'."),
        ({"status": "done,running,"}, "'status' has unknown value(s) 'done', ''; allowed: 'pending', "),
        ({"sort": "asc", "top": "x"},
         "Unknown query parameter(s) 'sort'; allowed: agent, status, top, continuationToken."),
    ],
)
def test_bad_query_details(api, params, detail):
    doc = assert_problem(api.list_runs(**params), 400, "invalid-query", "/api/runs")
    assert doc["detail"].startswith(detail)


def test_list_runs_top_accepts_surrounding_spaces_and_leading_zeros(api):
    _seed_runs(api.host)
    assert [r["id"] for r in api.list_runs(top=" 2 ").body["runs"]] == ["new", "tri"]
    assert [r["id"] for r in api.list_runs(top="001").body["runs"]] == ["new"]


def test_list_runs_repeated_status_values_are_fine(api):
    _seed_runs(api.host)
    assert [r["id"] for r in api.list_runs(status="failed, failed").body["runs"]] == ["new"]


# ------------------------------------------------------------------------------------------------------
# Contracts: times, event name and payload


def test_created_and_updated_are_utc_with_milliseconds(api):
    from datetime import UTC, datetime

    api.host.add("timed", ORCH, run_input(), runtime_status="Running",
                 created=datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC))
    api.host.instances["timed"].updated = datetime(2026, 1, 1, 0, 5, 7, tzinfo=UTC)
    run = api.get_run("timed").body
    assert run["createdAt"] == "2026-01-01T00:00:00.000Z"
    assert run["updatedAt"] == "2026-01-01T00:05:07.000Z"


def test_an_unexpected_error_is_logged_without_the_function_key(api, caplog):
    with caplog.at_level("ERROR"):
        assert_problem(api.start("broken", {"input": "hi"}), 500, "internal-error", "/api/agents/broken/runs")
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "/api/agents/broken/runs" in logged and "function-key" not in logged


def test_run_statuses_are_the_literal_type_and_every_one_has_runtime_statuses():
    from typing import get_args

    from durable_agents._http.views import RUN_STATUSES, RUNTIME_FOR_STATUS, RunStatus

    assert RUN_STATUSES == get_args(RunStatus)
    assert set(RUNTIME_FOR_STATUS) == set(RUN_STATUSES)
