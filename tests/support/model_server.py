"""A scripted OpenAI-compatible model server for tests (aiohttp, 127.0.0.1, non-streaming).

It serves ``POST /v1/responses`` (Responses API) and ``POST /v1/chat/completions`` (Chat Completions) in the
shapes the real ``openai`` client parses, answering from a *script*: a list of steps, each either a final text
(or a JSON value for structured output) or one or more function calls. The step for a request is chosen from the
request alone, so a retried request gets the same answer:

* a step with ``"when"`` is chosen when all its conditions hold (first match wins): ``"turn"`` (int, see below),
  ``"toolOutputs"`` (int: number of tool-output items / tool messages in the input), ``"userContains"`` (text in
  the last user message, case-insensitive), ``"lastToolOutputContains"``, ``"instructionsContain"`` (text in the
  agent's instructions: the Responses ``instructions`` or the first system/developer message; tells the agents of a
  workflow apart), ``"path"`` (``"responses"`` or ``"chat"``), ``"inputHas"`` (a Responses input item type present
  in the input, e.g. ``"mcp_approval_response"``), ``"toolTypes"`` (a tool type, or a list of them, that the
  request's ``tools`` must all offer, e.g. ``"web_search"``);
* otherwise the step at the conversation position among the steps without ``when``: the number of tool-calling
  model turns already in the input (runs of ``function_call`` items / assistant messages with ``tool_calls``;
  with one call per step this equals the number of tool outputs), clamped to the last step.

Step fields::

    {"text": "Done."}                                 final text
    {"json": {"approved": true}}                      final text holding this JSON value (structured output)
    {"calls": [{"name": "lookup_order", "arguments": {"order_id": "ORD-1001"}}, ...]}   function calls;
        arguments may be a dict or a JSON string; call ids are "call_<step>_<k>" unless "id" is given
    "text" may accompany "calls" (a message before the calls)
    {"items": [{"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {...}}, ...]}
        Responses output items sent as given, before the message and the calls: the items of hosted tools
        (web_search_call, file_search_call, code_interpreter_call, image_generation_call, mcp_list_tools, mcp_call,
        mcp_approval_request, tool_search_call, tool_search_output...); the Chat Completions path ignores them
    {"failures": [{"status": 429, "headers": {"retry-after": "1"}, "body": {...}, "times": 1,
                   "delay": 0.0}, ...]}           the first requests that reach this step fail in order
                                                   (each spec "times" times, default 1); status 0 = drop the
                                                   connection without an answer
    {"delay": 2.5}                                 seconds to wait before answering (every request of the step)
    {"usage": {"input": 10, "output": 5}}         token counts (default: from the sizes of request and answer)

A function call to a tool the request does not offer is answered with HTTP 400 (a script error surfaces in the
test). Every request is recorded as ``{"path", "query", "headers", "body", "tools", "step", "status"}`` (``tools``:
the body's ``tools`` list as sent, ``[]`` when absent; headers: the
``authorization``, ``api-key``, ``x-stainless-retry-count`` and ``user-agent`` ones) (``server.requests`` in-process,
``GET /_requests`` over HTTP, and ``--record FILE`` as JSON lines).

Use in-process (a thread runs the event loop)::

    with ScriptedModelServer([{"calls": [...]}, {"text": "ok"}]) as server:
        base_url = server.base_url          # "http://127.0.0.1:<port>/v1"

or as a separate process (survives a killed test host)::

    python -m tests.support.model_server --script FILE --port N [--record FILE]

which prints ``READY <port>`` on stdout once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

__all__ = ["ScriptedModelServer", "call", "calls_step", "text_step"]

# Request headers kept in the record (this is a test server: the credentials it sees are test values).
_RECORDED_HEADERS = ("authorization", "api-key", "x-stainless-retry-count", "user-agent")


def call(name: str, arguments: Mapping[str, Any] | str | None = None, *, id: str | None = None) -> dict[str, Any]:
    """A function call of a step: ``{"name", "arguments"[, "id"]}``."""
    out: dict[str, Any] = {"name": name, "arguments": arguments if arguments is not None else {}}
    if id:
        out["id"] = id
    return out


def calls_step(*calls: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A step answering with the given function calls (see :func:`call`); ``extra`` adds step fields."""
    return {"calls": list(calls), **extra}


