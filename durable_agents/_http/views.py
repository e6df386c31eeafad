"""The run JSON of the HTTP API, mapped from a Durable orchestration status: internal, not part of the public API.

The orchestration input, custom status and output are read through the shapes of :mod:`durable_agents._contracts`
(docs/internals.md); nothing here defines a shape of its own except the API's answers, which the package
docstring of :mod:`durable_agents._http` lists.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Literal, cast

from azure.durable_functions import OrchestrationRuntimeStatus
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._contracts import (
    ApprovalDecision,
    CustomStatus,
    OrchestrationInput,
    OrchestrationOutput,
    PendingApproval,
    format_time,
)
from durable_agents._jsonsafe import parse_json_text

__all__ = [
    "runtime_statuses",
    "ACTIVE",
    "CONVERSATION_STATUSES",
    "ConversationStatus",
    "conversation_json",
    "conversation_links",
    "conversation_status",
    "conversation_url",
    "RUNTIME_FOR_CONVERSATION_STATUS",
    "RUNTIME_FOR_STATUS",
    "RUN_STATUSES",
    "TERMINAL",
    "RunStatus",
    "agent_run_input",
    "decided_approvals",
    "find_decided",
    "find_pending",
    "pending_approvals",
    "read_custom_status",
    "run_json",
    "run_links",
    "run_status",
    "run_url",
]

RunStatus = Literal["pending", "running", "awaiting_approval", "completed", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = ("pending", "running", "awaiting_approval", "completed", "failed", "cancelled")
"""The run ``status`` values (DESIGN.md), in lifecycle order."""

_R = OrchestrationRuntimeStatus
TERMINAL = frozenset({_R.Completed, _R.Failed, _R.Terminated, _R.Canceled})
"""Runtime statuses of a finished instance (its approvals can no longer change)."""

ACTIVE = frozenset({_R.Running, _R.ContinuedAsNew, _R.Suspended})
"""Runtime statuses that map to ``running`` or ``awaiting_approval``."""

RUNTIME_FOR_STATUS: dict[RunStatus, tuple[OrchestrationRuntimeStatus, ...]] = {
    "pending": (_R.Pending,),
    "running": (_R.Running, _R.ContinuedAsNew, _R.Suspended),
    "awaiting_approval": (_R.Running, _R.ContinuedAsNew, _R.Suspended),
    "completed": (_R.Completed,),
    "failed": (_R.Failed,),
    "cancelled": (_R.Terminated, _R.Canceled),
}
"""The runtime statuses to ask the Durable client for, per run status (the inverse of :func:`run_status`)."""

_FAILURE_PREFIX = re.compile(r"^Orchestrator function '[^']*' failed: ")


def run_status(runtime_status: OrchestrationRuntimeStatus | None, pending: list[Any]) -> RunStatus:
    """Map a Durable runtime status to the run ``status`` (docs/internals.md, "HTTP API").

    Pending → ``pending``; Running / ContinuedAsNew / Suspended → ``awaiting_approval`` when ``pending`` (the
    pending approvals) is non-empty, else ``running``; Completed → ``completed``; Failed → ``failed``;
    Terminated / Canceled → ``cancelled``. ``None`` (status not known yet) maps to ``pending``.
    """
    if runtime_status in ACTIVE:
        return "awaiting_approval" if pending else "running"
    if runtime_status == _R.Completed:
        return "completed"
    if runtime_status == _R.Failed:
        return "failed"
    if runtime_status in (_R.Terminated, _R.Canceled):
        return "cancelled"
    return "pending"


def run_url(route_prefix: str, run_id: str) -> str:
    """The API path of a run: ``<route_prefix>/runs/<run_id>`` (``/api/runs/abc``)."""
    return f"{route_prefix}/runs/{run_id}"


def run_links(route_prefix: str, run_id: str) -> dict[str, str]:
    """``{"self", "approvals", "cancel", "audit"}``: the run's paths (``approvals`` holds the ``{approvalId}``
    template)."""
    base = run_url(route_prefix, run_id)
    return {"self": base, "approvals": base + "/approvals/{approvalId}", "cancel": base + "/cancel",
            "audit": base + "/audit"}


def agent_run_input(raw_input: Any) -> OrchestrationInput | None:
    """The orchestration input (JSON value or JSON text) when it has the agent-run shape
    (:class:`~durable_agents._contracts.OrchestrationInput`: ``agent`` a string, ``input`` present, ``settings`` an
    object, no ``kind``), else ``None``: the instance is not an agent run (a conversation, say) and the runs routes do
    not show it."""
    value = parse_json_text(raw_input)
    if (
        isinstance(value, dict)
        and value.get("kind") is None  # a conversation's input has kind "conversation": not a run
        and isinstance(value.get("agent"), str)
        and "input" in value
        and isinstance(value.get("settings"), dict)
    ):
        return cast(OrchestrationInput, value)
    return None


def read_custom_status(status: DurableOrchestrationStatus) -> CustomStatus:
    """The instance's custom status (JSON value or JSON text) as a :class:`~durable_agents._contracts.CustomStatus`.

    Anything but an object gives ``{}``. Members can be missing (a run that has not finished its first episode):
    read them with ``.get``; the lists through :func:`pending_approvals` and :func:`decided_approvals`.
    """
    value = parse_json_text(status.custom_status)
    return cast(CustomStatus, value if isinstance(value, dict) else {})


def _dicts(value: Any) -> list[Any]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def pending_approvals(custom: CustomStatus) -> list[PendingApproval]:
    """The objects of ``custom["pendingApprovals"]`` (``[]`` when missing or not a list)."""
    return cast(list[PendingApproval], _dicts(custom.get("pendingApprovals")))


def decided_approvals(custom: CustomStatus) -> list[ApprovalDecision]:
    """The objects of ``custom["approvals"]`` (``[]`` when missing or not a list), most recent last."""
    return cast(list[ApprovalDecision], _dicts(custom.get("approvals")))


def find_pending(custom: CustomStatus, approval_id: str) -> PendingApproval | None:
    """The pending approval ``approval_id`` of ``custom`` (the last one with that id), or ``None``."""
    found = [item for item in pending_approvals(custom) if item.get("id") == approval_id]
    return found[-1] if found else None


def find_decided(custom: CustomStatus, approval_id: str) -> ApprovalDecision | None:
    """The recorded decision on ``approval_id`` in ``custom`` (the last one with that id), or ``None``."""
    found = [item for item in decided_approvals(custom) if item.get("id") == approval_id]
    return found[-1] if found else None


def _failure_text(output: Any) -> str | None:
    """The failure text of a Failed instance without the extension's ``Orchestrator function 'x' failed: ``."""
    if output is None:
        return None
    text = output if isinstance(output, str) else json.dumps(output)
    return _FAILURE_PREFIX.sub("", text, count=1).strip() or text


