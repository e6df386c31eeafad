"""The conversation routes of the HTTP API: internal, not part of the public API.

One ``async def <name>(api, req, client)`` per route, like :mod:`durable_agents._http.handlers` (whose
:func:`~durable_agents._http.handlers.respond` runs them). A conversation is one orchestration of
:data:`~durable_agents._contracts.CONVERSATION_ORCHESTRATOR` (instance id = conversation id) plus its message log on
the blob store (:class:`durable_agents._conversations.ConversationLog`): these handlers write the log FIRST and then
raise the event that wakes the orchestration (``message:<seq>`` after a user message, ``message:<last seq + 1>``
after ``closed.json``: :func:`durable_agents._conversations.close_event_name`), never the other way round, so
nothing the API accepted can be missed (docs/internals.md
"Conversations"). Access follows the runs' rules (:mod:`durable_agents._http.access`): the caller who started a
conversation, its customer, support staff and approvers see it; anyone else gets 404.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._contracts import CONVERSATION_ORCHESTRATOR, RUN_VERSION, format_time
from durable_agents._conversations import (
    CONVERSATION_KIND,
    ConversationLog,
    close_event_name,
    conversation_input,
    message_event_name,
)
from durable_agents._http.access import may_read, require_caller
from durable_agents._http.bodies import (
    RUN_ID_PATTERN,
    CloseConversationBody,
    ListConversationsQuery,
    ListMessagesQuery,
    MessageBody,
    StartConversationBody,
    check_json_content_type,
    check_size,
    read_object,
    validate,
)
from durable_agents._http.handlers import HttpApi, _json_response, acting_customer, route_entry
from durable_agents._http.listing import list_page
from durable_agents._http.views import (
    RUNTIME_FOR_CONVERSATION_STATUS,
    TERMINAL,
    conversation_json,
    conversation_links,
    conversation_url,
    runtime_statuses,
)
from durable_agents._identity import Caller
from durable_agents._problems import Problem
from durable_agents._run_settings import settings_snapshot

__all__ = [
    "CONVERSATION_MESSAGES_SHOWN",
    "close_conversation",
    "get_conversation",
    "list_conversations",
    "list_messages",
    "post_message",
    "start_conversation",
]


CONVERSATION_MESSAGES_SHOWN = 50
"""How many of the last messages ``GET conversations/{id}`` shows (the rest through ``GET .../messages``)."""


def _not_found(conversation_id: str) -> Problem:
    return Problem("conversation-not-found", f"There is no conversation with id {conversation_id!r}.")


def _closed(conversation_id: str) -> Problem:
    return Problem("conversation-closed",
                   f"Conversation {conversation_id!r} is closed; start a new one with POST "
                   "/api/agents/{agent}/conversations.")


def _path_id(req: func.HttpRequest) -> str:
    """The ``{conversationId}`` route parameter; 404 when it cannot be a conversation id."""
    conversation_id = req.route_params.get("conversationId") or ""
    if not RUN_ID_PATTERN.fullmatch(conversation_id):
        raise _not_found(conversation_id)
    return conversation_id


async def _load(api: HttpApi, client: DurableOrchestrationClient, conversation_id: str,
                caller: Caller) -> tuple[DurableOrchestrationStatus, dict[str, Any], ConversationLog]:
    """Status, orchestration input and log of a conversation; 404 when unknown, not a conversation, or not visible
    to ``caller`` (:func:`~durable_agents._http.access.may_read`)."""
    status = await client.get_status(conversation_id, show_input=True)
    conversation = conversation_input(status.input_) if status else None
    if conversation is None or not may_read(caller, conversation):  # type: ignore[arg-type]
        raise _not_found(conversation_id)
    return status, conversation, ConversationLog(conversation_id, app_dir=api.app_dir)


def _unanswered(ids: list[str]) -> bool:
    """Whether the last user message among ``ids`` (message ids, ascending) has no answer yet."""
    users = [mid for mid in ids if mid.endswith("-0")]
    return bool(users) and (users[-1][:8] + "-1") not in ids


# ---------------------------------------------------------------------------------------------------------------
# POST agents/{agent}/conversations


async def start_conversation(api: HttpApi, req: func.HttpRequest,
                             client: DurableOrchestrationClient) -> func.HttpResponse:
    """``POST agents/{agent}/conversations`` with an optional
    :class:`~durable_agents._http.bodies.StartConversationBody`.

    Checks, in order: 401 without an identity; 413; 415 (a body that is not ``application/json``); 404 for an
    unregistered agent; 400 for a bad body (``invalid-conversation-id``); 400 ``not-conversational`` for a
    workflow; 403 ``customer-not-allowed`` as for runs; 409 ``conversation-id-in-use`` when the id names an
    instance or a conversation log that exists (also for all but one of concurrent creates of one id). Then writes
    ``conversation.json`` (create-if-absent), the first message when ``input`` is given, and starts the
    conversation orchestrator with ``{"kind": "conversation", "agent", "settings", "version", "customer",
    "startedBy"}`` → 201 ``{"id", "agent", "status", "customer", "startedBy", "createdAt", "firstMessage"?: {"id",
    "seq"}, "links"}`` + ``Location``.
    """
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=False)
    entry = route_entry(api, req)
    body = validate(StartConversationBody, read_object(req, required=False) or {})
    if not entry.conversational:
        raise Problem("not-conversational",
                      f"{entry.name!r} is a {entry.kind}, not a conversational agent; start runs of it with POST "
                      f"{api.route_prefix}/agents/{entry.name}/runs.")
    customer = acting_customer(caller, body.customer, "a conversation")
    conversation_id = body.conversation_id or uuid.uuid4().hex
    in_use = Problem("conversation-id-in-use", f"The conversation id {conversation_id!r} is already in use.")
    if body.conversation_id is not None and await client.get_status(conversation_id):
        raise in_use
    log = ConversationLog(conversation_id, app_dir=api.app_dir)
    created = format_time(datetime.now(UTC))
    record = {"id": conversation_id, "agent": entry.name, "customer": customer, "startedBy": caller.principal(),
              "createdAt": created}
    if not log.create(record):
        raise in_use
    first = log.append_user(body.input, caller.principal(), created) if body.input is not None else None
    orchestration_input = {"kind": CONVERSATION_KIND, "agent": entry.name,
                           "settings": settings_snapshot(entry.settings), "version": RUN_VERSION,
                           "customer": customer, "startedBy": caller.principal()}
    try:
        await client.start_new(CONVERSATION_ORCHESTRATOR, instance_id=conversation_id,
                               client_input=orchestration_input)
    except Exception:
        if await client.get_status(conversation_id):
            raise in_use from None
        raise
    payload: dict[str, Any] = {
        "id": conversation_id, "agent": entry.name, "status": "answering" if first else "idle",
        "customer": customer, "startedBy": caller.principal(), "createdAt": created,
        "links": conversation_links(api.route_prefix, conversation_id),
    }
    if first is not None:
        payload["firstMessage"] = {"id": first["id"], "seq": first["seq"]}
    return _json_response(payload, 201, {"Location": conversation_url(api.route_prefix, conversation_id)})


# ---------------------------------------------------------------------------------------------------------------
# POST conversations/{id}/messages


async def post_message(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``POST conversations/{conversationId}/messages`` with :class:`~durable_agents._http.bodies.MessageBody`.

    401, 413, 415, 400 (bad body) first; 404 unknown (or not visible); 410 ``conversation-closed`` when
    ``closed.json`` exists or the orchestration has finished (completed, failed, terminated). Otherwise appends the
    message to the log (the next ``seq``), checks ``closed.json`` again (a close that raced ahead: the message is
    deleted, 410), and raises ``message:<seq>`` → 202 ``{"conversationId", "messageId", "seq", "status":
    "accepted", "links"}``. Messages sent while a turn runs are answered in order after it.
    """
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=True)
    body = validate(MessageBody, read_object(req, required=True) or {})
    conversation_id = _path_id(req)
    status, _conversation, log = await _load(api, client, conversation_id, caller)
    if status.runtime_status in TERMINAL or log.closed() is not None:
        raise _closed(conversation_id)
    message = log.append_user(body.input, caller.principal())
    if log.closed() is not None:
        log.delete_message(message["id"])
        raise _closed(conversation_id)
    try:
        await client.raise_event(conversation_id, message_event_name(message["seq"]), {"seq": message["seq"]})
    except Exception:
        after = await client.get_status(conversation_id)
        if after is None or after.runtime_status in TERMINAL:
            log.delete_message(message["id"])
            raise _closed(conversation_id) from None
        raise
    payload = {
        "conversationId": conversation_id, "messageId": message["id"], "seq": message["seq"], "status": "accepted",
        "links": {**conversation_links(api.route_prefix, conversation_id),
                  "after": f"{conversation_url(api.route_prefix, conversation_id)}/messages?after={message['id']}"},
    }
    return _json_response(payload, 202)


