"""The run timeline (docs/internals.md "Timeline and events"): entries from a generation's Durable history, the
archive of each ended generation written at continue-as-new, and that both readings of a history agree (the ids
of the SSE stream depend on it). Runs go through real azure-functions-durable replay in the replay harness."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner, Usage
from agents.testing import ModelStep
from azure.durable_functions.models.history import HistoryEvent

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents import activity_tool
from durable_agents._blobs import get_blob_store
from durable_agents._timeline import (
    MAX_ARCHIVE_CHARS,
    archive_input,
    archive_name,
    entries_from_context_history,
    entries_from_status_history,
    read_archived,
)
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call
from local_runtime.durable_api import _history_json

APP_DIR = Path(__file__).parent


@pytest.fixture
def payloads(tmp_path, monkeypatch):
    monkeypatch.setenv("PAYLOAD_PATH", str(tmp_path / "payloads"))
    durable_runner.clear_session_cache()
    yield get_blob_store(APP_DIR)
    durable_runner.clear_session_cache()


def _app(gated: bool = False, checked: bool = False):
    bp = durable_agents.Blueprint()
    needs: Any = gated
    if checked:
        @durable_agents.approval_check(bp, name="timeline_order_check")
        def timeline_order_check(check) -> bool:
            """Orders starting with ORD-9 need a person."""
            return str(check.arguments.get("order_id", "")).startswith("ORD-9")

        needs = timeline_order_check

    @activity_tool(bp, needs_approval=needs)
    def lookup_order(order_id: str) -> dict:
        """Look up an order."""
        if order_id == "BAD":
            raise ValueError("no such order")
        return {"order_id": order_id, "status": "shipped"}

    agent = Agent(name="timeline", instructions="Timeline.", tools=[lookup_order])

    @bp.agent(agent, description="Timeline test agent.")
    def timeline_run(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    return app


def _turn(order_id: str, call_id: str) -> ModelStep:
    return ModelStep(output=[function_call("lookup_order", {"order_id": order_id}, call_id=call_id)],
                     usage=Usage(requests=1, input_tokens=10, output_tokens=2, total_tokens=12))


def _status_entries(inst, generation: int) -> list[dict]:
    return entries_from_status_history(_history_json(inst.history, True, True), generation)


def test_each_generation_is_archived_and_the_whole_run_reads_in_order(payloads):
    model = ScriptedModel([_turn(f"ORD-{i}", f"call_{i}") for i in range(4)]
                          + [ModelStep(output=[assistant_message("all done")])])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("timeline", "go", settings={"AGENT_TURNS_PER_GENERATION": "2"}, run_id="tl-1")
    harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.generations == 3
    archived = read_archived(payloads, "tl-1", 2)
    current = _status_entries(inst, 2)
    entries = archived + current
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids))
    assert [e["generation"] for e in entries] == sorted(e["generation"] for e in entries)
    kinds = [e["kind"] for e in entries]
    assert kinds.count("model_turn") == 5
    assert kinds.count("tool_call") == 4
    assert kinds[0] == "status" and entries[0]["status"] == "started" and entries[0]["agent"] == "timeline"
    assert [e["status"] for e in entries if e["kind"] == "status"] == [
        "started", "continued_as_new", "resumed", "continued_as_new", "resumed"]
    assert entries[-1]["kind"] == "output" and "all done" in json.dumps(entries[-1]["output"])
    tools = [e for e in entries if e["kind"] == "tool_call"]
    assert [t["callId"] for t in tools] == ["call_0", "call_1", "call_2", "call_3"]
    assert tools[0]["arguments"] == {"order_id": "ORD-0"} and tools[0]["result"]["status"] == "shipped"
    assert tools[0]["retries"] == 0 and tools[0]["ok"] is True
    turn = next(e for e in entries if e["kind"] == "model_turn")
    assert turn["finish"] == "tool_calls" and turn["usage"]["inputTokens"] == 10
    assert turn["toolCalls"] == [{"callId": "call_0", "name": "lookup_order", "arguments": {"order_id": "ORD-0"}}]
    assert payloads.get(archive_name("tl-1", 0)) is not None and payloads.get(archive_name("tl-1", 2)) is None


def test_both_readings_of_a_history_give_the_same_entries(payloads):
    model = ScriptedModel([_turn("BAD", "call_bad"), ModelStep(output=[assistant_message("sorry")])])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("timeline", "go", run_id="tl-2")
    harness.run()
    assert inst.status == "Completed", inst.output
    raw = [HistoryEvent(**e) for e in inst.history]
    from_context = entries_from_context_history(raw, 0, continued=False)
    assert from_context == _status_entries(inst, 0)
    failed = next(e for e in from_context if e["kind"] == "tool_call")
    assert failed["ok"] is False and "no such order" in failed["error"]


def test_approvals_are_requested_and_decided_in_the_timeline(payloads):
    model = ScriptedModel([_turn("ORD-9", "call_9"), ModelStep(output=[assistant_message("refunded")])])
    harness = ReplayHarness(_app(gated=True), model=model)
    inst = harness.start_run("timeline", "go", run_id="tl-3")
    harness.run(advance_timers=False)
    before = _status_entries(inst, 0)
    assert before[-1]["kind"] == "approval_requested"
    assert before[-1]["approvals"][0]["id"] == "call_9" and before[-1]["expiresAt"]
    harness.approve(inst, "call_9", "fine", decided_by={"id": "dev-amy", "name": "amy"})
    harness.run()
    after = _status_entries(inst, 0)
    assert after[: len(before)] == before  # a generation's entries only grow
    decided = next(e for e in after if e["kind"] == "approval_decided")
    assert decided["decision"] == "approved" and decided["comment"] == "fine"
    assert decided["decidedBy"] == {"id": "dev-amy", "name": "amy"}
    assert [e["kind"] for e in after].count("tool_call") == 1


def test_an_approval_asked_by_an_approval_check_activity_is_an_approval_not_a_tool_call(payloads):
    model = ScriptedModel([_turn("ORD-1", "call_1"), _turn("ORD-9", "call_9"),
                           ModelStep(output=[assistant_message("refunded")])])
    harness = ReplayHarness(_app(checked=True), model=model)
    inst = harness.start_run("timeline", "go", settings={"AGENT_TURNS_PER_GENERATION": "0"}, run_id="tl-4")
    harness.run(advance_timers=False)
    before = _status_entries(inst, 0)
    assert before[-1]["kind"] == "approval_requested", [e["kind"] for e in before]
    assert [a["id"] for a in before[-1]["approvals"]] == ["call_9"]
    assert [e["callId"] for e in before if e["kind"] == "tool_call"] == ["call_1"]  # the check is no tool call
    harness.approve(inst, "call_9", "ok", decided_by={"id": "dev-amy", "name": "amy"})
    harness.run()
    assert inst.status == "Completed", inst.output
    kinds = [e["kind"] for e in _status_entries(inst, 0)]
    assert kinds.count("tool_call") == 2 and kinds.count("approval_decided") == 1 and "timer" not in kinds


def test_an_archived_generation_is_read_from_the_store_once(payloads):
    model = ScriptedModel([_turn(f"ORD-{i}", f"call_{i}") for i in range(2)]
                          + [ModelStep(output=[assistant_message("all done")])])
    harness = ReplayHarness(_app(), model=model)
    inst = harness.start_run("timeline", "go", settings={"AGENT_TURNS_PER_GENERATION": "1"}, run_id="tl-5")
    harness.run()
    assert inst.generations == 3

    class Counting:
        def __init__(self, inner: Any) -> None:
            self.inner, self.reads = inner, 0

        def get(self, name: str) -> Any:
            self.reads += 1
            return self.inner.get(name)

    store = Counting(payloads)
    first = read_archived(store, "tl-5", 2)
    assert store.reads == 2 and first
    assert read_archived(store, "tl-5", 2) == first and store.reads == 2  # ended generations never change


def test_the_archive_input_stays_far_under_the_payload_limit():
    entries = [{"id": f"g0-{i}", "kind": "tool_call", "result": "x" * 5000} for i in range(400)]
    payload = archive_input("r", 0, entries)
    assert len(json.dumps(payload)) <= MAX_ARCHIVE_CHARS
    assert payload["entries"][0]["id"] == "g0-0"
