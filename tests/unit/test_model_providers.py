"""Registered model providers and models (durable_agents._providers) through real azure-functions-durable replay
and the real ``invoke_model`` activity: the factory runs in the activity, never in the orchestrator; what cannot be
made durable fails at once with what to do; runs that use none of it keep their activity input byte for byte."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner
from agents.items import ModelResponse
from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProvider
from agents.testing import assistant_message, function_call
from agents.usage import Usage

import durable_agents
from durable_agents import _providers
from durable_agents import _runner as durable_runner
from durable_agents._model_activity import invoke_model
from durable_agents._model_io import decode_model_response, encode_model_request
from durable_agents._run_settings import current_session
from durable_agents.testing import ReplayHarness
from tests.unit.model_testing import reset_model_state

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


@pytest.fixture(autouse=True)
def clean_state(monkeypatch):
    """No model settings (the built-in API would be the demo model) and an empty provider registry per test."""
    reset_model_state(monkeypatch)
    monkeypatch.setattr(_providers, "_providers", {})
    monkeypatch.setattr(_providers, "_models", {})
    monkeypatch.setattr(_providers, "_built", {})


class Recorder:
    """What the fake provider saw: factory calls, get_model names, and each model call's model name, whether it
    ran inside a durable session (the orchestrator's worker thread) and on which thread."""

    def __init__(self) -> None:
        self.factory_calls: list[bool] = []  # inside a durable session?
        self.get_model: list[tuple[str | None, bool]] = []
        self.calls: list[tuple[str | None, bool]] = []


class RecordingModel(Model):
    """Calls ``lookup`` once, then answers with the tool's result and the model name it was built for."""

    def __init__(self, name: str | None, recorder: Recorder) -> None:
        self.name = name
        self.recorder = recorder

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
        self.recorder.calls.append((self.name, current_session() is not None))
        outputs = [i for i in input if isinstance(i, dict) and i.get("type") == "function_call_output"] \
            if isinstance(input, list) else []
        if not outputs and any(t.name == "lookup" for t in tools):
            item = function_call("lookup", {"key": "k1"}, call_id=f"call_{len(self.recorder.calls)}")
        else:
            seen = outputs[-1]["output"] if outputs else "-"
            item = assistant_message(f"model={self.name} saw {seen}")
        return ModelResponse(output=[item], usage=Usage(requests=1, input_tokens=3, output_tokens=2,
                                                        total_tokens=5), response_id=None)

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


class RecordingProvider(ModelProvider):
    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def get_model(self, model_name: str | None) -> Model:
        self.recorder.get_model.append((model_name, current_session() is not None))
        return RecordingModel(model_name, self.recorder)


def _factory(recorder: Recorder):
    def factory() -> ModelProvider:
        recorder.factory_calls.append(current_session() is not None)
        return RecordingProvider(recorder)

    return factory


def _app(agent: Agent, run_config: Any = None) -> durable_agents.App:
    app = durable_agents.App(http_api=False)

    @durable_agents.activity_tool(app)
    def lookup(key: str) -> dict:
        """Look a key up."""
        return {"key": key, "value": "v-" + key}

    agent = agent.clone(tools=[lookup]) if not agent.tools else agent

    @app.agent(agent, description="A provider test agent.", name="subject")
    def subject(context):
        kwargs = {} if run_config is None else {"run_config": run_config() if callable(run_config) else run_config}
        return Runner.run_sync(agent, context.get_input()["input"], **kwargs)

    return app


def _model_inputs(harness: ReplayHarness) -> list[dict]:
    return [value for name, value in harness.activity_calls if name == "invoke_model"]


def _run(app: durable_agents.App, *, cache_size: int = 64):
    durable_runner.set_session_cache_size(cache_size)
    harness = ReplayHarness(app)  # the app's own, real invoke_model activity
    run = harness.start_run("subject", "look k1 up", settings={})
    harness.run()
    return run, harness


# ---------------------------------------------------------------------------------------------------------------
# RunConfig(model_provider=<registered>)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cache_size", [64, 0])
def test_registered_provider_is_built_and_called_in_the_activity_never_in_the_orchestrator(cache_size):
    recorder = Recorder()
    provider = durable_agents.register_model_provider("recorder", _factory(recorder))
    assert isinstance(provider, ModelProvider) and provider.name == "recorder"
    app = _app(Agent(name="subject", instructions="Look things up.", model="house-model"),
               lambda: RunConfig(model_provider=provider))
    run, harness = _run(app, cache_size=cache_size)

    assert run.status == "Completed", run.output
    assert run.output["finalOutput"] == 'model=house-model saw {"key": "k1", "value": "v-k1"}'
    assert run.output["turns"] == 2 and run.output["demo"] is False
    inputs = _model_inputs(harness)
    assert [(i["model"], i["provider"], sorted(i)) for i in inputs] == [
        ("house-model", "recorder", ["agent", "model", "provider", "request", "run", "runStartedAt"])] * 2
    # Built in the activity (the harness runs each activity inline with asyncio.run: a new event loop per call,
    # so one build per call); every get_model and model call ran outside any durable session; the orchestrator
    # (whose episodes replayed the agent loop from history when the cache was off) never touched the provider.
    assert recorder.factory_calls == [False] * 2
    assert recorder.get_model == [("house-model", False)] * 2
    assert recorder.calls == [("house-model", False)] * 2


def test_replay_with_the_cache_off_resolves_recorded_turns_from_history_identically():
    first, second = Recorder(), Recorder()
    provider = durable_agents.register_model_provider("recorder", _factory(first))
    agent = Agent(name="subject", instructions="Look things up.", model="house-model")
    cached, h1 = _run(_app(agent, lambda: RunConfig(model_provider=provider)), cache_size=64)
    durable_agents.register_model_provider("recorder", _factory(second), replace=True)
    uncached, h2 = _run(_app(agent, lambda: RunConfig(model_provider=provider)), cache_size=0)
    assert cached.output == uncached.output and cached.status == "Completed"
    # Two turns each: with the cache off every episode replays the agent loop from the start, and no recorded
    # turn reached the provider again.
    assert len(first.calls) == len(second.calls) == 2 and uncached.episodes >= 3
    assert uncached.episodes == cached.episodes
    assert h1.comparable_history(cached.instance_id) == h2.comparable_history(uncached.instance_id)
    def without_run(inputs):  # "run" is each run's own instance id (version 3)
        return [{k: v for k, v in i.items() if k != "run"} for i in inputs]

    assert [i["run"] for i in _model_inputs(h1)] == [cached.instance_id] * 2
    assert without_run(_model_inputs(h1)) == without_run(_model_inputs(h2))


def test_a_provider_object_registered_as_itself_is_matched_by_identity():
    recorder = Recorder()
    mine = RecordingProvider(recorder)
    durable_agents.register_model_provider("mine", mine)
    app = _app(Agent(name="subject", instructions="x", model="m1"), lambda: RunConfig(model_provider=mine))
    run, harness = _run(app)
    assert run.status == "Completed", run.output
    assert {i.get("provider") for i in _model_inputs(harness)} == {"mine"}
    assert recorder.get_model == [("m1", False)] * 2  # the very object, in the activity


def test_an_unregistered_provider_fails_at_once_saying_to_register_it():
    recorder = Recorder()
    app = _app(Agent(name="subject", instructions="x"), lambda: RunConfig(model_provider=RecordingProvider(recorder)))
    run, harness = _run(app)
    assert run.status == "Failed"
    assert "RunConfig(model_provider=<RecordingProvider>) is not registered for durable runs" in run.output
    assert "durable_agents.register_model_provider(" in run.output
    assert harness.activity_calls == [] and recorder.get_model == [] and recorder.calls == []


def test_the_sdk_default_multiprovider_is_the_built_in_api_but_a_configured_one_must_be_registered():
    agent = Agent(name="plain", instructions="x")
    app = _app(agent, lambda: RunConfig(model_provider=MultiProvider()))
    run, harness = _run(app)
    assert run.status == "Completed" and run.output["demo"] is True  # nothing configured: the demo model
    assert [sorted(i) for i in _model_inputs(harness)] == [["agent", "model", "request", "run", "runStartedAt"]]

    durable_runner.clear_session_cache()
    app = _app(agent, lambda: RunConfig(model_provider=MultiProvider(openai_base_url="http://127.0.0.1:9/v1")))
    run, harness = _run(app)
    assert run.status == "Failed" and "RunConfig(model_provider=<MultiProvider>) is not registered" in run.output
    assert harness.activity_calls == []


def test_runs_without_providers_keep_the_invoke_model_input_exactly_model_and_request():
    run, harness = _run(_app(Agent(name="plain", instructions="x", model="gpt-4.1")))
    assert run.status == "Completed"
    (only,) = _model_inputs(harness)
    assert list(only) == ["model", "request", "run", "agent", "runStartedAt"]  # version 3
    assert only["model"] == "gpt-4.1"


def test_an_agent_run_as_a_tool_inherits_the_registered_provider():
    recorder = Recorder()
    provider = durable_agents.register_model_provider("recorder", _factory(recorder))
    inner = Agent(name="inner", instructions="Answer.", model="inner-model")
    outer = Agent(name="plain", instructions="Delegate.", model="outer-model",
                  tools=[inner.as_tool(tool_name="ask_inner", tool_description="Ask the inner agent.")])

    class DelegatingModel(RecordingModel):
        async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                               tracing, **kwargs):
            if self.name == "outer-model" and not any(isinstance(i, dict) and i.get("type") ==
                                                      "function_call_output" for i in input):
                self.recorder.calls.append((self.name, current_session() is not None))
                return ModelResponse(output=[function_call("ask_inner", {"input": "hi"}, call_id="call_o")],
                                     usage=Usage(requests=1), response_id=None)
            return await super().get_response(system_instructions, input, model_settings, tools, output_schema,
                                              handoffs, tracing, **kwargs)

    class DelegatingProvider(RecordingProvider):
        def get_model(self, model_name):
            self.recorder.get_model.append((model_name, current_session() is not None))
            return DelegatingModel(model_name, self.recorder)

    durable_agents.register_model_provider("recorder", lambda: DelegatingProvider(recorder), replace=True)
    run, harness = _run(_app(outer, lambda: RunConfig(model_provider=provider)))
    assert run.status == "Completed", run.output
    assert [(i["model"], i.get("provider")) for i in _model_inputs(harness)] == [
        ("outer-model", "recorder"), ("inner-model", "recorder"), ("outer-model", "recorder")]
    assert all(not inside for _, inside in recorder.calls)


