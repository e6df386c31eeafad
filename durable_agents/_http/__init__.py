"""The product's HTTP API (DESIGN.md "HTTP API"): internal, not part of the public API.

:func:`http_api_blueprint` returns a ``df.Blueprint`` that ``durable_agents.App`` registers. Routes are relative to
the host's route prefix (host.json ``extensions.http.routePrefix``, ``api`` by default); the links and ``Location``
headers the API answers start with the ``route_prefix`` the blueprint was built with. The auth level is inherited
from the app (``FUNCTION``), so callers pass a function key (``x-functions-key``) in Azure; every route but
``GET agents`` also needs an authenticated caller (App Service authentication, :mod:`durable_agents._identity`;
401 otherwise) and applies the rules of :mod:`durable_agents._http.access` (403 / 404).

Function name, method and route, answers:

* ``api_list_agents``: ``GET agents`` → 200 ``{"agents": [<agent>]}``.
* ``api_start_run``: ``POST agents/{agent}/runs`` → 202 ``<started>``; 400, 401, 403, 404, 409, 413, 415.
* ``api_list_runs``: ``GET runs?agent=&status=&top=&continuationToken=`` → 200 ``{"runs": [<run>],
  "continuationToken"}``; 400, 401.
* ``api_get_run``: ``GET runs/{runId}`` → 200 ``<run>``; 401, 404.
* ``api_decide_approval``: ``POST runs/{runId}/approvals/{approvalId}`` → 202/200 ``<decision>``; 400, 401, 403,
  404, 409, 410, 413, 415.
* ``api_cancel_run``: ``POST runs/{runId}/cancel`` → 202 ``<cancel>``; 400, 401, 403, 404, 410, 413, 415.
* ``api_get_audit``: ``GET runs/{runId}/audit`` → 200 ``{"runId", "records": [<audit record>]}``; 401, 404.
* ``api_start_conversation``: ``POST agents/{agent}/conversations`` → 201 ``<conversation started>``; 400, 401, 403,
  404, 409, 413, 415.
* ``api_list_conversations``: ``GET conversations?agent=&status=&top=&continuationToken=`` → 200
  ``{"conversations": [<conversation>], "continuationToken"}``; 400, 401.
* ``api_get_conversation``: ``GET conversations/{conversationId}`` → 200 ``<conversation>`` with ``messages``;
  401, 404.
* ``api_post_message``: ``POST conversations/{conversationId}/messages`` → 202; 400, 401, 404, 410, 413, 415.
* ``api_list_messages``: ``GET conversations/{conversationId}/messages?after=&top=`` → 200 ``{"messages",
  "nextCursor", "hasMore"}``; 400, 401, 404.
* ``api_close_conversation``: ``POST conversations/{conversationId}/close`` → 202 (200 repeated); 400, 401, 404,
  413, 415.
* ``api_delete_run``: ``DELETE runs/{runId}`` → 200 ``<deleted>``; 400, 401, 403, 404, 409, 413, 415.
* ``api_delete_conversation``: ``DELETE conversations/{conversationId}`` → 200 ``<deleted>``; 400, 401, 403, 404,
  409, 413, 415.
* ``api_list_approvals``: ``GET approvals?state=&agent=&top=&continuationToken=`` → 200 ``{"approvals": [<inbox
  item>], "continuationToken"}``; 400, 401 (:mod:`~durable_agents._http.inbox`).
* ``ui``: ``GET ui/{*path}`` (auth level ANONYMOUS: static files, no data; the page calls the routes above) → the
  browser app's files; 304, 308 (``ui`` → ``ui/``), 404 (:mod:`~durable_agents._http.ui`).

Conversations (:mod:`~durable_agents._http.conversations`; docs/internals.md "Conversations") are not runs:
``GET runs`` does not list them and ``GET runs/{id}`` / ``POST runs/{id}/cancel`` answer 404 for them, but their
approvals are decided through ``POST runs/{conversationId}/approvals/{approvalId}`` and their audit is
``GET runs/{conversationId}/audit``.

Shapes (all JSON, UTF-8, never NaN or lone surrogates: :mod:`durable_agents._jsonsafe`; ``<p>`` is the route
prefix; times the API writes are UTC ISO 8601 with milliseconds and ``Z``, :func:`durable_agents._contracts.
format_time`; times from the custom status are passed through):

* ``<agent>``: ``{"name", "description", "approvalTools": [{"name", "approval": "always"|"conditional"}],
  "links": {"runs": "<p>/agents/<name>/runs"}}`` (:meth:`durable_agents._registry.RegisteredAgent.to_json`).
* ``<started>``: ``{"id", "agent", "status": "pending", "customer", "startedBy": {"id", "name"}, "links": {"self",
  "approvals", "cancel", "audit"}}`` plus header ``Location: <p>/runs/{id}``; never the Durable management URLs
  (they carry the task hub's system key).
* ``<run>``: ``{"id", "agent", "customer", "startedBy", "status", "output", "error", "pendingApprovals":
  [PendingApproval], "approvals": [ApprovalDecision], "lastAgent", "turns", "usage", "demo", "progress", "createdAt",
  "updatedAt", "links"}`` (``progress``: the members a workflow published with ``context.set_custom_status``).
  ``status`` is one of :data:`RUN_STATUSES`, mapped from the Durable runtime status as docs/internals.md says.
  ``output`` is the :class:`~durable_agents._contracts.OrchestrationOutput` ``finalOutput`` once completed, else
  ``null``. ``error`` is the failure text of a failed run (without the extension's ``Orchestrator function
  '<name>' failed: `` prefix) or the termination reason of a cancelled run, else ``null``.
  ``lastAgent``/``turns``/``demo`` come from the output when completed, else from the
  :class:`~durable_agents._contracts.CustomStatus`; ``usage`` only from the output.
* ``<decision>``: ``{"runId", "approvalId", "decision": "approved"|"rejected", "comment", "decidedAt", "decidedBy",
  "recorded": bool, "status": <run status>, "links": {"run"}}``. ``recorded`` is false when the orchestration had
  not recorded the decision within the wait bound (the event is queued and will be processed).
* ``<cancel>``: ``{"id", "agent", "cancelRequested": true, "reason", "links": {"run"}}``.
* ``<deleted>``: ``{"id", "deleted": true, "blobsDeleted": <count>}`` (:mod:`~durable_agents._http.deletion`:
  support staff only, finished instances only; the blobs and histories of the instance and its sub-orchestrations
  are deleted, the approval audit is kept).

Errors are ``application/problem+json`` (:mod:`durable_agents._problems`) for every caller mistake; a bad request
is rejected before any call that changes state. Request bodies and the ``GET runs`` query are strict
(:mod:`durable_agents._http.bodies`): one JSON object of at most :data:`MAX_BODY_BYTES` bytes, sent as
``application/json`` (415 otherwise), no lone surrogates, no member the route does not define (400 naming it in the
problem member ``fields``), no type coercion; ``null`` counts as absent for optional members. Path ids that cannot
be run ids (not matching :data:`RUN_ID_PATTERN`) are answered 404, never passed to the Durable client.

Modules: :mod:`~durable_agents._http.handlers` (one ``async def`` per route), :mod:`~durable_agents._http.access`
(who may do what), :mod:`~durable_agents._http.listing` (paging), :mod:`~durable_agents._http.bodies`
(strict JSON reader, pydantic request models, the one ``ValidationError`` translator),
:mod:`~durable_agents._http.views` (the run and conversation JSON), :mod:`~durable_agents._http.conversations`
(the conversation routes), :mod:`~durable_agents._http.deletion` (the two ``DELETE`` routes).
"""

