"""JSON encoding of model requests and responses between the orchestrator and ``invoke_model`` (internal).

The orchestrator runs the OpenAI Agents SDK (``openai-agents`` 0.24) with a model whose ``get_response`` does not
call the model itself: it encodes its arguments with :func:`encode_model_request`, schedules the ``invoke_model``
activity, and decodes the activity's result with :func:`decode_model_response`. The activity does the reverse
(:func:`decode_model_request`, then the real SDK model, then :func:`encode_model_response`). Shapes are the
``<model_io request>`` / ``<model_io response>`` of docs/internals.md ("Activities").

Rules every function here follows:

* Output is plain JSON (``json.dumps(value, allow_nan=False)`` succeeds) and deterministic: the same input gives
  the same JSON, so orchestrator replay schedules an identical activity input.
* Decoding is lenient and lossless. DESIGN.md ("Findings") records that a strict pydantic round trip of model
  output items fails on ``null`` fields (``status``, ``caller``, ``namespace``), notably for Chat Completions
  tool calls. Output items are therefore encoded with only the fields that were set on them (as the SDK's own
  ``RunState`` does) and decoded with pydantic validation first and, when that rejects an item, with the
  ``openai`` client's own lenient constructor (the one it uses to parse API responses), so
  ``encode(decode(encode(item))) == encode(item)`` for every item the SDK can return.

Request payload (``encode_model_request``)::

    {"model": "<name or null>",
     "systemInstructions": "<text or null>",
     "input": "<text>" | [<Responses input item as JSON>, ...],
     "modelSettings": {<non-null ModelSettings fields as JSON, without "retry">},
     "tools": [{"type": "function", "name", "description", "paramsJsonSchema", "strict",
                "deferLoading"?, "allowedCallers"?, "outputJsonSchema"?, "namespace"?, "namespaceDescription"?}
               | {"type": "<Responses tool type>", "fields": {...}}  # hosted tools: durable_agents._hosted_tools
               , ...],
     "outputSchema": null | {"plainText": bool, "name", "jsonSchema" (null when plain text), "strict"},
     "handoffs": [{"toolName", "toolDescription", "inputJsonSchema", "strict", "agentName"}],
     "previousResponseId": null | str, "conversationId": null | str, "prompt": null | {...}}

Response payload (``encode_model_response``)::

    {"output": [<output item as JSON, set fields only>, ...],
     "usage": {<agents.usage.serialize_usage(...)>},
     "responseId": null | str, "requestId": null | str}
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic
from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import ModelBehaviorError, UserError
from agents.handoffs import Handoff
from agents.items import ModelResponse
from agents.model_settings import ModelSettings
from agents.tool import FunctionTool
from agents.usage import deserialize_usage, serialize_usage
from openai._models import construct_type
from openai.types.responses.response_output_item import ResponseOutputItem

from ._hosted_tools import (
    decode_hosted_tool,
    encode_hosted_tool,
    is_hosted_tool,
    prepare_model_call,  # re-exported: the invoke_model activity and tests import it from here
    unsupported_tool_error,
)

__all__ = [
    "EncodedOutputSchema",
    "decode_model_request",
    "decode_model_response",
    "decode_output_item",
    "encode_model_request",
    "encode_model_response",
    "encode_output_item",
    "prepare_model_call",
    "to_json_value",
]

_OUTPUT_ITEM_ADAPTER: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(ResponseOutputItem)


def _output_item_classes() -> dict[str, type[pydantic.BaseModel]]:
    """Map each ``type`` discriminator of the ``ResponseOutputItem`` union to its pydantic class."""
    classes: dict[str, type[pydantic.BaseModel]] = {}
    union = typing.get_args(ResponseOutputItem)[0]  # Annotated[Union[...], PropertyInfo]
    for cls in typing.get_args(union):
        for literal in typing.get_args(cls.model_fields["type"].annotation):
            classes[literal] = cls
    return classes


_OUTPUT_ITEM_CLASSES = _output_item_classes()

# ModelSettings fields never sent to the activity: retries are owned by the orchestrator (docs/internals.md,
# "Activities"), and the retry settings may hold Python callables that have no JSON form.
_DROPPED_SETTINGS = frozenset({"retry"})


# ----------------------------------------------------------------------------------------------------------------
# Generic JSON conversion
# ----------------------------------------------------------------------------------------------------------------


def to_json_value(value: Any, *, where: str = "value") -> Any:
    """Convert ``value`` to plain JSON data (dict / list / str / int / float / bool / None).

    Pydantic models become ``model_dump(mode="json", exclude_unset=True)`` (the set fields only, as the SDK's
    ``RunState`` serializes raw items); dataclasses become dicts of their fields; tuples become lists; mapping
    keys must be strings. Raises ``TypeError`` (naming ``where``) for anything else, and ``ValueError`` for NaN or
    infinite floats, which JSON cannot carry.
    """
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: {value!r} is not representable in JSON")
        return value
    if isinstance(value, pydantic.BaseModel):
        dumped = value.model_dump(mode="json", exclude_unset=True, by_alias=True)
        # A discriminator left at its default would be dropped by exclude_unset; keep it.
        type_value = getattr(value, "type", None)
        if isinstance(type_value, str) and "type" not in dumped:
            dumped = {"type": type_value, **dumped}
        return to_json_value(dumped, where=where)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: mapping key {key!r} is not a string")
            out[key] = to_json_value(item, where=f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [to_json_value(item, where=f"{where}[{i}]") for i, item in enumerate(value)]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_json_value(
            {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, where=where
        )
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serializable")


# ----------------------------------------------------------------------------------------------------------------
# Output schema
# ----------------------------------------------------------------------------------------------------------------


class EncodedOutputSchema(AgentOutputSchemaBase):
    """An ``AgentOutputSchemaBase`` rebuilt from its JSON form, for the model adapters in the activity.

    The SDK model classes only call ``is_plain_text``, ``name``, ``json_schema`` and ``is_strict_json_schema``.
    ``validate_json`` parses JSON and checks nothing else: output validation happens in the orchestrator, against
    the agent's real output type. ``json_schema`` raises ``agents.exceptions.UserError`` for a plain-text schema,
    as the SDK's ``AgentOutputSchema`` does.
    """

    def __init__(self, *, plain_text: bool, name: str, json_schema: dict[str, Any] | None, strict: bool):
        self._plain_text = plain_text
        self._name = name
        self._json_schema = json_schema
        self._strict = strict

    def is_plain_text(self) -> bool:
        return self._plain_text

    def name(self) -> str:
        return self._name

    def json_schema(self) -> dict[str, Any]:
        if self._plain_text or self._json_schema is None:
            raise UserError("Output type is plain text, so no JSON schema is available")
        return self._json_schema

    def is_strict_json_schema(self) -> bool:
        return self._strict

    def validate_json(self, json_str: str) -> Any:
        try:
            return json.loads(json_str)
        except json.JSONDecodeError as exc:
            raise ModelBehaviorError(f"Invalid JSON for output type {self._name}: {exc}") from exc


def _encode_output_schema(schema: AgentOutputSchemaBase | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    plain = bool(schema.is_plain_text())
    return {
        "plainText": plain,
        "name": schema.name(),
        "jsonSchema": None if plain else to_json_value(schema.json_schema(), where="output_schema"),
        "strict": bool(schema.is_strict_json_schema()),
    }


def _decode_output_schema(data: Mapping[str, Any] | None) -> EncodedOutputSchema | None:
    if data is None:
        return None
    return EncodedOutputSchema(
        plain_text=bool(data.get("plainText", False)),
        name=str(data.get("name", "")),
        json_schema=data.get("jsonSchema"),
        strict=bool(data.get("strict", True)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Tools and handoffs
# ----------------------------------------------------------------------------------------------------------------


def _encode_tool(tool: Any, index: int) -> dict[str, Any]:
    if is_hosted_tool(tool):
        return encode_hosted_tool(tool, index)
    if not isinstance(tool, FunctionTool):
        raise unsupported_tool_error(tool)
    where = f"tools[{index}]({tool.name})"
    out: dict[str, Any] = {
        "type": "function",
        "name": tool.name,
        "description": tool.description or "",
        "paramsJsonSchema": to_json_value(tool.params_json_schema, where=where),
        "strict": bool(tool.strict_json_schema),
    }
    if tool.defer_loading:
        out["deferLoading"] = True
    if tool.allowed_callers is not None:
        out["allowedCallers"] = to_json_value(tool.allowed_callers, where=where)
    if tool.output_json_schema is not None:
        out["outputJsonSchema"] = to_json_value(tool.output_json_schema, where=where)
    namespace = getattr(tool, "_tool_namespace", None)
    if isinstance(namespace, str) and namespace:
        out["namespace"] = namespace
        description = getattr(tool, "_tool_namespace_description", None)
        if isinstance(description, str) and description:
            out["namespaceDescription"] = description
    return out


async def _never_invoked_tool(_context: Any, _arguments: str) -> Any:
    raise RuntimeError(
        "durable_agents: a decoded tool definition was invoked inside invoke_model; tools run as their own "
        "activities, never inside the model call"
    )


def _decode_tool(data: Mapping[str, Any]) -> Any:
    hosted = decode_hosted_tool(data)
    if hosted is not None:
        return hosted
    tool = FunctionTool(
        name=data["name"],
        description=data.get("description", ""),
        params_json_schema=data.get("paramsJsonSchema") or {},
        on_invoke_tool=_never_invoked_tool,
        strict_json_schema=bool(data.get("strict", True)),
        defer_loading=bool(data.get("deferLoading", False)),
        allowed_callers=data.get("allowedCallers"),
        output_json_schema=data.get("outputJsonSchema"),
    )
    if data.get("namespace"):
        tool._tool_namespace = data["namespace"]
        if data.get("namespaceDescription"):
            tool._tool_namespace_description = data["namespaceDescription"]
    return tool


def _encode_handoff(handoff: Handoff[Any, Any], index: int) -> dict[str, Any]:
    return {
        "toolName": handoff.tool_name,
        "toolDescription": handoff.tool_description or "",
        "inputJsonSchema": to_json_value(handoff.input_json_schema, where=f"handoffs[{index}]"),
        "strict": bool(handoff.strict_json_schema),
        "agentName": handoff.agent_name,
    }


async def _never_invoked_handoff(_context: Any, _arguments: str) -> Any:
    raise RuntimeError(
        "durable_agents: a decoded handoff was invoked inside invoke_model; handoffs run in the orchestrator"
    )


def _decode_handoff(data: Mapping[str, Any]) -> Handoff[Any, Any]:
    return Handoff(
        tool_name=data["toolName"],
        tool_description=data.get("toolDescription", ""),
        input_json_schema=data.get("inputJsonSchema") or {},
        on_invoke_handoff=_never_invoked_handoff,
        agent_name=data.get("agentName", ""),
        strict_json_schema=bool(data.get("strict", True)),
    )


# ----------------------------------------------------------------------------------------------------------------
# Model settings
# ----------------------------------------------------------------------------------------------------------------


def _encode_model_settings(settings: ModelSettings | None) -> dict[str, Any]:
    if settings is None:
        return {}
    # Field by field rather than ModelSettings.to_json_dict(): nested pydantic values (e.g. Reasoning) keep only
    # their set fields, so the payload stays small and equal to what the agent author wrote.
    out: dict[str, Any] = {}
    for field in dataclasses.fields(settings):
        value = getattr(settings, field.name)
        if value is not None and field.name not in _DROPPED_SETTINGS:
            out[field.name] = to_json_value(value, where=f"model_settings.{field.name}")
    return out


def _decode_model_settings(data: Mapping[str, Any] | None) -> ModelSettings:
    return pydantic.TypeAdapter(ModelSettings).validate_python(dict(data or {}))


# ----------------------------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------------------------


def encode_model_request(
    *,
    model: str | None,
    system_instructions: str | None,
    input: str | Sequence[Any],
    model_settings: ModelSettings | None,
    tools: Sequence[Any],
    output_schema: AgentOutputSchemaBase | None,
    handoffs: Sequence[Handoff[Any, Any]],
    previous_response_id: str | None = None,
    conversation_id: str | None = None,
    prompt: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Encode the arguments of ``agents.models.interface.Model.get_response`` (plus the model name) as JSON.

    ``model`` is the model name string (``Agent.model`` when it is a string) or ``None`` for the configured
    default. ``tracing`` is not encoded (tracing is a per-process concern of the activity).

    Raises ``TypeError`` naming the tool for a tool that is neither a ``FunctionTool`` nor a supported hosted tool
    (rules in :mod:`durable_agents._hosted_tools`), and ``TypeError`` / ``ValueError`` for input that is not
    JSON-representable (e.g. NaN). The shape is in the module docstring.
    """
    return {
        "model": model,
        "systemInstructions": system_instructions,
        "input": input if isinstance(input, str) else to_json_value(list(input), where="input"),
        "modelSettings": _encode_model_settings(model_settings),
        "tools": [_encode_tool(tool, i) for i, tool in enumerate(tools or [])],
        "outputSchema": _encode_output_schema(output_schema),
        "handoffs": [_encode_handoff(h, i) for i, h in enumerate(handoffs or [])],
        "previousResponseId": previous_response_id,
        "conversationId": conversation_id,
        "prompt": to_json_value(prompt, where="prompt") if prompt is not None else None,
    }


