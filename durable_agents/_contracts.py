"""Wire shapes between the parts: internal, not part of the public API (the public names are re-exported by
``durable_agents``).

One module holds every JSON shape that crosses a process or history boundary, so the runner (which writes them
into Durable history and custom status) and the HTTP API (which reads them back) import the same definitions.
docs/internals.md shows each shape as JSON; change it there first, then here.

* :class:`OrchestrationInput` - what the HTTP API passes to ``start_new`` for an agent run.
* :class:`OrchestrationOutput` - what an agent orchestrator returns for a ``RunResult``.
* :class:`CustomStatus`, :class:`PendingApproval`, :class:`ApprovalDecision` - the run's progress.
* :class:`ApprovalEvent` - the payload of the external event ``approval:<id>``.
* :class:`InvokeModelInput`, :class:`InvokeModelResult`, :class:`ModelErrorInfo` - the ``invoke_model`` activity.
* :class:`ToolActivityInput`, :class:`ToolCallInfo` - the input of an activity tool.
* :class:`ToolRetry` - Durable retry options of an activity, as named fields.
* :func:`format_time` / :func:`parse_time` - the one time format of every JSON the product writes.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

import azure.durable_functions as df

__all__ = [
    "APPROVAL_EVENT_PREFIX",
    "AUDIT_ACTIVITY",
    "ApprovalDecision",
    "ApprovalEvent",
    "ApprovalKind",
    "CONVERSATION_IDLE_TIMEOUT_SETTING",
    "CONVERSATION_ORCHESTRATOR",
    "CustomStatus",
    "DEFAULT_CONVERSATION_IDLE_TIMEOUT",
    "DEFAULT_TURNS_PER_GENERATION",
    "Decision",
    "INVOKE_MODEL_ACTIVITY",
    "InvokeModelInput",
    "InvokeModelResult",
    "MAX_DECIDED_APPROVALS",
    "ModelErrorInfo",
    "OrchestrationInput",
    "OrchestrationOutput",
    "PendingApproval",
    "Principal",
    "RUN_VERSION",
    "TURNS_PER_GENERATION_SETTING",
    "ToolActivityInput",
    "ToolCallInfo",
    "ToolRetry",
    "UsageTotals",
    "approval_event_name",
    "format_time",
    "parse_iso_duration",
    "parse_time",
]

INVOKE_MODEL_ACTIVITY = "invoke_model"
"""Durable name of the model activity: every model call of every run (docs/internals.md "Activities")."""

AUDIT_ACTIVITY = "durable_agents_audit"
"""Durable name of the approval audit activity (version-2 runs; :mod:`durable_agents._approval_audit`)."""

APPROVAL_EVENT_PREFIX = "approval:"
"""External events that decide an approval are named ``approval:<approvalId>`` (docs/internals.md "Approvals")."""

MAX_DECIDED_APPROVALS = 50
"""How many decided approvals the custom status keeps (most recent last)."""

Decision = Literal["approved", "rejected", "expired"]
ApprovalKind = Literal["tool", "workflow"]
"""``tool``: a gated tool call the model made; ``workflow``: a step a workflow asked a person to approve."""


def approval_event_name(approval_id: str) -> str:
    """The external event name that decides ``approval_id``: ``"approval:<approval_id>"``."""
    return APPROVAL_EVENT_PREFIX + approval_id


class Principal(TypedDict):
    """Who did something: ``id`` is the identity provider's stable principal id (Entra ID object id, ``dev-<name>``
    for the local runtime's developer identity), ``name`` a display name (may be ``None``)."""

    id: str
    name: str | None


RUN_VERSION = 3
"""``version`` of the runs this library starts. Version 2 (``OrchestrationInput.version``) adds the approval audit
activity and activity-backed approval checks; version 3 continues-as-new every
:data:`TURNS_PER_GENERATION_SETTING` model turns. Runs without ``version`` (started before) replay as version 1,
without them, and each version replays without what later versions add, so an in-flight run survives the deploy
that adds them."""

TURNS_PER_GENERATION_SETTING = "AGENT_TURNS_PER_GENERATION"
"""The run setting K: a version-3 agent run or conversation continues-as-new after K model turns of one generation
(one execution), carrying its SDK state, so that no episode replays more than K turns."""

