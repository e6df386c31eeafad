"""The browser app's static files (``GET ui/{*path}``): internal, not part of the public API.

The app (README "The inbox (browser)") is plain HTML, JavaScript and CSS in ``durable_agents/_ui/``, shipped in the
wheel (package data) and in the Functions deployment (``durable_agents/`` is deployed, .funcignore); nothing is
fetched from elsewhere at run time. :func:`serve_ui` answers:

* ``<p>/ui`` → 308 to ``<p>/ui/`` (so that the page's relative links resolve under ``ui/``);
* ``<p>/ui/`` and ``<p>/ui/index.html`` → the page; ``<p>/ui/<name>`` → the file ``<name>`` of the folder;
* anything else → 404 ``route-not-found``: only the names of the files in the folder itself are served (no
  sub-folders, no dot files), compared as exact strings, so ``..``, encoded slashes or absolute paths never reach
  the file system.

Every answer has ``Content-Type`` from :data:`CONTENT_TYPES`, ``Cache-Control: no-cache`` with a strong ``ETag``
(``If-None-Match`` → 304; the files are not fingerprinted, so browsers revalidate instead of keeping stale
code), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and the Content Security Policy
:data:`CONTENT_SECURITY_POLICY` (same origin only: no inline script, no CDN, no frames).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import azure.functions as func

from durable_agents._problems import Problem, request_path

__all__ = ["CONTENT_SECURITY_POLICY", "CONTENT_TYPES", "UI_DIR", "serve_ui", "ui_files"]

UI_DIR = Path(__file__).resolve().parent.parent / "_ui"
"""The folder of the static files (``durable_agents/_ui``)."""

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
"""Content type per file suffix; files with other suffixes are not served."""

CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
"""The ``Content-Security-Policy`` of every UI answer."""


@dataclass(frozen=True)
class _File:
    body: bytes
    content_type: str
    etag: str


@lru_cache(maxsize=1)
def ui_files() -> dict[str, _File]:
    """The servable files of :data:`UI_DIR` by name (read once per process): regular files directly in the
    folder, not starting with ``.``, whose suffix is in :data:`CONTENT_TYPES`. ``{}`` when the folder is missing."""
    files: dict[str, _File] = {}
    if not UI_DIR.is_dir():
        return files
    for path in sorted(UI_DIR.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix.lower())
        if content_type is None or path.name.startswith(".") or not path.is_file():
            continue
        body = path.read_bytes()
        files[path.name] = _File(body, content_type, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


def _headers(content_type: str | None = None, etag: str | None = None) -> dict[str, str]:
    headers = {
        "Cache-Control": "no-cache",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    }
    if content_type:
        headers["Content-Type"] = content_type
    if etag:
        headers["ETag"] = etag
    return headers


def serve_ui(req: func.HttpRequest) -> func.HttpResponse:
    """Answer ``GET ui/{*path}`` (module docstring): 200 with the file, 304 for a matching ``If-None-Match``,
    308 from ``ui`` to ``ui/``, 404 problem ``route-not-found`` for any other name. Never raises for a caller's
    path."""
    name = req.route_params.get("path") or ""
    path = request_path(req)
    if not name and not path.endswith("/"):
        return func.HttpResponse(status_code=308, headers={**_headers(), "Location": path + "/"})
    found = ui_files().get(name or "index.html")
    if found is None:
        return Problem("route-not-found", "There is no such file in the browser app.").response(req)
    if found.etag in [tag.strip() for tag in (req.headers.get("If-None-Match") or "").split(",")]:
        return func.HttpResponse(status_code=304, headers=_headers(etag=found.etag))
    return func.HttpResponse(body=found.body, status_code=200, headers=_headers(found.content_type, found.etag))
