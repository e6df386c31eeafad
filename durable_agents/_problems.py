"""``application/problem+json`` error responses for the HTTP API (RFC 9457; internal).

Every caller mistake the HTTP API detects is answered with a problem document::

    {"type": "urn:durable-agents:problem:<slug>", "title": "<fixed text per type>", "status": <int>,
     "detail": "<what exactly was wrong>", "instance": "<request path, without the query string>"}

plus, for some types, extension members (``fields`` for unknown or invalid body fields). The ``type`` values
are URNs rather than URLs because the project publishes no documentation site; each is listed in
:data:`PROBLEM_TYPES` with its HTTP status and title, and that table is the catalogue the API documents.

The contract (DESIGN.md, "HTTP API") asks for ``type``, ``title``, ``status`` and ``detail``; ``instance`` is the
request path, so that a caller's log line identifies the request without leaking the function key (``?code=``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import azure.functions as func

from ._jsonsafe import dumps

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "PROBLEM_TYPES",
    "Problem",
    "problem_response",
    "request_path",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
"""Media type of every error response (RFC 9457 section 3)."""

_TYPE_PREFIX = "urn:durable-agents:problem:"

PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    # slug: (HTTP status, title)
    "malformed-json": (400, "Malformed JSON body"),
    "invalid-body": (400, "Invalid request body"),
    "invalid-query": (400, "Invalid query parameters"),
    "invalid-run-id": (400, "Invalid run id"),
    "invalid-continuation-token": (400, "Invalid continuation token"),
    "unauthenticated": (401, "Authentication required"),
    "not-an-approver": (403, "Not an approver"),
    "own-run": (403, "Separation of duties"),
    "customer-not-allowed": (403, "Customer not allowed"),
    "not-allowed": (403, "Not allowed"),
    "route-not-found": (404, "No such route"),
    "method-not-allowed": (405, "Method not allowed"),
    "arguments-changed": (409, "Approval arguments changed"),
    "body-too-large": (413, "Request body too large"),
    "uri-too-long": (414, "URI too long"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "headers-too-large": (431, "Request headers too large"),
    "agent-not-found": (404, "Agent not found"),
    "run-not-found": (404, "Run not found"),
    "approval-not-found": (404, "Approval not found"),
    "run-id-in-use": (409, "Run id already in use"),
    "approval-conflict": (409, "Approval already decided differently"),
    "approval-expired": (409, "Approval expired"),
    "run-finished": (410, "Run already finished"),
    "internal-error": (500, "Internal error"),
    "invalid-conversation-id": (400, "Invalid conversation id"),
    "not-conversational": (400, "Not a conversational agent"),
    "conversation-not-found": (404, "Conversation not found"),
    "conversation-id-in-use": (409, "Conversation id already in use"),
    "conversation-closed": (410, "Conversation closed"),
    "run-active": (409, "Run still active"),
}
"""Catalogue of problem types: ``slug -> (status, title)``; the ``type`` is ``urn:durable-agents:problem:<slug>``."""


@dataclass
class Problem(Exception):
    """A caller-visible error; raise it anywhere inside a handler and the handler answers with it.

    ``slug`` must be a key of :data:`PROBLEM_TYPES` (``KeyError`` otherwise, at construction time, so a typo
    fails fast in tests). ``extensions`` are extra JSON members merged into the document (they must not reuse
    the standard member names).
    """

    slug: str
    detail: str
    extensions: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.slug not in PROBLEM_TYPES:
            raise KeyError(f"unknown problem type {self.slug!r}")
        reserved = {"type", "title", "status", "detail", "instance"} & set(self.extensions)
        if reserved:
            raise ValueError(f"problem extensions must not override {sorted(reserved)}")
        super().__init__(self.detail)

    @property
    def status(self) -> int:
        """HTTP status code of this problem type."""
        return PROBLEM_TYPES[self.slug][0]

    def to_json(self, instance: str) -> dict[str, Any]:
        """The problem document as a dict (``instance`` is the request path)."""
        status, title = PROBLEM_TYPES[self.slug]
        doc: dict[str, Any] = {
            "type": _TYPE_PREFIX + self.slug,
            "title": title,
            "status": status,
            "detail": self.detail,
            "instance": instance,
        }
        doc.update(self.extensions)
        return doc

    def response(self, req: func.HttpRequest) -> func.HttpResponse:
        """The ``func.HttpResponse`` for this problem, for request ``req``."""
        return problem_response(self, request_path(req))


def request_path(req: func.HttpRequest) -> str:
    """The path of ``req.url`` (e.g. ``/api/runs/abc``), without scheme, host and query string."""
    try:
        path = urlsplit(req.url or "").path
    except ValueError:
        path = ""
    return path or "/"


def problem_response(problem: Problem, instance: str) -> func.HttpResponse:
    """Serialize ``problem`` as an ``application/problem+json`` response with the problem's status code (and
    ``WWW-Authenticate: Bearer`` on a 401, RFC 9110 section 11.6.1)."""
    headers = {"Content-Type": PROBLEM_CONTENT_TYPE}
    if problem.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return func.HttpResponse(
        body=dumps(problem.to_json(instance)),
        status_code=problem.status,
        headers=headers,
        mimetype=PROBLEM_CONTENT_TYPE,
        charset="utf-8",
    )
