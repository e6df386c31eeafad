"""Conversations: durable multi-turn threads with an agent (internal, not part of the public API).

A conversation is ONE durable orchestration (instance id = conversation id) of the orchestrator
:data:`~durable_agents._contracts.CONVERSATION_ORCHESTRATOR`, one for every agent, registered by ``durable_agents.App``
(docs/internals.md "Conversations" is the contract; change it there first). Three parts live here:

* :class:`ConversationLog`: the message log on the blob store (``durable_agents._blobs``), the source of truth for
  messages. Under ``run_prefix(<conversation id>)``: ``conversation.json`` (who, for whom, when), one blob per
  message (``messages/<seq:08d>-0.json`` the user's, ``messages/<seq:08d>-1.json`` the answer to it) and
  ``closed.json`` once closed. The HTTP API writes user messages and ``closed.json``, the orchestration's
  activities read them and write the answers.
* the two activities :data:`INBOX_ACTIVITY` (read the user messages after a sequence number; optionally close for
  idleness first) and :data:`REPLY_ACTIVITY` (write one answer, idempotent).
* :func:`conversation_function`: the orchestrator loop (an agent orchestrator function, run by the durable runner
  in its worker thread): read the inbox, answer each message with the agent's own orchestrator function, then wait
  durably for ``message:<next seq>`` (raised after a user message and after a close) or the idle timer;
  continue-as-new after K model turns.

External events only wake the orchestration; their payloads are never read (azure-functions-durable 1.7 keeps only
the last buffered event of one name, and the extension drops unconsumed buffered events at continue-as-new), so the
log is the truth and every user message has its own event name ``message:<seq>``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import pydantic_core
from agents import RunResult

from ._contracts import (
    CONVERSATION_IDLE_TIMEOUT_SETTING,
    CONVERSATION_ORCHESTRATOR,
    DEFAULT_CONVERSATION_IDLE_TIMEOUT,
    DEFAULT_TURNS_PER_GENERATION,
    TURNS_PER_GENERATION_SETTING,
    Principal,
    UsageTotals,
    format_time,
    parse_iso_duration,
    parse_time,
)
from ._errors import NonDeterminismError
from ._run_settings import run_setting
from ._runner import compact_history

if TYPE_CHECKING:
    from ._registry import AgentRegistry

__all__ = [
    "CLOSE_EVENT",
    "CONVERSATION_KIND",
    "ConversationLog",
    "ConversationState",
    "INBOX_ACTIVITY",
    "INBOX_MAX_BYTES",
    "INBOX_PAGE_SIZE",
    "MESSAGE_EVENT_PREFIX",
    "MAX_TIMER",
    "MESSAGE_ID_PATTERN",
    "REPLY_ACTIVITY",
    "close_event_name",
    "conversation_function",
    "conversation_input",
    "message_event_name",
    "message_id",
    "read_inbox",
    "register_conversation_functions",
    "write_reply",
]

CONVERSATION_KIND = "conversation"
"""``kind`` of a conversation's orchestration input (an agent run's input has no ``kind``)."""

INBOX_ACTIVITY = "durable_agents_conversation_inbox"
"""Durable name of the activity that reads a conversation's new user messages (:func:`read_inbox`)."""

REPLY_ACTIVITY = "durable_agents_conversation_reply"
"""Durable name of the activity that writes one answer (:func:`write_reply`)."""

MESSAGE_EVENT_PREFIX = "message:"
"""A user message with sequence number N is announced by the external event ``message:<N>`` (payload
``{"seq": N}``, never read)."""

CLOSE_EVENT = "close"
"""The ``reason``-less name of a close in docs; a close is announced as :func:`close_event_name` gives."""

INBOX_PAGE_SIZE = 20
"""At most this many user messages per inbox read."""

INBOX_MAX_BYTES = 256 * 1024
"""An inbox page stops before the messages' JSON passes this many bytes (always at least one message), so that the
activity output stays well under the Durable Task Scheduler's 1 MB payload limit."""

MESSAGE_ID_PATTERN = re.compile(r"[0-9]{8}-[01]")
"""A message id: ``<seq:08d>-0`` (the user's message ``seq``) or ``<seq:08d>-1`` (the answer to it). Ids sort
lexicographically in conversation order, so an id is also the cursor of ``GET messages?after=``."""

