"""The durable agent runner: ``Runner.run_sync`` inside a Durable Functions orchestration.

User code is a plain function written with the OpenAI Agents SDK::

    @bp.orchestration_trigger(context_name="context")
    @agent_orchestrator(agent_name="support")
    def support(context):
        return Runner.run_sync(support_agent, context.get_input()["input"])

:func:`agent_orchestrator` turns it into the generator orchestrator the Durable SDK expects. How it works
(DESIGN.md "Why our own durable runner"; contracts in docs/internals.md):

* **Seam.** At import this module installs :class:`DurableAgentRunner` (a subclass of ``agents.run.AgentRunner``)
  with ``agents.run.set_default_agent_runner``; ``Runner.run`` / ``Runner.run_sync`` delegate to it. Outside an
  orchestration it behaves exactly like the SDK's runner. Inside, it forces a ``RunConfig`` whose model provider
  returns :class:`DurableModel` (every model call becomes the ``invoke_model`` activity), disables tracing and
  resolves tool approvals (SDK interruptions) durably.
* **Thread bridge.** The user's function runs in a dedicated worker thread (``Runner.run_sync`` creates its own
  event loop there). When the run needs durable work, the worker's coroutines submit *calls* and the worker waits
  until its event loop has nothing else runnable; then the whole batch becomes one *step* that the generator turns
  into Durable tasks (so all activity-tool calls of one model turn are one fan-out), yields, and answers.
* **Steps.** A step is a JSON spec: ``{"kind": "calls", "calls": [...], "progress": {...}}`` (activities with or
  without retry options, and durable timers, scheduled together with ``task_all`` and awaited again after a
  caught failure until every child has finished, so a failed child never hides the others) or
  ``{"kind": "approvals", "items": [...]}`` (all approvals of one turn wait together, each for the external event
  ``approval:<id>``, raced against one shared durable timer; decided in any order, each decision published at
  once; the timer is cancelled when all are decided). Results are the SDK's own task results, matched by task id.
* **Session cache.** The live worker is kept between episodes in a per-process LRU keyed by instance id *and*
  execution (the ``ExecutionStarted`` event's ``ExecutionId``), so a purged and restarted instance with the same id
  never resumes a stale worker. The next episode re-yields the logged steps (resolved from history without new
  actions), compares each outcome with the logged one, and resumes the live worker; on any difference, or with no
  cached session (process restart), it replays from scratch with a fresh worker.
* **Worker lifetime.** A worker that is not kept (cache disabled or full, a replaced or mismatching session, the
  episode's generator closed) is abandoned: it unwinds at its pending durable call and closes its own event loop in
  its own thread, so no asyncio object of a run is ever finalized by the garbage collector in another thread.
  :func:`clear_session_cache` abandons every live worker and waits for its thread to end.
* **History timestamps.** The Durable SDK parses every history event's ``Timestamp`` with ``dateutil`` on every
  episode (``HistoryEvent.__init__``); that parse was most of the orchestrator CPU of long runs. This module wraps
  the SDK's parser in a memo (same function, same results; a history's timestamps repeat across its episodes).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import datetime as dt
import functools
import importlib
import json
import queue
import re
import threading
import warnings
import weakref
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df
import pydantic_core
from agents import Agent, RunConfig, RunResult
from agents.exceptions import UserError
from agents.items import ModelResponse, ToolApprovalItem
from agents.model_settings import ModelSettings
from agents.models.default_models import get_default_model_settings
from agents.models.interface import Model, ModelProvider
from agents.run import AgentRunner
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from azure.durable_functions.models.Task import TaskState

from ._errors import ModelCallError
from ._model_io import decode_model_response, encode_model_request
from ._run_settings import bind_session, current_session, run_setting
from ._tools import ActivityTool, ToolCall

__all__ = [
    "DurableAgentRunner",
    "DurableModel",
    "DurableModelProvider",
    "ModelCallError",
    "agent_orchestrator",
    "clear_session_cache",
    "set_session_cache_size",
    "INVOKE_MODEL_ACTIVITY",
]

INVOKE_MODEL_ACTIVITY = "invoke_model"
"""Durable name of the model activity (docs/internals.md "Activities")."""

MODEL_RETRY_BASE_SECONDS = 2.0
MODEL_RETRY_CAP_SECONDS = 300.0
DEFAULT_MODEL_MAX_ATTEMPTS = 6
DEFAULT_APPROVAL_TIMEOUT = "P1D"
MAX_DECIDED_APPROVALS = 50

_PENDING = object()




class _Abandoned(BaseException):
    """Unwinds an abandoned worker thread; a BaseException so that SDK ``except Exception`` blocks let it pass."""


# ---------------------------------------------------------------------------------------------------------------
# ISO 8601 durations and times


_DURATION_RE = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_iso_duration(text: str) -> dt.timedelta:
    """Parse an ISO 8601 duration without years/months (``P1D``, ``PT30M``, ``P1DT2H``, ``PT0.5S``).

    Raises ``ValueError`` for other forms (years and months have no fixed length) and for an empty duration.
    """
    match = _DURATION_RE.match(text.strip().upper()) if text else None
    if not match or text.strip().upper() in ("P", "PT") or text.strip().upper().endswith("T"):
        raise ValueError(f"not an ISO 8601 duration (weeks/days/hours/minutes/seconds): {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return dt.timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )


def _iso(value: dt.datetime) -> str:
    """UTC ISO 8601 with ``Z`` (docs/internals.md "Custom status"): whole seconds, or milliseconds if any."""
    value = value.astimezone(dt.UTC).replace(tzinfo=None)
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text + "Z"


def _parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def _utc(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


# ---------------------------------------------------------------------------------------------------------------
# The session: one agent run, its worker thread and its step log


@dataclasses.dataclass
class _Step:
    spec: dict[str, Any]
    outcome: Any = _PENDING
    now: str | None = None  # context.current_utc_datetime after the step resolved
    compact: dict[str, Any] | None = None  # the spec without activity inputs (see _compact_spec)


class _RunContextView:
    """What the user's orchestrator function receives as ``context`` inside the worker thread.

    Only replay-safe members: ``get_input()``, ``instance_id``, ``current_utc_datetime``. The real
    ``DurableOrchestrationContext`` belongs to one episode and must not be used from the worker.
    """

    def __init__(self, session: _DurableSession) -> None:
        self._session = session

    def get_input(self) -> Any:
        return self._session.input

    @property
    def instance_id(self) -> str:
        return self._session.instance_id

    @property
    def current_utc_datetime(self) -> dt.datetime:
        return self._session.now

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"context.{name} is not available inside an agent_orchestrator function: the run executes in a "
            "worker thread; use Runner.run_sync(...), activity tools and run_setting(...)"
        )


class _DurableSession:
    """One agent run: the worker thread running the user's function and the log of its durable steps.

    Hand-off: the generator thread and the worker thread exchange messages over two ``queue.SimpleQueue`` (C
    implementation, no Python-level ``Condition``; ``put`` is reentrant, so :meth:`abandon` is safe from any
    thread, even from a finalizer). Only one side runs at a time: the worker runs while the generator waits in
    :meth:`advance`, and the other way round.
    """

    def __init__(
        self,
        instance_id: str,
        orchestration_input: Any,
        fn: Callable[..., Any],
        agent: str | None,
        key: tuple[str, str] | None = None,
    ):
        self.instance_id = instance_id
        self.key = key or (instance_id, "")
        self.input = orchestration_input
        raw_settings = orchestration_input.get("settings") if isinstance(orchestration_input, dict) else None
        self.settings: dict[str, Any] = dict(raw_settings or {})
        self.fn = fn
        agent_name = agent or (orchestration_input.get("agent") if isinstance(orchestration_input, dict) else None)
        self.progress: dict[str, Any] = {
            "agent": agent_name,
            "currentAgent": agent_name,
            "turns": 0,
            "lastTool": None,
            "demo": False,
        }
        self.usage = {"requests": 0, "inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
        self.log: list[_Step] = []
        self.now = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        self.abandoned = False
        self.finished = False
        self._to_gen: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        self._to_worker: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._batch: list[tuple[dict[str, Any], asyncio.Future[Any]]] = []
        self._flush_scheduled = False

    # -- generator side ------------------------------------------------------------------------------------

    def advance(self, outcome: Any, now: dt.datetime) -> tuple[str, Any]:
        """Start the worker (first call) or answer its pending step; block until its next message.

        Returns ``("step", spec)``, ``("done", output)``, ``("error", exception)`` or ``("abandoned", None)`` (the
        session was abandoned, e.g. evicted from the cache by another thread, before or while it ran).
        """
        self.now = now
        if self._thread is None:
            if self.abandoned:
                return "abandoned", None
            self._thread = threading.Thread(
                target=self._worker_main, name=f"durable-agent-{self.instance_id}", daemon=True
            )
            with _live_lock:
                _live_sessions.add(self)
            self._thread.start()
        else:
            step = self.log[-1]
            step.outcome = outcome
            step.now = now.isoformat()
            self._to_worker.put(outcome)
        kind, value = self._to_gen.get()
        if kind == "step":
            self.log.append(_Step(value))
        else:
            self.finished = True
        return kind, value

    def abandon(self, join_timeout: float | None = None) -> None:
        """Unwind the worker thread (it raises :class:`_Abandoned` at its pending durable call).

        Never blocks unless ``join_timeout`` is given: then it waits up to that many seconds for the worker thread
        to end (not when called from the worker thread itself).
        """
        if not self.abandoned:
            self.abandoned = True
            if self._thread is not None and not self.finished:
                self._to_worker.put(_Abandoned)
        thread = self._thread
        if join_timeout is not None and thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)

    @property
    def thread_alive(self) -> bool:
        """True while the worker thread runs (it ends after the run finished or unwound)."""
        return self._thread is not None and self._thread.is_alive()

    # -- worker side -----------------------------------------------------------------------------------------

    def _worker_main(self) -> None:
        bind_session(self)
        message: tuple[str, Any]
        try:
            output = self.fn(_RunContextView(self))
            message = ("abandoned", None) if self.abandoned else ("done", output)
        except BaseException as exc:  # noqa: BLE001 - reported to the generator, which fails the orchestration
            message = ("abandoned", None) if self.abandoned else ("error", exc)
        finally:
            bind_session(None)
            _close_thread_event_loop()
        self._to_gen.put(message)

    def submit(self, call: dict[str, Any]) -> asyncio.Future[Any]:
        """Register a durable call from the worker's event loop; resolved with its outcome.

        ``call`` is ``{"type": "activity", "name", "input", "retry": [maxAttempts, firstRetryMs] | None}``,
        ``{"type": "timer", "delayMs"}`` or ``{"type": "approvals", "items": [...]}``. The outcome of an activity
        is ``{"ok": true, "value": <result>}`` or ``{"ok": false, "error": "<message>"}``.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.abandoned:
            future.set_exception(_Abandoned())
            return future
        self._batch.append((call, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush_when_idle, loop, 0)
        return future

    def _flush_when_idle(self, loop: asyncio.AbstractEventLoop, spins: int) -> None:
        # Wait until nothing else is runnable in the worker's loop, so that every call of one turn (all tool
        # calls the SDK starts concurrently) lands in the same batch, i.e. the same Durable episode.
        ready = getattr(loop, "_ready", None)
        if ready and spins < 100_000:
            loop.call_soon(self._flush_when_idle, loop, spins + 1)
            return
        self._flush_scheduled = False
        batch, self._batch = self._batch, []
        approvals = [item for item in batch if item[0]["type"] == "approvals"]
        calls = [item for item in batch if item[0]["type"] != "approvals"]
        groups = ([calls] if calls else []) + [[item] for item in approvals]
        for group in groups:
            if group[0][0]["type"] == "approvals":
                spec = {"kind": "approvals", "items": group[0][0]["items"], "progress": dict(self.progress)}
            else:
                spec = {"kind": "calls", "calls": [c for c, _ in group], "progress": dict(self.progress)}
            self._to_gen.put(("step", spec))
            outcome = self._to_worker.get()
            if outcome is _Abandoned:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(_Abandoned())
                return
            if spec["kind"] == "approvals":
                group[0][1].set_result(outcome)
            else:
                for (_, future), result in zip(group, outcome, strict=True):
                    future.set_result(result)

    async def call(self, call: dict[str, Any]) -> Any:
        return await self.submit(call)

    async def call_activity_tool(
        self, tool: ActivityTool, args: dict[str, Any], ctx: Any
    ) -> tuple[bool, Any]:
        """Run an activity tool as its activity (used by ``ActivityTool``); returns ``(ok, value_or_error)``."""
        agent = getattr(getattr(ctx, "agent", None), "name", None) or self.progress["currentAgent"] or ""
        call = ToolCall(run_id=self.instance_id, call_id=ctx.tool_call_id, tool=tool.name, agent=agent)
        self.progress["lastTool"] = tool.name
        outcome = await self.call(
            {
                "type": "activity",
                "name": tool.activity_name,
                "input": tool.activity_input(args, call),
                "retry": [tool.retry.max_attempts, tool.retry.first_retry_interval_ms],
            }
        )
        if outcome["ok"]:
            return True, outcome["value"]
        return False, outcome["error"]



def _close_thread_event_loop() -> None:
    """Close the calling thread's default event loop (``Runner.run_sync`` leaves it open on purpose).

    Runs in the worker thread when the user's function has returned or unwound: remaining tasks are cancelled and
    awaited, async generators shut down, the loop closed and unset. Without it the loop and any pending task of
    an abandoned run would be finalized later by the garbage collector in whatever thread triggers a collection
    (an orchestrator episode of another run, another worker), closing SDK coroutines outside their thread.
    """
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = policy.get_event_loop()
        except RuntimeError:
            return
    try:
        if not loop.is_closed() and not loop.is_running():
            pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
            for task in pending:
                task.cancel()
            if pending:
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            with contextlib.suppress(BaseException):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()
    finally:
        policy.set_event_loop(None)


# ---------------------------------------------------------------------------------------------------------------
# Session cache (per process, LRU) and the registry of live workers

_cache_lock = threading.Lock()
_cache: collections.OrderedDict[tuple[str, str], _DurableSession] = collections.OrderedDict()
_cache_size = 64
_live_lock = threading.Lock()
_live_sessions: weakref.WeakSet[_DurableSession] = weakref.WeakSet()  # sessions whose worker was started
_JOIN_TIMEOUT_SECONDS = 30.0


def set_session_cache_size(size: int) -> None:
    """Set how many live runs this process keeps between episodes (default 64; 0 disables the cache).

    Without the cache every episode replays the run from the start (correct, but CPU grows with the square of
    the number of turns). Evicted runs are unwound and replay from history on their next episode.
    """
    global _cache_size
    with _cache_lock:
        _cache_size = max(0, int(size))
        evicted = _trim_cache()
    for session in evicted:
        session.abandon()


def clear_session_cache() -> None:
    """Drop every cached run, as after a process restart, and end every worker thread of this module.

    Abandons all live workers (cached ones and any still unwinding) and waits for their threads to end (up to
    30 s each), so the process's thread count is back to what it was before the runs started.
    """
    with _cache_lock:
        sessions = list(_cache.values())
        _cache.clear()
    with _live_lock:
        sessions.extend(_live_sessions)
    for session in sessions:
        session.abandon()
    for session in sessions:
        session.abandon(join_timeout=_JOIN_TIMEOUT_SECONDS)


def live_worker_count() -> int:
    """Number of worker threads of this module that are still running (diagnostics and tests)."""
    with _live_lock:
        return sum(1 for session in _live_sessions if session.thread_alive)


def _trim_cache() -> list[_DurableSession]:
    """Evict least recently used runs over the size; the caller abandons them after releasing the lock."""
    evicted = []
    while len(_cache) > _cache_size:
        _, session = _cache.popitem(last=False)
        evicted.append(session)
    return evicted


def _cache_take(key: tuple[str, str]) -> _DurableSession | None:
    with _cache_lock:
        return _cache.pop(key, None)


def _cache_put(session: _DurableSession) -> None:
    """Keep ``session`` (most recently used). A different session under the same key, and runs evicted by the
    size limit, are abandoned; with the cache disabled ``session`` itself is not kept (the caller abandons it when
    its episode ends)."""
    with _cache_lock:
        if _cache_size == 0:
            return
        replaced = _cache.get(session.key)
        _cache[session.key] = session
        _cache.move_to_end(session.key)
        evicted = _trim_cache()
    if replaced is not None and replaced is not session:
        evicted.append(replaced)
    for old in evicted:
        old.abandon()


def _cache_holds(session: _DurableSession) -> bool:
    with _cache_lock:
        return _cache.get(session.key) is session


def _cache_drop(session: _DurableSession) -> None:
    with _cache_lock:
        if _cache.get(session.key) is session:
            del _cache[session.key]


# ---------------------------------------------------------------------------------------------------------------
# The generator side: steps → Durable tasks


def _failure_message(exc: BaseException) -> str:
    """The useful part of a Durable task failure: ``"ValueError: boom"`` from
    ``"Activity function 'x' failed:  ValueError: boom \\n {details}"`` (protocol §4.3)."""
    text = str(exc).split(" \n ", 1)[0]
    match = re.match(r"^Activity function '[^']*' failed:\s*(.*)$", text, re.S)
    return (match.group(1) if match else text).strip()


def _activity_task(context: df.DurableOrchestrationContext, call: dict[str, Any]) -> Any:
    if call["type"] == "timer":
        return context.create_timer(context.current_utc_datetime + dt.timedelta(milliseconds=call["delayMs"]))
    retry = call.get("retry")
    if retry:
        options = df.RetryOptions(first_retry_interval_in_milliseconds=retry[1], max_number_of_attempts=retry[0])
        return context.call_activity_with_retry(call["name"], options, call["input"])
    return context.call_activity(call["name"], call["input"])


def _task_outcome(task: Any) -> dict[str, Any]:
    if task.state is TaskState.FAILED:
        return {"ok": False, "error": _failure_message(task.result)}
    return {"ok": True, "value": task.result}


def _run_calls(context: df.DurableOrchestrationContext, calls: list[dict[str, Any]]) -> Generator[Any, Any, Any]:
    """Schedule all calls together and wait for every one of them; outcomes in call order."""
    tasks = [_activity_task(context, call) for call in calls]
    if len(tasks) == 1:
        try:
            value = yield tasks[0]
        except Exception as exc:  # noqa: BLE001 - a failed task becomes an outcome
            return [{"ok": False, "error": _failure_message(exc)}]
        return [{"ok": True, "value": value}]
    pending = list(tasks)
    while pending:
        # The Python SDK's task_all fails fast while the extension's WhenAll waits for every child (protocol
        # §3.2), so a failure is caught and the children still running are awaited again: re-yielding
        # already-scheduled tasks emits no new action, and the next step is only scheduled once every child
        # has finished, exactly when the extension's WhenAll completes (task_any would let the extension move
        # on at the first completion and assign sequence ids that retry timers also take).
        with contextlib.suppress(Exception):
            yield context.task_all(pending)
        pending = [task for task in pending if task.state is TaskState.RUNNING]
    outcomes = [_task_outcome(task) for task in tasks]
    return outcomes


def _parse_event_payload(value: Any) -> dict[str, Any]:
    """Approval event payload as a dict; accepts a JSON string holding it (the Python client double-encodes)."""
    for _ in range(2):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                break
    return value if isinstance(value, dict) else {}


class _StatusBook:
    """Custom status of the run, rebuilt deterministically every episode (docs/internals.md "Custom status")."""

    def __init__(self) -> None:
        self.decided: list[dict[str, Any]] = []

    def publish(
        self,
        context: df.DurableOrchestrationContext,
        progress: dict[str, Any],
        pending: list[dict[str, Any]] | None = None,
    ) -> None:
        context.set_custom_status(
            {
                "agent": progress.get("agent"),
                "currentAgent": progress.get("currentAgent"),
                "turns": progress.get("turns", 0),
                "lastTool": progress.get("lastTool"),
                "pendingApprovals": list(pending or []),
                "approvals": list(self.decided[-MAX_DECIDED_APPROVALS:]),
                "demo": bool(progress.get("demo")),
            }
        )


def _approval_decision(item: dict[str, Any], decision: str, comment: Any, now: str) -> dict[str, Any]:
    return {
        "id": item["id"],
        "tool": item["tool"],
        "decision": decision,
        "comment": comment if isinstance(comment, str) else None,
        "decidedAt": now,
    }


def _run_approvals(
    context: df.DurableOrchestrationContext, spec: dict[str, Any], book: _StatusBook, timeout: dt.timedelta
) -> Generator[Any, Any, Any]:
    """Wait for every approval of one turn at once; return the decisions in item order.

    Each approval waits for the external event ``approval:<id>``; all share one durable timer at
    ``expiresAt`` (``requestedAt + APPROVAL_TIMEOUT``, docs/internals.md "Approvals"). The generator yields
    ``task_any`` over the still-pending events plus the timer, and again after each decision: the re-yielded tasks
    are already scheduled, so the Durable SDK adds no action and the extension's replay (whose ``WhenAny`` already
    completed) assigns no sequence id. Each decision is published in the custom status as soon as it arrives, so
    approvals can be decided in any order. When all are decided the timer is cancelled; when it fires first, every
    approval still pending expires. Decisions: ``{"id", "tool", "decision": "approved|rejected|expired",
    "comment", "decidedAt"}``.
    """
    requested = _utc(context.current_utc_datetime)
    expires = requested + timeout
    pending = [
        {
            "id": item["id"],
            "tool": item["tool"],
            "arguments": item["arguments"],
            "requestedAt": _iso(requested),
            "expiresAt": _iso(expires),
        }
        for item in spec["items"]
    ]
    events = {item["id"]: context.wait_for_external_event(f"approval:{item['id']}") for item in pending}
    timer = context.create_timer(expires)
    decided: dict[str, dict[str, Any]] = {}
    book.publish(context, spec["progress"], pending)
    while pending:
        yield context.task_any([events[item["id"]] for item in pending] + [timer])
        now = _iso(_utc(context.current_utc_datetime))
        # Normally exactly one child has completed (the SDK resumes the generator at each completion); an event
        # delivered before its wait was yielded completes at once, so every completed event is taken, item order.
        for item in [item for item in pending if events[item["id"]].is_completed]:
            payload = _parse_event_payload(events[item["id"]].result)
            verdict = "approved" if payload.get("approved") is True else "rejected"
            decided[item["id"]] = _approval_decision(item, verdict, payload.get("comment"), now)
        if timer.is_completed:
            for item in pending:
                if item["id"] not in decided:
                    decided[item["id"]] = _approval_decision(item, "expired", None, now)
        for item in [item for item in pending if item["id"] in decided]:
            book.decided.append(decided[item["id"]])
            pending.remove(item)
        book.publish(context, spec["progress"], pending)
    if not timer.is_completed:
        timer.cancel()
    return [decided[item["id"]] for item in spec["items"]]


def _run_step(
    context: df.DurableOrchestrationContext, spec: dict[str, Any], book: _StatusBook, timeout: dt.timedelta
) -> Generator[Any, Any, Any]:
    if spec["kind"] == "approvals":
        return (yield from _run_approvals(context, spec, book, timeout))
    book.publish(context, spec["progress"])
    return (yield from _run_calls(context, spec["calls"]))


def _replay_into(session: _DurableSession, episode: list[_Step], start: dt.datetime) -> tuple[str, Any]:
    """Start a fresh worker (at the run's first ``current_utc_datetime``, ``start``) and feed it the steps this
    episode already resolved, without yielding them again."""
    kind, value = session.advance(None, start)
    for replayed in episode:
        if kind == "abandoned":
            return kind, value
        if kind != "step" or value != replayed.spec:
            raise RuntimeError(
                "Non-deterministic agent orchestrator: the run asked for different durable work than its "
                f"history records (step {len(session.log)})"
            )
        kind, value = session.advance(replayed.outcome, dt.datetime.fromisoformat(replayed.now))
    return kind, value


REPLAYED_INPUT_MARKER = {"$durableAgents": "input omitted: this activity is already scheduled in the history"}
"""The activity input of a re-yielded step whose ``TaskScheduled`` is already in the history (never executed)."""


def _compact_spec(step: _Step) -> dict[str, Any]:
    """``step.spec`` with every activity input replaced by :data:`REPLAYED_INPUT_MARKER` (memoized on the step).

    Used only on the cached path for a logged step whose outcome was resolved in an earlier episode of the same
    execution (the cache key includes the execution id). Why the input is never used there: the step resolved,
    so a completion (``TaskCompleted``/``TaskFailed``) of each of its activities reached this process; the
    extension only sends an activity's message when the episode that scheduled it commits, so its
    ``TaskScheduled`` is in the committed history, which is append-only within an execution. The extension replays
    an already-scheduled action by matching kind and name only, never the input (protocol §3.2), so the re-yielded
    action creates no new work, even if this episode is a retry of one whose commit failed (such an episode can
    only have resolved steps whose scheduling committed earlier; the step it left pending is re-yielded in full).
    Without this, every episode re-serialized every past model input, each carrying the whole conversation: O(n²)
    bytes per episode. On a mismatch fallback the fresh worker is compared with the full ``step.spec``.
    """
    compact = step.compact
    if compact is None:
        compact = step.spec
        if step.spec["kind"] == "calls":
            compact = dict(step.spec)
            compact["calls"] = [
                dict(call, input=REPLAYED_INPUT_MARKER) if call["type"] == "activity" else call
                for call in step.spec["calls"]
            ]
        step.compact = compact
    return compact


def _execution_key(context: df.DurableOrchestrationContext, start: dt.datetime) -> str:
    """Identify this execution of the instance: the ``ExecutionStarted`` event's ``OrchestrationInstance.ExecutionId``
    (protocol §2.3: a new GUID for every start, also after a purge and restart with the same instance id), or, if a
    backend does not send it, the first ``OrchestratorStarted`` time (``start``)."""
    for event in context.histories:
        if event.event_type == HistoryEventType.EXECUTION_STARTED:
            instance = getattr(event, "OrchestrationInstance", None)
            execution_id = instance.get("ExecutionId") if isinstance(instance, dict) else None
            if execution_id:
                return f"execution:{execution_id}"
            break
    return f"started:{start.isoformat()}"


def _drive(
    context: df.DurableOrchestrationContext, fn: Callable[..., Any], agent_name: str | None
) -> Generator[Any, Any, Any]:
    """The orchestrator generator: replay/resume the run's steps and turn new ones into Durable tasks.

    Whatever way it ends (output, error, or closed by the SDK when the episode stops at a pending task), a worker
    that is not kept in the session cache is abandoned, so no worker thread outlives its usefulness.
    """
    instance_id = context.instance_id
    orchestration_input = context.get_input()
    if isinstance(orchestration_input, str):
        with contextlib.suppress(ValueError):
            orchestration_input = json.loads(orchestration_input)
    settings = orchestration_input.get("settings") if isinstance(orchestration_input, dict) else None
    timeout = parse_iso_duration(str((settings or {}).get("APPROVAL_TIMEOUT") or DEFAULT_APPROVAL_TIMEOUT))
    book = _StatusBook()
    start = _utc(context.current_utc_datetime)  # the first OrchestratorStarted time: the run's start
    key = (instance_id, _execution_key(context, start))
    episode: list[_Step] = []  # steps resolved by this generator execution, in order

    session = _cache_take(key)
    try:
        outcome: Any = None
        resume_live = False
        if session is not None:
            _cache_put(session)
            for logged in list(session.log):
                # A step resolved in an earlier episode is certainly scheduled in this history (see
                # _compact_spec): re-yield it without its inputs; the step still pending is re-yielded in full.
                spec = logged.spec if logged.outcome is _PENDING else _compact_spec(logged)
                result = yield from _run_step(context, spec, book, timeout)
                episode.append(_Step(logged.spec, result, _utc(context.current_utc_datetime).isoformat()))
                if logged.outcome is _PENDING:
                    outcome, resume_live = result, True
                    break
                if result != logged.outcome:
                    break  # history disagrees with the live worker: replay from scratch
            if not resume_live:
                _cache_drop(session)
                session.abandon()
                session = None

        while True:
            if session is None:
                session = _DurableSession(instance_id, orchestration_input, fn, agent_name, key)
                _cache_put(session)
                kind, value = _replay_into(session, episode, start)
            else:
                kind, value = session.advance(outcome, _utc(context.current_utc_datetime))
            while kind == "step":
                result = yield from _run_step(context, value, book, timeout)
                now = _utc(context.current_utc_datetime)
                episode.append(_Step(value, result, now.isoformat()))
                kind, value = session.advance(result, now)
            if kind != "abandoned":
                break
            # Evicted from the cache (by another run's episode) while in use: continue with a fresh worker.
            _cache_drop(session)
            session = None

        _cache_drop(session)
        book.publish(context, session.progress)
        if kind == "error":
            raise value
        return _output(session, value)
    except GeneratorExit:
        raise  # the episode ended at a pending task: a cached session stays for the next episode
    except BaseException:
        if session is not None:
            _cache_drop(session)  # the run failed (or is non-deterministic): never resume this worker
        raise
    finally:
        # Runs on return, on error, and on GeneratorExit when the SDK drops the generator at the end of an
        # episode. abandon() only enqueues a message (SimpleQueue.put is reentrant), so this is safe even when
        # the generator is finalized by the garbage collector in another thread.
        if session is not None and not _cache_holds(session):
            session.abandon()


def _output(session: _DurableSession, value: Any) -> Any:
    """The orchestration output (docs/internals.md "Orchestration output") for a RunResult; other values as-is."""
    if isinstance(value, RunResult):
        final = value.final_output
        final = final if isinstance(final, str) else pydantic_core.to_jsonable_python(final)
        return {
            "finalOutput": final,
            "lastAgent": value.last_agent.name,
            "turns": session.progress["turns"],
            "usage": dict(session.usage),
            "demo": bool(session.progress["demo"]),
        }
    return pydantic_core.to_jsonable_python(value)


def agent_orchestrator(
    fn: Callable[..., Any] | None = None, *, agent_name: str | None = None
) -> Any:
    """Decorator: turn a plain function that runs an agent with the SDK into a Durable orchestrator.

    Use it under ``@bp.orchestration_trigger(context_name="context")``. The function receives a ``context``
    with ``get_input()`` (the orchestration input ``{"agent", "input", "settings"}``), ``instance_id`` and
    ``current_utc_datetime``, and typically returns ``Runner.run_sync(agent, context.get_input()["input"])``.
    A returned ``RunResult`` becomes the output ``{"finalOutput", "lastAgent", "turns", "usage", "demo"}``; any
    other JSON value is returned as it is. ``agent_name`` is the ``agent`` of the custom status (default: the
    input's ``agent``).

    Inside, every model call is the ``invoke_model`` activity (retried on a durable timer when retryable),
    every ``ActivityTool`` call its activity (one fan-out per model turn), and tool approvals wait durably
    for the event ``approval:<id>`` (docs/internals.md). Agents must name their model with a string (or leave
    it unset); an ``agents.Model`` instance raises ``UserError``.
    """

    def decorate(user_fn: Callable[..., Any]) -> Callable[..., Any]:
        def orchestrator(context: df.DurableOrchestrationContext):
            from ._orchestrator import install

            install()
            return (yield from _drive(context, user_fn, agent_name))

        orchestrator.__name__ = user_fn.__name__
        orchestrator.__qualname__ = user_fn.__qualname__
        orchestrator.__doc__ = user_fn.__doc__
        orchestrator.__module__ = user_fn.__module__
        orchestrator.agent_function = user_fn  # type: ignore[attr-defined]
        return orchestrator

    if fn is not None:
        return decorate(fn)
    return decorate


# ---------------------------------------------------------------------------------------------------------------
# The SDK seam: model, provider, runner


class DurableModel(Model):
    """An ``agents.Model`` whose ``get_response`` runs as the ``invoke_model`` activity of the current run.

    The request is encoded with ``model_io.encode_model_request``; the activity answers
    ``{"ok": true, "response", "demo"}`` or ``{"ok": false, "error": {..., "retryable", "retryAfter"}}``.
    Retryable errors wait on a durable timer of ``max(retryAfter, min(300 s, 2 s * 2**attempt))`` and call again,
    up to ``MODEL_MAX_ATTEMPTS`` calls (run setting, default 6); then, or for a non-retryable error,
    :class:`ModelCallError` is raised and the run fails. Streaming is not supported.
    """

    def __init__(self, model_name: str | None, run_model_settings: ModelSettings | None = None) -> None:
        self.model_name = model_name
        self.run_model_settings = run_model_settings

    async def get_response(
        self,
        system_instructions,
        input,
        model_settings,
        tools,
        output_schema,
        handoffs,
        tracing,
        *,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    ) -> ModelResponse:
        session = current_session()
        if session is None:
            raise UserError("DurableModel can only be used inside an agent_orchestrator run")
        if self.model_name is None:
            model_settings = _without_implicit_defaults(_CURRENT_AGENT.get(), model_settings, self.run_model_settings)
        request = encode_model_request(
            model=self.model_name,
            system_instructions=system_instructions,
            input=input,
            model_settings=model_settings,
            tools=tools,
            output_schema=output_schema,
            handoffs=handoffs,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )
        max_attempts = max(1, int(run_setting("MODEL_MAX_ATTEMPTS", str(DEFAULT_MODEL_MAX_ATTEMPTS)) or 6))
        attempt = 0
        while True:
            attempt += 1
            outcome = await session.call(
                {
                    "type": "activity",
                    "name": INVOKE_MODEL_ACTIVITY,
                    "input": {"model": self.model_name, "request": request},
                    "retry": None,
                }
            )
            if not outcome["ok"]:
                raise ModelCallError({"type": "activity_failed", "message": outcome["error"]}, attempt)
            result = outcome["value"] or {}
            if result.get("ok"):
                response = decode_model_response(result["response"])
                session.progress["turns"] += 1
                session.progress["demo"] = bool(session.progress["demo"] or result.get("demo"))
                usage = response.usage
                session.usage["requests"] += usage.requests or 1
                session.usage["inputTokens"] += usage.input_tokens
                session.usage["outputTokens"] += usage.output_tokens
                session.usage["totalTokens"] += usage.total_tokens
                return response
            error = result.get("error") or {}
            if not error.get("retryable") or attempt >= max_attempts:
                raise ModelCallError(error, attempt)
            backoff = min(MODEL_RETRY_CAP_SECONDS, MODEL_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            retry_after = error.get("retryAfter")
            delay = max(float(retry_after or 0), backoff)
            await session.call({"type": "timer", "delayMs": int(round(delay * 1000))})

    def stream_response(self, *args: Any, **kwargs: Any):  # pragma: no cover - documented limitation
        raise UserError("Streaming (Runner.run_streamed) is not supported inside a durable orchestration")


class DurableModelProvider(ModelProvider):
    """Model provider used inside orchestrations: every model name maps to a :class:`DurableModel`.

    ``run_model_settings`` is the run's ``RunConfig.model_settings`` (the overrides the caller set explicitly);
    the models keep them when they drop the SDK's environment-derived defaults (see
    :func:`_without_implicit_defaults`).
    """

    def __init__(self, run_model_settings: ModelSettings | None = None) -> None:
        self.run_model_settings = run_model_settings

    def get_model(self, model_name: str | None) -> Model:
        return DurableModel(model_name, self.run_model_settings)


_CURRENT_AGENT: contextvars.ContextVar[Agent[Any] | None] = contextvars.ContextVar(
    "durable_agents_current_agent", default=None
)
"""The agent of the model call being prepared, set by the run config's ``call_model_input_filter`` (the SDK awaits
it in the task that then calls the model, so concurrent agents-as-tools each see their own)."""


def _without_implicit_defaults(
    agent: Agent[Any] | None, resolved: ModelSettings, run_model_settings: ModelSettings | None
) -> ModelSettings:
    """Model settings for a model call whose agent names no model, independent of ``OPENAI_DEFAULT_MODEL``.

    The SDK gives an agent without a model the default settings of the model named by the environment variable
    ``OPENAI_DEFAULT_MODEL`` (default a GPT-5 model: ``reasoning.effort`` and ``verbosity``), read inside the
    orchestration (``agents.run_internal.turn_preparation.get_model_settings``). Inside a durable run that model
    is never used: the ``invoke_model`` activity calls ``AGENT_MODEL``. So when the agent's settings are the
    SDK's implicit default (the SDK's own rule: equal to ``get_default_model_settings()``), every field in which
    that default differs from ``ModelSettings()`` is reset to ``ModelSettings()``'s value unless the run config
    sets it; explicit agent settings and run-config overrides are kept. The request then no longer depends on the
    environment of the process that runs the episode.
    """
    if agent is None or agent.model is not None:
        return resolved
    implicit = get_default_model_settings()
    if agent.model_settings != implicit:
        return resolved
    neutral = ModelSettings()
    changes = {}
    for field in dataclasses.fields(ModelSettings):
        if getattr(implicit, field.name) == getattr(neutral, field.name):
            continue
        if run_model_settings is not None and getattr(run_model_settings, field.name) is not None:
            continue
        changes[field.name] = getattr(neutral, field.name)
    return dataclasses.replace(resolved, **changes) if changes else resolved


def _check_models(agent: Agent[Any], seen: set[int] | None = None) -> None:
    seen = seen if seen is not None else set()
    if id(agent) in seen:
        return
    seen.add(id(agent))
    if isinstance(agent.model, Model):
        raise UserError(
            f"Agent '{agent.name}' has a Model instance as its model; durable runs need a model name (str) or "
            "None, because the model is called in the invoke_model activity"
        )
    for handoff in agent.handoffs or []:
        target = handoff if isinstance(handoff, Agent) else getattr(handoff, "_agent_ref", None)
        if isinstance(target, Agent):
            _check_models(target, seen)


def _durable_run_config(session: _DurableSession, run_config: RunConfig | dict[str, Any] | None) -> RunConfig:
    if isinstance(run_config, dict):
        run_config = RunConfig(**run_config)
    base = run_config or RunConfig()
    if isinstance(base.model, Model):
        raise UserError("RunConfig.model must be a model name inside a durable orchestration")
    user_filter = base.call_model_input_filter

    async def track_agent(data: Any) -> Any:
        session.progress["currentAgent"] = data.agent.name
        _CURRENT_AGENT.set(data.agent)
        if user_filter is None:
            return data.model_data
        result = user_filter(data)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    return dataclasses.replace(
        base,
        model_provider=DurableModelProvider(base.model_settings),
        tracing_disabled=True,
        call_model_input_filter=track_agent,
    )


def _approval_item_json(item: ToolApprovalItem) -> dict[str, Any]:
    arguments: Any = item.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            pass
    return {"id": item.call_id, "tool": item.tool_name or item.name, "arguments": arguments}


def _rejection_message(decision: dict[str, Any], timeout_text: str) -> str:
    tool = decision["tool"]
    comment = decision.get("comment")
    if decision["decision"] == "expired":
        return (
            f"The call to '{tool}' was not run: no reviewer approved it within {timeout_text} "
            "(the approval expired)."
        )
    text = f"The call to '{tool}' was rejected by the reviewer and was not run."
    if comment:
        text += f" Reviewer's comment: {comment}"
    return text


class DurableAgentRunner(AgentRunner):
    """``AgentRunner`` installed as the SDK's default runner; durable inside ``agent_orchestrator`` runs.

    Outside an orchestration (no session bound to the thread) every call goes to the SDK's implementation
    unchanged. Inside, ``run`` forces the durable model provider and disabled tracing, then loops over the
    SDK's interruptions: each pending tool approval waits durably for a decision, is applied with
    ``RunState.approve`` / ``RunState.reject(..., rejection_message=...)``, and the run resumes from the state.
    """

    async def run(self, starting_agent, input, **kwargs):  # type: ignore[override]
        session = current_session()
        if session is None:
            return await super().run(starting_agent, input, **kwargs)
        _check_models(starting_agent)
        kwargs["run_config"] = _durable_run_config(session, kwargs.get("run_config"))
        result = await super().run(starting_agent, input, **kwargs)
        timeout_text = run_setting("APPROVAL_TIMEOUT", DEFAULT_APPROVAL_TIMEOUT) or DEFAULT_APPROVAL_TIMEOUT
        while result.interruptions:
            items = list(result.interruptions)
            state = result.to_state()
            decisions = await session.call(
                {"type": "approvals", "items": [_approval_item_json(item) for item in items]}
            )
            for item, decision in zip(items, decisions, strict=True):
                if decision["decision"] == "approved":
                    state.approve(item)
                else:
                    state.reject(item, rejection_message=_rejection_message(decision, timeout_text))
            resume_kwargs = {
                k: v
                for k, v in kwargs.items()
                if k in ("run_config", "hooks", "max_turns", "error_handlers")
            }
            result = await super().run(starting_agent, state, **resume_kwargs)
        return result

    def run_streamed(self, starting_agent, input, **kwargs):  # type: ignore[override]
        if current_session() is not None:
            raise UserError("Runner.run_streamed is not supported inside a durable orchestration")
        return super().run_streamed(starting_agent, input, **kwargs)



# ---------------------------------------------------------------------------------------------------------------
# History timestamp parse memo (orchestrator CPU)

_HISTORY_EVENT_MODULE = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")


def _install_timestamp_memo() -> None:
    """Wrap the SDK's history timestamp parser (``dateutil.parser.parse``, bound as ``dt_parse`` in
    ``azure.durable_functions.models.history.HistoryEvent``) in a bounded memo.

    The SDK re-parses the ``Timestamp`` of every history event on every episode, so a run of *n* episodes parses
    O(n²) timestamps, about 60 µs each with dateutil; the distinct timestamps of a history are few (the events of
    one episode share one). Results are the parser's own, memoized by the exact string (``datetime`` objects are
    immutable, so sharing them is safe). Idempotent; other callers of ``dateutil`` are not affected.
    """
    original = getattr(_HISTORY_EVENT_MODULE, "dt_parse", None)
    if original is None or getattr(original, "_durable_agents_memo", False):
        return
    memo = functools.lru_cache(maxsize=65536)(original)

    def dt_parse(timestr: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(timestr, str):
            return original(timestr, *args, **kwargs)
        return memo(timestr)

    dt_parse._durable_agents_memo = True  # type: ignore[attr-defined]
    _HISTORY_EVENT_MODULE.dt_parse = dt_parse