from __future__ import annotations

from pathlib import Path

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient

from durable_agents._http import conversations, deletion, handlers, inbox, ui
from durable_agents._http import timeline as timeline_routes
from durable_agents._http.bodies import MAX_BODY_BYTES, MAX_COMMENT_CHARS, RUN_ID_PATTERN
from durable_agents._http.handlers import GLOBAL_RUN_SETTINGS, ROUTE_PREFIX, HttpApi
from durable_agents._http.views import RUN_STATUSES, run_status
from durable_agents._registry import AgentRegistry

__all__ = [
    "GLOBAL_RUN_SETTINGS",
    "MAX_BODY_BYTES",
    "MAX_COMMENT_CHARS",
    "ROUTE_PREFIX",
    "RUN_ID_PATTERN",
    "RUN_STATUSES",
    "http_api_blueprint",
    "normalize_route_prefix",
    "run_status",
]


def normalize_route_prefix(route_prefix: str) -> str:
    """``route_prefix`` as a path prefix of links: one leading slash, no trailing one, ``""`` for none.

    ``"api"``, ``"/api"`` and ``"/api/"`` give ``"/api"``; ``""`` and ``"/"`` give ``""`` (an empty host.json
    ``routePrefix``). Raises ``TypeError`` when it is not a string.
    """
    if not isinstance(route_prefix, str):
        raise TypeError(f"route_prefix must be a string, not {type(route_prefix).__name__}")
    stripped = route_prefix.strip().strip("/")
    return f"/{stripped}" if stripped else ""


