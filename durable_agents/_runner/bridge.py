"""The thread bridge: the user's orchestrator function in a worker thread (internal, not part of the public API).

A Durable orchestrator is a generator that the Durable SDK resumes once per history event; an OpenAI Agents SDK run
is blocking code (``Runner.run_sync``) over its own event loop. :class:`Session` joins them: the user's function runs
in a dedicated worker thread, and whenever the run needs durable work its coroutines *submit* calls
(:mod:`.steps`); the generator side (:mod:`.episode`) receives them as one step, turns it into Durable tasks, and
answers with the outcome. The two threads strictly alternate: exactly one of them runs at any time (asserted in
:meth:`Session._to_generator` / :meth:`Session.advance`). The one exception is :meth:`Session.abandon`, which any
thread may call at any time: the worker then unwinds at its pending call while a generator may still run, and
nothing it sends afterwards is acted upon.

**Batching without private asyncio state.** All tool calls the SDK starts for one model turn must become one
fan-out. The worker thread runs its own ``asyncio.SelectorEventLoop`` whose selector (:class:`_IdleSelector`) is
told when the loop has nothing left to run: an event loop only calls ``select`` with a timeout other than 0 when no
callback is ready (blocking with a ready callback would stall it), so that call means every coroutine that could
submit a call this turn has done so. The batch is flushed right there, before the loop would block. A run whose
code makes its own event loop (``asyncio.run``) gets no idle signal from it; its calls are flushed one loop
iteration after they are submitted (still correct, only less batched).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import datetime as dt
import queue
import selectors
import threading
import warnings
import weakref
from collections.abc import Callable
from typing import Any

from .._contracts import AUDIT_ACTIVITY, ApprovalDecision, ToolRetry
from .._run_settings import bind_session
from .._telemetry import TRACE_MEMBER
from .._tools import ActivityTool, ApprovalCheck, ToolCall
from .steps import (
    ABANDON,
    ActivityCall,
    ApprovalsCall,
    ApprovalsStep,
    Call,
    CallOutcome,
    CallsStep,
    ContinueAsNew,
    Progress,
    RunAbandoned,
    RunFailed,
    RunFinished,
    Step,
    StepAnswer,
    StepRequest,
    WaitMode,
    WorkerMessage,
)

__all__ = ["CARRY_KEY", "Abandoned", "Carried", "LoggedStep", "Session", "live_sessions", "live_worker_count"]

_PENDING: Any = object()


class Abandoned(BaseException):
    """Unwinds an abandoned worker thread; a BaseException so that SDK ``except Exception`` blocks let it pass."""


RUN_DEPTH: contextvars.ContextVar[int] = contextvars.ContextVar("durable_agents_run_depth", default=0)
"""How many durable ``Runner.run`` calls enclose the current task (0: the user's own code; 1: the top-level run;
2: an agent run as a tool). Set by ``seam.DurableAgentRunner.run``."""

CARRY_KEY = "$durableAgents"
"""The member of a version-3 orchestration input that carries the runner's state into the next generation."""


