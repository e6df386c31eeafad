"""Start ``python -m local_runtime`` as a separate process for integration tests.

Usage::

    with RuntimeProcess(app_dir, state=tmp_path / "state.sqlite3", env={"X": "1"},
                        log_path=tmp_path / "runtime.log") as rt:
        requests_to(rt.url("/api/agents"))          # rt.base_url == "http://127.0.0.1:<port>"
        rt.kill()                                   # SIGKILL (crash)
        rt.start()                                  # same port, state and log file (appended)
    # leaving the block stops it (SIGTERM, then SIGKILL after a grace period)

* The process runs with ``cwd=app_dir`` (like ``func start``), ``PYTHONPATH`` starting with the repository root (so
  ``local_runtime`` is importable for any app folder), the given extra environment, and the venv's Python.
* :meth:`RuntimeProcess.start` waits until ``GET /admin/host/status`` answers 200 ``{"state": "Running"}``; it raises
  :class:`RuntimeStartError` with the log tail if the process exits or does not get ready within ``ready_timeout``.
* stdout and stderr go to ``log_path`` (default: a temporary file); :meth:`RuntimeProcess.log_text` reads it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["RuntimeProcess", "RuntimeStartError", "free_port", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]


class RuntimeStartError(RuntimeError):
    """The runtime process exited or did not become ready; the message holds the log tail."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released; a tiny race is possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RuntimeProcess:
    """One local runtime process.

    ``app_dir``: the function app folder. ``state``: SQLite state file (default ``<app_dir>/.local/...`` as the
    runtime decides). ``env``: extra environment variables (override the inherited ones). ``port``: default a free
    port. ``log_level``: ``--log-level`` (default ``DEBUG``, so logs show every episode). ``python``: interpreter
    (default ``sys.executable``). ``ready_timeout``: seconds to wait for the host status.
    """

    def __init__(self, app_dir: Path | str, *, state: Path | str | None = None, env: dict[str, str] | None = None,
                 port: int | None = None, log_path: Path | str | None = None, log_level: str = "DEBUG",
                 python: str | None = None, ready_timeout: float = 60.0):
        self.app_dir = Path(app_dir).resolve()
        self.state = Path(state).resolve() if state else None
        self.env = dict(env or {})
        self.port = port or free_port()
        if log_path is None:
            fd, name = tempfile.mkstemp(prefix="local-runtime-", suffix=".log")
            os.close(fd)
            log_path = name
        self.log_path = Path(log_path)
        self.log_level = log_level
        self.python = python or sys.executable
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """Absolute URL for a path such as ``/api/x``."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def command(self) -> list[str]:
        """The command line used to start the runtime."""
        cmd = [self.python, "-m", "local_runtime", "--port", str(self.port), "--app-dir", str(self.app_dir),
               "--log-level", self.log_level]
        if self.state:
            cmd += ["--state", str(self.state)]
        return cmd

    def start(self) -> RuntimeProcess:
        """Start the process and wait until it is Running. Returns self."""
        if self.proc and self.proc.poll() is None:
            raise RuntimeError("runtime process already running")
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.command(), cwd=str(self.app_dir), env=env, stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeStartError(f"local runtime exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url("/admin/host/status"), timeout=2) as resp:
                    ours = resp.headers.get("X-Local-Runtime-Pid") in (None, str(self.proc.pid))
                    if resp.status == 200 and json.loads(resp.read()).get("state") == "Running" and ours:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError):
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeStartError(f"local runtime not ready after {self.ready_timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, wait up to ``timeout`` s, then SIGKILL. Returns the exit code (None if never started)."""
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.proc.returncode

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return bool(self.proc and self.proc.poll() is None)

    def log_text(self) -> str:
        """The whole log file."""
        return self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def __enter__(self) -> RuntimeProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