def http_api_blueprint(
    registry: AgentRegistry,
    *,
    route_prefix: str = ROUTE_PREFIX,
    approval_wait_seconds: float = 10.0,
    approval_poll_seconds: float = 0.5,
    app_dir: str | Path | None = None,
) -> df.Blueprint:
    """Build the HTTP API blueprint (a new ``df.Blueprint`` per call; register it once per app).

    Args:
        registry: the agents the API serves; read on every request, so agents registered later are served.
        route_prefix: path prefix of the links and ``Location`` headers, i.e. host.json ``routePrefix`` as a path
            (``"/api"`` by default, ``""`` for an empty one); normalized by :func:`normalize_route_prefix`.
        approval_wait_seconds: how long a decision request waits for the orchestration to record the decision
            (seconds, >= 0), polling ``get_status`` with sleeps growing from 50 ms to ``approval_poll_seconds``
            (seconds, > 0).
        app_dir: the app folder; the local blob store of the conversation logs is found from it
            (``durable_agents._blobs.get_blob_store(app_dir)``).

    Function names and routes: the module docstring. Raises ``ValueError`` for a negative wait or a poll
    interval that is not positive, ``TypeError`` for a ``route_prefix`` that is not a string.
    """
    if not approval_wait_seconds >= 0:
        raise ValueError(f"approval_wait_seconds must be >= 0, not {approval_wait_seconds!r}")
    if not approval_poll_seconds > 0:
        raise ValueError(f"approval_poll_seconds must be > 0, not {approval_poll_seconds!r}")
    api = HttpApi(
        registry=registry,
        route_prefix=normalize_route_prefix(route_prefix),
        approval_wait_seconds=float(approval_wait_seconds),
        approval_poll_seconds=float(approval_poll_seconds),
        app_dir=Path(app_dir) if app_dir is not None else None,
    )
    bp = df.Blueprint()

    @bp.function_name("api_list_agents")
    @bp.route(route="agents", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_agents(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET agents``: :func:`durable_agents._http.handlers.list_agents`."""
        return await handlers.respond(handlers.list_agents, api, req, client)

    @bp.function_name("api_start_run")
    @bp.route(route="agents/{agent}/runs", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_start_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST agents/{agent}/runs``: :func:`durable_agents._http.handlers.start_run`."""
        return await handlers.respond(handlers.start_run, api, req, client)

    @bp.function_name("api_list_runs")
    @bp.route(route="runs", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_runs(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET runs``: :func:`durable_agents._http.handlers.list_runs`."""
        return await handlers.respond(handlers.list_runs, api, req, client)

    @bp.function_name("api_get_run")
    @bp.route(route="runs/{runId}", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_get_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET runs/{runId}``: :func:`durable_agents._http.handlers.get_run`."""
        return await handlers.respond(handlers.get_run, api, req, client)

    @bp.function_name("api_decide_approval")
    @bp.route(route="runs/{runId}/approvals/{approvalId}", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_decide_approval(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST runs/{runId}/approvals/{approvalId}``: :func:`durable_agents._http.handlers.decide_approval`."""
        return await handlers.respond(handlers.decide_approval, api, req, client)

    @bp.function_name("api_cancel_run")
    @bp.route(route="runs/{runId}/cancel", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_cancel_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST runs/{runId}/cancel``: :func:`durable_agents._http.handlers.cancel_run`."""
        return await handlers.respond(handlers.cancel_run, api, req, client)

    @bp.function_name("api_get_audit")
    @bp.route(route="runs/{runId}/audit", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_get_audit(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET runs/{runId}/audit``: :func:`durable_agents._http.handlers.get_audit`."""
        return await handlers.respond(handlers.get_audit, api, req, client)

    @bp.function_name("api_start_conversation")
    @bp.route(route="agents/{agent}/conversations", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_start_conversation(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST agents/{agent}/conversations``: :func:`durable_agents._http.conversations.start_conversation`."""
        return await handlers.respond(conversations.start_conversation, api, req, client)

    @bp.function_name("api_list_conversations")
    @bp.route(route="conversations", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_conversations(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET conversations``: :func:`durable_agents._http.conversations.list_conversations`."""
        return await handlers.respond(conversations.list_conversations, api, req, client)

    @bp.function_name("api_get_conversation")
    @bp.route(route="conversations/{conversationId}", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_get_conversation(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET conversations/{conversationId}``: :func:`durable_agents._http.conversations.get_conversation`."""
        return await handlers.respond(conversations.get_conversation, api, req, client)

    @bp.function_name("api_post_message")
    @bp.route(route="conversations/{conversationId}/messages", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_post_message(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST conversations/{conversationId}/messages``: :func:`durable_agents._http.conversations.post_message`."""
        return await handlers.respond(conversations.post_message, api, req, client)

    @bp.function_name("api_list_messages")
    @bp.route(route="conversations/{conversationId}/messages", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_messages(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET conversations/{conversationId}/messages``: :func:`durable_agents._http.conversations.list_messages`."""
        return await handlers.respond(conversations.list_messages, api, req, client)

    @bp.function_name("api_close_conversation")
    @bp.route(route="conversations/{conversationId}/close", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_close_conversation(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST conversations/{conversationId}/close``: :func:`durable_agents._http.conversations.
        close_conversation`."""
        return await handlers.respond(conversations.close_conversation, api, req, client)

    @bp.function_name("api_delete_run")
    @bp.route(route="runs/{runId}", methods=["DELETE"])
    @bp.durable_client_input(client_name="client")
    async def api_delete_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``DELETE runs/{runId}``: :func:`durable_agents._http.deletion.delete_run`."""
        return await handlers.respond(deletion.delete_run, api, req, client)

    @bp.function_name("api_delete_conversation")
    @bp.route(route="conversations/{conversationId}", methods=["DELETE"])
    @bp.durable_client_input(client_name="client")
    async def api_delete_conversation(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``DELETE conversations/{conversationId}``: :func:`durable_agents._http.deletion.delete_conversation`."""
        return await handlers.respond(deletion.delete_conversation, api, req, client)

    @bp.function_name("api_list_approvals")
    @bp.route(route="approvals", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_approvals(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET approvals``: :func:`durable_agents._http.inbox.list_approvals`."""
        return await handlers.respond(inbox.list_approvals, api, req, client)

    @bp.function_name("ui")
    @bp.route(route="ui/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def ui_files(req: func.HttpRequest) -> func.HttpResponse:
        """``GET ui/{*path}``: :func:`durable_agents._http.ui.serve_ui` (the browser app's static files)."""
        return ui.serve_ui(req)

    @bp.function_name("api_run_timeline")
    @bp.route(route="runs/{runId}/timeline", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_run_timeline(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET runs/{runId}/timeline``: :func:`durable_agents._http.timeline.run_timeline`."""
        return await handlers.respond(timeline_routes.run_timeline, api, req, client)

    @bp.function_name("api_run_events")
    @bp.route(route="runs/{runId}/events", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_run_events(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET runs/{runId}/events`` (Server-Sent Events): :func:`durable_agents._http.timeline.run_events`."""
        return await handlers.respond(timeline_routes.run_events, api, req, client)

    @bp.function_name("api_conversation_timeline")
    @bp.route(route="conversations/{conversationId}/timeline", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_conversation_timeline(req: func.HttpRequest,
                                        client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET conversations/{conversationId}/timeline``: :func:`durable_agents._http.timeline.
        conversation_timeline`."""
        return await handlers.respond(timeline_routes.conversation_timeline, api, req, client)

    @bp.function_name("api_conversation_events")
    @bp.route(route="conversations/{conversationId}/events", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_conversation_events(req: func.HttpRequest,
                                      client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET conversations/{conversationId}/events``: :func:`durable_agents._http.timeline.conversation_events`."""
        return await handlers.respond(timeline_routes.conversation_events, api, req, client)

    return bp
