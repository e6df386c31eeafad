"""MCP servers of agents in durable runs: tool listing and tool calls as activities, against a real MCP server
(tests/support/mcp_server.py, the official ``mcp`` SDK) over streamable HTTP, SSE and stdio.

The replay harness runs the real activities (they connect to the server); the server's counter file says what it
really saw. With the live-run cache off (``set_session_cache_size(0)``) every episode replays the whole history
with a fresh worker, so a listing or a call that ran again on replay would show in the counter.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner
from agents.exceptions import UserError
from agents.mcp import MCPServer, MCPServerSse, MCPServerStdio, MCPServerStreamableHttp, MCPUtil
from agents.run_context import RunContextWrapper

import durable_agents
from durable_agents import _mcp
from durable_agents import _runner as durable_runner
from durable_agents._timeline import ARCHIVE_ACTIVITY
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs
from local_runtime.events import ET
from tests.support.mcp_server import McpHttpServer, read_counter, stdio_params

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

LIST, CALL = _mcp.LIST_TOOLS_ACTIVITY, _mcp.CALL_TOOL_ACTIVITY


@pytest.fixture(scope="module")
def http_server(tmp_path_factory) -> Iterator[McpHttpServer]:
    folder = tmp_path_factory.mktemp("mcp-http")
    with McpHttpServer("streamable-http", folder / "counter.jsonl") as server:
        yield server


@pytest.fixture(scope="module")
def sse_server(tmp_path_factory) -> Iterator[McpHttpServer]:
    folder = tmp_path_factory.mktemp("mcp-sse")
    with McpHttpServer("sse", folder / "counter.jsonl") as server:
        yield server


class Transport:
    """One way to reach the test server: ``make(**kwargs)`` builds the SDK server object, ``counter`` is the file
    the server records in (its entries since ``mark()`` are ``seen()``)."""

    def __init__(self, kind: str, counter: Path, make: Any) -> None:
        self.kind, self.counter, self.make = kind, counter, make
        self._start = 0

    def mark(self) -> None:
        self._start = len(read_counter(self.counter))

    def seen(self) -> list[dict[str, Any]]:
        return read_counter(self.counter)[self._start:]


@pytest.fixture(params=["streamable_http", "stdio"])
def transport(request, tmp_path) -> Transport:
    if request.param == "stdio":
        counter = tmp_path / "stdio-counter.jsonl"
        t = Transport("stdio", counter, lambda **kw: MCPServerStdio(stdio_params(counter), name="tools",
                                                                    client_session_timeout_seconds=20, **kw))
    else:
        server = request.getfixturevalue("http_server")
        t = Transport("streamable_http", server.counter,
                      lambda **kw: MCPServerStreamableHttp({"url": server.url}, name="tools", **kw))
    t.mark()
    return t


def _app(server: MCPServer, **agent_kwargs: Any) -> durable_agents.App:
    bp = durable_agents.Blueprint()
    agent = Agent(name="mcp_agent", instructions="Use the tools.", mcp_servers=[server], **agent_kwargs)

    @bp.agent(agent, description="An agent with an MCP server.")
    def mcp_agent(context):
        return Runner.run_sync(agent, context.get_input()["input"])

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)
    return app


def _script() -> list[Any]:
    return [
        [function_call("add", {"a": 2, "b": 3}, call_id="c1"), function_call("lookup", {"id": "A-1"}, call_id="c2")],
        [function_call("lookup", {"id": "nope"}, call_id="c3")],
        [assistant_message("2 + 3 = 5; A-1 is a keyboard; nope is unknown.")],
    ]


def _scheduled(run: Any) -> list[str]:
    """The names of the run's ``TaskScheduled`` history events (event type 4), in history order."""
    return [e["Name"] for e in run.history if e.get("EventType") == ET.TaskScheduled and e["Name"] != ARCHIVE_ACTIVITY]


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_run_lists_the_tools_once_and_every_call_is_an_activity_the_server_sees_once(transport, cache_size):
    durable_runner.set_session_cache_size(cache_size)  # 0: every episode replays the whole history
    model = ScriptedModel(_script())
    harness = ReplayHarness(_app(transport.make()), model=model)
    run = harness.start_run("mcp_agent", "Add 2 and 3, look up A-1 and nope.", run_id=f"mcp-{cache_size}")
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output["finalOutput"].startswith("2 + 3 = 5")
    names = [name for name, _ in harness.activity_calls if name != ARCHIVE_ACTIVITY]  # generations' archives
    print(f"\n[{transport.kind}, cache {cache_size}] TaskScheduled:", _scheduled(run))
    # Listed once, before the first model call (the SDK asks for the tools at every turn: later turns reuse it).
    assert names == [LIST, "invoke_model", CALL, CALL, "invoke_model", CALL, "invoke_model"]
    # every execution is one TaskScheduled of its generation's history: nothing ran on replay (the run continues as
    # new every AGENT_TURNS_PER_GENERATION turns, carrying the listing: the last generation's history ends the list)
    assert run.generations > 1 and names[-len(_scheduled(run)):] == _scheduled(run)
    seen = transport.seen()
    assert seen[0] == {"op": "list"} and [e["op"] for e in seen].count("list") == 1
    assert sorted(json.dumps(e, sort_keys=True) for e in seen[1:3]) == sorted(
        json.dumps(e, sort_keys=True) for e in [{"op": "call", "tool": "add", "arguments": {"a": 2, "b": 3}},
                                                {"op": "call", "tool": "lookup", "arguments": {"id": "A-1"}}])
    assert seen[3:] == [{"op": "call", "tool": "lookup", "arguments": {"id": "nope"}}]
    # The model saw the MCP tools (schemas from the listing) and read each result, the error result included.
    assert sorted(t.name for t in model.requests[0]["tools"]) == ["add", "lookup"]
    outputs = {**function_outputs(model.requests[1]), **function_outputs(model.requests[2])}
    assert "5" in outputs["c1"] and "keyboard" in outputs["c2"]
    assert "no record nope" in outputs["c3"]
    # The activity inputs carry the server's JSON spec, never a live connection.
    [list_input] = [value for name, value in harness.activity_calls if name == LIST]
    assert list_input["server"]["kind"] == transport.kind and list_input["server"]["name"] == "tools"
    call_inputs = [value for name, value in harness.activity_calls if name == CALL]
    assert {(c["tool"], json.dumps(c["arguments"], sort_keys=True)) for c in call_inputs} == {
        ("add", '{"a": 2, "b": 3}'), ("lookup", '{"id": "A-1"}'), ("lookup", '{"id": "nope"}')}


