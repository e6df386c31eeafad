"""Model configuration from settings, the deterministic demo model, and the ``invoke_model`` activity.

Settings (docs/internals.md "Settings"; read with :func:`durable_agents._config.get_setting`, empty = unset):

* ``AGENT_MODEL`` (default ``gpt-4.1-mini``): the model (Azure: the deployment) used when the agent names none.
* ``OPENAI_API``: ``responses`` (default) or ``chat_completions``; which SDK model class talks to the endpoint.
* ``AZURE_OPENAI_ENDPOINT`` (+ ``AZURE_OPENAI_API_VERSION``, default ``2025-04-01-preview``, and
  ``AZURE_CLIENT_ID`` for a user-assigned identity): Azure OpenAI with Microsoft Entra ID through
  ``azure-identity`` (``DefaultAzureCredential``, token scope ``https://cognitiveservices.azure.com/.default``);
  no key is ever used. Takes precedence over the OpenAI settings.
* ``OPENAI_BASE_URL`` and / or ``OPENAI_API_KEY``: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, ...). A
  base URL without a key uses the placeholder key ``"unused"`` (local servers ignore it).
* Nothing of the above: one warning is logged and every call is answered by :class:`DemoModel`, an offline,
  deterministic model whose text starts with ``[demo model]`` (DESIGN.md "Models").

Retries belong to the orchestrator (docs/internals.md "Activities"): the OpenAI client is built with
``max_retries=0``, the activity calls ``Model.get_response`` once (the SDK's runner-level retries are not involved),
and failures come back as ``{"ok": false, "error": {...}}`` with ``retryable`` / ``retryAfter``.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import openai
from agents.agent_output import AgentOutputSchemaBase
from agents.exceptions import UserError
from agents.handoffs import Handoff
from agents.items import ModelResponse
from agents.model_settings import ModelSettings
from agents.models.interface import Model, ModelTracing
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel
from agents.usage import Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from ._config import get_setting
from ._model_io import decode_model_request, encode_model_response

__all__ = [
    "AZURE_TOKEN_SCOPE",
    "DEFAULT_AZURE_API_VERSION",
    "DEFAULT_MODEL",
    "DEMO_PREFIX",
    "DemoModel",
    "ModelConfig",
    "classify_model_error",
    "get_model",
    "get_openai_client",
    "invoke_model",
    "load_model_config",
    "announce_model_configuration",
    "register_model_activity",
]

logger = logging.getLogger("durable_agents._models")

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_AZURE_API_VERSION = "2025-04-01-preview"
AZURE_TOKEN_SCOPE = "https://cognitiveservices.azure.com/.default"
DEMO_PREFIX = "[demo model]"
CLIENT_TIMEOUT_SECONDS = 300.0
"""Per-request timeout of the OpenAI client (seconds); a timeout is a retryable error for the orchestrator."""

ACTIVITY_NAME = "invoke_model"

# ----------------------------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelConfig:
    """The model configuration read from settings (never holds the API key itself).

    ``mode`` is ``"azure"`` (``AZURE_OPENAI_ENDPOINT`` set), ``"openai"`` (``OPENAI_BASE_URL`` or
    ``OPENAI_API_KEY`` set) or ``"demo"`` (nothing set). ``api`` is ``"responses"`` or ``"chat_completions"``.
    """

    mode: Literal["azure", "openai", "demo"]
    model: str
    api: Literal["responses", "chat_completions"]
    base_url: str | None = None
    azure_endpoint: str | None = None
    azure_api_version: str | None = None
    azure_client_id: str | None = None
    has_api_key: bool = False

    @property
    def label(self) -> str:
        """A short description for logs (no secrets): e.g. ``azure:gpt-4.1-mini/responses`` or ``demo``."""
        return "demo" if self.mode == "demo" else f"{self.mode}:{self.model}/{self.api}"


def load_model_config() -> ModelConfig:
    """Read the model settings (module docstring) into a :class:`ModelConfig`.

    Raises ``ValueError`` when ``OPENAI_API`` is neither ``responses`` nor ``chat_completions`` (a configuration
    error must not silently fall back to another API).
    """
    model = get_setting("AGENT_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL
    api = (get_setting("OPENAI_API", "responses") or "responses").lower().replace("-", "_")
    if api not in ("responses", "chat_completions"):
        raise ValueError(f"OPENAI_API must be 'responses' or 'chat_completions', got {api!r}")
    endpoint = get_setting("AZURE_OPENAI_ENDPOINT")
    if endpoint:
        return ModelConfig(
            mode="azure", model=model, api=api,  # type: ignore[arg-type]
            azure_endpoint=endpoint,
            azure_api_version=get_setting("AZURE_OPENAI_API_VERSION", DEFAULT_AZURE_API_VERSION),
            azure_client_id=get_setting("AZURE_CLIENT_ID"),
        )
    base_url = get_setting("OPENAI_BASE_URL")
    has_key = get_setting("OPENAI_API_KEY") is not None
    if base_url or has_key:
        return ModelConfig(mode="openai", model=model, api=api, base_url=base_url,  # type: ignore[arg-type]
                           has_api_key=has_key)
    return ModelConfig(mode="demo", model=model, api=api)  # type: ignore[arg-type]


_clients: dict[ModelConfig, tuple[asyncio.AbstractEventLoop | None, openai.AsyncOpenAI]] = {}
_clients_lock = threading.Lock()
_demo_warned = False


def _build_client(config: ModelConfig) -> openai.AsyncOpenAI:
    if config.mode == "azure":
        from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

        credential = (
            DefaultAzureCredential(managed_identity_client_id=config.azure_client_id)
            if config.azure_client_id
            else DefaultAzureCredential()
        )
        return openai.AsyncAzureOpenAI(
            azure_endpoint=config.azure_endpoint,
            api_version=config.azure_api_version,
            azure_ad_token_provider=get_bearer_token_provider(credential, AZURE_TOKEN_SCOPE),
            max_retries=0,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    if config.mode == "openai":
        return openai.AsyncOpenAI(
            api_key=get_setting("OPENAI_API_KEY") or "unused",
            base_url=config.base_url,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    raise ValueError("the demo configuration has no OpenAI client")


def get_openai_client(config: ModelConfig | None = None) -> openai.AsyncOpenAI:
    """Return the process's ``AsyncOpenAI`` / ``AsyncAzureOpenAI`` client for ``config`` (default: settings).

    One client per configuration is built and reused for the process; it is rebuilt only when called from a
    different event loop than the one it was built on (an async connection pool belongs to its loop; the Functions
    worker runs all async activities on one loop). The client never retries (``max_retries=0``) and times out after
    :data:`CLIENT_TIMEOUT_SECONDS`. Raises ``ValueError`` in demo mode.
    """
    config = config or load_model_config()
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    with _clients_lock:
        entry = _clients.get(config)
        if entry is not None and entry[0] is loop:
            return entry[1]
        client = _build_client(config)
        _clients[config] = (loop, client)
        return client


def get_model(model_name: str | None = None, config: ModelConfig | None = None) -> tuple[Model, bool]:
    """Return ``(model, is_demo)`` for a call: the SDK model for the configured API, or the demo model.

    ``model_name`` (the agent's own model name, if any) overrides ``AGENT_MODEL``. In demo mode (nothing
    configured) a single warning per process is logged and :class:`DemoModel` is returned whatever the name.
    """
    global _demo_warned
    config = config or load_model_config()
    if config.mode == "demo":
        if not _demo_warned:
            _demo_warned = True
            logger.warning(
                "No model is configured (set AZURE_OPENAI_ENDPOINT, or OPENAI_API_KEY / OPENAI_BASE_URL): every "
                "model call is answered by the offline DEMO model, whose answers start with '%s'. "
                "See docs/internals.md 'Settings'.", DEMO_PREFIX,
            )
        return DemoModel(), True
    name = model_name or config.model
    client = get_openai_client(config)
    if config.api == "chat_completions":
        return OpenAIChatCompletionsModel(model=name, openai_client=client), False
    return OpenAIResponsesModel(model=name, openai_client=client), False


# ----------------------------------------------------------------------------------------------------------------
# Error classification
# ----------------------------------------------------------------------------------------------------------------

_RETRYABLE_STATUS = frozenset({408, 409, 429})


def _retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else ``None``."""
    if headers is None:
        return None
    value_ms = headers.get("retry-after-ms")
    if value_ms is not None:
        try:
            ms = float(value_ms)
            if ms >= 0 and ms == ms and ms != float("inf"):
                return round(ms / 1000.0, 3)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return round(seconds, 3) if 0 <= seconds < float("inf") else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return round(max(0.0, (when - datetime.now(UTC)).total_seconds()), 3)


