"""A run's timeline: what happened, in order, across continue-as-new generations (internal; docs/internals.md
"Timeline and events").

An entry is ``{"id": "g<generation>-<n>", "generation", "at", "kind", ...details}`` with ``kind`` one of
:data:`ENTRY_KINDS`. Entries are a pure function of one execution's Durable history, derived only from events whose
content never changes once written (completions, timers, raised events, the execution's start and end), in history
order; work that is still pending (a scheduled activity, an approval not yet decided) has no entry yet (the run's
status shows it). So the list of one generation only grows, ``n`` of an entry never changes, and the same entries
come out of the two places a history can be read:

* the current generation: the Durable client's status with history (:func:`entries_from_status_history`:
  ``historyEvents`` as protocol §5.4 shapes them, ``showHistoryOutput`` and ``showInput`` on);
* an ended generation (version >= 3 runs): the orchestrator's own ``context.histories`` at the continue-as-new
  point (:func:`entries_from_context_history`), which ``episode.drive`` hands to the activity
  :data:`ARCHIVE_ACTIVITY`; it writes them to the payload blob store under
  ``run_prefix(id) + "timeline/<generation:06d>.json"`` (:func:`archive_name`).

Tool arguments are never in a history (``TaskScheduled.Input`` is null: ``storeInputsInOrchestrationHistory`` is
off), so a tool call's ``callId`` and ``arguments`` come from the model turn that asked for it, matched by tool
name in the model's order. Strings are shortened to :data:`MAX_VALUE_CHARS` characters (payload markers
``[[durable_agents...]]`` / ``blob:sha256:`` are short and stay as they are).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ._jsonsafe import parse_json_text

__all__ = [
    "ARCHIVE_ACTIVITY",
    "ENTRY_KINDS",
    "MAX_ARCHIVE_CHARS",
    "MAX_VALUE_CHARS",
    "archive_generation",
    "archive_input",
    "archive_name",
    "entries_from_context_history",
    "entries_from_status_history",
    "read_archived",
    "register_check_activity",
    "register_timeline_activity",
    "shorten",
]

ARCHIVE_ACTIVITY = "durable_agents_archive_generation"
"""Activity ``{"run": <instance id>, "generation": n, "entries": [entry]}`` → number of entries written."""

ENTRY_KINDS = ("status", "model_turn", "tool_call", "handoff", "approval_requested", "approval_decided", "timer",
               "sub_orchestration", "message", "output", "error")
"""Every ``kind`` an entry may have."""

MAX_VALUE_CHARS = 2000
"""Longest string of an entry (characters); longer ones end in ``"…"``."""

MAX_ARCHIVE_CHARS = 256_000
"""Budget of one archived generation's JSON (characters): far under the scheduler's 1 MiB activity input."""

_INTERNAL_PREFIX = "durable_agents_"
_MODEL_ACTIVITY = "invoke_model"
_MCP_CALL = "durable_agents_mcp_call_tool"
_INBOX = "durable_agents_conversation_inbox"
_REPLY = "durable_agents_conversation_reply"

# EventType numbers of the raw history (protocol §2.3) → the names the status API uses (§5.4).
_EVENT_NAMES = {0: "ExecutionStarted", 1: "ExecutionCompleted", 3: "ExecutionTerminated", 4: "TaskScheduled",
                5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
                8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
                11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent",
                15: "EventRaised", 16: "ContinueAsNew", 19: "ExecutionSuspended", 20: "ExecutionResumed"}
_STATUS_NAMES = {0: "Running", 1: "Completed", 2: "ContinuedAsNew", 3: "Failed", 4: "Canceled", 5: "Terminated",
                 6: "Pending", 7: "Suspended"}


def shorten(value: Any, limit: int = MAX_VALUE_CHARS) -> Any:
    """``value`` (JSON) with every string over ``limit`` characters cut to ``limit`` (ending in ``"…"``)."""
    if isinstance(value, str):
        return value[: limit - 1] + "…" if len(value) > limit else value
    if isinstance(value, dict):
        return {str(k): shorten(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shorten(v, limit) for v in value]
    return value


def _time(value: Any) -> str | None:
    """A history time (ISO text with up to 7 fraction digits, or a datetime) as the product's format."""
    from ._contracts import format_time

    if isinstance(value, dt.datetime):
        moment = value
    elif isinstance(value, str) and value:
        text = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            return value
    else:
        return None
    return format_time(moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC))


