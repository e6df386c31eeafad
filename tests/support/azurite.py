"""Start the Azurite storage emulator (its Table or its Blob service) for tests, on a free loopback port.

Azurite is the real emulator (npm package ``azurite``, pinned by ``scripts/install-azurite.sh`` into
``.local/node``), not a mock. Use :func:`azurite_table` / :func:`azurite_blob` as a context manager::

    with azurite_table(tmp_path) as connection_string:
        TableClient.from_connection_string(connection_string, table_name="t")
    with azurite_blob(tmp_path) as connection_string:
        ContainerClient.from_connection_string(connection_string, container_name="c")

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "AZURITE_ACCOUNT",
    "AZURITE_KEY",
    "AzuriteError",
    "azurite_blob",
    "azurite_table",
    "blob_connection_string",
    "connection_string",
    "find_azurite_blob",
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


def _find_azurite(service: str) -> list[str] | None:
    local_bin = REPO_DIR / ".local" / "node" / "node_modules" / ".bin"
    for name in (f"azurite-{service}", "azurite"):
        candidate = local_bin / name
        if candidate.exists():
            return [str(candidate)]
    for name in (f"azurite-{service}", "azurite"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def find_azurite_table() -> list[str] | None:
    """The command that starts Azurite's Table service, or ``None`` when Azurite is not installed.

    Looks in ``.local/node/node_modules/.bin`` (``scripts/install-azurite.sh``) first, then on ``PATH``;
    prefers the ``azurite-table`` binary, else ``azurite`` (all services; the blob and queue services then listen
    on free ports too).
    """
    return _find_azurite("table")


def find_azurite_blob() -> list[str] | None:
    """The command that starts Azurite's Blob service, or ``None`` when Azurite is not installed (same search as
    :func:`find_azurite_table`, preferring the ``azurite-blob`` binary; with ``azurite`` the table and queue
    services then listen on free ports too)."""
    return _find_azurite("blob")


def _finder(service: str) -> Callable[[], list[str] | None]:
    """The ``find_azurite_*`` function of ``service``, looked up when called (tests replace them)."""
    finders = {"table": find_azurite_table, "blob": find_azurite_blob}
    if service not in finders:
        raise ValueError(f"unknown Azurite service {service!r}; expected one of {sorted(finders)}")
    return finders[service]


def require_azurite(service: str = "table") -> list[str]:
    """Return the command that starts Azurite's ``service`` (``"table"`` or ``"blob"``); when missing, fail the
    test if the ``CI`` environment variable is set (CI must run these tests), else skip it with the install
    hint."""
    import pytest

    command = _finder(service)()
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


def blob_connection_string(port: int) -> str:
    """Connection string of the well-known ``devstoreaccount1`` account for an Azurite Blob service on ``port``."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{AZURITE_ACCOUNT};"
    )


# service -> (its host/port flags, the other services' flags when the all-in-one binary runs, readiness path,
# connection string)
_SERVICES = {
    "table": ("table", ("blob", "queue"), "Tables", connection_string),
    "blob": ("blob", ("table", "queue"), "?comp=list", blob_connection_string),
}


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(port: int, path: str = "Tables") -> bool:
    """Whether the service answers HTTP at ``path`` (any status, e.g. 403 for an unsigned request, means it is
    up)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}/{path}", timeout=1):
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
    with _azurite("table", workdir, command, startup_timeout_s) as value:
        yield value


@contextmanager
def azurite_blob(
    workdir: str | Path | None = None, *, command: list[str] | None = None, startup_timeout_s: float = 60.0
) -> Iterator[str]:
    """Run Azurite's Blob service on a free 127.0.0.1 port; yield its connection string (``BlobEndpoint=...``);
    stop it on exit. Same flags, folder, log and errors as :func:`azurite_table`."""
    with _azurite("blob", workdir, command, startup_timeout_s) as value:
        yield value


@contextmanager
def _azurite(
    service: str, workdir: str | Path | None, command: list[str] | None, startup_timeout_s: float
) -> Iterator[str]:
    flag, others, ready_path, make_connection_string = _SERVICES[service]
    command = command or _finder(service)()
    if command is None:
        raise AzuriteError(f"Azurite is not installed: {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="azurite-", dir=workdir) as location:
        log_path = Path(location) / "azurite.log"
        last_error = "not started"
        for _ in range(3):
            port = _free_port()
            args = [
                *command,
                f"--{flag}Host", "127.0.0.1", f"--{flag}Port", str(port),
                "--inMemoryPersistence", "--disableTelemetry", "--silent", "--skipApiVersionCheck",
            ]
            if Path(command[-1]).name == "azurite":
                for other in others:
                    args += [f"--{other}Host", "127.0.0.1", f"--{other}Port", str(_free_port())]
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
                    if _ready(port, ready_path):
                        yield make_connection_string(port)
                        return
                    time.sleep(0.1)
                else:
                    last_error = f"not ready after {startup_timeout_s} s"
            finally:
                _stop(process)
        log_text = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
        raise AzuriteError(f"Azurite did not start ({last_error}); {' '.join(command)}; log:\n{log_text}")