def classify_model_error(exc: BaseException) -> dict[str, Any] | None:
    """Describe an ``openai`` API error as the ``invoke_model`` error object, or ``None`` for other exceptions.

    Returns ``{"type": <exception class name>, "message", "status": <HTTP status or null>, "retryable": bool,
    "retryAfter": <seconds or null>}``. Retryable (docs/internals.md "Activities"): timeouts, connection
    errors, HTTP 408, 409, 429 and 5xx. ``retryAfter`` comes from the ``retry-after-ms`` or ``retry-after``
    response header (seconds or HTTP date). Anything that is not an ``openai.APIError`` returns ``None`` (a bug;
    the caller lets it propagate).
    """
    if not isinstance(exc, openai.APIError):
        return None
    status: int | None = None
    retry_after: float | None = None
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        retryable = True
    elif isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        retryable = status in _RETRYABLE_STATUS or status >= 500
        retry_after = _retry_after_seconds(exc.response.headers)
    else:  # e.g. APIResponseValidationError: the endpoint answered something the client cannot use
        retryable = False
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
    return {
        "type": type(exc).__name__,
        "message": str(exc)[:2000],
        "status": status,
        "retryable": retryable,
        "retryAfter": retry_after,
    }


# ----------------------------------------------------------------------------------------------------------------
# The activity
# ----------------------------------------------------------------------------------------------------------------


