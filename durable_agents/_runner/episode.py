"""The generator side of an agent run: one orchestrator episode (internal, not part of the public API).

:func:`drive` is the generator the Durable SDK runs for every episode of an agent orchestrator. It gets the run's
session (the worker thread of :mod:`.bridge`) in one of two ways and then turns every new step into Durable tasks:

* **cached resume** (:func:`_resume_cached`): the live session of this execution is in the cache
  (:mod:`.cache`); its logged steps are re-yielded (resolved by the SDK from history, emitting no new actions),
  each outcome compared with the logged one, and the worker, blocked at its pending step, is answered;
* **fresh replay** (:func:`_replay_fresh`): no live session (a restart, an eviction, another process, or a
  mismatch above); a new worker runs the user's function from the start and is fed the outcomes this episode has
  already resolved from history, step by step; asking for a different step raises ``NonDeterminismError``.

Steps become tasks as docs/internals.md "Activities" and "Approvals" say: a calls step is one fan-out awaited
until every child finished (the extension's ``WhenAll``); an approvals step waits for the events ``approval:<id>``
raced against one shared durable timer, publishing each decision in the custom status as it arrives.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Generator
from typing import Any

import pydantic_core
from agents import RunResult
from azure.durable_functions import DurableOrchestrationContext as Context

from .._contracts import (
    MAX_DECIDED_APPROVALS,
    ApprovalDecision,
    CustomStatus,
    Decision,
    OrchestrationOutput,
    PendingApproval,
    Principal,
    approval_event_name,
    format_time,
    parse_iso_duration,
    parse_time,
)
from .._errors import NonDeterminismError
from .._jsonsafe import parse_json_text
from . import cache, compat
from .bridge import Carried, LoggedStep, Session
from .steps import (
    ApprovalItem,
    ApprovalsStep,
    CallOutcome,
    CallsStep,
    EventCall,
    LeafCall,
    Progress,
    RunAbandoned,
    RunFailed,
    RunFinished,
    Step,
    StepRequest,
    SubOrchestratorCall,
    TimerCall,
    WorkerMessage,
    compact,
)

__all__ = ["DEFAULT_APPROVAL_TIMEOUT", "drive"]

DEFAULT_APPROVAL_TIMEOUT = "P1D"
"""``APPROVAL_TIMEOUT`` when the run's settings have none (ISO 8601 duration)."""

Tasks = Generator[Any, Any, Any]


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# -- steps → Durable tasks ----------------------------------------------------------------------------------------


def _task_for(context: Context, call: LeafCall) -> Any:
    if isinstance(call, TimerCall):
        if call.fire_at is not None:
            return context.create_timer(parse_time(call.fire_at))
        return context.create_timer(context.current_utc_datetime + dt.timedelta(milliseconds=call.delay_ms))
    if isinstance(call, EventCall):
        return context.wait_for_external_event(call.name)
    if isinstance(call, SubOrchestratorCall):
        if call.retry is not None:
            return context.call_sub_orchestrator_with_retry(
                call.name, call.retry.to_retry_options(), call.input, call.instance_id
            )
        return context.call_sub_orchestrator(call.name, call.input, call.instance_id)
    if call.retry is not None:
        return context.call_activity_with_retry(call.name, call.retry.to_retry_options(), call.input)
    return context.call_activity(call.name, call.input)


def _outcome_of(task: Any) -> CallOutcome:
    if compat.task_failed(task):
        return CallOutcome(ok=False, error=compat.failure_message(task.result))
    return CallOutcome(ok=True, value=task.result)


def _run_any(context: Context, step: CallsStep, inflight: dict[int, Any]) -> Tasks:
    """Cancel the step's cancelled timers, schedule its new calls, and wait until at least one call in flight has
    finished; the ``(key, outcome)`` of every finished one, ascending keys (:class:`.steps.CallsStep`)."""
    for key in step.cancel:
        timer = inflight.pop(key, None)
        if timer is not None and compat.task_running(timer):
            timer.cancel()
    for call in step.calls:
        assert call.key is not None
        inflight[call.key] = _task_for(context, call)
    keys = sorted(set(step.inflight) | {call.key for call in step.calls if call.key is not None})
    waiting = [inflight[key] for key in keys]
    if waiting:
        with contextlib.suppress(Exception):  # a failed child is an outcome, not an error of the step
            yield waiting[0] if len(waiting) == 1 else context.task_any(waiting)
    finished = [(key, _outcome_of(inflight[key])) for key in keys if not compat.task_running(inflight[key])]
    for key, _ in finished:
        del inflight[key]
    return tuple(finished)


