"""The app as a remote MCP server: every agent and workflow is an MCP tool (internal; on with the HTTP API,
``App(mcp_tools=...)``; README "MCP clients", contract of the host side: docs/mcp-extension-protocol.md).

Each tool is a function with the Functions MCP extension's tool trigger (``FunctionApp.mcp_tool_trigger``, binding
``mcpToolTrigger`` with ``useResultSchema: true``) and a Durable client input. The trigger hands the function the
JSON text of ``{"name", "arguments", "sessionid"?, "transport": {"properties": {"headers": {...}}}}``
(docs/mcp-extension-protocol.md §5.2); the function answers an envelope ``{"type": "call_tool_result",
"content": "<CallToolResult JSON>"}`` (§5.3, §5.4), so the client gets ``isError`` and ``structuredContent`` as
built here. The same functions run in Azure (the extension) and on the local runtime (``local_runtime/mcp_webhook.py``).

Every tool calls the HTTP API's own handler (:mod:`durable_agents._http.handlers`) with a request built from the
MCP request's headers, so the caller (App Service authentication's principal headers in Azure; the local runtime
emulates them from ``X-Dev-User``), the roles of issue 6, the validation and the problems are those of the REST
API: a problem becomes ``isError: true`` with its ``detail`` as text and the problem as ``structuredContent``.

Tools (:data:`UTILITY_TOOLS` beside one per registered agent / workflow):

* ``<agent>`` ``{"input": str, "customer"?: str, "runId"?: str, "wait"?: number}``: starts a durable run
  (``POST agents/{agent}/runs``) and waits up to ``wait`` seconds (default :data:`DEFAULT_WAIT_SECONDS`, at most
  :data:`MAX_WAIT_SECONDS`) for its output. The answer's text is the output when the run completed; otherwise it
  says that the run waits for approval (with each approval's id, summary and expiry) or is still running, with the
  run id. A ``runId`` of the caller's choosing makes the call safe to repeat: a second call with the same ``runId``
  for the same agent waits for the existing run instead of starting one (the id reaches the host before any work,
  so a host that dies during the call leaves the run reachable by that id).
* ``get_run`` ``{"runId": str, "wait"?: number}``: the run (``GET runs/{runId}``), waiting like above when ``wait``
  is given.
* ``list_approvals`` ``{"agent"?: str, "state"?: "pending" | "decided" | "all", "top"?: int}``: ``GET approvals``.
* ``decide_approval`` ``{"runId": str, "approvalId": str, "approved": bool, "comment"?: str,
  "argumentsHash"?: str}``: ``POST runs/{runId}/approvals/{approvalId}`` (approvers only, as in the REST API).

``structuredContent`` is the REST API's JSON (the run, the approvals page or the decision). MCP tasks are not
offered: neither the Functions MCP extension nor the official Python client supports them
(docs/mcp-extension-protocol.md §8); a run that waits for a person answers with its id and the pending approvals,
and ``get_run`` / ``decide_approval`` continue from there.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient

from ._http import handlers
from ._http.handlers import HttpApi
from ._http.inbox import list_approvals
from ._jsonsafe import dumps
from ._registry import RegisteredAgent

__all__ = [
    "DEFAULT_WAIT_SECONDS",
    "MAX_WAIT_SECONDS",
    "UTILITY_TOOLS",
    "agent_tool_properties",
    "call_tool_result",
    "check_tool_name",
    "register_agent_tool",
    "register_utility_tools",
]

logger = logging.getLogger("durable_agents.mcp_tools")

DEFAULT_WAIT_SECONDS = 20.0
"""How long an agent's tool waits for the run's output by default (seconds)."""

MAX_WAIT_SECONDS = 120.0
"""Longest ``wait`` a tool accepts (seconds): under the Functions host's HTTP limit of 230 s for the webhook."""

POLL_SECONDS = 0.25
"""Interval between two reads of the run while a tool waits (seconds)."""

UTILITY_TOOLS = ("get_run", "list_approvals", "decide_approval")
"""The tools beside the agents' (no agent may take one of these names, case-insensitively)."""

