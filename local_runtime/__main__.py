"""``durable-agents-local [--port 7071] [--host 127.0.0.1] [--state PATH] [--app-dir DIR] [--log-level INFO]
[--no-auth] [--max-payload-bytes N] [--max-custom-status-kb N]`` (alias ``python -m local_runtime``; the console
script of the distribution's ``[local]`` extra).

Run it in any Functions app folder like ``func start``: it hosts ``function_app.py`` on ``http://127.0.0.1:<port>``,
serves the Durable HTTP API and keeps durable state in SQLite (default ``<app-dir>/.local/durable-state.sqlite3``).
App Service authentication is emulated (``WEBSITE_AUTH_ENABLED=True``, a developer identity from ``X-Dev-User`` on
loopback; :mod:`local_runtime.identity`) unless ``--no-auth`` is given. The Durable Task Scheduler's payload limits
are enforced (:mod:`local_runtime.limits`: 1 MiB per payload, the extension's 16 KB custom status; the flags or
``LOCAL_RUNTIME_MAX_PAYLOAD_BYTES`` / ``LOCAL_RUNTIME_MAX_CUSTOM_STATUS_KB`` change them, 0 turns one off). Exit code 1
when the app cannot be loaded (or a limit setting is not a whole number >= 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

from .app_loader import AppLoadError


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, configure logging, run the host until SIGINT/SIGTERM."""
    p = argparse.ArgumentParser(prog="durable-agents-local", description="Host a Functions app folder locally "
                                "(HTTP triggers, Durable orchestrations and activities; state in SQLite).")
    p.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    p.add_argument("--host", default="127.0.0.1",
                   help="listen address (default 127.0.0.1; X-Dev-User is honoured from loopback peers only)")
    p.add_argument("--state", type=Path, default=None,
                   help="SQLite state file (default <app-dir>/.local/durable-state.sqlite3)")
    p.add_argument("--app-dir", type=Path, default=Path.cwd(), help="function app folder (default: current)")
    p.add_argument("--log-level", default="INFO", help="DEBUG shows one line per episode (default INFO)")
    p.add_argument("--no-auth", action="store_true",
                   help="no App Service authentication emulation: WEBSITE_AUTH_ENABLED unset, no developer "
                        "identity (client-sent X-MS-CLIENT-PRINCIPAL* headers are still removed)")
    p.add_argument("--max-payload-bytes", type=int, default=None, metavar="N",
                   help="largest payload (orchestration/activity input and output, event, custom status) in bytes "
                        "of UTF-8, as the Durable Task Scheduler allows (default: LOCAL_RUNTIME_MAX_PAYLOAD_BYTES, "
                        "else 1048576; 0: no limit)")
    p.add_argument("--max-custom-status-kb", type=int, default=None, metavar="N",
                   help="the extension's custom status limit in KB of UTF-16 (default: "
                        "LOCAL_RUNTIME_MAX_CUSTOM_STATUS_KB, else 16; 0: no limit)")
    args = p.parse_args(argv)
    if (args.max_payload_bytes or 0) < 0 or (args.max_custom_status_kb or 0) < 0:
        p.error("--max-payload-bytes and --max-custom-status-kb must be 0 (no limit) or more")
    try:
        from .host import HostOptions, run_host
    except ModuleNotFoundError as exc:  # aiohttp comes with the [local] extra
        print(f"durable-agents-local needs the 'local' extra ({exc.name} is missing): "
              "pip install 'durable-agents-functions[local]'", file=sys.stderr)
        return 2
    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        asyncio.run(run_host(HostOptions(app_dir=args.app_dir.resolve(), port=args.port, state=args.state,
                                         host=args.host, auth=not args.no_auth,
                                         max_payload_bytes=args.max_payload_bytes,
                                         max_custom_status_kb=args.max_custom_status_kb)))
    except AppLoadError as exc:
        logging.getLogger("local_runtime").error("Cannot start the local runtime: %s", exc)
        return 1
    # Sync activities still running in worker threads would keep the interpreter alive until they return.
    # Their results are not recorded, so they run again on the next start (at-least-once); exit now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