def test_the_two_parallel_calls_of_one_turn_are_one_fan_out(http_server):
    model = ScriptedModel(_script())
    harness = ReplayHarness(_app(MCPServerStreamableHttp({"url": http_server.url}, name="tools")), model=model)
    run = harness.start_run("mcp_agent", "go", run_id="fan")
    harness.run()
    assert run.status == "Completed"
    per_episode = [[a["name"] for a in actions if "name" in a] for actions in run.episode_actions]
    assert [CALL, CALL] in per_episode  # both calls of the first turn scheduled in one episode


@pytest.mark.parametrize("cache_size", [64, 0])
def test_sse_transport_lists_once_and_calls_once(sse_server, cache_size):
    durable_runner.set_session_cache_size(cache_size)
    start = len(read_counter(sse_server.counter))
    model = ScriptedModel([[function_call("add", {"a": 1, "b": 1}, call_id="s1")], [assistant_message("2")]])
    harness = ReplayHarness(_app(MCPServerSse({"url": sse_server.url}, name="tools")), model=model)
    run = harness.start_run("mcp_agent", "1 + 1", run_id=f"sse-{cache_size}")
    harness.run()
    assert run.status == "Completed" and run.output["finalOutput"] == "2"
    assert read_counter(sse_server.counter)[start:] == [
        {"op": "list"}, {"op": "call", "tool": "add", "arguments": {"a": 1, "b": 1}}]
    assert [n for n, _ in harness.activity_calls].count(LIST) == 1