_WAITING = ("completed", "failed", "cancelled", "awaiting_approval")


def _property(name: str, type_: str, description: str, required: bool = False) -> dict[str, Any]:
    return {"propertyName": name, "propertyType": type_, "description": description, "isArray": False,
            "isRequired": required}


def _wait_property(default: float) -> dict[str, Any]:
    return _property("wait", "number", f"Seconds to wait for the run to finish or to need a person (0 to "
                     f"{MAX_WAIT_SECONDS:g}; default {default:g}).")


def agent_tool_properties(entry: RegisteredAgent) -> list[dict[str, Any]]:
    """The ``toolProperties`` of an agent's / workflow's tool (docs/mcp-extension-protocol.md §4.2 shape)."""
    what = "workflow" if entry.kind == "workflow" else "agent"
    return [
        _property("input", "string", f"What to ask the {what}: the user's message.", required=True),
        _property("customer", "string", "Whom the run acts for (an email address); support staff only may name "
                  "someone else. Leave it out to act for yourself."),
        _property("runId", "string", "Your own id for the run (1-100 of A-Z a-z 0-9 _ -). Calling again with the "
                  "same runId waits for that run instead of starting another."),
        _wait_property(DEFAULT_WAIT_SECONDS),
    ]


# -- results --------------------------------------------------------------------------------------------------


def call_tool_result(text: str, structured: Any = None, *, error: bool = False) -> str:
    """The envelope the tool function returns (docs/mcp-extension-protocol.md §5.3, ``call_tool_result``): a
    ``CallToolResult`` (``mcp.types``) with one text block ``text``, ``structuredContent`` (a JSON object; other
    values are wrapped as ``{"value": ...}``) and ``isError``."""
    from mcp.types import CallToolResult, TextContent

    content: dict[str, Any] | None
    if structured is None:
        content = None
    elif isinstance(structured, Mapping):
        content = dict(structured)
    else:
        content = {"value": structured}
    result = CallToolResult(content=[TextContent(type="text", text=text)], structured_content=content,
                            is_error=error)
    # resultType is a 2026-07-28 member; the extension's SDK (protocol 2025-06-18) has no use for it
    body = result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"result_type"})
    return dumps({"type": "call_tool_result", "content": dumps(body)})


def _problem_result(status: int, body: Any) -> str:
    detail = body.get("detail") if isinstance(body, Mapping) else None
    title = body.get("title") if isinstance(body, Mapping) else None
    text = str(detail or title or f"HTTP {status}")
    return call_tool_result(text, body if isinstance(body, Mapping) else {"status": status}, error=True)


class _ToolError(Exception):
    """A caller's mistake in the tool's arguments: answered as ``isError`` with this message."""


# -- the request the handlers see -----------------------------------------------------------------------------


def _payload(context: Any) -> dict[str, Any]:
    value = json.loads(context) if isinstance(context, str | bytes) else context
    if not isinstance(value, Mapping):
        raise _ToolError("the MCP host sent no tool call context")
    return dict(value)


def _headers(payload: Mapping[str, Any]) -> dict[str, str]:
    """The MCP request's headers (with App Service authentication's principal headers), for the API's handlers;
    without the body's own framing headers."""
    def member(value: Any, name: str) -> Mapping[str, Any]:
        found = value.get(name) if isinstance(value, Mapping) else None
        return found if isinstance(found, Mapping) else {}

    raw = member(member(member(payload, "transport"), "properties"), "headers")
    skip = {"content-type", "content-length", "transfer-encoding", "accept", "content-encoding"}
    headers = {str(k): str(v) for k, v in raw.items() if str(k).lower() not in skip}
    headers["Content-Type"] = "application/json"
    headers["Accept"] = "application/json"
    return headers


def _request(api: HttpApi, headers: dict[str, str], method: str, path: str, *, body: Any = None,
             route_params: dict[str, str] | None = None, params: dict[str, str] | None = None) -> func.HttpRequest:
    return func.HttpRequest(method=method, url=f"http://localhost{api.route_prefix}/{path}", headers=headers,
                            params=params or {}, route_params=route_params or {},
                            body=b"" if body is None else dumps(body).encode("utf-8"))