def _run_calls(context: Context, step: CallsStep, inflight: dict[int, Any]) -> Tasks:
    """Schedule all calls together and wait for every one of them; outcomes in call order (``wait="all"``), or
    :func:`_run_any` for a ``wait="any"`` step."""
    if step.wait == "any":
        return (yield from _run_any(context, step, inflight))
    tasks = [_task_for(context, call) for call in step.calls]
    if len(tasks) == 1:
        try:
            value = yield tasks[0]
        except Exception as exc:  # noqa: BLE001 - a failed task becomes an outcome
            return (CallOutcome(ok=False, error=compat.failure_message(exc)),)
        return (CallOutcome(ok=True, value=value),)
    pending = list(tasks)
    while pending:
        # The Python SDK's task_all fails fast while the extension's WhenAll waits for every child (protocol
        # §3.2), so a failure is caught and the children still running are awaited again: re-yielding
        # already-scheduled tasks emits no new action, and the next step is only scheduled once every child
        # has finished, exactly when the extension's WhenAll completes (task_any would let the extension move
        # on at the first completion and assign sequence ids that retry timers also take).
        with contextlib.suppress(Exception):
            yield context.task_all(pending)
        pending = [task for task in pending if compat.task_running(task)]
    return tuple(_outcome_of(task) for task in tasks)


def _parse_event_payload(value: Any) -> dict[str, Any]:
    """Approval event payload as a dict; accepts a JSON string holding it (the Python client double-encodes)."""
    value = parse_json_text(value, 2)
    return value if isinstance(value, dict) else {}


class _StatusBook:
    """Custom status of the run, rebuilt deterministically every episode (docs/internals.md "Custom status")."""

    def __init__(self) -> None:
        self.decided: list[ApprovalDecision] = []

    def publish(self, context: Context, progress: Progress, pending: list[PendingApproval] | None = None) -> None:
        """Set the custom status: the run's progress and approvals, merged with the user's
        ``context.set_custom_status`` value (a dict's members, the runner's winning; anything else as ``custom``)."""
        status: CustomStatus = {
            "agent": progress.agent,
            "currentAgent": progress.current_agent,
            "turns": progress.turns,
            "lastTool": progress.last_tool,
            "pendingApprovals": list(pending or []),
            "approvals": list(self.decided[-MAX_DECIDED_APPROVALS:]),
            "demo": bool(progress.demo),
        }
        if progress.children:
            status["children"] = list(progress.children)
        if progress.usage is not None:
            requests, inputs, outputs, total = progress.usage
            status["usage"] = {"requests": requests, "inputTokens": inputs, "outputTokens": outputs,
                               "totalTokens": total}
        custom = progress.custom
        merged: dict[str, Any]
        if isinstance(custom, dict):
            merged = {**custom, **status}
        elif custom is not None:
            merged = {**status, "custom": custom}
        else:
            merged = dict(status)
        context.set_custom_status(fit_custom_status(merged))


MAX_CUSTOM_STATUS_CHARS = 8_000
"""Budget of the custom status as the Durable SDK sends it (``json.dumps``, ASCII-escaped): the extension fails
the orchestration when the status's UTF-16 size in whole KB exceeds 16, i.e. from 17,408 bytes = 8,704 UTF-16
code units (docs/internals.md "Payload limits (local runtime)"); ``json.dumps`` text is never shorter than that."""

_STRING_LIMITS = (2000, 500, 200, 60)


def _status_size(value: Any) -> int:
    return len(json.dumps(value, default=str))


def _shorten(value: Any, limit: int) -> tuple[Any, bool]:
    """``value`` with every string longer than ``limit`` characters cut (ending in "…"); whether anything was cut."""
    if isinstance(value, str):
        return (value[: limit - 1] + "…", True) if len(value) > limit else (value, False)
    if isinstance(value, dict):
        cut = False
        out = {}
        for key, item in value.items():
            out[key], changed = _shorten(item, limit)
            cut = cut or changed
        return out, cut
    if isinstance(value, list | tuple):
        items = [_shorten(item, limit) for item in value]
        return [item for item, _ in items], any(changed for _, changed in items)
    return value, False


