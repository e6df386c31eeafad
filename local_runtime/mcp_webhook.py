"""The Functions MCP extension's webhook on the local runtime, ``/runtime/webhooks/mcp``.

The contract is docs/mcp-extension-protocol.md (§ numbers below refer to it).

The same app code that runs behind the MCP extension in Azure (functions with an ``mcpToolTrigger`` binding, e.g.
``app.mcp_tool_trigger(...)`` or ``app.mcp_tool()``) is served here with the extension's wire behaviour:

* **Streamable HTTP** (§2.1), ``POST /runtime/webhooks/mcp``: stateless, one JSON-RPC message per POST. A request
  is answered ``200 text/event-stream`` with one ``event: message`` record, then the stream ends; a notification
  or response gets ``202`` with an empty body. ``GET``/``DELETE`` → ``405``. The ``Accept`` header must name both
  ``application/json`` and ``text/event-stream`` (else ``406`` + JSON-RPC ``-32000``). ``initialize`` without an
  ``Mcp-Session-Id`` returns ``Mcp-Session-Id: {16 chars [a-z0-9]}|{instance id}`` (plain, as under Core Tools);
  a later ``Mcp-Session-Id`` that does not parse → ``400`` ``-32000`` "Invalid client state.". Nothing is kept
  between POSTs.
* **Legacy HTTP+SSE** (§2.2), ``GET …/mcp/sse`` + ``POST …/mcp/message?azmcpcs=<state>``: one session per open
  SSE stream (its ``initialize`` ``clientInfo`` is kept), first event ``endpoint`` (``message?azmcpcs=…``, plus
  ``&code=…`` when the GET carried a function key), then ``event: message`` records; a JSON-RPC ``ping`` request
  every :data:`SSE_PING_INTERVAL_S` seconds; the message POST answers ``202 Accepted`` or one of the §2.2 ``400``\\ s
  (bodies are JSON string literals, as ASP.NET's ``Results.BadRequest(string)`` writes them).
* A path under the root that (trailing ``/`` trimmed) ends with ``sse`` or ``message`` (any case) is legacy SSE,
  anything else Streamable HTTP (§2).

Tools come from the loaded functions' ``mcpToolTrigger`` bindings (:func:`build_tools`; ``inputSchema`` exactly as
§4.2, or the worker's own per §4.3). ``tools/call`` (§5) looks the tool up case-insensitively, checks the required
properties, passes the §5.2 payload as JSON **text** to the trigger parameter (the durableClient binding as for
HTTP functions), and maps the return value per §5.4; any failure is the generic ``isError`` result of §2.3, logged
here with its traceback but never with the payload or its headers. ``initialize`` negotiates 2024-11-05,
2025-03-26 or 2025-06-18 (anything else → 2025-06-18) and advertises ``logging``, ``prompts``, ``resources`` and
``tools`` with no sub-fields; ``serverInfo``/``instructions`` come from ``host.json`` ``extensions.mcp``.
``resources/list``, ``resources/templates/list`` and ``prompts/list`` answer empty lists; unknown methods
(``server/discover``, ``tasks/*``, ``completion/complete``) → ``-32601`` "Method '<m>' is not available.".

Identity: the function sees the request headers in ``transport.properties.headers`` **after** the same App Service
authentication emulation the HTTP triggers get (:func:`local_runtime.identity.identity_headers`: client-sent
``X-MS-CLIENT-PRINCIPAL*`` removed, a loopback ``X-Dev-User`` turned into the four principal headers, ``X-Dev-*``
dropped), so the app sees the caller as in Azure behind App Service authentication. An invalid developer header
→ ``400`` JSON-RPC ``-32000`` with the rule broken. On SSE the headers are those of the ``GET …/sse`` request
(§5.2 / §10 item 4).

Auth: like ``func start``, the local runtime does **not** enforce function keys (the HTTP triggers do not either):
``x-functions-key`` and ``code`` are accepted and ignored, whatever
``extensions.mcp.system.webhookAuthorizationLevel`` says. The key still reaches the function in the payload's
headers, as in Azure; it is never logged here.

The JSON-RPC envelopes and MCP results are parsed and written with the ``mcp`` package's pydantic types
(``mcp.types``); the transport itself is ours because the extension's (stateless, SSE-framed single answers)
differs from the SDK's server transports.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import string
import traceback
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import mcp.types as mt
from aiohttp import web
from azure.functions.mcp import _MCPToolTriggerConverter
from pydantic import BaseModel, TypeAdapter, ValidationError

from .app_loader import AppLoadError, FunctionInfo
from .identity import PRINCIPAL_PREFIX, InvalidDevIdentity, identity_headers

__all__ = ["MCP_ROOT", "SSE_PING_INTERVAL_S", "ENV_SSE_PING_SECONDS", "SUPPORTED_PROTOCOL_VERSIONS",
           "LATEST_PROTOCOL_VERSION",
           "McpServerConfig", "McpTool", "load_mcp_config", "input_schema_from_properties", "build_tools",
           "tool_payload", "map_tool_result", "error_result", "McpWebhook"]

log = logging.getLogger("local_runtime")

MCP_ROOT = "/runtime/webhooks/mcp"
"""The webhook root (the extension is registered as ``mcp``; §1)."""

ENV_SSE_PING_SECONDS = "LOCAL_RUNTIME_MCP_SSE_PING_SECONDS"

SSE_PING_INTERVAL_S = float(os.environ.get(ENV_SSE_PING_SECONDS) or 25.0)
"""Seconds between the server's JSON-RPC ``ping`` requests on a legacy SSE stream (§2.2): 25, like the extension;
the environment variable ``LOCAL_RUNTIME_MCP_SSE_PING_SECONDS`` (read at import) changes it so that tests of a
runtime process need not wait. Read at each stream's start, so an in-process caller may also patch it."""