def _failure(reason: Any) -> str:
    """The useful part of a failure reason (``"ValueError: boom"``), shortened."""
    text = str(reason or "").split(" \n ", 1)[0]
    match = re.match(r"^(?:Activity|Orchestrator) function '[^']*' failed:\s*(.*)$", text, re.S)
    return shorten((match.group(1) if match else text).strip())


# -- normalized events ------------------------------------------------------------------------------------------


def _normal(type_: str, at: Any, **fields: Any) -> dict[str, Any]:
    return {"type": type_, "at": _time(at), **fields}


def _from_status_event(event: dict[str, Any]) -> dict[str, Any] | None:
    type_ = event.get("EventType")
    if isinstance(type_, int):
        type_ = _EVENT_NAMES.get(type_)
    if not isinstance(type_, str):
        return None
    status = event.get("OrchestrationStatus")
    return _normal(type_, event.get("Timestamp"), name=event.get("FunctionName") or event.get("Name"),
                   result=parse_json_text(event.get("Result")), reason=event.get("Reason"), fire_at=event.get("FireAt"),
                   input=parse_json_text(event.get("Input")),
                   status=_STATUS_NAMES.get(status) if isinstance(status, int) else status)


def _status_events(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for n in (_from_status_event(e) for e in events if isinstance(e, dict)) if n is not None]


def _context_events(histories: Iterable[Any]) -> list[dict[str, Any]]:
    """Raw ``HistoryEvent`` objects (azure-functions-durable 1.x: ``event_type``, ``event_id``, ``timestamp`` and
    the other members as attributes) in the status API's terms: completions get their function's name, matched
    ``TaskScheduled`` / ``SubOrchestrationInstanceCreated`` and the episode markers are dropped (protocol §5.4)."""
    items = list(histories)
    names: dict[tuple[str, int], Any] = {}
    for e in items:
        type_ = _EVENT_NAMES.get(int(getattr(e, "event_type", -1)))
        if type_ in ("TaskScheduled", "SubOrchestrationInstanceCreated"):
            names[(type_, int(getattr(e, "event_id", -1)))] = getattr(e, "Name", None)
    out = []
    for e in items:
        type_ = _EVENT_NAMES.get(int(getattr(e, "event_type", -1)))
        if type_ is None or type_ in ("OrchestratorStarted", "OrchestratorCompleted", "TaskScheduled",
                                      "SubOrchestrationInstanceCreated"):
            continue
        name = getattr(e, "Name", None)
        scheduled_id = getattr(e, "TaskScheduledId", None)
        scheduled_id = scheduled_id if isinstance(scheduled_id, int) else -1
        if type_ in ("TaskCompleted", "TaskFailed"):
            name = names.get(("TaskScheduled", scheduled_id))
        elif type_ in ("SubOrchestrationInstanceCompleted", "SubOrchestrationInstanceFailed"):
            name = names.get(("SubOrchestrationInstanceCreated", scheduled_id))
        status = getattr(e, "OrchestrationStatus", None)
        out.append(_normal(type_, getattr(e, "timestamp", None), name=name,
                           result=parse_json_text(getattr(e, "Result", None)),
                           reason=getattr(e, "Reason", None), fire_at=getattr(e, "FireAt", None),
                           input=parse_json_text(getattr(e, "Input", None)),
                           status=_STATUS_NAMES.get(status) if isinstance(status, int) else status))
    return out


# -- entries ----------------------------------------------------------------------------------------------------


