"""The product's HTTP API (DESIGN.md "HTTP API"; status mapping and payloads from docs/internals.md).

``http_api_blueprint()`` returns a ``df.Blueprint`` that ``function_app.py`` registers with
``app.register_functions(...)``. Routes are relative to the host's route prefix (``api``, host.json
``extensions.http.routePrefix``); the auth level is inherited from the app (``FUNCTION``), so callers pass a
function key (``?code=`` or ``x-functions-key``) in Azure.

| function name           | method, route                                | answers                                     |
|-------------------------|----------------------------------------------|---------------------------------------------|
| ``api_list_agents``     | ``GET agents``                               | 200 ``{"agents": [<agent>]}``               |
| ``api_start_run``       | ``POST agents/{agent}/runs``                 | 202 ``<started>``; 400, 404, 409, 413       |
| ``api_list_runs``       | ``GET runs?agent=&status=&top=``             | 200 ``{"runs": [<run>]}``; 400              |
| ``api_get_run``         | ``GET runs/{runId}``                         | 200 ``<run>``; 404                          |
| ``api_decide_approval`` | ``POST runs/{runId}/approvals/{approvalId}`` | 202/200 ``<decision>``; 400/404/409/410/413 |
| ``api_cancel_run``      | ``POST runs/{runId}/cancel``                 | 202 ``<cancel>``; 400, 404, 410, 413        |

Shapes (all JSON, UTF-8; times are UTC ISO 8601 with ``Z``):

* ``<agent>``: ``{"name", "description", "approvalTools": [{"name", "approval": "always"|"conditional"}],
  "links": {"runs"}}`` (see :meth:`durable_agents._registry.RegisteredAgent.to_json`).
* ``<started>``: ``{"id", "agent", "status": "pending", "links": {"self", "approvals", "cancel"},
  "management": <the Durable management URLs from client.create_http_management_payload(id)>}`` plus header
  ``Location: /api/runs/{id}``.
* ``<run>``: ``{"id", "agent", "status", "output", "error", "pendingApprovals": [{id, tool, arguments,
  requestedAt, expiresAt}], "approvals": [{id, tool, decision, comment, decidedAt}], "lastAgent", "turns",
  "usage", "demo", "createdAt", "updatedAt", "links"}``. ``status`` is one of :data:`RUN_STATUSES`, mapped from
  the Durable runtime status as docs/internals.md says. ``output`` is the orchestration output's
  ``finalOutput`` once completed, else ``null``. ``error`` is the failure text of a failed run (without the
  extension's ``Orchestrator function '<name>' failed: `` prefix) or the termination reason of a cancelled run,
  else ``null``. ``lastAgent``/``turns``/``demo`` come from the output when completed, else from the custom
  status; ``usage`` only from the output.
* ``<decision>``: ``{"runId", "approvalId", "decision": "approved"|"rejected", "comment", "decidedAt",
  "recorded": bool, "status": <run status>, "links": {"run"}}``. ``recorded`` is false when the orchestration had
  not recorded the decision within the wait bound (the event is queued and will be processed).
* ``<cancel>``: ``{"id", "agent", "cancelRequested": true, "reason", "links": {"run"}}``.

Errors are ``application/problem+json`` (:mod:`durable_agents._problems`) for every caller mistake; a bad request
is rejected before any call that changes state. Request bodies are **strict**: they must be one JSON object of at
most :data:`MAX_BODY_BYTES` bytes (413 above that, checked on ``Content-Length`` and on the actual body before
parsing), and any member that the route does not define is rejected with 400 naming it (problem member
``fields``). ``Content-Type`` is not checked. ``null`` counts as absent for optional members. Path ids that cannot
be run ids (not matching :data:`RUN_ID_PATTERN`) are answered 404, never passed to the Durable client.
"""

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.durable_functions import DurableOrchestrationClient, OrchestrationRuntimeStatus
from azure.durable_functions.models.DurableOrchestrationStatus import DurableOrchestrationStatus

from durable_agents._config import get_setting
from durable_agents._problems import Problem
from durable_agents._registry import AGENT_NAME_PATTERN, AgentRegistry

