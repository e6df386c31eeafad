"""Orchestrator CPU of a tool-calling agent run, with and without the session cache.

Drives a real ``agent_orchestrator`` run through the replay harness (durable_agents.testing: the local runtime's
emulation of the extension on a virtual clock, activities in-process, a scripted model): each turn the model calls
one activity tool, then the last turn answers. For every orchestrator invocation (every episode) it measures the
process CPU time (``time.process_time``, all threads) from the call of the orchestrator function with the
extension's context JSON until it returned its ``OrchestratorState`` JSON: the SDK's JSON and history parse, the
replay, our generator, the worker thread that runs the Agents SDK, and the output serialization. Without the cache
the measurement also waits, inside the window, for the worker threads that unwind after the invocation returned,
so their CPU counts too. Not counted: activities (the tool and the scripted model), building the context JSON,
parsing the returned state and the extension-side replay (``local_runtime.replay``).

Prints a table for 10, 25, 50 and 100 turns, with and without the cache, the ratio of the 50-turn figure to the
5.0 s the Microsoft integration needed (issue reference), and the growth exponent between sizes (1 = linear,
2 = quadratic). Then two workflow cases: the human-gate workflow (a planner agent with ``--workflow-turns`` model
turns, a person's approval of its plan, an executor agent with as many), with and without the cache; and
``--concurrent`` agents run side by side in an ``async def`` orchestrator, showing how many of their model calls
each episode scheduled (all of one round in one episode: one fan-out).

Run: ``.venv/bin/python -m benchmarks.orchestrator_cpu [--turns 10 25 50 100] [--repeat 3]`` from the app folder
(the best of ``--repeat`` runs is reported per row, to reduce noise from other processes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import azure.durable_functions as df  # noqa: E402
import azure.functions as func  # noqa: E402
from agents import Agent, Runner  # noqa: E402
from agents.testing import ModelStep  # noqa: E402

import durable_agents  # noqa: E402
from durable_agents import _runner as durable_runner  # noqa: E402
from durable_agents import activity_tool, agent_orchestrator  # noqa: E402
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call  # noqa: E402

REFERENCE_50_TURNS_S = 5.0


def _wait_for_unwinding_workers() -> None:
    """Without the cache the worker of each episode is abandoned when the episode ends; wait until it is gone."""
    for thread in threading.enumerate():
        if thread.name.startswith("durable-agent-bench") and thread is not threading.current_thread():
            thread.join(30)


def run(turns: int, cache: bool) -> tuple[float, float, int, int]:
    """One run of ``turns`` model turns. Returns (orchestrator CPU s (process, all threads), orchestrator-thread
    CPU s, episodes, history events at the end)."""
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

    script = [[function_call("lookup_order", {"order_id": f"ORD-{i}"}, call_id=f"call_{i}")] for i in range(turns - 1)]
    script.append([assistant_message("done")])
    model = ScriptedModel(script)
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)
    app.register_functions(bp)
    harness = ReplayHarness(app, model=model, after_invocation=None if cache else _wait_for_unwinding_workers)
    inst = harness.start("bench", {"agent": "bench", "input": "go", "settings": {}}, f"bench-{turns}-{cache}")
    harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.output["turns"] == turns
    durable_runner.clear_session_cache()
    return inst.invocation_process_cpu_seconds, inst.cpu_seconds, inst.episodes, len(inst.history)


def run_workflow(turns: int, cache: bool) -> tuple[float, int, int]:
    """The human-gate workflow: a planner agent with ``turns`` model turns (``turns - 1`` tool turns), a person's
    approval of its plan (``context.request_approval``), an executor agent with ``turns`` model turns. Returns
    (orchestrator CPU s (process, all threads), episodes, history events at the end)."""
    durable_runner.set_session_cache_size(64 if cache else 0)
    durable_runner.clear_session_cache()
    bp = durable_agents.Blueprint()

    @activity_tool(bp)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id, "status": "shipped"}

    planner = Agent(name="planner", instructions="Plan.", tools=[lookup_order])
    executor = Agent(name="executor", instructions="Execute.", tools=[lookup_order])

    @bp.workflow("gate", description="Plan, approve, execute.", agents=(planner, executor))
    def gate(context):
        plan = Runner.run_sync(planner, context.get_input()["input"], max_turns=turns + 5).final_output
        decision = yield context.request_approval("Approve the plan?", {"plan": plan}, step="plan")
        assert decision["decision"] == "approved"
        return Runner.run_sync(executor, plan, max_turns=turns + 5).final_output

    def agent_script(name: str) -> list:
        steps = [[function_call("lookup_order", {"order_id": f"ORD-{i}"}, call_id=f"{name}_{i}")]
                 for i in range(turns - 1)]
        return [*steps, [assistant_message(f"{name} done")]]

    app = durable_agents.App(http_api=False, app_dir=Path(__file__).parent)
    app.register_functions(bp)
    harness = ReplayHarness(app, model=ScriptedModel(agent_script("plan") + agent_script("exec")),
                            after_invocation=None if cache else _wait_for_unwinding_workers)
    inst = harness.start_run("gate", "go", settings={}, run_id=f"bench-wf-{turns}-{cache}")
    harness.run(advance_timers=False)
    harness.approve(inst, "plan-1", "ok")
    harness.run(advance_timers=False)
    assert inst.status == "Completed" and inst.output == "exec done", inst.output
    durable_runner.clear_session_cache()
    return inst.invocation_process_cpu_seconds, inst.episodes, len(inst.history)


def run_concurrent(agents: int) -> list[int]:
    """``agents`` agents run together (``asyncio.gather`` in an ``async def`` agent orchestrator), each with one tool
    turn and a final answer. Returns the number of ``invoke_model`` activities scheduled in each episode."""
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()
    bp = durable_agents.Blueprint()

    @activity_tool(bp)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        return {"order_id": order_id}

    team = [Agent(name=f"agent{i}", instructions=f"Agent {i}.", tools=[lookup_order]) for i in range(agents)]

    @bp.workflow("team", description="Agents side by side.", agents=tuple(team))
    async def team_run(context):
        results = await asyncio.gather(*(Runner.run(agent, "go") for agent in team))
        return [result.final_output for result in results]

    def answer(call):  # first call of an agent: a tool call; with the tool's output: the final answer
        name = call.system_instructions or ""
        if any(getattr(item, "get", lambda _: None)("type") == "function_call_output" for item in call.input):
            return [assistant_message(f"{name} done")]
        return [function_call("lookup_order", {"order_id": name}, call_id=f"call_{name.split()[-1].rstrip('.')}")]

    app = durable_agents.App(http_api=False, app_dir=Path(__file__).parent)
    app.register_functions(bp)
    harness = ReplayHarness(app, model=ScriptedModel([ModelStep.respond(answer) for _ in range(2 * agents)]))
    inst = harness.start_run("team", "go", settings={}, run_id=f"bench-conc-{agents}")
    harness.run()
    assert inst.status == "Completed" and len(inst.output) == agents, inst.output
    durable_runner.clear_session_cache()
    return [sum(1 for a in actions if a.get("name") == "invoke_model") for actions in inst.episode_actions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[10, 25, 50, 100])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workflow-turns", type=int, default=10, help="model turns per agent of the workflow case")
    parser.add_argument("--concurrent", type=int, nargs="*", default=[3, 8], help="agent counts of the concurrent case")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    run(3, True)  # warm-up: imports, first-call caches
    results: dict[tuple[int, bool], tuple[float, float, int, int]] = {}
    print(f"{'turns':>5} {'cache':>5} {'episodes':>8} {'history':>8} {'orchestrator CPU s':>19} "
          f"{'orch. thread s':>15} {'ms/episode':>10} {'growth':>7} {'vs 5.0 s':>9}")
    for cache in (True, False):
        previous: tuple[int, float] | None = None
        for turns in args.turns:
            best = min((run(turns, cache) for _ in range(args.repeat)), key=lambda r: r[0])
            results[(turns, cache)] = best
            cpu, thread_cpu, episodes, events = best
            growth = "-"
            if previous is not None:
                growth = f"{math.log(cpu / previous[1]) / math.log(turns / previous[0]):.2f}"
            ratio = f"{cpu / REFERENCE_50_TURNS_S:.3f}" if turns == 50 else "-"
            print(f"{turns:>5} {str(cache):>5} {episodes:>8} {events:>8} {cpu:>19.3f} {thread_cpu:>15.3f} "
                  f"{1000 * cpu / episodes:>10.2f} {growth:>7} {ratio:>9}")
            previous = (turns, cpu)
    print("orchestrator CPU = process CPU (all threads) during the orchestrator invocations of all episodes "
          "(SDK parse + replay, generator, worker thread running the Agents SDK); activities excluded. "
          f"growth = log(cpu ratio)/log(turns ratio) vs the previous row. Reference: {REFERENCE_50_TURNS_S} s "
          "for 50 turns (Microsoft integration).")
    print()
    print(f"human-gate workflow ({args.workflow_turns} model turns per agent: planner, approval, executor)")
    print(f"{'cache':>5} {'episodes':>8} {'history':>8} {'orchestrator CPU s':>19} {'ms/episode':>10}")
    for cache in (True, False):
        cpu, episodes, events = min((run_workflow(args.workflow_turns, cache) for _ in range(args.repeat)),
                                    key=lambda r: r[0])
        print(f"{str(cache):>5} {episodes:>8} {events:>8} {cpu:>19.3f} {1000 * cpu / episodes:>10.2f}")
    print()
    for agents in args.concurrent:
        per_episode = run_concurrent(agents)
        print(f"{agents} concurrent agents: invoke_model activities scheduled per episode {per_episode}")


if __name__ == "__main__":
    main()
