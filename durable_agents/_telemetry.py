"""OpenTelemetry traces of agent runs (internal; docs/internals.md "Traces").

Orchestrator code replays: a span emitted there would be emitted again on every replay. So every span of a run is
emitted by code that runs once per execution: the ``invoke_model`` activity (``chat <model>``), tool activities
(``execute_tool <tool>``), the HTTP decide handler and the audit activity's expiry call (``approval <tool>``), and
the run span ``invoke_agent <agent>`` (see :func:`emit_run_span`). An activity attempt that Durable retries is a
new execution, hence a new span.

Spans that are parents of later spans have DETERMINISTIC ids, so that a child names its parent before the parent
is exported (:class:`RunTrace`):

* trace id: the first 16 bytes of ``sha256("durable-agents/trace/" + <instance id>)``, unless the run input
  carries ``"trace": {"traceparent": <W3C traceparent of the HTTP request that started the run>}`` (written by
  ``POST agents/{agent}/runs``): then the request's trace id, and the run span LINKS to the request's span;
* run span id: the first 8 bytes of ``sha256("durable-agents/run/" + <instance id>)``; model, tool and approval
  spans are its children.

Attributes follow the GenAI semantic conventions (https://opentelemetry.io/docs/specs/semconv/gen-ai/).
Nothing here ever raises into the caller because of telemetry: a failing exporter or a malformed ``trace`` member
costs the spans, never the run (errors are logged once per kind at DEBUG/WARNING, never with secrets).

Export (:func:`setup_telemetry`, called once by ``durable_agents.App``): OTLP/HTTP when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; Application Insights through
the Azure Monitor OpenTelemetry distro when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, with Entra ID when
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says ``Authorization=AAD`` (``ManagedIdentityCredential`` of its
``ClientId``, else of ``AZURE_CLIENT_ID``); nothing when neither is set (then spans are not even built).

The OpenAI Agents SDK's trace processors (``agents.add_trace_processor``) see the same model and tool calls: each
activity opens the SDK's ``generation_span`` / ``function_span`` under an SDK trace whose id is deterministic per
run (:attr:`RunTrace.sdk_trace_id`). The SDK's default exporter (to the OpenAI platform) is removed unless the
SDK's own ``OPENAI_AGENTS_DISABLE_TRACING`` is explicitly ``false`` / ``0`` (and, as the SDK requires, an
``OPENAI_API_KEY`` is set): run data never goes to OpenAI by default.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace as otel_trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

from ._config import get_setting

__all__ = [
    "TRACE_MEMBER",
    "RunTrace",
    "emit_approval_span",
    "emit_run_span",
    "model_span",
    "parse_traceparent",
    "request_trace",
    "reset_telemetry",
    "setup_telemetry",
    "tool_span",
]

logger = logging.getLogger("durable_agents.telemetry")

TRACE_MEMBER = "trace"
"""Member of a run input (and of activity inputs that carry it) holding ``{"traceparent": <W3C traceparent>}``."""

_TRACER_NAME = "durable_agents"
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


# ---------------------------------------------------------------------------------------------------------------
# Deterministic ids


def _digest(kind: str, instance_id: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(f"durable-agents/{kind}/{instance_id}".encode()).digest()[:size], "big")


def parse_traceparent(value: Any) -> SpanContext | None:
    """The remote span context of a W3C ``traceparent`` header value (``00-<32 hex>-<16 hex>-<2 hex>``), or
    ``None`` for anything else (another version than ``00``, all-zero ids, not a string). W3C Trace Context §3.2."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None or match.group(1) != "00":
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    if trace_id == 0 or span_id == 0:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match.group(4), 16) & 1))