__all__ = [
    "GLOBAL_RUN_SETTINGS",
    "MAX_BODY_BYTES",
    "MAX_COMMENT_CHARS",
    "ROUTE_PREFIX",
    "RUN_ID_PATTERN",
    "RUN_STATUSES",
    "http_api_blueprint",
    "run_status",
]

logger = logging.getLogger(__name__)

ROUTE_PREFIX = "/api"
"""Path prefix of the links this API returns; must equal host.json ``extensions.http.routePrefix`` (``api``)."""

MAX_BODY_BYTES = 1024 * 1024
"""Largest accepted request body (1 MiB); larger bodies get 413 before any parsing."""

MAX_COMMENT_CHARS = 4000
"""Longest approval ``comment`` and cancel ``reason`` (characters)."""

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,100}")
"""Caller-chosen run ids (``runId`` of ``POST agents/{agent}/runs``); generated ids are uuid4 hex."""

RUN_STATUSES = ("pending", "running", "awaiting_approval", "completed", "failed", "cancelled")
"""The run ``status`` values (DESIGN.md)."""

GLOBAL_RUN_SETTINGS = ("APPROVAL_TIMEOUT", "MODEL_MAX_ATTEMPTS")
"""Settings snapshotted into every run's input (docs/internals.md), before the agent's registered ones."""

DEFAULT_LIST_TOP = 50
"""``GET runs`` page size when ``top`` is not given (``top`` accepts 1..100)."""

_R = OrchestrationRuntimeStatus
_TERMINAL = {_R.Completed, _R.Failed, _R.Terminated, _R.Canceled}
_ACTIVE = {_R.Running, _R.ContinuedAsNew, _R.Suspended}
_RUNTIME_FOR_STATUS: dict[str, tuple[OrchestrationRuntimeStatus, ...]] = {
    "pending": (_R.Pending,),
    "running": (_R.Running, _R.ContinuedAsNew, _R.Suspended),
    "awaiting_approval": (_R.Running, _R.ContinuedAsNew, _R.Suspended),
    "completed": (_R.Completed,),
    "failed": (_R.Failed,),
    "cancelled": (_R.Terminated, _R.Canceled),
}
_FAILURE_PREFIX = re.compile(r"^Orchestrator function '[^']*' failed: ")
_LIST_QUERY_KEYS = ("agent", "status", "top", "code")  # ``code`` is the Functions host's function key


# --------------------------------------------------------------------------------------------------------
# Mapping Durable status to the run JSON


def run_status(runtime_status: OrchestrationRuntimeStatus | None, pending_approvals: list[Any]) -> str:
    """Map a Durable runtime status to the run ``status`` (docs/internals.md, "HTTP API").

    Pending → ``pending``; Running / ContinuedAsNew / Suspended → ``awaiting_approval`` when
    ``pending_approvals`` is non-empty, else ``running``; Completed → ``completed``; Failed → ``failed``;
    Terminated / Canceled → ``cancelled``. ``None`` (status not known yet) maps to ``pending``.
    """
    if runtime_status in _ACTIVE:
        return "awaiting_approval" if pending_approvals else "running"
    return {
        _R.Completed: "completed",
        _R.Failed: "failed",
        _R.Terminated: "cancelled",
        _R.Canceled: "cancelled",
    }.get(runtime_status, "pending")


def _parse_json_text(value: Any) -> Any:
    """A status field that may be a JSON value or JSON text (protocol §1, §5.4) → the JSON value."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _agent_run_input(raw_input: Any) -> dict[str, Any] | None:
    """The orchestration input if it has the agent-run shape ``{"agent": str, "input": ..., "settings": {}}``."""
    value = _parse_json_text(raw_input)
    if (
        isinstance(value, dict)
        and isinstance(value.get("agent"), str)
        and "input" in value
        and isinstance(value.get("settings"), dict)
    ):
        return value
    return None


def _custom_status(status: DurableOrchestrationStatus) -> dict[str, Any]:
    value = _parse_json_text(status.custom_status)
    return value if isinstance(value, dict) else {}


def _dict_list(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _failure_text(output: Any) -> str | None:
    """The failure text of a Failed instance without the extension's ``Orchestrator function 'x' failed: ``."""
    if output is None:
        return None
    text = output if isinstance(output, str) else json.dumps(output)
    return _FAILURE_PREFIX.sub("", text, count=1).strip() or text