SUPPORTED_PROTOCOL_VERSIONS = ("2024-11-05", "2025-03-26", "2025-06-18")
"""The versions ``initialize`` echoes (C# SDK 0.4.0-preview.3; §4.5)."""

LATEST_PROTOCOL_VERSION = "2025-06-18"
"""The version ``initialize`` answers for any other requested version (§4.5)."""

DEFAULT_SERVER_NAME = "Azure Functions MCP server"
DEFAULT_SERVER_VERSION = "1.0.0"

_ID_ALPHABET = string.ascii_lowercase + string.digits
_SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache,no-store",
                "Connection": "keep-alive", "Content-Encoding": "identity"}
_REQUIRED_MISSING = "One or more required tool properties are missing values. Please provide: "
_BAD_BODY = "Bad Request: The POST body did not contain a valid JSON-RPC message."
_NOT_ACCEPTABLE = "Not Acceptable: Client must accept both application/json and text/event-stream"
_CONTENT_BLOCK: TypeAdapter[Any] = TypeAdapter(mt.ContentBlock)
_CONTENT_BLOCKS: TypeAdapter[Any] = TypeAdapter(list[mt.ContentBlock])

ToolRunner = Callable[[FunctionInfo, str], Awaitable[Any]]
"""``runner(info, payload_text)``: invoke the tool's function with the §5.2 payload text as its trigger value
(plus its other bindings, e.g. durableClient) and return what the function returned; exceptions propagate."""


