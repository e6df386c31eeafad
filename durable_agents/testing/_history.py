"""Replaying a recorded history through an app's orchestrator: would a code change break runs in flight?"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from typing import Any

from local_runtime import events as ev
from local_runtime import worker
from local_runtime.events import ET
from local_runtime.replay import Decision, NewAction, Outcome, replay

from .._errors import NonDeterminismError
from .._runner import clear_session_cache
from ._functions import durable_registry

__all__ = ["ReplayResult", "replay_history"]

# Events the host appends for an episode's decision; every other event of an episode is a message it delivered.
_SCHEDULING = {ET.TaskScheduled: "activity", ET.TimerCreated: "timer",
               ET.SubOrchestrationInstanceCreated: "suborchestration", ET.EventSent: "event_sent"}
_TERMINAL = {ET.ExecutionCompleted, ET.ContinueAsNew}
_DECIDED = {*_SCHEDULING, *_TERMINAL, ET.OrchestratorCompleted}
_STATUS_CODES = {1: "completed", 3: "failed", 5: "terminated"}
_STATUS_NAMES = {"completed": "Completed", "failed": "Failed", "terminated": "Terminated",
                 "continued_as_new": "ContinuedAsNew"}


@dataclasses.dataclass(frozen=True)
class ReplayResult:
    """What a clean replay of a recorded history gave.

    ``orchestrator``, ``instance_id``, ``execution_id``: from the history's ``ExecutionStarted`` (or the
    ``orchestrator`` argument). ``status``: ``Completed``, ``Failed``, ``Terminated``, ``ContinuedAsNew`` or
    ``Running`` (the history ends while the run waits). ``output``: the parsed output when Completed, the failure
    text when Failed, else None. ``custom_status``: the parsed custom status the orchestrator set. ``steps``: how
    many Durable sequence ids (activities, timers) the replayed run used. ``state``: the ``OrchestratorState`` the
    orchestrator returned (``isDone``, ``actions``, ``output``, ``error``, ``customStatus``).
    """

    orchestrator: str
    instance_id: str
    execution_id: str
    status: str
    output: Any
    custom_status: Any
    steps: int
    state: dict[str, Any]


def replay_history(app: Any, history: Sequence[Mapping[str, Any]] | Mapping[str, Any], *,
                   orchestrator: str | None = None) -> ReplayResult:
    """Replay a recorded history through ``app``'s orchestrator as the Durable extension would at its end.

    ``history`` is the list of history events of one execution, as the extension hands them to the orchestrator
    (PascalCase members, ``EventType`` integers: local_runtime's SQLite state holds exactly these), or a mapping
    with such a list under ``"history"`` (a golden file). The orchestrator (``orchestrator``, default the
    ``ExecutionStarted`` name) is invoked once, for real (``azure-functions-durable``), with the history of the
    last episode, after the durable runner's live-run cache was cleared (so the agent run replays from history,
    as after a restart; the cache is cleared again afterwards). Then the extension's replay
    (``local_runtime.replay``) checks the actions it returned against the recorded events, with ``app``'s
    function names.

    Returns a :class:`ReplayResult` when the code reproduces the recording. Raises
    ``durable_agents.NonDeterminismError`` when it does not: ``step`` is the Durable sequence id where code and
    history part, ``recorded`` what the history holds there and ``requested`` what the code asked for, each
    ``{"kind": "activity" | "timer" | ..., "name": <activity name or None>}``, or ``{"kind": "completed" |
    "failed" | ..., "output": ...}`` for the end of the run, or ``None`` when that side has nothing there. That
    covers what the extension reports as nondeterminism (a scheduled task of another kind or name, or missing),
    actions the recording never had (new work after the recorded end) and another outcome or output than the
    recorded ``ExecutionCompleted``. Raises ``ValueError`` for a history without ``ExecutionStarted`` or for an
    orchestrator ``app`` does not have.
    """
    events = _events(history)
    started = next((e for e in events if e.get("EventType") == ET.ExecutionStarted), None)
    if started is None:
        raise ValueError("the history has no ExecutionStarted event")
    name = orchestrator or str(started.get("Name") or "")
    ids = started.get("OrchestrationInstance") or {}
    instance_id, execution_id = str(ids.get("InstanceId") or "replay"), str(ids.get("ExecutionId") or "")
    registry = durable_registry(app)
    info = registry.orchestrator(name)
    if info is None:
        known = sorted(f.durable_name or f.name for f in registry.orchestrators.values())
        raise ValueError(f"the app has no orchestrator named {name!r} (it has: {', '.join(known) or 'none'})")
    sdk_history, recorded_tail = _last_episode(events)
    body = ev.context_json(sdk_history, instance_id, started.get("Input"))
    clear_session_cache()
    try:
        state = worker.state_from_output(worker.orchestrator_output(info.fn, body, info.trigger_name or "context"))
    finally:
        clear_session_cache()
    decision = replay(sdk_history, state, orchestrator_name=info.durable_name or name, instance_id=instance_id,
                      execution_id=execution_id,
                      activities=[f.durable_name for f in registry.activities.values() if f.durable_name],
                      orchestrators=[f.durable_name for f in registry.orchestrators.values() if f.durable_name],
                      entities=[f.durable_name for f in registry.entities.values() if f.durable_name])
    _check(events, recorded_tail, decision, state)
    outcome = decision.outcome
    status = _STATUS_NAMES[outcome.kind] if outcome is not None else "Running"
    return ReplayResult(orchestrator=info.durable_name or name, instance_id=instance_id, execution_id=execution_id,
                        status=status, output=_outcome_value(outcome), custom_status=state.get("customStatus"),
                        steps=decision.next_id, state=state)


def _events(history: Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
    if isinstance(history, Mapping):
        inner = history.get("history")
        if not isinstance(inner, Sequence):
            raise ValueError("a mapping given as history must hold the event list under 'history'")
        history = inner
    return [dict(e) for e in history]


def _last_episode(events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split a committed history into what the orchestrator received in its last episode and what that episode
    added (the events of its new actions, the terminal event, ``OrchestratorCompleted``)."""
    starts = [i for i, e in enumerate(events) if e.get("EventType") == ET.OrchestratorStarted]
    if not starts:
        return events, []
    last = starts[-1]
    delivered = [dict(e, IsPlayed=False) for e in events[last + 1:] if e.get("EventType") not in _DECIDED]
    decided = [e for e in events[last + 1:] if e.get("EventType") in _DECIDED]
    return events[:last + 1] + delivered, decided