def _orchestration_output(raw_output: Any) -> tuple[Any, OrchestrationOutput | None]:
    """``(output, result)`` of a Completed instance: the ``finalOutput`` and the whole
    :class:`~durable_agents._contracts.OrchestrationOutput` when the output has that shape, else the value itself
    and ``None`` (an orchestrator that returned something else)."""
    parsed = parse_json_text(raw_output)
    if isinstance(parsed, dict) and "finalOutput" in parsed:
        result = cast(OrchestrationOutput, parsed)
        return result["finalOutput"], result
    return parsed, None


_RUNNER_STATUS_MEMBERS = frozenset(CustomStatus.__annotations__)


def workflow_progress(custom: CustomStatus) -> dict[str, Any]:
    """What the orchestrator published with ``context.set_custom_status`` (docs/internals.md "Custom status"): the
    custom status members that are not the runner's own (a non-dict value is the member ``custom``); ``{}`` for none.
    """
    return {key: value for key, value in custom.items() if key not in _RUNNER_STATUS_MEMBERS}


def run_json(status: DurableOrchestrationStatus, run_input: OrchestrationInput, route_prefix: str) -> dict[str, Any]:
    """The ``<run>`` JSON of one agent-run instance (shape: package docstring of :mod:`durable_agents._http`).

    ``createdAt`` / ``updatedAt`` are written by :func:`~durable_agents._contracts.format_time` (UTC, milliseconds,
    ``Z``) or ``null`` when the client did not report them; links start with ``route_prefix``.
    """
    runtime = status.runtime_status
    custom = read_custom_status(status)
    pending = [] if runtime in TERMINAL else pending_approvals(custom)
    output_value: Any = None
    error: str | None = None
    result: OrchestrationOutput | None = None
    if runtime == _R.Completed:
        output_value, result = _orchestration_output(status.output)
    elif runtime == _R.Failed:
        error = _failure_text(status.output)
    elif runtime in (_R.Terminated, _R.Canceled):
        error = None if status.output is None else str(status.output)
    last_agent, turns, demo = custom.get("currentAgent"), custom.get("turns"), custom.get("demo", False)
    usage = custom.get("usage") if isinstance(custom.get("usage"), dict) else None  # version 3: so far
    if result is not None:  # a completed run: its output has the final numbers
        last_agent, turns = result.get("lastAgent", last_agent), result.get("turns", turns)
        usage, demo = result.get("usage"), result.get("demo", demo)
    created, updated = status.created_time, status.last_updated_time
    carried = run_input.get("$durableAgents")
    started = carried.get("startedAt") if isinstance(carried, dict) else None
    return {
        "id": status.instance_id,
        "agent": run_input["agent"],
        "customer": run_input.get("customer"),
        "startedBy": run_input.get("startedBy"),
        "status": run_status(runtime, pending),
        "output": output_value,
        "error": error,
        "pendingApprovals": pending,
        "approvals": decided_approvals(custom),
        "lastAgent": last_agent,
        "turns": turns,
        "usage": usage,
        "demo": bool(demo),
        "progress": workflow_progress(custom),
        # a run that continued as new keeps its first generation's start (docs/internals.md "Bounded history")
        "createdAt": started if isinstance(started, str) else format_time(created) if created is not None else None,
        "updatedAt": format_time(updated) if updated is not None else None,
        "links": run_links(route_prefix, status.instance_id or ""),
    }