def _run_links(run_id: str) -> dict[str, str]:
    base = f"{ROUTE_PREFIX}/runs/{run_id}"
    return {"self": base, "approvals": base + "/approvals/{approvalId}", "cancel": base + "/cancel"}


def _run_json(status: DurableOrchestrationStatus, run_input: dict[str, Any]) -> dict[str, Any]:
    """The ``<run>`` JSON (module docstring) of one agent-run instance."""
    runtime = status.runtime_status
    custom = _custom_status(status)
    terminal = runtime in _TERMINAL
    pending = [] if terminal else _dict_list(custom.get("pendingApprovals"))
    output_value = None
    error = None
    result: dict[str, Any] = {}
    if runtime == _R.Completed:
        parsed = _parse_json_text(status.output)
        if isinstance(parsed, dict) and "finalOutput" in parsed:
            result = parsed
            output_value = parsed["finalOutput"]
        else:
            output_value = parsed
    elif runtime == _R.Failed:
        error = _failure_text(status.output)
    elif runtime in (_R.Terminated, _R.Canceled):
        error = None if status.output is None else str(status.output)
    return {
        "id": status.instance_id,
        "agent": run_input["agent"],
        "status": run_status(runtime, pending),
        "output": output_value,
        "error": error,
        "pendingApprovals": pending,
        "approvals": _dict_list(custom.get("approvals")),
        "lastAgent": result.get("lastAgent", custom.get("currentAgent")),
        "turns": result.get("turns", custom.get("turns")),
        "usage": result.get("usage"),
        "demo": bool(result.get("demo", custom.get("demo", False))),
        "createdAt": _iso(status.created_time),
        "updatedAt": _iso(status.last_updated_time),
        "links": _run_links(status.instance_id or ""),
    }


# --------------------------------------------------------------------------------------------------------
# Request reading and validation


class _DuplicateKey(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_size(req: func.HttpRequest) -> None:
    """413 when ``Content-Length`` or the actual body exceeds :data:`MAX_BODY_BYTES`."""
    declared = req.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared.strip())
        except ValueError:
            length = None  # the host validates the header; the body length below still applies
        if length is not None and length > MAX_BODY_BYTES:
            raise Problem(
                "body-too-large",
                f"Content-Length {length} exceeds the limit of {MAX_BODY_BYTES} bytes.",
                {"limit": MAX_BODY_BYTES},
            )
    size = len(req.get_body() or b"")
    if size > MAX_BODY_BYTES:
        raise Problem(
            "body-too-large",
            f"The body has {size} bytes; the limit is {MAX_BODY_BYTES} bytes.",
            {"limit": MAX_BODY_BYTES},
        )


