"""A faithful in-test fake of the Durable extension's HTTP API (protocol §5.2-§5.4), plus tests of the fake.

``FakeDurableHost`` serves the few routes the HTTP API's ``DurableOrchestrationClient`` calls, at the client's
``rpcBaseUrl`` (``http://127.0.0.1:<port>/durabletask/``) on a free loopback port, with the extension's JSON:

* ``POST orchestrators/{name}[/{id}]``: body = the JSON the client posted (a JSON *string* holding the input's
  JSON text for Python-started instances); unknown orchestrator → 400 with ``ExceptionMessage``; invalid id →
  400; an id whose instance is Pending, Running, ContinuedAsNew or Suspended is refused with the extension's
  **500** ``OrchestrationAlreadyExistsException`` body (default ``overridableExistingInstanceStates:
  NonRunningStates``; the same answer local_runtime/durable_api.py documents and serves), a finished one is
  replaced; the check and the write run without an ``await`` between them, so of concurrent starts of one new id
  exactly one gets 202 + check-status body + ``Location`` + ``Retry-After: 10``.
* ``GET instances/{id}``: 404 with an empty body; 202 (+ ``Location``, ``Retry-After: 5``) while
  Pending/Running/ContinuedAsNew/Suspended; 200 otherwise; the status JSON of §5.4 (``showInput`` defaults to
  true).
* ``GET instances/``: ``runtimeStatus`` (comma list, repeatable), ``instanceIdPrefix``, ``createdTimeFrom`` /
  ``createdTimeTo`` (inclusive), ``showInput`` (default true), ``top`` (page size, default 100; not an integer or
  < 1 → 100; at most ``max_page`` rows, default 1000 like an Azure Table query, so a page can be shorter than
  ``top`` and still have a token); 200 + array in instance id order (as Azure Storage's Instances table,
  partitioned by id: *not* creation order). When more rows follow, the answer has
  ``x-ms-continuation-token: <opaque>``; sent back in the request header with the same query it gives the next
  page; on the last page the header is absent. A token the fake did not issue → 400 (ArgumentException body).
  Every list request is kept in ``list_calls``.
* ``DELETE instances/{id}``: purge; 404 / 200 ``{"instancesDeleted": 1}``.
* ``POST instances/{id}/raiseEvent/{name}``: 404 / 410 (terminal) / 400 (not ``application/json``) / 202.
* ``POST instances/{id}/terminate?reason=``: 404 / 410 / 202; the instance becomes Terminated with the reason as
  output once the termination "episode" ran (a short delay).

Times are reported in whole seconds, as the extension writes them (§5.4), but kept and filtered (``createdTimeFrom``
/ ``To``) with their full precision, as the store does; ``FakeDurableHost.clock`` (default: now, microseconds)
gives the creation time of started instances. Values are written with Python's ``json.dumps`` defaults, so a
stored ``float("nan")`` goes over the wire as ``NaN`` (the fake can answer any JSON text the store holds).

The orchestrations themselves are not executed: a test sets an instance's runtime status, custom status and
output with :meth:`FakeDurableHost.update`, the way the runner would, and an event hook plays the part of the
orchestrator's approval step (by default: it records the decision in the custom status after a short delay, as
``durable_agents.runner`` does per docs/internals.md).

The whole fake runs on one background event loop (``LoopThread``), which is also where the tests run the HTTP
functions, exactly like the Functions worker's single loop (the SDK's aiohttp session is bound to it).
"""

import asyncio
import base64
import binascii
import json
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiohttp import web
from azure.durable_functions import DurableOrchestrationClient, OrchestrationRuntimeStatus
from azure.durable_functions.models.utils import http_utils

TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}
RUNNING_LIKE = {"Pending", "Running", "ContinuedAsNew", "Suspended"}
_BAD_ID = re.compile(r"^@|[/\\?#\x00-\x1f\x7f]")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _precise_now() -> datetime:
    return datetime.now(UTC)


def _dotnet_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S") + "Z"


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json_response(value: Any, status: int, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=_compact(value), status=status, headers=headers, content_type="application/json", charset="utf-8"
    )


