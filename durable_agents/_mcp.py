"""MCP servers of agents inside durable runs (internal): see :func:`install_mcp_seam`.

An agent's ``mcp_servers`` (``agents.mcp.MCPServerStreamableHttp``, ``MCPServerSse``, ``MCPServerStdio``) talk to
their server from the process that calls them. Inside a durable run that would be the orchestrator: again on every
replay, with no retry and no checkpoint. The seam moves the server's I/O into two activities:

* :data:`LIST_TOOLS_ACTIVITY` ``durable_agents_mcp_list_tools``: input ``{"server": McpServerSpec}``, output
  ``{"tools": [<MCP Tool JSON>, ...]}`` (the server's whole listing, camelCase as on the wire). A run lists each
  server once (servers are the same when their specs are): later ``list_tools`` calls of the run (the SDK asks at
  every turn and after every approval) reuse the first answer, which a replay reads from the history.
* :data:`CALL_TOOL_ACTIVITY` ``durable_agents_mcp_call_tool``: input ``{"server": McpServerSpec, "tool": "<MCP tool
  name>", "arguments": {...}, "meta": {...} | null, "definition": <the tool's MCP Tool JSON from the run's listing>
  | null}``, output ``{"ok": true, "result": <MCP CallToolResult JSON>}``,
  or ``{"ok": false, "error": {"type": "MCPError", "code": <int>, "message"}}`` when the server answered the request
  with a JSON-RPC error (not retried: it is an answer). Connection, transport and timeout failures raise, so
  Durable retries the activity (:data:`MCP_RETRY`, or the server object's ``durable_retry`` attribute when it is a
  ``durable_agents.ToolRetry``).

``McpServerSpec`` (:func:`server_spec`) is everything the activity worker needs to rebuild the server:
``{"kind": "streamable_http" | "sse" | "stdio", "name", "params", "cacheToolsList", "clientSessionTimeoutSeconds",
"maxRetryAttempts", "retryBackoffSecondsBase", "retryBackoffSecondsMax", "maxListPages"}``; ``params`` are the
server's params as JSON (``url``, ``headers``, ``timeout`` / ``sse_read_timeout`` in seconds, ``terminate_on_close``;
``command``, ``args``, ``env``, ``cwd``, ``encoding``, ``encoding_error_handler`` for stdio). The spec is in the
run's history, so ``%NAME%`` in a header or an environment value is replaced by the app setting ``NAME`` in the
activity worker (the Functions convention for app settings) and secrets stay out of the history; a credential-looking
header or env entry with a literal value is refused (:func:`server_spec`).

Connections live only in the activity worker: each activity connects, does its one request and cleans up (no pool:
a retried activity never reuses a broken connection, a stdio server process lives only as long as its call, and an
MCP client session, an anyio task group, is bound to the task that opened it, while activities of one process run
on different threads and loops). A server that keeps state in its MCP session (``Mcp-Session-Id``) therefore sees
every call in a new session.

Everything around the I/O stays the SDK's and runs in the orchestrator, deterministically: converting the listing to
function tools, the tool filter (static or callable: applied to the recorded listing), ``require_approval``
(becomes the SDK's ``needs_approval``, so the run waits on a durable approval like any gated tool),
``tool_meta_resolver``, ``failure_error_function``, guardrails, ``use_structured_content``. A call that fails after
its retries, or that the server answers with an error, raises ``UserError`` from ``call_tool``; the SDK turns it
into the tool error the model reads (the agent's ``failure_error_function``), and the run goes on. A tool result
with ``isError: true`` is a normal result: the model reads its content.

Only runs of version 2 (:data:`durable_agents._contracts.RUN_VERSION`) use the activities; older runs keep the SDK's
behaviour, so their histories still replay. Outside a durable run nothing changes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import re
import threading
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import azure.durable_functions as df
from agents.exceptions import UserError
from agents.mcp import MCPServer, MCPServerSse, MCPServerStdio, MCPServerStreamableHttp, MCPUtil
from agents.mcp import _compat as mcp_compat  # the SDK's own MCP v1 / v2 shim (openai-agents 0.24)
from mcp import types as mcp_types

from ._config import SETTING_REFERENCE, expand_setting_references
from ._contracts import ToolRetry
from ._jsonsafe import has_non_finite, json_safe
from ._run_settings import current_session

__all__ = [
    "CALL_TOOL_ACTIVITY",
    "LIST_TOOLS_ACTIVITY",
    "MCP_RETRY",
    "McpServerSpec",
    "build_server",
    "call_tool_activity",
    "install_mcp_seam",
    "list_tools_activity",
    "register_mcp_activities",
    "server_spec",
]

LIST_TOOLS_ACTIVITY = "durable_agents_mcp_list_tools"
"""Durable name of the activity that lists an MCP server's tools."""
CALL_TOOL_ACTIVITY = "durable_agents_mcp_call_tool"
"""Durable name of the activity that calls one MCP tool."""
MCP_RETRY = ToolRetry()
"""Retry options of both activities unless the server object has a ``durable_retry`` (3 attempts, 2 s apart)."""

