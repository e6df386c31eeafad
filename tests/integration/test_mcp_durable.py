"""End to end: agents with MCP servers (tests/fixtures/mcp_app) on the local runtime as a process, the real
``invoke_model`` activity talking to the scripted model server, the real MCP activities talking to the test MCP
server (tests/support/mcp_server.py) over streamable HTTP (a process on loopback) and stdio (spawned by each
activity). The server's counter file says how often it listed its tools and ran each call, also across a
``kill -9`` of the runtime.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from durable_agents._mcp import CALL_TOOL_ACTIVITY, LIST_TOOLS_ACTIVITY
from durable_agents._timeline import ARCHIVE_ACTIVITY
from tests.integration.conftest import SUPPORT_USER, http
from tests.support.mcp_server import McpHttpServer, read_counter
from tests.support.model_server import ScriptedModelServer
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess

pytestmark = pytest.mark.integration

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "mcp_app"


def step(tag: str, outputs: int, **fields: Any) -> dict[str, Any]:
    return {"when": {"userContains": tag, "toolOutputs": outputs}, **fields}


def calls(*items: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"name": name, "arguments": args} for name, args in items]


SCRIPT = [
    step("[mcp-run]", 0, calls=calls(("add", {"a": 2, "b": 3}), ("lookup", {"id": "A-1"}))),
    step("[mcp-run]", 2, calls=calls(("lookup", {"id": "nope"}))),
    step("[mcp-run]", 3, text="5, a keyboard, and no record nope."),
    # [mcp-crash]: the model call after the first MCP call is slow: the runtime is killed inside it.
    step("[mcp-crash]", 0, calls=calls(("add", {"a": 20, "b": 22}))),
    step("[mcp-crash]", 1, delay=5.0, calls=calls(("lookup", {"id": "B-2"}))),
    step("[mcp-crash]", 2, text="42 and a monitor."),
    # [mcp-approve]: add is gated (MCP_HTTP_APPROVE_ADD=1).
    step("[mcp-approve]", 0, calls=calls(("add", {"a": 1, "b": 1}))),
    step("[mcp-approve]", 1, text="1 + 1 = 2."),
]


class McpStack:
    """The MCP fixture app on the local runtime, the scripted model server and the test MCP server over HTTP."""

    def __init__(self, tmp: Path, *, api: str = "responses", env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.model = ScriptedModelServer(SCRIPT).start()
        self.http_counter = tmp / "http-counter.jsonl"
        self.stdio_counter = tmp / "stdio-counter.jsonl"
        self.mcp = McpHttpServer("streamable-http", self.http_counter, log_path=tmp / "mcp.log").start()
        settings = {
            "OPENAI_BASE_URL": self.model.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_API": api,
            "AGENT_MODEL": "scripted-model", "AZURE_OPENAI_ENDPOINT": "", "APPROVAL_TIMEOUT": "P1D",
            "AUDIT_PATH": str(tmp / "audit.sqlite3"), "MCP_HTTP_URL": self.mcp.url,
            "MCP_STDIO_COUNTER": str(self.stdio_counter), **(env or {}),
        }
        self.runtime = RuntimeProcess(APP_DIR, state=tmp / "state.sqlite3", env=settings, log_path=tmp / "rt.log")
        self.runtime.start()

    def start_run(self, agent: str, text: str, run_id: str) -> str:
        answer = http("POST", self.runtime.url(f"/api/agents/{agent}/runs"), {"input": text, "runId": run_id},
                      user=SUPPORT_USER)
        assert answer.status == 202, (answer.status, answer.body)
        return answer.json["id"]

    def run(self, run_id: str) -> dict[str, Any]:
        answer = http("GET", self.runtime.url(f"/api/runs/{run_id}"))
        assert answer.status == 200, (answer.status, answer.body)
        return answer.json

    def wait_status(self, run_id: str, *statuses: str, timeout: float = 90.0) -> dict[str, Any]:
        return wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(run_id)),
                        timeout=timeout, what=f"run {run_id} in {statuses}")

    def scheduled(self, run_id: str) -> list[str]:
        """The activity names of the run's history in order, from the Durable status API with history (which, like
        the extension, folds each finished ``TaskScheduled`` into its ``TaskCompleted`` / ``TaskFailed``, whose
        ``FunctionName`` it carries)."""
        answer = http("GET", self.runtime.url(f"/runtime/webhooks/durabletask/instances/{run_id}"
                                              "?showHistory=true&showHistoryOutput=false"), user=None)
        assert answer.status == 200, (answer.status, answer.body)
        kinds = ("TaskScheduled", "TaskCompleted", "TaskFailed")
        return [e["FunctionName"] for e in answer.json["historyEvents"]  # not the previous generation's archive
                if e.get("EventType") in kinds and e["FunctionName"] != ARCHIVE_ACTIVITY]

    def close(self) -> None:
        try:
            self.runtime.stop()
        finally:
            self.mcp.stop()
            self.model.stop()


@pytest.fixture(scope="module", params=[("responses", "64"), ("chat_completions", "64"), ("responses", "0")],
                ids=["responses", "chat_completions", "responses-cache-off"])
def stack(request, tmp_path_factory) -> Iterator[McpStack]:
    api, cache_size = request.param  # cache off: every episode replays the run from history with a fresh worker
    app = McpStack(tmp_path_factory.mktemp(f"mcp-{api}-{cache_size}"), api=api,
                   env={"AGENT_RUN_CACHE_SIZE": cache_size})
    yield app
    app.close()


def _calls(entries: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(e, sort_keys=True) for e in entries if e["op"] == "call")


@pytest.mark.parametrize("agent", ["mcp_http", "mcp_stdio"])
def test_a_run_with_an_mcp_server_lists_once_and_runs_every_call_once_as_an_activity(stack, agent):
    counter = stack.http_counter if agent == "mcp_http" else stack.stdio_counter
    before = len(read_counter(counter))
    run_id = stack.start_run(agent, "Add 2 and 3, look up A-1 and nope. [mcp-run]", f"run-{agent}")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == "5, a keyboard, and no record nope."
    seen = read_counter(counter)[before:]
    assert [e["op"] for e in seen].count("list") == 1 and seen[0] == {"op": "list"}
    assert _calls(seen) == _calls([{"op": "call", "tool": "add", "arguments": {"a": 2, "b": 3}},
                                   {"op": "call", "tool": "lookup", "arguments": {"id": "A-1"}},
                                   {"op": "call", "tool": "lookup", "arguments": {"id": "nope"}}])
    scheduled = stack.scheduled(run_id)
    print(f"\n[{agent}] TaskScheduled:", scheduled)
    cache_size = stack.runtime.env.get("AGENT_RUN_CACHE_SIZE")
    assert f"live-run cache size {cache_size}" in (stack.tmp / "rt.log").read_text(encoding="utf-8")
    # The run continues as new every AGENT_TURNS_PER_GENERATION turns (the server's counts above are the whole run):
    # the last generation's history is the end of the run's one sequence, nothing in it ran twice.
    whole = [LIST_TOOLS_ACTIVITY, "invoke_model", CALL_TOOL_ACTIVITY, CALL_TOOL_ACTIVITY, "invoke_model",
             CALL_TOOL_ACTIVITY, "invoke_model"]
    assert scheduled and scheduled == whole[-len(scheduled):]
    # What the model read: the results, and the server's error result for the unknown id.
    bodies = [json.dumps(r["body"]) for r in stack.model.requests if "[mcp-run]" in json.dumps(r["body"])]
    assert any("no record nope" in b for b in bodies) and any("keyboard" in b for b in bodies)


def test_the_runtime_killed_during_a_run_resumes_it_and_runs_each_mcp_call_once(tmp_path):
    app = McpStack(tmp_path)
    try:
        run_id = app.start_run("mcp_http", "Add 20 and 22, then look up B-2. [mcp-crash]", "crash")
        # add ran, then the second model call starts and takes 5 s: kill the runtime inside it.
        wait_for(lambda: any(e.get("tool") == "add" for e in read_counter(app.http_counter)), timeout=60,
                 what="the add call")
        time.sleep(1.0)
        assert not any(r["step"] == 4 for r in app.model.requests if r.get("status") == 200)
        app.runtime.kill()
        app.runtime.start()
        run = app.wait_status(run_id, "completed", "failed")
        assert run["status"] == "completed", run
        assert run["output"] == "42 and a monitor."
        seen = read_counter(app.http_counter)
        print("\n[crash] server saw:", seen)
        assert seen == [{"op": "list"}, {"op": "call", "tool": "add", "arguments": {"a": 20, "b": 22}},
                        {"op": "call", "tool": "lookup", "arguments": {"id": "B-2"}}]
        scheduled = app.scheduled(run_id)
        print("[crash] TaskScheduled:", scheduled)
        # the last generation's history (the run continues as new every K turns; "seen" above is the whole run)
        assert scheduled.count(LIST_TOOLS_ACTIVITY) <= 1 and scheduled.count(CALL_TOOL_ACTIVITY) <= 2
        assert scheduled[-1] == "invoke_model"
        steps = [r["step"] for r in app.model.requests]
        assert steps.count(4) == 2, steps  # the model call in flight at the kill ran again (at-least-once)...
        assert steps.count(3) == 1 and steps.count(5) == 1, steps  # ...the finished ones did not
    finally:
        app.close()


def test_require_approval_of_an_mcp_server_waits_for_the_http_approval_api(tmp_path):
    app = McpStack(tmp_path, env={"MCP_HTTP_APPROVE_ADD": "1"})
    try:
        run_id = app.start_run("mcp_http", "1 + 1 [mcp-approve]", "gated")
        run = app.wait_status(run_id, "awaiting_approval")
        [pending] = run["pendingApprovals"]
        assert pending["tool"] == "add" and pending["arguments"] == {"a": 1, "b": 1}
        assert read_counter(app.http_counter) == [{"op": "list"}]
        answer = http("POST", app.runtime.url(f"/api/runs/{run_id}/approvals/{pending['id']}"),
                      {"approved": True, "comment": "ok"})
        assert answer.status == 202 and answer.json["decision"] == "approved", (answer.status, answer.body)
        run = app.wait_status(run_id, "completed", "failed")
        assert run["status"] == "completed" and run["output"] == "1 + 1 = 2."
        assert read_counter(app.http_counter) == [
            {"op": "list"}, {"op": "call", "tool": "add", "arguments": {"a": 1, "b": 1}}]
    finally:
        app.close()