async def invoke_model(payload: Any) -> dict[str, Any]:
    """Body of the ``invoke_model`` activity: one model call, with the result or a classified API error.

    Input (docs/internals.md "Activities"): ``{"model": <name or null>, "request": <model_io request>}`` as a dict
    or a JSON string. Output: ``{"ok": true, "response": <model_io response>, "demo": bool}`` or
    ``{"ok": false, "error": {"type", "message", "status", "retryable", "retryAfter"}}`` for ``openai`` API
    errors (see :func:`classify_model_error`). Other exceptions (bugs, malformed input, configuration errors)
    propagate, so the activity fails. Logs one line per call: model, API, latency in ms, tokens (never keys).
    """
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, Mapping) or not isinstance(payload.get("request"), Mapping):
        raise TypeError("invoke_model expects {'model': <name or null>, 'request': <model_io request>}")
    kwargs = decode_model_request(payload["request"])
    request_model = kwargs.pop("model", None)
    config = load_model_config()
    model, demo = get_model(payload.get("model") or request_model, config)
    name = "demo" if demo else (payload.get("model") or request_model or config.model)
    api = "demo" if demo else config.api
    started = time.perf_counter()
    try:
        response = await model.get_response(tracing=ModelTracing.DISABLED, **kwargs)
    except openai.APIError as exc:
        error = classify_model_error(exc)
        assert error is not None
        logger.warning(
            "model call failed: model=%s api=%s mode=%s latency_ms=%d error=%s status=%s retryable=%s "
            "retry_after=%s", name, api, config.mode, (time.perf_counter() - started) * 1000, error["type"],
            error["status"], error["retryable"], error["retryAfter"],
        )
        return {"ok": False, "error": error}
    usage = response.usage
    logger.info(
        "model call: model=%s api=%s mode=%s latency_ms=%d input_tokens=%d output_tokens=%d total_tokens=%d "
        "items=%d demo=%s", name, api, config.mode, (time.perf_counter() - started) * 1000, usage.input_tokens,
        usage.output_tokens, usage.total_tokens, len(response.output), demo,
    )
    return {"ok": True, "response": encode_model_response(response), "demo": demo}