DEFAULT_TURNS_PER_GENERATION = 2
"""K when :data:`TURNS_PER_GENERATION_SETTING` is unset (see docs/internals.md "Bounded history" for the measurement
behind it)."""

CONVERSATION_IDLE_TIMEOUT_SETTING = "CONVERSATION_IDLE_TIMEOUT"
"""ISO 8601 duration after the last message (or answer) at which an idle conversation closes itself."""

DEFAULT_CONVERSATION_IDLE_TIMEOUT = "P7D"
""":data:`CONVERSATION_IDLE_TIMEOUT_SETTING` when unset."""

CONVERSATION_ORCHESTRATOR = "durable_agents_conversation"
"""The Durable orchestrator function of every conversation (one instance per conversation, any agent)."""


class OrchestrationInput(TypedDict):
    """Input of one agent run: ``{"agent", "input", "settings", "version"?, "customer"?, "startedBy"?}``.

    ``settings`` is the snapshot of the settings the run reads (``durable_agents.run_setting``), taken by whoever
    starts the run, so a changed app setting never changes a replay. ``version`` (absent = 1) is
    :data:`RUN_VERSION` for new runs. ``customer`` is whom the run acts for (``ToolCall.customer``; ``None``: nobody),
    ``startedBy`` the principal that started it (``None`` when started without an identity, e.g. by the test kit).
    """

    agent: str
    input: Any
    settings: dict[str, str]
    version: NotRequired[int]
    customer: NotRequired[str | None]
    startedBy: NotRequired[Principal | None]
    trace: NotRequired[dict[str, str]]  # {"traceparent": ...} of the HTTP request that started the run


class UsageTotals(TypedDict):
    """Token usage summed over a run's model calls."""

    requests: int
    inputTokens: int
    outputTokens: int
    totalTokens: int


class OrchestrationOutput(TypedDict):
    """Output of an agent orchestrator that returned a ``RunResult`` (runtime status ``Completed``)."""

    finalOutput: Any
    lastAgent: str
    turns: int
    usage: UsageTotals
    demo: bool


class PendingApproval(TypedDict):
    """Something that waits for a person's decision.

    ``kind`` ``tool``: ``id`` is the model's tool call id (unique within a run), ``tool`` the tool, ``arguments`` its
    arguments. ``kind`` ``workflow``: ``id`` is the workflow's approval id, ``tool`` the step's name (``plan``,
    ``draft``...), ``arguments`` the payload shown to the reviewer. ``summary`` is one line for the reviewer.
    """

    id: str
    kind: ApprovalKind
    tool: str
    summary: str
    arguments: Any
    requestedAt: str
    expiresAt: str
    argumentsHash: NotRequired[str]  # "sha256:<hex>" of the full arguments (version-2 runs); decisions are bound to it
    truncated: NotRequired[bool]  # true when the custom status shortened summary/arguments (the audit has them whole)
    runId: NotRequired[str]  # set by the HTTP API on an approval of one of the run's sub-orchestrations


class ApprovalDecision(TypedDict):
    """A decided approval as the custom status records it (``decision`` ``expired`` when the timer won)."""

    id: str
    kind: ApprovalKind
    tool: str
    decision: Decision
    comment: str | None
    decidedAt: str
    decidedBy: NotRequired[Principal | None]  # who decided (None: expired, or a decision raised without identity)


class CustomStatus(TypedDict):
    """The run's progress, set by the orchestrator in every episode (docs/internals.md "Custom status")."""

    agent: str | None
    currentAgent: str | None
    turns: int
    lastTool: str | None
    pendingApprovals: list[PendingApproval]
    approvals: list[ApprovalDecision]
    demo: bool
    children: NotRequired[list[str]]  # instance ids of the sub-orchestrations the run started (their approvals show)
    usage: NotRequired[UsageTotals]  # version 3: token usage so far, all generations


class ApprovalEvent(TypedDict):
    """Payload of the external event ``approval:<id>``, raised by the HTTP API.

    ``decidedBy`` is the deciding principal; ``argumentsHash`` the hash of the arguments the reviewer saw (the
    pending approval's ``argumentsHash``): a version-2 run rejects a decision whose hash is not the one it asked
    about (docs/internals.md "Approvals")."""

    approved: bool
    comment: str | None
    decidedBy: NotRequired[Principal | None]
    argumentsHash: NotRequired[str | None]