class _RpcError(Exception):
    """A JSON-RPC error answer (``code``, ``message``)."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------------------------
# Configuration and registration


@dataclass(frozen=True)
class McpServerConfig:
    """``host.json`` ``extensions.mcp`` as far as served here (§6): ``server_name``/``server_version``
    (``initialize`` ``serverInfo``; defaults ``"Azure Functions MCP server"``/``"1.0.0"``), ``instructions``
    (None: not sent) and ``use_absolute_uri_for_endpoint`` (``messageOptions.useAbsoluteUriForEndpoint``)."""

    server_name: str = DEFAULT_SERVER_NAME
    server_version: str = DEFAULT_SERVER_VERSION
    instructions: str | None = None
    use_absolute_uri_for_endpoint: bool = False


def load_mcp_config(app_dir: Path) -> McpServerConfig:
    """Read ``<app_dir>/host.json`` ``extensions.mcp`` (§6). A missing file or section gives the defaults.
    Key names are matched case-insensitively, as .NET configuration binding does."""
    path = app_dir / "host.json"
    if not path.exists():
        return McpServerConfig()
    data = json.loads(path.read_text(encoding="utf-8"))
    ext = _ci(_ci(data).get("extensions"))
    mcp = _ci(ext.get("mcp"))
    messages = _ci(mcp.get("messageoptions"))
    instructions = mcp.get("instructions")
    return McpServerConfig(
        server_name=str(mcp.get("servername") or DEFAULT_SERVER_NAME),
        server_version=str(mcp.get("serverversion") or DEFAULT_SERVER_VERSION),
        instructions=str(instructions) if instructions is not None else None,
        use_absolute_uri_for_endpoint=bool(messages.get("useabsoluteuriforendpoint", False)))


def _ci(value: Any) -> dict[str, Any]:
    """A JSON object with lower-cased keys (non-objects → ``{}``)."""
    return {str(k).lower(): v for k, v in value.items()} if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class McpTool:
    """One registered tool: ``name`` (``toolName``), ``description`` (None: not listed), ``input_schema`` (§4.2 or
    the worker's, §4.3), ``required`` (the property names checked before a call), ``output_schema`` and ``meta``
    (``_meta``; None: not listed), ``use_result_schema`` (§5.4) and the function ``info``."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    required: tuple[str, ...]
    output_schema: dict[str, Any] | None
    meta: dict[str, Any] | None
    use_result_schema: bool
    info: FunctionInfo = field(compare=False, repr=False)

    def listing(self) -> mt.Tool:
        """The ``tools/list`` entry (§4.4): name, description, inputSchema, outputSchema?, _meta?."""
        kwargs: dict[str, Any] = {"name": self.name, "input_schema": self.input_schema}
        if self.description is not None:
            kwargs["description"] = self.description
        if self.output_schema is not None:
            kwargs["output_schema"] = self.output_schema
        if self.meta is not None:
            kwargs["meta"] = self.meta
        return mt.Tool(**kwargs)


def input_schema_from_properties(tool_properties: Any) -> dict[str, Any]:
    """The host's ``inputSchema`` for a ``toolProperties`` value (§4.2): a JSON array text (or an already parsed
    list; None/empty → no properties) of items with ``propertyName``, ``propertyType``, ``description``,
    ``isRequired`` (false), ``isArray`` (false), ``enumValues`` ([]) (names case-insensitive). Returns
    ``{"type": "object", "properties": {name: {"type", "enum"?, "description"}}, "required": [...]}``; an array
    property is ``{"type": "array", "items": {"type", "enum"?}, "description"}``. Types pass through unmapped
    (``"float"`` stays). Items with an empty name are dropped. Raises ``ValueError`` for text that is not a JSON
    array of objects."""
    items = json.loads(tool_properties) if isinstance(tool_properties, str) and tool_properties.strip() else (
        tool_properties or [])
    if not isinstance(items, list) or not all(isinstance(i, Mapping) for i in items):
        raise ValueError("toolProperties must be a JSON array of objects")
    properties: dict[str, Any] = {}
    required: list[str] = []
    for raw in items:
        item = _ci(raw)
        name = item.get("propertyname")
        if not name:
            continue
        name = str(name)
        enum = list(item.get("enumvalues") or [])
        kind: dict[str, Any] = {}
        if item.get("propertytype") is not None:
            kind["type"] = item["propertytype"]
        if enum:
            kind["enum"] = enum
        description = item.get("description")
        description = "" if description is None else description
        if item.get("isarray"):
            properties[name] = {"type": "array", "items": kind, "description": description}
        else:
            properties[name] = {**kind, "description": description}
        if item.get("isrequired") and name not in required:
            required.append(name)
    return {"type": "object", "properties": properties, "required": required}


def _schema(value: Any, what: str, tool: str) -> dict[str, Any]:
    """A worker-supplied schema (JSON text or object), checked as the extension does (§4.3)."""
    try:
        schema = json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError as exc:
        raise AppLoadError(f"MCP tool '{tool}': {what} is not valid JSON ({exc.msg})") from exc
    if (not isinstance(schema, dict) or schema.get("type") != "object"
            or not isinstance(schema.get("properties", {}), dict) or not isinstance(schema.get("required", []), list)):
        raise AppLoadError(f"MCP tool '{tool}': {what} must be a JSON object with \"type\": \"object\" (properties "
                           "an object and required an array when present)")
    return schema


def _tool(info: FunctionInfo) -> McpTool:
    b = _ci(info.trigger)
    name = b.get("toolname")
    if not name or not isinstance(name, str):
        raise AppLoadError(f"Function '{info.name}' has an mcpToolTrigger binding without a toolName")
    if b.get("useworkerinputschema"):
        if b.get("inputschema") is None:
            raise AppLoadError(f"MCP tool '{name}': useWorkerInputSchema is set but there is no inputSchema")
        schema = _schema(b["inputschema"], "inputSchema", name)
        required = tuple(str(r) for r in schema.get("required", []))
    else:
        try:
            schema = input_schema_from_properties(b.get("toolproperties"))
        except ValueError as exc:
            raise AppLoadError(f"MCP tool '{name}': {exc}") from exc
        required = tuple(schema["required"])
    output = _schema(b["outputschema"], "outputSchema", name) if b.get("outputschema") is not None else None
    meta = None
    if b.get("metadata") is not None:
        try:
            meta = json.loads(b["metadata"]) if isinstance(b["metadata"], str) else b["metadata"]
        except json.JSONDecodeError as exc:
            raise AppLoadError(f"MCP tool '{name}': metadata is not valid JSON ({exc.msg})") from exc
        if not isinstance(meta, dict):
            raise AppLoadError(f"MCP tool '{name}': metadata must be a JSON object")
    description = b.get("description")
    return McpTool(name=name, description=None if description is None else str(description), input_schema=schema,
                   required=required, output_schema=output, meta=meta,
                   use_result_schema=bool(b.get("useresultschema")), info=info)


def build_tools(functions: Iterable[FunctionInfo]) -> dict[str, McpTool]:
    """The tool registry from the functions whose trigger is ``mcpToolTrigger`` (others are skipped), keyed by the
    lower-cased tool name, in registration order (§4.4). Raises :class:`AppLoadError` (the host does not start) for
    a binding without ``toolName``, two tools whose names differ only in case or not at all, unparsable
    ``toolProperties``/``metadata``, or a worker schema the extension would refuse (§4.3)."""
    tools: dict[str, McpTool] = {}
    for info in functions:
        if str(info.trigger.get("type", "")).lower() != "mcptooltrigger":
            continue
        tool = _tool(info)
        key = tool.name.lower()
        if key in tools:
            raise AppLoadError(f"MCP tool name '{tool.name}' (function '{info.name}') is already used by function "
                               f"'{tools[key].info.name}' (tool names are unique case-insensitively)")
        tools[key] = tool
    return tools


# --------------------------------------------------------------------------------------------------------------
# Invocation: payload in, result out


def tool_payload(name: str, arguments: dict[str, Any] | None, *, transport: str, session_header: str | None,
                 headers: Mapping[str, str], client_info: dict[str, Any] | None = None) -> str:
    """The ``ToolInvocationContext`` JSON text a function receives (§5.2): ``name``, ``arguments`` (verbatim;
    absent when None), ``sessionid`` (the ``Mcp-Session-Id`` header value as sent; absent when None),
    ``clientinfo`` (SSE only; absent when None) and ``transport`` ``{"name": "http-streamable"|"http-sse",
    "sessionId"?, "properties": {"headers": {...}}}``."""
    payload: dict[str, Any] = {"name": name}
    if arguments is not None:
        payload["arguments"] = arguments
    if session_header is not None:
        payload["sessionid"] = session_header
    if client_info is not None:
        payload["clientinfo"] = client_info
    transport_obj: dict[str, Any] = {"name": transport}
    if session_header is not None:
        transport_obj["sessionId"] = session_header
    transport_obj["properties"] = {"headers": dict(headers)}
    payload["transport"] = transport_obj
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _dump(model: BaseModel) -> dict[str, Any]:
    """Wire JSON of an ``mcp.types`` model: aliases, only the fields that were set (the C# SDK omits what it
    does not have; ``resultType``/``isError`` defaults are not sent)."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def _text(text: str) -> mt.TextContent:
    return mt.TextContent(type="text", text=text)


def error_result(tool_name: str) -> dict[str, Any]:
    """The generic failure result (§2.3): one text block "An error occurred invoking '<name>'." and
    ``isError: true``."""
    return _dump(mt.CallToolResult(content=[_text(f"An error occurred invoking '{tool_name}'.")], is_error=True))


def map_tool_result(returned: Any, *, use_result_schema: bool) -> dict[str, Any]:
    """The ``CallToolResult`` JSON for what a Python function returned (§5.3 converter ``encode``, then §5.4).

    The value is first encoded like the worker (``None`` → ``""``, ``str``, ``bytes``, ``mcp.types`` → JSON,
    other → ``str(obj)``). Plain (``use_result_schema`` false): one text block with that text, never parsed
    (bytes are decoded as UTF-8, a local choice). With ``use_result_schema``: ``""`` → ``{"content": []}``; an
    envelope ``{"type", "content", "structuredContent"?}``: ``call_tool_result`` → ``content`` as a whole result,
    ``multi_content_result`` → ``content`` as a list of blocks, any other type → one block, with
    ``structuredContent`` (JSON text) when non-empty. Raises ``ValueError`` (→ :func:`error_result`) for anything
    else, as the host's binder fails."""
    datum = _MCPToolTriggerConverter.encode(returned, expected_type=None)
    value = datum.value
    if isinstance(value, bytes | bytearray):
        value = bytes(value).decode("utf-8", errors="replace")
    text = "" if value is None else str(value)
    if not use_result_schema:
        return _dump(mt.CallToolResult(content=[_text(text)]))
    if text == "":
        return _dump(mt.CallToolResult(content=[]))
    try:
        envelope = json.loads(text)
        if not isinstance(envelope, dict) or not isinstance(envelope.get("type"), str) or not isinstance(
                envelope.get("content"), str):
            raise ValueError("the result is not a {type, content} envelope")
        kind, content = envelope["type"], envelope["content"]
        if kind == "call_tool_result":
            return _dump(mt.CallToolResult.model_validate_json(content))
        if kind == "multi_content_result":
            blocks = _CONTENT_BLOCKS.validate_json(content)
            if not blocks:
                raise ValueError("multi_content_result has no content blocks")
            return _dump(mt.CallToolResult(content=blocks))
        block = _CONTENT_BLOCK.validate_json(content)
        result = mt.CallToolResult(content=[block])
        structured = envelope.get("structuredContent")
        if isinstance(structured, str) and structured != "":
            result = mt.CallToolResult(content=[block], structured_content=json.loads(structured))
        return _dump(result)
    except ValidationError as exc:
        raise ValueError(f"invalid result envelope ({exc.error_count()} validation errors)") from None


# --------------------------------------------------------------------------------------------------------------
# The webhook


def _new_id() -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))


