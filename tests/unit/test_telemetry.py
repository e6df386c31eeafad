"""OpenTelemetry traces of agent runs (``durable_agents._telemetry``): runs driven by the test kit's ReplayHarness with
the live-run cache off (every episode replays), the app's real ``invoke_model`` activity calling a registered SDK
``ScriptedModel``, spans caught by the OTel SDK's ``InMemorySpanExporter``: every model and tool span exactly once,
under the run span's deterministic ids, with the GenAI attributes; the SDK's own trace processors see the model and
tool spans."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from agents import Agent, Runner, add_trace_processor
from agents.testing import ModelStep, assistant_message, function_call
from agents.testing import ScriptedModel as SdkScriptedModel
from agents.tracing import TracingProcessor
from agents.usage import Usage
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import durable_agents
from durable_agents import _providers, _telemetry
from durable_agents import _runner as durable_runner
from durable_agents._contracts import RUN_VERSION
from durable_agents.testing import ReplayHarness
from durable_agents.testing._harness import EPOCH
from tests.unit.model_testing import reset_model_state
from tests.unit.test_http_api import ORCH, OTHER_ORCH, _build_api, run_input, seed_awaiting
from tests.unit.test_http_api import auth_env as auth_env  # autouse: identity on, the audit in tmp_path
from tests.unit.test_http_api_fake_durable import start_fake_host, stop_fake_host

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


@pytest.fixture(autouse=True)
def exporter(monkeypatch) -> Iterator[InMemorySpanExporter]:
    """A fresh SDK provider with an in-memory exporter per test; no model settings; an empty model registry."""
    reset_model_state(monkeypatch)
    monkeypatch.setattr(_providers, "_providers", {})
    monkeypatch.setattr(_providers, "_models", {})
    monkeypatch.setattr(_providers, "_built", {})
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    _telemetry.setup_telemetry(provider)
    yield memory
    _telemetry.reset_telemetry()


def _sha(kind: str, run_id: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(f"durable-agents/{kind}/{run_id}".encode()).digest()[:size], "big")


def _app(steps: list[Any]) -> durable_agents.App:
    app = durable_agents.App(http_api=False)

    @durable_agents.activity_tool(app)
    def lookup(key: str) -> dict:
        """Look a key up."""
        return {"key": key, "value": "v-" + key}

    scripted = SdkScriptedModel(steps)  # one script across the factory's builds (one per event loop)
    model = durable_agents.register_model("scripted", lambda: scripted)
    agent = Agent(name="subject", instructions="x", model=model, tools=[lookup])

    @app.agent(agent, description="A traced agent.", name="subject")
    def subject(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    return app


def _steps() -> list[Any]:
    return [ModelStep(output=[function_call("lookup", '{"key": "k1"}', call_id="call-1")],
                      usage=Usage(requests=1, input_tokens=11, output_tokens=3, total_tokens=14)),
            ModelStep(output=[assistant_message("k1 is v-k1")],
                      usage=Usage(requests=1, input_tokens=20, output_tokens=5, total_tokens=25))]


def tree(spans: list[ReadableSpan]) -> str:
    """The spans as an indented tree (parents by span id; spans whose parent was not exported are roots)."""
    ids = {span.context.span_id for span in spans}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None and span.parent.span_id in ids else None
        children.setdefault(parent, []).append(span)
    lines: list[str] = []

    def walk(parent: int | None, depth: int) -> None:
        for span in children.get(parent, []):
            keys = ("gen_ai.request.model", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens",
                    "gen_ai.response.finish_reasons", "gen_ai.tool.call.id", "durable_agents.approval.decision")
            attrs = {k.split(".")[-1]: span.attributes[k] for k in keys if span.attributes and k in span.attributes}
            shown = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in attrs.items())
            lines.append(f"{'  ' * depth}{span.name} [trace {span.context.trace_id:032x} span "
                         f"{span.context.span_id:016x}] {shown}")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)
    return "\n".join(lines)


def test_a_run_has_one_span_per_model_and_tool_call_under_its_run_span_though_every_episode_replays(exporter):
    durable_runner.set_session_cache_size(0)
    harness = ReplayHarness(_app(_steps()))  # the app's real invoke_model activity
    run = harness.start_run("subject", "look k1 up", settings={}, run_id="run-otel-1")
    harness.run()
    assert run.status == "Completed", run.output
    spans = exporter.get_finished_spans()
    names = sorted(span.name for span in spans)
    assert names == ["chat registered:scripted", "chat registered:scripted", "execute_tool lookup",
                     "invoke_agent subject"], names  # the agent from the invoke_model input
    trace_id, run_span_id = _sha("trace", "run-otel-1", 16), _sha("run", "run-otel-1", 8)
    assert {span.context.trace_id for span in spans} == {trace_id}
    (root,) = [span for span in spans if span.name.startswith("invoke_agent")]
    assert root.context.span_id == run_span_id and root.parent is None
    for span in spans:
        if span is not root:
            assert span.parent is not None and span.parent.span_id == run_span_id, span.name
    chats = sorted((s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time or 0)
    assert all(s.kind == SpanKind.CLIENT for s in chats)
    first, second = (dict(s.attributes or {}) for s in chats)
    assert first["gen_ai.operation.name"] == "chat" and first["gen_ai.request.model"] == "registered:scripted"
    assert (first["gen_ai.usage.input_tokens"], first["gen_ai.usage.output_tokens"]) == (11, 3)
    assert (second["gen_ai.usage.input_tokens"], second["gen_ai.usage.output_tokens"]) == (20, 5)
    assert first["gen_ai.response.finish_reasons"] == ("tool_calls",)
    assert second["gen_ai.response.finish_reasons"] == ("stop",)
    assert first["gen_ai.provider.name"] == first["gen_ai.system"] == "registered"
    (tool,) = [s for s in spans if s.name.startswith("execute_tool")]
    expected = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup",
                "gen_ai.tool.call.id": "call-1", "gen_ai.agent.name": "subject"}
    assert {key: (tool.attributes or {}).get(key) for key in expected} == expected
    print("\n" + tree(list(spans)))


class Recording(TracingProcessor):
    """An SDK trace processor that keeps what it is given."""

    def __init__(self) -> None:
        self.traces: list[str] = []
        self.spans: list[Any] = []

    def on_trace_start(self, trace: Any) -> None:
        self.traces.append(trace.trace_id)

    def on_trace_end(self, trace: Any) -> None:
        pass

    def on_span_start(self, span: Any) -> None:
        pass

    def on_span_end(self, span: Any) -> None:
        self.spans.append(span)

    def shutdown(self) -> None:
        pass

    def force_flush(self) -> None:
        pass


@pytest.fixture
def sdk_processor() -> Iterator[Recording]:
    from agents.tracing import get_trace_provider

    multi: Any = get_trace_provider()._multi_processor  # type: ignore[attr-defined]
    before = list(multi._processors)
    recording = Recording()
    add_trace_processor(recording)
    yield recording
    multi.set_processors(before)


def test_the_sdk_trace_processors_see_the_model_and_tool_spans_of_the_activities(exporter, sdk_processor):
    durable_runner.set_session_cache_size(0)
    harness = ReplayHarness(_app(_steps()))
    run = harness.start_run("subject", "look k1 up", settings={}, run_id="run-otel-sdk")
    harness.run()
    assert run.status == "Completed", run.output
    sdk_trace_id = f"trace_{_sha('trace', 'run-otel-sdk', 16):032x}"
    kinds = [(span.span_data.type, span.trace_id) for span in sdk_processor.spans]
    assert kinds == [("generation", sdk_trace_id), ("function", sdk_trace_id), ("generation", sdk_trace_id)]
    generation, function, final = (span.span_data for span in sdk_processor.spans)
    assert generation.usage == {"input_tokens": 11, "output_tokens": 3} and function.name == "lookup"
    assert set(sdk_processor.traces) == {sdk_trace_id}


def test_the_sdks_default_openai_exporter_is_removed_unless_the_sdks_tracing_is_explicitly_on(monkeypatch):
    from agents.tracing import get_trace_provider
    from agents.tracing.processors import default_processor

    multi: Any = get_trace_provider()._multi_processor  # type: ignore[attr-defined]
    before = list(multi._processors)
    try:
        multi.set_processors([default_processor()])
        monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "false")
        _telemetry.setup_telemetry(TracerProvider())
        assert list(multi._processors) == [default_processor()]
        monkeypatch.delenv("OPENAI_AGENTS_DISABLE_TRACING")
        _telemetry.setup_telemetry(TracerProvider())
        assert list(multi._processors) == []
    finally:
        multi.set_processors(before)


def test_a_run_started_with_a_traceparent_joins_the_requests_trace_and_links_to_its_span(exporter):
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    trace = _telemetry.request_trace({"traceparent": parent})
    assert trace == {"traceparent": parent}
    run = _telemetry.RunTrace.of("run-otel-2", trace)
    assert run.trace_id == 0x0AF7651916CD43DD8448EB211C80319C and run.span_id == _sha("run", "run-otel-2", 8)
    _telemetry.emit_run_span("run-otel-2", trace, "subject", started_at="2026-01-01T00:00:00.000Z",
                             ended_at="2026-01-01T00:00:02.500Z")
    (span,) = exporter.get_finished_spans()
    assert span.name == "invoke_agent subject" and span.context.trace_id == run.trace_id
    assert span.context.span_id == run.span_id and span.parent is None
    assert [(link.context.trace_id, link.context.span_id) for link in span.links] == [
        (0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331)]
    assert span.end_time is not None and span.start_time is not None
    assert span.end_time - span.start_time == 2_500_000_000
    assert _telemetry.request_trace({"traceparent": "01-zz"}) is None
    assert _telemetry.request_trace({}) is None
    assert _telemetry.RunTrace.of("x", {"traceparent": "garbage"}).trace_id == _sha("trace", "x", 16)


def test_without_an_exporter_no_span_is_built(exporter):
    _telemetry.reset_telemetry()
    durable_runner.set_session_cache_size(0)
    harness = ReplayHarness(_app(_steps()))
    run = harness.start_run("subject", "look k1 up", settings={}, run_id="run-otel-off")
    harness.run()
    assert run.status == "Completed", run.output
    assert exporter.get_finished_spans() == ()


# ---------------------------------------------------------------------------------------------------------------
# Through the HTTP API (the fake Durable host of tests/unit/test_http_api.py, the real DurableOrchestrationClient)



@pytest.fixture(scope="module")
def http_durable():
    loop, host = start_fake_host((ORCH, OTHER_ORCH))
    yield loop, host
    stop_fake_host(loop, host)


def test_a_start_request_with_a_traceparent_puts_it_in_the_run_input(http_durable):
    api = _build_api(http_durable, approval_wait_seconds=3.0, approval_poll_seconds=0.1)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    reply = api.start("support", {"input": "Refund ORD-1"}, headers={"traceparent": parent})
    assert reply.status == 202
    stored = json.loads(api.host.instances[reply.body["id"]].input)
    assert stored["trace"] == {"traceparent": parent}
    plain = api.start("support", {"input": "Refund ORD-2"}, headers={"traceparent": "not-a-traceparent"})
    assert "trace" not in json.loads(api.host.instances[plain.body["id"]].input)


def test_an_approval_decided_through_the_http_api_emits_one_approval_span_under_the_run_span(http_durable, exporter):
    api = _build_api(http_durable, approval_wait_seconds=3.0, approval_poll_seconds=0.1)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    traced = json.dumps({**json.loads(run_input()), "trace": {"traceparent": parent}})
    seed_awaiting(api.host, "run1", input_text=traced)
    assert api.decide("run1", "call_1", {"approved": True, "comment": "ok"}).status == 202
    assert api.decide("run1", "call_1", {"approved": True, "comment": "again"}).status == 200  # a retry
    (span,) = exporter.get_finished_spans()
    assert span.name == "approval refund_order"
    assert span.context.trace_id == 0x4BF92F3577B34DA6A3CE929D0E0E4736
    assert span.parent is not None and span.parent.span_id == _sha("run", "run1", 8)
    attributes = dict(span.attributes or {})
    assert attributes["durable_agents.approval.decision"] == "approved"
    assert attributes["gen_ai.tool.call.id"] == "call_1" and attributes["gen_ai.tool.name"] == "refund_order"
    assert span.start_time == 1767225600 * 1_000_000_000  # requestedAt 2026-01-01T00:00:00Z
    assert span.end_time is not None and span.end_time > span.start_time


def test_an_approval_that_expires_emits_one_approval_span_from_the_audit_activity(exporter, monkeypatch):
    monkeypatch.delenv("AUDIT_TABLE_ENDPOINT", raising=False)
    durable_runner.set_session_cache_size(0)
    app = durable_agents.App(http_api=False)

    @durable_agents.activity_tool(app, needs_approval=True)
    def refund(order_id: str) -> str:
        """Refund an order."""
        return "refunded " + order_id

    scripted = SdkScriptedModel([[function_call("refund", '{"order_id": "O-1"}', call_id="call-9")],
                                 [assistant_message("The refund expired.")]])
    agent = Agent(name="shop", instructions="x", model=durable_agents.register_model("s", lambda: scripted),
                  tools=[refund])

    @app.agent(agent, description="Refunds.", name="shop")
    def shop(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    harness = ReplayHarness(app)
    run = harness.start_run("shop", "refund O-1", settings={"APPROVAL_TIMEOUT": "PT1H"}, run_id="run-expiry")
    harness.run()
    assert run.status == "Completed", run.output
    approvals = [span for span in exporter.get_finished_spans() if span.name.startswith("approval")]
    assert [span.name for span in approvals] == ["approval refund"]
    (span,) = approvals
    assert dict(span.attributes or {})["durable_agents.approval.decision"] == "expired"
    assert span.parent is not None and span.parent.span_id == _sha("run", "run-expiry", 8)
    assert span.context.trace_id == _sha("trace", "run-expiry", 16)
    assert not [s for s in exporter.get_finished_spans() if s.name == "execute_tool refund"]


def _nested_app(inner_steps: list[Any], outer_steps: list[Any]) -> durable_agents.App:
    """An agent ``outer`` whose tool is the agent ``inner`` (``Agent.as_tool``: a nested run) and the tool lookup."""
    app = durable_agents.App(http_api=False)

    @durable_agents.activity_tool(app)
    def lookup(key: str) -> dict:
        """Look a key up."""
        return {"key": key, "value": "v-" + key}

    inner_model = durable_agents.register_model("inner-scripted", lambda s=SdkScriptedModel(inner_steps): s)
    outer_model = durable_agents.register_model("outer-scripted", lambda s=SdkScriptedModel(outer_steps): s)
    inner = Agent(name="inner", instructions="x", model=inner_model, tools=[lookup])
    outer = Agent(name="outer", instructions="x", model=outer_model,
                  tools=[inner.as_tool(tool_name="ask_inner", tool_description="Ask the inner agent.")])

    @app.agent(outer, description="An agent with an agent as a tool.", name="outer")
    def outer_run(context):
        return Runner.run_sync(outer, context.get_input()["input"])

    return app


def test_every_span_of_a_traced_run_joins_the_requests_trace_and_the_run_span_spans_the_whole_run(exporter):
    durable_runner.set_session_cache_size(0)
    parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    app = _app(_steps())
    harness = ReplayHarness(app)
    entry = app.registry.get("subject")
    assert entry is not None
    value = {"agent": "subject", "input": "look k1 up", "settings": {}, "version": RUN_VERSION,
             "customer": None, "startedBy": None, "trace": {"traceparent": parent}}
    run = harness.start(entry.orchestrator, value, "run-otel-3")
    harness.run()
    assert run.status == "Completed", run.output
    spans = exporter.get_finished_spans()
    assert sorted(s.name for s in spans) == ["chat registered:scripted", "chat registered:scripted",
                                             "execute_tool lookup", "invoke_agent subject"]
    assert {s.context.trace_id for s in spans} == {0x4BF92F3577B34DA6A3CE929D0E0E4736}  # the tool's too
    (root,) = [s for s in spans if s.name.startswith("invoke_agent")]
    assert all(s.parent is not None and s.parent.span_id == root.context.span_id for s in spans if s is not root)
    # the run span starts when the run started (the harness's virtual clock), not at its last model call
    assert root.start_time is not None and abs(root.start_time - int(EPOCH.timestamp()) * 1_000_000_000) < 10_000_000
    chats = sorted((s for s in spans if s.name.startswith("chat")), key=lambda s: s.start_time or 0)
    assert root.start_time is not None and chats[0].start_time is not None and root.start_time < chats[0].start_time


def test_a_nested_agent_runs_final_answer_does_not_emit_a_second_run_span(exporter):
    durable_runner.set_session_cache_size(0)
    inner = [ModelStep(output=[assistant_message("inner says hi")])]
    outer = [ModelStep(output=[function_call("ask_inner", '{"input": "hi"}', call_id="call-n")]),
             ModelStep(output=[assistant_message("outer done")])]
    harness = ReplayHarness(_nested_app(inner, outer))
    run = harness.start_run("outer", "go", settings={}, run_id="run-otel-4")
    harness.run()
    assert run.status == "Completed", run.output
    names = sorted(s.name for s in exporter.get_finished_spans())
    assert names.count("invoke_agent outer") == 1 and not [n for n in names if n == "invoke_agent inner"], names
    assert names.count("chat registered:inner-scripted") == 1 and names.count("chat registered:outer-scripted") == 2