def _read_object(req: func.HttpRequest, *, required: bool) -> dict[str, Any] | None:
    """Parse the body as one JSON object (size already checked). Empty body → ``None`` or 400 if required."""
    body = req.get_body() or b""
    if not body.strip():
        if required:
            raise Problem("invalid-body", "The request body is empty; send a JSON object.")
        return None
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem("malformed-json", f"The body is not UTF-8 text (byte {exc.start}).") from None
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise Problem("malformed-json", f"The member {exc.args[0]!r} appears more than once.") from None
    except json.JSONDecodeError as exc:
        raise Problem(
            "malformed-json", f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except RecursionError:
        raise Problem("malformed-json", "The body is nested too deeply.") from None
    except ValueError as exc:
        raise Problem("malformed-json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise Problem("invalid-body", f"The body must be a JSON object, not {_json_type(value)}.")
    return value


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _reject_unknown(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [key for key in body if key not in allowed]
    if unknown:
        raise Problem(
            "invalid-body",
            f"Unknown member(s) {', '.join(repr(k) for k in unknown)}; allowed: {', '.join(allowed)}.",
            {"fields": unknown},
        )


def _optional_text(body: dict[str, Any], name: str, limit: int) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise Problem("invalid-body", f"'{name}' must be a string or null, not {_json_type(value)}.",
                      {"fields": [name]})
    if len(value) > limit:
        raise Problem("invalid-body", f"'{name}' has {len(value)} characters; the limit is {limit}.",
                      {"fields": [name]})
    return value


def _path_run_id(req: func.HttpRequest) -> str:
    run_id = req.route_params.get("runId") or ""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise Problem("run-not-found", f"There is no run with id {run_id!r}.")
    return run_id


async def _load_run(
    client: DurableOrchestrationClient, run_id: str
) -> tuple[DurableOrchestrationStatus, dict[str, Any]]:
    """Status and agent-run input of ``run_id``; 404 when unknown or not an agent run."""
    status = await client.get_status(run_id, show_input=True)
    run_input = _agent_run_input(status.input_) if status else None
    if run_input is None:
        raise Problem("run-not-found", f"There is no run with id {run_id!r}.")
    return status, run_input


def _json_response(body: Any, status_code: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return func.HttpResponse(
        body=json.dumps(body, ensure_ascii=False),
        status_code=status_code,
        headers=all_headers,
        mimetype="application/json",
        charset="utf-8",
    )


async def _guarded(req: func.HttpRequest, handler: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Run ``handler``; a :class:`Problem` becomes its problem response, anything else a logged 500 problem."""
    try:
        return await handler()
    except Problem as problem:
        return problem.response(req)
    except Exception:
        logger.exception("HTTP API %s %s failed", req.method, req.url)
        return Problem(
            "internal-error", "The server could not complete the request; see the function logs."
        ).response(req)


# --------------------------------------------------------------------------------------------------------
# The blueprint


def http_api_blueprint(
    registry: AgentRegistry,
    *,
    route_prefix: str = ROUTE_PREFIX,
    approval_wait_seconds: float = 10.0,
    approval_poll_seconds: float = 0.5,
) -> df.Blueprint:
    """Build the HTTP API blueprint (a new ``df.Blueprint`` per call; register it once per app).

    ``registry`` defaults to :data:`durable_agents._registry.default_registry` and is read on every request, so
    agents registered after this call are served. ``approval_wait_seconds`` bounds how long a decision request
    waits for the orchestration to record the decision (polling ``get_status`` with sleeps growing from 50 ms
    to ``approval_poll_seconds``). Function names and routes: see the module docstring.
    """
    agents_registry = registry
    bp = df.Blueprint()

    @bp.function_name("api_list_agents")
    @bp.route(route="agents", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_agents(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET /api/agents`` → 200 ``{"agents": [<agent>]}`` sorted by name."""

        async def handle() -> func.HttpResponse:
            return _json_response({"agents": [entry.to_json(ROUTE_PREFIX) for entry in agents_registry.list()]})

        return await _guarded(req, handle)

    @bp.function_name("api_start_run")
    @bp.route(route="agents/{agent}/runs", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_start_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST /api/agents/{agent}/runs`` with ``{"input": "<non-empty text>", "runId": "<id>"?}``.

        Strict body: other members → 400. ``runId`` must match :data:`RUN_ID_PATTERN` (400 otherwise) and must
        not name an existing instance (409; purged instances are free again); without it the id is a new uuid4
        hex. 404 for an unregistered agent, 413 for bodies over 1 MiB. Starts the agent's orchestrator with
        ``{"agent", "input", "settings"}`` where ``settings`` holds :data:`GLOBAL_RUN_SETTINGS` and the agent's
        registered settings that are set (read with ``get_setting``). Answers 202 ``<started>`` + ``Location``.
        Two concurrent starts with the same new ``runId`` can both pass the check (the extension overwrites).
        """

        async def handle() -> func.HttpResponse:
            _check_size(req)
            agent_name = req.route_params.get("agent") or ""
            entry = agents_registry.get(agent_name) if AGENT_NAME_PATTERN.fullmatch(agent_name) else None
            if entry is None:
                raise Problem("agent-not-found", f"There is no agent named {agent_name!r}; see GET /api/agents.")
            body = _read_object(req, required=True)
            assert body is not None
            _reject_unknown(body, ("input", "runId"))
            if "input" not in body:
                raise Problem("invalid-body", "The member 'input' (the user's text) is required.",
                              {"fields": ["input"]})
            text = body["input"]
            if not isinstance(text, str):
                raise Problem("invalid-body", f"'input' must be a string, not {_json_type(text)}.",
                              {"fields": ["input"]})
            if not text.strip():
                raise Problem("invalid-body", "'input' must not be empty.", {"fields": ["input"]})
            run_id = body.get("runId")
            if run_id is not None:
                if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
                    shown = run_id if isinstance(run_id, str) else _json_type(run_id)
                    raise Problem(
                        "invalid-run-id",
                        f"'runId' must be 1 to 100 characters from A-Z, a-z, 0-9, '_' and '-'; got {shown!r}.",
                        {"fields": ["runId"]},
                    )
                existing = await client.get_status(run_id)
                if existing:
                    raise Problem("run-id-in-use", f"The run id {run_id!r} is already in use.")
            settings: dict[str, str] = {}
            for name in (*GLOBAL_RUN_SETTINGS, *entry.settings):
                value = get_setting(name)
                if value is not None:
                    settings[name] = value
            instance_id = await client.start_new(
                entry.orchestrator,
                instance_id=run_id or uuid.uuid4().hex,
                client_input={"agent": entry.name, "input": text, "settings": settings},
            )
            payload = {
                "id": instance_id,
                "agent": entry.name,
                "status": "pending",
                "links": _run_links(instance_id),
                "management": client.create_http_management_payload(instance_id),
            }
            return _json_response(payload, 202, {"Location": f"{ROUTE_PREFIX}/runs/{instance_id}"})

        return await _guarded(req, handle)

    @bp.function_name("api_list_runs")
    @bp.route(route="runs", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_list_runs(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET /api/runs?agent=<name>&status=<s>[,<s>...]&top=<1..100>`` → 200 ``{"runs": [<run>]}``.

        Newest first (by ``createdAt``, then id), at most ``top`` (default 50). Unknown query parameters (other
        than the host's ``code``), an agent name outside the name pattern, unknown statuses or a ``top`` outside
        1..100 → 400. Only instances with the agent-run input shape are listed. The listing covers what the
        extension returns for one status query (the Python client reads the first page only).
        """

        async def handle() -> func.HttpResponse:
            params = dict(req.params)
            unknown = [key for key in params if key not in _LIST_QUERY_KEYS]
            if unknown:
                raise Problem("invalid-query",
                              f"Unknown query parameter(s) {', '.join(repr(k) for k in unknown)}; "
                              "allowed: agent, status, top.", {"fields": unknown})
            agent = params.get("agent")
            if agent is not None and not AGENT_NAME_PATTERN.fullmatch(agent):
                raise Problem("invalid-query", f"'agent' {agent!r} is not a valid agent name.",
                              {"fields": ["agent"]})
            statuses: list[str] = []
            if params.get("status") is not None:
                statuses = [part.strip() for part in params["status"].split(",")]
                bad = [s for s in statuses if s not in RUN_STATUSES]
                if bad or not statuses:
                    raise Problem("invalid-query",
                                  f"Unknown status value(s) {', '.join(repr(s) for s in bad)}; "
                                  f"allowed: {', '.join(RUN_STATUSES)}.", {"fields": ["status"]})
            top = DEFAULT_LIST_TOP
            if params.get("top") is not None:
                raw_top = params["top"].strip()
                if not raw_top.isdigit() or not 1 <= int(raw_top) <= 100:
                    raise Problem("invalid-query", f"'top' must be an integer from 1 to 100, not {raw_top!r}.",
                                  {"fields": ["top"]})
                top = int(raw_top)
            if statuses:
                runtime: list[OrchestrationRuntimeStatus] = []
                for s in statuses:
                    runtime.extend(r for r in _RUNTIME_FOR_STATUS[s] if r not in runtime)
                found = await client.get_status_by(runtime_status=runtime)
            else:
                found = await client.get_status_all()
            runs: list[tuple[datetime | None, str, dict[str, Any]]] = []
            for status in found:
                run_input = _agent_run_input(status.input_) if status else None
                if run_input is None or (agent is not None and run_input["agent"] != agent):
                    continue
                run = _run_json(status, run_input)
                if statuses and run["status"] not in statuses:
                    continue
                runs.append((status.created_time, run["id"] or "", run))
            runs.sort(key=lambda item: (item[0].timestamp() if item[0] else 0.0, item[1]), reverse=True)
            return _json_response({"runs": [run for _, _, run in runs[:top]]})

        return await _guarded(req, handle)

    @bp.function_name("api_get_run")
    @bp.route(route="runs/{runId}", methods=["GET"])
    @bp.durable_client_input(client_name="client")
    async def api_get_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``GET /api/runs/{runId}`` → 200 ``<run>``; 404 for unknown ids and for instances that are not agent runs."""

        async def handle() -> func.HttpResponse:
            status, run_input = await _load_run(client, _path_run_id(req))
            return _json_response(_run_json(status, run_input))

        return await _guarded(req, handle)

    @bp.function_name("api_decide_approval")
    @bp.route(route="runs/{runId}/approvals/{approvalId}", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_decide_approval(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST /api/runs/{runId}/approvals/{approvalId}`` with ``{"approved": bool, "comment": str|null}``.

        Checks, in order: 413 (over 1 MiB); 400 (strict body: ``approved`` boolean required, ``comment`` at most
        4000 characters, nothing else); 404 unknown run; 410 run finished (completed, failed or cancelled), except
        that repeating the decision the run recorded is 200 even then (a retry after a lost answer stays
        idempotent); for an approval already in the custom status ``approvals``: 200 ``<decision>`` when the same
        decision is repeated, 409 when it differs (``approval-expired`` when it expired); 404 when the id is
        neither pending nor decided. Otherwise raises ``approval:<approvalId>`` with ``{"approved", "comment"}``
        (docs/internals.md) and polls until the orchestration records a decision (bounded wait): 202
        ``<decision>`` when it recorded this one (or when the wait ran out: ``recorded: false``), 409 when it
        recorded another (a concurrent decision or expiry), 410 when the run finished without recording it.
        """

        async def handle() -> func.HttpResponse:
            _check_size(req)
            body = _read_object(req, required=True)
            assert body is not None
            _reject_unknown(body, ("approved", "comment"))
            if "approved" not in body:
                raise Problem("invalid-body", "The member 'approved' (true or false) is required.",
                              {"fields": ["approved"]})
            approved = body["approved"]
            if not isinstance(approved, bool):
                raise Problem("invalid-body", f"'approved' must be true or false, not {_json_type(approved)}.",
                              {"fields": ["approved"]})
            comment = _optional_text(body, "comment", MAX_COMMENT_CHARS)
            run_id = _path_run_id(req)
            approval_id = req.route_params.get("approvalId") or ""
            status, _ = await _load_run(client, run_id)
            custom = _custom_status(status)
            recorded = _find(custom.get("approvals"), approval_id)
            if status.runtime_status in _TERMINAL:
                if recorded is not None and recorded.get("decision") == ("approved" if approved else "rejected"):
                    # An idempotent retry (e.g. after a lost 202) of the decision that was applied.
                    return _decided_answer(run_id, approval_id, recorded, approved, status, replay=True)
                raise Problem("run-finished", f"Run {run_id!r} has finished; its approvals can no longer change.")
            if recorded is not None:
                return _decided_answer(run_id, approval_id, recorded, approved, status, replay=True)
            if _find(custom.get("pendingApprovals"), approval_id) is None:
                raise Problem("approval-not-found", f"Run {run_id!r} has no pending approval {approval_id!r}.")
            try:
                await client.raise_event(run_id, f"approval:{approval_id}", {"approved": approved, "comment": comment})
            except Exception:
                after = await client.get_status(run_id)
                if not after:
                    raise Problem("run-not-found", f"There is no run with id {run_id!r}.") from None
                if after.runtime_status in _TERMINAL:
                    raise Problem("run-finished", f"Run {run_id!r} finished before the decision arrived.") from None
                raise
            loop = asyncio.get_running_loop()
            deadline = loop.time() + approval_wait_seconds
            delay = 0.05
            while True:
                latest = await client.get_status(run_id)
                if not latest:
                    raise Problem("run-not-found", f"There is no run with id {run_id!r}.")
                recorded = _find(_custom_status(latest).get("approvals"), approval_id)
                if recorded is not None:
                    return _decided_answer(run_id, approval_id, recorded, approved, latest, replay=False)
                if latest.runtime_status in _TERMINAL:
                    raise Problem("run-finished", f"Run {run_id!r} finished before the decision was recorded.")
                if loop.time() >= deadline:
                    body_out = _decision_json(run_id, approval_id, "approved" if approved else "rejected",
                                              comment, None, False, latest)
                    return _json_response(body_out, 202)
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, approval_poll_seconds)

        return await _guarded(req, handle)

    @bp.function_name("api_cancel_run")
    @bp.route(route="runs/{runId}/cancel", methods=["POST"])
    @bp.durable_client_input(client_name="client")
    async def api_cancel_run(req: func.HttpRequest, client: DurableOrchestrationClient) -> func.HttpResponse:
        """``POST /api/runs/{runId}/cancel`` with an optional body ``{"reason": str|null}`` (at most 4000 characters).

        413 / 400 (strict body) first, then 404 unknown run, 410 finished; otherwise terminates the instance with
        reason ``"cancelled by caller"`` (``"cancelled by caller: <reason>"`` when given) → 202 ``<cancel>``.
        The run's status becomes ``cancelled`` once the termination is processed.
        """

        async def handle() -> func.HttpResponse:
            _check_size(req)
            body = _read_object(req, required=False) or {}
            _reject_unknown(body, ("reason",))
            reason = _optional_text(body, "reason", MAX_COMMENT_CHARS)
            run_id = _path_run_id(req)
            status, run_input = await _load_run(client, run_id)
            if status.runtime_status in _TERMINAL:
                raise Problem("run-finished", f"Run {run_id!r} has already finished.")
            text = "cancelled by caller" + (f": {reason}" if reason and reason.strip() else "")
            await client.terminate(run_id, text)
            payload = {
                "id": run_id,
                "agent": run_input["agent"],
                "cancelRequested": True,
                "reason": text,
                "links": {"run": f"{ROUTE_PREFIX}/runs/{run_id}"},
            }
            return _json_response(payload, 202)

        return await _guarded(req, handle)

    return bp


def _find(items: Any, item_id: str) -> dict[str, Any] | None:
    """The last dict in ``items`` whose ``id`` equals ``item_id``."""
    found = None
    for item in _dict_list(items):
        if item.get("id") == item_id:
            found = item
    return found


def _decision_json(
    run_id: str,
    approval_id: str,
    decision: str,
    comment: str | None,
    decided_at: str | None,
    recorded: bool,
    status: DurableOrchestrationStatus,
) -> dict[str, Any]:
    custom = _custom_status(status)
    pending = [] if status.runtime_status in _TERMINAL else _dict_list(custom.get("pendingApprovals"))
    return {
        "runId": run_id,
        "approvalId": approval_id,
        "decision": decision,
        "comment": comment,
        "decidedAt": decided_at,
        "recorded": recorded,
        "status": run_status(status.runtime_status, pending),
        "links": {"run": f"{ROUTE_PREFIX}/runs/{run_id}"},
    }


def _decided_answer(
    run_id: str,
    approval_id: str,
    recorded: dict[str, Any],
    approved: bool,
    status: DurableOrchestrationStatus,
    *,
    replay: bool,
) -> func.HttpResponse:
    """Answer for an approval the orchestration has recorded: 200/202 when it matches ``approved``, else 409."""
    decision = recorded.get("decision")
    wanted = "approved" if approved else "rejected"
    decided_at = recorded.get("decidedAt")
    if decision == wanted:
        body = _decision_json(run_id, approval_id, wanted, recorded.get("comment"), decided_at, True, status)
        return _json_response(body, 200 if replay else 202)
    if decision == "expired":
        raise Problem(
            "approval-expired",
            f"Approval {approval_id!r} expired at {decided_at} before a decision was made; it cannot be {wanted}.",
            {"decision": "expired", "decidedAt": decided_at},
        )
    raise Problem(
        "approval-conflict",
        f"Approval {approval_id!r} was already {decision} at {decided_at}; it cannot now be {wanted}.",
        {"decision": decision, "decidedAt": decided_at},
    )