@dataclasses.dataclass
class Carried:
    """What a version-3 run carries across continue-as-new (docs/internals.md "Bounded history"), as the member
    :data:`CARRY_KEY` of the next generation's input: ``{"generation", "startedAt", "turns", "lastTool", "demo",
    "children", "usage", "decided", "approvedCalls", "checked", "mcpTools"?, "resume"?}``.

    ``resume`` is present when the runner itself continued the run at K model turns: ``{"agent": <name of the
    agent whose turn is next>, "items": <the run's input items so far, JSON>, "turnsUsed": <model turns of the
    top-level run so far, for max_turns>}``; the first top-level ``Runner.run`` of the next generation consumes it.
    Everything else is the run's whole-run view: progress, usage, the decided approvals the custom status shows
    (at most ``MAX_DECIDED_APPROVALS``), the tool calls people approved, the approval checks' earlier calls and the
    MCP servers' tool listings (``durable_agents._mcp``: listed once per run).
    """

    generation: int = 0
    started_at: str | None = None
    turns: int = 0
    last_tool: str | None = None
    demo: bool = False
    children: tuple[str, ...] = ()
    usage: dict[str, int] | None = None
    decided: tuple[Any, ...] = ()
    approved_calls: tuple[str, ...] = ()
    checked: dict[str, list[tuple[str, Any]]] = dataclasses.field(default_factory=dict)
    mcp_tools: dict[str, list[Any]] = dataclasses.field(default_factory=dict)
    resume: dict[str, Any] | None = None
    archive: dict[str, Any] | None = None  # the previous generation's timeline, written by this one's first step

    @classmethod
    def from_input(cls, data: dict[str, Any]) -> Carried:
        """The state an orchestration input carries (defaults for generation 0 and anything malformed)."""
        raw = data.get(CARRY_KEY)
        if not isinstance(raw, dict):
            return cls()

        def number(name: str) -> int:
            value = raw.get(name)
            return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0

        usage: dict[str, Any] = raw["usage"] if isinstance(raw.get("usage"), dict) else {}
        checked: dict[str, Any] = raw["checked"] if isinstance(raw.get("checked"), dict) else {}
        resume = raw.get("resume")
        mcp: dict[str, Any] = raw["mcpTools"] if isinstance(raw.get("mcpTools"), dict) else {}
        return cls(
            mcp_tools={str(k): v for k, v in mcp.items() if isinstance(v, list)},
            generation=number("generation"),
            started_at=raw.get("startedAt") if isinstance(raw.get("startedAt"), str) else None,
            turns=number("turns"),
            last_tool=raw.get("lastTool") if isinstance(raw.get("lastTool"), str) else None,
            demo=raw.get("demo") is True,
            children=tuple(c for c in raw.get("children") or () if isinstance(c, str)),
            usage={k: int(usage.get(k) or 0) for k in ("requests", "inputTokens", "outputTokens", "totalTokens")}
            if usage else None,
            decided=tuple(d for d in raw.get("decided") or () if isinstance(d, dict)),
            approved_calls=tuple(c for c in raw.get("approvedCalls") or () if isinstance(c, str)),
            checked={str(name): [(str(pair[0]), pair[1]) for pair in calls if isinstance(pair, list) and len(pair) == 2]
                     for name, calls in checked.items() if isinstance(calls, list)},
            resume=resume if isinstance(resume, dict) and isinstance(resume.get("items"), list) else None,
            archive=raw["archive"] if isinstance(raw.get("archive"), dict) else None,
        )

    def restore(self, session: Session) -> None:
        """Put the carried whole-run state into ``session`` (generation start)."""
        session.progress.turns = self.turns
        session.progress.last_tool = self.last_tool
        session.progress.demo = self.demo
        session.progress.children = self.children
        if self.usage is not None:
            session.usage = dict(self.usage)
            session.progress.usage = (self.usage["requests"], self.usage["inputTokens"],
                                      self.usage["outputTokens"], self.usage["totalTokens"])
        session.approved_calls = set(self.approved_calls)
        session.checked = {name: list(calls) for name, calls in self.checked.items()}
        if self.mcp_tools:  # the run's MCP tool listings: listed once per run, not once per generation
            from .._mcp import _run_listings

            _run_listings(session).update({k: list(v) for k, v in self.mcp_tools.items()})
        if self.resume is not None and isinstance(self.resume.get("agent"), str):
            session.progress.current_agent = self.resume["agent"]

    @staticmethod
    def next_input(session: Session, base: Any, decided: list[Any], started_at: str,
                   resume: dict[str, Any] | None, archive: dict[str, Any] | None = None) -> Any:
        """The next generation's input: ``base`` (a dict) with :data:`CARRY_KEY` set from ``session``; ``base``
        unchanged when it is not a dict (the user's own continue-as-new value) or the run is older than
        version 3."""
        if session.version < 3 or not isinstance(base, dict):
            return base
        carry: dict[str, Any] = {
            "generation": session.carried.generation + 1,
            "startedAt": session.carried.started_at or started_at,
            "turns": session.progress.turns,
            "lastTool": session.progress.last_tool,
            "demo": bool(session.progress.demo),
            "children": list(session.progress.children),
            "usage": dict(session.usage),
            "decided": list(decided),
            "approvedCalls": sorted(session.approved_calls),
            "checked": {name: [[cid, args] for cid, args in calls] for name, calls in session.checked.items()},
        }
        from .._mcp import _run_listings

        listings = {k: v for k, v in _run_listings(session).items() if isinstance(v, list)}
        if listings:
            carry["mcpTools"] = listings
        if resume is not None:
            carry["resume"] = resume
        if archive is not None:
            carry["archive"] = archive
        return {**base, CARRY_KEY: carry}