def register_model_activity(bp: Any) -> None:
    """Register the ``invoke_model`` activity (see :func:`invoke_model`) on a ``df.Blueprint`` or ``df.DFApp``.

    Register it once per app (``durable_agents.App`` does).
    """

    async def invoke_model_activity(payload: Any) -> dict[str, Any]:
        return await invoke_model(payload)

    invoke_model_activity.__name__ = ACTIVITY_NAME
    invoke_model_activity.__qualname__ = ACTIVITY_NAME
    invoke_model_activity.__doc__ = invoke_model.__doc__
    bp.activity_trigger(input_name="payload", activity=ACTIVITY_NAME)(invoke_model_activity)


# ----------------------------------------------------------------------------------------------------------------
# The demo model
# ----------------------------------------------------------------------------------------------------------------

_ORDER_RE = re.compile(r"\bORD-?(\d{1,12})\b", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_AMOUNT_RES = (
    re.compile(r"(?P<cur>[$€£])\s?(?P<num>\d+(?:[.,]\d{1,2})?)"),
    re.compile(r"(?<![\w-])(?P<num>\d+(?:[.,]\d{1,2})?)\s?(?P<cur>EUR|USD|GBP|CHF|SEK|DKK|NOK|CAD|AUD|JPY|euros?|dollars?)\b",
               re.IGNORECASE),
    re.compile(r"(?P<cur>EUR|USD|GBP|CHF|CAD|AUD)\s?(?P<num>\d+(?:[.,]\d{1,2})?)\b", re.IGNORECASE),
)
_REFUND_WORDS = ("refund", "money back", "reimburse", "chargeback")
_LIST_WORDS = ("my orders", "all orders", "list", "orders for", "order history", "which orders", "what orders")
_FAILURE_WORDS = ("reject", "denied", "declin", "expired", "not approved", "timed out", "failed", "error",
                  "not found", "cannot", "can't", "unknown", "invalid", "exceeds", "not allowed", "not refundable")
_REASONS = (
    (("broken", "damaged", "cracked", "defect", "faulty", "shattered"), "item arrived damaged"),
    (("late", "never arrived", "not arrived", "didn't arrive", "lost"), "delivery problem"),
    (("wrong", "incorrect", "not what i ordered"), "wrong item delivered"),
    (("cancel",), "order cancelled by customer"),
)


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
        return item.model_dump(exclude_unset=True)
    return {}


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _output_failed(text: str, parsed: Any) -> bool:
    if isinstance(parsed, Mapping):
        if parsed.get("error") or parsed.get("ok") is False:
            return True
        status = str(parsed.get("status", "")).lower()
        return status in ("rejected", "failed", "error", "denied", "expired")
    if isinstance(parsed, list):
        return False
    lowered = text.lower()
    return any(word in lowered for word in _FAILURE_WORDS)


def _money(order: Mapping[str, Any] | None, fallback: str | None = None) -> str | None:
    if not isinstance(order, Mapping):
        return fallback
    if isinstance(order.get("refundable_amount"), str | int | float):
        return str(order["refundable_amount"])  # what the store says may still be refunded, even "0.00"
    for key in ("refundable", "remaining_refundable", "total"):
        value = order.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                continue
            if amount > 0:
                return str(value)
    return fallback


@dataclass
class _Conversation:
    user_text: str
    calls: list[dict[str, Any]]  # {"name", "arguments": dict, "call_id", "output": str | None}
    total_calls: int


def _read_conversation(input: str | Sequence[Any]) -> _Conversation:
    if isinstance(input, str):
        return _Conversation(user_text=input, calls=[], total_calls=0)
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
        calls.append({
            "name": item.get("name"),
            "arguments": args if isinstance(args, dict) else {},
            "call_id": str(item.get("call_id")),
            "output": outputs.get(str(item.get("call_id"))),
        })
    return _Conversation(user_text=user_text, calls=calls, total_calls=total)


def _schema_value(schema: Mapping[str, Any], text: str) -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
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


class DemoModel(Model):
    """An offline, deterministic ``agents.Model`` for demos and tests (labelled "demo"; text starts ``[demo model]``).

    It plays the ``support`` agent's script from the conversation alone, calling only tools it was given:

    * refund ("please refund order ORD-1042, it arrived broken", "refund 25 EUR on ORD-1001"): ``lookup_order`` →
      ``refund_order(order_id, amount, reason)`` with the requested amount or the order's refundable amount / total
      (a decimal string) → ``send_message(customer_email, text)`` → a summary quoting the tool results (the refund,
      or the error / rejection text);
    * an order id alone: ``lookup_order`` → a summary of the order;
    * an email (or "my orders" with an email): ``list_orders`` → the list;
    * a handoff whose agent name appears in the text: that handoff, once;
    * anything else: a generic answer saying what the demo can do and how to configure a real model.

    A structured output type gets a JSON value shaped by its schema. Call ids are ``call_demo_<n>`` (n counts the
    calls in the conversation), so they are unique within a run and identical on replay.
    """

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
        conversation = _read_conversation(input)
        tool_names = {getattr(tool, "name", None) for tool in tools}
        schemas = {getattr(tool, "name", None): getattr(tool, "params_json_schema", None) for tool in tools}
        decision = _decide(conversation, tool_names, handoffs)
        seed = hashlib.sha256(json.dumps([system_instructions, _text_of(input) if isinstance(input, str) else
                                          [_as_dict(i) for i in input]], sort_keys=True, default=str)
                              .encode()).hexdigest()[:16]
        output: list[Any] = []
        if decision[0] == "call":
            _, name, arguments = decision
            n = conversation.total_calls + 1
            output.append(ResponseFunctionToolCall(
                type="function_call", id=f"fc_demo_{n}", call_id=f"call_demo_{n}", name=name,
                arguments=_encode_arguments(arguments, schemas.get(name)), status="completed",
            ))
            out_text = json.dumps(arguments)
        else:
            text = f"{DEMO_PREFIX} {decision[1]}"
            if output_schema is not None and not output_schema.is_plain_text():
                text = json.dumps(_schema_value(output_schema.json_schema(), text), ensure_ascii=False)
            output.append(ResponseOutputMessage(
                type="message", id=f"msg_demo_{seed}", role="assistant", status="completed",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            ))
            out_text = text
        in_tokens = max(1, len(json.dumps(_text_of(input) if isinstance(input, str) else
                                          [_as_dict(i) for i in input], default=str)) // 4)
        out_tokens = max(1, len(out_text) // 4)
        usage = Usage(requests=1, input_tokens=in_tokens, output_tokens=out_tokens,
                      total_tokens=in_tokens + out_tokens)
        return ModelResponse(output=output, usage=usage, response_id=f"resp_demo_{seed}")

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        """Not supported: durable runs call ``get_response`` only. Raises ``agents.exceptions.UserError``."""
        raise UserError("the demo model does not stream; durable agent runs use get_response")


def _encode_arguments(arguments: Mapping[str, Any], schema: Any) -> str:
    """JSON arguments for a call; decimal strings become JSON numbers where the tool's schema wants a number.

    The number is written with the decimal's own digits (``59.90``), never through float arithmetic.
    """
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    parts = []
    for key, value in arguments.items():
        literal = json.dumps(value, ensure_ascii=False)
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


def _find_call(conversation: _Conversation, name: str) -> dict[str, Any] | None:
    for call in reversed(conversation.calls):
        if call["name"] == name:
            return call
    return None


def _decide(conversation: _Conversation, tools: set[Any], handoffs: Sequence[Handoff[Any, Any]]) -> tuple:
    """Return ``("call", tool_name, arguments)`` or ``("final", text)`` for the next demo turn."""
    text = conversation.user_text
    lowered = text.lower()
    match = _ORDER_RE.search(text)
    order_id = f"ORD-{match.group(1)}" if match else None
    email_match = _EMAIL_RE.search(text)
    email_addr = email_match.group(0).lower() if email_match else None
    wants_refund = any(word in lowered for word in _REFUND_WORDS)

    # A handoff the user asks for by the target agent's name (only once per user turn).
    handoff_names = {h.tool_name for h in handoffs}
    already_handed_off = any(call["name"] in handoff_names for call in conversation.calls)
    if not already_handed_off:
        for h in handoffs:
            target = (h.agent_name or "").lower()
            if target and re.search(rf"\b{re.escape(target)}\b", lowered):
                return ("call", h.tool_name, {})

    if order_id and ("lookup_order" in tools or (wants_refund and "refund_order" in tools)):
        return _order_flow(conversation, order_id, email_addr, wants_refund, tools, text)
    if email_addr and "list_orders" in tools:
        listed = _find_call(conversation, "list_orders")
        if listed is None:
            return ("call", "list_orders", {"customer_email": email_addr})
        if listed["output"] is None:
            return ("final", "Still waiting for the order list.")
        parsed = _parse_json(listed["output"])
        if _output_failed(listed["output"], parsed):
            return ("final", f"I could not list the orders of {email_addr}: {listed['output']}")
        orders = parsed.get("orders") if isinstance(parsed, Mapping) else parsed
        if isinstance(orders, list) and orders:
            lines = []
            for order in orders:
                if isinstance(order, Mapping):
                    lines.append(f"{order.get('id')} ({order.get('status')}, {order.get('total')} "
                                 f"{order.get('currency', '')})".replace(" )", ")"))
            return ("final", f"Orders of {email_addr}: " + "; ".join(lines) + ".")
        if isinstance(orders, list):
            return ("final", f"I found no orders for {email_addr}.")
        return ("final", f"Orders of {email_addr}: {listed['output']}")
    names = ", ".join(sorted(str(t) for t in tools if t)) or "none"
    return ("final", "I am the offline demo model (no model is configured). I can look up an order "
                     "(\"Where is ORD-1001?\"), list a customer's orders (give their email) and refund an order "
                     f"(\"Please refund order ORD-1042, it arrived broken\"). Tools available: {names}. Configure "
                     "AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY / OPENAI_BASE_URL for a real model.")


def _requested_amount(text: str) -> str | None:
    for pattern in _AMOUNT_RES:
        found = pattern.search(text)
        if found:
            try:
                return str(Decimal(found.group("num").replace(",", ".")).quantize(Decimal("0.01")))
            except InvalidOperation:
                continue
    return None


def _reason(text: str) -> str:
    lowered = text.lower()
    for words, reason in _REASONS:
        if any(word in lowered for word in words):
            return reason
    return "customer request"


def _order_flow(conversation: _Conversation, order_id: str, email_addr: str | None, wants_refund: bool,
                tools: set[Any], text: str) -> tuple:
    order: Mapping[str, Any] | None = None
    lookup = _find_call(conversation, "lookup_order") if "lookup_order" in tools else None
    if "lookup_order" in tools:
        if lookup is None:
            return ("call", "lookup_order", {"order_id": order_id})
        if lookup["output"] is None:
            return ("final", f"Still waiting for the lookup of {order_id}.")
        parsed = _parse_json(lookup["output"])
        if _output_failed(lookup["output"], parsed) or not isinstance(parsed, Mapping):
            return ("final", f"I could not look up order {order_id}: {lookup['output']}")
        order = parsed.get("order") if isinstance(parsed.get("order"), Mapping) else parsed
    currency = str(order.get("currency", "")) if order else ""
    customer = (str(order.get("customer_email")) if order and order.get("customer_email") else None) or email_addr

    if not wants_refund or "refund_order" not in tools:
        if order is None:
            return ("final", f"I cannot look up {order_id}: no lookup tool is available.")
        items = order.get("items") or []
        names = ", ".join(str(i.get("name")) for i in items if isinstance(i, Mapping)) or "no items"
        return ("final", f"Order {order.get('id', order_id)} is {order.get('status', 'unknown')}: total "
                         f"{order.get('total')} {currency} ({names}), placed {order.get('created_at', 'n/a')}"
                         f" by {customer or 'unknown'}.")

    refund = _find_call(conversation, "refund_order")
    if refund is None:
        left = _money(order)
        amount = _requested_amount(text) or left
        if amount is None:
            return ("final", f"I could not determine an amount to refund for {order_id}; please tell me how much.")
        try:
            nothing_left = left is not None and Decimal(left) <= 0
        except InvalidOperation:
            nothing_left = False
        if nothing_left:
            return ("final", f"Order {order_id} has nothing left to refund (refunded so far: "
                             f"{order.get('refunded_total', order.get('total')) if order else 'n/a'} {currency}).")
        return ("call", "refund_order", {"order_id": order_id, "amount": amount, "reason": _reason(text)})
    if refund["output"] is None:
        return ("final", f"The refund for {order_id} is waiting for a decision.")
    amount = refund["arguments"].get("amount")
    parsed_refund = _parse_json(refund["output"])
    failed = _output_failed(refund["output"], parsed_refund)
    refund_id = None
    if isinstance(parsed_refund, Mapping):
        refund_id = parsed_refund.get("refund_id") or parsed_refund.get("refundId") or parsed_refund.get("id")
    if isinstance(parsed_refund, Mapping) and isinstance(parsed_refund.get("amount"), str | int | float):
        amount = parsed_refund["amount"]
        currency = str(parsed_refund.get("currency") or currency)
    money = f"{amount} {currency}".strip()
    if failed:
        summary = f"The refund of {money} for order {order_id} was not made: {refund['output']}"
        customer_text = (f"Hello, we could not refund {money} for your order {order_id} at this time. "
                         "Our team will get back to you.")
    else:
        ref = f" (refund {refund_id})" if refund_id else ""
        summary = f"Refunded {money} for order {order_id}{ref}."
        left = parsed_refund.get("refundable_amount") if isinstance(parsed_refund, Mapping) else None
        if left is not None:
            summary += f" Still refundable on this order: {left} {currency}."
        customer_text = (f"Hello, we refunded {money} for your order {order_id}{ref}. "
                         "It will appear on your statement within a few days.")

    if "send_message" in tools and customer:
        sent = _find_call(conversation, "send_message")
        if sent is None:
            return ("call", "send_message", {"customer_email": customer, "text": customer_text})
        if sent["output"] is not None and _output_failed(sent["output"], _parse_json(sent["output"])):
            summary += f" Messaging {customer} failed: {sent['output']}"
        else:
            summary += f" I wrote to {customer}."
    return ("final", summary)


def announce_model_configuration() -> None:
    """Log the model configuration once when the app loads, so a missing model is visible at start-up (the demo
    warning), not only at the first model call. A bad ``OPENAI_API`` is logged here and raised at the first call."""
    try:
        config = load_model_config()
    except ValueError as exc:
        logger.error("Model configuration error: %s", exc)
        return
    if config.mode == "demo":
        get_model(config=config)  # logs the one demo warning of this process
    else:
        logger.info("Model calls go to %s (settings: docs/internals.md)", config.label)

