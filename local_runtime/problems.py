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
here.

A request aiohttp's HTTP parser cannot parse at all (a request line over ``PARSER_LIMITS.max_line_size``, a header
line over ``max_field_size``, more than ``max_headers`` headers, invalid bytes in the request line or a header name,
a bad ``Content-Length``, an unknown HTTP version, garbage) never reaches the app or its middlewares: aiohttp answers
it from ``RequestHandler.handle_error`` with a ``text/plain`` 400 whose text quotes the request line. Connections
served by :class:`ProblemAppRunner` use :class:`ProblemRequestHandler` instead, which answers **414 uri-too-long**,
**431 headers-too-large** or **400 bad-request** as problem+json without ``instance`` (the path is not known) and
with nothing of the request in it, and logs only the exception's class name. aiohttp has no public hook for this
(aio-libs/aiohttp#3287); see :class:`ProblemAppRunner` for what it relies on and its fallback.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, HttpProcessingError, LineTooLong
from aiohttp.web_request import BaseRequest

__all__ = ["PROBLEM_TYPE_PREFIX", "PROBLEM_CONTENT_TYPE", "MAX_URL_BYTES", "MAX_HEADER_BYTES", "MAX_HEADER_COUNT",
           "PARSER_LIMITS", "ParserLimits", "problem", "limits_middleware", "NoQueryLogFilter",
           "ProblemRequestHandler", "ProblemAppRunner"]

PROBLEM_TYPE_PREFIX = "urn:durable-agents:problem:"
PROBLEM_CONTENT_TYPE = "application/problem+json"
MAX_URL_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024
MAX_HEADER_COUNT = 100
MAX_INSTANCE_CHARS = 256


@dataclass(frozen=True)
class ParserLimits:
    """aiohttp request-parser limits (``web.AppRunner(max_line_size=..., max_field_size=..., max_headers=...)``):
    bytes of the request line, bytes of one header line, number of headers. ``max_line_size`` and
    ``max_field_size`` differ: the limit a ``LineTooLong`` reports is what tells a too-long request line (414) from
    a too-long header line (431)."""

    max_line_size: int = 256 * 1024
    max_field_size: int = 128 * 1024
    max_headers: int = 1000


PARSER_LIMITS = ParserLimits()

_TITLES = {
    "route-not-found": "No function matches this path",
    "method-not-allowed": "Method not allowed on this route",
    "uri-too-long": "Request URI too long",
    "headers-too-large": "Request headers too large",
    "invalid-dev-identity": "Invalid developer identity headers",
    "bad-request": "Malformed HTTP request",
}

_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def problem(status: int, code: str, detail: str, path: str | None,
            headers: dict[str, str] | None = None) -> web.Response:
    """A problem+json response. ``code`` is one of the keys of the catalogue (``route-not-found``,
    ``method-not-allowed``, ``uri-too-long``, ``headers-too-large``, ``invalid-dev-identity``, ``bad-request``);
    ``path`` must be the request path without its query (it becomes ``instance``, cut to 256 characters), or
    ``None`` when it is not known (no ``instance`` then)."""
    body: dict[str, object] = {"type": PROBLEM_TYPE_PREFIX + code, "title": _TITLES[code], "status": status,
                               "detail": detail}
    if path is not None:
        body["instance"] = path[:MAX_INSTANCE_CHARS]
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


_UNPARSED_LOG = "Error handling a request (%s); request line and details not logged"
_TOO_MANY_HEADERS = "Too many headers received"   # aiohttp's text, both parsers (C and pure Python)


def _unparsed_problem(exc: HttpProcessingError, limits: ParserLimits) -> web.Response:
    """The answer to a request the parser rejected with ``exc``. Nothing of ``exc``'s text is used: it quotes the
    request line or a header."""
    if isinstance(exc, LineTooLong) and len(exc.args) > 1:
        limit = exc.args[1]
        if limit == limits.max_line_size and limit != limits.max_field_size:
            return problem(414, "uri-too-long", f"The request line is longer than {limit} bytes.", None)
        if limit == limits.max_field_size and limit != limits.max_line_size:
            return problem(431, "headers-too-large", f"A header line is longer than {limit} bytes.", None)
    if exc.message == _TOO_MANY_HEADERS:
        return problem(431, "headers-too-large", f"The request has more than {limits.max_headers} headers.", None)
    return problem(400, "bad-request", f"The request is not valid HTTP/1.1 ({type(exc).__name__}).", None)


class ProblemRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, except that a request its parser rejected (``handle_error`` with status 400
    and an ``HttpProcessingError``) gets a problem+json answer (:func:`_unparsed_problem`) and one log line on
    ``aiohttp.server`` with the exception's class name only, at aiohttp's own level (debug for a bad method on a
    connection's first request — non-HTTP traffic —, else error). Every other call is aiohttp's ``handle_error``.

    No state of its own (``__slots__ = ()``): :class:`_ProblemServer` turns the handlers aiohttp builds into this
    class."""

    __slots__ = ()
    limits: ParserLimits = PARSER_LIMITS

    def handle_error(self, request: BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status != 400 or not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        first = getattr(self, "_request_count", 1) == 1
        level = logging.DEBUG if first and isinstance(exc, BadHttpMethod) else logging.ERROR
        self.logger.log(level, _UNPARSED_LOG, type(exc).__name__)
        if request.writer.output_size > 0:   # as aiohttp: the connection is broken
            raise ConnectionError("Response is sent already, cannot send another response with the error message")
        resp = _unparsed_problem(exc, self.limits)
        resp.force_close()
        return resp


class _ProblemServer(web.Server):
    """``web.Server`` (the protocol factory) whose connection handlers are :class:`ProblemRequestHandler`.
    aiohttp builds the handler (``Server.__call__``, with all its arguments and its own fallback); only its class
    changes, which adds no state."""

    def __call__(self) -> web.RequestHandler:
        handler = super().__call__()
        if type(handler) is web.RequestHandler:
            handler.__class__ = ProblemRequestHandler
        return handler


def _hook_supported(version: str = aiohttp.__version__) -> bool:
    """The hook relies on aiohttp 3.x internals: ``RequestHandler.handle_error(request, status, exc, message)``
    being what answers a parse error (``_make_error_handler``, aiohttp ≥ 3.8), ``AppRunner._make_server``
    returning a plain ``web.Server``, and ``__slots__``-only ``RequestHandler`` (3.8 and later). Checked with 3.14."""
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    return major == 3 and minor >= 8


class ProblemAppRunner(web.AppRunner):
    """``web.AppRunner`` with :data:`PARSER_LIMITS` as defaults whose connections answer unparsable requests with
    problem+json (:class:`ProblemRequestHandler`).

    aiohttp has no public way to change that answer (aio-libs/aiohttp#3287; middlewares never see such requests),
    so this overrides ``AppRunner._make_server`` and changes the class of the ``web.Server`` it returns. On an
    aiohttp version outside :func:`_hook_supported`, or if ``_make_server`` returns something else, it logs a
    warning once and serves as a plain ``AppRunner``: unparsable requests then get aiohttp's ``text/plain`` 400
    (which quotes the request line); :class:`NoQueryLogFilter` still keeps it out of the log."""

    __slots__ = ()

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        kwargs.setdefault("max_line_size", PARSER_LIMITS.max_line_size)
        kwargs.setdefault("max_field_size", PARSER_LIMITS.max_field_size)
        kwargs.setdefault("max_headers", PARSER_LIMITS.max_headers)
        super().__init__(app, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        if _hook_supported() and type(server) is web.Server:
            server.__class__ = _ProblemServer
        else:
            logging.getLogger("local_runtime").warning(
                "aiohttp %s: malformed requests get aiohttp's plain-text 400, not problem+json",
                aiohttp.__version__)
        return server