# ---------------------------------------------------------------------------------------------------------------
# Agent(model=<registered model>) and Model objects
# ---------------------------------------------------------------------------------------------------------------


def test_a_registered_model_is_built_and_called_in_the_activity():
    recorder = Recorder()
    built: list[bool] = []

    def factory() -> Model:
        built.append(current_session() is not None)
        return RecordingModel("house", recorder)

    model = durable_agents.register_model("house", factory)
    assert isinstance(model, Model) and model.name == "house"
    run, harness = _run(_app(Agent(name="subject", instructions="x", model=model)))
    assert run.status == "Completed", run.output
    assert run.output["finalOutput"].startswith("model=house saw")
    assert [(i["model"], i["registeredModel"], sorted(i)) for i in _model_inputs(harness)] == [
        (None, "house", ["agent", "model", "registeredModel", "request", "run", "runStartedAt"])] * 2
    assert built == [False] * 2 and recorder.calls == [("house", False)] * 2


def test_a_registered_model_as_run_config_model_is_durable_too():
    recorder = Recorder()
    model = durable_agents.register_model("house", lambda: RecordingModel("house", recorder))
    run, harness = _run(_app(Agent(name="plain", instructions="x"), lambda: RunConfig(model=model)))
    assert run.status == "Completed", run.output
    assert [i.get("registeredModel") for i in _model_inputs(harness)] == ["house"] * 2
    assert recorder.calls == [("house", False)] * 2