class ModelErrorInfo(TypedDict):
    """A classified model API error: ``type`` is the ``openai`` exception class name (``RateLimitError``...)."""

    type: str
    message: str
    status: int | None
    retryable: bool
    retryAfter: float | None


class InvokeModelInput(TypedDict):
    """Input of ``invoke_model``: the agent's model name (or ``None``: ``AGENT_MODEL``) and the encoded request
    (``durable_agents._model_io.encode_model_request``). Version-3 runs add ``run`` (the instance id): the request
    may then hold markers of payloads in the blob store (docs/internals.md "Payloads by reference")."""

    model: str | None
    request: dict[str, Any]
    run: NotRequired[str]
    agent: NotRequired[str]  # version 3: the agent whose model call it is (spans)
    trace: NotRequired[dict[str, str]]  # version 3, when the start request had a traceparent (spans)
    runStartedAt: NotRequired[str]  # version 3, a run orchestration's top-level run: its start (the run span)


class InvokeModelResult(TypedDict, total=False):
    """Result of ``invoke_model``: ``{"ok": true, "response", "demo", "inputRef"?}`` or ``{"ok": false, "error"}``.
    ``inputRef`` (version-3 runs): the blob reference under which the call stored its resolved input
    (docs/internals.md "Payloads by reference")."""

    ok: bool
    response: dict[str, Any]
    demo: bool
    error: ModelErrorInfo
    inputRef: str


class ToolCallInfo(TypedDict):
    """The ``call`` member of a tool activity's input (``durable_agents.ToolCall`` as JSON)."""

    runId: str
    callId: str
    tool: str
    agent: str
    customer: NotRequired[str | None]  # the run's customer (OrchestrationInput.customer)
    approved: NotRequired[bool]  # true when a person approved this very call in this run


class ToolActivityInput(TypedDict):
    """Input of an activity tool: the model's arguments and the identity of the call."""

    args: dict[str, Any]
    call: ToolCallInfo


@dataclass(frozen=True)
class ToolRetry:
    """Durable retry options of an activity (``call_activity_with_retry``).

    ``max_attempts`` counts the first attempt (3 = up to 2 retries); ``first_retry_interval_ms`` is the delay
    before the first retry in milliseconds. The Python SDK sends no backoff coefficient, so the extension uses 1:
    a constant interval (protocol §3.4). Raises ``ValueError`` for values below 1.
    """

    max_attempts: int = 3
    first_retry_interval_ms: int = 2000

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("ToolRetry.max_attempts must be >= 1")
        if self.first_retry_interval_ms < 1:
            raise ValueError("ToolRetry.first_retry_interval_ms must be >= 1 ms")

    def to_retry_options(self) -> df.RetryOptions:
        """The ``azure.durable_functions.RetryOptions`` for these settings."""
        return df.RetryOptions(
            first_retry_interval_in_milliseconds=self.first_retry_interval_ms,
            max_number_of_attempts=self.max_attempts,
        )


# ---------------------------------------------------------------------------------------------------------------
# Times


def format_time(value: dt.datetime) -> str:
    """UTC ISO 8601 with milliseconds and ``Z`` (``2026-01-01T00:00:00.000Z``): every time the product writes.

    A naive ``value`` is taken as UTC (``context.current_utc_datetime`` and the Durable client's times are UTC).
    """
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def parse_time(text: str) -> dt.datetime:
    """Parse a time written by :func:`format_time` (or any ISO 8601 time with ``Z`` or an offset) as aware UTC."""
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


_DURATION_RE = re.compile(
    r"^P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_iso_duration(text: str) -> dt.timedelta:
    """Parse an ISO 8601 duration without years/months (``P1D``, ``PT30M``, ``P1DT2H``, ``PT0.5S``).

    Raises ``ValueError`` for other forms (years and months have no fixed length) and for an empty duration.
    """
    upper = text.strip().upper() if text else ""
    match = _DURATION_RE.match(upper) if upper else None
    if not match or upper in ("P", "PT") or upper.endswith("T"):
        raise ValueError(f"not an ISO 8601 duration (weeks/days/hours/minutes/seconds): {text!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    return dt.timedelta(
        weeks=parts.get("weeks", 0),
        days=parts.get("days", 0),
        hours=parts.get("hours", 0),
        minutes=parts.get("minutes", 0),
        seconds=parts.get("seconds", 0),
    )