@pytest.mark.parametrize("cache_size", [64, 0])
def test_require_approval_waits_durably_and_an_approved_call_runs_once(transport, cache_size):
    durable_runner.set_session_cache_size(cache_size)
    model = ScriptedModel([[function_call("add", {"a": 40, "b": 2}, call_id="a1")], [assistant_message("42")]])
    harness = ReplayHarness(_app(transport.make(require_approval={"add": "always"})), model=model)
    run = harness.start_run("mcp_agent", "40 + 2", run_id=f"approve-{cache_size}")
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    assert pending["id"] == "a1" and pending["tool"] == "add" and pending["arguments"] == {"a": 40, "b": 2}
    assert [e["op"] for e in transport.seen()] == ["list"]  # nothing called before the decision
    harness.approve(run, "a1", "fine")
    harness.run()
    assert run.status == "Completed" and run.output["finalOutput"] == "42"
    assert transport.seen() == [{"op": "list"}, {"op": "call", "tool": "add", "arguments": {"a": 40, "b": 2}}]
    names = [n for n, _ in harness.activity_calls]
    assert names.count(LIST) == 1 and names.count(CALL) == 1
    assert "42" in function_outputs(model.requests[1])["a1"]


def test_a_rejected_call_never_reaches_the_server_and_the_model_reads_the_rejection(transport):
    model = ScriptedModel([[function_call("add", {"a": 1, "b": 2}, call_id="r1"),
                            function_call("lookup", {"id": "B-2"}, call_id="r2")],
                           [assistant_message("Not allowed.")]])
    harness = ReplayHarness(_app(transport.make(require_approval={"always": {"tool_names": ["add"]}})),
                            model=model)
    run = harness.start_run("mcp_agent", "1 + 2", run_id="reject")
    harness.run(advance_timers=False)
    assert [p["id"] for p in harness.pending_approvals(run)] == ["r1"]
    harness.reject(run, "r1", "no sums today")
    harness.run()
    assert run.status == "Completed"
    outputs = function_outputs(model.requests[1])
    assert "rejected" in outputs["r1"] and "no sums today" in outputs["r1"]
    assert "monitor" in outputs["r2"]  # the ungated call of the same turn ran
    assert [e for e in transport.seen() if e["op"] == "call"] == [
        {"op": "call", "tool": "lookup", "arguments": {"id": "B-2"}}]


