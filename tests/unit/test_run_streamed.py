"""``Runner.run_streamed`` inside an agent orchestrator: durable like ``Runner.run`` (every model call one
``invoke_model`` activity, every activity tool its activity, nothing run twice on replay), with the SDK's item-level
stream events and no token deltas. Real azure-functions-durable replay in the harness, cache on and off."""

from __future__ import annotations

from pathlib import Path

import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents import activity_tool
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call

APP_DIR = Path(__file__).parent
CALLS: list[str] = []


@pytest.fixture(params=[64, 0], ids=["cache", "no-cache"])
def cache(request):
    durable_runner.set_session_cache_size(request.param)
    durable_runner.clear_session_cache()
    yield request.param
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()


def _app():
    bp = durable_agents.Blueprint()

    @activity_tool(bp)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        CALLS.append(order_id)
        return {"order_id": order_id, "status": "shipped"}

    agent = Agent(name="streamer", instructions="Stream.", tools=[lookup_order])

    @bp.agent(agent, description="Streams its run.")
    async def streamer_run(context):
        result = Runner.run_streamed(agent, context.get_input()["input"])
        kinds = []
        async for event in result.stream_events():
            kinds.append(event.name if event.type == "run_item_stream_event" else event.type)
        return {"final": result.final_output, "events": kinds}

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    return app


def test_run_streamed_is_durable_and_yields_item_events(cache):
    CALLS.clear()
    model = ScriptedModel([[function_call("lookup_order", {"order_id": "ORD-1"}, call_id="c1")],
                           [assistant_message("ORD-1 shipped.")]])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("streamer", "Where is ORD-1?", settings={}, run_id=f"stream-{cache}")
    harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output["final"] == "ORD-1 shipped."
    events = inst.output["events"]
    assert events == ["agent_updated_stream_event", "raw_response_event", "tool_called", "tool_output",
                      "raw_response_event", "message_output_created"]
    assert len(model.requests) == 2 and CALLS == ["ORD-1"]  # nothing paid or run twice, cache on or off