def text_step(text: str, **extra: Any) -> dict[str, Any]:
    """A step answering with a final text; ``extra`` adds step fields (``when``, ``failures``, ``delay``...)."""
    return {"text": text, **extra}


def _normalize_script(script: Any) -> list[dict[str, Any]]:
    if isinstance(script, Mapping):
        script = script.get("steps")
    if not isinstance(script, Sequence) or isinstance(script, str) or not script:
        raise ValueError("a script is a non-empty list of steps (or {'steps': [...]})")
    steps = []
    for index, step in enumerate(script):
        if not isinstance(step, Mapping):
            raise ValueError(f"step {index} is not an object")
        if not any(key in step for key in ("text", "json", "calls", "items")):
            raise ValueError(f"step {index} has none of 'text', 'json', 'calls', 'items'")
        steps.append(copy.deepcopy(dict(step)))
    return steps


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    return ""


class _Conversation:
    """What a request says about the conversation so far (both APIs)."""

    def __init__(self, kind: str, body: Mapping[str, Any]):
        self.kind = kind
        self.turns = 0
        self.tool_outputs = 0
        self.user_text = ""
        self.last_tool_output = ""
        self.instructions = ""
        self.tools: set[str] = set()
        self.tool_types: set[str] = set()
        self.input_types: set[str] = set()
        if kind == "responses":
            self.instructions = str(body.get("instructions") or "")
            items = body.get("input")
            if isinstance(items, str):
                items = [{"role": "user", "content": items}]
            previous_type = None
            for item in items or []:
                if not isinstance(item, Mapping):
                    continue
                item_type = item.get("type", "message")
                self.input_types.add(str(item_type))
                if item_type == "function_call" and previous_type != "function_call":
                    self.turns += 1
                elif item_type == "function_call_output":
                    self.tool_outputs += 1
                    self.last_tool_output = _text(item.get("output"))
                elif item_type == "message" and item.get("role") == "user":
                    self.user_text = _text(item.get("content"))
                previous_type = item_type
            for tool in body.get("tools") or []:
                if isinstance(tool, Mapping) and tool.get("name"):
                    self.tools.add(str(tool["name"]))
                if isinstance(tool, Mapping) and tool.get("type"):
                    self.tool_types.add(str(tool["type"]))
        else:
            for message in body.get("messages") or []:
                if not isinstance(message, Mapping):
                    continue
                role = message.get("role")
                if role == "assistant" and message.get("tool_calls"):
                    self.turns += 1
                elif role == "tool":
                    self.tool_outputs += 1
                    self.last_tool_output = _text(message.get("content"))
                elif role == "user":
                    self.user_text = _text(message.get("content"))
                elif role in ("system", "developer") and not self.instructions:
                    self.instructions = _text(message.get("content"))
            for tool in body.get("tools") or []:
                function = tool.get("function") if isinstance(tool, Mapping) else None
                if isinstance(function, Mapping) and function.get("name"):
                    self.tools.add(str(function["name"]))


