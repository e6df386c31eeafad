"""The local host: loads the app, opens the state file, serves HTTP triggers + the Durable HTTP API on 127.0.0.1.

:func:`run_host` is what ``python -m local_runtime`` calls. Startup order: local settings → host.json → import the
app (``get_functions()`` once) → SQLite state → engine (resumes unfinished instances) → HTTP server → banner.
``GET /admin/host/status`` answers ``{"state": "Running"}`` from then on.

HTTP-trigger requests pass, in order: the size limits (414/431, :mod:`.problems`), route matching (404
``route-not-found`` for no route or an unsafe path, 405 ``method-not-allowed`` with ``Allow``), the identity
emulation (:mod:`.identity`; 400 ``invalid-dev-identity``), then the function. With ``auth`` on (the default;
``--no-auth`` turns it off) the host sets ``WEBSITE_AUTH_ENABLED=True`` in its environment before importing the app,
as App Service does when authentication is on; with it off the variable is removed. No log line of the host
carries a query string (there is no access log; function lines log the path only).

Functions with an ``mcpToolTrigger`` are MCP tools served at ``/runtime/webhooks/mcp`` (:mod:`.mcp_webhook`, the
Functions MCP extension's webhook; routes added before the HTTP-trigger catch-all). Two tool names equal apart
from case stop the start (:class:`AppLoadError`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from .app_loader import AppLoadError, FunctionInfo, Registry, apply_local_settings, load_functions, load_host_config
from .durable_api import DurableApi, client_json
from .engine import Engine
from .http_triggers import HttpTriggers, to_http_request, to_web_response, unsafe_path
from .identity import InvalidDevIdentity, identity_headers
from .limits import ENV_MAX_PAYLOAD_BYTES, PayloadLimits
from .mcp_webhook import MCP_ROOT, McpServerConfig, McpTool, McpWebhook, build_tools, load_mcp_config
from .problems import NoQueryLogFilter, ProblemAppRunner, limits_middleware, problem
from .store import Store
from .worker import invoke

__all__ = ["HostOptions", "run_host", "build_host"]

log = logging.getLogger("local_runtime")


@dataclass
class HostOptions:
    """CLI options: ``port`` (7071), ``state`` (default ``<app_dir>/.local/durable-state.sqlite3``), ``app_dir``,
    ``host`` (listen address, 127.0.0.1), ``auth`` (App Service authentication emulation, on; ``--no-auth``),
    ``max_payload_bytes`` / ``max_custom_status_kb`` (``--max-payload-bytes`` / ``--max-custom-status-kb``; None:
    ``LOCAL_RUNTIME_MAX_PAYLOAD_BYTES`` / ``LOCAL_RUNTIME_MAX_CUSTOM_STATUS_KB``, else the production defaults;
    :mod:`.limits`)."""

    app_dir: Path
    port: int = 7071
    state: Path | None = None
    host: str = "127.0.0.1"
    auth: bool = True
    max_payload_bytes: int | None = None
    max_custom_status_kb: int | None = None


class _Host:
    def __init__(self, opts: HostOptions, registry: Registry, store: Store, engine: Engine, hub: str,
                 prefix: str, mcp_tools: dict[str, McpTool] | None = None, mcp_config: McpServerConfig | None = None):
        self.opts = opts
        self.registry = registry
        self.store = store
        self.engine = engine
        self.hub = hub
        self.triggers = HttpTriggers(registry.http, prefix)
        self.client = client_json(opts.port, hub, opts.host)
        self.durable = DurableApi(engine, hub)
        self.mcp = McpWebhook(mcp_tools or {}, mcp_config or McpServerConfig(), self.run_mcp_tool, auth=opts.auth)

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=[limits_middleware])
        app.router.add_get("/admin/host/status", self.host_status)
        self.durable.add_routes(app)
        self.mcp.add_routes(app)   # before the catch-all
        app.router.add_route("*", "/{tail:.*}", self.http_trigger)
        return app

    async def host_status(self, request: web.Request) -> web.Response:
        return web.json_response({"state": "Running"}, headers={"X-Local-Runtime-Pid": str(os.getpid())})

    async def http_trigger(self, request: web.Request) -> web.Response:
        raw_path = request.raw_path.split("?", 1)[0]
        if unsafe_path(raw_path):
            return problem(404, "route-not-found", "The path has a dot segment or an encoded slash; no function "
                           "route matches it.", raw_path)
        route, params, path_matched = self.triggers.match(request.path, request.method)
        if route is None:
            allow = self.triggers.allowed_methods(request.path) if path_matched else []
            if allow:
                return problem(405, "method-not-allowed", f"The route does not accept {request.method}; it accepts "
                               f"{', '.join(allow)}.", raw_path, headers={"Allow": ", ".join(allow)})
            return problem(404, "route-not-found", f"No function route matches {request.method} {request.path}.",
                           raw_path)
        info = route.info
        if info.trigger_name is None:  # an httpTrigger binding without a "name": nothing to pass the request as
            log.error("HTTP function '%s' has no trigger parameter name", info.name)
            return web.Response(status=500)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        try:
            headers = identity_headers(request.headers.items(), peer, enabled=self.opts.auth)
        except InvalidDevIdentity as exc:
            return problem(400, "invalid-dev-identity", str(exc), raw_path)
        kwargs: dict[str, Any] = {info.trigger_name: await to_http_request(request, params, headers)}
        if info.client_binding:
            kwargs[info.client_binding] = self.client
        log.info("Executing HTTP function '%s' (%s %s)", info.name, request.method, request.path)
        try:
            result = await invoke(info, kwargs, self.engine.act_pool, str(self.opts.app_dir))
        except Exception:  # noqa: BLE001 - like the host: log it, answer 500
            log.error("HTTP function '%s' failed:\n%s", info.name, traceback.format_exc())
            return web.Response(status=500)
        return to_web_response(result)

    async def run_mcp_tool(self, info: FunctionInfo, payload: str) -> Any:
        """Invoke an MCP tool function: the payload text as its trigger value, the durableClient binding as for HTTP
        functions (:data:`.mcp_webhook.ToolRunner`)."""
        if info.trigger_name is None:
            raise RuntimeError(f"MCP tool function '{info.name}' has no trigger parameter name")
        kwargs: dict[str, Any] = {info.trigger_name: payload}
        if info.client_binding:
            kwargs[info.client_binding] = self.client
        return await invoke(info, kwargs, self.engine.act_pool, str(self.opts.app_dir))

    def banner(self) -> str:
        base = f"http://{self.opts.host}:{self.opts.port}"
        lines = ["", "Functions:", ""]
        for r in self.triggers.routes:
            methods = ",".join(r.info.methods) if r.info.methods else "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS"
            lines.append(f"        {r.info.name}: [{methods}] {self.triggers.url_of(r, base)}")
        lines.append("")
        for f in self.registry.functions:
            if f.kind not in ("http", "mcp_tool"):
                lines.append(f"        {f.name}: {f.trigger.get('type')}")
        if self.mcp.tools:
            lines += ["", "MCP tools:", ""]
            lines += [f"        {t.info.name}: mcpToolTrigger (tool '{t.name}')" for t in self.mcp.tools.values()]
            lines += ["", f"MCP server: {base}{MCP_ROOT} (streamable HTTP; legacy SSE: {base}{MCP_ROOT}/sse)"]
        lines += ["", f"Durable HTTP API: {base}/runtime/webhooks/durabletask/ (task hub '{self.hub}')",
                  f"State file: {self.store.path}", ""]
        return "\n".join(lines)


def _set_auth_env(auth: bool) -> None:
    """``WEBSITE_AUTH_ENABLED=True`` when the emulation is on, else remove it (the app must not trust principal
    headers the host does not vouch for)."""
    if auth:
        os.environ["WEBSITE_AUTH_ENABLED"] = "True"
    elif os.environ.pop("WEBSITE_AUTH_ENABLED", None) is not None:
        log.warning("--no-auth: removed WEBSITE_AUTH_ENABLED from the environment")


async def build_host(opts: HostOptions) -> tuple[_Host, web.AppRunner]:
    """Load everything and start serving; returns the host and the started aiohttp runner."""
    app_dir = opts.app_dir.resolve()
    applied = apply_local_settings(app_dir)
    log.info("Applied %d value(s) from local.settings.json", len(applied))
    cfg = load_host_config(app_dir)
    _set_auth_env(opts.auth)   # after local settings: the CLI decides, like App Service's platform setting
    _, registry = load_functions(app_dir)
    mcp_tools = build_tools(registry.mcp_tools)   # AppLoadError for duplicate names or bad bindings
    mcp_config = load_mcp_config(app_dir)
    state = opts.state or app_dir / ".local" / "durable-state.sqlite3"
    try:  # after local settings: local.settings.json may set the variables, the CLI flags win
        limits = PayloadLimits.from_env(max_payload_bytes=opts.max_payload_bytes,
                                        max_custom_status_kb=opts.max_custom_status_kb)
    except ValueError as exc:
        raise AppLoadError(str(exc)) from exc
    if limits.max_payload_bytes:
        log.info("Payload limit: %s bytes per payload (%s), custom status %s", f"{limits.max_payload_bytes:,}",
                 ENV_MAX_PAYLOAD_BYTES,
                 f"{limits.max_custom_status_kb} KB of UTF-16" if limits.max_custom_status_kb else "unlimited")
    else:
        log.warning("Payload limit off (%s=0): payloads the Durable Task Scheduler refuses pass here",
                    ENV_MAX_PAYLOAD_BYTES)
    store = Store(Path(state))
    engine = Engine(store, registry, app_dir, limits=limits)
    host = _Host(opts, registry, store, engine, cfg.hub_name, cfg.route_prefix, mcp_tools, mcp_config)
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, NoQueryLogFilter) for f in server_log.filters):
        server_log.addFilter(NoQueryLogFilter())
    runner = ProblemAppRunner(host.make_app(), access_log=None)   # PARSER_LIMITS; problem+json for unparsable
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port)
    try:
        await site.start()   # bind first: a second host on the same port must not touch the state file
    except OSError as exc:
        await runner.cleanup()
        store.close()
        raise AppLoadError(f"cannot listen on {opts.host}:{opts.port}: {exc.strerror}") from exc
    await engine.start()
    log.info("%s", host.banner())
    log.info("Host started; listening on http://%s:%d (App Service authentication emulation %s)", opts.host,
             opts.port, "on: X-Dev-User on loopback" if opts.auth else "off (--no-auth)")
    return host, runner


async def run_host(opts: HostOptions) -> None:
    """Run until SIGINT/SIGTERM, then stop serving and dispatching."""
    host, runner = await build_host(opts)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except NotImplementedError:  # pragma: no cover - non-POSIX
            pass
    await stop.wait()
    log.info("Stopping the host")
    await runner.cleanup()
    await host.engine.stop()
    host.store.close()
    try:  # the durable client's shared aiohttp session (azure-functions-durable 1.7)
        from azure.durable_functions.models.utils import http_utils
        await http_utils._close_session()
    except Exception:  # noqa: BLE001 - best effort on shutdown
        pass
