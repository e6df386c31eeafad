"""A real MCP server for the tests, written with the official ``mcp`` Python SDK (2.x: ``mcp.server.mcpserver``).

Tools:

* ``add(a: int, b: int) -> int``: the sum;
* ``lookup(id: str) -> str``: a JSON text for ids in :data:`RECORDS`; an unknown id raises ``ToolError``, which
  the SDK answers as a tool result with ``isError: true`` (the model must read it, the run goes on).

Every ``tools/list`` and ``tools/call`` request the server handles is appended, one JSON line each, to the counter
file given with ``--counter`` (``{"op": "list"}`` / ``{"op": "call", "tool", "arguments"}``), so a test can count
what the server really saw, also across processes (stdio servers are spawned by the MCP client, once per
connection). :func:`read_counter` reads it.

Run as ``python -m tests.support.mcp_server --transport stdio|streamable-http|sse --counter FILE [--port N]``
(from the repository root; HTTP transports listen on 127.0.0.1). :class:`McpHttpServer` starts one over HTTP
as a subprocess and waits until its port accepts connections.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

from tests.support.runtime_process import REPO_ROOT, free_port

__all__ = ["RECORDS", "McpHttpServer", "build_server", "read_counter", "stdio_params"]

RECORDS = {"A-1": {"id": "A-1", "title": "keyboard", "stock": 4}, "B-2": {"id": "B-2", "title": "monitor", "stock": 0}}
"""What ``lookup`` knows."""


def _record(counter: Path, entry: dict[str, Any]) -> None:
    """Append one JSON line (``O_APPEND``: lines of concurrent writers do not interleave)."""
    with counter.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(entry, sort_keys=True) + "\n")


class _CountingServer(MCPServer):
    """``MCPServer`` that records every tool listing it answers in the counter file."""

    def __init__(self, counter: Path, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._counter = counter

    async def list_tools(self):  # type: ignore[no-untyped-def]
        _record(self._counter, {"op": "list"})
        return await super().list_tools()


def build_server(counter: Path) -> MCPServer:
    """The test server with its two tools; each call is recorded in ``counter`` before it runs."""
    server = _CountingServer(counter, name="test-tools")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        _record(counter, {"op": "call", "tool": "add", "arguments": {"a": a, "b": b}})
        return a + b

    @server.tool()
    def lookup(id: str) -> str:
        """Look a record up by its id (A-1, B-2)."""
        _record(counter, {"op": "call", "tool": "lookup", "arguments": {"id": id}})
        record = RECORDS.get(id)
        if record is None:
            raise ToolError(f"no record {id}")
        return json.dumps(record, sort_keys=True)

    return server


def read_counter(counter: Path | str) -> list[dict[str, Any]]:
    """The entries of a counter file, oldest first (``[]`` when the server recorded nothing yet)."""
    path = Path(counter)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def stdio_params(counter: Path | str) -> dict[str, Any]:
    """``MCPServerStdio`` params that spawn this server over stdio with ``counter`` (JSON-only: command, args, cwd,
    env)."""
    return {"command": sys.executable,
            "args": ["-m", "tests.support.mcp_server", "--transport", "stdio", "--counter", str(counter)],
            "cwd": str(REPO_ROOT), "env": {"PYTHONPATH": str(REPO_ROOT), "PATH": os.environ.get("PATH", "")}}


class McpHttpServer:
    """The test server over ``streamable-http`` (``url`` ends with ``/mcp``) or ``sse`` (``/sse``), as a subprocess
    on a free loopback port. ``start()`` waits (up to 30 s) until the port accepts connections; ``stop()`` ends
    it (also after ``kill()``)."""

    def __init__(self, transport: str, counter: Path, log_path: Path | None = None, port: int | None = None) -> None:
        self.transport = transport
        self.counter = counter
        self.port = port or free_port()
        self.log_path = log_path or counter.with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        path = "/mcp" if self.transport == "streamable-http" else "/sse"
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> McpHttpServer:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.mcp_server", "--transport", self.transport,
             "--counter", str(self.counter), "--port", str(self.port)],
            cwd=str(REPO_ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the MCP server exited: {self.log_path.read_text(errors='replace')[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("the MCP server did not listen within 30 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def __enter__(self) -> McpHttpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transport", choices=("stdio", "streamable-http", "sse"), default="stdio")
    parser.add_argument("--counter", required=True)
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    server = build_server(Path(args.counter))
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "sse":
        server.run("sse", host="127.0.0.1", port=args.port)
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