@pytest.mark.parametrize("registered", [False, True])
def test_a_model_object_fails_at_once_saying_to_register_it(registered):
    recorder = Recorder()
    instance = RecordingModel("x", recorder)
    if registered:  # registering the object is not enough: the SDK would call it directly, in the orchestrator
        durable_agents.register_model("x", instance)
    run, harness = _run(_app(Agent(name="subject", instructions="x", model=instance)))
    assert run.status == "Failed"
    assert "Agent 'subject' model is a RecordingModel object" in run.output
    assert "durable_agents.register_model('my-model'" in run.output and "Agent(model=model)" in run.output
    assert harness.activity_calls == [] and recorder.calls == []


def test_a_model_object_as_run_config_model_fails_at_once():
    recorder = Recorder()
    app = _app(Agent(name="plain", instructions="x"), lambda: RunConfig(model=RecordingModel("x", recorder)))
    run, harness = _run(app)
    assert run.status == "Failed" and "RunConfig.model is a RecordingModel object" in run.output
    assert harness.activity_calls == [] and recorder.calls == []


# ---------------------------------------------------------------------------------------------------------------
# Prefixed model names: the SDK's MultiProvider in the activity
# ---------------------------------------------------------------------------------------------------------------


def test_a_registered_name_is_a_model_name_prefix_routed_by_the_sdk_multiprovider():
    recorder = Recorder()
    durable_agents.register_model_provider("recorder", _factory(recorder))
    run, harness = _run(_app(Agent(name="subject", instructions="x", model="recorder/tiny-1")))
    assert run.status == "Completed", run.output
    # The input is today's shape: the prefix is resolved in the activity, by MultiProvider's provider map.
    assert [list(i) for i in _model_inputs(harness)] == [["model", "request", "run", "agent", "runStartedAt"]] * 2
    assert {i["model"] for i in _model_inputs(harness)} == {"recorder/tiny-1"}
    assert recorder.get_model == [("tiny-1", False)] * 2 and recorder.factory_calls == [False] * 2


