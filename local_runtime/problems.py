"""RFC 9457 problem responses of the local host itself (not of the app): unrouted paths, wrong methods, over-long
request lines and headers, invalid developer identities.

Body: ``{"type": "urn:durable-agents:problem:<code>", "title", "status", "detail", "instance": <request path>}`` with
``Content-Type: application/problem+json``. ``instance`` is the request's path *without* the query string, and no
``detail`` ever quotes the query string or a header value: a query can carry ``code=`` keys (function keys) and
headers carry tokens. Paths longer than :data:`MAX_INSTANCE_CHARS` are cut (a 414's path can be 8 KiB and more).

Limits (:func:`limits_middleware`), modelled on Kestrel, the server in front of the Functions host:
``MaxRequestLineSize`` 8 KiB → here the request target (path and query) over :data:`MAX_URL_BYTES` → **414
uri-too-long**; ``MaxRequestHeadersTotalSize`` 32 KiB and ``MaxRequestHeaderCount`` 100 → here headers over
:data:`MAX_HEADER_BYTES` (sum of ``len(name) + len(value) + 4``) or over :data:`MAX_HEADER_COUNT` → **431
headers-too-large**. aiohttp's own parser limits are raised to :data:`PARSER_LIMITS` so that these answers come from
here; a request beyond *those* (a single 256 KiB line) still gets aiohttp's plain-text 400.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

__all__ = ["PROBLEM_TYPE_PREFIX", "PROBLEM_CONTENT_TYPE", "MAX_URL_BYTES", "MAX_HEADER_BYTES", "MAX_HEADER_COUNT",
           "PARSER_LIMITS", "ParserLimits", "problem", "limits_middleware", "NoQueryLogFilter"]

PROBLEM_TYPE_PREFIX = "urn:durable-agents:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_COUNT = 100
MAX_INSTANCE_CHARS = 256


@dataclass(frozen=True)
class ParserLimits:
    """aiohttp request-parser limits (``web.AppRunner(max_line_size=..., max_field_size=..., max_headers=...)``):
    bytes of the request line, bytes of one header line, number of headers."""

    max_line_size: int = 256 * 1024
    max_field_size: int = 256 * 1024
    max_headers: int = 1000


PARSER_LIMITS = ParserLimits()

_TITLES = {
    "route-not-found": "No function matches this path",
    "method-not-allowed": "Method not allowed on this route",
    "uri-too-long": "Request URI too long",
    "headers-too-large": "Request headers too large",
    "invalid-dev-identity": "Invalid developer identity headers",
}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, code: str, detail: str, path: str, headers: dict[str, str] | None = None) -> web.Response:
    """A problem+json response. ``code`` is one of the keys of the catalogue (``route-not-found``,
    ``method-not-allowed``, ``uri-too-long``, ``headers-too-large``, ``invalid-dev-identity``); ``path`` must be
    the request path without its query (it becomes ``instance``, cut to 256 characters)."""
    body = {"type": PROBLEM_TYPE_PREFIX + code, "title": _TITLES[code], "status": status, "detail": detail,
            "instance": path[:MAX_INSTANCE_CHARS]}
    return web.Response(status=status, body=json.dumps(body).encode("utf-8"), headers=headers,
                        content_type=PROBLEM_CONTENT_TYPE, charset="utf-8")


def _raw_path(request: web.Request) -> str:
    """The request target's path part as sent (no query, not decoded)."""
    return request.raw_path.split("?", 1)[0]


@web.middleware
async def limits_middleware(request: web.Request, handler: _Handler) -> web.StreamResponse:
    """414 when the request target is over :data:`MAX_URL_BYTES`, 431 when the headers are over
    :data:`MAX_HEADER_BYTES` or :data:`MAX_HEADER_COUNT`; otherwise the handler's response."""
    if len(request.raw_path.encode("utf-8", "surrogateescape")) > MAX_URL_BYTES:
        return problem(414, "uri-too-long", f"The request URI is longer than {MAX_URL_BYTES} bytes.",
                       _raw_path(request))
    raw = request.raw_headers
    size = sum(len(k) + len(v) + 4 for k, v in raw)
    if len(raw) > MAX_HEADER_COUNT or size > MAX_HEADER_BYTES:
        return problem(431, "headers-too-large", f"The request has more than {MAX_HEADER_COUNT} headers or more "
                       f"than {MAX_HEADER_BYTES} bytes of headers.", _raw_path(request))
    return await handler(request)


class NoQueryLogFilter(logging.Filter):
    """For aiohttp's ``aiohttp.server`` logger: a record about a request that could not be parsed (an
    ``HttpProcessingError`` such as ``BadHttpMessage``, whose text quotes the raw request line, query string
    included) keeps only the exception's class name, without traceback. Other records pass unchanged."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], HttpProcessingError):
            name = type(record.exc_info[1]).__name__
            record.msg = "Error handling a request (%s); request line and details not logged"
            record.args = (name,)
            record.exc_info = None
            record.exc_text = None
        return True
