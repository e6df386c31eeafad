"""The timeline and live-progress routes of the HTTP API: internal, not part of the public API.

* ``GET runs/{runId}/timeline`` / ``GET conversations/{conversationId}/timeline`` → 200 ``{"entries": [entry],
  "generation": n}`` (:mod:`durable_agents._timeline`: the archived generations, then the current one from the
  Durable status with history); 401; 404 as ``GET runs/{id}`` / ``GET conversations/{id}`` (unknown, the other
  kind, or not visible to the caller: :func:`~durable_agents._http.access.may_read`).
* ``GET runs/{runId}/events`` / ``GET conversations/{conversationId}/events`` → 200 ``text/event-stream``: one
  event per entry after ``Last-Event-ID`` (header, or query ``lastEventId``): ``id: <entry id>``, ``event: <kind>``,
  ``data: <entry JSON>``; first a ``status`` event without ``id`` (``{"status", "runtimeStatus", "generation"}``);
  then ``retry: 1000``. The body is finite (Azure Functions Python streams HTTP bodies only through the FastAPI
  extension): the handler waits up to ``wait`` seconds (query, 0-25, default 20) polling every 0.5 s for new
  entries and answers when there are some, when the run ends or when the wait runs out (with a ``: heartbeat``
  comment); ``EventSource`` reconnects after ``retry`` with ``Last-Event-ID``. Once the run has ended and the caller
  has every entry, 204 (``EventSource`` stops reconnecting on 204).

Entry ids are ``g<generation>-<n>`` and come from the history, so "after" compares ``(generation, n)``: a host
restart loses or repeats nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._blobs import get_blob_store
from durable_agents._conversations import conversation_input
from durable_agents._http.access import may_read, require_caller
from durable_agents._http.bodies import RUN_ID_PATTERN
from durable_agents._http.handlers import PATH_RUN_ID_PATTERN, HttpApi, _json_response
from durable_agents._http.views import TERMINAL, agent_run_input, pending_approvals, read_custom_status, run_status
from durable_agents._jsonsafe import dumps, parse_json_text
from durable_agents._problems import Problem
from durable_agents._runner.bridge import Carried
from durable_agents._timeline import entries_from_status_history, read_archived

__all__ = ["MAX_WAIT_SECONDS", "POLL_SECONDS", "conversation_events", "conversation_timeline", "run_events",
           "run_timeline", "timeline_of"]

MAX_WAIT_SECONDS = 25.0
"""Longest time one ``events`` request waits for new entries (seconds; under the hosts' HTTP timeouts)."""

POLL_SECONDS = 0.5
"""Interval between two reads of the timeline while an ``events`` request waits (seconds)."""

RETRY_MS = 1000
"""The ``retry:`` of every event-stream answer (milliseconds before ``EventSource`` reconnects)."""

_ID = re.compile(r"g(\d{1,9})-(\d{1,9})")


def _path_id(req: func.HttpRequest, conversation: bool) -> str:
    value = req.route_params.get("conversationId" if conversation else "runId") or ""
    if not RUN_ID_PATTERN.fullmatch(value) and (conversation or not PATH_RUN_ID_PATTERN.fullmatch(value)):
        raise _not_found(value, conversation)
    return value


def _not_found(instance_id: str, conversation: bool) -> Problem:
    if conversation:
        return Problem("conversation-not-found", f"There is no conversation with id {instance_id!r}.")
    return Problem("run-not-found", f"There is no run with id {instance_id!r}.")


async def timeline_of(api: HttpApi, client: DurableOrchestrationClient, instance_id: str, caller: Any,
                      conversation: bool) -> tuple[DurableOrchestrationStatus, dict[str, Any]]:
    """The status and ``{"entries", "generation"}`` of a run (or, with ``conversation``, a conversation); raises
    the 404 problem when it is unknown, of the other kind, or not visible to ``caller``."""
    status = await client.get_status(instance_id, show_history=True, show_history_output=True, show_input=True)
    if not status:
        raise _not_found(instance_id, conversation)
    shaped = conversation_input(status.input_) if conversation else agent_run_input(status.input_)
    if shaped is None or not may_read(caller, shaped):  # type: ignore[arg-type]
        raise _not_found(instance_id, conversation)
    value = parse_json_text(status.input_, 2)
    generation = Carried.from_input(value).generation if isinstance(value, dict) else 0
    carried = Carried.from_input(value).archive if isinstance(value, dict) else None
    archived = read_archived(get_blob_store(api.app_dir), instance_id, generation, carried) if generation else []
    history = getattr(status, "historyEvents", None) or status.history or []
    current = entries_from_status_history(history, generation)
    return status, {"entries": archived + current, "generation": generation}


async def _timeline(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient,
                    conversation: bool) -> func.HttpResponse:
    caller = require_caller(req)
    _, body = await timeline_of(api, client, _path_id(req, conversation), caller, conversation)
    return _json_response(body)


async def run_timeline(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET runs/{runId}/timeline`` → 200 ``{"entries", "generation"}``; 401; 404 (module docstring)."""
    return await _timeline(api, req, client, False)


async def conversation_timeline(api: HttpApi, req: func.HttpRequest,
                                client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET conversations/{conversationId}/timeline`` → 200 ``{"entries", "generation"}``; 401; 404."""
    return await _timeline(api, req, client, True)


def _position(entry_id: Any) -> tuple[int, int] | None:
    match = _ID.fullmatch(entry_id) if isinstance(entry_id, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def _status_event(status: DurableOrchestrationStatus, generation: int, conversation: bool) -> dict[str, Any]:
    runtime = status.runtime_status
    custom = read_custom_status(status)
    pending = pending_approvals(custom)
    body: dict[str, Any] = {"runtimeStatus": runtime.value if runtime is not None else None,
                            "generation": generation, "pendingApprovals": pending}
    if conversation:
        raw_state: Any = custom.get("conversation")
        state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
        body["status"] = "closed" if runtime in TERMINAL else (
            "awaiting_approval" if pending else state.get("state") or "idle")
    else:
        body["status"] = run_status(runtime, pending)
    return body


def _sse(entries: list[dict[str, Any]], status: dict[str, Any], heartbeat: bool) -> str:
    lines = [f"retry: {RETRY_MS}", "event: status", f"data: {dumps(status)}", ""]
    for entry in entries:
        lines += [f"id: {entry['id']}", f"event: {entry['kind']}", f"data: {dumps(entry)}", ""]
    if heartbeat:
        lines += [": heartbeat", ""]
    return "\n".join(lines) + "\n"


async def _events(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient,
                  conversation: bool) -> func.HttpResponse:
    caller = require_caller(req)
    instance_id = _path_id(req, conversation)
    last = req.headers.get("Last-Event-ID") or req.params.get("lastEventId")
    after = _position(last) if last else None
    if last and after is None:
        raise Problem("invalid-query", f"Last-Event-ID {last[:40]!r} is not an entry id (g<generation>-<n>).")
    try:
        wait = min(MAX_WAIT_SECONDS, max(0.0, float(req.params.get("wait", "20"))))
    except ValueError:
        raise Problem("invalid-query", "The query parameter wait must be a number of seconds (0-25).") from None
    deadline = time.monotonic() + wait
    while True:
        status, body = await timeline_of(api, client, instance_id, caller, conversation)
        fresh = [e for e in body["entries"] if after is None or (_position(e.get("id")) or (-1, -1)) > after]
        ended = status.runtime_status in TERMINAL
        if fresh or ended or time.monotonic() >= deadline:
            break
        await asyncio.sleep(POLL_SECONDS)
    if ended and not fresh and after is not None:
        return func.HttpResponse(status_code=204)
    text = _sse(fresh, _status_event(status, body["generation"], conversation), heartbeat=not fresh)
    return func.HttpResponse(body=text.encode("utf-8"), status_code=200, mimetype="text/event-stream",
                             charset="utf-8", headers={"Cache-Control": "no-cache",
                                                       "Content-Type": "text/event-stream; charset=utf-8"})


async def run_events(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET runs/{runId}/events`` → 200 ``text/event-stream`` (module docstring), 204 when there is nothing more;
    400 for a bad ``Last-Event-ID`` or ``wait``; 401; 404."""
    return await _events(api, req, client, False)


async def conversation_events(api: HttpApi, req: func.HttpRequest,
                              client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET conversations/{conversationId}/events``: as :func:`run_events` for a conversation."""
    return await _events(api, req, client, True)