def _parse_state(value: str | None) -> tuple[str, str] | None:
    """``"{id}|{instanceId}"`` → ``(id, instance)``; None when it does not parse."""
    if not value:
        return None
    parts = value.split("|")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        return None
    return parts[0], parts[1]


def _accepts_both(request: web.Request) -> bool:
    types = set()
    for header in request.headers.getall("Accept", []):
        for part in header.split(","):
            types.add(part.split(";", 1)[0].strip().lower())
    return "application/json" in types and "text/event-stream" in types


def _rpc_error_json(status: int, code: int, message: str, rid: Any = None) -> web.Response:
    body = mt.JSONRPCError(jsonrpc="2.0", id=rid, error=mt.ErrorData(code=code, message=message))
    return web.Response(status=status, text=body.model_dump_json(by_alias=True, exclude_none=True),
                        content_type="application/json")


def _bad_request(text: str) -> web.Response:
    return web.Response(status=400, text=json.dumps(text), content_type="application/json")


def _sse_record(event: str, data: str) -> bytes:
    return f"event: {event}\ndata: {data}\n\n".encode()


def _message_json(message: BaseModel) -> str:
    return message.model_dump_json(by_alias=True, exclude_none=True)


@dataclass
class _CallContext:
    transport: str
    session_header: str | None
    headers: dict[str, str]
    client_info: dict[str, Any] | None = None


