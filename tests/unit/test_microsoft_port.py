"""Code written for azure-functions-durable 1.x's ``@app.durable_openai_agent_orchestrator`` runs under
``durable_agents.agent_orchestrator`` with only the decorator changed (``context.create_activity_tool`` included),
and then also gets parallel tool calls, tool errors the model reads and approvals. Real replay, scripted model."""

from __future__ import annotations

import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs

app = durable_agents.App(http_api=False)


@app.activity_trigger(input_name="city")
def get_weather(city: str) -> str:
    """Get the current weather for a city."""
    if city == "Atlantis":
        raise ValueError("no such city")
    return f"Sunny in {city}"


@app.activity_trigger(input_name="order_id")
def cancel_order(order_id: str) -> str:
    """Cancel an order."""
    return f"cancelled {order_id}"


# As in Microsoft's samples, but for the decorator (was: @app.durable_openai_agent_orchestrator).
@app.orchestration_trigger(context_name="context")
@durable_agents.agent_orchestrator
def weather_expert(context):
    agent = Agent(
        name="Hello world",
        instructions="You are a helpful agent.",
        tools=[context.create_activity_tool(get_weather)],
    )
    result = Runner.run_sync(agent, context.get_input())
    return result.final_output


@app.orchestration_trigger(context_name="context")
@durable_agents.agent_orchestrator
def order_desk(context):
    agent = Agent(name="Orders", instructions="Cancel orders when asked.",
                  tools=[context.create_activity_tool(cancel_order, needs_approval=True)])
    return Runner.run_sync(agent, context.get_input()).final_output


pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_ported_orchestrator_runs_its_activity_tools_in_parallel_and_the_model_reads_a_failed_one(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    model = ScriptedModel([
        [function_call("get_weather", {"city": "Tokyo"}, call_id="c1"),
         function_call("get_weather", {"city": "Atlantis"}, call_id="c2")],
        [assistant_message("Tokyo is sunny; Atlantis does not exist.")],
    ])
    harness = ReplayHarness(app, model=model)
    run = harness.start("weather_expert", "What is the weather in Tokyo and in Atlantis?")
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == "Tokyo is sunny; Atlantis does not exist."
    # Both tool calls of the turn were scheduled in one episode, each with the argument named like the trigger's
    # input_name, with create_activity_tool's default retry (5 attempts): Atlantis failed 5 times, the run went on.
    assert [(a["name"], a["input"]) for a in run.episode_actions[1]] == [("get_weather", "Tokyo"),
                                                                         ("get_weather", "Atlantis")]
    assert [payload for name, payload in harness.activity_calls if name == "get_weather"].count("Atlantis") == 5
    outputs = function_outputs(model.requests[1])
    assert outputs["c1"] == "Sunny in Tokyo"
    assert outputs["c2"] == "Tool 'get_weather' failed: ValueError: no such city"


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_ported_activity_tool_can_wait_for_a_person_s_approval(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    model = ScriptedModel([
        [function_call("cancel_order", {"order_id": "A-7"}, call_id="call_x")],
        [assistant_message("Order A-7 is cancelled.")],
    ])
    harness = ReplayHarness(app, model=model)
    run = harness.start("order_desk", "Cancel order A-7.")
    harness.run(advance_timers=False)
    assert [(p["id"], p["tool"], p["arguments"]) for p in harness.pending_approvals(run)] == [
        ("call_x", "cancel_order", {"order_id": "A-7"})]
    assert not [name for name, _ in harness.activity_calls if name == "cancel_order"]
    harness.approve(run, "call_x", "ok")
    harness.run()
    assert run.status == "Completed" and run.output == "Order A-7 is cancelled."
    assert [payload for name, payload in harness.activity_calls if name == "cancel_order"] == ["A-7"]


def test_create_activity_tool_wants_an_activity_function():
    bad = durable_agents.App(http_api=False)

    @bad.orchestration_trigger(context_name="context")
    @durable_agents.agent_orchestrator
    def wrong(context):
        context.create_activity_tool(lambda city: city)

    harness = ReplayHarness(bad, model=ScriptedModel([]))
    run = harness.start("wrong", "x")
    harness.run()
    assert run.status == "Failed" and "is not an activity function" in run.output