# ---------------------------------------------------------------------------------------------------------------
# Conversations (docs/internals.md "Conversations")

ConversationStatus = Literal["idle", "answering", "awaiting_approval", "closed", "failed"]
CONVERSATION_STATUSES: tuple[ConversationStatus, ...] = ("idle", "answering", "awaiting_approval", "closed", "failed")
"""The conversation ``status`` values."""

RUNTIME_FOR_CONVERSATION_STATUS: dict[ConversationStatus, tuple[OrchestrationRuntimeStatus, ...]] = {
    "idle": (_R.Pending, _R.Running, _R.ContinuedAsNew, _R.Suspended),
    "answering": (_R.Pending, _R.Running, _R.ContinuedAsNew, _R.Suspended),
    "awaiting_approval": (_R.Running, _R.ContinuedAsNew, _R.Suspended),
    "closed": (_R.Completed, _R.Terminated, _R.Canceled, _R.Running, _R.ContinuedAsNew),
    "failed": (_R.Failed,),
}
"""The runtime statuses to ask the Durable client for, per conversation status (the inverse of
:func:`conversation_status`)."""


def runtime_statuses(wanted: Any, table: Mapping[Any, tuple[OrchestrationRuntimeStatus, ...]]
                     ) -> list[OrchestrationRuntimeStatus]:
    """The runtime statuses to query for the API statuses ``wanted`` (``table``: :data:`RUNTIME_FOR_STATUS` or
    :data:`RUNTIME_FOR_CONVERSATION_STATUS`), each once, in first-wanted order; ``[]`` (every status) for none."""
    runtime: list[OrchestrationRuntimeStatus] = []
    for status in wanted or ():
        runtime.extend(r for r in table[status] if r not in runtime)
    return runtime