MAX_TIMER = dt.timedelta(days=3)
"""The longest durable timer the loop creates; a longer idle timeout is waited for in such steps. A longer timer
would be a "long timer" of azure-functions-durable 1.7, whose ``cancel()`` does not cancel the timer it actually
schedules (``LongTimerTask.cancel`` marks only its own action), so the orchestration could not complete while it
runs; 3 days is under every backend's limit for one timer (Azure Storage: 6 days)."""

_MAX_SEQ = 99_999_999
_MESSAGES = "messages/"


def message_event_name(seq: int) -> str:
    """The external event that announces user message ``seq``: ``"message:<seq>"``."""
    return f"{MESSAGE_EVENT_PREFIX}{seq}"


def close_event_name(log: ConversationLog) -> str:
    """The external event that announces a close of ``log``'s conversation: ``message:<last user seq + 1>``, the
    one event the orchestration waits for while idle (it then reads ``closed.json`` from the log).

    One name per wait, and only one wait open at a time: the runner keeps every event wait of a ``task_any`` that
    lost in flight, and an approval inside a later turn would queue behind such a wait (a ``close`` wait beside the
    message wait would hold every approval after the first message). A close while a turn runs leaves the event
    buffered; the orchestration reads ``closed.json`` in its next inbox read anyway."""
    return message_event_name(log.last_seq() + 1)


def message_id(seq: int, role: str) -> str:
    """The id of the message ``seq`` of ``role`` (``"user"`` → ``<seq:08d>-0``, ``"assistant"`` → ``-1``)."""
    return f"{seq:08d}-{0 if role == 'user' else 1}"


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _decode(data: bytes | None) -> Any:
    if data is None:
        return None
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None


def _now() -> str:
    return format_time(dt.datetime.now(dt.UTC))


def _store(app_dir: str | Path | None) -> Any:
    from ._blobs import get_blob_store

    return get_blob_store(app_dir)