def _step(action: NewAction | None) -> dict[str, Any] | None:
    return None if action is None else {"kind": action.kind, "name": action.name}


def _recorded_step(event: Mapping[str, Any]) -> dict[str, Any]:
    return {"kind": _SCHEDULING[event["EventType"]], "name": event.get("Name")}


def _recorded_end(event: Mapping[str, Any]) -> dict[str, Any]:
    if event["EventType"] == ET.ContinueAsNew:
        return {"kind": "continued_as_new", "output": _parse(event.get("Result"))}
    kind = _STATUS_CODES.get(int(event.get("OrchestrationStatus") or 0), "unknown")
    result = event.get("Result")
    return {"kind": kind, "output": _parse(result) if kind == "completed" else result}


def _outcome_value(outcome: Outcome | None) -> Any:
    if outcome is None:
        return None
    if outcome.kind in ("completed", "continued_as_new"):
        return _parse(outcome.result)
    return outcome.result


def _parse(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def _failure_note(state: Mapping[str, Any]) -> str:
    error = state.get("error")
    return f"the orchestrator failed: {str(error).splitlines()[0][:500]}" if error else ""


def _check(events: list[dict[str, Any]], tail: list[dict[str, Any]], decision: Decision,
           state: Mapping[str, Any]) -> None:
    """Raise :class:`NonDeterminismError` where the replayed decision differs from the recording."""
    note = _failure_note(state)
    found = decision.nondeterminism
    if found is not None:
        raise NonDeterminismError(
            found.sequence_id, {"kind": found.recorded_kind, "name": found.recorded_name}, _step(found.requested),
            detail="; ".join(part for part in (str(found), note) if part),
        )
    recorded_new = {int(e["EventId"]): e for e in tail if e.get("EventType") in _SCHEDULING}
    requested_new = {a.id: a for a in decision.new_actions}
    terminal = next((e for e in reversed(events) if e.get("EventType") in _TERMINAL), None)
    for sequence_id in sorted(set(recorded_new) | set(requested_new)):
        recorded = recorded_new.get(sequence_id)
        action = requested_new.get(sequence_id)
        recorded_step = _recorded_step(recorded) if recorded is not None else None
        if recorded_step == _step(action):
            continue
        if recorded_step is None and terminal is not None and terminal.get("EventId") == sequence_id:
            recorded_step = _recorded_end(terminal)
        raise NonDeterminismError(
            sequence_id, recorded_step, _step(action),
            detail="; ".join(part for part in ("the code schedules other work than the recorded episode did", note)
                             if part),
        )
    outcome = decision.outcome
    requested_end = None if outcome is None else {"kind": outcome.kind, "output": _outcome_value(outcome)}
    if terminal is None:
        if requested_end is not None:
            raise NonDeterminismError(outcome.event_id if outcome else decision.next_id, None, requested_end,
                                      detail="; ".join(p for p in ("the recorded run had not finished", note) if p))
        return
    recorded_end = _recorded_end(terminal)
    if requested_end != recorded_end:
        waiting = "" if outcome is not None else (
            f"the replayed run has not finished (open tasks: {decision.open_task_ids or 'none'})")
        raise NonDeterminismError(
            int(terminal.get("EventId") or 0), recorded_end, requested_end,
            detail="; ".join(p for p in ("the run ends differently than recorded", waiting, note) if p),
        )
