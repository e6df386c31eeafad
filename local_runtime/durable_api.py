"""The Durable HTTP API (the extension's ``HttpApiHandler``, protocol §5.2-5.6) on aiohttp.

Served with identical routing under ``/runtime/webhooks/durabletask/`` (public webhook) and ``/durabletask/`` (the
client's ``rpcBaseUrl``). Every route the real ``DurableOrchestrationClient`` 1.7 calls is here; entity routes answer
**501** (entities are not supported by the local runtime) and rewind of a failed instance answers **501**.

**Starting an id that is active.** ``POST orchestrators/{name}/{id}`` and ``POST instances/{id}/restart?
restartWithNewInstanceId=false`` refuse to replace an instance that is Pending, Running, Suspended or ContinuedAsNew
(the extension's default ``overridableExistingInstanceStates: NonRunningStates``; ``DurableTaskOptions.cs``). The
extension has no special case for it: DTFx's ``OrchestrationAlreadyExistsException`` (an ``InvalidOperationException``)
reaches ``HttpApiHandler``'s catch-all, so the answer is **500** ``{"Message": "Something went wrong while
processing your request", "ExceptionMessage": "An Orchestration instance with the status Running already exists.",
"ExceptionType": "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException", "StackTrace": null}`` (the
status word is the existing instance's). The real client's ``start_new`` then raises a plain ``Exception`` whose
only argument is that body as a dict. A Completed, Failed, Terminated or Canceled instance is replaced. Check and
write are one SQLite transaction, so of concurrent starts of one new id exactly one gets 202.

**Payloads over the limit** (:mod:`.limits`; docs/internals.md "Payload limits (local runtime)"): a start or
restart whose orchestration input, or a raise-event whose payload, is over ``LOCAL_RUNTIME_MAX_PAYLOAD_BYTES`` is
refused before anything is written, as the extension answers a backend refusal: the catch-all **500**
``{"Message": "Something went wrong while processing your request", "ExceptionMessage": "The orchestration input is
1,048,577 bytes of UTF-8 JSON, more than the Durable Task Scheduler's payload limit of 1,048,576 bytes (...)",
"ExceptionType": "Grpc.Core.RpcException", "StackTrace": null}``.

**Paging of** ``GET instances/`` (filters ``createdTimeFrom``, ``createdTimeTo``, ``runtimeStatus``,
``instanceIdPrefix``, ``showInput``; protocol §5.2):

* ``top``: page size, default **100**; a value that is not an integer or is < 1 means the default, values above
  1000 mean 1000 (Azure Table's largest page).
* The response carries ``x-ms-continuation-token: <token>`` when more rows *may* follow; on the last page the
  header is absent. Send the token back unchanged in the ``x-ms-continuation-token`` request header with the *same*
  query string to get the next page. No header, an empty one or ``null`` means the first page. A token this
  runtime did not issue → **400** (ArgumentException body).
* Tokens are opaque (today ``"o1.<n>"``: a position in the order in which instance ids were first created, which a
  replace, restart with the same id or purge does not change). Following tokens from the first page reaches every
  instance that matches the filters and exists for the whole walk, each exactly once; an instance created during
  the walk under a new id comes after all older ids (so on a later page while the walk has not ended); an id that
  is replaced, restarted or purged and re-created during the walk keeps its position and is listed at most once
  (in the state it had when its page was read). A page may hold fewer than ``top`` rows
  and still carry a token (clients must loop until the header is absent, as with Azure Storage).
* The real Python client (``get_status_all``/``get_status_by``) reads only the first page; call the route directly
  to page.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any
from urllib.parse import quote

from aiohttp import web

from . import events as ev
from .engine import Engine, from_us, to_us
from .events import ET, STATUS_NAMES, compact
from .limits import PayloadTooLarge
from .store import ACTIVE, TERMINAL, Instance, InstanceExistsError

__all__ = ["DurableApi", "client_json", "page_token", "parse_page_token", "WEBHOOK_BASE", "RPC_BASE"]

WEBHOOK_BASE = "/runtime/webhooks/durabletask"
RPC_BASE = "/durabletask"

_STATUS_BY_LOWER = {n.lower(): n for n in STATUS_NAMES.values()}
_TOKEN_PREFIX = "o1."
_DEFAULT_TOP = 100
_MAX_TOP = 1000
_COMPLETION_TYPES = {ET.TaskCompleted: ET.TaskScheduled, ET.TaskFailed: ET.TaskScheduled,
                     ET.SubOrchestrationInstanceCompleted: ET.SubOrchestrationInstanceCreated,
                     ET.SubOrchestrationInstanceFailed: ET.SubOrchestrationInstanceCreated}


def client_json(port: int, hub: str, host: str = "127.0.0.1") -> str:
    """The ``durableClient`` binding string (protocol §5.1) with no system key (like Core Tools)."""
    base = f"http://{host}:{port}{WEBHOOK_BASE}"
    q = f"taskHub={hub}&connection=Storage"
    inst = f"{base}/instances/INSTANCEID"
    return json.dumps({
        "taskHubName": hub,
        "connectionName": None,
        "creationUrls": {
            "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?",
            "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                                                 "?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&",
        },
        "managementUrls": {
            "id": "INSTANCEID",
            "statusQueryGetUri": f"{inst}?{q}",
            "sendEventPostUri": f"{inst}/raiseEvent/{{eventName}}?{q}",
            "terminatePostUri": f"{inst}/terminate?reason={{text}}&{q}",
            "rewindPostUri": f"{inst}/rewind?reason={{text}}&{q}",
            "purgeHistoryDeleteUri": f"{inst}?{q}",
            "restartPostUri": f"{inst}/restart?{q}",
            "suspendPostUri": f"{inst}/suspend?reason={{text}}&{q}",
            "resumePostUri": f"{inst}/resume?reason={{text}}&{q}",
        },
        "baseUrl": base,
        "requiredQueryStringParameters": "",
        "rpcBaseUrl": f"http://{host}:{port}{RPC_BASE}/",
        "httpBaseUrl": None,
        "maxGrpcMessageSizeInBytes": None,
    }, separators=(",", ":"))


def _json(value: Any, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(status=status, body=compact(value).encode("utf-8"), headers=headers,
                        content_type="application/json", charset="utf-8")


def _error(status: int, message: str, exc_message: str | None = None, exc_type: str | None = None) -> web.Response:
    body: dict[str, str | None] = {"Message": message}
    if exc_message is not None:
        body.update({"ExceptionMessage": exc_message, "ExceptionType": exc_type or "System.ArgumentException",
                     "StackTrace": None})
    return _json(body, status)


def _bad_argument(msg: str) -> web.Response:
    return _error(400, "One or more of the arguments submitted is incorrect", msg)


def _already_exists(exc: InstanceExistsError) -> web.Response:
    """The extension's answer to ``OrchestrationAlreadyExistsException`` (module docstring)."""
    return _error(500, "Something went wrong while processing your request", str(exc),
                  "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException")


