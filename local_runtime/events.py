"""History events and time formatting, exactly as the Durable extension sends them to the Python SDK.

Shapes follow ``durable-functions-protocol.md`` §2.3: PascalCase members, ``EventType`` as an integer, null members
included, the base members ``EventId``, ``IsPlayed`` and ``Timestamp`` last. Times are ISO 8601 UTC strings with up to
7 fractional digits (trailing zeros trimmed) and a ``Z``. Every constructor returns a plain ``dict`` (JSON-ready).
No I/O here.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

__all__ = [
    "ET", "STATUS_NAMES", "utcnow", "fmt_time", "parse_time", "status_time", "compact",
    "execution_started", "execution_completed", "execution_terminated", "execution_suspended",
    "execution_resumed", "task_scheduled", "task_completed", "task_failed", "suborch_created",
    "suborch_completed", "suborch_failed", "timer_created", "timer_fired", "orchestrator_started",
    "orchestrator_completed", "event_raised", "event_sent", "continue_as_new", "context_json",
]


class ET:
    """``HistoryEventType`` numbers (DTFx ``EventType``; protocol §2.3 / §8)."""

    ExecutionStarted = 0
    ExecutionCompleted = 1
    ExecutionFailed = 2
    ExecutionTerminated = 3
    TaskScheduled = 4
    TaskCompleted = 5
    TaskFailed = 6
    SubOrchestrationInstanceCreated = 7
    SubOrchestrationInstanceCompleted = 8
    SubOrchestrationInstanceFailed = 9
    TimerCreated = 10
    TimerFired = 11
    OrchestratorStarted = 12
    OrchestratorCompleted = 13
    EventSent = 14
    EventRaised = 15
    ContinueAsNew = 16
    GenericEvent = 17
    HistoryState = 18
    ExecutionSuspended = 19
    ExecutionResumed = 20
    ExecutionRewound = 21

    NAMES = {v: k for k, v in vars().items() if isinstance(v, int)}


#: OrchestrationStatus ints (protocol §8) → the names the status API uses.
STATUS_NAMES = {0: "Running", 1: "Completed", 2: "ContinuedAsNew", 3: "Failed", 4: "Canceled",
                5: "Terminated", 6: "Pending", 7: "Suspended"}


def utcnow() -> dt.datetime:
    """Current time as an aware UTC datetime (microsecond precision)."""
    return dt.datetime.now(dt.UTC)


def fmt_time(t: dt.datetime) -> str:
    """Format an aware datetime like Newtonsoft: ``2024-01-01T00:00:00.0012Z`` (fraction trimmed, may be absent)."""
    t = t.astimezone(dt.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{t.microsecond:06d}".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def status_time(t: dt.datetime) -> str:
    """Status API time: ``ToString("s") + "Z"``, no fraction (protocol §5.4)."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """Parse an ISO 8601 time (``Z`` or offset; any fraction length) into an aware UTC datetime.

    Naive inputs are taken as UTC (the extension parses ``fireAt`` as UTC). Raises ``ValueError`` if unparsable.
    """
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python 3.11 accepts any fraction length; normalise >6 digits defensively.
    if "." in s:
        head, _, tail = s.partition(".")
        digits = ""
        rest = ""
        for i, ch in enumerate(tail):
            if not ch.isdigit():
                rest = tail[i:]
                break
            digits += ch
        s = f"{head}.{(digits + '000000')[:6]}{rest}"
    t = dt.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(dt.UTC)


def compact(value: Any) -> str:
    """Newtonsoft-style compact JSON text of a JSON value (``,``/``:`` separators, non-ASCII kept)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _base(ev: dict, event_id: int, ts: dt.datetime, played: bool = False) -> dict:
    ev["EventId"] = event_id
    ev["IsPlayed"] = played
    ev["Timestamp"] = fmt_time(ts)
    return ev


def execution_started(instance_id: str, execution_id: str, name: str, input_text: str | None,
                      ts: dt.datetime, parent: dict | None = None) -> dict:
    """``ExecutionStarted`` (0). ``parent`` is ``{Name, OrchestrationInstance{InstanceId, ExecutionId},
    TaskScheduleId, Version}`` for a sub-orchestration (protocol §3.7), else None."""
    return _base({"OrchestrationInstance": {"InstanceId": instance_id, "ExecutionId": execution_id},
                  "EventType": ET.ExecutionStarted, "ParentInstance": parent, "Name": name, "Version": "",
                  "Input": input_text, "Tags": None, "Correlation": None, "ParentTraceContext": None,
                  "ScheduledStartTime": None, "Generation": None, "GenerateNewTrace": False}, -1, ts)


def execution_completed(event_id: int, status: int, result: str | None, ts: dt.datetime) -> dict:
    """``ExecutionCompleted`` (1); ``status`` 1 Completed, 3 Failed, 5 Terminated."""
    return _base({"EventType": ET.ExecutionCompleted, "OrchestrationStatus": status, "Result": result,
                  "FailureDetails": None}, event_id, ts)


def execution_terminated(reason: str | None, ts: dt.datetime) -> dict:
    """``ExecutionTerminated`` (3): ``Input`` is the raw reason text."""
    return _base({"EventType": ET.ExecutionTerminated, "Input": reason}, -1, ts)


def execution_suspended(reason: str | None, ts: dt.datetime) -> dict:
    """``ExecutionSuspended`` (19)."""
    return _base({"EventType": ET.ExecutionSuspended, "Reason": reason}, -1, ts)