def test_litellm_prefix_without_litellm_fails_at_once_saying_what_to_install():
    run, harness = _run(_app(Agent(name="subject", instructions="x", model="litellm/anthropic/claude-3-5")))
    assert run.status == "Failed"
    assert "'litellm' is not installed" in run.output and "openai-agents[litellm]" in run.output
    assert harness.activity_calls == []


def _request(model: str | None = None) -> dict:
    from agents import ModelSettings

    return encode_model_request(model=model, system_instructions=None, input="hi", model_settings=ModelSettings(),
                                tools=[], output_schema=None, handoffs=[])


def test_the_activity_answers_a_non_retryable_user_error_for_what_it_cannot_build():
    litellm = asyncio.run(invoke_model({"model": "litellm/openai/gpt-4.1", "request": _request()}))
    assert litellm["ok"] is False and litellm["error"]["type"] == "UserError"
    assert litellm["error"]["retryable"] is False and "openai-agents[litellm]" in litellm["error"]["message"]
    missing = asyncio.run(invoke_model({"model": "m", "request": _request(), "provider": "nowhere"}))
    assert missing["ok"] is False and missing["error"]["retryable"] is False
    assert "no model provider named 'nowhere' is registered in this process" in missing["error"]["message"]
    assert "durable_agents.register_model_provider('nowhere', factory)" in missing["error"]["message"]
    missing = asyncio.run(invoke_model({"model": None, "request": _request(), "registeredModel": "gone"}))
    assert "no model named 'gone'" in missing["error"]["message"]
    with pytest.raises(TypeError, match="'provider' must be a registered name"):
        asyncio.run(invoke_model({"model": None, "request": _request(), "provider": 7}))


def test_a_registered_litellm_prefix_wins_over_the_sdk_fallback():
    recorder = Recorder()
    durable_agents.register_model_provider("litellm", _factory(recorder))
    result = asyncio.run(invoke_model(json.loads(json.dumps({"model": "litellm/anthropic/x",
                                                             "request": _request()}))))
    assert result["ok"] is True, result
    assert recorder.get_model == [("anthropic/x", False)]
    assert decode_model_response(result["response"]).output[0].content[0].text == "model=anthropic/x saw -"


# ---------------------------------------------------------------------------------------------------------------
# Outside durable runs, and the registry itself
# ---------------------------------------------------------------------------------------------------------------


def test_outside_a_durable_run_the_handles_are_the_registered_provider_and_model():
    recorder = Recorder()
    provider = durable_agents.register_model_provider("recorder", _factory(recorder))
    model = durable_agents.register_model("house", lambda: RecordingModel("house", recorder))

    async def both():
        a = await Runner.run(Agent(name="a", instructions="x", model="m2"), "hi",
                             run_config=RunConfig(model_provider=provider))
        b = await Runner.run(Agent(name="b", instructions="x", model=model), "hi")
        return a.final_output, b.final_output

    assert asyncio.run(both()) == ("model=m2 saw -", "model=house saw -")
    assert recorder.factory_calls == [False] and recorder.calls == [("m2", False), ("house", False)]


def test_registration_rules():
    recorder = Recorder()
    factory = _factory(recorder)
    durable_agents.register_model_provider("one", factory)
    durable_agents.register_model_provider("one", factory)  # the same factory again (a module imported twice)
    with pytest.raises(ValueError, match="already registered; pass replace=True"):
        durable_agents.register_model_provider("one", _factory(recorder))
    durable_agents.register_model_provider("one", _factory(recorder), replace=True)
    for bad in ("", "has/slash", "x" * 65, " lead", 3):
        with pytest.raises(ValueError, match="needs a name of 1-64"):
            durable_agents.register_model_provider(bad, factory)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="zero-argument factory or an agents.ModelProvider"):
        durable_agents.register_model_provider("two", "not callable")  # type: ignore[arg-type]
    durable_agents.register_model("bad", lambda: "not a model")  # type: ignore[arg-type, return-value]
    with pytest.raises(TypeError, match="returned str, not an agents.Model"):
        _providers.build_model("bad")


def test_factories_are_built_once_per_event_loop_even_from_racing_threads():
    recorder = Recorder()
    durable_agents.register_model_provider("recorder", _factory(recorder))

    async def build_twice():
        return _providers.build_provider("recorder"), _providers.build_provider("recorder")

    first, second = asyncio.run(build_twice())
    assert first is second
    third, _ = asyncio.run(build_twice())  # another loop: a provider's async clients belong to their loop
    assert third is not first and len(recorder.factory_calls) == 2
    results: list[Any] = []
    threads = [threading.Thread(target=lambda: results.append(_providers.build_provider("recorder")))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(r) for r in results}) == 1  # no loop: one provider for the process
