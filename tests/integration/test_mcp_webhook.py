"""End to end: the local runtime's MCP webhook (local_runtime/mcp_webhook.py, docs/mcp-extension-protocol.md)
serving tests/fixtures/mcp_webhook_app, with the official ``mcp`` Python SDK client (2.3.0) over Streamable HTTP
and the legacy SSE transport, and raw HTTP (urllib) for the status codes of §2.1/§2.2.

One runtime process serves the module (``LOCAL_RUNTIME_MCP_SSE_PING_SECONDS=0.5`` so the SSE ping test need not
wait 25 s).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client import Client
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from local_runtime.mcp_webhook import input_schema_from_properties, map_tool_result
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess, RuntimeStartError

pytestmark = pytest.mark.integration

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "mcp_webhook_app"
MCP = "/runtime/webhooks/mcp"
ACCEPT = "application/json, text/event-stream"

EXPECTED_TOOLS = [
    {"name": "echo", "description": "Echo the text back.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string", "description": ""}},
                     "required": ["text"]}},
    {"name": "add", "description": "Add two integers.",
     "inputSchema": {"type": "object", "properties": {
         "a": {"type": "integer", "description": "first"},
         "b": {"type": "integer", "description": "second"},
         "unit": {"type": "string", "enum": ["m", "s"], "description": "optional unit"}},
         "required": ["a", "b"]}},
    {"name": "fails", "description": "Always raises.",
     "inputSchema": {"type": "object", "properties": {}, "required": []}},
    {"name": "structured", "description": "A structured error result.",
     "inputSchema": {"type": "object", "properties": {}, "required": []}},
    {"name": "whoami", "description": "Who the app sees.",
     "inputSchema": {"type": "object", "properties": {}, "required": []}},
]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    tmp = tmp_path_factory.mktemp("mcp-webhook")
    rt = RuntimeProcess(APP_DIR, state=tmp / "state.sqlite3", log_path=tmp / "rt.log",
                        env={"LOCAL_RUNTIME_MCP_SSE_PING_SECONDS": "0.5"})
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


def _streamable(rt: RuntimeProcess, headers: dict[str, str] | None = None) -> Client:
    http_client = httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(30.0, read=60.0))
    return Client(streamable_http_client(rt.url(MCP), http_client=http_client))


def _sse(rt: RuntimeProcess, headers: dict[str, str] | None = None) -> Client:
    return Client(sse_client(rt.url(MCP + "/sse"), headers=headers))


def _dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _text(result: Any) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text", result
    return result.content[0].text


async def _tool_round(client: Client) -> dict[str, Any]:
    """List the tools and call each; returns what the client saw."""
    seen: dict[str, Any] = {"tools": [_dump(t) for t in (await client.list_tools()).tools]}
    seen["echo"] = await client.call_tool("echo", {"text": "héllo"})
    seen["add"] = await client.call_tool("Add", {"a": 2, "b": 40, "unit": "m"})   # case-insensitive lookup
    seen["fails"] = await client.call_tool("fails")
    seen["structured"] = await client.call_tool("structured", {})
    return seen


def _check_round(seen: dict[str, Any]) -> None:
    for tool in seen["tools"]:   # the SDK's model may add defaults of its own; the wire fields must be exact
        tool.pop("resultType", None)
    assert seen["tools"] == EXPECTED_TOOLS
    assert _text(seen["echo"]) == "héllo" and not seen["echo"].is_error
    assert _text(seen["add"]) == "42m"
    assert seen["fails"].is_error is True
    assert _text(seen["fails"]) == "An error occurred invoking 'fails'."
    structured = seen["structured"]
    assert structured.is_error is True and _text(structured) == "run r-1 waits for approval"
    assert structured.structured_content == {"runId": "r-1", "status": "waiting_for_approval"}


def test_streamable_http_client_lists_and_calls_tools(runtime: RuntimeProcess) -> None:
    """Default ``mode="auto"``: the client's ``server/discover`` probe gets -32601 and falls back to initialize
    (2025-06-18, serverInfo and instructions from host.json); tools listed exactly per §4.2; calls mapped per §5.4;
    a function exception is the generic isError text, its message stays in the server log."""

    async def scenario() -> tuple[Any, ...]:
        async with _streamable(runtime) as client:
            return (client.protocol_version, client.server_info, client.server_capabilities,
                    await _tool_round(client))

    version, info, caps, seen = asyncio.run(scenario())
    assert version == "2025-06-18"
    assert (info.name, info.version) == ("Webhook fixture MCP server", "0.9.1")
    assert _dump(caps) == {"logging": {}, "prompts": {}, "resources": {}, "tools": {}}
    _check_round(seen)
    log = runtime.log_text()
    assert "secret detail that must not reach the client" in log   # logged server-side only
    assert "secret detail" not in json.dumps(_dump(seen["fails"]))


def test_bad_arguments_and_unknown_tools_are_mcp_errors(runtime: RuntimeProcess) -> None:
    """Missing (or null) required properties and an unknown tool are JSON-RPC -32602 errors, raised by the client
    as ``MCPError``; the connection stays usable."""

    async def scenario() -> tuple[MCPError, MCPError, MCPError, str]:
        async with _streamable(runtime) as client:
            with pytest.raises(MCPError) as missing:
                await client.call_tool("add", {"a": 1})
            with pytest.raises(MCPError) as null:
                await client.call_tool("add", {"a": None, "b": None})
            with pytest.raises(MCPError) as unknown:
                await client.call_tool("nope", {})
            after = _text(await client.call_tool("add", {"a": 1, "b": 1}))
            return missing.value, null.value, unknown.value, after

    missing, null, unknown, after = asyncio.run(scenario())
    assert (missing.code, missing.message) == (
        -32602, "One or more required tool properties are missing values. Please provide: b")
    assert null.message.endswith("Please provide: a, b")
    assert (unknown.code, unknown.message) == (-32602, "Unknown tool: 'nope'")
    assert after == "2"


def _principal_name(encoded: str) -> str:
    claims = json.loads(base64.b64decode(encoded))["claims"]
    return next(c["val"] for c in claims if c["typ"] == "name")


def test_dev_identity_reaches_the_function_as_an_easy_auth_principal(runtime: RuntimeProcess) -> None:
    """X-Dev-User on loopback → the four App Service principal headers in ``transport.properties.headers``;
    client-sent principal headers and X-Dev-* are dropped; the function key passes through (not enforced); the
    durableClient binding points at the host's task hub; ``sessionid`` is the initialize's Mcp-Session-Id."""
    headers = {"X-Dev-User": "mia.mcp", "X-Dev-Roles": "Support", "X-MS-CLIENT-PRINCIPAL-NAME": "spoofed",
               "x-functions-key": "any-key"}

    async def scenario() -> tuple[dict, dict]:
        async with _streamable(runtime, headers) as client:
            seen = json.loads(_text(await client.call_tool("whoami")))
        async with _streamable(runtime, {"X-MS-CLIENT-PRINCIPAL-NAME": "spoofed"}) as client:
            anonymous = json.loads(_text(await client.call_tool("whoami")))
        return seen, anonymous

    seen, anonymous = asyncio.run(scenario())
    assert seen["principalName"] == "mia.mcp" and seen["principalId"] == "dev-mia.mcp"
    assert _principal_name(seen["principal"]) == "mia.mcp"
    assert seen["devHeaders"] == [] and seen["functionKey"] == "any-key"
    assert seen["transport"] == "http-streamable" and seen["clientinfo"] is None
    assert re.fullmatch(r"[a-z0-9]{16}\|[a-z0-9]{16}", seen["sessionid"]), seen["sessionid"]
    assert "taskHub=mcpwebhookhub" in seen["statusUri"]
    assert anonymous["principalName"] is None and anonymous["principal"] is None
    log = runtime.log_text()   # neither the key nor the principal is logged by the host
    assert "any-key" not in log and seen["principal"] not in log and "mia.mcp" not in log


def test_legacy_sse_transport(runtime: RuntimeProcess) -> None:
    """The SDK's SSE client against ``…/mcp/sse``: same tools and results, MCP errors, and the payload says
    ``http-sse`` with the initialize's clientInfo (stateful session) and the GET's identity."""

    async def scenario() -> tuple[Any, ...]:
        async with _sse(runtime, {"X-Dev-User": "sid.sse"}) as client:
            seen = await _tool_round(client)
            with pytest.raises(MCPError) as missing:
                await client.call_tool("add", {"b": 1})
            who = json.loads(_text(await client.call_tool("WHOAMI")))
            return client.protocol_version, seen, missing.value, who

    version, seen, missing, who = asyncio.run(scenario())
    assert version == "2025-06-18"
    _check_round(seen)
    assert (missing.code, missing.message) == (
        -32602, "One or more required tool properties are missing values. Please provide: a")
    assert who["transport"] == "http-sse" and who["principalName"] == "sid.sse"
    assert who["clientinfo"]["name"] and "version" in who["clientinfo"]
    assert who["sessionid"] is None


def test_legacy_mode_client_over_streamable_http(runtime: RuntimeProcess) -> None:
    """``mode="legacy"`` (no discover probe) connects the same way."""

    async def scenario() -> str:
        http_client = httpx2.AsyncClient(timeout=httpx2.Timeout(30.0, read=60.0))
        async with Client(streamable_http_client(runtime.url(MCP), http_client=http_client),
                          mode="legacy") as client:
            return _text(await client.call_tool("echo", {"text": "legacy"}))

    assert asyncio.run(scenario()) == "legacy"


# ---- raw HTTP


def _raw(rt: RuntimeProcess, method: str, path: str, body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(rt.url(path), data=data, method=method)
    for k, v in {"Content-Type": "application/json", "Accept": ACCEPT, **(headers or {})}.items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


def _sse_messages(body: bytes) -> list[dict]:
    records = [r for r in body.decode().split("\n\n") if r.strip()]
    out = []
    for record in records:
        lines = record.split("\n")
        assert lines[0] == "event: message", record
        out.append(json.loads(lines[1].removeprefix("data: ")))
    return out


def test_streamable_http_status_codes(runtime: RuntimeProcess) -> None:
    """§2.1: 405 for GET/DELETE, 406 without both media types, 202 for notifications and responses, 400 for an
    unparsable state or body, SSE-framed single answers, the session id only for initialize, -32601 for
    ``server/discover`` and ``tasks/*``, empty resource/prompt lists, ping/logging → {}."""
    assert _raw(runtime, "GET", MCP)[0] == 405
    status, _, body = _raw(runtime, "DELETE", MCP)
    assert (status, body) == (405, b"")
    status, _, body = _raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           headers={"Accept": "application/json"})
    assert status == 406 and json.loads(body)["error"]["code"] == -32000
    assert "Not Acceptable" in json.loads(body)["error"]["message"]
    status, headers, body = _raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "method": "notifications/initialized"})
    assert (status, body) == (202, b"") and "content-type" not in headers
    assert _raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "id": 9, "result": {}})[0] == 202
    status, _, body = _raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "id": 1, "method": "ping"},
                           headers={"Mcp-Session-Id": "not-a-state"})
    assert status == 400 and json.loads(body)["error"] == {"code": -32000, "message": "Invalid client state."}
    status, _, body = _raw(runtime, "POST", MCP, raw=b"[1, 2]")
    assert status == 400 and json.loads(body)["error"]["code"] == -32000
    status, _, body = _raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "id": 3, "method": "ping"},
                           headers={"X-Dev-User": "not valid!"})   # the HTTP triggers' rule, as JSON-RPC
    assert status == 400 and json.loads(body)["error"] == {
        "code": -32000, "message": "X-Dev-User must be 1-64 characters [A-Za-z0-9._@-]."}

    init = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
            "params": {"protocolVersion": "2025-03-26", "capabilities": {},
                       "clientInfo": {"name": "t", "version": "1"}}}
    status, headers, body = _raw(runtime, "POST", MCP, init)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    assert headers["cache-control"] == "no-cache,no-store"
    assert re.fullmatch(r"[a-z0-9]{16}\|[a-z0-9]{16}", headers["mcp-session-id"])
    [answer] = _sse_messages(body)
    assert answer["id"] == 0 and answer["result"]["protocolVersion"] == "2025-03-26"
    assert answer["result"]["instructions"] == "Fixture tools for tests/integration/test_mcp_webhook.py."
    status, headers, body = _raw(runtime, "POST", MCP, {**init, "params": {**init["params"],
                                                                           "protocolVersion": "2099-01-01"}})
    assert _sse_messages(body)[0]["result"]["protocolVersion"] == "2025-06-18"
    session = {"Mcp-Session-Id": "abc|def"}   # any parsable state: stateless, no initialize needed
    for method, expected in [("ping", {}), ("logging/setLevel", {}), ("resources/list", {"resources": []}),
                             ("prompts/list", {"prompts": []})]:
        status, headers, body = _raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "id": 5, "method": method,
                                                            "params": {"level": "info"}}, headers=session)
        assert status == 200 and "mcp-session-id" not in headers
        assert _sse_messages(body) == [{"jsonrpc": "2.0", "id": 5, "result": expected}]
    for method in ("server/discover", "tasks/get", "completion/complete"):
        [error] = _sse_messages(_raw(runtime, "POST", MCP, {"jsonrpc": "2.0", "id": "x", "method": method})[2])
        assert error == {"jsonrpc": "2.0", "id": "x",
                         "error": {"code": -32601, "message": f"Method '{method}' is not available."}}
    call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}}
    [error] = _sse_messages(_raw(runtime, "POST", MCP + "/", call)[2])   # trailing slash: still streamable
    assert error["error"]["code"] == -32602


def test_legacy_sse_raw_endpoint_ping_and_400s(runtime: RuntimeProcess) -> None:
    """§2.2: the endpoint event (with ``&code=`` when the GET carried a key), answers as ``message`` records, the
    server's ping requests, ``202 Accepted`` for messages, the 400s and 405s."""
    assert _raw(runtime, "POST", MCP + "/sse", {})[0] == 405
    assert _raw(runtime, "GET", MCP + "/message")[0] == 405
    status, _, body = _raw(runtime, "POST", MCP + "/message", {"jsonrpc": "2.0", "id": 1, "method": "ping"})
    assert status == 400 and json.loads(body).startswith("Missing service context.")
    status, _, body = _raw(runtime, "POST", MCP + "/message?azmcpcs=garbage", {})
    assert status == 400 and json.loads(body).startswith("Invalid client state.")
    status, _, body = _raw(runtime, "POST", MCP + "/message?azmcpcs=aaaa%7Cbbbb", {})
    assert status == 400 and json.loads(body).startswith("No active session for client 'aaaa' and instance 'bbbb'")

    async def scenario() -> tuple[str, list[dict], int, int, bytes]:
        async with httpx2.AsyncClient(timeout=httpx2.Timeout(10.0)) as http:
            async with http.stream("GET", runtime.url(MCP + "/sse?code=k%2B1")) as stream:
                assert stream.headers["content-type"] == "text/event-stream"
                lines = stream.aiter_lines()
                endpoint = await _next_event(lines)
                assert endpoint[0] == "endpoint"
                message_url = runtime.url(MCP + "/" + endpoint[1])
                empty = await http.post(message_url, content=b"")
                accepted = await http.post(message_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
                events = [await _next_event(lines), await _next_event(lines)]  # the answer and a ping, any order
                ping = next(json.loads(d) for e, d in events if json.loads(d).get("method") == "ping")
                pong = await http.post(message_url, json={"jsonrpc": "2.0", "id": ping["id"], "result": {}})
                return endpoint[1], [json.loads(d) for _, d in events], accepted.status_code, pong.status_code, \
                    empty.content

    endpoint, events, accepted, pong, empty = asyncio.run(scenario())
    assert re.fullmatch(r"message\?azmcpcs=[a-z0-9]{16}\|[a-z0-9]{16}&code=k%2B1", endpoint), endpoint
    assert json.loads(empty) == "No message in request body."
    assert accepted == 202 and pong == 202
    answer = next(e for e in events if e.get("id") == 1 and "result" in e)
    assert [t["name"] for t in answer["result"]["tools"]] == [t["name"] for t in EXPECTED_TOOLS]


async def _next_event(lines: Any, timeout: float = 10.0) -> tuple[str, str]:
    """The next SSE record from an ``aiter_lines()`` iterator: ``(event, data)``."""
    event, data = "", ""

    async def read() -> tuple[str, str]:
        nonlocal event, data
        async for line in lines:
            if line == "" and event:
                return event, data
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = line.removeprefix("data: ")
        raise AssertionError("SSE stream ended")

    return await asyncio.wait_for(read(), timeout)


# ---- registration


def test_input_schema_rules() -> None:
    """§4.2: arrays with ``items`` (enum inside), types unmapped (``float`` stays), ``required`` always present and
    de-duplicated, nameless items dropped, case-insensitive keys; §5.4 plain results are never parsed."""
    schema = input_schema_from_properties(json.dumps([
        {"propertyName": "tags", "propertyType": "string", "isArray": True, "enumValues": ["x"], "isRequired": True},
        {"PROPERTYNAME": "amount", "propertytype": "float", "Description": "EUR", "isRequired": True},
        {"propertyName": "amount", "propertyType": "float", "description": "EUR", "isRequired": True},
        {"propertyName": "", "propertyType": "string"},
    ]))
    assert schema == {"type": "object", "properties": {
        "tags": {"type": "array", "items": {"type": "string", "enum": ["x"]}, "description": ""},
        "amount": {"type": "float", "description": "EUR"}}, "required": ["tags", "amount"]}
    assert input_schema_from_properties(None) == {"type": "object", "properties": {}, "required": []}
    assert map_tool_result('{"a": 1}', use_result_schema=False) == {"content": [{"type": "text", "text": '{"a": 1}'}]}
    assert map_tool_result(None, use_result_schema=False) == {"content": [{"type": "text", "text": ""}]}
    with pytest.raises(ValueError):
        map_tool_result("not an envelope", use_result_schema=True)
    block = json.dumps({"type": "text", "text": "t"})
    assert map_tool_result(json.dumps({"type": "multi_content_result", "content": json.dumps([json.loads(block)] * 2)}),
                           use_result_schema=True) == {"content": [{"type": "text", "text": "t"}] * 2}
    assert map_tool_result(json.dumps({"type": "text", "content": block, "structuredContent": '{"a": 3}'}),
                           use_result_schema=True) == {"content": [{"type": "text", "text": "t"}],
                                                       "structuredContent": {"a": 3}}
    with pytest.raises(ValueError):   # the mcp_tool wrapper's envelope for a plain str: not JSON → isError (§5.4)
        map_tool_result(json.dumps({"type": "text", "content": block, "structuredContent": "plain"}),
                        use_result_schema=True)
    assert map_tool_result("", use_result_schema=True) == {"content": []}


def test_worker_schemas_metadata_and_mcp_tool_wrapper_registration() -> None:
    """§4.1/§4.3 through the real decorators: ``inputSchema`` + ``useWorkerInputSchema`` verbatim (its
    ``required`` checked), ``outputSchema``, ``metadata`` → ``_meta``; ``@app.mcp_tool()`` parameters → properties;
    a bad worker schema or toolProperties stops the host."""
    import azure.functions as func

    from local_runtime.app_loader import AppLoadError, classify_function
    from local_runtime.mcp_webhook import build_tools

    app = func.FunctionApp()
    worker_schema = {"type": "object", "properties": {"q": {"type": "string", "minLength": 1}}, "required": ["q"]}

    @app.mcp_tool_trigger(arg_name="context", tool_name="search", description="Search.",
                          input_schema=json.dumps(worker_schema), use_worker_input_schema=True,
                          output_schema='{"type": "object", "properties": {"hits": {"type": "integer"}}}',
                          metadata='{"ui": {"x": 1}}')
    def search(context: str) -> str:
        return ""

    # Defined without this module's ``from __future__ import annotations``: with string annotations the wrapper
    # types every property "string" (azure-functions 1.26 reads the annotations without resolving them).
    namespace: dict[str, Any] = {"app": app}
    exec(compile(textwrap.dedent('''
        @app.mcp_tool()
        def refund(order_id: str, amount: float, tags: list[str], note: str | None = None) -> str:
            """Refund an order."""
            return ""
    '''), "<refund>", "exec", dont_inherit=True), namespace)

    tools = build_tools(classify_function(f) for f in app.get_functions())
    listed = {t.name: _dump(t.listing()) for t in tools.values()}
    assert listed["search"] == {"name": "search", "description": "Search.", "inputSchema": worker_schema,
                                "outputSchema": {"type": "object", "properties": {"hits": {"type": "integer"}}},
                                "_meta": {"ui": {"x": 1}}}
    assert tools["search"].required == ("q",)
    assert listed["refund"]["inputSchema"] == {"type": "object", "properties": {
        "order_id": {"type": "string", "description": ""}, "amount": {"type": "number", "description": ""},
        "tags": {"type": "array", "items": {"type": "string"}, "description": ""},
        "note": {"type": "string", "description": ""}}, "required": ["order_id", "amount", "tags"]}

    bad = func.FunctionApp()

    @bad.mcp_tool_trigger(arg_name="context", tool_name="b", input_schema='{"type": "string"}',
                          use_worker_input_schema=True)
    def b(context: str) -> str:
        return ""

    with pytest.raises(AppLoadError, match="inputSchema must be a JSON object"):
        build_tools(classify_function(f) for f in bad.get_functions())


def test_duplicate_tool_names_fail_the_host_start(tmp_path: Path) -> None:
    """Two tools whose names differ only in case: the host does not start, and says why."""
    app = tmp_path / "dup_app"
    app.mkdir()
    (app / "host.json").write_text('{"version": "2.0"}')
    (app / "function_app.py").write_text(textwrap.dedent('''
        import azure.functions as func
        app = func.FunctionApp()

        @app.mcp_tool_trigger(arg_name="context", tool_name="Lookup", description="one")
        def lookup_one(context: str) -> str:
            return "1"

        @app.mcp_tool_trigger(arg_name="context", tool_name="lookup", description="two")
        def lookup_two(context: str) -> str:
            return "2"
    '''))
    rt = RuntimeProcess(app, state=tmp_path / "state.sqlite3", log_path=tmp_path / "rt.log", ready_timeout=30)
    started = time.monotonic()
    with pytest.raises(RuntimeStartError):
        rt.start()
    assert time.monotonic() - started < 30
    assert "MCP tool name 'lookup' (function 'lookup_two') is already used by function 'lookup_one'" in rt.log_text()
