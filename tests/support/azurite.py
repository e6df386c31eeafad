"""Start the Azurite storage emulator (Table service only) for tests, on a free loopback port.

Azurite is the real emulator (npm package ``azurite``, pinned by ``scripts/install-azurite.sh`` into
``.local/node``), not a mock. Use :func:`azurite_table` as a context manager::

    with azurite_table(tmp_path) as connection_string:
        TableClient.from_connection_string(connection_string, table_name="t")

or :func:`require_azurite` first to get a clear skip (locally) or failure (when ``CI`` is set) if it is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "AzuriteError",
    "azurite_table",
    "connection_string",
    "find_azurite_table",
    "require_azurite",
]

REPO_DIR = Path(__file__).resolve().parents[2]
AZURITE_ACCOUNT = "devstoreaccount1"
# The emulator's well-known development account key (public; documented by Microsoft for Azurite).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
INSTALL_HINT = "run scripts/install-azurite.sh (npm install --prefix .local/node azurite@3.37.0)"


class AzuriteError(RuntimeError):
    """Azurite could not be started or did not become ready."""


def find_azurite_table() -> list[str] | None:
    """The command that starts Azurite's Table service, or ``None`` when Azurite is not installed.

    Looks in ``.local/node/node_modules/.bin`` (``scripts/install-azurite.sh``) first, then on ``PATH``;
    prefers the ``azurite-table`` binary, else ``azurite`` (all services; the blob and queue services then listen
    on free ports too).
    """
    local_bin = REPO_DIR / ".local" / "node" / "node_modules" / ".bin"
    for name in ("azurite-table", "azurite"):
        candidate = local_bin / name
        if candidate.exists():
            return [str(candidate)]
    for name in ("azurite-table", "azurite"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def require_azurite() -> list[str]:
    """Return the Azurite command; when missing, fail the test if the ``CI`` environment variable is set (CI must
    run these tests), else skip it with the install hint."""
    import pytest

    command = find_azurite_table()
    if command is None:
        message = f"Azurite is not installed: {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"{message} (CI is set, so the Azurite tests must run)")
        pytest.skip(message)
    return command


def connection_string(port: int) -> str:
    """Connection string of the well-known ``devstoreaccount1`` account for an Azurite Table service on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"TableEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int) -> bool:
    """Whether the Table service answers HTTP (any status, e.g. 403 for an unsigned request, means it is up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}/Tables", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@contextmanager
def azurite_table(
    workdir: str | Path | None = None, *, command: list[str] | None = None, startup_timeout_s: float = 60.0
) -> Iterator[str]:
    """Run Azurite's Table service on a free 127.0.0.1 port; yield its connection string; stop it on exit.

    Flags: ``--inMemoryPersistence --disableTelemetry --silent --skipApiVersionCheck`` (Azurite refuses
    ``--location`` together with in-memory persistence, so the process runs in a temporary folder under
    ``workdir`` instead; its output goes to ``azurite.log`` there). Raises :class:`AzuriteError` when Azurite is not
    installed, exits early or is not ready within ``startup_timeout_s`` seconds (three ports are tried, in case
    a free port is taken between choosing it and binding it).
    """
    command = command or find_azurite_table()
    if command is None:
        raise AzuriteError(f"Azurite is not installed: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="azurite-", dir=workdir) as location:
        log_path = Path(location) / "azurite.log"
        last_error = "not started"
        for _ in range(3):
            port = _free_port()
            args = [
                *command,
                "--tableHost", "127.0.0.1", "--tablePort", str(port),
                "--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck",
            ]
            if Path(command[-1]).name == "azurite":
                args += ["--blobHost", "127.0.0.1", "--blobPort", str(_free_port()),
                         "--queueHost", "127.0.0.1", "--queuePort", str(_free_port())]
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    args, cwd=location, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            try:
                deadline = time.monotonic() + startup_timeout_s
                while time.monotonic() < deadline:
                    if process.poll() is not None:
                        last_error = f"exited with code {process.returncode}"
                        break
                    if _ready(port):
                        yield connection_string(port)
                        return
                    time.sleep(0.1)
                else:
                    last_error = f"not ready after {startup_timeout_s} s"
            finally:
                _stop(process)
        log_text = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise AzuriteError(f"Azurite did not start ({last_error}); {' '.join(command)}; log:\n{log_text}")