class LoggedStep:
    """A step of a session's log: the step, its outcome once answered (``PENDING`` before), and the episode's
    ``current_utc_datetime`` after it resolved (``now``)."""

    PENDING: Any = _PENDING
    __slots__ = ("step", "outcome", "now", "compact")

    def __init__(self, step: Step, outcome: Any = _PENDING, now: dt.datetime | None = None) -> None:
        self.step = step
        self.outcome = outcome
        self.now = now
        self.compact: Step | None = None  # memo of steps.compact(step), see episode.resume_cached

    @property
    def resolved(self) -> bool:
        """True once the step's outcome is known."""
        return self.outcome is not _PENDING


class _IdleSelector(selectors.DefaultSelector):
    """A selector that reports when its event loop is idle (see the module docstring)."""

    def __init__(self, on_idle: Callable[[], bool]) -> None:
        super().__init__()
        self._on_idle = on_idle

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if (timeout is None or timeout > 0) and self._on_idle():
            timeout = 0  # the flush answered calls: their callbacks are ready now, do not block
        return super().select(timeout)


_live_lock = threading.Lock()
_live: weakref.WeakSet[Session] = weakref.WeakSet()


def live_sessions() -> list[Session]:
    """Every session whose worker thread was started and that is still referenced."""
    with _live_lock:
        return list(_live)


def live_worker_count() -> int:
    """Number of worker threads of the runner that are still running (diagnostics and tests)."""
    return sum(1 for session in live_sessions() if session.thread_alive)