def request_trace(headers: Mapping[str, str] | Any) -> dict[str, str] | None:
    """The run input's ``trace`` member for an HTTP request: ``{"traceparent": <its valid traceparent header>}``,
    else ``None`` (no header, or a malformed one: ignored, never an error). ``headers`` is any mapping with
    ``get`` (``func.HttpRequest.headers`` is case-insensitive)."""
    value = headers.get("traceparent") if headers is not None else None
    context = parse_traceparent(value)
    if context is None:
        return None
    return {"traceparent": f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"}


@dataclass(frozen=True)
class RunTrace:
    """Where the spans of one run (one Durable instance) go.

    ``trace_id`` (128-bit int) and ``span_id`` (64-bit int, the run span's) are deterministic (module docstring);
    ``link`` is the span context of the HTTP request that started the run, when its input carried one.
    """

    run_id: str
    trace_id: int
    span_id: int
    link: SpanContext | None = None

    @classmethod
    def of(cls, run_id: str, trace: Any = None) -> RunTrace:
        """The trace of run ``run_id``; ``trace`` is the run input's ``trace`` member (``{"traceparent"}``, or
        anything else, ignored). Never raises."""
        link = parse_traceparent(trace.get("traceparent")) if isinstance(trace, Mapping) else None
        trace_id = link.trace_id if link is not None else _digest("trace", run_id, 16)
        return cls(run_id=run_id, trace_id=trace_id, span_id=_digest("run", run_id, 8), link=link)

    def parent(self) -> Context:
        """An OpenTelemetry context whose current span is the run span (remote, sampled): the parent of children."""
        span = NonRecordingSpan(SpanContext(self.trace_id, self.span_id, is_remote=True,
                                            trace_flags=TraceFlags(TraceFlags.SAMPLED)))
        return otel_trace.set_span_in_context(span, Context())

    @property
    def sdk_trace_id(self) -> str:
        """The OpenAI Agents SDK trace id of this run: ``"trace_" + 32 hex`` (the OTel trace id in hex)."""
        return f"trace_{self.trace_id:032x}"


def _run_trace(payload: Mapping[str, Any], run_id: Any) -> RunTrace | None:
    return RunTrace.of(run_id, payload.get(TRACE_MEMBER)) if isinstance(run_id, str) and run_id else None


class _ChosenIds(IdGenerator):
    """The provider's id generator, except while :func:`_chosen_ids` names the next ids (the run span's)."""

    def __init__(self, inner: IdGenerator) -> None:
        self.inner = inner

    def generate_span_id(self) -> int:
        chosen = _NEXT_IDS.get()
        return chosen[1] if chosen is not None else self.inner.generate_span_id()

    def generate_trace_id(self) -> int:
        chosen = _NEXT_IDS.get()
        return chosen[0] if chosen is not None else self.inner.generate_trace_id()


_NEXT_IDS: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar("durable_agents_next_ids",
                                                                                 default=None)


# ---------------------------------------------------------------------------------------------------------------
# Setup


@dataclass
class _State:
    provider: TracerProvider | None = None
    exporters: tuple[str, ...] = ()
    configured: bool = False
    sdk_ready: bool = False  # the SDK's default OpenAI exporter was dealt with: SDK spans may be opened


_STATE = _State()


def _false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"false", "0", "no", "off"}


def _configure_sdk_tracing() -> None:
    """Remove the Agents SDK's default OpenAI exporter unless ``OPENAI_AGENTS_DISABLE_TRACING`` is explicitly
    false (the SDK's own switch); processors added with ``agents.add_trace_processor`` stay."""
    _STATE.sdk_ready = True
    if _false(os.environ.get("OPENAI_AGENTS_DISABLE_TRACING")):
        return
    from agents.tracing import get_trace_provider
    from agents.tracing.processors import default_processor

    provider: Any = get_trace_provider()
    multi = getattr(provider, "_multi_processor", None)
    processors = getattr(multi, "_processors", None)
    if multi is None or processors is None:
        return
    default = default_processor()
    kept = tuple(p for p in processors if p is not default)
    if len(kept) != len(processors):
        multi.set_processors(list(kept))


