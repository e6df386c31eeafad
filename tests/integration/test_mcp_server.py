"""The app as a remote MCP server (durable_agents/_mcp_tools.py) on the local runtime's MCP webhook, driven by the
official ``mcp`` Python SDK client over Streamable HTTP with the store app and the scripted model: the tool list,
a small refund that completes inside the call, a large refund that waits for approval, decided through the
``decide_approval`` tool, bad arguments as MCP errors, and a ``kill -9`` of the host during a call."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack, http
from tests.integration.test_agent_runs import calls, step

pytestmark = pytest.mark.integration

SCRIPT = [
    step("[mcp-small]", 0, calls=calls(("refund_order", {"order_id": "ORD-1006", "amount": 25.00,
                                                          "reason": "arrived broken"}))),
    step("[mcp-small]", 1, text="Refunded 25.00 USD for ORD-1006."),
    step("[mcp-large]", 0, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                          "reason": "arrived broken"}))),
    step("[mcp-large]", 1, text="Refunded 291.50 USD for ORD-1001."),
    step("[mcp-kill]", 0, calls=calls(("refund_order", {"order_id": "ORD-1005", "amount": 27.50,
                                                         "reason": "late"}))),
    step("[mcp-kill]", 1, text="Refunded 27.50 USD for ORD-1005.", delay=4.0),
]


def mcp_url(app: AppStack) -> str:
    return app.url("/runtime/webhooks/mcp")


async def _session(app: AppStack, user: str, work: Any) -> Any:
    headers = {"X-Dev-User": user}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(120.0)) as http_client:
        async with Client(streamable_http_client(mcp_url(app), http_client=http_client)) as client:
            return await work(client)


def as_user(app: AppStack, user: str, work: Any) -> Any:
    """Run ``await work(client)`` with an MCP client connected as ``user`` (the local runtime's X-Dev-User)."""
    return asyncio.run(_session(app, user, work))


def structured(result: Any) -> dict[str, Any]:
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def text(result: Any) -> str:
    return "".join(block.text for block in result.content if getattr(block, "type", "") == "text")


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    app = AppStack(tmp_path_factory.mktemp("mcp-stack"), SCRIPT)
    yield app
    app.close()


def test_every_agent_and_workflow_is_a_tool_beside_the_run_and_approval_tools(stack):
    tools = as_user(stack, SUPPORT_USER, lambda c: c.list_tools()).tools
    by_name = {tool.name: tool for tool in tools}
    agents = http("GET", stack.url("/api/agents")).json["agents"]
    assert {a["name"] for a in agents} | {"get_run", "list_approvals", "decide_approval"} == set(by_name)
    support = by_name["support"]
    assert support.description.startswith(next(a["description"] for a in agents if a["name"] == "support"))
    schema = support.input_schema
    assert schema["type"] == "object" and schema["required"] == ["input"]
    assert {k: v["type"] for k, v in schema["properties"].items()} == {
        "input": "string", "customer": "string", "runId": "string", "wait": "number"}
    assert by_name["decide_approval"].input_schema["required"] == ["runId", "approvalId", "approved"]
    print(json.dumps([{"name": t.name, "description": t.description, "inputSchema": t.input_schema}
                      for t in tools], indent=1))


def test_a_small_refund_completes_within_the_call(stack):
    result = as_user(stack, SUPPORT_USER, lambda c: c.call_tool("support", {
        "input": "Refund ORD-1006 please, it arrived broken. [mcp-small]", "customer": "sam.whitaker@example.org"}))
    assert result.is_error is False, result
    assert text(result) == "Refunded 25.00 USD for ORD-1006."
    run = structured(result)
    assert run["status"] == "completed" and run["agent"] == "support" and run["customer"] == "sam.whitaker@example.org"
    assert run["startedBy"]["name"] == SUPPORT_USER  # the MCP caller is the run's starter
    assert len(stack.refunds("ORD-1006")) == 1


def test_a_large_refund_waits_for_approval_decided_through_mcp(stack):
    first = as_user(stack, SUPPORT_USER, lambda c: c.call_tool("support", {
        "input": "Refund ORD-1001, it arrived broken. [mcp-large]", "customer": "jordan.rivera@example.com",
        "wait": 30}))
    assert first.is_error is False, first
    run = structured(first)
    assert run["status"] == "awaiting_approval", run
    [pending] = run["pendingApprovals"]
    assert pending["tool"] == "refund_order" and pending["arguments"]["amount"] == 291.5
    assert f"Run {run['id']} is waiting for a person to approve" in text(first)
    assert pending["id"] in text(first) and "decide_approval" in text(first)

    # the starter may not decide; the list shows it as not theirs to decide
    own = as_user(stack, SUPPORT_USER, lambda c: c.call_tool("decide_approval", {
        "runId": run["id"], "approvalId": pending["id"], "approved": True}))
    assert own.is_error is True and structured(own)["status"] == 403, own

    async def review(client: Any) -> tuple[Any, Any, Any]:
        listed = await client.call_tool("list_approvals", {"agent": "support"})
        decided = await client.call_tool("decide_approval", {
            "runId": run["id"], "approvalId": pending["id"], "approved": True, "comment": "Photos confirm it.",
            "argumentsHash": pending["argumentsHash"]})
        finished = await client.call_tool("get_run", {"runId": run["id"], "wait": 60})
        return listed, decided, finished

    listed, decided, finished = as_user(stack, REVIEWER, review)
    items = structured(listed)["approvals"]
    assert [(i["runId"], i["id"]) for i in items if i["runId"] == run["id"]] == [(run["id"], pending["id"])]
    assert decided.is_error is False and structured(decided)["decision"] == "approved", decided
    assert REVIEWER in text(decided)
    assert finished.is_error is False and text(finished) == "Refunded 291.50 USD for ORD-1001.", finished
    done = structured(finished)
    assert done["status"] == "completed" and done["approvals"][0]["decidedBy"]["name"] == REVIEWER
    assert len(stack.refunds("ORD-1001")) == 1


def test_bad_arguments_are_mcp_errors_not_host_errors(stack):
    async def mistakes(client: Any) -> list[Any]:
        answers: list[Any] = []
        for name, arguments in (("support", {}), ("no_such_tool", {"input": "x"})):
            try:
                await client.call_tool(name, arguments)
            except MCPError as exc:
                answers.append(exc)
            else:
                answers.append(None)
        answers.append(await client.call_tool("support", {"input": 5}))
        answers.append(await client.call_tool("support", {"input": "hi", "runId": "bad id!"}))
        answers.append(await client.call_tool("support", {"input": "hi", "wait": 1000}))
        answers.append(await client.call_tool("get_run", {"runId": "0123456789abcdef"}))
        answers.append(await client.call_tool("decide_approval", {"runId": "r", "approvalId": "a",
                                                                  "approved": "yes"}))
        return answers

    missing, unknown, typed, bad_id, too_long, not_found, not_bool = as_user(stack, SUPPORT_USER, mistakes)
    assert isinstance(missing, MCPError) and missing.error.code == -32602 and "input" in missing.error.message
    assert isinstance(unknown, MCPError) and unknown.error.code == -32602
    assert typed.is_error is True and structured(typed)["status"] == 400 and "input" in text(typed), typed
    assert bad_id.is_error is True and structured(bad_id)["type"].endswith(":invalid-run-id"), bad_id
    assert too_long.is_error is True and "'wait' must be a number" in text(too_long)
    assert not_found.is_error is True and structured(not_found)["status"] == 404
    assert not_bool.is_error is True and "'approved' must be true or false" in text(not_bool)


def test_a_host_killed_during_a_call_leaves_the_run_reachable_by_its_id(stack, tmp_path: Path):
    run_id = "mcp-kill-0001"

    async def call(client: Any) -> Any:
        return await client.call_tool("support", {"input": "Refund ORD-1005, it came late. [mcp-kill]",
                                                  "customer": "priya.natarajan@example.com", "runId": run_id,
                                                  "wait": 60})

    async def call_and_kill() -> BaseException | None:
        task = asyncio.create_task(_session(stack, SUPPORT_USER, call))
        deadline = time.monotonic() + 30
        while not stack.refunds("ORD-1005"):  # the refund is done; the slow model call after it runs
            assert time.monotonic() < deadline, "the run never reached its refund"
            await asyncio.sleep(0.1)
        stack.runtime.kill()
        try:
            await task
        except BaseException as exc:  # noqa: BLE001 - the call dies with the host
            return exc
        return None

    failure = asyncio.run(call_and_kill())
    assert failure is not None, "the call should not have answered: the host was killed during it"
    stack.runtime.start()
    again = as_user(stack, SUPPORT_USER, lambda c: c.call_tool("support", {
        "input": "Refund ORD-1005, it came late. [mcp-kill]", "customer": "priya.natarajan@example.com",
        "runId": run_id, "wait": 60}))  # the same call again: the same run, not a second one
    assert again.is_error is False and text(again) == "Refunded 27.50 USD for ORD-1005.", again
    assert structured(again)["id"] == run_id
    by_id = as_user(stack, SUPPORT_USER, lambda c: c.call_tool("get_run", {"runId": run_id}))
    assert structured(by_id)["status"] == "completed"
    assert len(stack.refunds("ORD-1005")) == 1  # not paid twice
