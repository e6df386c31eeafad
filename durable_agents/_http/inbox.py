"""``GET approvals``: the approval inbox across runs and conversations (internal, not part of the public API).

The inbox of the browser app (:mod:`durable_agents._http.ui`) and of any program: the approvals the caller may see,
newest first. It reads the instances the way ``GET runs`` does (:func:`durable_agents._http.listing.read_instances`:
every page of the extension's ``GET instances/``) and the pending and decided approvals from each one's custom
status (docs/internals.md "Custom status"); nothing is stored for it. Access follows
:mod:`durable_agents._http.access`: an instance is listed when the caller may read it (a sub-orchestration,
``<parent>:<part>``, by the rules of its top-level run); ``mayDecide`` says whether
:func:`~durable_agents._http.access.check_may_decide` would let the caller decide it.

Query: ``state`` (``pending`` by default, ``decided`` or ``all``), ``agent``, ``top`` (1..100, default 50),
``continuationToken`` (from the previous page). Answer 200 ``{"approvals": [<inbox item>], "continuationToken":
str | null}`` where ``<inbox item>`` is::

    {"id", "runId", "instanceId", "source": "run"|"conversation", "agent", "customer", "startedBy",
     "kind": "tool"|"workflow", "tool", "summary", "arguments", "argumentsHash", "truncated",
     "requestedAt", "expiresAt", "state": "pending"|"approved"|"rejected"|"expired",
     "comment", "decidedAt", "decidedBy", "mayDecide": bool, "links": {"run", "decide"}}

``runId`` is the run or conversation that shows the approval (the parent of a sub-orchestration) and decides it
(``links.decide``: ``POST <p>/runs/{runId}/approvals/{id}``); ``instanceId`` is the instance that waits for it.
Members a decided approval does not record (``arguments``, ``requestedAt``...) are ``null``. Order: newest first by
``decidedAt`` (decided) or ``requestedAt`` (pending), then run id and approval id, descending; the token is that
triple of the page's last item, base64url, and the next page holds the items strictly after it.
400 ``invalid-query`` / ``invalid-continuation-token``; 401 without an identity.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, ClassVar, Literal

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus
from pydantic import BeforeValidator, Field

from durable_agents._conversations import conversation_input
from durable_agents._http.access import check_may_decide, may_read, require_caller
from durable_agents._http.bodies import (
    DEFAULT_LIST_TOP,
    MAX_LIST_TOP,
    _ascii_integer,
    _StrictModel,
    validate,
)
from durable_agents._http.handlers import HttpApi, _json_response
from durable_agents._http.listing import read_instances
from durable_agents._http.views import (
    ACTIVE,
    TERMINAL,
    agent_run_input,
    conversation_url,
    decided_approvals,
    pending_approvals,
    read_custom_status,
    run_url,
)
from durable_agents._identity import Caller
from durable_agents._problems import Problem
from durable_agents._registry import AGENT_NAME_PATTERN

__all__ = ["ListApprovalsQuery", "list_approvals"]


class ListApprovalsQuery(_StrictModel):
    """Query of ``GET approvals`` (module docstring); the host's ``code`` key is ignored, any other unknown parameter
    is a 400 ``invalid-query``."""

    problem: ClassVar[str] = "invalid-query"
    noun: ClassVar[str] = "query parameter"
    ignored: ClassVar[frozenset[str]] = frozenset({"code"})

    state: Literal["pending", "decided", "all"] = Field(
        default="pending", description="one of pending, decided, all")
    agent: Annotated[str, Field(pattern=f"^{AGENT_NAME_PATTERN.pattern}$")] | None = Field(
        default=None, description="an agent name (1 to 64 characters from A-Z, a-z, 0-9, '_' and '-')")
    top: Annotated[int, BeforeValidator(_ascii_integer), Field(ge=1, le=MAX_LIST_TOP)] = Field(
        default=DEFAULT_LIST_TOP, description=f"an integer from 1 to {MAX_LIST_TOP}")
    continuation_token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,1200}$")] | None = Field(
        default=None, alias="continuationToken",
        description="the continuationToken of the previous page, as it was returned")


_Key = tuple[str, str, str]


def _encode(key: _Key) -> str:
    text = json.dumps({"t": key[0], "r": key[1], "a": key[2]}, separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(token: str) -> _Key:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        key = (data["t"], data["r"], data["a"])
        if not all(isinstance(part, str) for part in key):
            raise TypeError
        return key
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise Problem("invalid-continuation-token",
                      "The continuationToken is not one this API returned; start again without it.") from None


def _access_input(status: DurableOrchestrationStatus) -> tuple[dict[str, Any] | None, str]:
    """The fields the access rules read (an agent run's or a conversation's input) and the source kind."""
    run_input = agent_run_input(status.input_)
    if run_input is not None:
        return dict(run_input), "run"
    conversation = conversation_input(status.input_)
    return (conversation, "conversation") if conversation is not None else (None, "run")


def _may_decide(caller: Caller, owner: dict[str, Any]) -> bool:
    try:
        check_may_decide(caller, owner)  # type: ignore[arg-type]
    except Problem:
        return False
    return True


async def list_approvals(api: HttpApi, req: func.HttpRequest,
                         client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET approvals`` with :class:`ListApprovalsQuery` → 200 ``{"approvals": [<inbox item>],
    "continuationToken"}`` (shapes, order and access: the module docstring). 401 without an identity, 400
    ``invalid-query`` for a bad query, 400 ``invalid-continuation-token``."""
    caller = require_caller(req)
    query = validate(ListApprovalsQuery, req.params)
    after = _decode(query.continuation_token) if query.continuation_token else None
    instances = await read_instances(client, sorted(ACTIVE, key=lambda s: s.value) if query.state == "pending"
                                     else ())
    by_id: dict[str, DurableOrchestrationStatus] = {}
    for status in instances:
        if status.instance_id and status.instance_id not in by_id:
            by_id[status.instance_id] = status
    rows: list[tuple[_Key, dict[str, Any]]] = []
    for instance_id, status in by_id.items():
        owner_id = instance_id.split(":", 1)[0]  # a sub-orchestration follows its top-level run's rules
        owner_status = by_id.get(owner_id) if owner_id != instance_id else status
        if owner_status is None:
            continue
        owner, source = _access_input(owner_status)
        if owner is None or not may_read(caller, owner):  # type: ignore[arg-type]
            continue
        if query.agent is not None and owner.get("agent") != query.agent:
            continue
        shown_id = instance_id.rsplit(":", 1)[0] if ":" in instance_id else instance_id
        base = {
            "runId": shown_id, "instanceId": instance_id, "source": source, "agent": owner.get("agent"),
            "customer": owner.get("customer"), "startedBy": owner.get("startedBy"),
        }
        decide = _may_decide(caller, owner)
        run_link = (conversation_url(api.route_prefix, shown_id) if source == "conversation"
                    else run_url(api.route_prefix, shown_id))
        custom = read_custom_status(status)

        decide_base = run_url(api.route_prefix, shown_id) + "/approvals/"

        if query.state in ("pending", "all") and status.runtime_status in ACTIVE:
            for pending in pending_approvals(custom):
                approval_id = str(pending.get("id") or "")
                item = {"id": approval_id, **base, "kind": pending.get("kind"), "tool": pending.get("tool"),
                        "summary": pending.get("summary"), "arguments": pending.get("arguments"),
                        "argumentsHash": pending.get("argumentsHash"), "truncated": bool(pending.get("truncated")),
                        "requestedAt": pending.get("requestedAt"), "expiresAt": pending.get("expiresAt"),
                        "state": "pending", "comment": None, "decidedAt": None, "decidedBy": None,
                        "mayDecide": decide,
                        "links": {"run": run_link, "decide": decide_base + approval_id}}
                rows.append(((str(pending.get("requestedAt") or ""), shown_id, approval_id), item))
        if query.state in ("decided", "all") and (status.runtime_status in ACTIVE
                                                  or status.runtime_status in TERMINAL):
            for decided in decided_approvals(custom):
                approval_id = str(decided.get("id") or "")
                item = {"id": approval_id, **base, "kind": decided.get("kind"), "tool": decided.get("tool"),
                        "summary": None, "arguments": None, "argumentsHash": None, "truncated": False,
                        "requestedAt": None, "expiresAt": None, "state": decided.get("decision"),
                        "comment": decided.get("comment"), "decidedAt": decided.get("decidedAt"),
                        "decidedBy": decided.get("decidedBy"), "mayDecide": False,
                        "links": {"run": run_link, "decide": decide_base + approval_id}}
                rows.append(((str(decided.get("decidedAt") or ""), shown_id, approval_id), item))
    rows.sort(key=lambda row: row[0], reverse=True)
    if after is not None:
        rows = [row for row in rows if row[0] < after]
    page = rows[:query.top]
    token = _encode(page[-1][0]) if len(rows) > query.top else None
    return _json_response({"approvals": [item for _, item in page], "continuationToken": token})