def fit_custom_status(status: dict[str, Any], budget: int = MAX_CUSTOM_STATUS_CHARS) -> dict[str, Any]:
    """``status`` made to fit ``budget`` characters of JSON (docs/internals.md "Custom status"), deterministically.

    Steps, each only while the status is still too large: long strings of the pending approvals (their ``summary``
    and ``arguments``), of the decided approvals' comments and of the workflow's own members are cut to 2000, 500,
    200, then 60 characters (a cut pending approval gets ``"truncated": true``: the audit and the run's history
    keep the whole value); then the oldest decided approvals are dropped; then the workflow's own members give way
    to ``"progressTruncated": true``; then the children list is cut to its last 20. The runner's members
    (``pendingApprovals`` ids, times and hashes) are never dropped.
    """
    if _status_size(status) <= budget:
        return status
    fitted = dict(status)
    runner_keys = set(CustomStatus.__annotations__)
    for limit in _STRING_LIMITS:
        pending = []
        for item in fitted.get("pendingApprovals") or []:
            short = dict(item)
            cut = False
            for member in ("summary", "arguments"):
                short[member], changed = _shorten(item.get(member), limit)
                cut = cut or changed
            if cut:
                short["truncated"] = True
            pending.append(short)
        fitted["pendingApprovals"] = pending
        fitted["approvals"] = [{**d, "comment": _shorten(d.get("comment"), limit)[0]}
                               for d in fitted.get("approvals") or []]
        for key in [k for k in fitted if k not in runner_keys]:
            fitted[key] = _shorten(fitted[key], limit)[0]
        if _status_size(fitted) <= budget:
            return fitted
    while fitted.get("approvals") and _status_size(fitted) > budget:
        fitted["approvals"] = fitted["approvals"][1:]
    if _status_size(fitted) > budget:
        fitted = {k: v for k, v in fitted.items() if k in runner_keys}
        fitted["progressTruncated"] = True
    if _status_size(fitted) > budget and fitted.get("children"):
        fitted["children"] = fitted["children"][-20:]
    return fitted


def _decision(item: ApprovalItem, decision: Decision, comment: Any, now: str,
              decided_by: Any = None) -> ApprovalDecision:
    by: Principal | None = None
    if isinstance(decided_by, dict) and isinstance(decided_by.get("id"), str):
        name = decided_by.get("name")
        by = {"id": decided_by["id"], "name": name if isinstance(name, str) else None}
    return {
        "id": item.id,
        "kind": "workflow" if item.kind == "workflow" else "tool",
        "tool": item.tool,
        "decision": decision,
        "comment": comment if isinstance(comment, str) else None,
        "decidedAt": now,
        "decidedBy": by,
    }


def _event_decision(item: ApprovalItem, payload: dict[str, Any], now: str) -> ApprovalDecision:
    """The decision an ``approval:<id>`` event carries (:class:`~durable_agents._contracts.ApprovalEvent`).

    ``approved`` must be exactly ``true`` to approve. An event bound to other arguments (its ``argumentsHash`` is
    set and is not the hash of what this approval asks about) is recorded as rejected with a comment saying so:
    a decision applies only to the arguments the reviewer saw."""
    expected = item.arguments_hash
    seen = payload.get("argumentsHash")
    if isinstance(seen, str) and seen and seen != expected:
        return _decision(item, "rejected", f"The decision was made for other arguments ({seen}); this call's "
                         f"arguments hash to {expected}, so it was not run.", now, payload.get("decidedBy"))
    verdict: Decision = "approved" if payload.get("approved") is True else "rejected"
    return _decision(item, verdict, payload.get("comment"), now, payload.get("decidedBy"))