class ConversationLog:
    """The message log of one conversation on a blob store (module docstring; docs/internals.md "Conversations").

    ``store`` is a ``durable_agents._blobs.BlobStore`` (default ``get_blob_store(app_dir)``). Every blob of the
    conversation lives under ``run_prefix(conversation_id)``, so purging the run's blobs purges the conversation.
    Messages are JSON objects: user ``{"id", "seq", "role": "user", "content", "createdAt", "by": Principal}``,
    assistant ``{"id", "seq", "role": "assistant", "content", "agent", "toolCalls": [{"tool", "ok"}], "usage",
    "createdAt", "error"}``. Thread- and process-safe as far as the store's create-if-absent is atomic.
    """

    def __init__(self, conversation_id: str, store: Any = None, *, app_dir: str | Path | None = None) -> None:
        from ._blobs import run_prefix

        self.conversation_id = conversation_id
        self.store = store if store is not None else _store(app_dir)
        self.prefix = run_prefix(conversation_id)

    # -- conversation.json, closed.json -------------------------------------------------------------------------

    def create(self, record: dict[str, Any]) -> bool:
        """Write ``conversation.json`` (``{"id", "agent", "customer", "startedBy", "createdAt"}``) unless it exists;
        returns False when it existed (the id is taken)."""
        return bool(self.store.put(self.prefix + "conversation.json", _encode(record), overwrite=False))

    def info(self) -> dict[str, Any] | None:
        """The ``conversation.json`` object, or ``None``."""
        value = _decode(self.store.get(self.prefix + "conversation.json"))
        return value if isinstance(value, dict) else None

    def closed(self) -> dict[str, Any] | None:
        """The ``closed.json`` object ``{"closedAt", "by", "reason"}``, or ``None`` while the conversation is open."""
        value = _decode(self.store.get(self.prefix + "closed.json"))
        return value if isinstance(value, dict) else None

    def close(self, by: Principal | None, reason: str, now: str | None = None) -> tuple[dict[str, Any], bool]:
        """Write ``closed.json`` unless it exists: ``({"closedAt", "by", "reason"}, True)``; when it existed, the one
        written first and ``False``. ``reason`` is ``"closed"`` (a caller) or ``"idle"`` (the idle timer)."""
        record = {"closedAt": now or _now(), "by": by, "reason": reason}
        if self.store.put(self.prefix + "closed.json", _encode(record), overwrite=False):
            return record, True
        return self.closed() or record, False

    # -- messages -----------------------------------------------------------------------------------------------

    def _name(self, mid: str) -> str:
        return f"{self.prefix}{_MESSAGES}{mid}.json"

    def message_ids(self) -> list[str]:
        """Every message id, ascending (conversation order)."""
        start = len(self.prefix) + len(_MESSAGES)
        ids = [name[start:-5] for name in self.store.list(self.prefix + _MESSAGES) if name.endswith(".json")]
        return sorted(mid for mid in ids if MESSAGE_ID_PATTERN.fullmatch(mid))

    def read(self, ids: list[str]) -> list[dict[str, Any]]:
        """The messages ``ids`` that exist, in the given order."""
        found = (_decode(self.store.get(self._name(mid))) for mid in ids)
        return [message for message in found if isinstance(message, dict)]

    def messages(self, after: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """The messages with ids greater than ``after`` (all when ``None``), ascending, at most ``limit``."""
        ids = [mid for mid in self.message_ids() if after is None or mid > after]
        return self.read(ids if limit is None else ids[:limit])

    def last_seq(self) -> int:
        """The highest user message sequence number (0 when there is none)."""
        seqs = [int(mid[:8]) for mid in self.message_ids() if mid.endswith("-0")]
        return max(seqs, default=0)

    def append_user(self, content: str, by: Principal | None, now: str | None = None) -> dict[str, Any]:
        """Append a user message and return it (its ``seq`` is the last one + 1).

        Allocation is a create-if-absent of ``messages/<seq>-0.json``; when a concurrent writer took ``seq``, the
        next one is tried, so concurrent appends get distinct, consecutive numbers. Raises ``RuntimeError`` past
        99,999,999 messages.
        """
        seq = self.last_seq() + 1
        created = now or _now()
        while seq <= _MAX_SEQ:
            mid = message_id(seq, "user")
            message: dict[str, Any] = {"id": mid, "seq": seq, "role": "user", "content": content,
                                       "createdAt": created, "by": by}
            if self.store.put(self._name(mid), _encode(message), overwrite=False):
                return message
            seq += 1
        raise RuntimeError(f"conversation {self.conversation_id!r} has no message numbers left")

    def delete_message(self, mid: str) -> bool:
        """Delete the message ``mid``; returns whether it existed."""
        return bool(self.store.delete(self._name(mid)))

    def put_reply(self, message: dict[str, Any]) -> None:
        """Write an assistant message (``message["seq"]`` is the user message it answers); overwrites, so a retried
        activity writes the same blob again."""
        seq = int(message["seq"])
        mid = message_id(seq, "assistant")
        self.store.put(self._name(mid), _encode({**message, "id": mid}), overwrite=True)

    def user_messages(self, after_seq: int, limit: int = INBOX_PAGE_SIZE,
                      max_bytes: int = INBOX_MAX_BYTES) -> tuple[list[dict[str, Any]], bool]:
        """``(messages, more)``: the user messages with ``seq > after_seq``, ascending, at most ``limit`` and at most
        ``max_bytes`` of JSON (always at least one); ``more`` tells whether further ones were left for the next
        page."""
        ids = [mid for mid in self.message_ids() if mid.endswith("-0") and int(mid[:8]) > after_seq]
        page: list[dict[str, Any]] = []
        size = 0
        for index, mid in enumerate(ids):
            if len(page) >= limit:
                return page, True
            found = self.read([mid])
            if not found:
                continue
            message = found[0]
            size += len(_encode(message))
            if page and size > max_bytes:
                return page, True
            page.append(message)
            if index == len(ids) - 1:
                break
        return page, False


# ---------------------------------------------------------------------------------------------------------------
# The activities


def read_inbox(payload: dict[str, Any], *, app_dir: str | Path | None = None, store: Any = None) -> dict[str, Any]:
    """The :data:`INBOX_ACTIVITY`: ``{"conversation": id, "after": N, "close": null | {"reason": "idle"}}`` →
    ``{"messages": [user messages with seq > N, ascending, a page], "more": bool, "closed": <closed.json> | null}``.

    With ``close`` set it first writes ``closed.json`` (``by`` null, the given reason; create-if-absent, so a closed
    conversation keeps its first record) and then lists, so no message accepted before the close is missed.
    """
    log = ConversationLog(str(payload["conversation"]), store, app_dir=app_dir)
    close = payload.get("close")
    if isinstance(close, dict):
        log.close(None, str(close.get("reason") or "idle"))
    messages, more = log.user_messages(int(payload.get("after") or 0))
    return {"messages": messages, "more": more, "closed": log.closed()}


def write_reply(payload: dict[str, Any], *, app_dir: str | Path | None = None, store: Any = None) -> None:
    """The :data:`REPLY_ACTIVITY`: ``{"conversation": id, "message": <assistant message>}`` → ``None``; writes
    ``messages/<seq>-1.json`` (overwriting: idempotent on retry)."""
    ConversationLog(str(payload["conversation"]), store, app_dir=app_dir).put_reply(dict(payload["message"]))


# ---------------------------------------------------------------------------------------------------------------
# The orchestrator loop


class ConversationState(TypedDict):
    """What a conversation carries across continue-as-new (the input's ``conversation`` member).

    ``received``: the highest user ``seq`` handled; ``history``: the SDK input items of the conversation so far
    (``RunResult.to_input_list()`` of the last turn); ``turns``: model turns of all generations; ``answered``:
    messages answered; ``generation``: 0 for the first execution.
    """

    received: int
    history: list[Any]
    startedAt: str
    lastActivityAt: str
    turns: int
    usage: UsageTotals
    answered: int
    generation: int


def conversation_input(raw: Any) -> dict[str, Any] | None:
    """The orchestration input (JSON value or JSON text) when it is a conversation's (``kind`` ``conversation``,
    ``agent`` a string, ``settings`` an object), else ``None``."""
    value = raw
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except ValueError:
            return None
    if (isinstance(value, dict) and value.get("kind") == CONVERSATION_KIND and isinstance(value.get("agent"), str)
            and isinstance(value.get("settings"), dict)):
        return value
    return None


class _TurnView:
    """The context an agent's orchestrator function gets for one conversation turn: the conversation's view, with
    ``get_input()`` giving ``{**orchestration input, "input": <the turn's SDK input>}``."""

    def __init__(self, view: Any, turn_input: dict[str, Any]) -> None:
        self.__dict__["_view"] = view
        self.__dict__["_turn_input"] = turn_input

    def get_input(self) -> dict[str, Any]:
        """The conversation's orchestration input with ``input`` = this turn's SDK input items."""
        return dict(self.__dict__["_turn_input"])

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_view"], name)

    def __setattr__(self, name: str, value: Any) -> None:  # e.g. run_user_function's ``_blocking``
        setattr(self.__dict__["_view"], name, value)


def _usage_of(result: RunResult) -> UsageTotals:
    usage = result.context_wrapper.usage
    return {"requests": int(usage.requests or 0), "inputTokens": int(usage.input_tokens or 0),
            "outputTokens": int(usage.output_tokens or 0), "totalTokens": int(usage.total_tokens or 0)}


def _add_usage(total: UsageTotals, more: UsageTotals) -> UsageTotals:
    return {"requests": total["requests"] + more["requests"], "inputTokens": total["inputTokens"] + more["inputTokens"],
            "outputTokens": total["outputTokens"] + more["outputTokens"],
            "totalTokens": total["totalTokens"] + more["totalTokens"]}


_ZERO_USAGE: UsageTotals = {"requests": 0, "inputTokens": 0, "outputTokens": 0, "totalTokens": 0}


def _raw(item: Any) -> dict[str, Any]:
    raw = getattr(item, "raw_item", None)
    if isinstance(raw, dict):
        return raw
    return pydantic_core.to_jsonable_python(raw) if raw is not None else {}


def _tool_calls(result: RunResult) -> list[dict[str, Any]]:
    """``[{"tool", "ok"}]`` for the tool calls of one turn: ``ok`` is false when the call has no output, or its output
    is the runner's failure text (``Tool '<name>' failed: ...``) or a rejection by the reviewer."""
    calls: list[tuple[str, str]] = []
    outputs: dict[str, Any] = {}
    for item in result.new_items:
        raw = _raw(item)
        kind = getattr(item, "type", "")
        if kind == "tool_call_item":
            call_id = str(raw.get("call_id") or raw.get("id") or "")
            calls.append((call_id, str(raw.get("name") or raw.get("type") or "")))
        elif kind == "tool_call_output_item":
            outputs[str(raw.get("call_id") or "")] = getattr(item, "output", raw.get("output"))
    summary = []
    for call_id, tool in calls:
        output = outputs.get(call_id)
        text = output if isinstance(output, str) else ""
        ok = call_id in outputs and not text.startswith(f"Tool '{tool}' failed") and "was rejected by the reviewer" \
            not in text
        summary.append({"tool": tool, "ok": ok})
    return summary


def _jsonable(value: Any) -> Any:
    return value if isinstance(value, str) else pydantic_core.to_jsonable_python(value)


def _run_turn(fn: Callable[..., Any], context: Any, turn_input: dict[str, Any]) -> Any:
    """Run the agent's orchestrator function ``fn`` for one turn in the worker thread (any of its three styles) and
    return its value; the conversation's own (generator) style is restored afterwards."""
    from ._runner.context import run_user_function

    blocking = context._blocking
    try:
        return run_user_function(fn, _TurnView(context, turn_input), context._session.loop)  # type: ignore[arg-type]
    finally:
        context._blocking = blocking


def conversation_function(registry: AgentRegistry) -> Callable[[Any], Generator[Any, Any, Any]]:
    """The conversation orchestrator function for the agents of ``registry`` (a generator agent orchestrator
    function; ``durable_agents.App`` registers it as :data:`CONVERSATION_ORCHESTRATOR` through
    ``agent_orchestrator``).

    Input ``{"kind": "conversation", "agent", "settings", "version", "customer", "startedBy", "conversation"?:
    ConversationState}``; output once closed ``{"closed": true, "reason", "messages", "usage", "turns"}``. Each
    user message is answered by the agent's own orchestrator function (``RegisteredAgent.function``) with
    ``get_input()["input"]`` = the conversation's history + the message; an ``Exception`` it raises becomes an answer
    with ``error`` set (``NonDeterminismError`` is re-raised). Raises ``ValueError`` at the first episode when the
    input's agent is not a conversational agent of ``registry``.
    """
    def durable_agents_conversation(context: Any) -> Generator[Any, Any, Any]:
        data = context.get_input()
        conversation_id = context.instance_id
        entry = registry.get(str(data.get("agent")))
        if entry is None or entry.kind != "agent" or entry.function is None:
            raise ValueError(f"conversation {conversation_id!r}: {data.get('agent')!r} is not a conversational agent "
                             "of this app")
        fn = entry.function
        now = format_time(context.current_utc_datetime)
        carried = data.get("conversation")
        fresh: ConversationState = {"received": 0, "history": [], "startedAt": now, "lastActivityAt": now,
                                    "turns": 0, "usage": dict(_ZERO_USAGE), "answered": 0,  # type: ignore[typeddict-item]
                                    "generation": 0}
        state: ConversationState = carried if isinstance(carried, dict) else fresh  # type: ignore[assignment]
        per_generation = int(run_setting(TURNS_PER_GENERATION_SETTING) or DEFAULT_TURNS_PER_GENERATION)
        idle = parse_iso_duration(run_setting(CONVERSATION_IDLE_TIMEOUT_SETTING) or DEFAULT_CONVERSATION_IDLE_TIMEOUT)
        generation_turns = 0

        def publish(phase: str) -> None:
            expires = parse_time(state["lastActivityAt"]) + idle
            context.set_custom_status({"conversation": {
                "state": phase, "received": state["received"], "answered": state["answered"],
                "turns": state["turns"], "usage": state["usage"], "lastActivityAt": state["lastActivityAt"],
                "idleExpiresAt": format_time(expires), "generation": state["generation"],
                "startedAt": state["startedAt"]}})

        def answer(message: dict[str, Any]) -> Generator[Any, Any, None]:
            nonlocal generation_turns
            publish("answering")
            user_item = {"role": "user", "content": message.get("content")}
            turn_input = {**data, "input": [*state["history"], user_item]}
            turn_input.pop("conversation", None)
            reply: dict[str, Any] = {"seq": message["seq"], "role": "assistant", "agent": entry.name,
                                     "toolCalls": [], "usage": dict(_ZERO_USAGE), "error": None, "content": None}
            try:
                value = _run_turn(fn, context, turn_input)
            except NonDeterminismError:
                raise
            except Exception as exc:  # the turn failed: answer with the error, keep the history, go on
                reply["error"] = f"{type(exc).__name__}: {exc}"
            else:
                if isinstance(value, RunResult):
                    usage = _usage_of(value)
                    turns = len(value.raw_responses)
                    state["history"] = _jsonable(value.to_input_list())
                    reply.update(content=_jsonable(value.final_output), agent=value.last_agent.name,
                                 toolCalls=_tool_calls(value), usage=usage)
                    state["turns"] += turns
                    generation_turns += turns
                    state["usage"] = _add_usage(state["usage"], usage)
                else:
                    content = _jsonable(value)
                    reply["content"] = content
                    state["history"] = [*state["history"], user_item,
                                        {"role": "assistant", "content": content if isinstance(content, str)
                                         else json.dumps(content)}]
            reply["createdAt"] = format_time(context.current_utc_datetime)
            yield context.call_activity(REPLY_ACTIVITY, {"conversation": conversation_id, "message": reply})
            state["answered"] += 1
            state["lastActivityAt"] = format_time(context.current_utc_datetime)

        close: dict[str, Any] | None = None
        waiting: tuple[int, Any] | None = None  # (seq, its pending event wait): reused after a timer step
        publish("idle")
        while True:
            inbox = yield context.call_activity(INBOX_ACTIVITY, {"conversation": conversation_id,
                                                                 "after": state["received"], "close": close})
            full = False
            for message in inbox.get("messages") or []:
                if int(message["seq"]) <= state["received"]:
                    continue
                yield from answer(message)
                state["received"] = int(message["seq"])
                if generation_turns >= per_generation:  # bounded history also while messages queue up: the
                    full = True  # next generation's inbox reads the rest (and a close) from the log
                    break
            if full:
                state["generation"] += 1
                state["history"] = compact_history(state["history"])
                publish("answering")
                context.continue_as_new({**data, "conversation": state})
                return None
            closed = inbox.get("closed")
            if closed is not None:
                publish("closed")
                return {"closed": True, "reason": closed.get("reason"), "messages": state["answered"],
                        "usage": state["usage"], "turns": state["turns"]}
            if inbox.get("more") or len(inbox.get("messages") or []) >= INBOX_PAGE_SIZE:
                continue
            if generation_turns >= per_generation:
                state["generation"] += 1
                # The conversation so far as the blob marker of what its last model call stored, plus the answer
                # (docs/internals.md "Payloads by reference"): the next generation's input stays small.
                state["history"] = compact_history(state["history"])
                publish("idle")
                context.continue_as_new({**data, "conversation": state})
                return None
            publish("idle")
            wanted = state["received"] + 1
            if waiting is None or waiting[0] != wanted or waiting[1].is_completed:
                waiting = (wanted, context.wait_for_external_event(message_event_name(wanted)))
            expires = parse_time(state["lastActivityAt"]) + idle
            timer = context.create_timer(min(expires, context.current_utc_datetime + MAX_TIMER))
            winner = yield context.task_any([waiting[1], timer])
            if winner is not timer:
                timer.cancel()
            elif context.current_utc_datetime >= expires:
                close = {"reason": "idle"}

    return durable_agents_conversation


def register_conversation_functions(app: Any, registry: AgentRegistry, *, app_dir: str | Path | None = None) -> None:
    """Register the conversation orchestrator (:data:`CONVERSATION_ORCHESTRATOR`, through ``agent_orchestrator``)
    and the activities :data:`INBOX_ACTIVITY` and :data:`REPLY_ACTIVITY` on ``app`` (``durable_agents.App`` does
    it once, for all its agents). ``app_dir`` locates the local blob store (``get_blob_store(app_dir)``)."""
    from ._orchestrator import agent_orchestrator

    def durable_agents_conversation_inbox(payload: Any) -> Any:
        return read_inbox(payload, app_dir=app_dir)

    def durable_agents_conversation_reply(payload: Any) -> Any:
        write_reply(payload, app_dir=app_dir)
        return None

    durable_agents_conversation_inbox.__doc__ = "Durable activity: a conversation's new user messages (read_inbox)."
    durable_agents_conversation_reply.__doc__ = "Durable activity: write one answer of a conversation (write_reply)."
    app.activity_trigger(input_name="payload", activity=INBOX_ACTIVITY)(durable_agents_conversation_inbox)
    app.activity_trigger(input_name="payload", activity=REPLY_ACTIVITY)(durable_agents_conversation_reply)
    orchestrator = agent_orchestrator(conversation_function(registry))
    orchestrator.__name__ = CONVERSATION_ORCHESTRATOR
    app.orchestration_trigger(context_name="context")(orchestrator)
