"""The ``invoke_model`` activity: one model call per activity, with classified API errors (internal).

Every model call of every agent run is this activity (name :data:`durable_agents._contracts.INVOKE_MODEL_ACTIVITY`,
shapes :class:`~durable_agents._contracts.InvokeModelInput` / :class:`~durable_agents._contracts.InvokeModelResult`,
docs/internals.md "Activities"). The model comes from settings (:mod:`durable_agents._model_config`); with
nothing configured it is the demo model (:mod:`durable_agents._demo`). A call whose input names a registered
provider (``"provider"``) or model (``"registeredModel"``) is made with the app's registered factory
(:mod:`durable_agents._providers`), built here, in the activity worker, never in the orchestrator; model names
with a prefix (``litellm/...``, ``<registered name>/...``) are resolved by the SDK's ``MultiProvider``
(:func:`durable_agents._model_config.get_model`).

Retries belong to the orchestrator: the OpenAI client is built with ``max_retries=0``, the activity calls
``Model.get_response`` once (the SDK's runner-level retries are not involved), and failures come back as
``{"ok": false, "error": {...}}`` with ``retryable`` / ``retryAfter``.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import openai
from agents.exceptions import UserError
from agents.models.interface import Model, ModelTracing

from ._contracts import INVOKE_MODEL_ACTIVITY, InvokeModelResult, ModelErrorInfo
from ._jsonsafe import json_safe
from ._model_config import get_model, load_model_config
from ._model_io import decode_model_request, encode_model_response, prepare_model_call
from ._payloads import PayloadMissing, resolve_model_payload
from ._providers import build_model, build_provider
from ._telemetry import TRACE_MEMBER, emit_run_span, model_span

__all__ = [
    "announce_model_configuration",
    "classify_model_error",
    "invoke_model",
    "register_model_activity",
]

logger = logging.getLogger(__name__)

_RETRYABLE_STATUS = frozenset({408, 409, 429})
_MAX_ERROR_MESSAGE = 2000
"""Characters of an error message kept in the activity result (the rest is cut)."""

RUN_STARTED_MEMBER = "runStartedAt"
"""Member of a version-3 ``invoke_model`` input set only for the model calls of an agent run orchestration's
top-level run: the run's start (ISO 8601, the first generation's). Such a call emits the run span
``invoke_agent <agent>`` from that start when it ends the run: its response calls no tool, or it fails with a
non-retryable error (docs/internals.md "Traces")."""


def _emit_run_span(sent: Mapping[str, Any], error_type: str | None = None) -> None:
    """The run span of a model call that ends its top-level run (:data:`RUN_STARTED_MEMBER`); nothing for others."""
    started = sent.get(RUN_STARTED_MEMBER)
    if isinstance(started, str) and isinstance(sent.get("run"), str):
        emit_run_span(sent["run"], sent.get(TRACE_MEMBER), sent.get("agent"), started_at=started,
                      error_type=error_type)


def _retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), else ``None``."""
    if headers is None:
        return None
    value_ms = headers.get("retry-after-ms")
    if value_ms is not None:
        try:
            ms = float(value_ms)
            if ms >= 0 and math.isfinite(ms):
                return round(ms / 1000.0, 3)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
        return round(seconds, 3) if 0 <= seconds < math.inf else None
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


