"""Orchestrator CPU of a tool-calling agent run, with and without the session cache.

Drives a real ``agent_orchestrator`` run through the replay harness (tests/support/replay.py: the extension's
episode protocol, activities in-process, a scripted model): each turn the model calls one activity tool, then the
last turn answers. Prints the total orchestrator CPU time summed over all episodes (``time.thread_time`` around
each orchestrator invocation, plus the worker thread's CPU, which runs the SDK) for 10, 25 and 50 turns, with and
without the cache, and the ratio to the 5.0 s the Microsoft integration needed for 50 turns (DESIGN.md).

Run: ``.venv/bin/python -m benchmarks.orchestrator_cpu`` from the app folder.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import azure.durable_functions as df  # noqa: E402
import azure.functions as func  # noqa: E402
from agents import Agent, Runner  # noqa: E402

from durable_agents import activity_tool, agent_orchestrator  # noqa: E402
from durable_agents import runner as durable_runner  # noqa: E402
from tests.support.replay import ReplayHarness  # noqa: E402
from tests.support.scripted_agents import ScriptedModel, text_response, tool_calls  # noqa: E402

REFERENCE_50_TURNS_S = 5.0


def run(turns: int, cache: bool) -> tuple[float, float, int]:
    """Return (orchestrator thread CPU s, process CPU s for the whole run, episodes)."""
    durable_runner.set_session_cache_size(64 if cache else 0)
    durable_runner.clear_session_cache()
    bp = df.Blueprint()

    @activity_tool(bp)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id, "status": "shipped"}

    agent = Agent(name="bench", instructions="Benchmark.", tools=[lookup_order])

    @bp.orchestration_trigger(context_name="context")
    @agent_orchestrator(agent_name="bench")
    def bench(context):
        return Runner.run_sync(agent, context.get_input()["input"], max_turns=turns + 5)

    script = [tool_calls((f"call_{i}", "lookup_order", {"order_id": f"ORD-{i}"})) for i in range(turns - 1)]
    script.append(text_response("done"))
    model = ScriptedModel(script)
    model.register(bp)
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    harness = ReplayHarness(app)
    inst = harness.start("bench", {"agent": "bench", "input": "go", "settings": {}}, f"bench-{turns}-{cache}")

    # Orchestrator CPU = the orchestrator invocation's own thread time + the CPU of the worker threads that
    # run the user's function (they only run while the invocation waits for them). Measured as process CPU
    # during orchestrator invocations only, so activities and the harness are excluded.
    original = harness._episode
    total = {"cpu": 0.0}

    def timed(instance, events):
        start = time.process_time()
        original(instance, events)
        total["cpu"] += time.process_time() - start

    harness._episode = timed  # type: ignore[method-assign]
    harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output["turns"] == turns
    return inst.cpu_seconds, total["cpu"], inst.episodes


def main() -> None:
    logging.disable(logging.WARNING)
    print(f"{'turns':>5} {'cache':>5} {'episodes':>8} {'orch thread CPU s':>18} {'episode CPU s':>14} "
          f"{'vs 5.0 s':>9}")
    for turns in (10, 25, 50):
        for cache in (True, False):
            thread_cpu, episode_cpu, episodes = run(turns, cache)
            ratio = f"{episode_cpu / REFERENCE_50_TURNS_S:.3f}" if turns == 50 else "-"
            print(f"{turns:>5} {str(cache):>5} {episodes:>8} {thread_cpu:>18.3f} {episode_cpu:>14.3f} {ratio:>9}")
    print("episode CPU = process CPU during orchestrator invocations (generator + worker thread running the SDK),"
          " activities excluded; reference: 5.0 s for 50 turns (DESIGN.md)")


if __name__ == "__main__":
    main()
