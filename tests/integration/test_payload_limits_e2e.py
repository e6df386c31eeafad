"""Payloads within the Durable Task Scheduler's limits, end to end (issue 10 item 3) on the local runtime as a
process with its payload limits on (the production defaults: 1 MiB per payload, the extension's 16 KB custom
status), the real OpenAI client talking to the scripted model server (tests/fixtures/payload_app):

* a tool that returns 3 MiB: the run completes, the model received the whole document, the history holds a
  reference;
* an approval whose argument is 50 KB: the reviewer sees it (shortened in the status, whole in the audit), approves
  it with its hash, the tool gets it whole;
* a conversation of 200 messages: all answered in order, while no generation's history grows with the conversation.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.conftest import SUPPORT_USER, http
from tests.support.model_server import ScriptedModelServer
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess

pytestmark = pytest.mark.integration

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "payload_app"
REPORT = "r" * 50_000
SCRIPT = [
    {"when": {"userContains": "[doc]", "toolOutputs": 0}, "calls": [{"name": "fetch_document",
                                                                     "arguments": {"doc_id": "D-1"}}]},
    {"when": {"userContains": "[doc]", "toolOutputs": 1}, "text": "The document is 3 MiB of letters."},
    {"when": {"userContains": "[file]", "toolOutputs": 0}, "calls": [{"name": "file_report",
                                                                      "arguments": {"text": REPORT}}]},
    {"when": {"userContains": "[file]", "toolOutputs": 1}, "text": "Filed."},
    {"when": {"userContains": "[chat"}, "text": "Noted."},
    {"when": {"instructionsContain": "Look things up", "toolOutputs": 0},
     "calls": [{"name": "lookup", "arguments": {"key": "k1"}}]},
    {"when": {"instructionsContain": "Look things up", "path": "responses"}, "text": "k1 found."},
]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("payloads")
    model = ScriptedModelServer(SCRIPT).start()
    runtime = RuntimeProcess(APP_DIR, state=tmp / "state.sqlite3", log_path=tmp / "runtime.log", env={
        "OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_API": "responses",
        "AGENT_MODEL": "scripted-model", "AZURE_OPENAI_ENDPOINT": "", "AUDIT_PATH": str(tmp / "audit.sqlite3"),
        "PAYLOAD_PATH": str(tmp / "payloads"),
    })
    runtime.start()
    try:
        yield runtime, model
    finally:
        try:
            runtime.stop()
        finally:
            model.stop()


def _wait_run(runtime: RuntimeProcess, run_id: str, *statuses: str) -> dict[str, Any]:
    def status() -> dict[str, Any] | None:
        answer = http("GET", runtime.url(f"/api/runs/{run_id}"))
        assert answer.status == 200, answer.body
        return answer.json if answer.json["status"] in statuses else None
    return wait_for(status, timeout=90, what=f"run {run_id} in {statuses}")


def _history(runtime: RuntimeProcess, instance_id: str) -> list[dict[str, Any]]:
    answer = http("GET", runtime.url(f"/runtime/webhooks/durabletask/instances/{instance_id}"
                                     "?showHistory=true&showHistoryOutput=true&showInput=true"))
    assert answer.status in (200, 202), answer.body
    return answer.json["historyEvents"]


def _largest_event_bytes(history: list[dict[str, Any]]) -> int:
    # right after a continue-as-new the new generation's history can still be empty
    return max((len(json.dumps(event).encode()) for event in history), default=0)


def test_a_tool_that_returns_three_megabytes_completes_and_the_model_reads_all_of_it(stack):
    runtime, model = stack
    started = http("POST", runtime.url("/api/agents/reader/runs"), {"input": "Summarise D-1 [doc]"}, user=SUPPORT_USER)
    assert started.status == 202, started.body
    run = _wait_run(runtime, started.json["id"], "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == "The document is 3 MiB of letters."
    [second] = [r for r in model.requests if "[doc]" in json.dumps(r["body"])[:100_000] and r["step"] == 1]
    outputs = [i["output"] for i in second["body"]["input"] if i.get("type") == "function_call_output"]
    assert len(outputs) == 1 and len(outputs[0]) == 3 * 1024 * 1024 + len("D-1:")  # the model got it whole
    assert _largest_event_bytes(_history(runtime, run["id"])) < 16 * 1024  # the history holds a reference


def test_an_approval_of_a_fifty_kilobyte_argument_completes(stack):
    runtime, model = stack
    started = http("POST", runtime.url("/api/agents/filer/runs"), {"input": "File it [file]"}, user=SUPPORT_USER)
    assert started.status == 202, started.body
    run = _wait_run(runtime, started.json["id"], "awaiting_approval", "failed")
    assert run["status"] == "awaiting_approval", run
    [pending] = run["pendingApprovals"]
    assert pending["tool"] == "file_report" and pending.get("truncated") is True  # shortened for the status
    audit = http("GET", runtime.url(f"/api/runs/{run['id']}/audit")).json
    [requested] = [r for r in audit["records"] if r["event"] == "requested"]
    assert requested["arguments"] == {"text": REPORT}  # the audit has the whole argument
    decided = http("POST", runtime.url(f"/api/runs/{run['id']}/approvals/{pending['id']}"),
                   {"approved": True, "argumentsHash": pending["argumentsHash"]})
    assert decided.status in (200, 202), decided.body
    done = _wait_run(runtime, run["id"], "completed", "failed")
    assert done["status"] == "completed" and done["output"] == "Filed.", done
    last = [r for r in model.requests if r["step"] == 3][-1]
    [output] = [i["output"] for i in last["body"]["input"] if i.get("type") == "function_call_output"]
    assert json.loads(output) == {"filed": True, "characters": 50_000}


def test_a_conversation_of_two_hundred_messages_is_answered_in_order_with_bounded_history(stack):
    runtime, _ = stack
    created = http("POST", runtime.url("/api/agents/chat/conversations"), {}, user=SUPPORT_USER)
    assert created.status == 201, created.body
    conversation = created.json["id"]
    for n in range(1, 201):
        posted = http("POST", runtime.url(f"/api/conversations/{conversation}/messages"),
                      {"input": f"Message {n} [chat-{n}] " + "words " * 40}, user=SUPPORT_USER)
        assert posted.status == 202, posted.body
        assert posted.json["seq"] == n
        if n % 50 == 0:  # the history of the current generation never holds the whole conversation
            assert _largest_event_bytes(_history(runtime, conversation)) < 64 * 1024

    def answered() -> dict[str, Any] | None:
        body = http("GET", runtime.url(f"/api/conversations/{conversation}"), user=SUPPORT_USER).json
        return body if body.get("conversation", body).get("answered", 0) >= 200 or \
            len([m for m in _all_messages(runtime, conversation) if m["role"] == "assistant"]) >= 200 else None

    wait_for(answered, timeout=240, interval=1.0, what="200 answers")
    messages = _all_messages(runtime, conversation)
    assert [(m["seq"], m["role"]) for m in messages] == [(n, role) for n in range(1, 201)
                                                         for role in ("user", "assistant")]
    assert all(m["content"] == "Noted." and m["error"] is None for m in messages if m["role"] == "assistant")
    history = _history(runtime, conversation)
    started = next(e for e in history if e["EventType"] == "ExecutionStarted")
    assert len(json.dumps(started).encode()) < 64 * 1024  # the carried conversation goes by reference


def _all_messages(runtime: RuntimeProcess, conversation: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    after = None
    while True:
        query = f"?top=200&after={after}" if after else "?top=200"
        page = http("GET", runtime.url(f"/api/conversations/{conversation}/messages{query}"), user=SUPPORT_USER).json
        out += page["messages"]
        after = page.get("nextCursor")
        if not after or not page["messages"]:
            return out


def test_previous_response_id_chaining_sends_only_the_new_items(stack):
    runtime, model = stack
    started = http("POST", runtime.url("/api/agents/chained/runs"), {"input": "Find k1 [chain]"}, user=SUPPORT_USER)
    assert started.status == 202, started.body
    run = _wait_run(runtime, started.json["id"], "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "k1 found.", run
    first, second = [r for r in model.requests if "Look things up" in json.dumps(r["body"].get("instructions"))]
    assert first["body"].get("previous_response_id") is None
    assert second["body"]["previous_response_id"].startswith("resp_scripted_")
    # the second request carries only what is new: the tool's output, not the user's message again
    assert [i.get("type") for i in second["body"]["input"]] == ["function_call_output"]