def execution_resumed(reason: str | None, ts: dt.datetime) -> dict:
    """``ExecutionResumed`` (20)."""
    return _base({"EventType": ET.ExecutionResumed, "Reason": reason}, -1, ts)


def task_scheduled(event_id: int, name: str, ts: dt.datetime) -> dict:
    """``TaskScheduled`` (4); ``Input`` is null (storeInputsInOrchestrationHistory=false)."""
    return _base({"EventType": ET.TaskScheduled, "Name": name, "Version": "", "Input": None,
                  "ParentTraceContext": None, "Tags": None}, event_id, ts)


def task_completed(scheduled_id: int, result: str | None, ts: dt.datetime) -> dict:
    """``TaskCompleted`` (5); ``Result`` is compact JSON text or null."""
    return _base({"EventType": ET.TaskCompleted, "TaskScheduledId": scheduled_id, "Result": result}, -1, ts)


def task_failed(scheduled_id: int, reason: str, details: str | None, ts: dt.datetime) -> dict:
    """``TaskFailed`` (6)."""
    return _base({"EventType": ET.TaskFailed, "TaskScheduledId": scheduled_id, "Reason": reason,
                  "Details": details, "FailureDetails": None}, -1, ts)


def suborch_created(event_id: int, name: str, instance_id: str, ts: dt.datetime) -> dict:
    """``SubOrchestrationInstanceCreated`` (7)."""
    return _base({"EventType": ET.SubOrchestrationInstanceCreated, "Name": name, "Version": "",
                  "InstanceId": instance_id, "Input": None, "ClientSpanId": None, "Tags": None}, event_id, ts)


def suborch_completed(scheduled_id: int, result: str | None, ts: dt.datetime) -> dict:
    """``SubOrchestrationInstanceCompleted`` (8)."""
    return _base({"EventType": ET.SubOrchestrationInstanceCompleted, "TaskScheduledId": scheduled_id,
                  "Result": result}, -1, ts)


def suborch_failed(scheduled_id: int, reason: str | None, details: str | None, ts: dt.datetime) -> dict:
    """``SubOrchestrationInstanceFailed`` (9)."""
    return _base({"EventType": ET.SubOrchestrationInstanceFailed, "TaskScheduledId": scheduled_id,
                  "Reason": reason, "Details": details, "FailureDetails": None}, -1, ts)


def timer_created(event_id: int, fire_at: dt.datetime, ts: dt.datetime) -> dict:
    """``TimerCreated`` (10)."""
    return _base({"EventType": ET.TimerCreated, "FireAt": fmt_time(fire_at)}, event_id, ts)


def timer_fired(timer_id: int, fire_at: dt.datetime, ts: dt.datetime) -> dict:
    """``TimerFired`` (11); ``Timestamp`` is when the timer message was created (protocol §3.5)."""
    return _base({"EventType": ET.TimerFired, "TimerId": timer_id, "FireAt": fmt_time(fire_at)}, -1, ts)


def orchestrator_started(ts: dt.datetime) -> dict:
    """``OrchestratorStarted`` (12): its ``Timestamp`` is the episode's "now"."""
    return _base({"EventType": ET.OrchestratorStarted}, -1, ts)


def orchestrator_completed(ts: dt.datetime) -> dict:
    """``OrchestratorCompleted`` (13)."""
    return _base({"EventType": ET.OrchestratorCompleted}, -1, ts)


def event_raised(name: str, input_text: str | None, ts: dt.datetime) -> dict:
    """``EventRaised`` (15): external event (matched by ``Name``)."""
    return _base({"EventType": ET.EventRaised, "Name": name, "Input": input_text,
                  "ParentTraceContext": None}, -1, ts)


def event_sent(event_id: int, instance_id: str, name: str, input_text: str | None, ts: dt.datetime) -> dict:
    """``EventSent`` (14)."""
    return _base({"EventType": ET.EventSent, "InstanceId": instance_id, "Name": name, "Input": input_text},
                 event_id, ts)


def continue_as_new(event_id: int, result: str | None, ts: dt.datetime) -> dict:
    """``ContinueAsNew`` (16): ``Result`` is the new input (JSON text)."""
    return _base({"EventType": ET.ContinueAsNew, "OrchestrationStatus": 2, "Result": result,
                  "FailureDetails": None}, event_id, ts)


def context_json(history: list[dict], instance_id: str, input_text: str | None,
                 parent_instance_id: str | None = None) -> str:
    """The orchestration trigger's context JSON string (protocol §2.2).

    ``history`` is every event of the current execution as the SDK must see it (``IsPlayed`` already set);
    ``input_text`` is ``ExecutionStarted.Input`` (JSON text or None), parsed once into ``input``.
    """
    started = next((e for e in history if e["EventType"] == ET.ExecutionStarted), None)
    if input_text is None:
        value = None
    else:
        try:
            value = json.loads(input_text)
        except ValueError:
            value = input_text
    return json.dumps({
        "history": history,
        "input": value,
        "instanceId": instance_id,
        "isReplaying": bool(started and started.get("IsPlayed")),
        "parentInstanceId": parent_instance_id,
        "upperSchemaVersion": 1,
        "upperSchemaVersionNew": 2,
        "longRunningTimerIntervalDuration": "3.00:00:00",
        "maximumShortTimerDuration": "6.00:00:00",
        "defaultHttpAsyncRequestSleepTimeMillseconds": 30000,
    }, ensure_ascii=False)
