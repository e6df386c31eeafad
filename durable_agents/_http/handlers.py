"""The HTTP API's route handlers: internal, not part of the public API.

Each route is one module-level ``async def <name>(api, req, client) -> func.HttpResponse`` that raises
:class:`~durable_agents._problems.Problem` for every caller mistake; :func:`respond` runs a handler and turns a
problem into its ``application/problem+json`` answer (anything else into a logged 500 ``internal-error``).
``durable_agents._http.http_api_blueprint`` registers one thin Functions trigger per handler. Routes, answers
and shapes: the package docstring of :mod:`durable_agents._http`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._audit import AuditRecord, arguments_hash, get_audit_store
from durable_agents._contracts import (
    RUN_VERSION,
    ApprovalDecision,
    ApprovalEvent,
    OrchestrationInput,
    approval_event_name,
    format_time,
)
from durable_agents._conversations import conversation_input
from durable_agents._http.access import check_may_decide, may_read, require_caller, started_by_id
from durable_agents._http.bodies import (
    RUN_ID_PATTERN,
    CancelBody,
    DecisionBody,
    ListRunsQuery,
    StartRunBody,
    check_json_content_type,
    check_size,
    read_object,
    validate,
)
from durable_agents._http.listing import list_page
from durable_agents._http.views import (
    RUNTIME_FOR_STATUS,
    TERMINAL,
    agent_run_input,
    find_decided,
    find_pending,
    pending_approvals,
    read_custom_status,
    run_json,
    run_links,
    run_status,
    run_url,
    runtime_statuses,
)
from durable_agents._identity import Caller, setting_list
from durable_agents._jsonsafe import dumps, json_safe
from durable_agents._problems import Problem, request_path
from durable_agents._registry import AGENT_NAME_PATTERN, AgentRegistry, RegisteredAgent
from durable_agents._run_settings import GLOBAL_RUN_SETTINGS, settings_snapshot
from durable_agents._telemetry import TRACE_MEMBER, emit_approval_span, request_trace

__all__ = [
    "GLOBAL_RUN_SETTINGS",
    "ROUTE_PREFIX",
    "Handler",
    "HttpApi",
    "cancel_run",
    "decide_approval",
    "get_audit",

    "get_run",
    "list_agents",
    "list_runs",
    "acting_customer",
    "respond",
    "route_entry",
    "start_run",
]

logger = logging.getLogger("durable_agents._http")

ROUTE_PREFIX = "/api"
"""Default path prefix of the links the API returns: the host's default ``extensions.http.routePrefix`` (``api``)."""


_FIRST_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class HttpApi:
    """What the handlers of one blueprint share.

    ``registry``: the agents served (read on every request, so agents added later are served).
    ``route_prefix``: path prefix of every link and ``Location`` (``"/api"``, ``""`` or ``"/v1"``; no trailing
    slash). ``approval_wait_seconds``: how long a decision request waits for the run to record the decision.
    ``approval_poll_seconds``: the longest sleep between two status reads in that wait (sleeps start at 50 ms
    and double). ``app_dir``: the app folder (where the local blob store of conversations lives).
    """

    registry: AgentRegistry
    route_prefix: str = ROUTE_PREFIX
    approval_wait_seconds: float = 10.0
    approval_poll_seconds: float = 0.5
    app_dir: Path | None = None


Handler = Callable[[HttpApi, func.HttpRequest, DurableOrchestrationClient], Awaitable[func.HttpResponse]]
"""The signature of a route handler."""


# ---------------------------------------------------------------------------------------------------------------
# Answers


def _json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return func.HttpResponse(
        body=dumps(body),
        status_code=status_code,
        headers=all_headers,
        mimetype="application/json",
        charset="utf-8",
    )


async def respond(
    handler: Handler, api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient
) -> func.HttpResponse:
    """Run ``handler``; a :class:`Problem` becomes its problem response, any other exception a logged 500
    ``internal-error`` problem (the log names the method and path, never the query string with the key)."""
    try:
        return await handler(api, req, client)
    except Problem as problem:
        return problem.response(req)
    except Exception:
        logger.exception("HTTP API %s %s failed", req.method, request_path(req))
        return Problem(
            "internal-error", "The server could not complete the request; see the function logs."
        ).response(req)


