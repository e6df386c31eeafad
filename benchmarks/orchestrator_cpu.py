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

Prints a table for 10, 25, 50, 100 and 200 turns, with and without the cache, the ratio of the 50-turn figure to the
5.0 s the Microsoft integration needed (issue reference), and the growth exponent between sizes (1 = linear,
2 = quadratic). The uncached run of more than ``--uncached-max-turns`` turns (default 100) is skipped: 200 turns
without the cache take more than ten minutes on a 2-core machine; ``--uncached-max-turns 200`` includes it.

Then a bytes table per turn count: CPU with the cache on and off and their ratio, the size of the instance's
history at the end (the JSON of its history events as the harness holds them, UTF-8; the last generation's only,
should the run continue as new), history bytes per turn, and the largest single payload of the run with its kind:
activity input (the compact JSON of each input the harness recorded, ``harness.activity_calls``), activity output
(``TaskCompleted.Result``, ``TaskFailed`` reason and details), orchestration input (``ExecutionStarted.Input``,
``ContinueAsNew.Result``), orchestration output (``ExecutionCompleted.Result``, a sub-orchestration's result), event
payload (``EventRaised.Input``, ``EventSent.Input``) or custom status (the compact JSON of each episode's), in UTF-8
bytes, the units the Durable Task Scheduler's 1 MB limit counts; and the growth exponents of CPU (both paths) and
of history bytes between consecutive turn counts.

Then two workflow cases: the human-gate workflow (a planner agent with ``--workflow-turns``
model turns, a person's approval of its plan, an executor agent with as many), with and without the cache; and
``--concurrent`` agents run side by side in an ``async def`` orchestrator, showing how many of their model calls
each episode scheduled (all of one round in one episode: one fan-out).

Run: ``.venv/bin/python -m benchmarks.orchestrator_cpu [--turns 10 25 50 100 200] [--repeat 3]
[--uncached-max-turns 100]`` from the app folder
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
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import azure.durable_functions as df  # noqa: E402
from agents import Agent, Runner  # noqa: E402
from agents.testing import ModelStep  # noqa: E402

import durable_agents  # noqa: E402
from durable_agents import _runner as durable_runner  # noqa: E402
from durable_agents import activity_tool, agent_orchestrator  # noqa: E402
from durable_agents._contracts import DEFAULT_TURNS_PER_GENERATION, RUN_VERSION  # noqa: E402
from durable_agents.testing import Instance, ReplayHarness, ScriptedModel, assistant_message, function_call  # noqa: E402
from local_runtime import events as ev  # noqa: E402

REFERENCE_50_TURNS_S = 5.0


def _wait_for_unwinding_workers() -> None:
    """Without the cache the worker of each episode is abandoned when the episode ends; wait until it is gone."""
    for thread in threading.enumerate():
        if thread.name.startswith("durable-agent-bench") and thread is not threading.current_thread():
            thread.join(30)


class RunResult(NamedTuple):
    """One agent run: CPU, episodes, history size and the largest payload."""

    cpu: float  # orchestrator CPU s (process, all threads)
    thread_cpu: float  # orchestrator-thread CPU s
    episodes: int
    events: int  # history events at the end
    history_bytes: int  # UTF-8 bytes of the JSON of the history events at the end
    largest_payload_bytes: int
    largest_payload_kind: str  # e.g. "activity input invoke_model", "custom status"
    generations: int = 1  # executions (1 + continue-as-new hand-overs)


def _utf8_len(text: str | None) -> int:
    return 0 if text is None else len(text.encode("utf-8"))


def history_bytes(inst: Instance) -> int:
    """UTF-8 bytes of the JSON of the instance's history events as the harness holds them."""
    return _utf8_len(ev.compact(inst.history))


def largest_payload(harness: ReplayHarness, inst: Instance) -> tuple[int, str]:
    """(UTF-8 bytes, kind) of the largest single payload of the instance: each activity input (compact JSON of the
    value the harness recorded), activity output, orchestration input/output, event payload and custom status."""
    candidates: list[tuple[int, str]] = [(0, "-")]
    candidates += [(_utf8_len(ev.compact(value)), f"activity input {name}") for name, value in harness.activity_calls]
    scheduled = {e.get("EventId"): e.get("Name") for e in inst.history if e.get("EventType") == ev.ET.TaskScheduled}
    fields: dict[int, tuple[tuple[str, ...], str]] = {
        ev.ET.ExecutionStarted: (("Input",), "orchestration input"),
        ev.ET.ContinueAsNew: (("Result",), "orchestration input"),
        ev.ET.ExecutionCompleted: (("Result",), "orchestration output"),
        ev.ET.SubOrchestrationInstanceCompleted: (("Result",), "orchestration output"),
        ev.ET.TaskCompleted: (("Result",), "activity output"),
        ev.ET.TaskFailed: (("Reason", "Details"), "activity output"),
        ev.ET.EventRaised: (("Input",), "event payload"),
        ev.ET.EventSent: (("Input",), "event payload"),
    }
    for event in inst.history:
        names, kind = fields.get(event.get("EventType"), ((), ""))
        for name in names:
            value: Any = event.get(name)
            if not isinstance(value, str):
                continue
            label = kind
            if kind == "activity output":
                label = f"{kind} {scheduled.get(event.get('TaskScheduledId'), '?')}"
            elif kind == "event payload":
                label = f"{kind} {event.get('Name')}"
            candidates.append((_utf8_len(value), label))
    candidates += [(_utf8_len(ev.compact(status)), "custom status") for status in inst.custom_statuses
                   if status is not None]
    return max(candidates, key=lambda c: c[0])


TURNS_PER_GENERATION = DEFAULT_TURNS_PER_GENERATION


def run(turns: int, cache: bool) -> RunResult:
    """One run of ``turns`` model turns: its CPU, episodes, history size and largest payload (:class:`RunResult`).

    The run is a version-3 run with ``AGENT_TURNS_PER_GENERATION`` = :data:`TURNS_PER_GENERATION` (``--k``; 0: one
    generation, the unbounded history of earlier versions). History bytes are summed over its generations."""
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
    app = durable_agents.App(http_api=False, app_dir=Path(__file__).parent)  # + the timeline archive activity
    app.register_functions(bp)
    harness = ReplayHarness(app, model=model, after_invocation=None if cache else _wait_for_unwinding_workers)
    settings = {"AGENT_TURNS_PER_GENERATION": str(TURNS_PER_GENERATION)}
    inst = harness.start("bench", {"agent": "bench", "input": "go", "settings": settings, "version": RUN_VERSION},
                         f"bench-{turns}-{cache}")
    harness.run()
    total_bytes = sum(inst.past_history_bytes) + history_bytes(inst)
    assert inst.status == "Completed", inst.output
    assert inst.output["turns"] == turns
    durable_runner.clear_session_cache()
    largest = largest_payload(harness, inst)
    return RunResult(inst.invocation_process_cpu_seconds, inst.cpu_seconds, inst.episodes, len(inst.history),
                     total_bytes, largest[0], largest[1], inst.generations)


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


def _growth(pairs: list[tuple[int, float | None]]) -> str:
    """Growth exponents log(v2/v1)/log(n2/n1) between consecutive turn counts with values, as text."""
    known = [(n, v) for n, v in pairs if v]
    parts = [f"{n1}->{n2} {math.log(v2 / v1) / math.log(n2 / n1):.2f}"
             for (n1, v1), (n2, v2) in zip(known, known[1:], strict=False)]
    return ", ".join(parts) or "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, nargs="+", default=[10, 25, 50, 100, 200])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--uncached-max-turns", type=int, default=200,
                        help="skip the cache-off runs of more turns (with --k 0, 200 turns uncached take >10 min)")
    parser.add_argument("--k", type=int, default=DEFAULT_TURNS_PER_GENERATION,
                        help="AGENT_TURNS_PER_GENERATION of the runs (0: never continue-as-new, unbounded history)")
    parser.add_argument("--workflow-turns", type=int, default=10, help="model turns per agent of the workflow case")
    parser.add_argument("--concurrent", type=int, nargs="*", default=[3, 8], help="agent counts of the concurrent case")
    args = parser.parse_args()
    import os
    import tempfile

    os.environ.setdefault("PAYLOAD_PATH", tempfile.mkdtemp(prefix="bench-payloads-"))  # never the repo's .local/
    global TURNS_PER_GENERATION
    TURNS_PER_GENERATION = args.k
    logging.disable(logging.WARNING)
    run(3, True)  # warm-up: imports, first-call caches
    results: dict[tuple[int, bool], RunResult] = {}
    skipped = [turns for turns in args.turns if turns > args.uncached_max_turns]
    print(f"version-3 runs, AGENT_TURNS_PER_GENERATION (K) = {args.k}"
          + (" (never continue-as-new)" if args.k == 0 else ""))
    print(f"{'turns':>5} {'cache':>5} {'gens':>4} {'episodes':>8} {'history':>8} {'orchestrator CPU s':>19} "
          f"{'orch. thread s':>15} {'ms/episode':>10} {'growth':>7} {'vs 5.0 s':>9}")
    for cache in (True, False):
        previous: tuple[int, float] | None = None
        for turns in args.turns:
            if not cache and turns in skipped:
                print(f"{turns:>5} {str(cache):>5}  skipped (more than --uncached-max-turns "
                      f"{args.uncached_max_turns}; pass --uncached-max-turns {turns} to run it)")
                continue
            best = min((run(turns, cache) for _ in range(args.repeat)), key=lambda r: r.cpu)
            results[(turns, cache)] = best
            cpu, thread_cpu, episodes, events = best.cpu, best.thread_cpu, best.episodes, best.events
            growth = "-"
            if previous is not None:
                growth = f"{math.log(cpu / previous[1]) / math.log(turns / previous[0]):.2f}"
            ratio = f"{cpu / REFERENCE_50_TURNS_S:.3f}" if turns == 50 else "-"
            print(f"{turns:>5} {str(cache):>5} {best.generations:>4} {episodes:>8} {events:>8} {cpu:>19.3f} "
                  f"{thread_cpu:>15.3f} "
                  f"{1000 * cpu / episodes:>10.2f} {growth:>7} {ratio:>9}")
            previous = (turns, cpu)
    print("orchestrator CPU = process CPU (all threads) during the orchestrator invocations of all episodes "
          "(SDK parse + replay, generator, worker thread running the Agents SDK); activities excluded. "
          f"growth = log(cpu ratio)/log(turns ratio) vs the previous row. Reference: {REFERENCE_50_TURNS_S} s "
          "for 50 turns (Microsoft integration).")
    print()
    print("bytes (history: JSON of the history events at the end, UTF-8; largest payload: the largest activity "
          "input/output, orchestration input/output, event payload or custom status of the run)")
    print(f"{'turns':>5} | {'cache on CPU s':>14} | {'cache off CPU s':>15} | {'ratio off/on':>12} | "
          f"{'history KB':>10} | {'bytes/turn':>10} | largest payload KB (kind)")
    for turns in args.turns:
        on, off = results.get((turns, True)), results.get((turns, False))
        ref = on or off
        if ref is None:
            continue
        off_text = f"{off.cpu:>15.3f}" if off else f"{'skipped':>15}"
        ratio = f"{off.cpu / on.cpu:>12.1f}" if on and off else f"{'-':>12}"
        on_text = f"{on.cpu:>14.3f}" if on else f"{'-':>14}"
        print(f"{turns:>5} | {on_text} | {off_text} | {ratio} | {ref.history_bytes / 1024:>10.1f} | "
              f"{ref.history_bytes / turns:>10.0f} | {ref.largest_payload_bytes / 1024:.1f} "
              f"({ref.largest_payload_kind})")
        differs = (abs(on.history_bytes - off.history_bytes) > on.history_bytes / 100
                   or abs(on.largest_payload_bytes - off.largest_payload_bytes) > on.largest_payload_bytes / 100
                   ) if on and off else False
        if differs and off:
            print(f"{'':>5}   (cache off: history {off.history_bytes / 1024:.1f} KB, largest payload "
                  f"{off.largest_payload_bytes / 1024:.1f} KB ({off.largest_payload_kind}))")
    print(f"growth cache on CPU:  {_growth([(t, r.cpu) for (t, c), r in sorted(results.items()) if c])}")
    print(f"growth cache off CPU: {_growth([(t, r.cpu) for (t, c), r in sorted(results.items()) if not c])}")
    history = {t: r.history_bytes for (t, _), r in results.items()}
    largest = {t: float(r.largest_payload_bytes) for (t, _), r in results.items()}
    print(f"growth history bytes: {_growth(sorted(history.items()))}")
    print(f"growth largest payload: {_growth(sorted(largest.items()))}")
    if skipped:
        print(f"cache off skipped for {', '.join(map(str, skipped))} turns (opt in: --uncached-max-turns "
              f"{max(skipped)}; 200 turns uncached take more than ten minutes on a 2-core machine)")
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