async def _call(handler: handlers.Handler, api: HttpApi, client: DurableOrchestrationClient,
                req: func.HttpRequest) -> tuple[int, Any]:
    response = await handlers.respond(handler, api, req, client)
    raw = response.get_body()
    try:
        return response.status_code, json.loads(raw) if raw else None
    except ValueError:
        return response.status_code, None


def _arguments(payload: Mapping[str, Any]) -> dict[str, Any]:
    arguments = payload.get("arguments")
    if arguments is None:
        return {}
    if not isinstance(arguments, Mapping):
        raise _ToolError("the tool's arguments must be a JSON object")
    return dict(arguments)


def _string(arguments: Mapping[str, Any], name: str, *, required: bool = False) -> str | None:
    value = arguments.get(name)
    if value is None:
        if required:
            raise _ToolError(f"'{name}' is required")
        return None
    if not isinstance(value, str):
        raise _ToolError(f"'{name}' must be a string, not {type(value).__name__}")
    return value


def _wait(arguments: Mapping[str, Any], default: float) -> float:
    value = arguments.get("wait")
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_WAIT_SECONDS:
        raise _ToolError(f"'wait' must be a number of seconds from 0 to {MAX_WAIT_SECONDS:g}")
    return float(value)


# -- what a run's answer says -----------------------------------------------------------------------------------


def _output_text(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)


def _run_text(run: Mapping[str, Any]) -> str:
    """One paragraph a model or a person reads: the output, or why there is none yet."""
    run_id, status = run.get("id"), run.get("status")
    if status == "completed":
        return _output_text(run.get("output"))
    if status == "awaiting_approval":
        lines = [f"Run {run_id} is waiting for a person to approve:"]
        for item in run.get("pendingApprovals") or []:
            lines.append(f"- approval {item.get('id')} ({item.get('kind', 'tool')} {item.get('tool')}): "
                         f"{item.get('summary') or json.dumps(item.get('arguments'), ensure_ascii=False)}; "
                         f"requested {item.get('requestedAt')}, expires {item.get('expiresAt')}")
        lines.append("An approver decides with decide_approval (runId, approvalId, approved, comment) or in the "
                     "inbox; then get_run with wait gives the output.")
        return "\n".join(lines)
    if status == "failed":
        return f"Run {run_id} failed: {run.get('error')}"
    if status == "cancelled":
        return f"Run {run_id} was cancelled."
    return f"Run {run_id} is {status}; call get_run with runId {run_id!r} (and wait) for its output."


async def _wait_for_run(api: HttpApi, client: DurableOrchestrationClient, headers: dict[str, str], run_id: str,
                        seconds: float) -> tuple[int, Any]:
    deadline = time.monotonic() + seconds
    while True:
        status, body = await _call(handlers.get_run, api, client,
                                   _request(api, headers, "GET", f"runs/{run_id}", route_params={"runId": run_id}))
        if status != 200 or not isinstance(body, Mapping) or body.get("status") in _WAITING:
            return status, body
        if time.monotonic() >= deadline:
            return status, body
        await asyncio.sleep(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))


def _run_result(status: int, body: Any) -> str:
    if status != 200 or not isinstance(body, Mapping):
        return _problem_result(status, body)
    return call_tool_result(_run_text(body), body, error=body.get("status") == "failed")


# -- the tools --------------------------------------------------------------------------------------------------