@dataclass
class _SseSession:
    client_id: str
    headers: dict[str, str]
    outbox: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    client_info: dict[str, Any] | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class McpWebhook:
    """The MCP extension's webhook for one host (module docstring).

    ``tools``: :func:`build_tools`' registry. ``config``: :func:`load_mcp_config`. ``runner``: see
    :data:`ToolRunner`. ``auth``: the App Service authentication emulation switch (``HostOptions.auth``).
    ``instance_id``: the state's instance part (default ``WEBSITE_INSTANCE_ID`` or a random 16-char id).
    :meth:`add_routes` registers the routes; add them before any catch-all route.
    """

    def __init__(self, tools: dict[str, McpTool], config: McpServerConfig, runner: ToolRunner, *, auth: bool,
                 instance_id: str | None = None):
        self.tools = tools
        self.config = config
        self.runner = runner
        self.auth = auth
        self.instance_id = instance_id or os.environ.get("WEBSITE_INSTANCE_ID") or _new_id()
        self.sessions: dict[str, _SseSession] = {}
        self._closing = asyncio.Event()

    def add_routes(self, app: web.Application) -> None:
        """``* /runtime/webhooks/mcp`` and ``* /runtime/webhooks/mcp/{tail}``; closes SSE streams on shutdown."""
        app.router.add_route("*", MCP_ROOT, self.handle)
        app.router.add_route("*", MCP_ROOT + "/{tail:.*}", self.handle)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        self._closing.set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Route per §2: legacy SSE when the path (trailing ``/`` trimmed) ends with ``sse``/``message``."""
        path = request.path.rstrip("/").lower()
        if path.endswith("sse"):
            return await self._sse_stream(request)
        if path.endswith("message"):
            return await self._sse_message(request)
        return await self._streamable(request)

    # ---- identity

    def _function_headers(self, request: web.Request) -> dict[str, str]:
        """Request headers after the identity emulation; repeated headers joined with ``,`` (§5.2). Raises
        :class:`InvalidDevIdentity`."""
        peer = request.transport.get_extra_info("peername") if request.transport else None
        out = identity_headers(request.headers.items(), peer, enabled=self.auth)
        for name in list(out):
            if name.lower().startswith(PRINCIPAL_PREFIX):
                continue
            values = request.headers.getall(name, [])
            if len(values) > 1:
                out[name] = ",".join(values)
        return out

    # ---- Streamable HTTP (§2.1)

    async def _streamable(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        if not _accepts_both(request):
            return _rpc_error_json(406, -32000, _NOT_ACCEPTABLE)
        session_header = request.headers.get("Mcp-Session-Id")
        if session_header is not None and _parse_state(session_header) is None:
            return _rpc_error_json(400, -32000, "Invalid client state.")
        try:
            message = mt.jsonrpc_message_adapter.validate_json(await request.read())
        except (ValidationError, ValueError):
            return _rpc_error_json(400, -32000, _BAD_BODY)
        if not isinstance(message, mt.JSONRPCRequest):
            return web.Response(status=202)
        try:
            headers = self._function_headers(request)
        except InvalidDevIdentity as exc:
            return _rpc_error_json(400, -32000, str(exc), message.id)
        response_headers = dict(_SSE_HEADERS)
        if message.method == "initialize" and session_header is None:
            response_headers["Mcp-Session-Id"] = f"{_new_id()}|{self.instance_id}"
        stream = web.StreamResponse(status=200, headers=response_headers)
        await stream.prepare(request)   # headers now: a tool call may take long
        ctx = _CallContext(transport="http-streamable", session_header=session_header, headers=headers)
        answer = await self._answer(message, ctx)
        try:
            await stream.write(_sse_record("message", answer))
            await stream.write_eof()
        except (ConnectionResetError, ConnectionError):
            log.info("MCP client disconnected before the answer to '%s' was sent", message.method)
        return stream

    # ---- JSON-RPC dispatch (both transports)

    async def _answer(self, message: mt.JSONRPCRequest, ctx: _CallContext,
                      session: _SseSession | None = None) -> str:
        """The JSON-RPC response (or error) text for one request (§2.3 error mapping)."""
        try:
            result = await self._dispatch(message.method, message.params or {}, ctx, session)
            return _message_json(mt.JSONRPCResponse(jsonrpc="2.0", id=message.id, result=result))
        except _RpcError as exc:
            error = mt.ErrorData(code=exc.code, message=exc.message)
        except Exception:  # noqa: BLE001 - any other handler failure is -32603, logged
            log.error("MCP request '%s' failed:\n%s", message.method, traceback.format_exc())
            error = mt.ErrorData(code=mt.INTERNAL_ERROR, message="An error occurred.")
        return _message_json(mt.JSONRPCError(jsonrpc="2.0", id=message.id, error=error))

    async def _dispatch(self, method: str, params: dict[str, Any], ctx: _CallContext,
                        session: _SseSession | None) -> dict[str, Any]:
        if method == "initialize":
            return self._initialize(params, session)
        if method in ("ping", "logging/setLevel"):
            return {}
        if method == "tools/list":
            return _dump(mt.ListToolsResult(tools=[t.listing() for t in self.tools.values()]))
        if method == "tools/call":
            return await self._call(params, ctx)
        if method == "resources/list":
            return {"resources": []}
        if method == "resources/templates/list":
            return {"resourceTemplates": []}
        if method == "prompts/list":
            return {"prompts": []}
        if method == "resources/read":
            raise _RpcError(mt.INVALID_PARAMS, f"Unknown resource: '{params.get('uri')}'")
        if method == "prompts/get":
            raise _RpcError(mt.INVALID_PARAMS, f"Unknown prompt: '{params.get('name')}'")
        raise _RpcError(mt.METHOD_NOT_FOUND, f"Method '{method}' is not available.")

    def _initialize(self, params: dict[str, Any], session: _SseSession | None) -> dict[str, Any]:
        requested = params.get("protocolVersion")
        version = requested if requested in SUPPORTED_PROTOCOL_VERSIONS else LATEST_PROTOCOL_VERSION
        if session is not None and isinstance(params.get("clientInfo"), dict):
            try:
                info = mt.Implementation.model_validate(params["clientInfo"])
                session.client_info = info.model_dump(mode="json", by_alias=True, exclude_none=True,
                                                      include={"name", "version", "title", "icons", "website_url"})
            except ValidationError:
                session.client_info = None
        result = mt.InitializeResult(
            protocol_version=version,
            capabilities=mt.ServerCapabilities(logging=mt.LoggingCapability(), prompts=mt.PromptsCapability(),
                                            resources=mt.ResourcesCapability(), tools=mt.ToolsCapability()),
            server_info=mt.Implementation(name=self.config.server_name, version=self.config.server_version))
        if self.config.instructions is not None:
            result.instructions = self.config.instructions
        return _dump(result)

    async def _call(self, params: dict[str, Any], ctx: _CallContext) -> dict[str, Any]:
        name = params.get("name")
        tool = self.tools.get(name.lower()) if isinstance(name, str) else None
        if tool is None or not isinstance(name, str):
            raise _RpcError(mt.INVALID_PARAMS, f"Unknown tool: '{name if name is not None else ''}'")
        arguments = params.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise _RpcError(mt.INVALID_PARAMS, "The tool call's arguments must be an object.")
        given = arguments or {}
        missing = [p for p in tool.required if given.get(p) is None]
        if missing:
            raise _RpcError(mt.INVALID_PARAMS, _REQUIRED_MISSING + ", ".join(missing))
        payload = tool_payload(name, arguments, transport=ctx.transport, session_header=ctx.session_header,
                               headers=ctx.headers, client_info=ctx.client_info)
        log.info("Executing MCP tool '%s' (function '%s', %s)", tool.name, tool.info.name, ctx.transport)
        try:
            returned = await self.runner(tool.info, payload)
            result = map_tool_result(returned, use_result_schema=tool.use_result_schema)
        except Exception:  # noqa: BLE001 - like the extension: a generic isError result; the real error is logged
            log.error("MCP tool '%s' (function '%s') failed:\n%s", tool.name, tool.info.name, traceback.format_exc())
            return error_result(tool.name)
        log.info("Executed MCP tool '%s'%s", tool.name, " (isError)" if result.get("isError") else "")
        return result

    # ---- legacy HTTP+SSE (§2.2)

    async def _sse_stream(self, request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=405)
        try:
            headers = self._function_headers(request)
        except InvalidDevIdentity as exc:
            return _rpc_error_json(400, -32000, str(exc))
        session = _SseSession(client_id=_new_id(), headers=headers)
        state = f"{session.client_id}|{self.instance_id}"
        endpoint = f"message?azmcpcs={state}"
        key = request.query.get("code") or request.headers.get("x-functions-key")
        if key:
            endpoint += "&code=" + quote(key, safe="")
        if self.config.use_absolute_uri_for_endpoint:
            base = request.path.rstrip("/").rsplit("/", 1)[0]
            endpoint = f"{request.scheme}://{request.host}{base}/{endpoint}"
        stream = web.StreamResponse(status=200, headers=_SSE_HEADERS)
        await stream.prepare(request)
        self.sessions[session.client_id] = session
        log.info("MCP SSE session opened (%d open)", len(self.sessions))
        ping_id = 0
        loop = asyncio.get_running_loop()
        next_ping = loop.time() + SSE_PING_INTERVAL_S
        try:
            await stream.write(_sse_record("endpoint", endpoint))
            while not self._closing.is_set():
                if request.transport is None or request.transport.is_closing():
                    break
                timeout = max(0.0, min(1.0, next_ping - loop.time()))
                try:
                    text = await asyncio.wait_for(session.outbox.get(), timeout)
                except TimeoutError:
                    if loop.time() >= next_ping:
                        ping_id += 1
                        ping = mt.JSONRPCRequest(jsonrpc="2.0", id=ping_id, method="ping")
                        await stream.write(_sse_record("message", _message_json(ping)))
                        next_ping = loop.time() + SSE_PING_INTERVAL_S
                    continue
                await stream.write(_sse_record("message", text))
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.sessions.pop(session.client_id, None)
            for task in list(session.tasks):
                task.cancel()
            log.info("MCP SSE session closed (%d open)", len(self.sessions))
        return stream

    async def _sse_message(self, request: web.Request) -> web.StreamResponse:
        if request.method != "POST":
            return web.Response(status=405)
        raw_state = request.query.get("azmcpcs")
        if not raw_state:
            return _bad_request("Missing service context. Please connect to the /sse endpoint to initiate your "
                                "session.")
        state = _parse_state(raw_state)
        if state is None:
            return _bad_request("Invalid client state. Please connect to the /sse endpoint to initiate a new "
                                "session.")
        client_id, instance = state
        session = self.sessions.get(client_id) if instance == self.instance_id else None
        if session is None:
            return _bad_request(f"No active session for client '{client_id}' and instance '{instance}'. Please "
                                "connect to the /sse endpoint to initiate a new session.")
        body = await request.read()
        if not body.strip():
            return _bad_request("No message in request body.")
        try:
            message = mt.jsonrpc_message_adapter.validate_json(body)
        except (ValidationError, ValueError):
            return _bad_request("No message in request body.")
        if isinstance(message, mt.JSONRPCRequest):
            ctx = _CallContext(transport="http-sse", session_header=None, headers=session.headers,
                               client_info=session.client_info)
            task = asyncio.get_running_loop().create_task(self._sse_answer(session, message, ctx))
            session.tasks.add(task)
            task.add_done_callback(session.tasks.discard)
        return web.Response(status=202, text="Accepted")

    async def _sse_answer(self, session: _SseSession, message: mt.JSONRPCRequest, ctx: _CallContext) -> None:
        answer = await self._answer(message, ctx, session)
        await session.outbox.put(answer)