def _recorded_listing(harness: ReplayHarness) -> None:
    """Answer the listing activity from a recorded listing, so that only the calls meet a dead server."""
    listing = {"tools": [{"name": "add", "inputSchema": {"type": "object", "properties": {
        "a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]}}]}

    async def recorded_listing(payload: Any) -> dict[str, Any]:
        return listing

    info = harness.registry.activity(LIST)
    assert info is not None
    harness.registry.activities[LIST.lower()] = type(info)(**{**vars(info), "fn": recorded_listing})


@pytest.mark.parametrize("exposed", [False, True])
def test_a_server_that_is_down_becomes_a_tool_error_after_the_retries_and_the_run_goes_on(tmp_path, exposed):
    dead = McpHttpServer("streamable-http", tmp_path / "c.jsonl")  # never started: connection refused
    kwargs: dict[str, Any] = {"failure_error_function": lambda ctx, error: f"Tool failed: {error}"} if exposed else {}
    server = MCPServerStreamableHttp({"url": dead.url}, name="down", **kwargs)
    model = ScriptedModel([[function_call("add", {"a": 1, "b": 2}, call_id="d1")], [assistant_message("Sorry.")]])
    harness = ReplayHarness(_app(server), model=model)
    _recorded_listing(harness)
    run = harness.start_run("mcp_agent", "1 + 2", run_id="down")
    harness.run()
    assert run.status == "Completed" and run.output["finalOutput"] == "Sorry."
    names = [n for n, _ in harness.activity_calls]
    assert names.count(CALL) == _mcp.MCP_RETRY.max_attempts  # retried by Durable, then given up
    text = function_outputs(model.requests[1])["d1"]
    if exposed:  # the server's failure_error_function sees the durable failure
        assert text.startswith("Tool failed: MCP tool 'add' on server 'down' failed after 3 attempts")
    else:  # the SDK's default failure_error_function: a fixed text, no details for the model
        assert text == "An error occurred while running the tool. Please try again."


def test_the_retry_options_of_a_server_can_be_set_on_the_server_object(tmp_path):
    dead = McpHttpServer("streamable-http", tmp_path / "c.jsonl")
    server = MCPServerStreamableHttp({"url": dead.url}, name="down")
    server.durable_retry = durable_agents.ToolRetry(max_attempts=5, first_retry_interval_ms=100)  # type: ignore[attr-defined]
    model = ScriptedModel([[function_call("add", {"a": 1, "b": 2}, call_id="d1")], [assistant_message("Sorry.")]])
    harness = ReplayHarness(_app(server), model=model)
    _recorded_listing(harness)
    run = harness.start_run("mcp_agent", "1 + 2", run_id="retry5")
    harness.run()
    assert run.status == "Completed"
    assert [n for n, _ in harness.activity_calls].count(CALL) == 5


def test_a_listing_that_fails_for_good_fails_the_run_with_the_reason(tmp_path):
    dead = McpHttpServer("streamable-http", tmp_path / "c.jsonl")
    model = ScriptedModel([[assistant_message("unreachable")]])
    harness = ReplayHarness(_app(MCPServerStreamableHttp({"url": dead.url}, name="down")), model=model)
    run = harness.start_run("mcp_agent", "hi", run_id="nolist")
    harness.run()
    assert run.status == "Failed"
    assert "Listing the tools of MCP server 'down' failed after its retries" in json.dumps(run.output)
    assert [n for n, _ in harness.activity_calls] == [LIST] * _mcp.MCP_RETRY.max_attempts


def test_a_static_and_a_callable_tool_filter_apply_to_the_recorded_listing(http_server):
    def only_lookup(context: Any, tool: Any) -> bool:
        return tool.name == "lookup"

    for tool_filter in ({"allowed_tool_names": ["lookup"]}, only_lookup):
        model = ScriptedModel([[assistant_message("ok")]])
        server = MCPServerStreamableHttp({"url": http_server.url}, name="tools", tool_filter=tool_filter)
        harness = ReplayHarness(_app(server), model=model)
        run = harness.start_run("mcp_agent", "hi", run_id="filter")
        harness.run()
        assert run.status == "Completed"
        assert [t.name for t in model.requests[0]["tools"]] == ["lookup"]
        [(_, listed)] = [(n, v) for n, v in harness.activity_calls if n == LIST]
        assert "tool_filter" not in json.dumps(listed)


def test_connect_and_cleanup_in_the_orchestrator_open_nothing(http_server):
    server = MCPServerStreamableHttp({"url": http_server.url}, name="tools")
    bp = durable_agents.Blueprint()
    agent = Agent(name="mcp_agent", instructions="Use the tools.", mcp_servers=[server])

    @bp.agent(agent, description="Connects as plain SDK code would.")
    def mcp_agent(context):
        async def main():
            async with server:  # connect() / cleanup(): no-ops inside the durable run
                assert server.session is None
                return await Runner.run(agent, context.get_input()["input"])
        return asyncio.run(main())

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)
    start = len(read_counter(http_server.counter))
    model = ScriptedModel([[function_call("add", {"a": 5, "b": 6}, call_id="k1")], [assistant_message("11")]])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("mcp_agent", "5 + 6", run_id="connect")
    harness.run()
    assert run.status == "Completed", run.output
    assert server.session is None
    assert read_counter(http_server.counter)[start:] == [
        {"op": "list"}, {"op": "call", "tool": "add", "arguments": {"a": 5, "b": 6}}]


def test_two_agents_with_the_same_server_share_one_listing_per_run(http_server):
    server = MCPServerStreamableHttp({"url": http_server.url}, name="tools")
    first = Agent(name="first", instructions="a", mcp_servers=[server])
    second = Agent(name="second", instructions="b",
                   mcp_servers=[MCPServerStreamableHttp({"url": http_server.url}, name="tools")])
    bp = durable_agents.Blueprint()

    @bp.agent(first, description="Two agents, one after the other.")
    def pair(context):
        Runner.run_sync(first, "one")
        return Runner.run_sync(second, "two")

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)
    model = ScriptedModel([[assistant_message("1")], [assistant_message("2")]])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("first", "go", run_id="pair")
    harness.run()
    assert run.status == "Completed"
    assert [n for n, _ in harness.activity_calls].count(LIST) == 1


class _CustomServer(MCPServerStreamableHttp):
    """A subclass: its code would not run in the activity worker."""


def test_servers_that_cannot_be_rebuilt_from_json_are_refused_clearly(http_server):
    def handler(message: Any) -> None:
        return None

    cases = [
        (_CustomServer({"url": http_server.url}, name="custom"), "its class"),
        (MCPServerStreamableHttp({"url": http_server.url, "auth": object()}, name="authed"), "params ['auth']"),
        (MCPServerStreamableHttp({"url": http_server.url}, name="handled", message_handler=handler),
         "message_handler"),
    ]
    for server, why in cases:
        model = ScriptedModel([[assistant_message("unreachable")]])
        harness = ReplayHarness(_app(server), model=model)
        run = harness.start_run("mcp_agent", "hi", run_id="refused")
        harness.run()
        assert run.status == "Failed", why
        text = str(run.output)
        assert "cannot be used in a durable run" in text and why in text, (why, text)
        assert harness.activity_calls == []  # refused before any activity


class _Bespoke(MCPServer):
    """A hand-written MCPServer: the seam has no way to run it in an activity."""

    @property
    def name(self) -> str:
        return "bespoke"

    async def connect(self) -> None:
        raise AssertionError("must not connect")

    async def cleanup(self) -> None:
        return None

    async def list_tools(self, run_context=None, agent=None):  # type: ignore[no-untyped-def]
        raise AssertionError("must not list in the orchestrator")

    async def call_tool(self, tool_name, arguments, meta=None):  # type: ignore[no-untyped-def]
        raise AssertionError("must not call")

    async def list_prompts(self):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    async def get_prompt(self, name, arguments=None):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_a_custom_mcp_server_class_is_refused_before_it_runs_in_the_orchestrator():
    harness = ReplayHarness(_app(_Bespoke()), model=ScriptedModel([[assistant_message("x")]]))
    run = harness.start_run("mcp_agent", "hi", run_id="bespoke")
    harness.run()
    assert run.status == "Failed"
    assert "'bespoke' cannot be used in a durable run" in json.dumps(run.output)


def test_outside_a_durable_run_the_sdk_is_unchanged(http_server):
    durable_agents.install()
    start = len(read_counter(http_server.counter))

    async def plain() -> list[str]:
        server = MCPServerStreamableHttp({"url": http_server.url}, name="tools")
        with pytest.raises(UserError, match="connect"):
            await server.list_tools()  # the SDK's own error: not connected
        async with server:
            tools = await MCPUtil.get_function_tools(server, False, RunContextWrapper(None), Agent(name="x"))
            result = await server.call_tool("add", {"a": 7, "b": 8})
        assert "15" in json.dumps(result.model_dump(mode="json"))
        return [t.name for t in tools]

    assert sorted(asyncio.run(plain())) == ["add", "lookup"]
    assert read_counter(http_server.counter)[start:] == [
        {"op": "list"}, {"op": "call", "tool": "add", "arguments": {"a": 7, "b": 8}}]


def test_a_version_1_run_keeps_the_sdk_behaviour(http_server):
    """Runs started before version 2 replay as recorded: no MCP activity (the server is used as the SDK does)."""
    model = ScriptedModel([[assistant_message("old")]])
    harness = ReplayHarness(_app(MCPServerStreamableHttp({"url": http_server.url}, name="tools")), model=model)
    run = harness.start("mcp_agent", {"agent": "mcp_agent", "input": "hi", "settings": {}}, "v1")
    harness.run()
    assert run.status == "Failed"  # the SDK's own rule: a server must be connected first
    assert "connect" in json.dumps(run.output)
    assert LIST not in [n for n, _ in harness.activity_calls]


def test_the_spec_carries_json_params_and_settings_are_resolved_in_the_worker_only(monkeypatch, tmp_path):
    import datetime as dt

    server = MCPServerStreamableHttp({"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer %MCP_T%"},
                                      "timeout": dt.timedelta(seconds=7)}, name="s", cache_tools_list=True)
    spec = _mcp.server_spec(server)
    assert spec == {"kind": "streamable_http", "name": "s",
                    "params": {"url": "http://127.0.0.1:1/mcp", "headers": {"Authorization": "Bearer %MCP_T%"},
                               "timeout": 7.0},
                    "cacheToolsList": True, "clientSessionTimeoutSeconds": 5.0, "maxRetryAttempts": 0,
                    "retryBackoffSecondsBase": 1.0, "retryBackoffSecondsMax": None, "maxListPages": None}
    monkeypatch.setenv("MCP_T", "s3cret")
    rebuilt = _mcp.build_server(spec)
    assert isinstance(rebuilt, MCPServerStreamableHttp)
    assert rebuilt.params["headers"] == {"Authorization": "Bearer s3cret"} and rebuilt.name == "s"
    monkeypatch.delenv("MCP_T")
    with pytest.raises(ValueError, match="MCP_T"):
        _mcp.build_server(spec)
    stdio = _mcp.server_spec(MCPServerStdio(stdio_params(tmp_path / "c.jsonl"), name="io"))
    assert stdio["kind"] == "stdio" and stdio["params"]["args"][:2] == ["-m", "tests.support.mcp_server"]
    assert isinstance(_mcp.build_server(stdio), MCPServerStdio)


def test_literal_credentials_in_headers_or_env_are_refused_and_references_are_accepted(tmp_path):
    for headers in ({"Authorization": "Bearer abc"}, {"X-Api-Key": "abc"}):
        with pytest.raises(UserError, match="looks like a credential"):
            _mcp.server_spec(MCPServerStreamableHttp({"url": "http://127.0.0.1:1/mcp", "headers": headers}))
    params = stdio_params(tmp_path / "c.jsonl")
    with pytest.raises(UserError, match=r"params\['env'\]\['GITHUB_TOKEN'\]"):
        _mcp.server_spec(MCPServerStdio({**params, "env": {**params["env"], "GITHUB_TOKEN": "ghp_x"}}))
    spec = _mcp.server_spec(MCPServerStdio({**params, "env": {**params["env"], "GITHUB_TOKEN": "%GH_TOKEN%"}}))
    assert spec["params"]["env"]["GITHUB_TOKEN"] == "%GH_TOKEN%"
    assert _mcp.server_spec(MCPServerStreamableHttp(
        {"url": "http://127.0.0.1:1/mcp", "headers": {"X-Tenant": "contoso"}}))["params"]["headers"] == {
        "X-Tenant": "contoso"}


def test_install_is_idempotent():
    before = (MCPServerStdio.list_tools, MCPServerStreamableHttp.call_tool, MCPUtil.get_all_function_tools)
    _mcp.install_mcp_seam()
    _mcp.install_mcp_seam()
    assert (MCPServerStdio.list_tools, MCPServerStreamableHttp.call_tool, MCPUtil.get_all_function_tools) == before