def _azure_monitor_credential() -> Any:
    """``ManagedIdentityCredential`` for Entra ID ingestion (``Authorization=AAD``), else ``None`` (key-based)."""
    auth = get_setting("APPLICATIONINSIGHTS_AUTHENTICATION_STRING") or ""
    parts = dict(part.split("=", 1) for part in auth.split(";") if "=" in part)
    if parts.get("Authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = parts.get("ClientId") or get_setting("AZURE_CLIENT_ID")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def setup_telemetry(tracer_provider: TracerProvider | None = None) -> tuple[str, ...]:
    """Configure where the run spans go, once per process; returns the exporters in use (``"otlp"``,
    ``"azure-monitor"``, ``"given"``, ``"global"``; empty: spans are not built).

    With ``tracer_provider`` (tests, or an app that built its own SDK provider) the spans go there and nothing else
    is configured. Otherwise, on the first call: ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set → the Azure Monitor
    distro's ``configure_azure_monitor`` (Entra ID credential per :func:`_azure_monitor_credential`, the way the
    Azure Functions OpenTelemetry docs describe it); ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` set → an OTLP/HTTP ``BatchSpanProcessor`` (the exporter reads the
    standard ``OTEL_EXPORTER_OTLP_*`` variables itself); neither → a global SDK ``TracerProvider`` someone else
    set is used, else nothing. Also removes the Agents SDK's default OpenAI exporter (module docstring). Later
    calls without ``tracer_provider`` return the first answer. Never raises: a distro or exporter that cannot
    be set up is logged (without the connection string) and skipped.
    """
    if tracer_provider is not None:
        _use(tracer_provider, ("given",))
        _configure_sdk_tracing()
        return _STATE.exporters
    if _STATE.configured:
        return _STATE.exporters
    _STATE.configured = True
    exporters: list[str] = []
    provider: TracerProvider | None = None
    if get_setting("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        try:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(credential=_azure_monitor_credential())
            current = otel_trace.get_tracer_provider()
            if isinstance(current, TracerProvider):
                provider = current
                exporters.append("azure-monitor")
        except Exception as exc:  # a broken distro must not stop the app
            logger.warning("Application Insights tracing is off: %s", type(exc).__name__)
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            if provider is None:
                current = otel_trace.get_tracer_provider()
                if isinstance(current, TracerProvider):
                    provider = current
                else:
                    provider = TracerProvider(resource=Resource.create(
                        {"service.name": os.environ.get("OTEL_SERVICE_NAME") or "durable-agents"}))
                    otel_trace.set_tracer_provider(provider)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
            exporters.append("otlp")
        except Exception as exc:
            logger.warning("OTLP tracing is off: %s", type(exc).__name__)
    if provider is None:
        current = otel_trace.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
            exporters.append("global")
    if provider is not None:
        _use(provider, tuple(exporters))
    _configure_sdk_tracing()
    logger.info("Traces: %s", ", ".join(exporters) or "off (no exporter configured)")
    return _STATE.exporters


def _use(provider: TracerProvider, exporters: tuple[str, ...]) -> None:
    current: Any = provider.id_generator
    if not isinstance(current, _ChosenIds):
        chosen: Any = _ChosenIds(current or RandomIdGenerator())
        provider.id_generator = chosen
    _STATE.provider, _STATE.exporters, _STATE.configured = provider, exporters, True


def reset_telemetry() -> None:
    """Forget the configured provider (tests): spans are not built until :func:`setup_telemetry` runs again."""
    _STATE.provider, _STATE.exporters, _STATE.configured, _STATE.sdk_ready = None, (), False, False


def _tracer() -> otel_trace.Tracer | None:
    provider = _STATE.provider
    return provider.get_tracer(_TRACER_NAME) if provider is not None else None


# ---------------------------------------------------------------------------------------------------------------
# Spans


def _time_ns(value: Any) -> int | None:
    """Nanoseconds since the epoch of an ISO 8601 time (``format_time``) or an aware datetime, else ``None``."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return int(value.timestamp() * 1_000_000_000)
    return None


def _now_ns() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1_000_000_000)


@contextlib.contextmanager
def _sdk_span(run: RunTrace | None, kind: str, **fields: Any) -> Iterator[Any]:
    """The Agents SDK's ``generation_span`` (``kind`` ``"generation"``) or ``function_span`` under the run's SDK
    trace; yields the SDK span, or ``None`` when there is no run, the SDK's tracing is disabled or
    :func:`setup_telemetry` has not run (until then the SDK's default exporter could send the spans to OpenAI)."""
    if run is None or not _STATE.sdk_ready:
        yield None
        return
    from agents.tracing import function_span, generation_span, trace

    try:
        sdk_trace = trace("durable_agents run", trace_id=run.sdk_trace_id, group_id=run.run_id,
                          metadata={"run_id": run.run_id})
        sdk_trace.start(mark_as_current=True)
    except Exception:  # telemetry never fails the call
        logger.debug("SDK trace could not start", exc_info=True)
        yield None
        return
    try:
        span = generation_span(**fields) if kind == "generation" else function_span(**fields)
        with span:
            yield span
    finally:
        sdk_trace.finish(reset_current=True)


class ModelSpan:
    """What :func:`model_span` yields: call :meth:`response` with the ``ModelResponse`` or :meth:`failed` with the
    error type, once."""

    def __init__(self, span: Any, sdk_span: Any) -> None:
        self.span, self.sdk_span = span, sdk_span
        self.final = False
        """True after :meth:`response` for a response that calls no tools (the agent's final answer)."""

    def response(self, response: Any) -> None:
        """Record usage (``gen_ai.usage.*``), ``gen_ai.response.id`` and ``gen_ai.response.finish_reasons``
        (``["tool_calls"]`` when the output calls a tool or hands off, else ``["stop"]``)."""
        usage = getattr(response, "usage", None)
        output = list(getattr(response, "output", None) or [])
        calls = any(getattr(item, "type", None) in _TOOL_CALL_TYPES for item in output)
        self.final = not calls
        if self.span is not None:
            if usage is not None:
                self.span.set_attribute("gen_ai.usage.input_tokens", int(usage.input_tokens or 0))
                self.span.set_attribute("gen_ai.usage.output_tokens", int(usage.output_tokens or 0))
            if getattr(response, "response_id", None):
                self.span.set_attribute("gen_ai.response.id", str(response.response_id))
            self.span.set_attribute("gen_ai.response.finish_reasons", ["tool_calls" if calls else "stop"])
        if self.sdk_span is not None and usage is not None:
            self.sdk_span.span_data.usage = {"input_tokens": usage.input_tokens,
                                             "output_tokens": usage.output_tokens}

    def failed(self, error_type: str, message: str | None = None) -> None:
        """Mark the call failed with ``error.type`` ``error_type`` (an ``openai`` error class name...)."""
        if self.span is not None:
            self.span.set_attribute("error.type", error_type)
            self.span.set_status(Status(StatusCode.ERROR, error_type))
        if self.sdk_span is not None:
            from agents.tracing import SpanError

            self.sdk_span.set_error(SpanError(message=error_type, data={"message": (message or "")[:500]}))


_TOOL_CALL_TYPES = frozenset({"function_call", "computer_call", "file_search_call", "web_search_call",
                              "code_interpreter_call", "local_shell_call", "shell_call", "apply_patch_call",
                              "mcp_call", "custom_tool_call", "image_generation_call"})


def _provider_name(api: str, mode: str) -> str:
    if mode == "azure":
        return "azure.ai.openai"
    if mode == "demo":
        return "durable_agents.demo"
    if mode in {"provider", "registered"}:
        return api
    return "openai"


@contextlib.contextmanager
def model_span(payload: Mapping[str, Any], model: str, *, api: str, mode: str) -> Iterator[ModelSpan]:
    """A ``chat <model>`` span (kind CLIENT) around one model call of the ``invoke_model`` activity.

    ``payload`` is the activity input: its ``run`` (the instance id) and ``trace`` members place the span under
    the run span (:class:`RunTrace`); without ``run`` the span is a root of its own trace. Attributes:
    ``gen_ai.operation.name`` ``chat``, ``gen_ai.request.model``, ``gen_ai.provider.name`` / ``gen_ai.system``
    (``openai``, ``azure.ai.openai``, ``provider:<name>``...), ``durable_agents.run.id``, ``durable_agents.api``
    and what :class:`ModelSpan` records. An exception escaping the block is recorded (``error.type``) and
    re-raised. Also opens the SDK's ``generation_span``. With no exporter configured the yielded recorder does
    nothing.
    """
    run = _run_trace(payload, payload.get("run"))
    tracer = _tracer()
    provider = _provider_name(api, mode)
    with _sdk_span(run, "generation", model=model) as sdk_span:
        if tracer is None:
            recorder = ModelSpan(None, sdk_span)
            yield recorder
            return
        attributes = {"gen_ai.operation.name": "chat", "gen_ai.request.model": model,
                      "gen_ai.provider.name": provider, "gen_ai.system": provider, "durable_agents.api": api}
        if run is not None:
            attributes["durable_agents.run.id"] = run.run_id
        with tracer.start_as_current_span(f"chat {model}", context=run.parent() if run else None,
                                          kind=SpanKind.CLIENT, attributes=attributes,
                                          record_exception=True, set_status_on_exception=True) as span:
            recorder = ModelSpan(span, sdk_span)
            try:
                yield recorder
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise


@contextlib.contextmanager
def tool_span(payload: Any, tool_name: str) -> Iterator[Any]:
    """An ``execute_tool <tool_name>`` span (kind INTERNAL) around one execution of a tool activity.

    ``payload`` is the activity input (:class:`~durable_agents._contracts.ToolActivityInput`, a dict or its JSON
    text): ``call.runId`` / ``trace`` place the span under the run span, ``call.callId`` is
    ``gen_ai.tool.call.id``, ``call.agent`` ``gen_ai.agent.name``. An exception escaping the block is recorded
    (``error.type``, status ERROR) and re-raised. Also opens the SDK's ``function_span``. Yields the span (or
    ``None`` when no exporter is configured).
    """
    data: Any = payload
    if isinstance(data, str):
        import json

        try:
            data = json.loads(data)
        except ValueError:
            data = {}
    data = data if isinstance(data, Mapping) else {}
    call = data.get("call") if isinstance(data.get("call"), Mapping) else {}
    run = _run_trace(data, call.get("runId"))
    tracer = _tracer()
    with _sdk_span(run, "function", name=tool_name):
        if tracer is None:
            yield None
            return
        attributes: dict[str, Any] = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": tool_name,
                                      "gen_ai.tool.type": "function"}
        if isinstance(call.get("callId"), str):
            attributes["gen_ai.tool.call.id"] = call["callId"]
        if isinstance(call.get("agent"), str):
            attributes["gen_ai.agent.name"] = call["agent"]
        if run is not None:
            attributes["durable_agents.run.id"] = run.run_id
        with tracer.start_as_current_span(f"execute_tool {tool_name}", context=run.parent() if run else None,
                                          kind=SpanKind.INTERNAL, attributes=attributes,
                                          record_exception=True, set_status_on_exception=True) as span:
            try:
                yield span
            except BaseException as exc:
                span.set_attribute("error.type", type(exc).__name__)
                raise


def emit_approval_span(run_id: str, trace: Any, approval: Mapping[str, Any], decision: str,
                       decided_at: Any = None) -> None:
    """Emit one finished ``approval <tool>`` span: the wait from ``approval["requestedAt"]`` to ``decided_at``
    (ISO 8601 text or an aware datetime; default now), a child of run ``run_id``'s run span.

    ``approval`` is a pending approval (:class:`~durable_agents._contracts.PendingApproval`: ``id``, ``kind``,
    ``tool``, ``requestedAt``) or an audit item; ``decision`` ``approved`` / ``rejected`` / ``expired``; ``trace``
    the run input's ``trace`` member (or ``None``). Callers emit it once: the HTTP decide handler when it records a
    new decision, the audit activity when it records a new expiry. Never raises.
    """
    tracer = _tracer()
    if tracer is None:
        return
    try:
        run = RunTrace.of(run_id, trace)
        end = _time_ns(decided_at) or _now_ns()
        start = min(_time_ns(approval.get("requestedAt")) or end, end)
        tool = str(approval.get("tool") or "")
        kind = str(approval.get("kind") or "tool")
        attributes: dict[str, Any] = {"durable_agents.approval.id": str(approval.get("id") or ""),
                                      "durable_agents.approval.kind": kind,
                                      "durable_agents.approval.decision": decision,
                                      "durable_agents.run.id": run_id, "gen_ai.tool.name": tool}
        if kind == "tool":
            attributes["gen_ai.tool.call.id"] = str(approval.get("id") or "")
        span = tracer.start_span(f"approval {tool}", context=run.parent(), kind=SpanKind.INTERNAL,
                                 attributes=attributes, start_time=start)
        span.end(end_time=end)
    except Exception:
        logger.debug("approval span not emitted", exc_info=True)


def emit_run_span(run_id: str, trace: Any, agent: str | None, *, started_at: Any, ended_at: Any = None,
                  error_type: str | None = None, attributes: Mapping[str, Any] | None = None) -> None:
    """Emit the run span ``invoke_agent <agent>`` (kind INTERNAL) with its deterministic trace and span ids
    (:class:`RunTrace`), from ``started_at`` to ``ended_at`` (ISO 8601 text or aware datetimes; ``ended_at``
    default now), linked to the starting request's span when ``trace`` carries one. ``error_type`` marks a failed
    run (``error.type``, status ERROR). Call it ONCE per run, from code that does not replay. Never raises.
    """
    tracer = _tracer()
    if tracer is None:
        return
    try:
        run = RunTrace.of(run_id, trace)
        end = _time_ns(ended_at) or _now_ns()
        start = min(_time_ns(started_at) or end, end)
        values: dict[str, Any] = {"gen_ai.operation.name": "invoke_agent", "durable_agents.run.id": run_id,
                                  **(attributes or {})}
        if agent:
            values["gen_ai.agent.name"] = agent
        if error_type:
            values["error.type"] = error_type
        links = [Link(run.link, {"durable_agents.link": "start_request"})] if run.link is not None else []
        token = _NEXT_IDS.set((run.trace_id, run.span_id))
        try:
            span = tracer.start_span(f"invoke_agent {agent}" if agent else "invoke_agent", context=Context(),
                                     kind=SpanKind.INTERNAL, attributes=values, links=links,
                                     start_time=start)
        finally:
            _NEXT_IDS.reset(token)
        if error_type:
            span.set_status(Status(StatusCode.ERROR, error_type))
        span.end(end_time=end)
    except Exception:
        logger.debug("run span not emitted", exc_info=True)
