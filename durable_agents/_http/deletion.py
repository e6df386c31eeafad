"""Deleting a finished run or conversation through the HTTP API (purge): internal, not part of the public API.

``DELETE runs/{runId}`` and ``DELETE conversations/{conversationId}`` remove what the product keeps of one finished
instance: its payload blobs (everything under ``durable_agents._blobs.run_prefix(<instance id>)``: stored model
inputs, large tool results, a conversation's message log) and its orchestration history, and the same for the
sub-orchestrations it started (the custom status member ``children``, followed into their own ``children``). The
approval audit is kept: it is the audit trail (docs/internals.md "Approval audit"; ``GET runs/{id}/audit`` still
answers it to support staff and approvers after the purge).

Order (docs/internals.md "Deleting a run"): every blob first, then the children's histories, the instance's own
history last. A failure at any step leaves the instance itself in place, so a retried DELETE finds it again, with its
``children``, and finishes the work (blobs already deleted count 0, a child already purged is skipped); once the
instance's history is gone a DELETE answers 404. Only finished instances are deleted (409 ``run-active``
otherwise), so nothing writes new blobs while they are deleted.

In Azure the Durable Task Scheduler also purges by its retention policy and a storage lifecycle rule
(infra/app/storage.bicep) deletes blobs after the same period; this route is the explicit, immediate delete.
"""

from __future__ import annotations

from typing import Any

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._blobs import delete_run_blobs, get_blob_store
from durable_agents._conversations import conversation_input
from durable_agents._http.access import may_read, require_caller
from durable_agents._http.bodies import (
    RUN_ID_PATTERN,
    _StrictModel,
    check_json_content_type,
    check_size,
    read_object,
    validate,
)
from durable_agents._http.handlers import PATH_RUN_ID_PATTERN, HttpApi, _json_response
from durable_agents._http.views import TERMINAL, agent_run_input, read_custom_status
from durable_agents._identity import Caller, setting_list
from durable_agents._problems import Problem

__all__ = ["MAX_DELETED_INSTANCES", "MAX_SUB_ORCHESTRATION_DEPTH", "DeleteBody", "delete_conversation",
           "delete_run"]


MAX_SUB_ORCHESTRATION_DEPTH = 4
"""How deep ``children`` are followed: a run's children, theirs, ... (a path run id has at most 5 parts,
``durable_agents._http.handlers.PATH_RUN_ID_PATTERN``)."""

MAX_DELETED_INSTANCES = 500
"""At most this many instances (the run and its sub-orchestrations) are deleted by one request."""


class DeleteBody(_StrictModel):
    """Body of ``DELETE runs/{runId}`` and ``DELETE conversations/{conversationId}``: none, or ``{}`` (no members
    are defined; any member is 400 ``invalid-body``)."""


def _not_found(kind: str, instance_id: str) -> Problem:
    if kind == "conversation":
        return Problem("conversation-not-found", f"There is no conversation with id {instance_id!r}.")
    return Problem("run-not-found", f"There is no run with id {instance_id!r}.")


def _check_request(req: func.HttpRequest) -> Caller:
    """401 without an identity; 413, 415 and 400 for a body other than none or ``{}``."""
    caller = require_caller(req)
    check_size(req)
    check_json_content_type(req, body_required=False)
    validate(DeleteBody, read_object(req, required=False) or {})
    return caller


def _check_may_delete(caller: Caller, kind: str) -> None:
    """403 ``not-allowed`` unless the caller is support staff (``SUPPORT_ROLES`` / ``SUPPORT_GROUPS``)."""
    if not caller.is_support:
        roles = ", ".join(sorted(setting_list("SUPPORT_ROLES", "Support"))) or "none configured"
        raise Problem("not-allowed", f"Only support staff (roles {roles}) may delete a {kind}.")


async def _sub_orchestrations(
    client: DurableOrchestrationClient, status: DurableOrchestrationStatus
) -> list[tuple[str, DurableOrchestrationStatus | None]]:
    """Every sub-orchestration below ``status`` (custom status ``children``, breadth first, at most
    :data:`MAX_SUB_ORCHESTRATION_DEPTH` levels and :data:`MAX_DELETED_INSTANCES` - 1 ids), each with its status or
    ``None`` when it no longer exists (already purged: its blobs are still deleted)."""
    found: list[tuple[str, DurableOrchestrationStatus | None]] = []
    seen = {status.instance_id}
    level = [status]
    for _ in range(MAX_SUB_ORCHESTRATION_DEPTH):
        next_level = []
        for parent in level:
            for child_id in read_custom_status(parent).get("children") or []:
                if not isinstance(child_id, str) or child_id in seen or len(found) >= MAX_DELETED_INSTANCES - 1:
                    continue
                seen.add(child_id)
                read = await client.get_status(child_id)
                child = read if read else None
                found.append((child_id, child))
                if child is not None:
                    next_level.append(child)
        if not next_level:
            break
        level = next_level
    return found


