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
from datetime import datetime
from typing import Any

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient, OrchestrationRuntimeStatus
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._contracts import ApprovalDecision, ApprovalEvent, OrchestrationInput, approval_event_name
from durable_agents._http.bodies import (
    RUN_ID_PATTERN,
    CancelBody,
    DecisionBody,
    ListRunsQuery,
    StartRunBody,
    check_size,
    read_object,
    validate,
)
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
)
from durable_agents._problems import Problem, request_path
from durable_agents._registry import AGENT_NAME_PATTERN, AgentRegistry
from durable_agents._run_settings import GLOBAL_RUN_SETTINGS, settings_snapshot

__all__ = [
    "GLOBAL_RUN_SETTINGS",
    "ROUTE_PREFIX",
    "Handler",
    "HttpApi",
    "cancel_run",
    "decide_approval",
    "get_run",
    "list_agents",
    "list_runs",
    "respond",
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
    and double).
    """

    registry: AgentRegistry
    route_prefix: str = ROUTE_PREFIX
    approval_wait_seconds: float = 10.0
    approval_poll_seconds: float = 0.5


Handler = Callable[[HttpApi, func.HttpRequest, DurableOrchestrationClient], Awaitable[func.HttpResponse]]
"""The signature of a route handler."""


# ---------------------------------------------------------------------------------------------------------------
# Answers


def _json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return func.HttpResponse(
        body=json.dumps(body, ensure_ascii=False),
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
    client: DurableOrchestrationClient, run_id: str
) -> tuple[DurableOrchestrationStatus, OrchestrationInput]:
    """Status and agent-run input of ``run_id``; 404 when unknown or not an agent run."""
    status = await client.get_status(run_id, show_input=True)
    run_input = agent_run_input(status.input_) if status else None
    if run_input is None:
        raise _run_not_found(run_id)
    return status, run_input


# ---------------------------------------------------------------------------------------------------------------
# GET agents, POST agents/{agent}/runs


async def list_agents(
    api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient
) -> func.HttpResponse:
    """``GET agents`` → 200 ``{"agents": [<agent>]}`` sorted by name."""
    return _json_response({"agents": [entry.to_json(api.route_prefix) for entry in api.registry.list()]})


async def start_run(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``POST agents/{agent}/runs`` with :class:`~durable_agents._http.bodies.StartRunBody`.

    413 for bodies over 1 MiB, 404 for an unregistered agent, 400 for a bad body (``invalid-run-id`` for a bad
    ``runId``), 409 when ``runId`` names an existing instance (purged instances are free again); without
    ``runId`` the id is a new uuid4 hex. Starts the agent's orchestrator with the
    :class:`~durable_agents._contracts.OrchestrationInput` whose ``settings`` hold :data:`GLOBAL_RUN_SETTINGS`
    and the agent's registered settings that are set (:func:`~durable_agents._run_settings.settings_snapshot`).
    Answers 202 ``<started>`` + ``Location``. Two concurrent starts with the same new ``runId`` can both pass the
    check (the extension overwrites).
    """
    check_size(req)
    agent_name = req.route_params.get("agent") or ""
    entry = api.registry.get(agent_name) if AGENT_NAME_PATTERN.fullmatch(agent_name) else None
    if entry is None:
        raise Problem("agent-not-found",
                      f"There is no agent named {agent_name!r}; see GET {api.route_prefix}/agents.")
    body = validate(StartRunBody, read_object(req, required=True) or {})
    if body.run_id is not None and await client.get_status(body.run_id):
        raise Problem("run-id-in-use", f"The run id {body.run_id!r} is already in use.")
    run_input: OrchestrationInput = {"agent": entry.name, "input": body.input,
                                     "settings": settings_snapshot(entry.settings)}
    instance_id = await client.start_new(
        entry.orchestrator, instance_id=body.run_id or uuid.uuid4().hex, client_input=run_input
    )
    payload = {
        "id": instance_id,
        "agent": entry.name,
        "status": "pending",
        "links": run_links(api.route_prefix, instance_id),
        "management": client.create_http_management_payload(instance_id),
    }
    return _json_response(payload, 202, {"Location": run_url(api.route_prefix, instance_id)})


# ---------------------------------------------------------------------------------------------------------------
# GET runs, GET runs/{runId}