# ---------------------------------------------------------------------------------------------------------------
# GET conversations/{id}, GET conversations/{id}/messages


async def get_conversation(api: HttpApi, req: func.HttpRequest,
                           client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET conversations/{conversationId}`` → 200 ``<conversation>``
    (:func:`~durable_agents._http.views.conversation_json`) with ``messages`` (the last
    :data:`CONVERSATION_MESSAGES_SHOWN`, oldest first) and ``nextCursor`` (the last message's id, for ``GET
    .../messages?after=``; ``null`` without messages); 401; 404."""
    caller = require_caller(req)
    conversation_id = _path_id(req)
    status, conversation, log = await _load(api, client, conversation_id, caller)
    ids = log.message_ids()
    shown = ids[-CONVERSATION_MESSAGES_SHOWN:]
    body = conversation_json(status, conversation, api.route_prefix, info=log.info(), closed=log.closed(),
                             unanswered=_unanswered(ids))
    body["messages"] = log.read(shown)
    body["earlierMessages"] = len(ids) - len(shown)
    body["nextCursor"] = shown[-1] if shown else None
    return _json_response(body)


async def list_messages(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET conversations/{conversationId}/messages?after=<message id>&top=<1..200>`` → 200 ``{"messages",
    "nextCursor", "hasMore"}``: the messages with ids greater than ``after`` (all from the first without it),
    oldest first, at most ``top`` (default 50). ``nextCursor`` is the id to pass as ``after`` next: the last listed
    message's, or ``after`` itself when none was listed (poll with it for new messages). 400 ``invalid-query``;
    401; 404."""
    caller = require_caller(req)
    query = validate(ListMessagesQuery, req.params)
    conversation_id = _path_id(req)
    _status, _conversation, log = await _load(api, client, conversation_id, caller)
    ids = [mid for mid in log.message_ids() if query.after is None or mid > query.after]
    page = ids[:query.top]
    return _json_response({"messages": log.read(page), "nextCursor": page[-1] if page else query.after,
                           "hasMore": len(ids) > len(page)})


# ---------------------------------------------------------------------------------------------------------------
# POST conversations/{id}/close


async def close_conversation(api: HttpApi, req: func.HttpRequest,
                             client: DurableOrchestrationClient) -> func.HttpResponse:
    """``POST conversations/{conversationId}/close`` (no body, or ``{}``) → 202 ``{"id", "status": "closed",
    "closedAt", "by", "reason"}`` after writing ``closed.json`` and raising the close event (the orchestration answers
    what was accepted before and ends); repeated, or after the idle timer closed it: 200 with the first record.
    401, 413, 415, 400 first; 404 unknown (or not visible)."""
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=False)
    validate(CloseConversationBody, read_object(req, required=False) or {})
    conversation_id = _path_id(req)
    status, _conversation, log = await _load(api, client, conversation_id, caller)
    record, created = log.close(caller.principal(), "closed")
    if created and status.runtime_status not in TERMINAL:
        try:
            await client.raise_event(conversation_id, close_event_name(log), {"reason": "closed"})
        except Exception:
            after = await client.get_status(conversation_id)
            if after is not None and after.runtime_status not in TERMINAL:
                raise
    return _json_response({"id": conversation_id, "status": "closed", **record}, 202 if created else 200)