def _run_not_found(run_id: str) -> Problem:
    return Problem("run-not-found", f"There is no run with id {run_id!r}.")


PATH_RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}(?::[A-Za-z0-9_-]{1,100}){0,4}")
"""A ``{runId}`` in a path: a run id (:data:`RUN_ID_PATTERN`), or a sub-orchestration's id made of such parts
joined by ``:`` (``<parent>:<order id>``, ``<parent>:sub-1``); callers can only choose the first form."""


def _path_run_id(req: func.HttpRequest) -> str:
    """The ``{runId}`` route parameter; 404 when it cannot be a run id (never passed to the Durable client)."""
    run_id = req.route_params.get("runId") or ""
    if not RUN_ID_PATTERN.fullmatch(run_id) and not PATH_RUN_ID_PATTERN.fullmatch(run_id):
        raise _run_not_found(run_id)
    return run_id


async def _load_run(
    client: DurableOrchestrationClient, run_id: str, caller: Caller, *, conversations: bool = False
) -> tuple[DurableOrchestrationStatus, OrchestrationInput]:
    """Status and agent-run input of ``run_id``; 404 when unknown, not an agent run, or not visible to ``caller``
    (:func:`~durable_agents._http.access.may_read`; 404 rather than 403 so that run ids cannot be probed).
    With ``conversations`` a conversation's input counts too (the approvals and audit routes serve both)."""
    status = await client.get_status(run_id, show_input=True)
    run_input = _run_or_conversation_input(status.input_, conversations) if status else None
    if run_input is None or not may_read(caller, run_input):
        raise _run_not_found(run_id)
    return status, run_input


def _run_or_conversation_input(raw: Any, conversations: bool) -> OrchestrationInput | None:
    """An agent run's input, or (with ``conversations``) a conversation's, as the fields access rules read."""
    run_input = agent_run_input(raw)
    if run_input is None and conversations:
        run_input = cast(OrchestrationInput | None, conversation_input(raw))
    return run_input


# ---------------------------------------------------------------------------------------------------------------
# GET agents, POST agents/{agent}/runs


async def list_agents(
    api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient
) -> func.HttpResponse:
    """``GET agents`` → 200 ``{"agents": [<agent>]}`` sorted by name."""
    return _json_response({"agents": [entry.to_json(api.route_prefix) for entry in api.registry.list()]})


def route_entry(api: HttpApi, req: func.HttpRequest) -> RegisteredAgent:
    """The registered agent or workflow the route parameter ``agent`` names; raises the 404 problem
    ``agent-not-found`` for a malformed or unknown name."""
    agent_name = req.route_params.get("agent") or ""
    entry = api.registry.get(agent_name) if AGENT_NAME_PATTERN.fullmatch(agent_name) else None
    if entry is None:
        raise Problem("agent-not-found",
                      f"There is no agent named {agent_name!r}; see GET {api.route_prefix}/agents.")
    return entry


def acting_customer(caller: Caller, requested: str | None, what: str) -> str | None:
    """Whom a new ``what`` ("a run", "a conversation") acts for: ``requested`` lower-cased, else the caller's own
    email, else nobody. Raises the 403 problem ``customer-not-allowed`` when ``requested`` names someone else and
    the caller is not support staff (``SUPPORT_ROLES``)."""
    customer = requested.lower() if requested else caller.email
    if requested and customer != caller.email and not caller.is_support:
        raise Problem("customer-not-allowed",
                      f"Only support staff (roles {', '.join(sorted(setting_list('SUPPORT_ROLES', 'Support')))}) "
                      f"may start {what} for another customer; leave 'customer' out to act for yourself.")
    return customer


