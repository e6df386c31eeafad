"""Internal: the old import path of the HTTP API, now the package :mod:`durable_agents._http` (see its docstring)."""

from durable_agents._http import MAX_BODY_BYTES, ROUTE_PREFIX, http_api_blueprint

__all__ = ["MAX_BODY_BYTES", "ROUTE_PREFIX", "http_api_blueprint"]