@dataclass
class FakeInstance:
    """One orchestration instance as the extension reports it (fields of the status JSON, §5.4)."""

    instance_id: str
    name: str
    input: Any
    runtime_status: str = "Pending"
    custom_status: Any = None
    output: Any = None
    created: datetime = field(default_factory=_now)
    updated: datetime = field(default_factory=_now)
    events: list[tuple[str, Any]] = field(default_factory=list)

    def status_json(self, show_input: bool = True) -> dict[str, Any]:
        return {
            "name": self.name,
            "instanceId": self.instance_id,
            "runtimeStatus": self.runtime_status,
            "input": self.input if show_input else None,
            "customStatus": self.custom_status,
            "output": self.output,
            "createdTime": _dotnet_time(self.created),
            "lastUpdatedTime": _dotnet_time(self.updated),
        }


def record_approval(instance: FakeInstance, event_name: str, payload: Any) -> None:
    """Default event hook: what the runner does when ``approval:<id>`` wins its race (docs/internals.md).

    The payload arrives as the JSON *text* the Python client double-encoded (protocol §1), so it is decoded the
    way the runner must; the pending approval moves to ``approvals`` with the decision, comment and ``decidedBy``
    (an event whose ``argumentsHash`` is not the pending approval's is recorded as rejected, as the runner does).
    """
    if not event_name.startswith("approval:"):
        return
    approval_id = event_name.split(":", 1)[1]
    data = json.loads(payload) if isinstance(payload, str) else payload
    custom = dict(instance.custom_status or {})
    pending = [p for p in custom.get("pendingApprovals", []) if p.get("id") == approval_id]
    if not pending:
        return  # an event nobody waits for stays buffered, as in DTFx
    custom["pendingApprovals"] = [p for p in custom["pendingApprovals"] if p.get("id") != approval_id]
    seen, expected = data.get("argumentsHash"), pending[0].get("argumentsHash")
    other_arguments = isinstance(seen, str) and seen and seen != expected
    custom["approvals"] = [
        *custom.get("approvals", []),
        {
            "id": approval_id,
            "kind": pending[0].get("kind", "tool"),
            "tool": pending[0].get("tool"),
            "decision": "approved" if data["approved"] is True and not other_arguments else "rejected",
            "comment": "decided for other arguments" if other_arguments else data.get("comment"),
            "decidedAt": _dotnet_time(_now()),
            "decidedBy": data.get("decidedBy"),
        },
    ]
    instance.custom_status = custom
    instance.updated = _now()


