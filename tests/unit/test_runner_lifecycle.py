"""Worker lifetime, session-cache keying, compact re-yield and environment independence of the durable runner.

Real azure-functions-durable replay driven by durable_agents.testing, real openai-agents runs, a scripted model.
"""

from __future__ import annotations

import gc
import json
import threading
import warnings
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest
from agents import Agent, ModelSettings, RunConfig, Runner
from agents.models.default_models import get_default_model_settings

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents import activity_tool, agent_orchestrator
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call
from tests.unit.test_runner import SETTINGS, Shop, _run_scenario, _scenario

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

MARKER = durable_runner.REPLAYED_INPUT_MARKER["$durableAgents"]


def _agent_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("durable-agent-")]


def _join_agent_threads(timeout: float = 30.0) -> list[threading.Thread]:
    for thread in _agent_threads():
        thread.join(timeout)
    return _agent_threads()


def _run_with_approval(shop: Shop, inst: Any, *, fail_every_other_commit: bool = False) -> None:
    for _ in range(500):
        if fail_every_other_commit and shop.harness.failing_commits == 0 and inst.failed_commits <= inst.episodes:
            shop.harness.failing_commits = 1
        if shop.harness.step(advance_timers=True):
            continue
        if inst.status == "Running" and inst.custom_status["pendingApprovals"]:
            shop.harness.raise_event(inst.instance_id, "approval:call_r1", {"approved": True, "comment": None})
            continue
        break


def test_worker_threads_return_to_baseline_after_clear_session_cache():
    baseline = threading.active_count()
    cached, _ = _run_scenario(64)
    uncached, _ = _run_scenario(0)
    restarted, _ = _run_scenario(64, restart_every_episode=True)
    assert cached.status == uncached.status == restarted.status == "Completed"
    durable_runner.clear_session_cache()
    assert durable_runner.live_worker_count() == 0
    assert _agent_threads() == []
    assert threading.active_count() == baseline


def test_uncached_and_evicted_workers_end_on_their_own():
    # Without the cache every episode starts a worker; each must unwind when its episode ends (the old runner
    # left one thread per episode blocked forever). No clear_session_cache() here.
    uncached, _ = _run_scenario(0)
    assert uncached.status == "Completed" and uncached.episodes > 5
    assert _join_agent_threads() == []
    # Cache of one, two runs interleaved: each episode evicts the other run's worker.
    durable_runner.set_session_cache_size(1)
    shop_a = Shop(_scenario())
    shop_b = Shop(_scenario())
    a = shop_a.start(instance_id="run-a")
    b = shop_b.start(instance_id="run-b")
    for _ in range(200):
        progressed = shop_a.harness.step(advance_timers=True) | shop_b.harness.step(advance_timers=True)
        for shop, inst in ((shop_a, a), (shop_b, b)):
            if inst.status == "Running" and inst.custom_status["pendingApprovals"] and not progressed:
                shop.harness.raise_event(inst.instance_id, "approval:call_r1", {"approved": True, "comment": None})
                progressed = True
        if not progressed:
            break
    assert a.status == b.status == "Completed"
    assert a.output == b.output
    durable_runner.set_session_cache_size(0)  # evicts the last cached worker, which has finished anyway
    assert _join_agent_threads() == []


def test_no_event_loop_of_a_run_is_left_for_the_garbage_collector():
    # The worker closes its own event loop; before, abandoned and finished runs left open loops (and pending
    # tasks) that the garbage collector finalized later in whatever thread triggered a collection.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        _run_scenario(64)
        _run_scenario(0)
        _run_scenario(64, restart_every_episode=True)
        durable_runner.clear_session_cache()
        gc.collect()
    unclosed = [w for w in caught if "unclosed event loop" in str(w.message)]
    assert unclosed == []