def decode_model_request(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Rebuild keyword arguments for a real SDK model's ``get_response`` from :func:`encode_model_request` output.

    Returns ``{"model", "system_instructions", "input", "model_settings", "tools", "output_schema", "handoffs",
    "previous_response_id", "conversation_id", "prompt"}``: pop ``"model"`` (the name, or ``None``) and pass the
    rest, plus ``tracing``, to ``OpenAIResponsesModel`` / ``OpenAIChatCompletionsModel.get_response``, after
    :func:`prepare_model_call`. Function tools become ``FunctionTool`` objects (hosted tools their SDK classes)
    and handoffs ``Handoff`` objects whose invoke callbacks raise if ever called (the model adapters only read
    their names and schemas). Raises ``KeyError`` / ``pydantic.ValidationError`` for
    a malformed payload.
    """
    raw_input = payload.get("input", [])
    return {
        "model": payload.get("model"),
        "system_instructions": payload.get("systemInstructions"),
        "input": raw_input if isinstance(raw_input, str) else [dict(i) if isinstance(i, Mapping) else i
                                                                for i in raw_input],
        "model_settings": _decode_model_settings(payload.get("modelSettings")),
        "tools": [_decode_tool(t) for t in payload.get("tools") or []],
        "output_schema": _decode_output_schema(payload.get("outputSchema")),
        "handoffs": [_decode_handoff(h) for h in payload.get("handoffs") or []],
        "previous_response_id": payload.get("previousResponseId"),
        "conversation_id": payload.get("conversationId"),
        "prompt": payload.get("prompt"),
    }


# ----------------------------------------------------------------------------------------------------------------
# Responses
# ----------------------------------------------------------------------------------------------------------------


def encode_output_item(item: Any) -> Any:
    """Encode one model output item (a ``ResponseOutputItem`` model, or a dict) as JSON (set fields only)."""
    return to_json_value(item, where=f"output item {getattr(item, 'type', type(item).__name__)}")


def decode_output_item(data: Any) -> Any:
    """Decode one output item from :func:`encode_output_item` output, leniently.

    A dict whose ``type`` is a known Responses output item type becomes that pydantic class: validated when it
    validates, otherwise built by the ``openai`` client's lenient constructor (``openai._models.construct_type``,
    the same path that parses API responses), which accepts ``null`` in non-nullable fields. Only the fields
    present in ``data`` count as set, so re-encoding gives ``data`` back. Anything else (unknown types, non-dicts)
    is returned unchanged, as the SDK's ``RunState`` does.
    """
    if not isinstance(data, Mapping) or data.get("type") not in _OUTPUT_ITEM_CLASSES:
        return data
    try:
        return _OUTPUT_ITEM_ADAPTER.validate_python(dict(data))
    except pydantic.ValidationError:
        pass
    built = construct_type(value=dict(data), type_=_OUTPUT_ITEM_CLASSES[data["type"]])
    return built if isinstance(built, pydantic.BaseModel) else dict(data)


def encode_model_response(response: ModelResponse) -> dict[str, Any]:
    """Encode an ``agents.items.ModelResponse`` as JSON (shape in the module docstring).

    Usage uses the SDK's own ``agents.usage.serialize_usage`` form. ``raw_usage`` (diagnostic, off by default)
    is carried as ``rawUsage`` only when present. Raises ``TypeError`` / ``ValueError`` for values JSON cannot
    represent.
    """
    out: dict[str, Any] = {
        "output": [encode_output_item(item) for item in response.output],
        "usage": to_json_value(serialize_usage(response.usage), where="usage"),
        "responseId": response.response_id,
        "requestId": response.request_id,
    }
    if response.raw_usage is not None:
        out["rawUsage"] = to_json_value(response.raw_usage, where="raw_usage")
    return out


def decode_model_response(data: Mapping[str, Any]) -> ModelResponse:
    """Rebuild an ``agents.items.ModelResponse`` from :func:`encode_model_response` output (lenient, lossless).

    Missing ``usage`` decodes as zero usage; output items decode with :func:`decode_output_item`.
    """
    response = ModelResponse(
        output=[],
        usage=deserialize_usage(data.get("usage") or {}),
        response_id=data.get("responseId"),
        request_id=data.get("requestId"),
        raw_usage=data.get("rawUsage"),
    )
    # Assigned after construction: ModelResponse is a plain dataclass, and items that could only be built
    # leniently must not be re-validated.
    response.output = [decode_output_item(item) for item in data.get("output") or []]
    return response
