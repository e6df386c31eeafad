"""Payloads by reference (docs/internals.md "Payloads by reference"): version-3 runs keep large tool results and
the conversation so far in the payload blob store, so no activity input or output grows with the run; the model
still receives everything. Real replay in the harness, the real FileBlobStore (PAYLOAD_PATH in tmp_path)."""

from __future__ import annotations

import json
from pathlib import Path

from agents import Agent, Runner

import durable_agents
from durable_agents import activity_tool
from durable_agents._blobs import get_blob_store, run_prefix
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs
from local_runtime import events as ev

APP_DIR = Path(__file__).parent
DOC = "".join(chr(0x41 + (i % 26)) for i in range(3 * 1024 * 1024))  # 3 MiB of text


def _app(result_size: int):
    bp = durable_agents.Blueprint()

    @activity_tool(bp)
    def fetch_document(doc_id: str) -> str:
        """Fetch a document."""
        return DOC if result_size < 0 else (doc_id + ":" + "x" * result_size)

    agent = Agent(name="reader", instructions="Read.", tools=[fetch_document])

    @bp.agent(agent, description="Reads documents.")
    def reader_run(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False, app_dir=APP_DIR)
    app.register_functions(bp)
    return app


def _sizes(inst, kind: int, field: str) -> list[int]:
    return [len(e[field].encode()) for e in inst.history
            if e.get("EventType") == kind and isinstance(e.get(field), str)]


def test_a_tool_result_of_three_megabytes_goes_by_reference_and_the_model_reads_all_of_it():
    model = ScriptedModel([[function_call("fetch_document", {"doc_id": "D1"}, call_id="c1")],
                           [assistant_message("read it")]])
    harness = ReplayHarness(_app(-1), model=model)
    inst = harness.start_run("reader", "read D1", settings={}, run_id="big-doc")
    harness.run()
    assert inst.status == "Completed", inst.output
    assert max(_sizes(inst, ev.ET.TaskCompleted, "Result")) < 4096  # the history holds a marker, not 3 MiB
    assert function_outputs(model.requests[1])["c1"] == DOC  # the model got the whole document
    sent = json.dumps(model.raw_inputs[1])
    assert len(sent) < 8192 and "durable_agents.blob" in sent


def test_the_conversation_so_far_goes_by_reference_so_model_inputs_stay_small():
    steps = [[function_call("fetch_document", {"doc_id": f"D{i}"}, call_id=f"c{i}")] for i in range(12)]
    model = ScriptedModel([*steps, [assistant_message("done")]])
    harness = ReplayHarness(_app(3000), model=model)
    inst = harness.start_run("reader", "read them", settings={"AGENT_TURNS_PER_GENERATION": "4"}, run_id="conv")
    harness.run()
    assert inst.status == "Completed", inst.output
    assert inst.generations == 4
    full = [len(json.dumps(r["input"])) for r in model.requests]
    sent = [len(json.dumps(raw["request"]["input"])) for raw in model.raw_inputs]
    assert full[-1] > 36_000  # the model saw all twelve results (3 KB each) ...
    assert set(function_outputs(model.requests[-1])) == {f"c{i}" for i in range(12)}
    assert max(sent[4:]) < 8_000  # ... while no input sent after the first stored one carried more than ~2 turns
    started = next(e for e in inst.history if e.get("EventType") == ev.ET.ExecutionStarted)
    carried = json.loads(json.loads(started["Input"]))["$durableAgents"]["resume"]["items"]
    assert carried[0]["content"].startswith("[[durable_agents.items blob:sha256:")
    assert len(json.dumps(carried)) < 8_000


def test_a_purged_payload_fails_the_model_call_clearly_and_is_not_retried():
    steps = [[function_call("fetch_document", {"doc_id": f"D{i}"}, call_id=f"c{i}")] for i in range(8)]
    model = ScriptedModel([*steps, [assistant_message("done")]])
    harness = ReplayHarness(_app(3000), model=model)
    inst = harness.start_run("reader", "read", settings={"AGENT_TURNS_PER_GENERATION": "4"}, run_id="purged")
    while inst.generations == 1 and harness.step():
        pass
    assert inst.generations == 2
    assert get_blob_store().delete_prefix(run_prefix("purged")) > 0
    harness.run()
    assert inst.status == "Failed"
    assert "PayloadMissing" in str(inst.output) and "purged" in str(inst.output)
