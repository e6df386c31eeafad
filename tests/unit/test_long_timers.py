"""Timers longer than the backend's maximum short timer (6 days: the extension's ``maximumShortTimerDuration``)
are ``LongTimerTask``s in azure-functions-durable 1.7; cancelling one must cancel the interval timer it scheduled,
or the orchestration stays running until that timer fires (durable_agents._runner.compat.install_long_timer_cancel).
Real replay in the harness, timers never advanced."""

from __future__ import annotations

from pathlib import Path

from agents import Agent, Runner

import durable_agents
from durable_agents import activity_tool
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call

APP_DIR = Path(__file__).parent


def test_an_approval_with_a_ten_day_timeout_decided_at_once_completes_the_run():
    bp = durable_agents.Blueprint()

    @activity_tool(bp, needs_approval=True)
    def close_account(account_id: str) -> str:
        """Close an account."""
        return f"closed {account_id}"

    agent = Agent(name="closer", instructions="Close accounts.", tools=[close_account])

    @bp.agent(agent, description="Closes accounts.")
    def closer_run(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    model = ScriptedModel([[function_call("close_account", {"account_id": "A-1"}, call_id="c1")],
                           [assistant_message("Closed.")]])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("closer", "Close A-1", settings={"APPROVAL_TIMEOUT": "P10D"}, run_id="long-timer")
    harness.run(advance_timers=False)
    assert [p["id"] for p in harness.pending_approvals(run)] == ["c1"]
    harness.approve(run, "c1", "ok")
    harness.run(advance_timers=False)  # the 10-day timer never fires here
    assert run.status == "Completed", (run.status, run.output)
    assert run.output["finalOutput"] == "Closed."
