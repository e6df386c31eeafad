"""The offline demo model and its responder hook (internal; the public names are re-exported by ``durable_agents``).

With no model configured, every ``invoke_model`` call is answered by :class:`DemoModel`: offline, deterministic,
and labelled (its text starts with :data:`DEMO_PREFIX`, the activity result says ``"demo": true``). On its own it
knows nothing about any app; it

* hands off to an agent whose name the user's message contains (once per user message),
* otherwise asks the app's *demo responders*, first registered first, what to do next,
* otherwise answers a generic text naming the tools it was given and how to configure a real model,

and shapes a final text as JSON when the agent wants structured output.

A demo responder is a plain callable ``(turn: DemoTurn) -> DemoReply | None``: it reads the turn (the last user
message, the tool calls made since with their results, the tools offered...) and returns
``DemoReply.call(tool, arguments)``, ``DemoReply.final(text)``, or ``None`` to let the next responder (and finally
the generic answer) decide. An app registers one with ``durable_agents.Blueprint(demo_responder=...)`` or
``durable_agents.App(demo_responder=...)``; the responders live in one process-wide list, which the activity
consults because it runs in the process that imported the app.

Call ids are ``call_demo_<n>`` where ``n`` counts the tool calls in the conversation, so they are unique within a
run and identical on replay; response and message ids are derived from the request's content.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any, Literal

from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import UserError
from agents.handoffs import Handoff
from agents.items import ModelResponse
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

__all__ = [
    "DEMO_PREFIX",
    "DemoModel",
    "DemoReply",
    "DemoResponder",
    "DemoToolCall",
    "DemoTurn",
    "add_demo_responder",
    "demo_responders",
    "remove_demo_responder",
]

DEMO_PREFIX = "[demo model]"
"""Every final text of the demo model starts with this label and one space."""

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def _empty() -> Mapping[str, Any]:
    return _EMPTY


# ----------------------------------------------------------------------------------------------------------------
# The hook: what a responder sees and returns
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoToolCall:
    """One tool call the model made since the last user message (read-only).

    ``arguments`` are the call's parsed JSON arguments: JSON objects become read-only mappings, arrays tuples,
    numbers with a fraction ``Decimal`` (keeping their digits: ``668.00`` stays ``Decimal("668.00")``), integers
    ``int``; ``{}`` when the arguments are not a JSON object. ``output`` is the tool's result as the model sees it
    (text, often JSON), or ``None`` while the call has no result yet.
    """

    name: str
    arguments: Mapping[str, Any]
    call_id: str
    output: str | None = None


@dataclass(frozen=True)
class DemoTurn:
    """A read-only view of one demo model call, given to each demo responder.

    Attributes:
        user_text: the text of the last user message (``""`` when there is none).
        calls: the tool calls (including handoff calls) since that message, oldest first, with their outputs.
        total_calls: how many tool calls the whole conversation holds (the next call gets ``call_demo_<n+1>``).
        tools: the function tools offered to the model: name → the JSON schema of its parameters (read-only).
        handoffs: the handoffs offered: handoff tool name (``transfer_to_billing``) → target agent name.
        output_schema: the JSON schema of the agent's structured output, or ``None`` for plain text.
        instructions: the agent's system instructions, or ``None``.
    """

    user_text: str
    calls: tuple[DemoToolCall, ...] = ()
    total_calls: int = 0
    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)
    handoffs: Mapping[str, str] = field(default_factory=_empty)
    output_schema: Mapping[str, Any] | None = None
    instructions: str | None = None

    @property
    def wants_structured_output(self) -> bool:
        """True when the agent has a structured output type (a final text is then shaped by its schema)."""
        return self.output_schema is not None

    def has_tool(self, name: str) -> bool:
        """True when the function tool ``name`` is offered to the model."""
        return name in self.tools

    def last_call(self, name: str) -> DemoToolCall | None:
        """The most recent call of tool ``name`` since the last user message, or ``None``."""
        for call in reversed(self.calls):
            if call.name == name:
                return call
        return None


@dataclass(frozen=True)
class DemoReply:
    """What a demo responder answers: a tool call (:meth:`call`), a final text (:meth:`final`) or a structured
    output (:meth:`output`).

    ``kind`` is ``"call"`` (``tool`` and ``arguments`` set) or ``"final"`` (``text`` set). Build replies with the
    class methods; the constructor raises ``ValueError`` for an inconsistent combination.
    """

    kind: Literal["call", "final"]
    tool: str | None = None
    arguments: Mapping[str, Any] = field(default_factory=_empty)
    text: str | None = None
    value: Any = None  # the structured output of :meth:`output` (JSON), else None

    def __post_init__(self) -> None:
        if self.kind == "call":
            if not self.tool or not isinstance(self.tool, str) or self.text is not None:
                raise ValueError("a demo tool call needs a tool name (and no text)")
            if not isinstance(self.arguments, Mapping):
                raise ValueError("demo tool call arguments must be a mapping")
        elif self.kind == "final":
            if not isinstance(self.text, str) or self.tool is not None or self.arguments:
                raise ValueError("a final demo reply needs a text (and no tool)")
        else:
            raise ValueError(f"DemoReply.kind must be 'call' or 'final', not {self.kind!r}")

    @classmethod
    def call(cls, tool: str, arguments: Mapping[str, Any] | None = None) -> DemoReply:
        """Call the tool (or handoff) named ``tool`` with ``arguments``.

        ``arguments`` maps parameter names to JSON values (str, int, float, bool, None, lists, mappings) or
        ``Decimal``. A ``Decimal``, or a decimal string where the tool's schema wants a number, is written as a JSON
        number with its own digits (``"59.90"`` → ``59.90``). The model raises ``ValueError`` when ``tool`` was not
        offered to it. Raises ``ValueError`` for an empty name.
        """
        return cls(kind="call", tool=tool, arguments=MappingProxyType(dict(arguments or {})))

    @classmethod
    def final(cls, text: str) -> DemoReply:
        """End the turn with ``text``; the model prefixes it with ``[demo model] `` (and shapes it as JSON when the
        agent wants structured output). Raises ``ValueError`` when ``text`` is not a string."""
        return cls(kind="final", text=text)

    @classmethod
    def output(cls, value: Any) -> DemoReply:
        """End the turn with the structured output ``value`` (a JSON value matching the agent's ``output_type``),
        sent as it is; for a plain-text agent it is sent as JSON text. The run is still labelled demo
        (``"demo": true``). Raises ``ValueError`` when ``value`` is not JSON-serialisable."""
        try:
            text = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"a demo structured output must be a JSON value: {exc}") from None
        return cls(kind="final", text=text, value=value)


DemoResponder = Callable[[DemoTurn], DemoReply | None]
"""A demo responder: ``(turn) -> DemoReply | None`` (``None``: let the next responder decide)."""


# ----------------------------------------------------------------------------------------------------------------
# The process-wide responders
# ----------------------------------------------------------------------------------------------------------------

_responders: list[DemoResponder] = []
_responders_lock = threading.Lock()


def add_demo_responder(responder: DemoResponder) -> None:
    """Add ``responder`` to the process's demo responders (after those already there).

    Adding the same callable again changes nothing (an app registered twice, or one blueprint on two apps, keeps
    its place). Raises ``TypeError`` when ``responder`` is not callable.
    """
    if not callable(responder):
        raise TypeError(f"a demo responder must be callable, not {type(responder).__name__}")
    with _responders_lock:
        if not any(existing is responder for existing in _responders):
            _responders.append(responder)


def remove_demo_responder(responder: DemoResponder) -> None:
    """Remove ``responder`` from the process's demo responders; nothing happens when it is not there."""
    with _responders_lock:
        _responders[:] = [existing for existing in _responders if existing is not responder]


def demo_responders() -> tuple[DemoResponder, ...]:
    """The process's demo responders, first registered first."""
    with _responders_lock:
        return tuple(_responders)


# ----------------------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------------------


class DemoModel(Model):
    """An offline, deterministic ``agents.Model`` for demos and tests (labelled "demo"; text starts ``[demo model]``).

    For each call it builds a :class:`DemoTurn` from the conversation and answers with the first of:

    1. a handoff whose target agent's name appears (as a word, any case) in the last user message, unless a
       handoff was already called since that message;
    2. the first non-``None`` :class:`DemoReply` of the responders (``responders``, or when ``None`` the process's
       list, :func:`demo_responders`, read at each call);
    3. a generic text naming the tools it was given and how to configure a real model.

    A tool call gets the call id ``call_demo_<n>`` (n counts the calls in the conversation). A final text is
    prefixed with :data:`DEMO_PREFIX`; with a structured output type the answer is a JSON value shaped by its schema
    (strings hold the text, numbers are 0, booleans false, arrays empty, enums their first value). Usage counts one
    request and about one token per 4 characters.

    Raises ``ValueError`` when a responder calls a tool or handoff the model was not given, ``TypeError`` when it
    returns something other than a ``DemoReply`` or ``None``; a responder's own exceptions propagate.
    """

    def __init__(self, responders: Sequence[DemoResponder] | None = None) -> None:
        self._responders = tuple(responders) if responders is not None else None

    async def get_response(
        self,
        system_instructions: str | None,
        input: str | list[Any],
        model_settings: ModelSettings,
        tools: list[Any],
        output_schema: AgentOutputSchemaBase | None,
        handoffs: list[Handoff[Any, Any]],
        tracing: ModelTracing,
        *,
        previous_response_id: str | None = None,
        conversation_id: str | None = None,
        prompt: Any | None = None,
    ) -> ModelResponse:
        """Answer one model call (see the class docstring); the arguments are those of ``agents.Model``."""
        structured = output_schema is not None and not output_schema.is_plain_text()
        schemas = {getattr(tool, "name", None): getattr(tool, "params_json_schema", None) for tool in tools}
        turn = _read_turn(
            input,
            instructions=system_instructions,
            tools={name: schema for name, schema in schemas.items() if isinstance(name, str) and name},
            handoffs={h.tool_name: h.agent_name for h in handoffs},
            output_schema=output_schema.json_schema() if structured and output_schema is not None else None,
        )
        reply = _handoff_by_name(turn) or self._ask_responders(turn) or DemoReply.final(_generic_answer(turn))
        plain_input = _text_of(input) if isinstance(input, str) else [_as_dict(i) for i in input]
        seed = hashlib.sha256(json.dumps([system_instructions, plain_input], sort_keys=True, default=str)
                              .encode()).hexdigest()[:16]
        output: list[Any] = []
        if reply.kind == "call":
            assert reply.tool is not None
            n = turn.total_calls + 1
            output.append(ResponseFunctionToolCall(
                type="function_call", id=f"fc_demo_{n}", call_id=f"call_demo_{n}", name=reply.tool,
                arguments=_encode_arguments(reply.arguments, schemas.get(reply.tool)), status="completed",
            ))
            out_text = json.dumps(_plain(reply.arguments), default=str)
        else:
            text = f"{DEMO_PREFIX} {reply.text}"
            if reply.value is not None:  # DemoReply.output: the responder's own structured output, as it is
                text = str(reply.text)
            elif structured and turn.output_schema is not None:
                text = json.dumps(_schema_value(turn.output_schema, text), ensure_ascii=False)
            output.append(ResponseOutputMessage(
                type="message", id=f"msg_demo_{seed}", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            ))
            out_text = text
        in_tokens = max(1, len(json.dumps(plain_input, default=str)) // 4)
        out_tokens = max(1, len(out_text) // 4)
        usage = Usage(requests=1, input_tokens=in_tokens, output_tokens=out_tokens,
                      total_tokens=in_tokens + out_tokens)
        return ModelResponse(output=output, usage=usage, response_id=f"resp_demo_{seed}")

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Not supported: durable runs call ``get_response`` only. Raises ``agents.exceptions.UserError``."""
        raise UserError("the demo model does not stream; durable agent runs use get_response")

    def _ask_responders(self, turn: DemoTurn) -> DemoReply | None:
        responders = self._responders if self._responders is not None else demo_responders()
        for responder in responders:
            reply = responder(turn)
            if reply is None:
                continue
            if not isinstance(reply, DemoReply):
                raise TypeError(f"demo responder {responder!r} returned {type(reply).__name__}, "
                                "not a DemoReply or None")
            if reply.kind == "call" and reply.tool not in turn.tools and reply.tool not in turn.handoffs:
                offered = ", ".join(sorted([*turn.tools, *turn.handoffs])) or "none"
                raise ValueError(f"demo responder {responder!r} called {reply.tool!r}, which the model was not "
                                 f"given (tools and handoffs: {offered})")
            return reply
        return None


def _handoff_by_name(turn: DemoTurn) -> DemoReply | None:
    """A handoff the user asks for by the target agent's name (only once per user message)."""
    if any(call.name in turn.handoffs for call in turn.calls):
        return None
    lowered = turn.user_text.lower()
    for tool_name, agent_name in turn.handoffs.items():
        target = (agent_name or "").lower()
        if target and re.search(rf"\b{re.escape(target)}\b", lowered):
            return DemoReply.call(tool_name)
    return None


def _generic_answer(turn: DemoTurn) -> str:
    names = ", ".join(sorted(turn.tools)) or "none"
    handoffs = ", ".join(sorted(a for a in turn.handoffs.values() if a))
    offer = f" I can hand off to an agent you name ({handoffs})." if handoffs else ""
    return ("I am the offline demo model (no model is configured): I answer only what this app scripted for the "
            f"demo, and nothing scripted matches this message.{offer} Tools available: {names}. Configure "
            "AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY / OPENAI_BASE_URL for a real model.")


# ----------------------------------------------------------------------------------------------------------------
# Reading the conversation
# ----------------------------------------------------------------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text") or part.get("refusal")
                if isinstance(text, str):
                    parts.append(text)
            elif isinstance(part, str):
                parts.append(part)
        return "\n".join(parts)
    return "" if content is None else str(content)


def _as_dict(item: Any) -> Mapping[str, Any]:
    if isinstance(item, Mapping):
        return item
    if hasattr(item, "model_dump"):
        dumped: Mapping[str, Any] = item.model_dump(exclude_unset=True)
        return dumped
    return {}


def _freeze(value: Any) -> Any:
    """A read-only copy of a JSON value: mappings become ``MappingProxyType``, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({key: _freeze(item) for key, item in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(item) for item in value)
    return value


def _plain(value: Any) -> Any:
    """The inverse of :func:`_freeze`: dicts and lists again."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _read_turn(
    input: str | Sequence[Any],
    *,
    instructions: str | None,
    tools: Mapping[str, Any],
    handoffs: Mapping[str, str],
    output_schema: Mapping[str, Any] | None,
) -> DemoTurn:
    frozen_tools = MappingProxyType({name: _freeze(schema if isinstance(schema, Mapping) else {})
                                     for name, schema in tools.items()})
    common: dict[str, Any] = {
        "tools": frozen_tools,
        "handoffs": MappingProxyType(dict(handoffs)),
        "output_schema": _freeze(output_schema) if output_schema is not None else None,
        "instructions": instructions,
    }
    if isinstance(input, str):
        return DemoTurn(user_text=input, **common)
    items = [_as_dict(item) for item in input]
    last_user = -1
    for index, item in enumerate(items):
        if item.get("role") == "user" and item.get("type", "message") == "message":
            last_user = index
    user_text = _text_of(items[last_user].get("content")) if last_user >= 0 else ""
    outputs: dict[str, str] = {}
    for item in items:
        if item.get("type") == "function_call_output":
            outputs[str(item.get("call_id"))] = _text_of(item.get("output"))
    calls = []
    total = 0
    for index, item in enumerate(items):
        if item.get("type") != "function_call":
            continue
        total += 1
        if index < last_user:
            continue
        try:  # decimals keep their digits ("668.00" stays 668.00 in texts)
            args = json.loads(str(item.get("arguments") or "{}"), parse_float=Decimal)
        except ValueError:
            args = None
        call_id = str(item.get("call_id"))
        calls.append(DemoToolCall(
            name=str(item.get("name") or ""),
            arguments=_freeze(args) if isinstance(args, dict) else _EMPTY,
            call_id=call_id,
            output=outputs.get(call_id),
        ))
    return DemoTurn(user_text=user_text, calls=tuple(calls), total_calls=total, **common)


# ----------------------------------------------------------------------------------------------------------------
# Writing the answer
# ----------------------------------------------------------------------------------------------------------------


def _schema_value(schema: Mapping[str, Any], text: str) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list | tuple):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema and schema["enum"]:
        return _plain(schema["enum"][0])
    if kind == "object":
        props = schema.get("properties") or {}
        return {name: _schema_value(sub, text) for name, sub in props.items() if isinstance(sub, Mapping)}
    if kind == "array":
        return []
    if kind in ("integer", "number"):
        return 0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return text


def _json_literal(value: Any) -> str:
    """JSON for ``value``; a ``Decimal`` (at any depth) becomes a JSON number with its own digits."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"a demo tool call argument cannot be {value}")
        return str(value)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {_json_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_json_literal(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _encode_arguments(arguments: Mapping[str, Any], schema: Any) -> str:
    """JSON arguments for a call; decimal strings become JSON numbers where the tool's schema wants a number.

    The number is written with the decimal's own digits (``59.90``), never through float arithmetic.
    """
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    parts = []
    for key, value in arguments.items():
        literal = _json_literal(value)
        prop = properties.get(key) if isinstance(properties, Mapping) else None
        if isinstance(value, str) and isinstance(prop, Mapping):
            alternatives = [alt for alt in prop.get("anyOf") or [] if isinstance(alt, Mapping)]
            types = {prop.get("type")} | {alt.get("type") for alt in alternatives}
            if types & {"number", "integer"} and "string" not in types:
                try:
                    number = Decimal(value)
                except InvalidOperation:
                    number = None
                if number is not None and number.is_finite():
                    literal = str(number) if "number" in types or number == number.to_integral_value() else literal
        parts.append(f"{json.dumps(key)}: {literal}")
    return "{" + ", ".join(parts) + "}"