class Session:
    """One agent run: the worker thread running the user's function and the log of its durable steps.

    Hand-off: the threads exchange the messages of :mod:`.steps` over two ``queue.SimpleQueue`` (C implementation,
    no Python-level ``Condition``; ``put`` is reentrant, so :meth:`abandon` is safe from any thread, even from a
    finalizer). ``key`` identifies the execution for the session cache: ``(instance_id, execution key)``.
    """

    def __init__(
        self,
        instance_id: str,
        orchestration_input: Any,
        fn: Callable[..., Any],
        agent: str | None,
        key: tuple[str, str] | None = None,
    ) -> None:
        self.instance_id = instance_id
        self.key = key or (instance_id, "")
        self.input = orchestration_input
        data = orchestration_input if isinstance(orchestration_input, dict) else {}
        self.settings: dict[str, Any] = dict(data.get("settings") or {})
        customer = data.get("customer")
        self.customer: str | None = customer if isinstance(customer, str) and customer else None
        version = data.get("version")
        self.version: int = version if isinstance(version, int) and not isinstance(version, bool) else 1
        self.approved_calls: set[str] = set()  # tool call ids a person approved in this run (ToolCall.approved)
        self.checked: dict[str, list[tuple[str, Any]]] = {}  # approval check name -> (call id, arguments) checked
        self.fn = fn
        agent_name = agent or data.get("agent")
        self.progress = Progress(agent=agent_name, current_agent=agent_name)
        self.usage = {"requests": 0, "inputTokens": 0, "outputTokens": 0, "totalTokens": 0}
        self.stored_inputs: list[tuple[list[Any], str]] = []  # (model input as sent, inputRef): recent calls
        self.generation_turns = 0  # model turns of the top-level run in this generation (execution)
        self.top_runs = 0  # top-level Runner.run calls in progress (continue-as-new needs exactly one)
        self.outside_work = False  # the user's own code (outside any Runner.run) submitted a durable call
        self.carried = Carried.from_input(data) if self.version >= 3 else Carried()
        self.carried.restore(self)
        self.pending_archive = self.carried.archive  # sent with this generation's first step (_flush_if_pending)
        self.log: list[LoggedStep] = []
        self.now = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        self.replaying = False  # context.is_replaying of the episode that answered the last step
        self.abandoned = False
        self.finished = False
        self._to_gen: queue.SimpleQueue[WorkerMessage] = queue.SimpleQueue()
        self._to_worker: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._worker_turn = False  # strict alternation: True while the worker thread runs
        self._batch: list[tuple[Call, asyncio.Future[Any], bool]] = []  # (call, its future, awaited on its own)
        self._inflight: dict[int, asyncio.Future[Any]] = {}  # keys of calls sent in "any" steps, not finished yet
        self._cancels: list[int] = []  # in-flight timers cancelled by the user's code, not yet sent
        self._next_key = 0
        self._flush_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None  # the worker's own loop (with the idle selector)
        self._closing = False  # the user's function has ended: no more durable calls

    @property
    def trace(self) -> dict[str, Any] | None:
        """The run input's ``trace`` member (``{"traceparent"}`` of the request that started the run) or ``None``;
        the runner copies it into the inputs of the activities that emit spans (docs/internals.md "Traces")."""
        trace = self.input.get(TRACE_MEMBER) if isinstance(self.input, dict) else None
        return trace if isinstance(trace, dict) else None

    # -- generator side ------------------------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The worker thread's event loop (``None`` before the worker started)."""
        return self._loop

    def advance(self, outcome: Any, now: dt.datetime, replaying: bool = False) -> WorkerMessage:
        """Start the worker (first call) or answer its pending step with ``outcome``; block until its next message.

        ``now`` becomes the worker's ``context.current_utc_datetime``. Returns :class:`StepRequest` (logged),
        :class:`RunFinished`, :class:`RunFailed` or :class:`RunAbandoned` (the session was abandoned, e.g. evicted
        from the cache by another thread, before or while it ran).
        """
        assert not self._worker_turn or self.abandoned, "the generator answered while the worker thread was running"
        self.now = now
        self.replaying = replaying
        if self._thread is None:
            if self.abandoned:
                return RunAbandoned()
            self._thread = threading.Thread(
                target=self._worker_main, name=f"durable-agent-{self.instance_id}", daemon=True
            )
            with _live_lock:
                _live.add(self)
            self._worker_turn = True
            self._thread.start()
        else:
            logged = self.log[-1]
            logged.outcome, logged.now = outcome, now
            self._worker_turn = True
            self._to_worker.put(StepAnswer(outcome))
        message = self._to_gen.get()
        if isinstance(message, StepRequest):
            self.log.append(LoggedStep(message.step))
        else:
            self.finished = True
        return message

    def abandon(self, join_timeout: float | None = None) -> None:
        """Unwind the worker thread (it raises :class:`Abandoned` at its pending durable call).

        Never blocks unless ``join_timeout`` is given: then it waits up to that many seconds for the worker thread
        to end (not when called from the worker thread itself).
        """
        if not self.abandoned:
            self.abandoned = True
            if self._thread is not None and not self.finished:
                self._to_worker.put(ABANDON)
        thread = self._thread
        if join_timeout is not None and thread is not None and thread is not threading.current_thread():
            thread.join(join_timeout)

    @property
    def thread_alive(self) -> bool:
        """True while the worker thread runs (it ends after the run finished or unwound)."""
        return self._thread is not None and self._thread.is_alive()

    # -- worker side ---------------------------------------------------------------------------------------------

    def _to_generator(self, message: WorkerMessage) -> None:
        assert self._worker_turn or self.abandoned, "the worker thread sent a message while the generator was running"
        self._worker_turn = False
        self._to_gen.put(message)

    def _worker_main(self) -> None:
        from .context import OrchestrationContextView, run_user_function

        bind_session(self)
        self._loop = asyncio.SelectorEventLoop(_IdleSelector(self._flush_if_pending))
        asyncio.set_event_loop(self._loop)
        message: WorkerMessage
        try:
            view = OrchestrationContextView(self)
            output = run_user_function(self.fn, view, self._loop)
            message = RunAbandoned() if self.abandoned else RunFinished(
                output, cancel=tuple(self._cancels), continue_as_new=view.continued_as_new
            )
        except ContinueAsNew as signal:  # the top-level run reached K model turns: next generation (module doc)
            message = RunAbandoned() if self.abandoned else RunFinished(
                None, cancel=tuple(self._cancels), continue_as_new=(True, self.input), resume=signal.resume
            )
        except BaseException as exc:  # noqa: BLE001 - reported to the generator, which fails the orchestration
            message = RunAbandoned() if self.abandoned else RunFailed(exc)
        finally:
            self._closing = True
            bind_session(None)
            _close_thread_event_loop(self._loop)
        self._to_generator(message)

    def submit(self, call: Call, *, wait_any: bool = False) -> asyncio.Future[Any]:
        """Register a durable call from the worker's event loop; the future resolves with its outcome
        (:class:`CallOutcome` for activities, timers and events, a tuple of ``ApprovalDecision`` for approvals).

        Every activity, timer and event gets the session's next ``key``. ``wait_any`` marks a call the user's code
        awaits on its own or in ``task_any``: its step then waits for *any* call in flight (:data:`.steps.WaitMode`).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if self.abandoned or self._closing:
            future.set_exception(Abandoned())
            return future
        if RUN_DEPTH.get() == 0:  # the user's code did durable work while a run may be in progress: that run
            self.outside_work = True  # must not continue as new (restarting the function would repeat this work)
        if not isinstance(call, ApprovalsCall):
            call = dataclasses.replace(call, key=self._next_key)
            self._next_key += 1
        self._batch.append((call, future, wait_any))
        if loop is not self._loop and not self._flush_scheduled:
            self._flush_scheduled = True  # a loop the run made itself: no idle signal, flush next iteration
            loop.call_soon(self._flush_if_pending)
        return future

    def cancel_timer(self, future: asyncio.Future[Any]) -> bool:
        """Cancel the in-flight (or not yet sent) timer whose outcome ``future`` is; its Durable timer is cancelled
        with the next message to the generator. Returns False when the timer already fired."""
        if future.done():
            return False
        for index, (_, pending, _) in enumerate(self._batch):
            if pending is future:  # not sent yet: never scheduled
                del self._batch[index]
                future.cancel()
                return True
        for key, pending in list(self._inflight.items()):
            if pending is future:
                del self._inflight[key]
                self._cancels.append(key)
                future.cancel()
                return True
        return False

    async def call(self, call: Call, *, wait_any: bool = False) -> Any:
        """Submit ``call`` and wait for its outcome (see :meth:`submit`)."""
        return await self.submit(call, wait_any=wait_any)

    def _flush_if_pending(self) -> bool:
        """Hand the pending work to the generator as steps and resolve the futures with the answers.

        Activities, timers and events go first, as one fan-out: a ``wait="all"`` step when none of them is awaited
        on its own and nothing is in flight (the SDK's tool calls of one turn), else a ``wait="any"`` step over
        everything in flight. Then each approvals call is its own step. Returns whether anything was sent.
        """
        self._flush_scheduled = False
        if not self._batch and not self._inflight and not self._cancels:
            return False
        if self.pending_archive is not None and any(not isinstance(c, ApprovalsCall) for c, _, _ in self._batch):
            # The previous generation's timeline goes to the payload store with this generation's first calls
            # (docs/internals.md "Timeline and events"): no episode of its own. Nobody waits for its outcome.
            from .._timeline import ARCHIVE_ACTIVITY

            archive = ActivityCall(name=ARCHIVE_ACTIVITY, input=self.pending_archive, key=self._next_key)
            self._next_key += 1
            self.pending_archive = None
            assert self._loop is not None
            unawaited: asyncio.Future[Any] = self._loop.create_future()
            unawaited.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved: no asyncio warning
            self._batch.insert(0, (archive, unawaited, False))
        batch, self._batch = self._batch, []
        calls = [(c, f, a) for c, f, a in batch if not isinstance(c, ApprovalsCall)]
        approvals = [(c, f) for c, f, _ in batch if isinstance(c, ApprovalsCall)]
        steps: list[Step] = []
        # Calls already in flight alone make a wait-for-any step only when no approvals are asked for: an event
        # wait left over from a task_any must not hold a turn's approvals back (they are waited for first).
        if calls or self._cancels or (self._inflight and not approvals):
            inflight = tuple(sorted(self._inflight))
            wait: WaitMode = "any" if inflight or any(a for _, _, a in calls) else "all"
            leaves = tuple(c for c, _, _ in calls if not isinstance(c, ApprovalsCall))
            steps.append(CallsStep(leaves, self.progress.snapshot(), wait, inflight, tuple(self._cancels)))
            self._cancels.clear()
            if wait == "any":
                for call, future, _ in calls:
                    assert not isinstance(call, ApprovalsCall) and call.key is not None
                    self._inflight[call.key] = future
        steps += [ApprovalsStep(call.items, self.progress.snapshot(), call.timeout_ms) for call, _ in approvals]
        futures = [f for _, f, _ in calls] + [f for _, f in approvals]
        for index, step in enumerate(steps):
            self._to_generator(StepRequest(step))
            answer = self._to_worker.get()
            if answer is ABANDON:
                for future in futures + list(self._inflight.values()):
                    if not future.done():
                        future.set_exception(Abandoned())
                return True
            assert isinstance(answer, StepAnswer)
            if isinstance(step, ApprovalsStep):
                approvals[index - (len(steps) - len(approvals))][1].set_result(answer.outcome)
            elif step.wait == "all":
                for (_, future, _), outcome in zip(calls, answer.outcome, strict=True):
                    future.set_result(outcome)
            else:
                for key, outcome in answer.outcome:  # type: ignore[misc]
                    future = self._inflight.pop(int(key))
                    if not future.done():
                        future.set_result(outcome)
        return True

    async def call_activity_tool(self, tool: ActivityTool, args: dict[str, Any], ctx: Any) -> tuple[bool, Any]:
        """Run an activity tool as its activity (used by ``ActivityTool``); returns ``(ok, value_or_error)``."""
        agent = getattr(getattr(ctx, "agent", None), "name", None) or self.progress.current_agent or ""
        call = ToolCall(run_id=self.instance_id, call_id=ctx.tool_call_id, tool=tool.name, agent=agent,
                        customer=self.customer, approved=ctx.tool_call_id in self.approved_calls)
        self.progress.last_tool = tool.name
        payload: dict[str, Any] = dict(tool.activity_input(args, call))
        if self.trace is not None:  # the tool's span joins the trace of the request that started the run
            payload[TRACE_MEMBER] = self.trace
        outcome: CallOutcome = await self.call(
            ActivityCall(name=tool.activity_name, input=payload, retry=tool.retry)
        )
        return (True, outcome.value) if outcome.ok else (False, outcome.error)

    async def run_approval_check(
        self, name: str, retry: ToolRetry, arguments: dict[str, Any], call_id: str, tool: str
    ) -> bool:
        """Run the approval check activity ``name`` for one call (``durable_agents.approval_check``): record the call
        in this run's list for ``name``, then the activity's boolean answer; a failure or a non-boolean answer
        needs approval (fail closed)."""
        checked = self.checked.setdefault(name, [])
        earlier = tuple((cid, args) for cid, args in checked if cid != call_id)
        if all(cid != call_id for cid, _ in checked):
            checked.append((call_id, arguments))
        agent = self.progress.current_agent or ""
        check = ApprovalCheck(arguments, ToolCall(self.instance_id, call_id, tool, agent, self.customer), earlier,
                              {str(k): str(v) for k, v in self.settings.items()})
        outcome: CallOutcome = await self.call(ActivityCall(name=name, input=check.to_json(), retry=retry))
        return not (outcome.ok and outcome.value is False)

    async def wait_for_approvals(self, call: ApprovalsCall) -> tuple[ApprovalDecision, ...]:
        """Wait durably for every approval of ``call``; the decisions in item order.

        Version-2 runs append the requests to the approval audit first and the expiries after (one
        :data:`durable_agents._contracts.AUDIT_ACTIVITY` call each; an audit that fails after its retries is logged
        by the activity and does not hold the run). Tool calls a person approved are remembered for
        ``ToolCall.approved``."""
        from .._approval_audit import AUDIT_RETRY, audit_expiry_input, audit_request_input

        if self.version >= 2:
            await self.call(ActivityCall(name=AUDIT_ACTIVITY, input=audit_request_input(self.instance_id, call),
                                         retry=AUDIT_RETRY))
        decisions: tuple[ApprovalDecision, ...] = await self.call(call)
        for item, decision in zip(call.items, decisions, strict=True):
            if item.kind == "tool" and decision.get("decision") == "approved":
                self.approved_calls.add(item.id)
        expired = [(item, d) for item, d in zip(call.items, decisions, strict=True) if d.get("decision") == "expired"]
        if self.version >= 2 and expired:
            expiry: dict[str, Any] = dict(audit_expiry_input(self.instance_id, expired))
            if self.trace is not None:  # the expiry's approval span joins the start request's trace
                expiry[TRACE_MEMBER] = self.trace
            await self.call(ActivityCall(name=AUDIT_ACTIVITY, input=expiry, retry=AUDIT_RETRY))
        return decisions


def _close_thread_event_loop(own: asyncio.AbstractEventLoop | None = None) -> None:
    """Close the calling thread's default event loop (``Runner.run_sync`` leaves it open on purpose) and ``own``, the
    worker's own loop, when the user's code replaced it (``asyncio.run`` sets the thread's loop to ``None``).

    Runs in the worker thread when the user's function has returned or unwound: remaining tasks are cancelled and
    awaited, async generators shut down, the loop closed and unset. Without it the loop and any pending task of
    an abandoned run would be finalized later by the garbage collector in whatever thread triggers a collection
    (an orchestrator episode of another run, another worker), closing SDK coroutines outside their thread.
    """
    policy = asyncio.get_event_loop_policy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            current: asyncio.AbstractEventLoop | None = policy.get_event_loop()
        except RuntimeError:
            current = None
    try:
        for loop in {id(x): x for x in (current, own) if x is not None}.values():
            _close_loop(loop)
    finally:
        policy.set_event_loop(None)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and await the loop's remaining tasks, shut its async generators down and close it."""
    if loop.is_closed() or loop.is_running():
        return
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        with contextlib.suppress(BaseException):
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    with contextlib.suppress(BaseException):
        loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
