"""Unit tests of the local runtime's HTTP pieces: route templates, the client binding JSON read by the REAL
``DurableOrchestrationClient``, and the status API's ``historyEvents`` shape (protocol §5.1, §5.4, §6.2)."""

from __future__ import annotations

import datetime as dt
import json

from azure.durable_functions import DurableOrchestrationClient

from local_runtime import events as ev
from local_runtime.app_loader import FunctionInfo
from local_runtime.durable_api import _history_json, client_json
from local_runtime.http_triggers import HttpTriggers


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
    no_prefix = HttpTriggers([_http_fn("root", "hello/{name}")], "")
    assert no_prefix.match("/hello/bob", "GET")[1] == {"name": "bob"}


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