def _run_approvals(context: Context, step: ApprovalsStep, book: _StatusBook, timeout: dt.timedelta) -> Tasks:
    """Wait for every approval of one turn at once; return the decisions in item order.

    Each approval waits for the external event ``approval:<id>``; all share one durable timer at ``expiresAt``
    (``requestedAt + APPROVAL_TIMEOUT``, docs/internals.md "Approvals"). The generator yields ``task_any`` over the
    still-pending events plus the timer, and again after each decision: the re-yielded tasks are already scheduled,
    so the Durable SDK adds no action and the extension's replay (whose ``WhenAny`` already completed) assigns no
    sequence id. Each decision is published in the custom status as soon as it arrives, so approvals can be
    decided in any order. When all are decided the timer is cancelled; when it fires first, every approval still
    pending expires.
    """
    requested = _utc(context.current_utc_datetime)
    expires = requested + (timeout if step.timeout_ms is None else dt.timedelta(milliseconds=step.timeout_ms))
    waiting: list[tuple[ApprovalItem, PendingApproval]] = [
        (item, {"id": item.id, "kind": "workflow" if item.kind == "workflow" else "tool", "tool": item.tool,
                "summary": item.summary, "arguments": item.arguments, "argumentsHash": item.arguments_hash,
                "requestedAt": format_time(requested), "expiresAt": format_time(expires)})
        for item in step.items
    ]
    events = {item.id: context.wait_for_external_event(approval_event_name(item.id)) for item in step.items}
    timer = context.create_timer(expires)
    decided: dict[str, ApprovalDecision] = {}
    book.publish(context, step.progress, [pending for _, pending in waiting])
    while waiting:
        yield context.task_any([events[item.id] for item, _ in waiting] + [timer])
        now = format_time(_utc(context.current_utc_datetime))
        # Normally exactly one child has completed (the SDK resumes the generator at each completion); an event
        # delivered before its wait was yielded completes at once, so every completed event is taken, item order.
        for item, _ in waiting:
            if events[item.id].is_completed:
                decided[item.id] = _event_decision(item, _parse_event_payload(events[item.id].result), now)
            elif timer.is_completed:
                decided[item.id] = _decision(item, "expired", None, now)
        book.decided.extend(decided[item.id] for item, _ in waiting if item.id in decided)
        waiting = [(item, pending) for item, pending in waiting if item.id not in decided]
        book.publish(context, step.progress, [pending for _, pending in waiting])
    if not timer.is_completed:
        timer.cancel()
    return tuple(decided[item.id] for item in step.items)


def _run_step(
    context: Context, step: Step, book: _StatusBook, timeout: dt.timedelta, inflight: dict[int, Any]
) -> Tasks:
    if isinstance(step, ApprovalsStep):
        return (yield from _run_approvals(context, step, book, timeout))
    book.publish(context, step.progress)
    return (yield from _run_calls(context, step, inflight))


# -- the episode ----------------------------------------------------------------------------------------------


class _Episode:
    """What one generator execution knows: the run's identity, settings, start, and the steps it resolved."""

    def __init__(self, context: Context, fn: Callable[..., Any], agent_name: str | None) -> None:
        self.context = context
        self.fn = fn
        self.agent_name = agent_name
        self.instance_id = context.instance_id
        value = context.get_input()
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        self.input = value
        settings = value.get("settings") if isinstance(value, dict) else None
        self.timeout = parse_iso_duration(str((settings or {}).get("APPROVAL_TIMEOUT") or DEFAULT_APPROVAL_TIMEOUT))
        self.book = _StatusBook()
        version = value.get("version") if isinstance(value, dict) else None
        if isinstance(value, dict) and isinstance(version, int) and version >= 3:
            self.book.decided = list(Carried.from_input(value).decided)
        self.start = _utc(context.current_utc_datetime)  # the first OrchestratorStarted time: the run's start
        self.key = (self.instance_id, compat.execution_key(context, self.start))
        self.resolved: list[LoggedStep] = []  # steps resolved by this generator execution, in order
        self.inflight: dict[int, Any] = {}  # Durable tasks of calls sent in "any" steps and not finished, by key

    @property
    def now(self) -> dt.datetime:
        return _utc(self.context.current_utc_datetime)

    def run_step(self, step: Step, logged_as: Step | None = None) -> Tasks:
        """Yield the tasks of ``step``; log the outcome under ``logged_as`` (the full step) and return it."""
        outcome = yield from _run_step(self.context, step, self.book, self.timeout, self.inflight)
        self.resolved.append(LoggedStep(logged_as or step, outcome, self.now))
        return outcome


class _Mismatch:
    """The history disagrees with the live session: replay from scratch."""


def _resume_cached(episode: _Episode, session: Session) -> Tasks:
    """Re-yield the live session's logged steps; return the outcome of its pending step, or ``_Mismatch``.

    A step resolved in an earlier episode is certainly scheduled in this history (:func:`.steps.compact`): it is
    re-yielded without its inputs; the step still pending is re-yielded in full.
    """
    for logged in list(session.log):
        if not logged.resolved:
            return (yield from episode.run_step(logged.step))
        if logged.compact is None:
            logged.compact = compact(logged.step)
        outcome = yield from episode.run_step(logged.compact, logged_as=logged.step)
        if outcome != logged.outcome:
            return _Mismatch
    return _Mismatch  # nothing pending: the session cannot be resumed