async def list_runs(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET runs`` with :class:`~durable_agents._http.bodies.ListRunsQuery` → 200 ``{"runs": [<run>]}``.

    Newest first (by ``createdAt``, then id), at most ``top``. 400 ``invalid-query`` for unknown parameters
    (other than the host's ``code``), a bad agent name, unknown statuses or a ``top`` that is not 1..100 in
    ASCII digits. Only instances with the agent-run input shape are listed. The listing covers what the extension
    returns for one status query (the Python client reads the first page only).
    """
    query = validate(ListRunsQuery, req.params)
    statuses = query.status or ()
    if statuses:
        runtime: list[OrchestrationRuntimeStatus] = []
        for wanted in statuses:
            runtime.extend(r for r in RUNTIME_FOR_STATUS[wanted] if r not in runtime)
        found = await client.get_status_by(runtime_status=runtime)
    else:
        found = await client.get_status_all()
    runs: list[tuple[datetime | None, str, dict[str, Any]]] = []
    for status in found:
        run_input = agent_run_input(status.input_) if status else None
        if run_input is None or (query.agent is not None and run_input["agent"] != query.agent):
            continue
        run = run_json(status, run_input, api.route_prefix)
        if statuses and run["status"] not in statuses:
            continue
        runs.append((status.created_time, run["id"] or "", run))
    runs.sort(key=lambda item: (item[0].timestamp() if item[0] else 0.0, item[1]), reverse=True)
    return _json_response({"runs": [run for _, _, run in runs[: query.top]]})


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
    """``GET runs/{runId}`` → 200 ``<run>``; 404 for unknown ids and for instances that are not agent runs.

    The pending approvals of the run's running sub-orchestrations are listed too, each with ``runId`` (the child's
    instance id), and make the run ``awaiting_approval``; they are decided through this run's approvals route.
    """
    status, run_input = await _load_run(client, _path_run_id(req))
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

    Checks, in order: 413 (over 1 MiB); 400 (bad body); 404 unknown run; 410 run finished (completed, failed or
    cancelled), except that repeating the decision the run recorded is 200 even then (a retry after a lost
    answer stays idempotent); for an approval already in the custom status ``approvals``: 200 ``<decision>``
    when the same decision is repeated, 409 when it differs (``approval-expired`` when it expired); 404 when
    the id is neither pending nor decided. Otherwise raises ``approval:<approvalId>`` with an
    :class:`~durable_agents._contracts.ApprovalEvent` and polls until the orchestration records a decision (at
    most ``api.approval_wait_seconds``): 202 ``<decision>`` when it recorded this one (or when the wait ran out:
    ``recorded: false``), 409 when it recorded another (a concurrent decision or expiry), 410 when the run
    finished without recording it. An approval of one of the run's sub-orchestrations (custom status ``children``)
    is decided on that child, with the same answers.
    """
    check_size(req)
    body = validate(DecisionBody, read_object(req, required=True) or {})
    run_id = _path_run_id(req)
    approval_id = req.route_params.get("approvalId") or ""
    wanted = "approved" if body.approved else "rejected"
    status, _ = await _load_run(client, run_id)
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
    if find_pending(custom, approval_id) is None:
        raise Problem("approval-not-found", f"Run {run_id!r} has no pending approval {approval_id!r}.")
    event: ApprovalEvent = {"approved": body.approved, "comment": body.comment}
    try:
        await client.raise_event(target, approval_event_name(approval_id), event)
    except Exception:
        after = await client.get_status(target)
        if not after:
            raise _run_not_found(run_id) from None
        if after.runtime_status in TERMINAL:
            raise Problem("run-finished", f"Run {run_id!r} finished before the decision arrived.") from None
        raise
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
            answer = _decision_json(api, run_id, approval_id, wanted, body.comment, None, False, latest)
            return _json_response(answer, 202)
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 2, api.approval_poll_seconds)


def _decision_json(
    api: HttpApi,
    run_id: str,
    approval_id: str,
    decision: str,
    comment: str | None,
    decided_at: str | None,
    recorded: bool,
    status: DurableOrchestrationStatus,
) -> dict[str, Any]:
    """The ``<decision>`` JSON; ``status`` is the run's status as last read."""
    pending = [] if status.runtime_status in TERMINAL else pending_approvals(read_custom_status(status))
    return {
        "runId": run_id,
        "approvalId": approval_id,
        "decision": decision,
        "comment": comment,
        "decidedAt": decided_at,
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
        body = _decision_json(api, run_id, approval_id, wanted, recorded.get("comment"), decided_at, True, status)
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

    413 / 400 (bad body) first, then 404 unknown run, 410 finished; otherwise terminates the instance with
    reason ``"cancelled by caller"`` (``"cancelled by caller: <reason>"`` when a non-blank reason is given) →
    202 ``<cancel>``. The run's status becomes ``cancelled`` once the termination is processed.
    """
    check_size(req)
    body = validate(CancelBody, read_object(req, required=False) or {})
    run_id = _path_run_id(req)
    status, run_input = await _load_run(client, run_id)
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