async def start_run(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``POST agents/{agent}/runs`` with :class:`~durable_agents._http.bodies.StartRunBody`.

    Checks, in order: 401 without an identity; 413 for bodies over 1 MiB; 415 unless ``application/json``; 404 for
    an unregistered agent; 400 for a bad body (``invalid-run-id`` for a bad ``runId``); 403
    ``customer-not-allowed`` when ``customer`` names someone else and the caller is not support staff
    (``SUPPORT_ROLES``); 409 when ``runId`` names an existing instance (purged instances are free again), also
    for all but one of concurrent starts of one new id (the runtime refuses to overwrite a pending or running
    instance). Without ``runId`` the id is a new uuid4 hex. The run acts for ``customer`` (lower-cased), else for
    the caller's own email, else for nobody. Starts the agent's orchestrator with the
    :class:`~durable_agents._contracts.OrchestrationInput` ``{"agent", "input", "settings", "version",
    "customer", "startedBy", "trace"?}`` (``settings``: :func:`~durable_agents._run_settings.settings_snapshot`;
    ``trace``: ``{"traceparent"}`` when the request carries a valid W3C ``traceparent`` header, so the run's spans
    join its trace, :func:`durable_agents._telemetry.request_trace`). Answers
    202 ``<started>`` + ``Location``; never the Durable management URLs (they carry the task hub's system key).
    """
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=True)
    entry = route_entry(api, req)
    body = validate(StartRunBody, read_object(req, required=True) or {})
    customer = acting_customer(caller, body.customer, "a run")
    if body.run_id is not None and await client.get_status(body.run_id):
        raise Problem("run-id-in-use", f"The run id {body.run_id!r} is already in use.")
    run_input: OrchestrationInput = {"agent": entry.name, "input": body.input,
                                     "settings": settings_snapshot(entry.settings), "version": RUN_VERSION,
                                     "customer": customer, "startedBy": caller.principal()}
    trace = request_trace(req.headers)  # the run's spans join the request's trace (docs/internals.md "Traces")
    if trace is not None:
        run_input = cast(OrchestrationInput, {**run_input, TRACE_MEMBER: trace})
    wanted_id = body.run_id or uuid.uuid4().hex
    try:
        instance_id = await client.start_new(entry.orchestrator, instance_id=wanted_id, client_input=run_input)
    except Exception:
        if body.run_id is not None and await client.get_status(body.run_id):
            # A concurrent start with the same id won; the runtime refused to overwrite it.
            raise Problem("run-id-in-use", f"The run id {body.run_id!r} is already in use.") from None
        raise
    payload = {
        "id": instance_id,
        "agent": entry.name,
        "status": "pending",
        "customer": customer,
        "startedBy": caller.principal(),
        "links": run_links(api.route_prefix, instance_id),
    }
    return _json_response(payload, 202, {"Location": run_url(api.route_prefix, instance_id)})


# ---------------------------------------------------------------------------------------------------------------
# GET runs, GET runs/{runId}


async def list_runs(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET runs`` with :class:`~durable_agents._http.bodies.ListRunsQuery` →
    200 ``{"runs": [<run>], "continuationToken": str | null}``.

    Newest first (by ``createdAt``, then id), at most ``top`` per page; pass ``continuationToken`` back for the next
    page (:mod:`durable_agents._http.listing`: every run is reachable, filters included). 401 without an identity;
    400 ``invalid-query`` for unknown parameters (other than the host's ``code``), a bad agent name, unknown
    statuses or a ``top`` that is not 1..100 in ASCII digits; 400 ``invalid-continuation-token``. Only agent runs
    the caller may see (:func:`~durable_agents._http.access.may_read`) are listed.
    """
    caller = require_caller(req)
    query = validate(ListRunsQuery, req.params)
    statuses = query.status or ()
    runtime = runtime_statuses(statuses, RUNTIME_FOR_STATUS)

    def view(status: DurableOrchestrationStatus) -> dict[str, Any] | None:
        run_input = agent_run_input(status.input_) if status else None
        if run_input is None or (query.agent is not None and run_input["agent"] != query.agent):
            return None
        if not may_read(caller, run_input):
            return None
        run = run_json(status, run_input, api.route_prefix)
        return None if statuses and run["status"] not in statuses else run

    runs, token = await list_page(client, runtime, view, query.top, query.continuation_token)
    return _json_response({"runs": runs, "continuationToken": token})


MAX_CHILDREN_READ = 50
"""How many sub-orchestrations of a run ``GET runs/{runId}`` and the approvals route read (the first ones started)."""


async def _children(
    client: DurableOrchestrationClient, status: DurableOrchestrationStatus
) -> list[tuple[str, DurableOrchestrationStatus]]:
    """The sub-orchestrations a run started (custom status ``children``) that exist, with their statuses."""
    found = []
    for child_id in (read_custom_status(status).get("children") or [])[:MAX_CHILDREN_READ]:
        if isinstance(child_id, str):
            child = await client.get_status(child_id)
            if child:
                found.append((child_id, child))
    return found


async def get_run(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET runs/{runId}`` → 200 ``<run>``; 401 without an identity; 404 for unknown ids, for instances that are
    not agent runs and for runs the caller may not see (:func:`~durable_agents._http.access.may_read`).

    The pending approvals of the run's running sub-orchestrations are listed too, each with ``runId`` (the child's
    instance id), and make the run ``awaiting_approval``; they are decided through this run's approvals route.
    """
    caller = require_caller(req)
    status, run_input = await _load_run(client, _path_run_id(req), caller)
    run = run_json(status, run_input, api.route_prefix)
    if status.runtime_status not in TERMINAL:
        for child_id, child in await _children(client, status):
            if child.runtime_status not in TERMINAL:
                run["pendingApprovals"] += [{**p, "runId": child_id} for p in pending_approvals(
                    read_custom_status(child))]
        run["status"] = run_status(status.runtime_status, run["pendingApprovals"])
    return _json_response(run)


# ---------------------------------------------------------------------------------------------------------------
# POST runs/{runId}/approvals/{approvalId}


async def decide_approval(
    api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient
) -> func.HttpResponse:
    """``POST runs/{runId}/approvals/{approvalId}`` with :class:`~durable_agents._http.bodies.DecisionBody`.

    Checks, in order: 401 without an identity; 413 (over 1 MiB); 415 unless ``application/json``; 400 (bad body);
    404 unknown run (or one the caller may not see); 403 ``not-an-approver`` / ``own-run``
    (:func:`~durable_agents._http.access.check_may_decide`); 410 run finished (completed, failed or
    cancelled), except that repeating the decision the run recorded is 200 even then (a retry after a lost
    answer stays idempotent); for an approval already in the custom status ``approvals``: 200 ``<decision>``
    when the same decision is repeated, 409 when it differs (``approval-expired`` when it expired); 404 when
    the id is neither pending nor decided; 409 ``arguments-changed`` when ``argumentsHash`` is sent and is not the
    pending approval's. Otherwise appends the ``decided`` audit record (who, decision, comment, the hash of the
    arguments the pending approval shows) and raises ``approval:<approvalId>`` with an
    :class:`~durable_agents._contracts.ApprovalEvent` and polls until the orchestration records a decision (at
    most ``api.approval_wait_seconds``): 202 ``<decision>`` when it recorded this one (or when the wait ran out:
    ``recorded: false``), 409 when it recorded another (a concurrent decision or expiry), 410 when the run
    finished without recording it. An approval of one of the run's sub-orchestrations (custom status ``children``)
    is decided on that child, with the same answers. A new decision (its audit record appended now) that reached
    the run emits one ``approval <tool>`` span, from the approval's ``requestedAt`` to the decision
    (:func:`durable_agents._telemetry.emit_approval_span`).
    """
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=True)
    body = validate(DecisionBody, read_object(req, required=True) or {})
    run_id = _path_run_id(req)
    approval_id = req.route_params.get("approvalId") or ""
    wanted = "approved" if body.approved else "rejected"
    status, run_input = await _load_run(client, run_id, caller, conversations=True)
    check_may_decide(caller, run_input)
    custom = read_custom_status(status)
    target = run_id  # the instance that waits for this approval: the run, or one of its sub-orchestrations
    if find_decided(custom, approval_id) is None and find_pending(custom, approval_id) is None:
        for child_id, child in await _children(client, status):
            child_custom = read_custom_status(child)
            if find_decided(child_custom, approval_id) or find_pending(child_custom, approval_id):
                target, status, custom = child_id, child, child_custom
                break
    recorded = find_decided(custom, approval_id)
    if status.runtime_status in TERMINAL:
        if recorded is not None and recorded.get("decision") == wanted:
            # An idempotent retry (e.g. after a lost 202) of the decision that was applied.
            return _decided_answer(api, run_id, approval_id, recorded, wanted, status, replay=True)
        raise Problem("run-finished", f"Run {run_id!r} has finished; its approvals can no longer change.")
    if recorded is not None:
        return _decided_answer(api, run_id, approval_id, recorded, wanted, status, replay=True)
    pending = find_pending(custom, approval_id)
    if pending is None:
        raise Problem("approval-not-found", f"Run {run_id!r} has no pending approval {approval_id!r}.")
    shown_hash = pending.get("argumentsHash")
    if body.arguments_hash is not None and shown_hash is not None and body.arguments_hash != shown_hash:
        raise Problem("arguments-changed",
                      f"Approval {approval_id!r} asks about arguments with hash {shown_hash}, not "
                      f"{body.arguments_hash}; read the run again and decide on what it shows.",
                      {"argumentsHash": shown_hash})
    # A pending approval published before argumentsHash existed (a version-1 run, or custom status written by the
    # previous release) is recorded with the hash of the arguments it shows.
    recorded_hash = shown_hash if isinstance(shown_hash, str) and shown_hash else arguments_hash(
        json_safe(pending.get("arguments")))
    decided_at = format_time(datetime.now(UTC))
    new_decision = get_audit_store().append(AuditRecord(
        run_id=target, approval_id=approval_id, event="decided", kind=str(pending.get("kind") or "tool"),
        tool=str(pending.get("tool") or ""), arguments_hash=recorded_hash, arguments=None,
        decision=wanted, comment=body.comment, actor_id=caller.id, actor_name=caller.name,
        at=decided_at, key=f"decided:{approval_id}:{caller.id}:{wanted}",
    ))
    event: ApprovalEvent = {"approved": body.approved, "comment": body.comment, "decidedBy": caller.principal(),
                            "argumentsHash": shown_hash}  # the run rejects the decision if its arguments differ
    try:
        await client.raise_event(target, approval_event_name(approval_id), event)
    except Exception:
        after = await client.get_status(target)
        if not after:
            raise _run_not_found(run_id) from None
        if after.runtime_status in TERMINAL:
            raise Problem("run-finished", f"Run {run_id!r} finished before the decision arrived.") from None
        raise
    if new_decision:  # once per decision: a retried request finds its audit record and emits nothing
        target_input = status.input_ if target != run_id else run_input
        emit_approval_span(target, _trace_member(target_input), pending, wanted, decided_at)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + api.approval_wait_seconds
    delay = _FIRST_POLL_SECONDS
    while True:
        latest = await client.get_status(target)
        if not latest:
            raise _run_not_found(run_id)
        recorded = find_decided(read_custom_status(latest), approval_id)
        if recorded is not None:
            return _decided_answer(api, run_id, approval_id, recorded, wanted, latest, replay=False)
        if latest.runtime_status in TERMINAL:
            raise Problem("run-finished", f"Run {run_id!r} finished before the decision was recorded.")
        if loop.time() >= deadline:
            answer = _decision_json(api, run_id, approval_id, wanted, body.comment, None, False, latest,
                                    caller.principal())
            return _json_response(answer, 202)
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, api.approval_poll_seconds)


def _trace_member(run_input: Any) -> Any:
    """The ``trace`` member of an instance's input (a dict or its JSON text), else ``None``."""
    if isinstance(run_input, str):
        try:
            run_input = json.loads(run_input)
        except ValueError:
            return None
    return run_input.get(TRACE_MEMBER) if isinstance(run_input, dict) else None


def _decision_json(
    api: HttpApi,
    run_id: str,
    approval_id: str,
    decision: str,
    comment: str | None,
    decided_at: str | None,
    recorded: bool,
    status: DurableOrchestrationStatus,
    decided_by: Any = None,
) -> dict[str, Any]:
    """The ``<decision>`` JSON; ``status`` is the run's status as last read, ``decided_by`` the principal."""
    pending = [] if status.runtime_status in TERMINAL else pending_approvals(read_custom_status(status))
    return {
        "runId": run_id,
        "approvalId": approval_id,
        "decision": decision,
        "comment": comment,
        "decidedAt": decided_at,
        "decidedBy": decided_by,
        "recorded": recorded,
        "status": run_status(status.runtime_status, pending),
        "links": {"run": run_url(api.route_prefix, run_id)},
    }


def _decided_answer(
    api: HttpApi,
    run_id: str,
    approval_id: str,
    recorded: ApprovalDecision,
    wanted: str,
    status: DurableOrchestrationStatus,
    *,
    replay: bool,
) -> func.HttpResponse:
    """Answer for an approval the orchestration has recorded: 200 (``replay``) / 202 when it is ``wanted``
    (``"approved"`` / ``"rejected"``), else 409 ``approval-expired`` or ``approval-conflict``."""
    decision = recorded.get("decision")
    decided_at = recorded.get("decidedAt")
    if decision == wanted:
        body = _decision_json(api, run_id, approval_id, wanted, recorded.get("comment"), decided_at, True, status,
                              recorded.get("decidedBy"))
        return _json_response(body, 200 if replay else 202)
    if decision == "expired":
        raise Problem(
            "approval-expired",
            f"Approval {approval_id!r} expired at {decided_at} before a decision was made; it cannot be {wanted}.",
            {"decision": "expired", "decidedAt": decided_at},
        )
    raise Problem(
        "approval-conflict",
        f"Approval {approval_id!r} was already {decision} at {decided_at}; it cannot now be {wanted}.",
        {"decision": decision, "decidedAt": decided_at},
    )


# ---------------------------------------------------------------------------------------------------------------
# POST runs/{runId}/cancel


async def cancel_run(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``POST runs/{runId}/cancel`` with an optional :class:`~durable_agents._http.bodies.CancelBody`.

    401 without an identity, 413, 415 (a body that is not ``application/json``), 400 (bad body) first, then 404
    unknown run (or not visible), 403 ``not-allowed`` unless the caller started the run or is support staff or an
    approver, 410 finished; otherwise terminates the instance with
    reason ``"cancelled by caller"`` (``"cancelled by caller: <reason>"`` when a non-blank reason is given) →
    202 ``<cancel>``. The run's status becomes ``cancelled`` once the termination is processed.
    """
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=False)
    body = validate(CancelBody, read_object(req, required=False) or {})
    run_id = _path_run_id(req)
    status, run_input = await _load_run(client, run_id, caller)
    if not (caller.is_support or caller.is_approver or started_by_id(run_input) == caller.id):
        raise Problem("not-allowed", "Only the principal who started a run, support staff and approvers may "
                      "cancel it.")
    if status.runtime_status in TERMINAL:
        raise Problem("run-finished", f"Run {run_id!r} has already finished.")
    text = "cancelled by caller" + (f": {body.reason}" if body.reason and body.reason.strip() else "")
    await client.terminate(run_id, text)
    payload = {
        "id": run_id,
        "agent": run_input["agent"],
        "cancelRequested": True,
        "reason": text,
        "links": {"run": run_url(api.route_prefix, run_id)},
    }
    return _json_response(payload, 202)


# ---------------------------------------------------------------------------------------------------------------
# GET runs/{runId}/audit


async def get_audit(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET runs/{runId}/audit`` → 200 ``{"runId", "records": [<audit record>]}`` (oldest first; the run's and its
    sub-orchestrations' records, :meth:`durable_agents._audit.AuditRecord.to_json`).

    The audit lives outside orchestration state: after a purge the run is gone but its audit is still answered to
    support staff and approvers (404 for others, and for ids that never had records). 401 without an identity.
    """
    caller = require_caller(req)
    run_id = _path_run_id(req)
    store = get_audit_store()
    status = await client.get_status(run_id, show_input=True)
    run_input = _run_or_conversation_input(status.input_, True) if status else None
    if run_input is not None:
        if not may_read(caller, run_input):
            raise _run_not_found(run_id)
        ids = [run_id] + [child_id for child_id, _ in await _children(client, status)]
    else:
        if not (caller.is_support or caller.is_approver):
            raise _run_not_found(run_id)
        ids = [run_id]
    records = [record for instance in ids for record in store.list_for_run(instance)]
    if run_input is None and not records:
        raise _run_not_found(run_id)
    records.sort(key=lambda record: record.at)
    return _json_response({"runId": run_id, "records": [record.to_json() for record in records]})