McpServerSpec = dict[str, Any]
"""The JSON spec of a server (module docstring)."""

_KINDS: dict[type[MCPServer], str] = {
    MCPServerStreamableHttp: "streamable_http",
    MCPServerSse: "sse",
    MCPServerStdio: "stdio",
}
_HTTP_KEYS = {
    "streamable_http": ("url", "headers", "timeout", "sse_read_timeout", "terminate_on_close"),
    "sse": ("url", "headers", "timeout", "sse_read_timeout"),
}
_WORKER_FLAG = "_durable_agents_worker"  # set on servers rebuilt in the activity worker: the seam lets them be
_SEAM_FLAG = "_durable_agents_mcp_seam"


# ---------------------------------------------------------------------------------------------------------------
# The spec: what the activity worker rebuilds a server from


def _refuse(server: Any, why: str) -> UserError:
    name = getattr(server, "name", None) or type(server).__name__
    return UserError(
        f"MCP server {name!r} cannot be used in a durable run: {why}. Its tool listing and tool calls run as "
        "activities, which rebuild the server from JSON: use MCPServerStreamableHttp, MCPServerSse or "
        "MCPServerStdio with JSON params (docs: README 'What works', MCP servers)."
    )


def _seconds(value: Any, server: Any, key: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _refuse(server, f"params[{key!r}] must be a number of seconds or a timedelta")


def _string_map(value: Any, server: Any, key: str) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise _refuse(server, f"params[{key!r}] must map strings to strings")
    return dict(value)


_SECRET_NAME = re.compile(r"authorization|cookie|key|token|secret|password|credential", re.IGNORECASE)


def _no_literal_secrets(values: dict[str, str] | None, server: Any, key: str) -> None:
    """Refuse a credential-looking header / env entry whose value holds no ``%NAME%`` app-setting reference: the
    spec is stored in the run's history."""
    for name, value in (values or {}).items():
        if _SECRET_NAME.search(name) and not SETTING_REFERENCE.search(value):
            raise _refuse(server, f"params[{key!r}][{name!r}] looks like a credential and is a literal value; "
                                  f"write it as an app-setting reference such as \"%MCP_{key.upper()}_SECRET%\" "
                                  "(resolved in the activity worker, never stored in the run's history)")


def server_spec(server: MCPServer) -> McpServerSpec:
    """The JSON spec of ``server`` (module docstring).

    Raises ``agents.exceptions.UserError`` for what JSON cannot carry: a server class other than the SDK's three
    (custom subclasses included: their code would not run in the worker), a ``message_handler``, params with
    ``auth`` / ``httpx_client_factory`` / ``ignore_initialized_notification_failure``, non-string headers / env,
    and a header or env entry whose name looks like a credential (``Authorization``, ``Cookie``, ``*key*``,
    ``*token*``, ``*secret*``, ``*password*``, ``*credential*``) with a literal value instead of a ``%NAME%``
    reference.
    """
    kind = _KINDS.get(type(server))
    if kind is None:
        raise _refuse(server, f"its class {type(server).__qualname__} is not one the worker can rebuild")
    with_session = cast(Any, server)
    if with_session.message_handler is not None:
        raise _refuse(server, "message_handler is a callable")
    params: dict[str, Any]
    if kind == "stdio":
        stdio = with_session.params  # mcp StdioServerParameters
        cwd = stdio.cwd
        params = {"command": stdio.command, "args": list(stdio.args or []),
                  "env": _string_map(stdio.env, server, "env"),
                  "cwd": str(cwd) if isinstance(cwd, str | Path) else None,
                  "encoding": stdio.encoding, "encoding_error_handler": stdio.encoding_error_handler}
    else:
        raw: Mapping[str, Any] = with_session.params
        extra = sorted(set(raw) - set(_HTTP_KEYS[kind]))
        if extra:
            raise _refuse(server, f"params {extra} cannot be rebuilt from JSON")
        params = {"url": str(raw["url"])}
        if "headers" in raw:
            params["headers"] = _string_map(raw["headers"], server, "headers")
        for key in ("timeout", "sse_read_timeout"):
            if key in raw:
                params[key] = _seconds(raw[key], server, key)
        if "terminate_on_close" in raw:
            params["terminate_on_close"] = bool(raw["terminate_on_close"])
    spec: McpServerSpec = {
        "kind": kind,
        "name": server.name,
        "params": params,
        "cacheToolsList": bool(with_session.cache_tools_list),
        "clientSessionTimeoutSeconds": _seconds(with_session.client_session_timeout_seconds, server,
                                                "client_session_timeout_seconds"),
        "maxRetryAttempts": int(with_session.max_retry_attempts),
        "retryBackoffSecondsBase": float(with_session.retry_backoff_seconds_base),
        "retryBackoffSecondsMax": (None if with_session.retry_backoff_seconds_max is None
                                   else float(with_session.retry_backoff_seconds_max)),
        "maxListPages": with_session.max_list_pages,
    }
    _no_literal_secrets(params.get("headers"), server, "headers")
    _no_literal_secrets(params.get("env"), server, "env")
    try:
        json.dumps(spec, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise _refuse(server, f"its settings are not JSON ({exc})") from exc
    return spec


def _resolve_settings(value: str) -> str:
    """``value`` with every ``%NAME%`` replaced by the app setting ``NAME``. Raises ``ValueError`` for a setting that
    is not set (the activity fails with that message, naming the setting, never its value)."""
    return expand_setting_references(value, missing=lambda name: ValueError(
        f"the app setting {name} named in an MCP server's params is not set"))


def build_server(spec: Mapping[str, Any]) -> MCPServer:
    """Rebuild the server of ``spec`` (activity worker side; not connected). ``%NAME%`` in header and env values
    becomes the app setting ``NAME``. Raises ``ValueError`` for an unknown ``kind`` or a missing setting."""
    kind = spec.get("kind")
    params = dict(spec.get("params") or {})
    for key in ("headers", "env"):
        if isinstance(params.get(key), dict):
            params[key] = {k: _resolve_settings(v) for k, v in params[key].items()}
    common: dict[str, Any] = {
        "name": spec.get("name"),
        "cache_tools_list": bool(spec.get("cacheToolsList")),
        "client_session_timeout_seconds": spec.get("clientSessionTimeoutSeconds"),
        "max_retry_attempts": int(spec.get("maxRetryAttempts") or 0),
        "retry_backoff_seconds_base": float(spec.get("retryBackoffSecondsBase") or 1.0),
        "retry_backoff_seconds_max": spec.get("retryBackoffSecondsMax"),
        "max_list_pages": spec.get("maxListPages"),
    }
    server: MCPServer
    if kind == "stdio":
        params = {k: v for k, v in params.items() if v is not None}
        server = MCPServerStdio(params=cast(Any, params), **common)
    elif kind == "sse":
        server = MCPServerSse(params=cast(Any, params), **common)
    elif kind == "streamable_http":
        server = MCPServerStreamableHttp(params=cast(Any, params), **common)
    else:
        raise ValueError(f"unknown MCP server kind {kind!r}")
    setattr(server, _WORKER_FLAG, True)
    return server


# ---------------------------------------------------------------------------------------------------------------
# The activities (worker side)


def _payload(payload: Any) -> dict[str, Any]:
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("server"), dict):
        raise TypeError("an MCP activity expects a JSON object with 'server' (the server's spec)")
    return payload


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def list_tools_activity(payload: Any) -> dict[str, Any]:
    """The body of :data:`LIST_TOOLS_ACTIVITY`: connect, list every tool (the server's own pagination), clean up.
    Returns ``{"tools": [...]}``; raises what connecting or listing raises (Durable retries)."""
    server = build_server(_payload(payload)["server"])
    await server.connect()
    try:
        tools = await server.list_tools()
    finally:
        await server.cleanup()
    return {"tools": [_dump(tool) for tool in tools]}


async def call_tool_activity(payload: Any) -> dict[str, Any]:
    """The body of :data:`CALL_TOOL_ACTIVITY`: connect, call the tool once, clean up (module docstring for the
    output). A JSON-RPC error answer other than a timeout or a closed connection is returned as ``{"ok": false}``;
    everything else that fails raises (Durable retries)."""
    data = _payload(payload)
    tool = data.get("tool")
    if not isinstance(tool, str) or not tool:
        raise TypeError("the MCP call activity expects 'tool' (a tool name)")
    arguments = data.get("arguments")
    meta = data.get("meta")
    server = build_server(data["server"])
    await server.connect()
    try:
        _prime_client_session(server, data.get("definition"))
        try:
            if isinstance(meta, dict):
                result = await server.call_tool(tool, arguments if isinstance(arguments, dict) else {}, meta=meta)
            else:
                result = await server.call_tool(tool, arguments if isinstance(arguments, dict) else {})
        except mcp_compat.MCPError as exc:
            if mcp_compat.is_mcp_timeout_error(exc) or mcp_compat.is_mcp_connection_closed_error(exc):
                raise
            return {"ok": False, "error": {"type": "MCPError", "code": mcp_compat.mcp_error_code(exc),
                                           "message": mcp_compat.mcp_error_message(exc)}}
    finally:
        await server.cleanup()
    return {"ok": True, "result": _dump(result)}


def _prime_client_session(server: MCPServer, definition: Any) -> None:
    """Give the new MCP client session the tool's definition from the run's recorded listing, as if it had just
    listed the tools: the ``mcp`` client validates a result against the tool's output schema (and, on the
    2026-07-28 protocol, mirrors ``x-mcp-header`` arguments into headers) from its last listing, and lists the
    tools itself when it has none, one more ``tools/list`` per call. Uses the client's own listing intake
    (``ClientSession._absorb_tool_listing``, mcp 2.x; ``_tool_output_schemas``, mcp 1.x); when neither exists, or
    no definition was recorded, the client lists as it always does."""
    session = cast(Any, server).session
    if session is None or not isinstance(definition, dict):
        return
    tool = mcp_types.Tool.model_validate(definition)
    absorb = getattr(session, "_absorb_tool_listing", None)
    if callable(absorb):
        absorb(mcp_types.ListToolsResult(tools=[tool]), complete=False)
        return
    schemas = getattr(session, "_tool_output_schemas", None)
    if isinstance(schemas, dict):
        schemas[tool.name] = getattr(tool, "output_schema", getattr(tool, "outputSchema", None))


def register_mcp_activities(app: df.DFApp | df.Blueprint) -> None:
    """Register :data:`LIST_TOOLS_ACTIVITY` and :data:`CALL_TOOL_ACTIVITY` on ``app`` (``durable_agents.App`` does
    it)."""

    async def durable_agents_mcp_list_tools(payload: Any) -> dict[str, Any]:
        return await list_tools_activity(payload)

    async def durable_agents_mcp_call_tool(payload: Any) -> dict[str, Any]:
        return await call_tool_activity(payload)

    durable_agents_mcp_list_tools.__doc__ = "Durable activity: list the tools of an agent's MCP server."
    durable_agents_mcp_call_tool.__doc__ = "Durable activity: call one tool of an agent's MCP server."
    app.activity_trigger(input_name="payload", activity=LIST_TOOLS_ACTIVITY)(durable_agents_mcp_list_tools)
    app.activity_trigger(input_name="payload", activity=CALL_TOOL_ACTIVITY)(durable_agents_mcp_call_tool)


# ---------------------------------------------------------------------------------------------------------------
# The orchestrator side


def _durable_session(server: Any = None) -> Any | None:
    """The bound durable session when ``server``'s I/O must go through activities (version-2 runs), else ``None``
    (no run, an older run, or a server the activity worker rebuilt)."""
    if server is not None and getattr(server, _WORKER_FLAG, False):
        return None
    session = current_session()
    if session is None or getattr(session, "version", 1) < 2:
        return None
    return session


_listings: weakref.WeakKeyDictionary[Any, dict[str, Any]] = weakref.WeakKeyDictionary()
_listings_lock = threading.Lock()


def _run_listings(session: Any) -> dict[str, Any]:
    """The listings of ``session``'s run: spec key → its tools JSON, or the ``asyncio.Future`` of the listing in
    flight (concurrent agents of one run share one activity)."""
    with _listings_lock:
        found = _listings.get(session)
        if found is None:
            found = {}
            _listings[session] = found
        return found


def _retry(server: Any) -> ToolRetry:
    retry = getattr(server, "durable_retry", None)
    return retry if isinstance(retry, ToolRetry) else MCP_RETRY


async def _list_tools_durably(session: Any, server: Any, run_context: Any, agent: Any) -> list[Any]:
    from ._runner.steps import ActivityCall, CallOutcome

    spec = server_spec(server)
    key = json.dumps(spec, sort_keys=True)
    listings = _run_listings(session)
    entry = listings.get(key)
    if entry is None:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        listings[key] = future
        try:
            outcome: CallOutcome = await session.call(
                ActivityCall(name=LIST_TOOLS_ACTIVITY, input={"server": spec}, retry=_retry(server)))
        except BaseException as exc:
            del listings[key]
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody else waits
            raise
        if not outcome.ok or not isinstance(outcome.value, dict):
            del listings[key]
            error = UserError(f"Listing the tools of MCP server {server.name!r} failed after its retries: "
                              f"{outcome.error or outcome.value!r}")
            future.set_exception(error)
            future.exception()
            raise error
        entry = listings[key] = list(outcome.value.get("tools") or [])
        future.set_result(entry)
    elif isinstance(entry, asyncio.Future):
        entry = await entry
    tools = [mcp_types.Tool.model_validate(tool) for tool in entry]  # fresh objects: the SDK may change them
    return cast(list[Any], await server._apply_tool_filter(tools, run_context, agent))


async def _call_tool_durably(session: Any, server: Any, tool_name: str, arguments: dict[str, Any] | None,
                             meta: dict[str, Any] | None) -> Any:
    from ._runner.steps import ActivityCall, CallOutcome

    args = dict(arguments or {})
    if has_non_finite(args) or (meta is not None and has_non_finite(meta)):
        raise UserError(f"The call to MCP tool {tool_name!r} was not run: its arguments hold NaN or Infinity, "
                        "which are not JSON; send plain JSON numbers.")
    spec = server_spec(server)
    session.progress.last_tool = tool_name
    listed = _run_listings(session).get(json.dumps(spec, sort_keys=True))
    definition = next((t for t in listed if isinstance(t, dict) and t.get("name") == tool_name), None) \
        if isinstance(listed, list) else None
    activity_input = {"server": spec, "tool": tool_name, "arguments": json_safe(args),
                      "meta": json_safe(meta) if meta is not None else None, "definition": definition}
    retry = _retry(server)
    outcome: CallOutcome = await session.call(ActivityCall(name=CALL_TOOL_ACTIVITY, input=activity_input,
                                                           retry=retry))
    if not outcome.ok:
        raise UserError(f"MCP tool {tool_name!r} on server {server.name!r} failed after {retry.max_attempts} "
                        f"attempts: {outcome.error}")
    value = outcome.value if isinstance(outcome.value, dict) else {}
    if value.get("ok") is not True:
        error = value.get("error") or {}
        raise UserError(f"MCP tool {tool_name!r} on server {server.name!r} answered with an error: "
                        f"{error.get('message') or error}")
    return mcp_types.CallToolResult.model_validate(value.get("result") or {})


def _wrap(cls: type, name: str, durable: Callable[..., Any]) -> None:
    original = getattr(cls, name)
    if getattr(original, _SEAM_FLAG, False):
        return

    @functools.wraps(original)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        session = _durable_session(self)
        if session is None:
            return await original(self, *args, **kwargs)
        return await durable(session, self, *args, **kwargs)

    setattr(method, _SEAM_FLAG, True)
    setattr(cls, name, method)


async def _durable_connect(session: Any, server: Any, *args: Any, **kwargs: Any) -> None:
    """``connect()`` / ``cleanup()`` inside a durable run: nothing to do (connections live in the activities)."""
    return None


async def _durable_list(session: Any, server: Any, run_context: Any = None, agent: Any = None) -> list[Any]:
    return await _list_tools_durably(session, server, run_context, agent)


async def _durable_call(session: Any, server: Any, tool_name: str, arguments: dict[str, Any] | None,
                        meta: dict[str, Any] | None = None) -> Any:
    return await _call_tool_durably(session, server, tool_name, arguments, meta)


def _wrap_util(name: str) -> None:
    """Refuse, inside a durable run, MCP servers the seam does not cover (custom ``MCPServer`` classes: their I/O
    would run in the orchestrator) before the SDK lists their tools."""
    descriptor = MCPUtil.__dict__[name]
    original = descriptor.__func__
    if getattr(original, _SEAM_FLAG, False):
        return

    @functools.wraps(original)
    async def method(cls: Any, *args: Any, **kwargs: Any) -> Any:
        servers = args[0] if args else kwargs.get("servers", kwargs.get("server"))
        if _durable_session() is not None:
            for server in servers if isinstance(servers, list | tuple) else [servers]:
                if type(server) not in _KINDS and not getattr(server, _WORKER_FLAG, False):
                    raise _refuse(server, f"its class {type(server).__qualname__} is not one the worker can "
                                          "rebuild")
        return await original(cls, *args, **kwargs)

    setattr(method, _SEAM_FLAG, True)
    setattr(MCPUtil, name, classmethod(method))


_install_lock = threading.Lock()


def install_mcp_seam() -> None:
    """Make the MCP servers of agents durable inside agent orchestrations (idempotent); called by
    ``durable_agents.install()``.

    Wraps ``connect``, ``cleanup``, ``list_tools`` and ``call_tool`` of ``MCPServerStreamableHttp``,
    ``MCPServerSse`` and ``MCPServerStdio``: with a version-2 durable run bound to the calling thread, ``connect`` /
    ``cleanup`` do nothing (calling them is not needed and opens no connection in the orchestrator), ``list_tools``
    returns the run's recorded listing (the first call per server runs :data:`LIST_TOOLS_ACTIVITY`) filtered by the
    server's ``tool_filter``, and ``call_tool`` runs :data:`CALL_TOOL_ACTIVITY`; anywhere else they are the SDK's.
    ``MCPUtil.get_all_function_tools`` / ``get_function_tools`` refuse other server classes in such runs
    (``UserError``).
    """
    with _install_lock:
        for cls in _KINDS:
            _wrap(cls, "connect", _durable_connect)
            _wrap(cls, "cleanup", _durable_connect)
            _wrap(cls, "list_tools", _durable_list)
            _wrap(cls, "call_tool", _durable_call)
        _wrap_util("get_all_function_tools")
        _wrap_util("get_function_tools")
