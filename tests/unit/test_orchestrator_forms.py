"""The forms an orchestrator function may take, through real azure-functions-durable replay (durable_agents.testing):
an ``async def`` agent orchestrator runs agents concurrently with their model calls in one fan-out; ``Runner.run_sync``
in a plain Durable orchestrator and a generator-style agent orchestrator fail at once, without any model call."""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import pytest
from agents import Agent, RunConfig, Runner
from agents.models.interface import Model, ModelProvider
from agents.testing import ModelStep
from agents.testing import ScriptedModel as SdkScriptedModel

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message

ENGLISH = Agent(name="english", instructions="Answer in English.")
FRENCH = Agent(name="french", instructions="Answer in French.")


def _by_instructions(call):
    """One scripted answer per agent, whatever order the concurrent calls arrive in."""
    return [assistant_message("Hello" if call.system_instructions == "Answer in English." else "Bonjour")]


@pytest.fixture(autouse=True)
def _fresh_cache():
    durable_runner.clear_session_cache()
    yield
    durable_runner.clear_session_cache()


def _app() -> durable_agents.App:
    app = durable_agents.App(http_api=False)

    @app.agent(ENGLISH, description="Greets in two languages at once.", name="greeter")
    async def greeter(context):
        english, french = await asyncio.gather(Runner.run(ENGLISH, context.get_input()["input"]),
                                               Runner.run(FRENCH, context.get_input()["input"]))
        return {"english": english.final_output, "french": french.final_output}

    return app


@pytest.mark.parametrize("cache_size", [64, 0])
def test_an_async_agent_orchestrator_runs_two_agents_concurrently_in_one_fan_out(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    try:
        model = ScriptedModel([ModelStep.respond(_by_instructions), ModelStep.respond(_by_instructions)])
        harness = ReplayHarness(_app(), model=model)
        run = harness.start_run("greeter", "Say hello.", settings={})
        harness.run()
    finally:
        durable_runner.set_session_cache_size(64)
    assert run.status == "Completed", run.output
    assert run.output == {"english": "Hello", "french": "Bonjour"}
    # Both agents' first (and only) model calls were scheduled in the same episode: one fan-out.
    assert [[a["name"] for a in actions] for actions in run.episode_actions] == [["invoke_model", "invoke_model"], []]


def test_runner_run_sync_in_a_plain_durable_orchestrator_fails_at_once_naming_agent_orchestrator():
    provided: list[str | None] = []

    class RecordingProvider(ModelProvider):
        """Where the SDK would get the model it calls inside the orchestrator, outside any activity."""

        def get_model(self, model_name: str | None) -> Model:
            provided.append(model_name)
            return SdkScriptedModel([[assistant_message("called outside an activity")]])

    app = durable_agents.App(http_api=False)

    @app.orchestration_trigger(context_name="context")
    def plain(context: df.DurableOrchestrationContext):
        return Runner.run_sync(ENGLISH, "hi", run_config=RunConfig(model_provider=RecordingProvider())).final_output

    harness = ReplayHarness(app, model=ScriptedModel([]))
    run = harness.start("plain", {"input": "hi"})
    harness.run()
    assert run.status == "Failed"
    assert "not an agent orchestrator" in run.output and "durable_agents.agent_orchestrator" in run.output
    assert provided == [] and harness.activity_calls == []


def test_a_generator_agent_orchestrator_fails_at_once_saying_what_to_write_instead():
    app = durable_agents.App(http_api=False)

    @app.agent(ENGLISH, description="Yields.")
    def yielding(context):
        yield context.call_activity("anything", None)

    harness = ReplayHarness(app, model=ScriptedModel([]))
    run = harness.start_run("english", "hi", settings={})
    harness.run()
    assert run.status == "Failed"
    assert "cannot be a generator" in run.output and "Runner.run_sync" in run.output
    assert harness.activity_calls == []