def test_cache_and_replay_agree_when_commits_fail_and_episodes_are_rerun():
    # Same failure pattern with and without the cache (the virtual clock advances with every episode, failed
    # ones included, so the timers' FireAt only agree under the same pattern).
    durable_runner.set_session_cache_size(0)
    ref_shop = Shop(_scenario())
    reference = ref_shop.start()
    _run_with_approval(ref_shop, reference, fail_every_other_commit=True)
    h_ref = ref_shop.harness
    durable_runner.set_session_cache_size(64)
    shop = Shop(_scenario())
    inst = shop.start()
    _run_with_approval(shop, inst, fail_every_other_commit=True)
    assert inst.failed_commits == reference.failed_commits
    assert inst.failed_commits > 5
    assert inst.status == "Completed", inst.output
    assert inst.output == reference.output
    assert shop.harness.comparable_history("run-1") == h_ref.comparable_history("run-1")
    # Every activity ran exactly as often as in the reference run, never with the compact placeholder input.
    assert [name for name, _ in shop.harness.activity_calls] == [name for name, _ in h_ref.activity_calls]
    assert all(arg != durable_runner.REPLAYED_INPUT_MARKER for _, arg in shop.harness.activity_calls)
    assert shop.model.requests == reference_requests(h_ref)


def reference_requests(harness: ReplayHarness) -> list[dict[str, Any]]:
    from durable_agents._model_io import decode_model_request

    return [decode_model_request(arg["request"]) for name, arg in harness.activity_calls if name == "invoke_model"]


def test_cached_path_re_yields_completed_steps_without_their_inputs():
    cached, h1 = _run_scenario(64)
    uncached, h2 = _run_scenario(0)
    assert cached.output == uncached.output
    assert h1.comparable_history("run-1") == h2.comparable_history("run-1")
    assert h1.activity_calls == h2.activity_calls
    # The last episode re-yields 4 model calls and 3 tool calls that completed earlier: compact with the cache,
    # in full (each model input carrying the conversation) without it.
    assert MARKER in cached.last_state and MARKER not in uncached.last_state
    assert len(cached.last_state) < len(uncached.last_state) / 2


def test_purged_and_restarted_instance_never_resumes_a_stale_worker():
    script = [[function_call("refund_order", {"order_id": "ORD-1", "amount": "250.00"}, call_id="call_r1")],
              [assistant_message("done")]]
    first = Shop(list(script))
    old = first.start(text="refund for the FIRST customer")
    first.harness.run(advance_timers=False)
    assert old.status == "Running" and old.custom_status["pendingApprovals"]  # its worker is cached
    # Purge + restart with the same instance id: a new execution (new ExecutionId), a new history, other input.
    second = Shop(list(script))
    new = second.start(text="refund for the SECOND customer")
    second.harness.run(advance_timers=False)
    second.harness.raise_event("run-1", "approval:call_r1", {"approved": True, "comment": None})
    second.harness.run(advance_timers=False)
    assert new.status == "Completed", new.output
    seen = json.dumps([r["input"] for r in second.model.requests])
    assert "SECOND" in seen and "FIRST" not in seen


def _context(history: list[dict[str, Any]]) -> df.DurableOrchestrationContext:
    return df.DurableOrchestrationContext.from_json(
        json.dumps({"history": history, "input": None, "instanceId": "x", "isReplaying": False,
                    "parentInstanceId": None, "upperSchemaVersion": 1})
    )


def test_execution_key_uses_the_execution_id_or_the_start_time():
    from durable_agents._contracts import parse_time
    from durable_agents._runner import compat

    start = {"EventType": 12, "EventId": -1, "IsPlayed": False, "Timestamp": "2026-01-01T00:00:00Z"}
    with_id = {"EventType": 0, "EventId": -1, "IsPlayed": False, "Timestamp": "2026-01-01T00:00:00Z", "Name": "o",
               "Version": "", "OrchestrationInstance": {"InstanceId": "x", "ExecutionId": "abc123"}}
    without_id = {k: v for k, v in with_id.items() if k != "OrchestrationInstance"}
    when = parse_time("2026-01-01T00:00:00Z")
    assert compat.execution_key(_context([start, with_id]), when) == "execution:abc123"
    assert compat.execution_key(_context([start, without_id]), when) == "started:2026-01-01T00:00:00+00:00"