async def _agent_call(api: HttpApi, entry: RegisteredAgent, client: DurableOrchestrationClient,
                      payload: dict[str, Any]) -> str:
    arguments = _arguments(payload)
    headers = _headers(payload)
    wait = _wait(arguments, DEFAULT_WAIT_SECONDS)
    body = {key: arguments[key] for key in ("input", "customer", "runId") if arguments.get(key) is not None}
    unknown = sorted(set(arguments) - {"input", "customer", "runId", "wait"})
    if unknown:
        raise _ToolError(f"unknown argument(s): {', '.join(unknown)}; this tool takes input, customer, runId, wait")
    req = _request(api, headers, "POST", f"agents/{entry.name}/runs", body=body, route_params={"agent": entry.name})
    status, started = await _call(handlers.start_run, api, client, req)
    run_id = started.get("id") if status == 202 and isinstance(started, Mapping) else None
    if status == 409 and isinstance(started, Mapping) and started.get("type", "").endswith(":run-id-in-use"):
        run_id = str(body["runId"])  # a repeated call: the same run, if it is this agent's and the caller's
        seen, run = await _call(handlers.get_run, api, client,
                                _request(api, headers, "GET", f"runs/{run_id}", route_params={"runId": run_id}))
        if seen != 200 or not isinstance(run, Mapping):
            return _problem_result(status, started)
        if run.get("agent") != entry.name:
            return _problem_result(status, started)
    elif run_id is None:
        return _problem_result(status, started)
    return _run_result(*await _wait_for_run(api, client, headers, str(run_id), wait))


async def _get_run(api: HttpApi, client: DurableOrchestrationClient, payload: dict[str, Any]) -> str:
    arguments = _arguments(payload)
    run_id = _string(arguments, "runId", required=True)
    assert run_id is not None
    return _run_result(*await _wait_for_run(api, client, _headers(payload), run_id, _wait(arguments, 0.0)))


async def _list_approvals(api: HttpApi, client: DurableOrchestrationClient, payload: dict[str, Any]) -> str:
    arguments = _arguments(payload)
    params = {"state": _string(arguments, "state") or "pending"}
    agent = _string(arguments, "agent")
    if agent:
        params["agent"] = agent
    top = arguments.get("top")
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int):
            raise _ToolError("'top' must be an integer from 1 to 100")
        params["top"] = str(top)
    status, body = await _call(list_approvals, api, client,
                               _request(api, _headers(payload), "GET", "approvals", params=params))
    if status != 200 or not isinstance(body, Mapping):
        return _problem_result(status, body)
    items = body.get("approvals") or []
    lines = [f"{len(items)} {params['state']} approval(s)" + (":" if items else ".")]
    for item in items:
        lines.append(f"- run {item.get('runId')} approval {item.get('id')} ({item.get('agent')}, "
                     f"{item.get('tool')}): {item.get('summary')}; state {item.get('state')}"
                     + (f", expires {item.get('expiresAt')}" if item.get("state") == "pending" else "")
                     + ("" if item.get("mayDecide") is not False else " (you may not decide it)"))
    return call_tool_result("\n".join(lines), body)


async def _decide(api: HttpApi, client: DurableOrchestrationClient, payload: dict[str, Any]) -> str:
    arguments = _arguments(payload)
    run_id = _string(arguments, "runId", required=True)
    approval_id = _string(arguments, "approvalId", required=True)
    approved = arguments.get("approved")
    if not isinstance(approved, bool):
        raise _ToolError("'approved' must be true or false")
    body: dict[str, Any] = {"approved": approved}
    for key in ("comment", "argumentsHash"):
        value = _string(arguments, key)
        if value is not None:
            body[key] = value
    req = _request(api, _headers(payload), "POST", f"runs/{run_id}/approvals/{approval_id}", body=body,
                   route_params={"runId": str(run_id), "approvalId": str(approval_id)})
    status, answer = await _call(handlers.decide_approval, api, client, req)
    if status not in (200, 202) or not isinstance(answer, Mapping):
        return _problem_result(status, answer)
    who = answer.get("decidedBy") or {}
    text = (f"{str(answer.get('decision')).capitalize()} approval {approval_id} of run {run_id}"
            f" as {who.get('name') or who.get('id')}; the run is {answer.get('status')}. "
            "get_run with wait gives its output.")
    return call_tool_result(text, answer)