class FakeDurableHost:
    """The fake extension HTTP API; start it with :meth:`start` on a running loop, stop it with :meth:`stop`."""

    def __init__(self, orchestrators: tuple[str, ...], hub: str = "TestHubName") -> None:
        self.orchestrators = orchestrators
        self.hub = hub
        self.instances: dict[str, FakeInstance] = {}
        self.requests: list[tuple[str, str]] = []
        self.event_delay = 0.15
        self.terminate_delay = 0.05
        self.on_event: Callable[[FakeInstance, str, Any], None] = record_approval
        self.on_raise: Callable[[FakeInstance, str, Any], None] | None = None  # while the request is served
        self.clock: Callable[[], datetime] = _precise_now
        self.max_page = 1000
        self.list_calls: list[tuple[dict[str, list[str]], str | None]] = []
        self.port = 0
        self._runner: web.AppRunner | None = None

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)  # the extension takes large inputs
        app.router.add_post("/durabletask/orchestrators/{name}", self._start_new)
        app.router.add_post("/durabletask/orchestrators/{name}/{id}", self._start_new)
        app.router.add_get("/durabletask/instances/", self._list)
        app.router.add_get("/durabletask/instances/{id}", self._get)
        app.router.add_delete("/durabletask/instances/{id}", self._purge)
        app.router.add_post("/durabletask/instances/{id}/raiseEvent/{event}", self._raise_event)
        app.router.add_post("/durabletask/instances/{id}/terminate", self._terminate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def reset(self) -> None:
        self.instances.clear()
        self.requests.clear()
        self.event_delay = 0.15
        self.terminate_delay = 0.05
        self.on_event = record_approval
        self.on_raise = None
        self.clock = _precise_now
        self.max_page = 1000
        self.list_calls.clear()

    # -- what a Functions host hands to a durableClient binding (§5.1) --------------------------------
    def client_json(self) -> str:
        base = f"http://127.0.0.1:{self.port}/runtime/webhooks/durabletask"
        q = f"taskHub={self.hub}&connection=Storage&code=SYSKEY"
        inst = f"{base}/instances/INSTANCEID"
        return _compact(
            {
                "taskHubName": self.hub,
                "connectionName": None,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?code=SYSKEY",
                    "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                    "?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}&code=SYSKEY",
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
                "requiredQueryStringParameters": "code=SYSKEY",
                "rpcBaseUrl": f"http://127.0.0.1:{self.port}/durabletask/",
                "httpBaseUrl": None,
                "maxGrpcMessageSizeInBytes": None,
            }
        )

    # -- test helpers ----------------------------------------------------------------------------------
    def add(self, instance_id: str, name: str, input: Any, **fields: Any) -> FakeInstance:
        instance = FakeInstance(instance_id=instance_id, name=name, input=input, **fields)
        self.instances[instance_id] = instance
        return instance

    def update(self, instance_id: str, **fields: Any) -> FakeInstance:
        instance = self.instances[instance_id]
        for key, value in fields.items():
            setattr(instance, key, value)
        instance.updated = _now()
        return instance

    def mutations(self) -> list[tuple[str, str]]:
        """Requests that change state (start, raise event, terminate, purge)."""
        return [(m, p) for m, p in self.requests if m in ("POST", "DELETE")]

    # -- routes ----------------------------------------------------------------------------------------
    def _log(self, request: web.Request) -> None:
        self.requests.append((request.method, request.path_qs))

    def _check_status_payload(self, request: web.Request, instance_id: str) -> dict[str, str]:
        base = f"{request.scheme}://{request.host}/runtime/webhooks/durabletask/instances/{instance_id}"
        q = f"taskHub={self.hub}&connection=Storage&code=SYSKEY"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{base}?{q}",
            "sendEventPostUri": f"{base}/raiseEvent/{{eventName}}?{q}",
            "terminatePostUri": f"{base}/terminate?reason={{text}}&{q}",
            "purgeHistoryDeleteUri": f"{base}?{q}",
            "restartPostUri": f"{base}/restart?{q}",
            "suspendPostUri": f"{base}/suspend?reason={{text}}&{q}",
            "resumePostUri": f"{base}/resume?reason={{text}}&{q}",
        }

    async def _start_new(self, request: web.Request) -> web.Response:
        self._log(request)
        name = request.match_info["name"]
        instance_id = request.match_info.get("id") or ""
        raw = await request.read()
        value = None
        if raw:
            try:
                value = json.loads(raw)
            except ValueError as exc:
                return _json_response({"Message": "Invalid JSON content", "ExceptionMessage": str(exc)}, 400)
        known = [o for o in self.orchestrators if o.lower() == name.lower()]
        if not known:
            listed = ", ".join(f"'{o}'" for o in self.orchestrators)
            message = (
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Additional info: The following are the known orchestrator functions: {listed}."
            )
            return _json_response(
                {"Message": "One or more of the arguments submitted is incorrect", "ExceptionMessage": message,
                 "ExceptionType": "System.ArgumentException", "StackTrace": ""},
                400,
            )
        if not instance_id:
            instance_id = uuid.uuid4().hex
        if _BAD_ID.search(instance_id) or len(instance_id) > 256:
            return _json_response(
                {"Message": "One or more of the arguments submitted is incorrect",
                 "ExceptionMessage": f"Invalid instance id '{instance_id}'",
                 "ExceptionType": "System.ArgumentException", "StackTrace": ""},
                400,
            )
        existing = self.instances.get(instance_id)
        if existing is not None and existing.runtime_status in RUNNING_LIKE:
            # DTFx's OrchestrationAlreadyExistsException reaches HttpApiHandler's catch-all (no await since the
            # lookup: concurrent starts of one id cannot both get here).
            return _json_response(
                {"Message": "Something went wrong while processing your request",
                 "ExceptionMessage": f"An Orchestration instance with the status {existing.runtime_status} "
                                     "already exists.",
                 "ExceptionType": "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
                 "StackTrace": None},
                500,
            )
        # The .NET side deserializes the body (a JSON string literal from the Python client) and stores it; the
        # status "input" is that value: the JSON text string (protocol §1, §5.4).
        moment = self.clock()
        self.instances[instance_id] = FakeInstance(instance_id=instance_id, name=known[0], input=value,
                                                   created=moment, updated=moment)
        payload = self._check_status_payload(request, instance_id)
        return _json_response(payload, 202, {"Location": payload["statusQueryGetUri"], "Retry-After": "10"})

    async def _get(self, request: web.Request) -> web.Response:
        self._log(request)
        instance = self.instances.get(request.match_info["id"])
        if instance is None:
            return web.Response(status=404)
        show_input = request.query.get("showInput", "true").lower() != "false"
        body = instance.status_json(show_input)
        if instance.runtime_status in RUNNING_LIKE:
            return _json_response(body, 202, {"Location": str(request.url), "Retry-After": "5"})
        return _json_response(body, 200)

    async def _list(self, request: web.Request) -> web.Response:
        self._log(request)
        token = request.headers.get("x-ms-continuation-token")
        self.list_calls.append(({k: request.query.getall(k) for k in request.query}, token))
        after: str | None = None
        if token and token.strip().lower() != "null":
            after = _read_list_token(token.strip())
            if after is None:
                return _json_response(
                    {"Message": "One or more of the arguments submitted is incorrect",
                     "ExceptionMessage": "The continuation token is not valid.",
                     "ExceptionType": "System.ArgumentException", "StackTrace": ""},
                    400,
                )
        statuses = {s.strip().lower() for part in request.query.getall("runtimeStatus", [])
                    for s in part.split(",") if s.strip()}
        prefix = request.query.get("instanceIdPrefix", "")
        created_from = _query_time(request.query.get("createdTimeFrom"))
        created_to = _query_time(request.query.get("createdTimeTo"))
        found = sorted(
            (
                i
                for i in self.instances.values()
                if (not statuses or i.runtime_status.lower() in statuses)
                and i.instance_id.startswith(prefix)
                and (created_from is None or i.created >= created_from)
                and (created_to is None or i.created <= created_to)
                and (after is None or i.instance_id > after)
            ),
            key=lambda i: i.instance_id,
        )
        try:
            top = int(request.query.get("top", ""))
        except ValueError:
            top = 100
        top = min(top if top >= 1 else 100, self.max_page)
        headers = {}
        if len(found) > top:
            found = found[:top]
            headers["x-ms-continuation-token"] = _list_token(found[-1].instance_id)
        show_input = request.query.get("showInput", "true").lower() != "false"
        return _json_response([i.status_json(show_input) for i in found], 200, headers)

    async def _purge(self, request: web.Request) -> web.Response:
        self._log(request)
        if self.instances.pop(request.match_info["id"], None) is None:
            return web.Response(status=404)
        return _json_response({"instancesDeleted": 1}, 200)

    async def _raise_event(self, request: web.Request) -> web.Response:
        self._log(request)
        instance = self.instances.get(request.match_info["id"])
        if instance is None:
            return web.Response(status=404)
        if instance.runtime_status in TERMINAL:
            return web.Response(status=410)
        if (request.content_type or "").lower() != "application/json":
            return _json_response({"Message": "Only application/json request content is supported"}, 400)
        raw = await request.text()
        value = json.loads(raw) if raw else None  # ConvertToJToken; EventRaised.Input is this value
        name = request.match_info["event"]
        instance.events.append((name, value))
        if self.on_raise is not None:
            self.on_raise(instance, name, value)
        asyncio.get_running_loop().call_later(self.event_delay, self.on_event, instance, name, value)
        return web.Response(status=202)

    async def _terminate(self, request: web.Request) -> web.Response:
        self._log(request)
        instance = self.instances.get(request.match_info["id"])
        if instance is None:
            return web.Response(status=404)
        if instance.runtime_status in TERMINAL:
            return web.Response(status=410)
        reason = request.query.get("reason")

        def finish() -> None:
            if instance.runtime_status not in TERMINAL:
                instance.runtime_status = "Terminated"
                instance.output = reason
                instance.updated = _now()

        asyncio.get_running_loop().call_later(self.terminate_delay, finish)
        return web.Response(status=202)


