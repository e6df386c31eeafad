"""Unit tests of the local runtime's HTTP pieces: route templates, the client binding JSON read by the REAL
``DurableOrchestrationClient``, and the status API's ``historyEvents`` shape (protocol §5.1, §5.4, §6.2); then, on a
real runtime process over loopback, the refusal to start an active id (concurrent starts, restart, the real client,
sub-orchestrations) and the paging of ``GET instances/`` (protocol §5.2)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import textwrap
import urllib.error
import urllib.request

import aiohttp
import pytest
from azure.durable_functions import DurableOrchestrationClient

from local_runtime import events as ev
from local_runtime.app_loader import FunctionInfo
from local_runtime.durable_api import _history_json, client_json
from local_runtime.http_triggers import HttpTriggers, unsafe_path
from tests.support.polling import wait_for
from tests.support.runtime_process import RuntimeProcess


def _http_fn(name: str, route: str, methods=None) -> FunctionInfo:
    return FunctionInfo(name=name, kind="http", fn=None, trigger={}, bindings=[], route=route, methods=methods)


def test_route_templates_constraints_optional_and_precedence():
    t = HttpTriggers([_http_fn("items", "items/{id:int?}", ["GET"]), _http_fn("named", "items/special"),
                      _http_fn("runs", "agents/{agent}/runs"), _http_fn("all", "files/{*path}")], "api")
    r, params, _ = t.match("/api/items/7", "GET")
    assert r.info.name == "items" and params == {"id": "7"}
    r, params, _ = t.match("/api/items", "GET")
    assert r.info.name == "items" and params == {}
    r, params, _ = t.match("/API/Items/special", "POST")           # literal beats parameter; case-insensitive
    assert r.info.name == "named"
    assert t.match("/api/items/x", "GET")[0] is None               # int constraint
    r, _, matched = t.match("/api/items/7", "DELETE")
    assert r is None and matched                                   # path matched, method did not
    r, params, _ = t.match("/api/agents/support/runs", "POST")
    assert params == {"agent": "support"}
    r, params, _ = t.match("/api/files/a/b/c.txt", "GET")
    assert params == {"path": "a/b/c.txt"}
    assert t.match("/other/items/7", "GET")[0] is None             # prefix required
    assert t.allowed_methods("/api/items/7") == ["GET"]              # a 405's Allow: the matching routes' methods
    assert t.allowed_methods("/api/items/special") == []             # a route taking any method matches
    assert t.allowed_methods("/api/nothing") == [] and t.allowed_methods("/other/items") == []
    no_prefix = HttpTriggers([_http_fn("root", "hello/{name}")], "")
    assert no_prefix.match("/hello/bob", "GET")[1] == {"name": "bob"}


def test_unsafe_paths_dot_segments_and_encoded_slashes():
    for raw in ("/api/runs/..", "/api/runs/.", "/api/runs/%2e%2E", "/api/./x", "/api/runs/a%2Fb", "/api/a%5cb",
                "/api/a\\b", "/api/%2e/x"):
        assert unsafe_path(raw), raw
    for raw in ("/api/runs/r-1", "/api/runs/a%20b", "/api/runs/...", "/api/runs/.hidden", "/api/runs/%41", "/"):
        assert not unsafe_path(raw), raw


def test_client_json_is_accepted_by_the_real_client():
    text = client_json(7071, "myhub")
    data = json.loads(text)
    assert data["rpcBaseUrl"] == "http://127.0.0.1:7071/durabletask/"
    assert data["baseUrl"] == "http://127.0.0.1:7071/runtime/webhooks/durabletask"
    client = DurableOrchestrationClient(text)
    payload = client.create_http_management_payload("abc")
    assert payload["statusQueryGetUri"] == (
        "http://127.0.0.1:7071/runtime/webhooks/durabletask/instances/abc?taskHub=myhub&connection=Storage")
    assert payload["sendEventPostUri"].endswith(
        "/instances/abc/raiseEvent/{eventName}?taskHub=myhub&connection=Storage")


def test_history_events_shape_of_the_status_api():
    t = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    history = [ev.orchestrator_started(t), ev.execution_started("i", "e", "orch", '"in"', t),
               ev.task_scheduled(0, "act", t), ev.timer_created(1, t, t), ev.orchestrator_completed(t),
               ev.orchestrator_started(t), ev.task_completed(0, '{"a":1}', t), ev.timer_fired(1, t, t),
               ev.execution_completed(2, 1, '"done"', t), ev.orchestrator_completed(t)]
    out = _history_json(history, show_output=True, show_input=True)
    assert [e["EventType"] for e in out] == ["ExecutionStarted", "TimerCreated", "TaskCompleted", "TimerFired",
                                             "ExecutionCompleted"]
    started, _, completed, fired, done = out
    assert started["FunctionName"] == "orch" and "OrchestrationInstance" not in started and started["Input"] == '"in"'
    assert completed == {"EventType": "TaskCompleted", "Result": {"a": 1}, "Timestamp": "2024-01-01T00:00:00Z",
                         "ScheduledTime": "2024-01-01T00:00:00Z", "FunctionName": "act", "Input": None}
    assert "TimerId" not in fired and "EventId" not in fired and "IsPlayed" not in fired
    assert done["OrchestrationStatus"] == "Completed" and done["Result"] == "done"
    quiet = _history_json(history, show_output=False, show_input=False)
    assert "Result" not in quiet[2] and "Input" not in quiet[0]


def test_time_formats():
    t = dt.datetime(2024, 1, 1, 0, 5, 0, 123400, tzinfo=dt.UTC)
    assert ev.fmt_time(t) == "2024-01-01T00:05:00.1234Z"
    assert ev.parse_time("2024-01-01T00:05:00.1234567Z") == dt.datetime(2024, 1, 1, 0, 5, 0, 123456, tzinfo=dt.UTC)
    assert ev.status_time(t) == "2024-01-01T00:05:00Z"


# ---------------- the Durable HTTP API on a real runtime: start refusal, paging ----------------
DT = "/runtime/webhooks/durabletask"
RPC = "/durabletask"

DURABLE_APP = textwrap.dedent('''
    import json

    import azure.durable_functions as df
    import azure.functions as func

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


    @app.route(route="start/{name}/{instance_id}", methods=["POST"])
    @app.durable_client_input(client_name="client")
    async def start(req: func.HttpRequest, client) -> func.HttpResponse:
        """Start through the real DurableOrchestrationClient; report what start_new raised."""
        try:
            iid = await client.start_new(req.route_params["name"], req.route_params["instance_id"],
                                         json.loads(req.get_body() or b"null"))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            return func.HttpResponse(json.dumps({"raised": type(exc).__name__, "args": list(exc.args)}),
                                     status_code=409, mimetype="application/json")
        return func.HttpResponse(json.dumps({"id": iid}), mimetype="application/json")


    @app.orchestration_trigger(context_name="context")
    def wait_orch(context: df.DurableOrchestrationContext):
        go = yield context.wait_for_external_event("Go")
        return {"input": context.get_input(), "go": go}


    @app.orchestration_trigger(context_name="context")
    def quick_orch(context: df.DurableOrchestrationContext):
        return context.get_input()


    @app.orchestration_trigger(context_name="context")
    def parent_orch(context: df.DurableOrchestrationContext):
        try:
            out = yield context.call_sub_orchestrator("wait_orch", "from-parent", context.get_input()["child"])
        except Exception as exc:  # noqa: BLE001
            return {"error": str(exc)}
        return {"child": out}
''')


def _http(method: str, url: str, body=None, headers: dict | None = None):
    """``(status, headers, parsed JSON or None)``."""
    data = None if body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})} if data is not None else dict(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, rh, payload = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, rh, payload = err.code, dict(err.headers), err.read()
    return status, rh, json.loads(payload) if payload else None


@pytest.fixture(scope="module")
def drt(tmp_path_factory):
    app_dir = tmp_path_factory.mktemp("dt-app")
    (app_dir / "function_app.py").write_text(DURABLE_APP)
    (app_dir / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {
        "http": {"routePrefix": "api"}, "durableTask": {"hubName": "pagehub"}}}))
    work = tmp_path_factory.mktemp("dt-rt")
    with RuntimeProcess(app_dir, state=work / "state.sqlite3", log_path=work / "runtime.log") as proc:
        yield proc


def _status(rt: RuntimeProcess, iid: str) -> dict:
    code, _, body = _http("GET", rt.url(f"{DT}/instances/{iid}"))
    assert code in (200, 202), (code, body)
    return body


def _wait_status(rt: RuntimeProcess, iid: str, *statuses: str) -> dict:
    return wait_for(lambda: (st := _status(rt, iid))["runtimeStatus"] in statuses and st, 30,
                    what=f"{iid} in {statuses}")


def _already_exists(body: dict, status: str) -> bool:
    return body == {"Message": "Something went wrong while processing your request",
                    "ExceptionMessage": f"An Orchestration instance with the status {status} already exists.",
                    "ExceptionType": "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException",
                    "StackTrace": None}


def test_concurrent_starts_of_one_new_id_exactly_one_wins(drt):
    url = drt.url(f"{RPC}/orchestrators/wait_orch/race-1")

    async def race():
        async with aiohttp.ClientSession() as session:
            async def one(i: int):
                async with session.post(url, json={"n": i}) as resp:
                    return i, resp.status, await resp.json(content_type=None)
            return await asyncio.gather(*(one(i) for i in range(8)))

    results = asyncio.run(race())
    winners = [(i, body) for i, code, body in results if code == 202]
    losers = [body for _, code, body in results if code != 202]
    assert len(winners) == 1 and len(losers) == 7, results
    assert winners[0][1]["id"] == "race-1"
    assert all(code in (202, 500) for _, code, _ in results)
    assert all(b["ExceptionType"] == "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"
               and b["ExceptionMessage"].endswith("already exists.") for b in losers), losers
    st = _status(drt, "race-1")
    assert st["input"] == {"n": winners[0][0]}
    # still the winner's instance after it ran: the event completes it with the winner's input
    assert _http("POST", drt.url(f"{DT}/instances/race-1/raiseEvent/Go"), body="go")[0] == 202
    assert _wait_status(drt, "race-1", "Completed")["output"] == {"input": {"n": winners[0][0]}, "go": "go"}


def test_starting_an_active_id_fails_and_a_finished_one_is_replaced(drt):
    assert _http("POST", drt.url(f"{DT}/orchestrators/wait_orch/busy-1"), body={"v": 1})[0] == 202
    _wait_status(drt, "busy-1", "Running")
    code, _, body = _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/busy-1"), body={"v": 2})
    assert code == 500 and _already_exists(body, "Running")
    # restart with the same id is a start too
    code, _, body = _http("POST", drt.url(f"{DT}/instances/busy-1/restart?restartWithNewInstanceId=false"))
    assert code == 500 and _already_exists(body, "Running")
    # suspended counts as active, and the answer names the state
    assert _http("POST", drt.url(f"{DT}/instances/busy-1/suspend"))[0] == 202
    _wait_status(drt, "busy-1", "Suspended")
    code, _, body = _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/busy-1"))
    assert code == 500 and _already_exists(body, "Suspended")
    assert _status(drt, "busy-1")["name"] == "wait_orch" and _status(drt, "busy-1")["input"] == {"v": 1}
    # terminated → replaced, as are completed ones
    assert _http("POST", drt.url(f"{DT}/instances/busy-1/terminate?reason=stop"))[0] == 202
    _wait_status(drt, "busy-1", "Terminated")
    assert _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/busy-1"), body={"v": 3})[0] == 202
    assert _wait_status(drt, "busy-1", "Completed")["output"] == {"v": 3}
    code, _, body = _http("POST", drt.url(f"{DT}/instances/busy-1/restart?restartWithNewInstanceId=false"))
    assert code == 202 and body["id"] == "busy-1"
    assert _wait_status(drt, "busy-1", "Completed")["output"] == {"v": 3}


def test_real_client_start_new_raises_the_extension_body(drt):
    assert _http("POST", drt.url(f"{DT}/orchestrators/wait_orch/client-1"))[0] == 202
    _wait_status(drt, "client-1", "Running")
    code, _, body = _http("POST", drt.url("/api/start/quick_orch/client-1"), body={"x": 1})
    assert code == 409, body
    assert body["raised"] == "Exception" and len(body["args"]) == 1
    assert _already_exists(body["args"][0], "Running")
    code, _, body = _http("POST", drt.url("/api/start/quick_orch/client-2"), body={"x": 1})
    assert code == 200 and body == {"id": "client-2"}


def test_a_sub_orchestration_onto_an_active_id_fails_that_task_and_leaves_the_instance(drt):
    assert _http("POST", drt.url(f"{DT}/orchestrators/wait_orch/child-1"), body="original")[0] == 202
    _wait_status(drt, "child-1", "Running")
    assert _http("POST", drt.url(f"{DT}/orchestrators/parent_orch/parent-1"), body={"child": "child-1"})[0] == 202
    out = _wait_status(drt, "parent-1", "Completed")["output"]
    # the SDK's message is "<reason> \n <details>"
    assert out == {"error": "An Orchestration instance with the status Running already exists. \n "
                            "DurableTask.Core.Exceptions.OrchestrationAlreadyExistsException"}
    child = _status(drt, "child-1")
    assert child["runtimeStatus"] == "Running" and child["input"] == "original"


def _walk(rt: RuntimeProcess, query: str, between=None) -> list[list[str]]:
    pages: list[list[str]] = []
    token = None
    while True:
        headers = {"x-ms-continuation-token": token} if token else {}
        code, rh, rows = _http("GET", rt.url(f"{DT}/instances/?{query}"), headers=headers)
        assert code == 200, rows
        pages.append([r["instanceId"] for r in rows])
        token = {k.lower(): v for k, v in rh.items()}.get("x-ms-continuation-token")
        if not token:
            return pages
        if between:
            between(len(pages))


def test_paging_reaches_every_instance_once(drt):
    ids = [f"page-{i:02d}" for i in range(7)]
    for iid in ids:
        assert _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/{iid}"), body={"id": iid})[0] == 202
    for iid in ids:
        _wait_status(drt, iid, "Completed")
    pages = _walk(drt, "instanceIdPrefix=page-&top=3")
    assert [len(p) for p in pages] == [3, 3, 1]
    assert sorted(sum(pages, [])) == ids
    assert _walk(drt, "instanceIdPrefix=page-&top=7") == [ids]       # exactly one page: no token on it
    # filters apply across pages; showInput=false drops the input
    code, _, rows = _http("GET", drt.url(f"{DT}/instances/?instanceIdPrefix=page-&top=2&showInput=false"
                                         "&runtimeStatus=Completed"))
    assert code == 200 and len(rows) == 2 and all(r["input"] is None for r in rows)
    assert _walk(drt, "instanceIdPrefix=page-&runtimeStatus=Running&top=2") == [[]]
    # a bad top means the default page size (100); a token this runtime did not issue is a 400
    assert len(_http("GET", drt.url(f"{DT}/instances/?instanceIdPrefix=page-&top=abc"))[2]) == 7
    code, _, body = _http("GET", drt.url(f"{DT}/instances/?top=2"), headers={"x-ms-continuation-token": "12|x"})
    assert code == 400 and body["Message"] == "One or more of the arguments submitted is incorrect"
    assert len(_http("GET", drt.url(f"{DT}/instances/?instanceIdPrefix=page-"),
                     headers={"x-ms-continuation-token": "null"})[2]) == 7


def test_paging_has_no_duplicates_when_instances_are_created_or_replaced_between_pages(drt):
    ids = [f"walk-{i:02d}" for i in range(6)]
    for iid in ids:
        assert _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/{iid}"), body={"id": iid})[0] == 202
    for iid in ids:
        _wait_status(drt, iid, "Completed")
    first_page: list[str] = []

    def between(n_read: int) -> None:
        if n_read == 1:
            # replace an already listed instance (new createdTime), create new ids, purge and re-create one
            code, rh, rows = _http("GET", drt.url(f"{DT}/instances/?instanceIdPrefix=walk-&top=2"))
            first_page.extend(r["instanceId"] for r in rows)
            assert _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/{first_page[0]}"), body={"again": 1})[0] == 202
            assert _http("DELETE", drt.url(f"{DT}/instances/{first_page[1]}"))[0] == 200
            assert _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/{first_page[1]}"), body={"back": 1})[0] == 202
            for j in range(3):
                assert _http("POST", drt.url(f"{DT}/orchestrators/quick_orch/walk-new-{j}"), body={"j": j})[0] == 202

    pages = _walk(drt, "instanceIdPrefix=walk-&top=2", between)
    seen = sum(pages, [])
    assert len(seen) == len(set(seen)), pages                       # nobody twice
    assert set(ids) <= set(seen)                                    # everyone who was there from the start
    assert {"walk-new-0", "walk-new-1", "walk-new-2"} <= set(seen)  # new ids come after the old ones
    assert pages[0] == first_page