def _guarded(name: str, body: Callable[[dict[str, Any]], Awaitable[str]]
             ) -> Callable[[str], Awaitable[str]]:
    async def run(context: str) -> str:
        try:
            payload = _payload(context)
        except (ValueError, _ToolError) as exc:  # not the caller's input: the host sent no readable context
            logger.error("MCP tool %s: unreadable tool call context: %s", name, type(exc).__name__)
            return call_tool_result(f"The tool call context of {name} could not be read.", None, error=True)
        try:
            return await body(payload)
        except _ToolError as exc:
            return call_tool_result(f"Bad arguments for {name}: {exc}.", {"error": str(exc)}, error=True)
    return run


def _register(app: Any, function_name: str, tool_name: str, description: str, properties: list[dict[str, Any]],
              body: Callable[[DurableOrchestrationClient, dict[str, Any]], Awaitable[str]]) -> None:
    async def tool(context: str, client: DurableOrchestrationClient) -> str:
        return await _guarded(tool_name, lambda payload: body(client, payload))(context)

    tool.__name__ = function_name
    tool.__qualname__ = function_name
    tool.__doc__ = f"MCP tool {tool_name!r}: {description}"
    decorated = app.durable_client_input(client_name="client")(tool)
    decorated = app.mcp_tool_trigger(arg_name="context", tool_name=tool_name, description=description,
                                     tool_properties=json.dumps(properties), use_result_schema=True)(decorated)
    app.function_name(function_name)(decorated)


def check_tool_name(name: str) -> None:
    """Raise ``ValueError`` when an agent named ``name`` would clash with one of :data:`UTILITY_TOOLS` (tool names
    are unique case-insensitively, docs/mcp-extension-protocol.md §4.4)."""
    if name.lower() in UTILITY_TOOLS:
        raise ValueError(f"an agent may not be named {name!r}: the app's MCP server has a tool of that name "
                         "(App(mcp_tools=False) turns the MCP tools off)")


def register_agent_tool(app: Any, api: HttpApi, entry: RegisteredAgent) -> None:
    """Register the MCP tool of agent / workflow ``entry`` on ``app`` (a ``df.DFApp``): function
    ``mcp_agent_<name>``, tool ``<name>``, the entry's description. Raises ``ValueError`` as
    :func:`check_tool_name`."""
    check_tool_name(entry.name)
    description = (entry.description or entry.name) + (
        " Starts a durable run and answers with its output, or with the run id and what it waits for.")
    _register(app, f"mcp_agent_{entry.name}", entry.name, description, agent_tool_properties(entry),
              lambda client, payload: _agent_call(api, entry, client, payload))


def register_utility_tools(app: Any, api: HttpApi) -> None:
    """Register ``get_run``, ``list_approvals`` and ``decide_approval`` (module docstring) on ``app``."""
    _register(app, "mcp_get_run", "get_run", "A durable run: status, output, pending and decided approvals. "
              "With wait, waits until it finishes or needs a person.",
              [_property("runId", "string", "The run's id.", required=True), _wait_property(0.0)],
              lambda client, payload: _get_run(api, client, payload))
    _register(app, "mcp_list_approvals", "list_approvals", "Approvals waiting for a person (or decided ones) "
              "across the runs you may see, newest first.",
              [_property("agent", "string", "Only this agent's or workflow's runs."),
               _property("state", "string", "pending (default), decided or all."),
               _property("top", "integer", "At most this many (1-100; default 50).")],
              lambda client, payload: _list_approvals(api, client, payload))
    _register(app, "mcp_decide_approval", "decide_approval", "Approve or reject a pending approval of a run "
              "(approvers only; never on a run you started or that acts for you).",
              [_property("runId", "string", "The run's id.", required=True),
               _property("approvalId", "string", "The approval's id (pendingApprovals[].id).", required=True),
               _property("approved", "boolean", "true to approve, false to reject.", required=True),
               _property("comment", "string", "Why (shown to the run and kept in the audit)."),
               _property("argumentsHash", "string", "The pending approval's argumentsHash: the decision then "
                         "applies only to those exact arguments.")],
              lambda client, payload: _decide(api, client, payload))