class ScriptedModelServer:
    """The scripted server (module docstring). ``start()`` / ``stop()`` or use as a context manager.

    Attributes: ``port``, ``base_url`` (``http://127.0.0.1:<port>/v1``, for ``OPENAI_BASE_URL``), ``requests``
    (the recorded requests, in arrival order). ``port=0`` picks a free port.
    """

    def __init__(self, script: Any, *, port: int = 0, record_path: str | Path | None = None):
        self.steps = _normalize_script(script)
        self.port = port
        self.requests: list[dict[str, Any]] = []
        self._record_path = Path(record_path) if record_path else None
        self._lock = threading.Lock()
        self._failure_counts: dict[int, int] = {}
        self._counter = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # -- lifecycle --------------------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server (``http://127.0.0.1:<port>/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def _app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/responses", self._handle_responses)
        app.router.add_post("/v1/chat/completions", self._handle_chat)
        # Azure OpenAI style paths (deployment-based chat, /openai/responses) for completeness.
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._handle_chat)
        app.router.add_post("/openai/responses", self._handle_responses)
        app.router.add_get("/_requests", self._handle_requests)
        app.router.add_get("/health", self._handle_health)
        return app

    async def start_async(self) -> None:
        """Start listening on the current event loop (for use inside an async program)."""
        self._runner = web.AppRunner(self._app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = sockets[0].getsockname()[1]

    async def stop_async(self) -> None:
        """Stop listening (counterpart of :meth:`start_async`)."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def start(self) -> ScriptedModelServer:
        """Start the server on a background thread; returns once it accepts connections."""

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.start_async())
            except BaseException as exc:  # noqa: BLE001 - reported to start()
                self._startup_error = exc
                self._ready.set()
                loop.close()
                return
            self._ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.stop_async())
                loop.close()

        self._thread = threading.Thread(target=run, name="scripted-model-server", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise RuntimeError(f"model server failed to start: {self._startup_error!r}")
        return self

    def stop(self) -> None:
        """Stop the background server thread (idempotent)."""
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._thread = None

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- step selection ---------------------------------------------------------------------------------------

    def _matches(self, when: Mapping[str, Any], conv: _Conversation) -> bool:
        checks = {
            "turn": lambda v: conv.turns == v,
            "toolOutputs": lambda v: conv.tool_outputs == v,
            "userContains": lambda v: str(v).lower() in conv.user_text.lower(),
            "lastToolOutputContains": lambda v: str(v).lower() in conv.last_tool_output.lower(),
            "instructionsContain": lambda v: str(v).lower() in conv.instructions.lower(),
            "path": lambda v: v == conv.kind,
            "inputHas": lambda v: str(v) in conv.input_types,
            "toolTypes": lambda v: {str(t) for t in ([v] if isinstance(v, str) else v)} <= conv.tool_types,
        }
        return all(checks[key](value) for key, value in when.items() if key in checks)

    def select_step(self, conv: _Conversation) -> int:
        """Index of the step answering a request (module docstring)."""
        for index, step in enumerate(self.steps):
            if isinstance(step.get("when"), Mapping) and self._matches(step["when"], conv):
                return index
        positional = [i for i, step in enumerate(self.steps) if "when" not in step]
        if not positional:
            raise LookupError("no step matches the request")
        return positional[min(conv.turns, len(positional) - 1)]

    def _next_failure(self, index: int) -> dict[str, Any] | None:
        failures = self.steps[index].get("failures") or []
        with self._lock:
            seen = self._failure_counts.get(index, 0)
            budget = 0
            for spec in failures:
                budget += int(spec.get("times", 1))
                if seen < budget:
                    self._failure_counts[index] = seen + 1
                    return spec
        return None

    # -- recording --------------------------------------------------------------------------------------------

    def _record(self, request: web.Request, body: Any, step: int | None, status: int) -> None:
        headers = {name: request.headers[name] for name in _RECORDED_HEADERS if name in request.headers}
        tools = body.get("tools") if isinstance(body, Mapping) else None
        entry = {"path": request.path, "query": dict(request.query), "headers": headers, "body": body,
                 "tools": tools if isinstance(tools, list) else [], "step": step, "status": status}
        with self._lock:
            self.requests.append(entry)
            if self._record_path is not None:
                with self._record_path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(entry) + "\n")

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    # -- handlers ---------------------------------------------------------------------------------------------

    async def _handle_health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "steps": len(self.steps)})

    async def _handle_requests(self, request: web.Request) -> web.Response:
        with self._lock:
            return web.json_response(list(self.requests))

    async def _handle_responses(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "responses")

    async def _handle_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, "chat")

    async def _handle(self, request: web.Request, kind: str) -> web.StreamResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            self._record(request, None, None, 400)
            return _error(400, "request body is not JSON")
        if body.get("stream"):
            self._record(request, body, None, 400)
            return _error(400, "the scripted model server does not stream")
        conv = _Conversation(kind, body)
        try:
            index = self.select_step(conv)
        except LookupError as exc:
            self._record(request, body, None, 400)
            return _error(400, str(exc))
        step = self.steps[index]
        failure = self._next_failure(index)
        if failure is not None:
            if failure.get("delay"):
                await asyncio.sleep(float(failure["delay"]))
            status = int(failure.get("status", 500))
            self._record(request, body, index, status)
            if status == 0:
                if request.transport is not None:
                    request.transport.abort()
                raise ConnectionResetError("scripted connection drop")
            payload = failure.get("body") or {"error": {"message": f"scripted failure {status}",
                                                        "type": "scripted_error", "code": str(status)}}
            return web.json_response(payload, status=status, headers=dict(failure.get("headers") or {}))
        if step.get("delay"):
            await asyncio.sleep(float(step["delay"]))
        missing = [c["name"] for c in step.get("calls") or [] if c["name"] not in conv.tools]
        if missing:
            self._record(request, body, index, 400)
            return _error(400, f"script step {index} calls tools the request does not offer: {missing}; "
                               f"offered: {sorted(conv.tools)}")
        number = self._next_id()
        answer = (_responses_answer if kind == "responses" else _chat_answer)(step, index, number, body)
        self._record(request, body, index, 200)
        return web.json_response(answer, headers={"x-request-id": f"req_scripted_{number}"})


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": {"message": message, "type": "invalid_request_error", "code": None}},
                             status=status)


def _step_text(step: Mapping[str, Any]) -> str | None:
    if "json" in step:
        return json.dumps(step["json"])
    return step.get("text")


def _arguments(raw: Any) -> str:
    return raw if isinstance(raw, str) else json.dumps(raw if raw is not None else {})


def _usage(step: Mapping[str, Any], body: Any, answer: Any) -> tuple[int, int]:
    usage = step.get("usage") or {}
    input_tokens = int(usage.get("input", max(1, len(json.dumps(body)) // 4)))
    output_tokens = int(usage.get("output", max(1, len(json.dumps(answer)) // 4)))
    return input_tokens, output_tokens


def _responses_answer(step: Mapping[str, Any], index: int, number: int, body: Mapping[str, Any]) -> dict:
    output: list[dict[str, Any]] = [copy.deepcopy(dict(item)) for item in step.get("items") or []]
    text = _step_text(step)
    if text is not None:
        output.append({"type": "message", "id": f"msg_{index}_{number}", "status": "completed",
                       "role": "assistant",
                       "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
    for k, c in enumerate(step.get("calls") or []):
        output.append({"type": "function_call", "id": f"fc_{index}_{k}", "call_id": c.get("id") or f"call_{index}_{k}",
                       "name": c["name"], "arguments": _arguments(c.get("arguments")), "status": "completed"})
    input_tokens, output_tokens = _usage(step, body, output)
    return {
        "id": f"resp_scripted_{number}",
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model") or "scripted",
        "output": output,
        "parallel_tool_calls": bool(body.get("parallel_tool_calls", True)),
        "tool_choice": body.get("tool_choice") or "auto",
        "tools": body.get("tools") or [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "temperature": body.get("temperature"),
        "top_p": body.get("top_p"),
        "text": body.get("text") or {"format": {"type": "text"}},
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def _chat_answer(step: Mapping[str, Any], index: int, number: int, body: Mapping[str, Any]) -> dict:
    tool_calls = [
        {"id": c.get("id") or f"call_{index}_{k}", "type": "function",
         "function": {"name": c["name"], "arguments": _arguments(c.get("arguments"))}}
        for k, c in enumerate(step.get("calls") or [])
    ]
    message: dict[str, Any] = {"role": "assistant", "content": _step_text(step), "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    input_tokens, output_tokens = _usage(step, body, message)
    return {
        "id": f"chatcmpl-scripted-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model") or "scripted",
        "choices": [{"index": 0, "message": message, "logprobs": None,
                     "finish_reason": "tool_calls" if tool_calls else "stop"}],
        "usage": {"prompt_tokens": input_tokens, "completion_tokens": output_tokens,
                  "total_tokens": input_tokens + output_tokens},
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``--script FILE --port N [--record FILE]``; runs until SIGTERM / SIGINT."""
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible model server for tests")
    parser.add_argument("--script", required=True, help="JSON file: a list of steps or {'steps': [...]}")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free port)")
    parser.add_argument("--record", default=None, help="append every request as a JSON line to this file")
    args = parser.parse_args(argv)
    script = json.loads(Path(args.script).read_text(encoding="utf-8"))
    server = ScriptedModelServer(script, port=args.port, record_path=args.record)

    async def serve() -> None:
        await server.start_async()
        print(f"READY {server.port}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop_async()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