def _settings_run(agent_factory, run_config: RunConfig | None = None) -> dict[str, Any]:
    """Run a one-tool, two-turn agent; return the model settings of every invoke_model request (encoded)."""
    bp = df.Blueprint()

    @activity_tool(bp)
    def ping(n: int) -> dict:
        """Ping."""
        return {"pong": n}

    agent = agent_factory(ping)

    @bp.orchestration_trigger(context_name="context")
    @agent_orchestrator
    def settings_run(context):
        return Runner.run_sync(agent, "go", run_config=run_config)

    model = ScriptedModel([[function_call("ping", {"n": 1}, call_id="c1")], [assistant_message("ok")]])
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    harness = ReplayHarness(app, model=model)
    inst = harness.start("settings_run", {"agent": "a", "input": "go", "settings": SETTINGS}, "settings-1")
    harness.run()
    assert inst.status == "Completed", inst.output
    return [raw["request"].get("modelSettings") for raw in model.raw_inputs]


@pytest.mark.parametrize("default_model", [None, "gpt-4.1", "gpt-5-mini", "gpt-5.1"])
def test_model_settings_do_not_depend_on_openai_default_model(monkeypatch, default_model):
    # Agents are built under the environment, as at import in a process started with it.
    if default_model is None:
        monkeypatch.delenv("OPENAI_DEFAULT_MODEL", raising=False)
    else:
        monkeypatch.setenv("OPENAI_DEFAULT_MODEL", default_model)
    seen = _settings_run(lambda tool: Agent(name="a", instructions="x", tools=[tool]))
    monkeypatch.setenv("OPENAI_DEFAULT_MODEL", "gpt-4o")
    neutral = _settings_run(lambda tool: Agent(name="a", instructions="x", tools=[tool]))
    assert seen == neutral
    assert all("reasoning" not in json.dumps(s) and "verbosity" not in json.dumps(s) for s in seen)


def test_explicit_agent_settings_and_run_config_overrides_are_kept(monkeypatch):
    monkeypatch.delenv("OPENAI_DEFAULT_MODEL", raising=False)
    explicit = _settings_run(
        lambda tool: Agent(name="a", instructions="x", tools=[tool],
                           model_settings=ModelSettings(temperature=0.25, verbosity="high"))
    )
    assert all(s.get("temperature") == 0.25 and s.get("verbosity") == "high" for s in explicit)
    overridden = _settings_run(
        lambda tool: Agent(name="a", instructions="x", tools=[tool]),
        RunConfig(model_settings=ModelSettings(verbosity="medium")),
    )
    assert all(s.get("verbosity") == "medium" for s in overridden)
    named = _settings_run(lambda tool: Agent(name="a", instructions="x", tools=[tool], model="gpt-5-mini"))
    # An agent that names its model keeps the SDK's defaults for that model (they do not depend on the env).
    expected = get_default_model_settings("gpt-5-mini")
    assert expected.verbosity is not None
    assert all(s.get("verbosity") == expected.verbosity for s in named)


def test_a_history_result_that_is_not_a_model_result_fails_the_run_as_non_deterministic():
    """The Durable SDK matches results by sequence id only: if the history holds other work's result where the code
    now calls the model (a tool that stopped being an activity, say), the run fails with a NonDeterminismError."""
    app = durable_agents.App(http_api=False, model_activity=False)

    @app.activity_trigger(input_name="payload", activity="invoke_model")
    def invoke_model(payload: dict) -> dict:
        return {"order_id": "ORD-1", "status": "shipped"}  # what a tool activity recorded at this place

    agent = Agent(name="helper", instructions="Help.")

    @app.agent(agent, description="Helps.")
    def helper_run(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    harness = ReplayHarness(app)
    run = harness.start_run("helper", "hi", settings={})
    harness.run()
    assert run.status == "Failed"
    assert "Non-deterministic orchestration at step 0" in run.output
    assert "'order_id': 'ORD-1'" in run.output and "invoke_model" in run.output
