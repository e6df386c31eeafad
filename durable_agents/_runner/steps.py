"""The vocabulary between the worker thread and the orchestrator generator (internal, not part of the public API).

The user's orchestrator function runs in a worker thread; everything durable it needs is a *call* (an activity,
a durable timer, the approvals of one turn). The bridge (:mod:`.bridge`) batches the calls made while the worker's
event loop had something runnable into one *step*; the episode (:mod:`.episode`) turns a step into Durable tasks
and answers with its *outcome*. Messages between the threads are these dataclasses, never ad-hoc dicts:

worker → generator: :class:`StepRequest`, :class:`RunFinished`, :class:`RunFailed`, :class:`RunAbandoned`;
generator → worker: :class:`StepAnswer`, or :data:`ABANDON`.

Steps compare by value (``==``): a step asked for again on replay must equal the one in the log, or the run is
non-deterministic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .._contracts import ApprovalDecision, ToolRetry

__all__ = [
    "ABANDON",
    "REPLAYED_INPUT_MARKER",
    "ActivityCall",
    "ApprovalItem",
    "ApprovalsCall",
    "ApprovalsStep",
    "Call",
    "CallKind",
    "CallOutcome",
    "CallsStep",
    "ContinueAsNew",
    "EventCall",
    "LeafCall",
    "Progress",
    "RunAbandoned",
    "RunFailed",
    "RunFinished",
    "Step",
    "StepAnswer",
    "StepRequest",
    "SubOrchestratorCall",
    "TimerCall",
    "WaitMode",
    "WorkerMessage",
    "compact",
]

CallKind = Literal["activity", "timer", "event", "suborchestration", "approvals"]
"""The kinds of durable call: the ``kind`` of :class:`ActivityCall`, :class:`TimerCall`, :class:`EventCall`,
:class:`SubOrchestratorCall`, :class:`ApprovalsCall`."""

WaitMode = Literal["all", "any"]
"""How a calls step waits: ``all`` (every new call finished: the SDK's fan-outs, the extension's ``WhenAll``) or
``any`` (at least one call in flight finished: the user's ``task_any``, events, timers, anything awaited alone)."""

REPLAYED_INPUT_MARKER = {"$durableAgents": "input omitted: this activity is already scheduled in the history"}
"""The activity input of a re-yielded step whose ``TaskScheduled`` is already in the history (never executed)."""


@dataclass(frozen=True)
class ActivityCall:
    """Call the activity ``name`` with JSON ``input``; ``retry`` gives Durable retry options (``None``: no retry).

    ``key`` identifies the call within its session (assigned by :meth:`.bridge.Session.submit`, in submission order,
    so the same on every replay); a call stays *in flight* under its key until its outcome is answered.
    """

    kind: ClassVar[CallKind] = "activity"
    name: str
    input: Any
    retry: ToolRetry | None = None
    key: int | None = None


@dataclass(frozen=True)
class TimerCall:
    """Wait on a durable timer: ``delay_ms`` milliseconds after the episode's ``current_utc_datetime``, or at
    ``fire_at`` (ISO 8601, from ``context.create_timer``) when given."""

    kind: ClassVar[CallKind] = "timer"
    delay_ms: int = 0
    fire_at: str | None = None
    key: int | None = None


@dataclass(frozen=True)
class EventCall:
    """Wait for the external event ``name`` (``context.wait_for_external_event``); the outcome's value is its data."""

    kind: ClassVar[CallKind] = "event"
    name: str
    key: int | None = None


@dataclass(frozen=True)
class ApprovalItem:
    """One thing that needs a person's decision: a tool call (``kind="tool"``, ``id`` the model's call id) or a
    workflow step (``kind="workflow"``); ``arguments`` is JSON, ``summary`` one line for the reviewer."""

    id: str
    tool: str
    arguments: Any
    kind: str = "tool"
    summary: str = ""

    @property
    def arguments_hash(self) -> str:
        """``"sha256:<hex>"`` of the canonical JSON of ``arguments`` (:func:`durable_agents._audit.arguments_hash`),
        the value a decision is bound to."""
        from .._audit import arguments_hash

        return arguments_hash(self.arguments)


@dataclass(frozen=True)
class ApprovalsCall:
    """Wait for a decision on every item (one turn's approvals); answered with their decisions in item order.
    ``timeout_ms`` overrides the run's ``APPROVAL_TIMEOUT`` (milliseconds)."""

    kind: ClassVar[CallKind] = "approvals"
    items: tuple[ApprovalItem, ...]
    timeout_ms: int | None = None


@dataclass(frozen=True)
class SubOrchestratorCall:
    """Run the orchestrator ``name`` as a sub-orchestration with JSON ``input`` (``instance_id`` ``None``: the
    Durable SDK's deterministic default); ``retry`` as for activities. The outcome's value is its output."""

    kind: ClassVar[CallKind] = "suborchestration"
    name: str
    input: Any
    instance_id: str | None = None
    retry: ToolRetry | None = None
    key: int | None = None


LeafCall = ActivityCall | TimerCall | EventCall | SubOrchestratorCall
Call = LeafCall | ApprovalsCall


@dataclass(frozen=True)
class CallOutcome:
    """The outcome of an activity or timer: ``ok`` with ``value`` (the activity result; ``None`` for a timer), or
    not ``ok`` with ``error`` (the failure text after the activity's retries)."""

    ok: bool
    value: Any = None
    error: str | None = None


@dataclass
class Progress:
    """The run's progress as the custom status shows it (``agent``, ``currentAgent``, ``turns``, ``lastTool``,
    ``demo``); the session updates it, every step carries a frozen copy."""

    agent: str | None
    current_agent: str | None
    turns: int = 0
    last_tool: str | None = None
    demo: bool = False
    custom: Any = None  # the user's context.set_custom_status value (JSON), merged into the custom status
    children: tuple[str, ...] = ()  # instance ids of the sub-orchestrations started so far
    usage: tuple[int, int, int, int] | None = None  # version 3: (requests, input, output, total tokens) so far

    def snapshot(self) -> Progress:
        """A copy for a step (steps compare by value, progress included)."""
        return dataclasses.replace(self)


@dataclass(frozen=True)
class CallsStep:
    """Calls scheduled together (one fan-out), then a wait (:data:`WaitMode`).

    ``wait="all"``: the outcome is a tuple of :class:`CallOutcome` in call order, every new call finished.
    ``wait="any"``: the step also waits on the calls still in flight under ``inflight`` (keys from earlier steps);
    the outcome is a tuple of ``(key, CallOutcome)`` of every call that has finished, ascending keys, at least one.
    ``cancel`` lists in-flight timer keys to cancel first (``timer.cancel()`` in the user's code).
    """

    calls: tuple[LeafCall, ...]
    progress: Progress
    wait: WaitMode = "all"
    inflight: tuple[int, ...] = ()
    cancel: tuple[int, ...] = ()


@dataclass(frozen=True)
class ApprovalsStep:
    """The approvals of one turn, waited for together; the outcome is a tuple of :class:`ApprovalDecision`."""

    items: tuple[ApprovalItem, ...]
    progress: Progress
    timeout_ms: int | None = None


Step = CallsStep | ApprovalsStep


def compact(step: Step) -> Step:
    """``step`` with every activity input replaced by :data:`REPLAYED_INPUT_MARKER` (for the cached path only).

    Safe for a step resolved in an earlier episode of the same execution: a completion of each of its activities
    reached this process, and the extension only sends an activity's message when the episode that scheduled it
    commits, so its ``TaskScheduled`` is in the committed, append-only history. The extension replays an
    already-scheduled action by kind and name only, never its input (protocol §3.2), so the re-yielded action
    creates no new work, even when this episode retries one whose commit failed (such an episode can only have
    resolved steps whose scheduling committed earlier; the step it left pending is re-yielded in full). Without
    this, every episode re-serialized every past model input, each carrying the whole conversation: O(n²) bytes.
    """
    if isinstance(step, ApprovalsStep):
        return step
    calls = tuple(
        dataclasses.replace(call, input=REPLAYED_INPUT_MARKER)
        if isinstance(call, ActivityCall | SubOrchestratorCall) else call
        for call in step.calls
    )
    return dataclasses.replace(step, calls=calls)


# -- messages between the threads ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepRequest:
    """worker → generator: run this step and answer with its outcome."""

    step: Step


@dataclass(frozen=True)
class RunFinished:
    """worker → generator: the user's function returned ``output``; ``cancel`` lists in-flight timers to cancel
    first; ``continue_as_new`` is ``(True, input)`` when the function called ``context.continue_as_new(input)`` or
    the runner continued the run at K model turns (then ``resume`` is what the next generation resumes from)."""

    output: Any
    cancel: tuple[int, ...] = ()
    continue_as_new: tuple[bool, Any] = (False, None)
    resume: dict[str, Any] | None = None


class ContinueAsNew(BaseException):  # noqa: N818 - a control-flow signal, like GeneratorExit
    """Raised in the worker by the top-level run's model call when the generation has had K model turns: it unwinds
    the SDK run and the user's function (a BaseException, so ``except Exception`` lets it pass), and the worker
    reports :class:`RunFinished` with ``resume`` (``{"agent", "items", "turnsUsed"}``)."""

    def __init__(self, resume: dict[str, Any]) -> None:
        super().__init__("continue-as-new")
        self.resume = resume


@dataclass(frozen=True)
class RunFailed:
    """worker → generator: the user's function raised ``error`` (the orchestration fails with it)."""

    error: BaseException


@dataclass(frozen=True)
class RunAbandoned:
    """worker → generator: the session was abandoned (evicted, replaced) before or while it ran."""


WorkerMessage = StepRequest | RunFinished | RunFailed | RunAbandoned


@dataclass(frozen=True)
class StepAnswer:
    """generator → worker: the outcome of the pending step (tuple of :class:`CallOutcome` for a calls step,
    tuple of :class:`ApprovalDecision` for an approvals step)."""

    outcome: tuple[CallOutcome, ...] | tuple[tuple[int, CallOutcome], ...] | tuple[ApprovalDecision, ...]


class _Abandon:
    """generator → worker: unwind (the worker raises at its pending durable call)."""

    def __repr__(self) -> str:
        return "ABANDON"


ABANDON = _Abandon()
"""The message that tells the worker to unwind."""