def classify_model_error(exc: BaseException) -> ModelErrorInfo | None:
    """Describe an ``openai`` API error as the ``invoke_model`` error object, or ``None`` for other exceptions.

    Returns ``{"type": <exception class name>, "message": <at most 2000 characters>, "status": <HTTP status or
    null>, "retryable": bool, "retryAfter": <seconds or null>}``. Retryable (docs/internals.md "Activities"):
    timeouts, connection errors, HTTP 408, 409, 429 and 5xx. ``retryAfter`` comes from the ``retry-after-ms`` or
    ``retry-after`` response header (seconds or HTTP date). Anything that is not an ``openai.APIError`` returns
    ``None`` (a bug; the caller lets it propagate). Never raises.
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
        "message": str(exc)[:_MAX_ERROR_MESSAGE],
        "status": status,
        "retryable": retryable,
        "retryAfter": retry_after,
    }


async def invoke_model(payload: Any) -> InvokeModelResult:
    """Body of the ``invoke_model`` activity: one model call, with the result or a classified API error.

    Input: an :class:`~durable_agents._contracts.InvokeModelInput`, ``{"model": <name or null>, "request":
    <model_io request>}``, plus ``"provider": <registered provider name>`` or ``"registeredModel": <registered
    model name>`` when the run uses them (:class:`durable_agents._providers.ProviderInvokeModelInput`), as a dict
    or a JSON string. Output: an :class:`~durable_agents._contracts.InvokeModelResult`, ``{"ok": true,
    "response": <model_io response>, "demo": bool}`` or ``{"ok": false, "error": {"type", "message", "status",
    "retryable", "retryAfter"}}`` for ``openai`` API errors (see :func:`classify_model_error`; LiteLLM's errors
    are ``openai`` errors too) and, with ``type`` ``"UserError"`` and ``retryable`` false, for a model that cannot
    be built here (a provider or model not registered in this process, ``litellm/...`` without ``litellm``).

    With ``provider`` the model is ``build_provider(provider).get_model(model)``; with ``registeredModel`` it is
    ``build_model(registeredModel)``; otherwise :func:`~durable_agents._model_config.get_model` on the settings
    (and the SDK's ``MultiProvider`` for prefixed names). The request is made JSON-safe first (lone surrogates →
    U+FFFD, NaN / Infinity → ``null``). Raises ``TypeError`` for a payload of another shape, ``ValueError`` for
    invalid JSON or a bad ``OPENAI_API`` / ``MODEL_TIMEOUT`` setting; any other exception (bugs, a demo
    responder's error, a registered factory's or model's own non-``openai`` error) propagates too, so the activity
    fails. Logs one line per call: model, API, latency in ms, tokens (never keys).

    Emits one ``chat <model>`` span per call (:func:`durable_agents._telemetry.model_span`: GenAI attributes,
    under the run span of ``payload["run"]``) and, when the call ends a top-level run (:data:`RUN_STARTED_MEMBER`),
    the run span.
    """
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, Mapping) or not isinstance(payload.get("request"), Mapping):
        raise TypeError("invoke_model expects {'model': <name or null>, 'request': <model_io request>}")
    for member in ("provider", "registeredModel"):
        if member in payload and not isinstance(payload[member], str):
            raise TypeError(f"invoke_model's {member!r} must be a registered name (str)")
    sent = payload  # as the orchestrator sent it: "run" / "trace" place the spans (durable_agents._telemetry)
    try:  # markers of payloads kept in the blob store (durable_agents._payloads)
        payload, input_ref = resolve_model_payload(payload)
    except PayloadMissing as exc:
        missing: ModelErrorInfo = {"type": "PayloadMissing", "message": str(exc)[:_MAX_ERROR_MESSAGE],
                                   "status": None, "retryable": False, "retryAfter": None}
        logger.error("model call failed: %s", missing["message"])
        return {"ok": False, "error": missing}
    # Lone surrogates (a tool result cut from a document) and NaN (a tool's float) never reach the model API: the
    # request body must be UTF-8 JSON (durable_agents._jsonsafe).
    kwargs = decode_model_request(json_safe(payload["request"]))
    request_model = kwargs.pop("model", None)
    try:
        model, demo, name, api, mode = _resolve_model(payload, request_model)
        # Hosted tools on Chat Completions: a clear UserError; %SETTING% hosted MCP credentials filled in here.
        prepare_model_call(kwargs, api=api)
    except UserError as exc:
        error: ModelErrorInfo = {"type": "UserError", "message": str(exc)[:_MAX_ERROR_MESSAGE], "status": None,
                                 "retryable": False, "retryAfter": None}
        logger.error("model call failed: the model could not be built here: %s", error["message"])
        return {"ok": False, "error": error}
    started = time.perf_counter()
    with model_span(sent, name, api=api, mode=mode) as span:
        try:
            response = await model.get_response(tracing=ModelTracing.DISABLED, **kwargs)
        except openai.APIError as exc:
            classified = classify_model_error(exc)
            assert classified is not None
            error = classified
            span.failed(error["type"], error["message"])
            if not error["retryable"]:
                _emit_run_span(sent, error_type=error["type"])
            logger.warning(
                "model call failed: model=%s api=%s mode=%s latency_ms=%d error=%s status=%s retryable=%s "
                "retry_after=%s", name, api, mode, (time.perf_counter() - started) * 1000, error["type"],
                error["status"], error["retryable"], error["retryAfter"],
            )
            return {"ok": False, "error": error}
        span.response(response)
    if span.final:
        _emit_run_span(sent)
    usage = response.usage
    logger.info(
        "model call: model=%s api=%s mode=%s latency_ms=%d input_tokens=%d output_tokens=%d total_tokens=%d "
        "items=%d demo=%s", name, api, mode, (time.perf_counter() - started) * 1000, usage.input_tokens,
        usage.output_tokens, usage.total_tokens, len(response.output), demo,
    )
    result: InvokeModelResult = {"ok": True, "response": encode_model_response(response), "demo": demo}
    if input_ref is not None:
        result["inputRef"] = input_ref
    return result


def _resolve_model(payload: Mapping[str, Any], request_model: Any) -> tuple[Model, bool, str, str, str]:
    """``(model, is_demo, model label, api label, mode)`` for one call (labels for the log line only).

    Settings are read only for calls on the configured API: a registered provider or model does not depend on
    ``OPENAI_API`` / ``MODEL_TIMEOUT``. Raises ``agents.UserError`` for what cannot be built in this process.
    """
    model_name = payload.get("model") or request_model
    registered = payload.get("registeredModel")
    if registered is not None:
        return build_model(registered), False, f"registered:{registered}", "registered", "registered"
    provider = payload.get("provider")
    if provider is not None:
        model = build_provider(provider).get_model(payload.get("model"))
        return model, False, str(model_name or "(provider default)"), f"provider:{provider}", "provider"
    config = load_model_config()
    model, demo = get_model(model_name, config)
    name = "demo" if demo else (model_name or config.model)
    api = "demo" if demo else config.api
    return model, demo, name, api, config.mode


def register_model_activity(bp: Any) -> None:
    """Register the ``invoke_model`` activity (see :func:`invoke_model`) on a ``df.Blueprint`` or ``df.DFApp``.

    The activity is named :data:`~durable_agents._contracts.INVOKE_MODEL_ACTIVITY` and binds its input as
    ``payload``. Register it once per app (``durable_agents.App`` does); ``bp`` is anything with the Durable
    ``activity_trigger`` decorator.
    """

    async def invoke_model_activity(payload: Any) -> InvokeModelResult:
        return await invoke_model(payload)

    invoke_model_activity.__name__ = INVOKE_MODEL_ACTIVITY
    invoke_model_activity.__qualname__ = INVOKE_MODEL_ACTIVITY
    invoke_model_activity.__doc__ = invoke_model.__doc__
    bp.activity_trigger(input_name="payload", activity=INVOKE_MODEL_ACTIVITY)(invoke_model_activity)


def announce_model_configuration() -> None:
    """Log the model configuration once when the app loads, so a missing model is visible at start-up (the demo
    warning), not only at the first model call. A bad ``OPENAI_API`` is logged here (never raised) and raised at the
    first model call."""
    try:
        config = load_model_config()
    except ValueError as exc:
        logger.error("Model configuration error: %s", exc)
        return
    if config.mode == "demo":
        get_model(config=config)  # logs the one demo warning of this process
    else:
        logger.info("Model calls go to %s (settings: docs/internals.md)", config.label)
