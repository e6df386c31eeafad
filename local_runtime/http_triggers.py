"""HTTP triggers: ASP.NET-style route templates and ``func.HttpRequest``/``func.HttpResponse`` bridging.

Templates (protocol §6.2): literal segments (matched case-insensitively), ``{name}``, ``{name?}`` (optional),
``{name:int}``/``{name:int?}`` and the constraints ``int``, ``long``, ``bool``, ``alpha``, ``guid``, ``double``,
``float``, ``decimal``, ``datetime`` (others match any segment), and ``{*rest}`` catch-all. Auth levels are not
enforced, like ``func start``.

A request path with a dot segment (``.``/``..``, also percent-encoded such as ``%2e%2e``) or an encoded slash or
backslash (``%2F``, ``%5C``) in any segment matches no route (:func:`unsafe_path`): the host answers 404
``route-not-found`` instead of letting ``runs/{id}`` see ``id=".."`` or ``"a/b"``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import azure.functions as func
from aiohttp import web

from .app_loader import FunctionInfo

__all__ = ["Route", "compile_route", "HttpTriggers", "unsafe_path", "to_http_request", "to_web_response"]

log = logging.getLogger("local_runtime")

_CONSTRAINTS = {
    "int": r"-?\d+", "long": r"-?\d+", "bool": r"(?:true|false)", "alpha": r"[A-Za-z]+",
    "guid": r"\{?[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}\}?",
    "double": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?",
    "datetime": r"[^/]+",
}
_PARAM = re.compile(r"\{([^{}]+)\}")


@dataclass
class Route:
    """A compiled route: ``regex`` over the path after the prefix, ``names`` maps group → parameter name."""

    info: FunctionInfo
    template: str
    regex: re.Pattern
    names: dict[str, str]
    precedence: tuple


def _param(spec: str) -> tuple[str, str, bool, bool]:
    """``name[:constraint[(args)]...][?]`` or ``*name`` → (name, pattern, optional, catch_all)."""
    catch_all = spec.startswith("*")
    spec = spec.lstrip("*")
    optional = spec.endswith("?")
    spec = spec.rstrip("?")
    if "=" in spec:
        spec, _, _ = spec.partition("=")
        optional = True
    name, *constraints = spec.split(":")
    pattern = r".*" if catch_all else r"[^/]+"
    for c in constraints:
        base = c.split("(")[0].lower()
        if base in _CONSTRAINTS:
            pattern = _CONSTRAINTS[base]
    return name, pattern, optional, catch_all


def compile_route(info: FunctionInfo, template: str) -> Route:
    """Compile a route template (without the prefix) into a :class:`Route`."""
    names: dict[str, str] = {}
    regex = ""
    precedence = []
    for seg in [s for s in template.strip("/").split("/") if s != ""]:
        whole = _PARAM.fullmatch(seg)
        if whole:
            name, pattern, optional, catch_all = _param(whole.group(1))
            group = f"g{len(names)}"
            names[group] = name
            if catch_all:
                regex += f"(?:/(?P<{group}>{pattern}))?"
                precedence.append(4)
            elif optional:
                regex += f"(?:/(?P<{group}>{pattern}))?"
                precedence.append(3)
            else:
                regex += f"/(?P<{group}>{pattern})"
                precedence.append(1 if pattern != r"[^/]+" else 2)
            continue
        part = "/"
        pos = 0
        for m in _PARAM.finditer(seg):
            part += re.escape(seg[pos:m.start()])
            name, pattern, _, _ = _param(m.group(1))
            group = f"g{len(names)}"
            names[group] = name
            part += f"(?P<{group}>{pattern if pattern != r'[^/]+' else r'[^/]+?'})"
            pos = m.end()
        part += re.escape(seg[pos:])
        regex += part
        precedence.append(0 if pos == 0 else 1)
    return Route(info, template, re.compile(f"^{regex}/?$", re.IGNORECASE), names, tuple(precedence))


def unsafe_path(raw_path: str) -> bool:
    """True when the raw (not decoded) request path, query excluded, has a segment that decodes to ``.`` or
    ``..`` or contains ``/`` or ``\\`` once decoded (``%2F``, ``%5C``), or a literal backslash."""
    if "\\" in raw_path:
        return True
    for seg in raw_path.split("/"):
        if "%" not in seg and seg not in (".", ".."):
            continue
        dec = unquote(seg)
        if dec in (".", "..") or "/" in dec or "\\" in dec:
            return True
    return False


class HttpTriggers:
    """Matches requests to HTTP functions and invokes them (the ``invoke`` callable does the worker part)."""

    def __init__(self, functions: list[FunctionInfo], route_prefix: str):
        self.prefix = route_prefix.strip("/")
        self.routes = sorted((compile_route(f, f.route or f.name) for f in functions),
                             key=lambda r: (r.precedence, -len(r.template)))

    def url_of(self, route: Route, base_url: str) -> str:
        """The display URL of a route, like the func start banner."""
        path = "/".join(p for p in (self.prefix, route.template.strip("/")) if p)
        return f"{base_url}/{path}"

    def match(self, path: str, method: str) -> tuple[Route | None, dict[str, str], bool]:
        """Return ``(route, route_params, path_matched)`` for a request path (with the prefix)."""
        rest = self._rest(path)
        if rest is None:
            return None, {}, False
        path_matched = False
        for r in self.routes:
            m = r.regex.match(rest if rest != "/" else "")
            if m is None and rest == "/":
                m = r.regex.match("/")
            if m is None:
                continue
            path_matched = True
            if r.info.methods and method.upper() not in r.info.methods:
                continue
            params = {r.names[g]: v for g, v in m.groupdict().items() if v is not None}
            return r, params, True
        return None, {}, path_matched

    def allowed_methods(self, path: str) -> list[str]:
        """The methods (upper case, sorted) of the routes whose template matches ``path``: the ``Allow`` header of a
        405. Empty when no route matches or one matching route takes any method."""
        methods: set[str] = set()
        rest = self._rest(path)
        if rest is None:
            return []
        for r in self.routes:
            if not (r.regex.match(rest if rest != "/" else "") or (rest == "/" and r.regex.match("/"))):
                continue
            if not r.info.methods:
                return []
            methods.update(m.upper() for m in r.info.methods)
        return sorted(methods)

    def _rest(self, path: str) -> str | None:
        """The path after the route prefix (``/`` when nothing follows it), or None when the prefix is missing."""
        if not self.prefix:
            return path or "/"
        p = "/" + self.prefix
        if not (path.lower() == p.lower() or path.lower().startswith(p.lower() + "/")):
            return None
        return path[len(p):] or "/"


async def to_http_request(request: web.Request, route_params: dict[str, str],
                          headers: dict[str, str] | None = None) -> func.HttpRequest:
    """Build the ``func.HttpRequest`` (method, url, headers, params, route_params, body) for an aiohttp request;
    ``headers`` replaces the request's own (the host passes them through :mod:`local_runtime.identity`)."""
    body = await request.read()
    return func.HttpRequest(method=request.method, url=str(request.url),
                            headers=dict(request.headers) if headers is None else headers,
                            params=dict(request.query), route_params=route_params, body=body)


def to_web_response(result: Any) -> web.Response:
    """Convert a function's return value (``func.HttpResponse``, str, bytes or None) into an aiohttp response."""
    if isinstance(result, func.HttpResponse):
        headers = {k: v for k, v in result.headers.items()}
        if not any(k.lower() == "content-type" for k in headers) and result.mimetype:
            headers["Content-Type"] = (f"{result.mimetype}; charset={result.charset}" if result.charset
                                       else result.mimetype)
        return web.Response(status=result.status_code, body=result.get_body(), headers=headers)
    if result is None:
        return web.Response(status=204)
    if isinstance(result, bytes):
        return web.Response(status=200, body=result, content_type="application/octet-stream")
    return web.Response(status=200, text=str(result), content_type="text/plain")
