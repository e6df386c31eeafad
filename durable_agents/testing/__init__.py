"""The test kit: run agent orchestrators in-process, with a scripted model, approvals and a virtual clock.

Deployed code never imports this package (``.funcignore`` leaves it out of the deployment); it uses the local
runtime's emulation of the Durable extension (``local_runtime``, shipped in the same distribution), so a test
drives the real ``azure-functions-durable`` orchestrator, episode by episode, exactly as ``python -m
local_runtime`` would, but with no HTTP, no SQLite and no waiting: timers fire when the virtual clock reaches them.

* :class:`ReplayHarness` - ``ReplayHarness(app, model=...)`` runs the app's orchestrations: :meth:`~ReplayHarness.
  start_run` (an agent run as the HTTP API starts it), :meth:`~ReplayHarness.run`, :meth:`~ReplayHarness.
  pending_approvals`, :meth:`~ReplayHarness.approve` / :meth:`~ReplayHarness.reject`; :class:`Instance` is a run.
* :class:`ScriptedModel` - answers the ``invoke_model`` activity from a script of ``agents.testing`` steps:
  :func:`assistant_message`, lists of :func:`function_call`, :class:`ModelStep` (with a ``usage``) and
  :func:`model_error` (a 429 or 5xx that the orchestrator retries on a durable timer); :func:`function_outputs`
  reads the tool results a request carried.
* :func:`replay_history` - replays a recorded history (from the local runtime's state) through the current code and
  raises ``durable_agents.NonDeterminismError`` when a change would break runs in flight.

Quick start (pytest)::

    from agents import Agent, Runner
    import durable_agents
    from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, model_error

    bp = durable_agents.Blueprint()

    @durable_agents.activity_tool(bp, needs_approval=True)
    def close_account(account_id: str) -> dict:
        \"\"\"Close an account.\"\"\"
        return {"closed": account_id}

    agent = Agent(name="accounts", instructions="Manage accounts.", tools=[close_account])

    @bp.agent(agent, description="Account management.")
    def accounts(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)

    def test_closing_an_account_waits_for_approval():
        model = ScriptedModel([
            [function_call("close_account", {"account_id": "A-1"}, call_id="call_1")],
            model_error(429, retry_after=30),           # retried on a durable timer
            [assistant_message("Closed A-1.")],
        ])
        harness = ReplayHarness(app, model=model)
        run = harness.start_run("accounts", "Please close account A-1")
        harness.run(advance_timers=False)              # up to the approval
        assert [p["id"] for p in harness.pending_approvals(run)] == ["call_1"]
        harness.approve(run, "call_1", "ok")
        harness.run()                                  # the 429's retry timer fires at once
        assert run.status == "Completed"
        assert run.output["finalOutput"] == "Closed A-1."
"""

from agents.testing import ModelStep, assistant_message, function_call

from ._harness import EPISODE_TICK, EPOCH, Instance, ReplayHarness
from ._history import ReplayResult, replay_history
from ._model import ScriptedModel, function_outputs, model_error

__all__ = [
    "EPISODE_TICK",
    "EPOCH",
    "Instance",
    "ModelStep",
    "ReplayHarness",
    "ReplayResult",
    "ScriptedModel",
    "assistant_message",
    "function_call",
    "function_outputs",
    "model_error",
    "replay_history",
]