def _replay_fresh(episode: _Episode, session: Session) -> WorkerMessage:
    """Start ``session``'s worker at the run's start time and feed it the steps this episode already resolved,
    without yielding them again. Raises ``NonDeterminismError`` when the worker asks for another step."""
    message = session.advance(None, episode.start)
    for index, replayed in enumerate(episode.resolved):
        if isinstance(message, RunAbandoned):
            return message
        requested = message.step if isinstance(message, StepRequest) else None
        if requested != replayed.step:
            raise NonDeterminismError(
                index, replayed.step, requested if requested is not None else message,
                detail="the agent orchestrator asked for different durable work than its history records",
            )
        assert replayed.now is not None
        message = session.advance(replayed.outcome, replayed.now, replaying=True)
    return message


def drive(context: Context, fn: Callable[..., Any], agent_name: str | None) -> Tasks:
    """The orchestrator generator of an agent run: resume or replay the session, then run its new steps.

    Returns the orchestration output (:func:`_output`); raises what the user's function raised. Whatever way it
    ends (output, error, or closed by the SDK when the episode stops at a pending task), a worker that is not kept
    in the session cache is abandoned, so no worker thread outlives its usefulness.
    """
    episode = _Episode(context, fn, agent_name)
    session = cache.take(episode.key)
    try:
        answer: Any = None
        message: WorkerMessage | None = None
        if session is not None:
            cache.put(session)
            answer = yield from _resume_cached(episode, session)
            if answer is _Mismatch:
                cache.drop(session)
                session.abandon()
                session = None
        while message is None:
            if session is None:
                session = Session(episode.instance_id, episode.input, fn, agent_name, episode.key)
                cache.put(session)
                message = _replay_fresh(episode, session)
            else:
                message = session.advance(answer, episode.now, context.is_replaying)
            while isinstance(message, StepRequest):
                outcome = yield from episode.run_step(message.step)
                message = session.advance(outcome, episode.now, context.is_replaying)
            if not isinstance(message, RunAbandoned):
                break
            # Evicted from the cache (by another run's episode) while in use: continue with a fresh worker.
            cache.drop(session)
            session = None
            message = None
        assert session is not None and message is not None
        cache.drop(session)
        episode.book.publish(context, session.progress)
        if isinstance(message, RunFailed):
            raise message.error
        assert isinstance(message, RunFinished)
        for key in message.cancel:
            timer = episode.inflight.pop(key, None)
            if timer is not None and compat.task_running(timer):
                timer.cancel()
        continued, new_input = message.continue_as_new
        if continued:
            from .. import _timeline

            archive = None
            if session.version >= 3 and isinstance(new_input, dict) and _timeline.archive_registered():
                # The ending generation's timeline (docs/internals.md "Timeline and events") rides in the next
                # input; the next generation's first step writes it to the payload store.
                generation = session.carried.generation
                entries = _timeline.entries_from_context_history(compat.histories(context), generation)
                archive = _timeline.archive_input(episode.instance_id, generation, entries)
            context.continue_as_new(Carried.next_input(
                session, new_input, episode.book.decided[-MAX_DECIDED_APPROVALS:], format_time(episode.start),
                message.resume, archive))
            return None
        return _output(session, message.output)
    except GeneratorExit:
        raise  # the episode ended at a pending task: a cached session stays for the next episode
    except BaseException:
        if session is not None:
            cache.drop(session)  # the run failed (or is non-deterministic): never resume this worker
        raise
    finally:
        # Runs on return, on error, and on GeneratorExit when the SDK drops the generator at the end of an
        # episode. abandon() only enqueues a message (SimpleQueue.put is reentrant), so this is safe even when
        # the generator is finalized by the garbage collector in another thread.
        if session is not None and not cache.holds(session):
            session.abandon()


def _output(session: Session, value: Any) -> Any:
    """The orchestration output (docs/internals.md "Orchestration output") for a RunResult; other values as-is."""
    if isinstance(value, RunResult):
        final = value.final_output
        output: OrchestrationOutput = {
            "finalOutput": final if isinstance(final, str) else pydantic_core.to_jsonable_python(final),
            "lastAgent": value.last_agent.name,
            "turns": session.progress.turns,
            "usage": {
                "requests": session.usage["requests"],
                "inputTokens": session.usage["inputTokens"],
                "outputTokens": session.usage["outputTokens"],
                "totalTokens": session.usage["totalTokens"],
            },
            "demo": bool(session.progress.demo),
        }
        return output
    return pydantic_core.to_jsonable_python(value)
