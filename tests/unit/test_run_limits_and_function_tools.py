"""Run limits as settings (``AGENT_MAX_TURNS``, the SDK's ``error_handlers``) and plain function tools turned into
activities (``durable_agents.as_activity_tool``): real replay through the test kit, cache on and off."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, function_tool

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

REPO_ROOT = Path(__file__).resolve().parents[2]

CALLS: list[str] = []


@function_tool
def stock(sku: str) -> str:
    """How many of a product are in stock."""
    CALLS.append(sku)
    return f"{sku}: 7 in stock"


def _app(agent: Agent[Any], **run_kwargs: Any) -> durable_agents.App:
    bp = durable_agents.Blueprint()

    @bp.agent(agent, description="Answers.", name="clerk")
    def clerk(context):
        return Runner.run_sync(agent, context.get_input()["input"], **run_kwargs)

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)
    return app


def _looping_model(turns: int) -> ScriptedModel:
    """A model that calls ``stock`` ``turns`` times, then answers."""
    steps: list[Any] = [[function_call("stock", {"sku": f"S-{i}"}, call_id=f"c{i}")] for i in range(turns)]
    return ScriptedModel([*steps, [assistant_message("done")]])


@pytest.fixture(autouse=True)
def _fresh_calls():
    CALLS.clear()


@pytest.mark.parametrize("cache", [64, 0], ids=["cached", "replaying"])
def test_the_default_agent_max_turns_lets_twelve_tool_turns_finish(cache):
    durable_runner.set_session_cache_size(cache)
    agent = Agent(name="clerk", instructions="Check stock.", tools=[stock])
    harness = ReplayHarness(_app(agent), model=_looping_model(12))
    run = harness.start_run("clerk", "check twelve products", settings={})
    harness.run()
    assert run.status == "Completed", run.output  # the SDK's own default (10 turns) would have failed it
    assert run.output["finalOutput"] == "done" and run.output["turns"] == 13


def test_agent_max_turns_from_the_run_settings_fails_a_longer_run():
    agent = Agent(name="clerk", instructions="Check stock.", tools=[stock])
    harness = ReplayHarness(_app(agent), model=_looping_model(12))
    run = harness.start_run("clerk", "check twelve products", settings={"AGENT_MAX_TURNS": "3"})
    harness.run()
    assert run.status == "Failed"
    assert "Max turns (3) exceeded" in run.output


def test_an_explicit_max_turns_wins_over_the_setting():
    agent = Agent(name="clerk", instructions="Check stock.", tools=[stock])
    harness = ReplayHarness(_app(agent, max_turns=2), model=_looping_model(12))
    run = harness.start_run("clerk", "check twelve products", settings={"AGENT_MAX_TURNS": "50"})
    harness.run()
    assert run.status == "Failed" and "Max turns (2) exceeded" in run.output


@pytest.mark.parametrize("cache", [64, 0], ids=["cached", "replaying"])
def test_a_max_turns_error_handler_ends_the_run_with_its_final_message(cache):
    durable_runner.set_session_cache_size(cache)
    agent = Agent(name="clerk", instructions="Check stock.", tools=[stock])

    def out_of_turns(data):
        return f"Stopped after {data.run_data.last_agent.name} used its turns; a person will follow up."

    harness = ReplayHarness(_app(agent, error_handlers={"max_turns": out_of_turns}), model=_looping_model(12))
    run = harness.start_run("clerk", "check twelve products", settings={"AGENT_MAX_TURNS": "3"})
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output["finalOutput"] == "Stopped after clerk used its turns; a person will follow up."


@pytest.mark.parametrize("cache", [64, 0], ids=["cached", "replaying"])
def test_a_function_tool_turned_into_an_activity_runs_once_as_an_activity(cache):
    durable_runner.set_session_cache_size(cache)
    bp = durable_agents.Blueprint()
    durable_stock = durable_agents.as_activity_tool(bp, stock, retry=durable_agents.ToolRetry(max_attempts=2))
    assert (durable_stock.name, durable_stock.description, durable_stock.params_json_schema) == (
        stock.name, stock.description, stock.params_json_schema)
    agent = Agent(name="clerk", instructions="Check stock.", tools=[durable_stock])

    @bp.agent(agent, description="Answers.", name="clerk")
    def clerk(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)
    model = ScriptedModel([[function_call("stock", {"sku": "S-1"}, call_id="c1"),
                            function_call("stock", {"sku": "S-2"}, call_id="c2")],
                           [assistant_message("both in stock")]])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("clerk", "two products", settings={})
    harness.run()
    assert run.status == "Completed", run.output
    assert [name for name, _ in harness.activity_calls] == ["invoke_model", "stock", "stock", "invoke_model"]
    assert sorted(CALLS) == ["S-1", "S-2"]  # once each, also when every episode replays the agent loop
    assert function_outputs(model.requests[1]) == {"c1": "S-1: 7 in stock", "c2": "S-2: 7 in stock"}


def test_a_converted_function_tool_runs_in_process_outside_a_durable_run():
    bp = durable_agents.Blueprint()
    durable_stock = durable_agents.as_activity_tool(bp, stock, name="stock_outside")
    from agents.testing import ScriptedModel as SdkScriptedModel

    model = SdkScriptedModel([[function_call("stock", {"sku": "S-9"}, call_id="c9")], [assistant_message("ok")]])
    agent = Agent(name="clerk", instructions="Check stock.", tools=[durable_stock], model=model)
    result = asyncio.run(Runner.run(agent, "one"))
    assert result.final_output == "ok" and CALLS == ["S-9"]


def test_only_function_tools_can_be_converted():
    with pytest.raises(TypeError, match="FunctionTool"):
        durable_agents.as_activity_tool(durable_agents.Blueprint(), "not a tool")  # type: ignore[arg-type]


def test_the_support_agent_ends_with_a_message_when_it_runs_out_of_turns(monkeypatch, tmp_path):
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    import activities

    app = durable_agents.App(http_api=False, app_dir=REPO_ROOT)
    app.register_functions(activities.bp)
    assert app.register_agent_modules("support") == ["support"]
    support = durable_agents.load_app_agents("support", app_dir=REPO_ROOT).support
    steps: list[Any] = [[function_call("list_orders", {}, call_id=f"c{i}")] for i in range(5)]
    harness = ReplayHarness(app, model=ScriptedModel([*steps, [assistant_message("done")]]))
    run = harness.start_run("support", "list my orders again and again", customer="jordan.rivera@example.com",
                            settings={"AGENT_MAX_TURNS": "3"})
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output["finalOutput"] == support.OUT_OF_TURNS