def _model_turn(result: Any) -> dict[str, Any]:
    """The details of one ``invoke_model`` result (docs/internals.md "Activities")."""
    if not isinstance(result, dict):
        return {"ok": False, "error": shorten(str(result))}
    if result.get("ok") is False:
        error: dict[str, Any] = result["error"] if isinstance(result.get("error"), dict) else {}
        return {"ok": False, "error": shorten(f"{error.get('type')}: {error.get('message')}"),
                "retryable": bool(error.get("retryable"))}
    response: dict[str, Any] = result["response"] if isinstance(result.get("response"), dict) else {}
    calls: list[dict[str, Any]] = []
    texts: list[str] = []
    for item in response.get("output") or []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            calls.append({"callId": item.get("call_id"), "name": item.get("name"),
                          "arguments": shorten(parse_json_text(item.get("arguments")))})
        elif item.get("type") == "message":
            texts += [str(c["text"]) for c in item.get("content") or [] if isinstance(c, dict)
                      and isinstance(c.get("text"), str)]
    usage: dict[str, Any] = response["usage"] if isinstance(response.get("usage"), dict) else {}
    return {"ok": True, "toolCalls": calls, "text": shorten("".join(texts)) if texts else None,
            "finish": "tool_calls" if calls else "stop", "demo": result.get("demo") is True,
            "usage": {"requests": usage.get("requests"), "inputTokens": usage.get("input_tokens"),
                      "outputTokens": usage.get("output_tokens"), "totalTokens": usage.get("total_tokens")}}


def _start_agent(run_input: Any) -> str | None:
    if not isinstance(run_input, dict):
        return None
    carried = run_input.get("$durableAgents")
    resume = carried.get("resume") if isinstance(carried, dict) else None
    if isinstance(resume, dict) and isinstance(resume.get("agent"), str):
        return str(resume["agent"])
    agent = run_input.get("agent")
    return agent if isinstance(agent, str) else None


def _build(events: list[dict[str, Any]], generation: int) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    agent: str | None = None
    asked: list[dict[str, Any]] = []  # the last model turn's tool calls not matched to a tool activity yet
    ran_since_turn = False  # a tool activity completed since the last model turn
    failed: dict[str, int] = {}  # failed attempts per tool name since the last model turn

    def add(kind: str, at: Any, **details: Any) -> None:
        entries.append({"id": f"g{generation}-{len(entries)}", "generation": generation, "at": at, "kind": kind,
                        **details})

    for e in events:
        type_, name, at = e["type"], e.get("name"), e["at"]
        if type_ == "ExecutionStarted":
            agent = _start_agent(parse_json_text(e.get("input"), 2))
            add("status", at, status="started" if generation == 0 else "resumed", agent=agent)
        elif type_ in ("TaskCompleted", "TaskFailed") and name == _MODEL_ACTIVITY:
            turn = _model_turn(e.get("result")) if type_ == "TaskCompleted" else {
                "ok": False, "error": _failure(e.get("reason"))}
            add("model_turn", at, agent=agent, **turn)
            calls_asked: Any = turn.get("toolCalls") or []
            asked = [c for c in calls_asked if isinstance(c, dict)]
            ran_since_turn, failed = False, {}
            for asked_call in asked:
                target = str(asked_call.get("name") or "")
                if target.startswith("transfer_to_"):
                    agent = target[len("transfer_to_"):]
                    add("handoff", at, callId=asked_call.get("callId"), tool=target, to=agent)
        elif type_ in ("TaskCompleted", "TaskFailed") and name == _INBOX and type_ == "TaskCompleted":
            result = e.get("result")
            for message in (result.get("messages") or []) if isinstance(result, dict) else []:
                if isinstance(message, dict):
                    add("message", at, role="user", seq=message.get("seq"),
                        content=shorten(message.get("content")), by=message.get("by"))
        elif type_ == "TaskCompleted" and name == _REPLY:
            add("message", at, role="assistant", agent=agent)
        elif type_ in ("TaskCompleted", "TaskFailed") and name in _check_activities:
            continue  # an approval check (durable_agents.approval_check): its answer shows as approval_requested
        elif type_ in ("TaskCompleted", "TaskFailed") and isinstance(name, str) and (
                name == _MCP_CALL or not name.startswith(_INTERNAL_PREFIX)):
            call: dict[str, Any] | None = next((c for c in asked if c.get("name") == name), None)
            details: dict[str, Any] = {"name": name, "callId": call.get("callId") if call else None,
                                       "arguments": call.get("arguments") if call else None}
            if type_ == "TaskCompleted":
                if call is not None:
                    asked.remove(call)
                add("tool_call", at, **details, ok=True, result=shorten(e.get("result")),
                    retries=failed.pop(name, 0))
            else:
                failed[name] = failed.get(name, 0) + 1
                add("tool_call", at, **details, ok=False, error=_failure(e.get("reason")), attempt=failed[name])
            ran_since_turn = True
        elif type_ == "TimerCreated":
            gated = [c for c in asked if not str(c.get("name") or "").startswith("transfer_to_")]
            if gated and not ran_since_turn:
                # the one shared timer of a turn's approvals (docs/internals.md "Approvals"): the turn's calls wait
                add("approval_requested", at, expiresAt=_time(e.get("fire_at")),
                    approvals=[{"id": c.get("callId"), "tool": c.get("name"), "arguments": c.get("arguments")}
                               for c in gated])
                ran_since_turn = True  # later timers of the turn are retries, not approvals
            else:
                add("timer", at, fireAt=_time(e.get("fire_at")))
        elif type_ == "TimerFired":
            add("timer", at, fireAt=_time(e.get("fire_at")), fired=True)
        elif type_ == "EventRaised" and isinstance(name, str) and name.startswith("approval:"):
            payload = parse_json_text(e.get("input"), 2)
            payload = payload if isinstance(payload, dict) else {}
            add("approval_decided", at, approvalId=name[len("approval:"):],
                decision="approved" if payload.get("approved") is True else "rejected",
                comment=shorten(payload.get("comment")) if isinstance(payload.get("comment"), str) else None,
                decidedBy=payload.get("decidedBy"), argumentsHash=payload.get("argumentsHash"))
        elif type_ == "EventRaised" and isinstance(name, str) and name.startswith("message:"):
            add("message", at, event=name)
        elif type_ == "EventRaised":
            add("message", at, event=shorten(str(name)))
        elif type_ in ("SubOrchestrationInstanceCompleted", "SubOrchestrationInstanceFailed"):
            if type_.endswith("Completed"):
                add("sub_orchestration", at, name=name, ok=True, result=shorten(e.get("result")))
            else:
                add("sub_orchestration", at, name=name, ok=False, error=_failure(e.get("reason")))
        elif type_ == "ExecutionTerminated":
            add("status", at, status="cancelled", reason=shorten(str(e.get("input") or "")))
        elif type_ == "ExecutionCompleted":
            if e.get("status") == "Completed":
                add("output", at, output=shorten(e.get("result")))
            elif e.get("status") == "Failed":
                add("error", at, error=_failure(e.get("result") or e.get("reason")))
            else:
                add("status", at, status="cancelled")
        elif type_ == "ContinueAsNew":
            add("status", at, status="continued_as_new", nextGeneration=generation + 1)
    return entries