# ---------------------------------------------------------------------------------------------------------------
# GET conversations


async def list_conversations(api: HttpApi, req: func.HttpRequest,
                             client: DurableOrchestrationClient) -> func.HttpResponse:
    """``GET conversations?agent=&status=&top=&continuationToken=`` → 200 ``{"conversations": [<conversation>],
    "continuationToken"}``, newest first, only those the caller may see, paged like ``GET runs``
    (:mod:`durable_agents._http.listing`). The listed status comes from the orchestration alone (a conversation
    whose ``closed.json`` was just written may still show its last state). 400 ``invalid-query`` /
    ``invalid-continuation-token``; 401."""
    caller = require_caller(req)
    query = validate(ListConversationsQuery, req.params)
    statuses = query.status or ()
    runtime = runtime_statuses(statuses, RUNTIME_FOR_CONVERSATION_STATUS)

    def view(status: DurableOrchestrationStatus) -> dict[str, Any] | None:
        if status.name not in (None, "", CONVERSATION_ORCHESTRATOR):
            return None
        conversation = conversation_input(status.input_)
        if conversation is None or (query.agent is not None and conversation["agent"] != query.agent):
            return None
        if not may_read(caller, conversation):  # type: ignore[arg-type]
            return None
        row = conversation_json(status, conversation, api.route_prefix)
        return None if statuses and row["status"] not in statuses else row

    rows, token = await list_page(client, runtime, view, query.top, query.continuation_token)
    return _json_response({"conversations": rows, "continuationToken": token})