def _too_large(exc: PayloadTooLarge) -> web.Response:
    """The extension's catch-all answer to the scheduler refusing a payload (module docstring)."""
    return _error(500, "Something went wrong while processing your request", str(exc), "Grpc.Core.RpcException")


def page_token(seq: int) -> str:
    """The continuation token that resumes a listing after position ``seq`` (module docstring)."""
    return f"{_TOKEN_PREFIX}{seq}"


def parse_page_token(token: str | None) -> int | None:
    """A request's ``x-ms-continuation-token`` → the position to resume after, or None for the first page
    (absent, empty or ``null``). Raises ValueError for a token this runtime did not issue."""
    if token is None or token.strip() in ("", "null"):
        return None
    token = token.strip()
    if not token.startswith(_TOKEN_PREFIX) or not token[len(_TOKEN_PREFIX):].isdigit():
        raise ValueError(f"The continuation token '{token[:64]}' is invalid.")
    return int(token[len(_TOKEN_PREFIX):])


def _top(value: str | None) -> int:
    try:
        n = int((value or "").strip())
    except ValueError:
        return _DEFAULT_TOP
    return _DEFAULT_TOP if n < 1 else min(n, _MAX_TOP)


def _parse_token(text: str | None) -> Any:
    """``ParseToJToken``: JSON value, else the trimmed raw string, or None."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text.strip()


def _bool(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    v = value.strip().lower()
    if v in ("true", "false"):
        return v == "true"
    return default


def _parse_dt(value: str | None) -> int | None:
    if not value:
        return None
    try:
        return to_us(ev.parse_time(value))
    except ValueError:
        return None


def _history_json(history: list[dict], show_output: bool, show_input: bool) -> list[dict]:
    """``historyEvents`` as the status API shows them (protocol §5.4)."""
    # keys: (scheduling event type, sequence id); a completion's TaskScheduledId may be missing (None)
    scheduled: dict[tuple[int, int | None], dict] = {}
    matched: set[tuple[int, int | None]] = set()
    for e in history:
        if e["EventType"] in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated):
            scheduled[(e["EventType"], e["EventId"])] = e
    for e in history:
        if e["EventType"] in _COMPLETION_TYPES:
            matched.add((_COMPLETION_TYPES[e["EventType"]], e.get("TaskScheduledId")))
    out = []
    for e in history:
        et = e["EventType"]
        if et in (ET.OrchestratorStarted, ET.OrchestratorCompleted):
            continue
        if et in (ET.TaskScheduled, ET.SubOrchestrationInstanceCreated) and (et, e["EventId"]) in matched:
            continue
        item = {k: v for k, v in e.items() if k not in ("EventId", "IsPlayed")}
        item["EventType"] = ET.NAMES.get(et, str(et))
        if et in _COMPLETION_TYPES:
            src = scheduled.get((_COMPLETION_TYPES[et], e.get("TaskScheduledId"))) or {}
            item.pop("TaskScheduledId", None)
            item["ScheduledTime"] = src.get("Timestamp")
            item["FunctionName"] = src.get("Name")
            if show_input:
                item["Input"] = src.get("Input")
        if et == ET.ExecutionStarted:
            item["FunctionName"] = item.pop("Name", None)
            for k in ("OrchestrationInstance", "ParentInstance", "Version", "Tags"):
                item.pop(k, None)
        if et == ET.ExecutionCompleted:
            code = e.get("OrchestrationStatus")
            item["OrchestrationStatus"] = STATUS_NAMES.get(code, "Unknown") if isinstance(code, int) else "Unknown"
        if et == ET.TimerFired:
            item.pop("TimerId", None)
        if "Result" in item and et in (*_COMPLETION_TYPES, ET.ExecutionCompleted):
            if show_output:
                item["Result"] = _parse_token(item["Result"])
            else:
                item.pop("Result")
        if not show_input:
            item.pop("Input", None)
        out.append(item)
    return out


class DurableApi:
    """Handlers of the Durable HTTP API bound to an :class:`Engine`; ``hub`` is the task hub name."""

    def __init__(self, engine: Engine, hub: str):
        self.engine = engine
        self.store = engine.store
        self.hub = hub

    def add_routes(self, app: web.Application) -> None:
        """Register every route under both base paths."""
        for base in (WEBHOOK_BASE, RPC_BASE):
            r = app.router
            r.add_post(base + "/orchestrators/{name}", self.start)
            r.add_post(base + "/orchestrators/{name}/{instance_id}", self.start)
            r.add_get(base + "/instances", self.list_instances)
            r.add_get(base + "/instances/", self.list_instances)
            r.add_delete(base + "/instances", self.purge_by)
            r.add_delete(base + "/instances/", self.purge_by)
            r.add_get(base + "/instances/{instance_id}", self.get_status)
            r.add_delete(base + "/instances/{instance_id}", self.purge_one)
            r.add_post(base + "/instances/{instance_id}/raiseEvent/{event}", self.raise_event)
            for op in ("terminate", "suspend", "resume", "rewind", "restart"):
                r.add_post(base + "/instances/{instance_id}/" + op, getattr(self, op))
            r.add_route("*", base + "/entities/{tail:.*}", self.entities)
            r.add_route("*", base + "/entities", self.entities)

    # ---- helpers ----
    def _check_status_payload(self, request: web.Request, instance_id: str) -> dict:
        origin = f"{request.scheme}://{request.host}"
        inst = f"{origin}{WEBHOOK_BASE}/instances/{quote(instance_id, safe='')}"
        q = f"taskHub={self.hub}&connection=Storage"
        return {"id": instance_id,
                "statusQueryGetUri": f"{inst}?{q}",
                "sendEventPostUri": f"{inst}/raiseEvent/{{eventName}}?{q}",
                "terminatePostUri": f"{inst}/terminate?reason={{text}}&{q}",
                "purgeHistoryDeleteUri": f"{inst}?{q}",
                "restartPostUri": f"{inst}/restart?{q}",
                "suspendPostUri": f"{inst}/suspend?reason={{text}}&{q}",
                "resumePostUri": f"{inst}/resume?reason={{text}}&{q}"}

    def _check_status_response(self, request: web.Request, instance_id: str) -> web.Response:
        payload = self._check_status_payload(request, instance_id)
        return _json(payload, 202, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})

    def status_json(self, inst: Instance, *, show_history: bool = False, show_output: bool = False,
                    show_input: bool = True) -> dict:
        """The status payload of §5.4 (property order kept)."""
        body = {"name": inst.name, "instanceId": inst.instance_id, "runtimeStatus": inst.status,
                "input": _parse_token(inst.input) if show_input else None,
                "customStatus": _parse_token(inst.custom_status), "output": _parse_token(inst.output),
                "createdTime": ev.status_time(from_us(inst.created_us)),
                "lastUpdatedTime": ev.status_time(from_us(inst.updated_us))}
        if show_history:
            body["historyEvents"] = _history_json(self.store.history(inst.instance_id), show_output, show_input)
        return body

    # ---- routes ----
    async def start(self, request: web.Request) -> web.Response:
        """``POST orchestrators/{name}[/{instanceId}]``: 202 check-status, 400 bad id/body/unknown name, 500
        already active or input over the payload limit (module docstring)."""
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id") or uuid.uuid4().hex
        if (instance_id.startswith("@") or re.search(r"[/\\?#\x00-\x1f\x7f]", instance_id)
                or len(instance_id) > 256):
            return _bad_argument(f"Instance ID '{instance_id}' is invalid.")
        info = self.engine.registry.orchestrator(name)
        if info is None:
            known = ", ".join(f"'{f.durable_name}'" for f in self.engine.registry.orchestrators.values())
            return _bad_argument(f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator "
                                 f"function. Additional info: The following are the known orchestrator "
                                 f"functions: {known}.")
        raw = await request.read()
        input_text = None
        if raw and raw.strip():
            try:
                value = json.loads(raw)
            except ValueError:
                return _bad_argument("Invalid JSON content")
            input_text = None if value is None else compact(value)
        try:
            self.engine.start_instance(info.durable, instance_id, input_text)
        except InstanceExistsError as exc:
            return _already_exists(exc)
        except PayloadTooLarge as exc:
            return _too_large(exc)
        timeout = request.query.get("timeout")
        if timeout is not None:
            return await self._wait(request, instance_id, float(timeout),
                                    float(request.query.get("pollingInterval") or 1))
        return self._check_status_response(request, instance_id)

    async def _wait(self, request: web.Request, instance_id: str, timeout: float, interval: float) -> web.Response:
        if interval > timeout:
            return _bad_argument("Total timeout should be bigger than retry timeout")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            inst = self.store.instance(instance_id)
            if inst and inst.status == "Completed":
                return web.Response(status=200, body=(inst.output or "null").encode(),
                                    content_type="application/json", charset="utf-8")
            if inst and inst.status in TERMINAL:
                return _json(self.status_json(inst), 200)
            if loop.time() >= deadline:
                return self._check_status_response(request, instance_id)
            await asyncio.sleep(min(interval, max(0.01, deadline - loop.time())))

    async def get_status(self, request: web.Request) -> web.Response:
        """``GET instances/{id}``: 404 empty, 202 running-like (+Location, Retry-After 5), 200 finished."""
        inst = self.store.instance(request.match_info["instance_id"])
        if inst is None:
            return web.Response(status=404)
        q = request.query
        body = self.status_json(inst, show_history=_bool(q.get("showHistory"), False),
                                show_output=_bool(q.get("showHistoryOutput"), False),
                                show_input=_bool(q.get("showInput"), True))
        if inst.status in ACTIVE:
            return _json(body, 202, {"Location": str(request.url), "Retry-After": "5"})
        if inst.status == "Failed" and _bool(q.get("returnInternalServerErrorOnFailure"), False):
            return _json(body, 500)
        return _json(body, 200)

    def _filtered(self, request: web.Request, *, default_to_now: bool = False,
                  after: int | None = None, limit: int | None = None) -> list[tuple[int, Instance]]:
        q = request.query
        statuses = None
        if q.get("runtimeStatus"):
            statuses = [_STATUS_BY_LOWER.get(s.strip().lower(), s.strip()) for s in q["runtimeStatus"].split(",")
                        if s.strip()]
        created_to = _parse_dt(q.get("createdTimeTo"))
        if created_to is None and default_to_now:
            created_to = to_us(ev.utcnow())
        return self.store.query(created_from=_parse_dt(q.get("createdTimeFrom")), created_to=created_to,
                                statuses=statuses, prefix=q.get("instanceIdPrefix") or None, after=after,
                                limit=limit)

    async def list_instances(self, request: web.Request) -> web.Response:
        """``GET instances/``: 200 JSON array of status objects (no history); paging by ``top`` and
        ``x-ms-continuation-token`` as the module docstring says; 400 for a foreign token."""
        top = _top(request.query.get("top"))
        try:
            after = parse_page_token(request.headers.get("x-ms-continuation-token"))
        except ValueError as exc:
            return _bad_argument(str(exc))
        rows = self._filtered(request, after=after, limit=top + 1)
        show_input = _bool(request.query.get("showInput"), True)
        headers = {}
        if len(rows) > top:
            rows = rows[:top]
            headers["x-ms-continuation-token"] = page_token(rows[-1][0])
        return _json([self.status_json(r, show_input=show_input) for _, r in rows], 200, headers)

    async def purge_one(self, request: web.Request) -> web.Response:
        """``DELETE instances/{id}``: 404 unknown, else 200 ``{"instancesDeleted":1}``."""
        n = self.store.purge([request.match_info["instance_id"]])
        if n == 0:
            return web.Response(status=404)
        return _json({"instancesDeleted": n})

    async def purge_by(self, request: web.Request) -> web.Response:
        """``DELETE instances/``: ``createdTimeFrom`` required (400), 404 when nothing matched, else 200."""
        if _parse_dt(request.query.get("createdTimeFrom")) is None:
            return _json("Please provide value for 'createdTimeFrom' parameter.", 400)
        rows = self._filtered(request, default_to_now=True)
        n = self.store.purge([r.instance_id for _, r in rows])
        if n == 0:
            return web.Response(status=404)
        return _json({"instancesDeleted": n})

    async def raise_event(self, request: web.Request) -> web.Response:
        """``POST instances/{id}/raiseEvent/{name}``: 404 / 410 / 400 non-JSON / 500 payload over the limit / 202."""
        iid = request.match_info["instance_id"]
        inst = self.store.instance(iid)
        if inst is None:
            return _error(404, f"No instance with ID '{iid}' found.")
        if inst.status in TERMINAL:
            return _error(410, "The instance has already completed, failed or been terminated.")
        if request.content_type != "application/json":
            return _json({"Message": "Only application/json request content is supported"}, 400)
        raw = await request.read()
        input_text = None
        if raw.strip():
            try:
                input_text = compact(json.loads(raw))
            except ValueError:
                return _bad_argument("Invalid JSON content")
        try:
            self.engine.check_event_payload(input_text)
        except PayloadTooLarge as exc:
            return _too_large(exc)
        self.engine.send_event(iid, ev.event_raised(request.match_info["event"], input_text, ev.utcnow()))
        return web.Response(status=202)

    def _existing(self, request: web.Request) -> Instance | web.Response:
        """The instance named by the route, or the 404 response to answer when there is none."""
        iid = request.match_info["instance_id"]
        inst = self.store.instance(iid)
        if inst is None:
            return _error(404, f"No instance with ID '{iid}' found.")
        return inst

    async def terminate(self, request: web.Request) -> web.Response:
        """``POST instances/{id}/terminate?reason=``: 404 / 410 finished / 202."""
        inst = self._existing(request)
        if isinstance(inst, web.Response):
            return inst
        if inst.status in TERMINAL:
            return web.Response(status=410)
        self.engine.send_event(inst.instance_id, ev.execution_terminated(request.query.get("reason"), ev.utcnow()))
        return web.Response(status=202)

    async def suspend(self, request: web.Request) -> web.Response:
        """``POST instances/{id}/suspend``: 404 / 410 / 500 already suspended / 202."""
        inst = self._existing(request)
        if isinstance(inst, web.Response):
            return inst
        if inst.status in TERMINAL:
            return web.Response(status=410)
        if inst.status == "Suspended":
            return _error(500, "Something went wrong while processing your request",
                          f"Cannot suspend the orchestration instance {inst.instance_id} because instance is in "
                          f"the Suspended state.", "System.InvalidOperationException")
        self.engine.send_event(inst.instance_id, ev.execution_suspended(request.query.get("reason"), ev.utcnow()))
        return web.Response(status=202)

    async def resume(self, request: web.Request) -> web.Response:
        """``POST instances/{id}/resume``: 404 / 410 / 500 not suspended / 202."""
        inst = self._existing(request)
        if isinstance(inst, web.Response):
            return inst
        if inst.status in TERMINAL:
            return web.Response(status=410)
        if inst.status != "Suspended":
            return _error(500, "Something went wrong while processing your request",
                          f"Cannot resume the orchestration instance {inst.instance_id} because instance is in "
                          f"the {inst.status} state.", "System.InvalidOperationException")
        self.engine.send_event(inst.instance_id, ev.execution_resumed(request.query.get("reason"), ev.utcnow()))
        return web.Response(status=202)

    async def rewind(self, request: web.Request) -> web.Response:
        """``POST instances/{id}/rewind``: 404 / 410 finished-not-failed / 500 running / 501 failed (not
        implemented locally; rewind is deprecated in the extension)."""
        inst = self._existing(request)
        if isinstance(inst, web.Response):
            return inst
        if inst.status in ("Completed", "Terminated", "Canceled"):
            return web.Response(status=410)
        if inst.status != "Failed":
            return _error(500, "Something went wrong while processing your request",
                          "The rewind operation is only supported on failed orchestration instances.",
                          "System.InvalidOperationException")
        return _json("Rewind is not supported by the local runtime.", 501)

    async def restart(self, request: web.Request) -> web.Response:
        """``POST instances/{id}/restart?restartWithNewInstanceId=``: 400 unknown, else 202 check-status for the
        new (or same) id, started with the original input; 500 already-exists (module docstring) when the same id
        is still active."""
        iid = request.match_info["instance_id"]
        inst = self.store.instance(iid)
        if inst is None:
            return _bad_argument(f"An orchestration with the instanceId {iid} was not found.")
        new_id = uuid.uuid4().hex if _bool(request.query.get("restartWithNewInstanceId"), True) else iid
        try:
            self.engine.start_instance(inst.name, new_id, inst.input)
        except InstanceExistsError as exc:
            return _already_exists(exc)
        except PayloadTooLarge as exc:
            return _too_large(exc)
        return self._check_status_response(request, new_id)

    async def entities(self, request: web.Request) -> web.Response:
        """Entity routes: not implemented locally → 501 with a clear message."""
        return _error(501, "Durable entities are not supported by the local runtime (local_runtime).")