def conversation_status(runtime_status: OrchestrationRuntimeStatus | None, custom: CustomStatus, *,
                        closed: bool = False, unanswered: bool = False) -> ConversationStatus:
    """The conversation ``status``: ``failed`` when the orchestration failed; ``closed`` when it completed or was
    terminated, when ``closed`` (``closed.json`` exists) or when its custom status says so; ``awaiting_approval``
    while a turn waits for a person; ``answering`` while a turn runs or ``unanswered`` (a user message has no answer
    yet); else ``idle``."""
    if runtime_status == _R.Failed:
        return "failed"
    raw = cast(dict[str, Any], custom).get("conversation")
    state: dict[str, Any] = raw if isinstance(raw, dict) else {}
    if runtime_status in TERMINAL or closed or state.get("state") == "closed":
        return "closed"
    if pending_approvals(custom):
        return "awaiting_approval"
    if state.get("state") == "answering" or unanswered:
        return "answering"
    return "idle"


def conversation_url(route_prefix: str, conversation_id: str) -> str:
    """The API path of a conversation: ``<route_prefix>/conversations/<id>``."""
    return f"{route_prefix}/conversations/{conversation_id}"


def conversation_links(route_prefix: str, conversation_id: str) -> dict[str, str]:
    """``{"self", "messages", "close", "approvals"}``: the conversation's paths (``approvals`` is the runs route
    that decides its approvals, with the ``{approvalId}`` template)."""
    base = conversation_url(route_prefix, conversation_id)
    return {"self": base, "messages": base + "/messages", "close": base + "/close",
            "approvals": run_url(route_prefix, conversation_id) + "/approvals/{approvalId}"}


def conversation_json(status: DurableOrchestrationStatus, conversation: dict[str, Any], route_prefix: str, *,
                      info: dict[str, Any] | None = None, closed: dict[str, Any] | None = None,
                      unanswered: bool = False) -> dict[str, Any]:
    """The ``<conversation>`` JSON of one conversation instance without its messages: ``{"id", "agent", "status",
    "customer", "startedBy", "createdAt", "updatedAt", "closed", "pendingApprovals", "approvals", "answered",
    "turns", "usage", "generation", "lastActivityAt", "idleExpiresAt", "error", "links"}``.

    ``conversation`` is the orchestration input, ``info`` its ``conversation.json`` (gives ``createdAt``),
    ``closed`` its ``closed.json``; the counters come from the custom status member ``conversation`` (cumulative
    over continue-as-new), or from the output once completed.
    """
    runtime = status.runtime_status
    custom = read_custom_status(status)
    raw_state = cast(dict[str, Any], custom).get("conversation")
    state: dict[str, Any] = raw_state if isinstance(raw_state, dict) else {}
    output = parse_json_text(status.output) if runtime == _R.Completed else None
    result = output if isinstance(output, dict) else {}
    created = (info or {}).get("createdAt") or (format_time(status.created_time) if status.created_time else None)
    updated = status.last_updated_time
    return {
        "id": status.instance_id,
        "agent": conversation["agent"],
        "status": conversation_status(runtime, custom, closed=closed is not None, unanswered=unanswered),
        "customer": conversation.get("customer"),
        "startedBy": conversation.get("startedBy"),
        "createdAt": created,
        "updatedAt": format_time(updated) if updated is not None else None,
        "closed": closed,
        "pendingApprovals": [] if runtime in TERMINAL else pending_approvals(custom),
        "approvals": decided_approvals(custom),
        "answered": result.get("messages", state.get("answered", 0)),
        "turns": result.get("turns", state.get("turns", 0)),
        "usage": result.get("usage", state.get("usage")),
        "generation": state.get("generation", 0),
        "lastActivityAt": state.get("lastActivityAt"),
        "idleExpiresAt": None if runtime in TERMINAL or closed is not None else state.get("idleExpiresAt"),
        "error": _failure_text(status.output) if runtime == _R.Failed else None,
        "links": conversation_links(route_prefix, status.instance_id or ""),
    }