_TOKEN_PREFIX = "fake1."


def _list_token(last_id: str) -> str:
    """The fake's opaque continuation token: the page ends after instance id ``last_id``."""
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(last_id.encode()).decode()


def _read_list_token(token: str) -> str | None:
    if not token.startswith(_TOKEN_PREFIX):
        return None
    try:
        return base64.urlsafe_b64decode(token[len(_TOKEN_PREFIX):].encode()).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None


def _query_time(text: str | None) -> datetime | None:
    """``createdTimeFrom`` / ``createdTimeTo`` as the Python client writes them (``%Y-%m-%dT%H:%M:%S.%fZ``)."""
    if not text:
        return None
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class LoopThread:
    """One event loop on a daemon thread; :meth:`run` executes a coroutine there and returns its result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-durable-loop", daemon=True)
        self._thread.start()

    def run(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.run(http_utils._close_session())  # the SDK's shared aiohttp session lives on this loop
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def start_fake_host(orchestrators: tuple[str, ...]) -> tuple[LoopThread, FakeDurableHost]:
    """Start a loop thread and a fake host on it (stop both with :func:`stop_fake_host`)."""
    loop = LoopThread()
    host = FakeDurableHost(orchestrators)
    loop.run(host.start())
    return loop, host


def stop_fake_host(loop: LoopThread, host: FakeDurableHost) -> None:
    loop.run(host.stop())
    loop.close()


# ------------------------------------------------------------------------------------------------------
# Tests of the fake itself, through the real DurableOrchestrationClient (so the HTTP API tests rest on it).


@pytest.fixture(scope="module")
def fake():
    loop, host = start_fake_host(("echo_orch",))
    yield loop, host
    stop_fake_host(loop, host)


def test_fake_start_status_roundtrip_keeps_protocol_encodings(fake):
    loop, host = fake
    host.reset()

    async def scenario():
        client = DurableOrchestrationClient(host.client_json())
        instance_id = await client.start_new("echo_orch", "abc", {"x": [1, 2]})
        status = await client.get_status(instance_id)
        missing = await client.get_status("nope")
        return instance_id, status, missing

    instance_id, status, missing = loop.run(scenario())
    assert instance_id == "abc"
    # Python-started instances report their input as JSON text (protocol §1 / §5.4).
    assert status.input_ == '{"x": [1, 2]}'
    assert status.runtime_status == OrchestrationRuntimeStatus.Pending
    assert status.created_time is not None and status.created_time.tzinfo is not None
    assert not missing and missing.runtime_status is None


def test_fake_raise_event_payload_is_double_encoded_and_terminal_instances_answer_410(fake):
    loop, host = fake
    host.reset()
    host.add("i1", "echo_orch", "{}", runtime_status="Running")
    host.add("i2", "echo_orch", "{}", runtime_status="Completed")

    async def scenario():
        client = DurableOrchestrationClient(host.client_json())
        await client.raise_event("i1", "approval:c1", {"approved": True, "comment": None})
        with pytest.raises(Exception, match="is gone"):
            await client.raise_event("i2", "approval:c1", {"approved": True})
        with pytest.raises(Exception, match="No instance"):
            await client.raise_event("zz", "approval:c1", {"approved": True})

    loop.run(scenario())
    assert host.instances["i1"].events == [("approval:c1", '{"approved": true, "comment": null}')]
    assert host.instances["i2"].events == []


def test_fake_terminate_list_and_purge(fake):
    loop, host = fake
    host.reset()
    host.terminate_delay = 0.0
    host.add("a", "echo_orch", "{}", runtime_status="Running", created=_now() - timedelta(minutes=1))
    host.add("b", "echo_orch", "{}", runtime_status="Completed")

    async def scenario():
        client = DurableOrchestrationClient(host.client_json())
        await client.terminate("a", "stop it")
        await asyncio.sleep(0.05)
        after = await client.get_status("a")
        completed = await client.get_status_by(runtime_status=[OrchestrationRuntimeStatus.Completed])
        everything = await client.get_status_all()
        purged = await client.purge_instance_history("b")
        return after, completed, everything, purged

    after, completed, everything, purged = loop.run(scenario())
    assert after.runtime_status == OrchestrationRuntimeStatus.Terminated and after.output == "stop it"
    assert [s.instance_id for s in completed] == ["b"]
    assert sorted(s.instance_id for s in everything) == ["a", "b"]
    assert purged.instances_deleted == 1 and "b" not in host.instances
    assert ("POST", "/durabletask/instances/a/terminate?reason=stop%20it") in host.requests


def test_fake_rejects_unknown_orchestrator_like_the_extension(fake):
    loop, host = fake
    host.reset()

    async def scenario():
        client = DurableOrchestrationClient(host.client_json())
        await client.start_new("missing_orch", None, {"a": 1})

    with pytest.raises(Exception, match="doesn't exist, is disabled, or is not an orchestrator function"):
        loop.run(scenario())


def test_fake_refuses_to_start_over_an_active_instance_and_replaces_a_finished_one(fake):
    loop, host = fake
    host.reset()
    host.add("busy", "echo_orch", '"first"', runtime_status="Running")
    host.add("done", "echo_orch", '"first"', runtime_status="Completed")

    async def scenario():
        client = DurableOrchestrationClient(host.client_json())
        with pytest.raises(Exception) as refused:
            await client.start_new("echo_orch", "busy", "second")
        replaced = await client.start_new("echo_orch", "done", "second")
        return refused.value, replaced

    refused, replaced = loop.run(scenario())
    # The real client raises a plain Exception carrying the extension's 500 body (protocol §5.3).
    assert refused.args[0]["ExceptionType"] == "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"
    assert "status Running already exists" in refused.args[0]["ExceptionMessage"]
    assert host.instances["busy"].input == '"first"'
    assert replaced == "done" and host.instances["done"].input == '"second"'
    assert host.instances["done"].runtime_status == "Pending"


def test_fake_concurrent_starts_of_one_new_id_exactly_one_wins(fake):
    loop, host = fake
    host.reset()

    async def one(n: int):
        client = DurableOrchestrationClient(host.client_json())
        try:
            return await client.start_new("echo_orch", "race", n)
        except Exception as exc:  # noqa: BLE001 - the refused starts
            return exc

    async def scenario():
        return await asyncio.gather(*(one(n) for n in range(8)))

    results = loop.run(scenario())
    assert [r for r in results if r == "race"] == ["race"]
    assert len([r for r in results if isinstance(r, Exception)]) == 7


def test_fake_lists_in_pages_with_continuation_tokens_and_filters(fake):
    import aiohttp

    loop, host = fake
    host.reset()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for n in range(7):
        host.add(f"i{n}", "echo_orch", "{}", runtime_status="Completed" if n % 2 else "Running",
                 created=base + timedelta(seconds=n))

    async def pages(query: dict[str, str]):
        seen: list[list[str]] = []
        token = None
        async with aiohttp.ClientSession() as http:
            while True:
                headers = {"x-ms-continuation-token": token} if token else {}
                async with http.get(f"http://127.0.0.1:{host.port}/durabletask/instances/", params=query,
                                    headers=headers) as response:
                    assert response.status == 200
                    seen.append([s["instanceId"] for s in await response.json()])
                    token = response.headers.get("x-ms-continuation-token")
                if not token:
                    return seen

    async def forged():
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{host.port}/durabletask/instances/",
                                headers={"x-ms-continuation-token": "not-ours"}) as response:
                return response.status, await response.json()

    assert loop.run(pages({"top": "3"})) == [["i0", "i1", "i2"], ["i3", "i4", "i5"], ["i6"]]
    assert loop.run(pages({"top": "3", "runtimeStatus": "Completed"})) == [["i1", "i3", "i5"]]
    assert loop.run(pages({"top": "2", "createdTimeTo": "2026-01-01T00:00:03.000000Z",
                           "runtimeStatus": "Running,Completed"})) == [["i0", "i1"], ["i2", "i3"]]
    assert loop.run(pages({})) == [[f"i{n}" for n in range(7)]]  # default page size 100
    status, body = loop.run(forged())
    assert status == 400 and body["ExceptionType"] == "System.ArgumentException"
    assert host.list_calls[0] == ({"top": ["3"]}, None)
    assert host.list_calls[1][1] is not None and host.list_calls[1][1].startswith("fake1.")