def entries_from_status_history(history_events: Iterable[dict[str, Any]] | None, generation: int
                                ) -> list[dict[str, Any]]:
    """The entries of the current generation from the status API's ``historyEvents`` (protocol §5.4: event names,
    ``FunctionName`` on completions, ``Result`` parsed; read with ``show_history=True, show_history_output=True,
    show_input=True``); ``[]`` for none."""
    return _build(_status_events(history_events or []), generation)


def entries_from_context_history(histories: Iterable[Any], generation: int, *, continued: bool = True
                                 ) -> list[dict[str, Any]]:
    """The entries of a generation from the orchestrator's ``context.histories`` (azure-functions-durable 1.x
    ``HistoryEvent`` objects); with ``continued`` a last ``status`` entry ``continued_as_new`` (the
    ``ContinueAsNew`` event is written after the episode that decides it). Same entries as
    :func:`entries_from_status_history` gives for that history."""
    events = _context_events(histories)
    if continued:
        at = events[-1]["at"] if events else None
        events.append({"type": "ContinueAsNew", "at": at})
    return _build(events, generation)


def archive_input(run_id: str, generation: int, entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The :data:`ARCHIVE_ACTIVITY` input, bounded to :data:`MAX_ARCHIVE_CHARS` of JSON: strings cut to 2000,
    500, 200, then 60 characters, then the entries after the budget dropped (``"truncated": true``)."""
    payload: dict[str, Any] = {"run": run_id, "generation": generation, "entries": entries}
    kept: list[Any] = entries
    for limit in (MAX_VALUE_CHARS, 500, 200, 60):
        kept = shorten(entries, limit)
        payload["entries"] = kept
        if len(json.dumps(payload, default=str)) <= MAX_ARCHIVE_CHARS:
            return payload
    while kept and len(json.dumps({**payload, "entries": kept}, default=str)) > MAX_ARCHIVE_CHARS:
        kept = kept[: len(kept) // 2]
    return {**payload, "entries": kept, "truncated": True}


def archive_name(run_id: str, generation: int) -> str:
    """The blob name of an archived generation: ``run_prefix(run_id) + "timeline/<generation:06d>.json"``."""
    from ._blobs import run_prefix

    return f"{run_prefix(run_id)}timeline/{generation:06d}.json"


def archive_generation(payload: Any, app_dir: str | Path | None = None) -> int:
    """The :data:`ARCHIVE_ACTIVITY` body: write ``payload["entries"]`` as JSON to :func:`archive_name` on the
    payload blob store (``durable_agents._blobs.get_blob_store(app_dir)``), overwriting (idempotent on retry).
    Returns the number of entries; raises ``ValueError`` for a payload without ``run`` / ``generation``."""
    from ._blobs import get_blob_store

    data = parse_json_text(payload)
    if not isinstance(data, dict) or not isinstance(data.get("run"), str) or not isinstance(
            data.get("generation"), int):
        raise ValueError("the archive payload needs 'run' (string) and 'generation' (integer)")
    entries: list[Any] = data["entries"] if isinstance(data.get("entries"), list) else []
    body = json.dumps({"generation": data["generation"], "entries": entries}, ensure_ascii=False, default=str)
    get_blob_store(app_dir).put(archive_name(data["run"], data["generation"]), body.encode("utf-8"))
    return len(entries)


def read_archived(store: Any, run_id: str, generations: int, carried: Any = None) -> list[dict[str, Any]]:
    """The archived entries of generations ``0 .. generations - 1`` in order (a missing blob contributes none:
    a generation that ended before archiving existed, or a run continued by the user's own code). ``carried`` is the
    current input's ``$durableAgents.archive`` (the previous generation's entries, written to the store by the
    current generation's first step): used for its generation while that blob is not written yet."""
    entries: list[dict[str, Any]] = []
    for generation in range(max(0, generations)):
        key = (id(store), archive_name(run_id, generation))
        with _cache_lock:
            cached = _cache.get(key)
            if cached is not None:
                _cache.move_to_end(key)
        if cached is not None:
            entries += cached
            continue
        raw = store.get(key[1])
        if raw is None and isinstance(carried, dict) and carried.get("generation") == generation:
            entries += [e for e in carried.get("entries") or [] if isinstance(e, dict)]
            continue
        if raw is None:
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            continue
        found = [e for e in data.get("entries") or [] if isinstance(e, dict)]
        with _cache_lock:  # an archived generation never changes: read it once per process
            _cache[key] = found
            while len(_cache) > ARCHIVE_CACHE_GENERATIONS:
                _cache.popitem(last=False)
        entries += found
    return entries


ARCHIVE_CACHE_GENERATIONS = 1024
"""Archived generations :func:`read_archived` keeps in memory per process (least recently read dropped first)."""

_cache: OrderedDict[tuple[int, str], list[dict[str, Any]]] = OrderedDict()
_cache_lock = threading.Lock()


_archive_registered = False
_check_activities: set[str] = set()


def register_check_activity(name: str) -> None:
    """Record that activity ``name`` is an approval check (``durable_agents.approval_check`` calls this): its
    completions are not tool calls, and the timer after it is the turn's approval wait."""
    _check_activities.add(name)


def archive_registered() -> bool:
    """Whether this process registered :data:`ARCHIVE_ACTIVITY` (``durable_agents.App`` does): only then do runs
    archive their generations, so an app composed by hand with ``df.DFApp`` never schedules an activity it lacks.
    A property of the deployed code, the same on every replay."""
    return _archive_registered


def register_timeline_activity(app: Any, app_dir: str | Path | None = None) -> None:
    """Register :data:`ARCHIVE_ACTIVITY` on ``app`` (a ``df.DFApp`` or ``df.Blueprint``; ``durable_agents.App``
    does it); from then on version-3 runs of this process archive each ending generation's timeline."""
    global _archive_registered
    _archive_registered = True

    def durable_agents_archive_generation(payload: Any) -> int:
        return archive_generation(payload, app_dir)

    durable_agents_archive_generation.__doc__ = "Durable activity: archive an ended generation's timeline."
    app.activity_trigger(input_name="payload", activity=ARCHIVE_ACTIVITY)(durable_agents_archive_generation)
