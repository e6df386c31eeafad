"""Hosted tools end to end: an app whose agents use web search, file search, code interpreter, image generation and
a hosted MCP server, on the local runtime (a separate process) with the real OpenAI client calling the scripted
model server, driven over the HTTP API; the live-run cache on and off (off: every episode replays the run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REVIEWER, SUPPORT_USER, http
from tests.support.model_server import ScriptedModelServer
from tests.support.polling import wait_for
from tests.support.runtime_process import RuntimeProcess

APP = '''
"""Test app: agents with hosted tools (tests/integration/test_hosted_tools.py)."""
from agents import (Agent, CodeInterpreterTool, FileSearchTool, HostedMCPTool, ImageGenerationTool, Runner,
                    WebSearchTool)

import durable_agents

bp = durable_agents.Blueprint()
researcher = Agent(name="researcher", instructions="Research with the hosted tools.", tools=[
    WebSearchTool(search_context_size="low"),
    FileSearchTool(vector_store_ids=["vs_docs"], include_search_results=True),
    CodeInterpreterTool(tool_config={"type": "code_interpreter", "container": {"type": "auto"}}),
    ImageGenerationTool(tool_config={"type": "image_generation", "quality": "low"}),
])
github = Agent(name="github", instructions="File issues through the GitHub MCP server.", tools=[
    HostedMCPTool(tool_config={"type": "mcp", "server_label": "gh", "server_url": "https://mcp.example/mcp",
                               "require_approval": "always"}),
])


@bp.agent(researcher, description="Researches with hosted tools.")
def researcher_run(context):
    return Runner.run_sync(researcher, context.get_input()["input"])


@bp.agent(github, description="Files issues through a hosted MCP server.")
def github_run(context):
    return Runner.run_sync(github, context.get_input()["input"])


app = durable_agents.App()
app.register_functions(bp)
'''

HOSTED_ITEMS = [
    {"id": "ws_1", "type": "web_search_call", "status": "completed",
     "action": {"type": "search", "query": "durable functions python"}},
    {"id": "fs_1", "type": "file_search_call", "status": "completed", "queries": ["release notes"],
     "results": [{"file_id": "file_1", "filename": "notes.md", "score": 0.9, "text": "3.0 shipped.",
                  "attributes": {}}]},
    {"id": "ci_1", "type": "code_interpreter_call", "status": "completed", "code": "print(6 * 7)",
     "container_id": "cntr_1", "outputs": [{"type": "logs", "logs": "42\n"}]},
    {"id": "ig_1", "type": "image_generation_call", "status": "completed", "result": "iVBORw0KGgo="},
]
ARGUMENTS = {"title": "Checkout fails", "labels": ["bug"]}
MCP_REQUEST = {"id": "mcpr_1", "type": "mcp_approval_request", "server_label": "gh", "name": "create_issue",
               "arguments": json.dumps(ARGUMENTS)}
MCP_LIST = {"id": "mcpl_1", "type": "mcp_list_tools", "server_label": "gh",
            "tools": [{"name": "create_issue", "input_schema": {"type": "object"}, "description": "Create an issue"}]}
MCP_CALL = {"id": "mcp_1", "type": "mcp_call", "server_label": "gh", "name": "create_issue",
            "arguments": json.dumps(ARGUMENTS), "output": "#12", "approval_request_id": "mcpr_1",
            "status": "completed"}

SCRIPT = [
    {"when": {"instructionsContain": "hosted tools", "toolTypes": ["web_search", "file_search", "code_interpreter",
                                                                   "image_generation"]},
     "items": HOSTED_ITEMS, "text": "Durable Functions 3.0 shipped (42)."},
    {"when": {"instructionsContain": "GitHub MCP", "inputHas": "mcp_approval_response"},
     "items": [MCP_CALL], "text": "Done."},
    {"when": {"instructionsContain": "GitHub MCP", "toolTypes": "mcp"}, "items": [MCP_LIST, MCP_REQUEST]},
    {"text": "unexpected request"},
]

EXPECTED_TOOLS = [
    {"type": "web_search", "filters": None, "user_location": None, "search_context_size": "low"},
    {"type": "file_search", "vector_store_ids": ["vs_docs"]},
    {"type": "code_interpreter", "container": {"type": "auto"}},
    {"type": "image_generation", "quality": "low"},
]


class HostedToolsStack:
    """The hosted-tools app on the local runtime + the scripted model server."""

    def __init__(self, tmp: Path, *, api: str, cache: int):
        app_dir = tmp / "app"
        app_dir.mkdir()
        (app_dir / "function_app.py").write_text(APP)
        (app_dir / "host.json").write_text(json.dumps({"version": "2.0"}))
        self.model = ScriptedModelServer(SCRIPT).start()
        env = {"OPENAI_BASE_URL": self.model.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_API": api,
               "AGENT_MODEL": "scripted-model", "AZURE_OPENAI_ENDPOINT": "", "APPROVAL_TIMEOUT": "P1D",
               "AUDIT_PATH": str(tmp / "audit.sqlite3"), "AGENT_RUN_CACHE_SIZE": str(cache)}
        self.runtime = RuntimeProcess(app_dir, state=tmp / "state.sqlite3", env=env, log_path=tmp / "runtime.log")
        try:
            self.runtime.start()
        except BaseException:
            self.model.stop()
            raise

    def start_run(self, agent: str, text: str) -> str:
        answer = http("POST", self.runtime.url(f"/api/agents/{agent}/runs"), {"input": text}, user=SUPPORT_USER)
        assert answer.status == 202, (answer.status, answer.body)
        return answer.json["id"]

    def run(self, run_id: str) -> dict[str, Any]:
        answer = http("GET", self.runtime.url(f"/api/runs/{run_id}"))
        assert answer.status == 200, (answer.status, answer.body)
        return answer.json

    def wait_status(self, run_id: str, *statuses: str) -> dict[str, Any]:
        return wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(run_id)),
                        timeout=60, what=f"run {run_id} in {statuses}")

    def requests_of(self, instructions: str) -> list[dict[str, Any]]:
        return [r for r in self.model.requests if instructions in json.dumps((r["body"] or {}).get("instructions"))]

    def close(self) -> None:
        self.runtime.stop()
        self.model.stop()


@pytest.fixture(scope="module", params=[64, 0], ids=["cache-on", "cache-off"])
def stack(request, tmp_path_factory):
    stack = HostedToolsStack(tmp_path_factory.mktemp(f"hosted-{request.param}"), api="responses",
                             cache=request.param)
    stack.cache = request.param
    yield stack
    stack.close()


def test_the_app_runs_with_the_cache_size_asked_for(stack):
    assert f"AGENT_RUN_CACHE_SIZE: live-run cache size {stack.cache}" in stack.runtime.log_text()


def test_hosted_tools_reach_the_responses_api_and_their_items_come_back(stack):
    run_id = stack.start_run("researcher", "What is new in Durable Functions?")
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed", run
    assert run["output"] == "Durable Functions 3.0 shipped (42)."
    [request] = [r for r in stack.requests_of("hosted tools") if r["status"] == 200]
    assert request["tools"] == EXPECTED_TOOLS
    assert request["body"]["include"] == ["file_search_call.results"]


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "rejected"])
def test_a_hosted_mcp_approval_is_decided_through_the_http_api(stack, approve):
    before = len(stack.requests_of("GitHub MCP"))
    run_id = stack.start_run("github", f"File a bug: checkout fails [{approve}]")
    run = stack.wait_status(run_id, "awaiting_approval", "failed", "completed")
    assert run["status"] == "awaiting_approval", run
    [pending] = run["pendingApprovals"]
    assert (pending["id"], pending["kind"], pending["tool"], pending["arguments"]) == (
        "mcpr_1", "tool", "create_issue", ARGUMENTS)
    url = stack.runtime.url(f"/api/runs/{run_id}/approvals/{pending['id']}")
    answer = http("POST", url, {"approved": approve, "comment": "triaged"}, user=REVIEWER)
    assert answer.status == 202, answer.body
    run = stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "completed" and run["output"] == "Done.", run
    assert [a["decision"] for a in run["approvals"]] == ["approved" if approve else "rejected"]
    first, second = stack.requests_of("GitHub MCP")[before:]
    assert first["tools"] == [{"type": "mcp", "server_label": "gh", "server_url": "https://mcp.example/mcp",
                               "require_approval": "always"}]
    [response] = [i for i in second["body"]["input"] if i.get("type") == "mcp_approval_response"]
    assert (response["approval_request_id"], response["approve"]) == ("mcpr_1", approve)
    assert MCP_REQUEST in second["body"]["input"]  # the request item goes back with its answer


@pytest.fixture(scope="module")
def chat_stack(tmp_path_factory):
    stack = HostedToolsStack(tmp_path_factory.mktemp("hosted-chat"), api="chat_completions", cache=64)
    yield stack
    stack.close()


def test_on_chat_completions_a_hosted_tool_fails_the_run_at_once_naming_the_tool(chat_stack):
    run_id = chat_stack.start_run("researcher", "What is new?")
    run = chat_stack.wait_status(run_id, "completed", "failed")
    assert run["status"] == "failed"
    error = json.dumps(run["error"])
    assert "WebSearchTool" in error and "Chat" in error and "after 1 attempt" in error
    assert chat_stack.model.requests == []  # refused before any request, never retried


def test_on_chat_completions_the_error_says_to_use_the_responses_api(chat_stack):
    run_id = chat_stack.start_run("researcher", "What is new?")
    run = chat_stack.wait_status(run_id, "completed", "failed")
    assert "OPENAI_API=responses" in json.dumps(run["error"])