async def _delete(
    api: HttpApi, client: DurableOrchestrationClient, kind: str, instance_id: str, status: DurableOrchestrationStatus
) -> func.HttpResponse:
    """The deletion itself, after access was checked: 409 when the instance or a sub-orchestration is not finished;
    then blobs, children's histories, the instance's history (module docstring) → 200 ``{"id", "deleted": true,
    "blobsDeleted"}``; 404 when another request purged the instance meanwhile."""
    if status.runtime_status not in TERMINAL:
        how = "close it" if kind == "conversation" else "cancel it"
        raise Problem("run-active", f"The {kind} {instance_id!r} has not finished; {how} first, then delete it.",
                      {"runtimeStatus": getattr(status.runtime_status, "value", None)})
    children = await _sub_orchestrations(client, status)
    active = [child_id for child_id, child in children if child is not None and child.runtime_status not in TERMINAL]
    if active:
        shown = ", ".join(active[:5]) + (", ..." if len(active) > 5 else "")
        raise Problem("run-active",
                      f"The {kind} {instance_id!r} has sub-orchestrations that have not finished ({shown}); wait for "
                      "them or terminate them, then delete it.", {"activeSubOrchestrations": active})
    store = get_blob_store(api.app_dir)
    blobs = delete_run_blobs(store, instance_id)
    for child_id, _child in children:
        blobs += delete_run_blobs(store, child_id)
    for child_id, child in reversed(children):  # the deepest first; the instance itself last (module docstring)
        if child is not None:
            await client.purge_instance_history(child_id)
    result = await client.purge_instance_history(instance_id)
    if not getattr(result, "instances_deleted", 0):
        raise _not_found(kind, instance_id)  # a concurrent DELETE purged it first
    return _json_response({"id": instance_id, "deleted": True, "blobsDeleted": blobs})


async def delete_run(api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
    """``DELETE runs/{runId}`` (no body, or ``{}``) → 200 ``{"id", "deleted": true, "blobsDeleted": int}``.

    Checks, in order: 401 without an identity; 413, 415, 400 (a body other than none or ``{}``); 404 for an id that
    cannot be a run id, an unknown or already purged run, an instance that is not an agent run (a conversation: use
    ``DELETE conversations/{id}``) and a run the caller may not see (:func:`~durable_agents._http.access.may_read`);
    403 ``not-allowed`` unless the caller is support staff (``SUPPORT_ROLES`` / ``SUPPORT_GROUPS``); 409
    ``run-active`` while the run is pending, running or awaiting approval (cancel it first), or while one of its
    sub-orchestrations is (``activeSubOrchestrations``: their ids). Then deletes the blobs of the run and of its
    sub-orchestrations (``blobsDeleted``: how many), purges the sub-orchestrations' histories and the run's
    (``client.purge_instance_history``). The approval audit is kept. A second DELETE is 404.
    """
    caller = _check_request(req)
    run_id = req.route_params.get("runId") or ""
    if not RUN_ID_PATTERN.fullmatch(run_id) and not PATH_RUN_ID_PATTERN.fullmatch(run_id):
        raise _not_found("run", run_id)
    status = await client.get_status(run_id, show_input=True)
    run_input = agent_run_input(status.input_) if status else None
    if run_input is None or not may_read(caller, run_input):
        raise _not_found("run", run_id)
    _check_may_delete(caller, "run")
    return await _delete(api, client, "run", run_id, status)


async def delete_conversation(
    api: HttpApi, req: func.HttpRequest, client: DurableOrchestrationClient
) -> func.HttpResponse:
    """``DELETE conversations/{conversationId}`` (no body, or ``{}``) → 200 ``{"id", "deleted": true,
    "blobsDeleted": int}``.

    The checks of :func:`delete_run`, for conversations: 404 ``conversation-not-found`` (also for an agent run's id
    and for a conversation the caller may not see), 403 ``not-allowed`` unless support staff, 409 ``run-active``
    until the conversation's orchestration has ended (close it with ``POST conversations/{id}/close`` and wait for
    status ``closed``). Deletes the whole message log (``conversation.json``, ``messages/``, ``closed.json``) and
    every other blob of the conversation, then purges its history; the audit of approvals decided in it is kept.
    """
    caller = _check_request(req)
    conversation_id = req.route_params.get("conversationId") or ""
    if not RUN_ID_PATTERN.fullmatch(conversation_id):
        raise _not_found("conversation", conversation_id)
    status = await client.get_status(conversation_id, show_input=True)
    conversation: Any = conversation_input(status.input_) if status else None
    if conversation is None or not may_read(caller, conversation):
        raise _not_found("conversation", conversation_id)
    _check_may_delete(caller, "conversation")
    return await _delete(api, client, "conversation", conversation_id, status)
