"""Integration tests: ``python -m local_runtime`` as a separate process hosting ``tests/fixtures/rt_app``.

Everything goes over real HTTP on loopback: the fixture's HTTP triggers use the real
``DurableOrchestrationClient`` against the runtime's Durable HTTP API; orchestrators and activities run in the
runtime with state in a real SQLite file.
"""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess, RuntimeStartError

pytestmark = pytest.mark.integration

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "rt_app"
DT = "/runtime/webhooks/durabletask"


def http(method: str, url: str, body=None, headers: dict | None = None, raw: bytes | None = None):
    """Return ``(status, headers, parsed JSON body or text or None)``."""
    data = raw
    hdrs = dict(headers or {})
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, rh, payload = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, rh, payload = err.code, dict(err.headers), err.read()
    if not payload:
        return status, rh, None
    try:
        return status, rh, json.loads(payload)
    except ValueError:
        return status, rh, payload.decode()


def status_of(rt: RuntimeProcess, iid: str, query: str = "") -> dict | None:
    code, _, body = http("GET", rt.url(f"{DT}/instances/{iid}{query}"))
    return body if code in (200, 202) else None


def wait_done(rt: RuntimeProcess, iid: str, timeout: float = 30.0, query: str = "") -> dict:
    def done():
        st = status_of(rt, iid, query)
        return st if st and st["runtimeStatus"] in ("Completed", "Failed", "Terminated") else None
    return wait_for(done, timeout)


def start(rt: RuntimeProcess, name: str, iid: str, payload=None) -> dict:
    """Start through the fixture's HTTP starter (real client + create_check_status_response)."""
    code, headers, body = http("POST", rt.url(f"/api/start/{name}/{iid}"),
                               raw=None if payload is None else json.dumps(payload).encode())
    assert code == 202, body
    assert headers["Location"] == body["statusQueryGetUri"]
    return body


def counter(db: Path, key: str) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(str(db))
    try:
        row = con.execute("SELECT n FROM runs WHERE key=?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()
    return row[0] if row else 0


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rt")


@pytest.fixture(scope="module")
def rt(workdir):
    proc = RuntimeProcess(APP_DIR, state=workdir / "state.sqlite3", log_path=workdir / "runtime.log",
                          env={"RT_COUNTER_DB": str(workdir / "counters.sqlite3")})
    with proc:
        yield proc


def test_host_status_and_banner(rt):
    code, _, body = http("GET", rt.url("/admin/host/status"))
    assert (code, body) == (200, {"state": "Running"})
    log = rt.log_text()
    assert f"http_items: [GET] {rt.base_url}/api/items/{{id:int?}}" in log
    assert "seq_orch: orchestrationTrigger" in log


def test_http_trigger_routes_settings_and_sdk_not_shadowed(rt):
    code, headers, body = http("GET", rt.url("/api/items/42?x=1"))
    assert code == 200 and headers["X-Rt"] == "1"
    assert body == {"route": {"id": "42"}, "params": {"x": "1"}, "method": "GET", "greeting": "Hello",
                    "empty": "", "sdkAgent": "Agent"}
    assert http("GET", rt.url("/api/items"))[2]["route"] == {}
    assert http("GET", rt.url("/api/items/abc"))[0] == 404       # int constraint
    assert http("POST", rt.url("/api/items/1"))[0] == 405        # method not allowed
    assert http("GET", rt.url("/nope"))[0] == 404


def test_sequence_via_real_client_and_check_status_response(rt):
    body = start(rt, "seq_orch", "seq-1")
    assert body["id"] == "seq-1"
    assert set(body) >= {"statusQueryGetUri", "sendEventPostUri", "terminatePostUri", "rewindPostUri",
                         "purgeHistoryDeleteUri", "restartPostUri", "suspendPostUri", "resumePostUri"}
    assert body["statusQueryGetUri"].startswith(f"{rt.base_url}{DT}/instances/seq-1?taskHub=rthub")
    st = wait_for(lambda: (lambda r: r[2] if r[0] == 200 else None)(http("GET", body["statusQueryGetUri"])))
    assert st["runtimeStatus"] == "Completed"
    assert st["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    # real client status with history, through the fixture's HTTP function
    code, _, res = http("GET", rt.url("/api/client/status/seq-1?history=1"))
    assert code == 200 and res["invocationId"]
    hist = res["result"]["historyEvents"]
    assert [e["EventType"] for e in hist] == ["ExecutionStarted", "TaskCompleted", "TaskCompleted",
                                               "TaskCompleted", "ExecutionCompleted"]
    assert hist[1]["FunctionName"] == "say_hello" and hist[1]["Result"] == "Hello Tokyo!"
    assert hist[-1]["OrchestrationStatus"] == "Completed"
    # wait_for_completion_or_create_check_status_response polls get_status through the real client
    code, _, out = http("GET", rt.url("/api/client/wait/seq-1"))
    assert code == 200 and out == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


def test_fan_out_runs_each_activity_once(rt, workdir):
    start(rt, "fan_orch", "fan-1", {"n": 6})
    st = wait_done(rt, "fan-1", query="?showHistory=true")
    assert st["runtimeStatus"] == "Completed" and st["output"] == sum(i * i for i in range(6))
    assert sum(1 for e in st["historyEvents"] if e["EventType"] == "TaskCompleted") == 6
    assert all(counter(workdir / "counters.sqlite3", f"square:{i}") >= 1 for i in range(6))


def test_retry_success_on_third_attempt_and_exhaustion(rt):
    start(rt, "retry_orch", "retry-ok", {"attempts": 3, "fail_times": 2})
    start(rt, "retry_orch", "retry-exhaust", {"attempts": 2, "fail_times": 5})
    ok = wait_done(rt, "retry-ok", query="?showHistory=true&showHistoryOutput=true")
    assert ok["output"] == {"ok": "succeeded on attempt 3"}
    kinds = [e["EventType"] for e in ok["historyEvents"]]
    assert kinds.count("TaskFailed") == 2 and kinds.count("TimerFired") == 2
    failed = [e for e in ok["historyEvents"] if e["EventType"] == "TaskFailed"]
    assert failed[0]["Reason"] == "Activity function 'flaky' failed:  ValueError: attempt 1 failed"
    assert json.loads(failed[0]["Details"])["Message"] == " ValueError: attempt 1 failed"
    bad = wait_done(rt, "retry-exhaust")
    assert bad["output"] == {"error": "Activity function 'flaky' failed:  ValueError: attempt 2 failed"}


def test_durable_timer_fires_after_fire_at(rt):
    t0 = time.monotonic()
    start(rt, "timer_orch", "timer-1", 2)
    st = wait_done(rt, "timer-1")
    assert st["output"]["waited"] >= 2.0 and st["output"]["echo"] == "Hello timer!"
    assert time.monotonic() - t0 >= 2.0


def test_external_event_after_wait_via_real_client(rt):
    start(rt, "event_orch", "ev-after", 0)
    wait_for(lambda: (status_of(rt, "ev-after") or {}).get("customStatus") == {"stage": "waiting"})
    code, _, _ = http("POST", rt.url("/api/client/raise/ev-after?event=Approval"), body={"ok": True})
    assert code == 200
    st = wait_done(rt, "ev-after")
    # the Python client double-encodes (protocol §1, SDK issue #295): the orchestrator gets a string
    assert st["output"] == {"approval": '{"ok": true}', "type": "str"}
    assert st["customStatus"] == {"stage": "done"}


def test_external_event_raised_before_wait(rt):
    start(rt, "event_orch", "ev-before", 1.5)
    wait_for(lambda: (status_of(rt, "ev-before") or {}).get("runtimeStatus") == "Running")
    code, _, _ = http("POST", rt.url(f"{DT}/instances/ev-before/raiseEvent/Approval"), body={"ok": True})
    assert code == 202
    assert status_of(rt, "ev-before")["customStatus"] == {"stage": "working"}
    st = wait_done(rt, "ev-before")
    assert st["output"] == {"approval": {"ok": True}, "type": "dict"}   # raw JSON body → dict


def test_raise_event_rules(rt):
    start(rt, "race_orch", "ev-rules", 600)
    wait_for(lambda: (status_of(rt, "ev-rules") or {}).get("runtimeStatus") == "Running")
    code, _, body = http("POST", rt.url(f"{DT}/instances/ev-rules/raiseEvent/Go"), raw=b"x",
                         headers={"Content-Type": "text/plain"})
    assert code == 400 and body == {"Message": "Only application/json request content is supported"}
    assert http("POST", rt.url(f"{DT}/instances/nope/raiseEvent/Go"), body=1)[0] == 404
    assert http("POST", rt.url(f"{DT}/instances/ev-rules/raiseEvent/Go"), body="now")[0] == 202
    st = wait_done(rt, "ev-rules")
    assert st["output"] == {"winner": "event", "value": "now"}     # the cancelled timer does not block
    assert http("POST", rt.url(f"{DT}/instances/ev-rules/raiseEvent/Go"), body=1)[0] == 410


def test_terminate_suspend_resume(rt):
    start(rt, "race_orch", "term-1", 600)
    wait_for(lambda: (status_of(rt, "term-1") or {}).get("runtimeStatus") == "Running")
    assert http("POST", rt.url("/api/client/suspend/term-1"))[0] == 200
    wait_for(lambda: status_of(rt, "term-1")["runtimeStatus"] == "Suspended")
    assert http("POST", rt.url(f"{DT}/instances/term-1/suspend"))[0] == 500
    assert http("POST", rt.url("/api/client/resume/term-1"))[0] == 200
    wait_for(lambda: status_of(rt, "term-1")["runtimeStatus"] == "Running")
    assert http("POST", rt.url("/api/client/terminate/term-1?reason=enough"))[0] == 200
    st = wait_done(rt, "term-1", query="?showHistory=true")
    assert st["runtimeStatus"] == "Terminated" and st["output"] == "enough"
    assert st["historyEvents"][-1]["OrchestrationStatus"] == "Terminated"
    assert http("POST", rt.url(f"{DT}/instances/term-1/terminate"))[0] == 410


def test_failures_suborchestrations_and_continue_as_new(rt):
    start(rt, "fail_orch", "fail-1")
    start(rt, "unknown_orch", "unknown-1")
    start(rt, "parent_orch", "parent-1")
    start(rt, "can_orch", "can-1", 0)
    fail = wait_done(rt, "fail-1")
    assert fail["runtimeStatus"] == "Failed"
    assert fail["output"].startswith("Orchestrator function 'fail_orch' failed: Activity function 'boom' failed:"
                                     "  RuntimeError: activity exploded: kaboom \n {")
    unknown = wait_done(rt, "unknown-1")
    assert unknown["runtimeStatus"] == "Failed"
    assert "The function 'no_such_activity' doesn't exist, is disabled, or is not an activity function" \
        in unknown["output"]
    parent = wait_done(rt, "parent-1")
    assert parent["output"]["a"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert parent["output"]["b"] == 5
    assert parent["output"]["c"].startswith("Orchestrator function 'fail_orch' failed: Activity function 'boom'")
    assert status_of(rt, "parent-1-child")["output"] == 5
    can = wait_done(rt, "can-1")
    assert can["output"] == "finished at 3" and can["input"] == "3"


def test_start_errors_and_server_side_wait(rt):
    code, _, body = http("POST", rt.url(f"{DT}/orchestrators/nope"))
    assert code == 400 and "The function 'nope' doesn't exist" in body["ExceptionMessage"]
    assert http("POST", rt.url(f"{DT}/orchestrators/seq_orch/@bad"))[0] == 400
    assert http("POST", rt.url(f"{DT}/orchestrators/seq_orch/x"), raw=b"{bad",
                headers={"Content-Type": "application/json"})[0] == 400
    code, _, body = http("POST", rt.url(f"{DT}/orchestrators/seq_orch/waited?timeout=20&pollingInterval=1"))
    assert code == 200 and body == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    assert http("GET", rt.url(f"{DT}/instances/unknown-id"))[0] == 404
    code, headers, body = http("GET", rt.url(f"{DT}/instances/waited"))
    assert code == 200 and body["createdTime"].endswith("Z")


def test_list_filter_and_purge(rt):
    for i in range(3):
        http("POST", rt.url(f"{DT}/orchestrators/seq_orch/list-{i}"))
    for i in range(3):
        wait_done(rt, f"list-{i}")
    code, _, rows = http("GET", rt.url(f"{DT}/instances/?instanceIdPrefix=list-&runtimeStatus=Completed"))
    assert code == 200 and sorted(r["instanceId"] for r in rows) == ["list-0", "list-1", "list-2"]
    assert all("historyEvents" not in r for r in rows)
    assert http("GET", rt.url(f"{DT}/instances/?instanceIdPrefix=list-&runtimeStatus=Running"))[2] == []
    code, headers, page1 = http("GET", rt.url(f"{DT}/instances/?instanceIdPrefix=list-&top=2"))
    token = headers["x-ms-continuation-token"]
    _, headers2, page2 = http("GET", rt.url(f"{DT}/instances/?instanceIdPrefix=list-&top=2"),
                              headers={"x-ms-continuation-token": token})
    assert len(page1) == 2 and len(page2) == 1 and "x-ms-continuation-token" not in headers2
    assert {r["instanceId"] for r in page1 + page2} == {"list-0", "list-1", "list-2"}
    # purge one through the real client, then by filter through HTTP
    assert http("POST", rt.url("/api/client/purge/list-0"))[2]["result"] == {"deleted": 1}
    assert http("POST", rt.url("/api/client/purge/list-0"))[2]["result"] == {"deleted": 0}
    assert http("DELETE", rt.url(f"{DT}/instances/"))[0] == 400
    code, _, body = http("DELETE", rt.url(f"{DT}/instances/?createdTimeFrom=2000-01-01T00:00:00Z"
                                          f"&runtimeStatus=Terminated"))
    assert code in (200, 404)
    code, _, body = http("DELETE", rt.url(f"{DT}/instances/?createdTimeFrom=2000-01-01T00:00:00.000000Z"
                                          f"&runtimeStatus=Completed"))
    assert code == 200 and body["instancesDeleted"] >= 2
    assert http("GET", rt.url(f"{DT}/instances/list-1"))[0] == 404


def test_restart_and_entities_and_rewind(rt):
    http("POST", rt.url(f"{DT}/orchestrators/fan_orch/rs-1"), body=json.dumps({"n": 2}))
    assert wait_done(rt, "rs-1")["output"] == 1
    code, _, body = http("POST", rt.url(f"{DT}/instances/rs-1/restart?restartWithNewInstanceId=true"))
    assert code == 202 and body["id"] != "rs-1"
    assert wait_done(rt, body["id"])["output"] == 1
    assert http("POST", rt.url(f"{DT}/instances/rs-1/rewind"))[0] == 410
    assert http("GET", rt.url(f"{DT}/entities/counter/k1"))[0] == 501


def test_kill_and_restart_resumes_without_rerunning_completed_activities(tmp_path):
    """SIGKILL while ``blocker`` runs: after a restart ``record`` (completed) is not re-run, ``blocker``
    (in flight) runs again, a pending durable timer still fires and the instances complete."""
    counters = tmp_path / "counters.sqlite3"
    proc = RuntimeProcess(APP_DIR, state=tmp_path / "state.sqlite3", log_path=tmp_path / "runtime.log",
                          env={"RT_COUNTER_DB": str(counters)})
    try:
        proc.start()
        http("POST", proc.url(f"{DT}/orchestrators/crash_orch/crash-1"), body=json.dumps(str(tmp_path)))
        http("POST", proc.url(f"{DT}/orchestrators/timer_orch/crash-timer"), body=json.dumps(3))
        wait_for(lambda: (tmp_path / "blocker-started-1").exists())
        proc.kill()
        assert counter(counters, "record:crash-1") == 1 and counter(counters, "blocker:crash-1") == 1
        proc.start()
        wait_for(lambda: (tmp_path / "blocker-started-2").exists())
        (tmp_path / "release").write_text("go")
        st = wait_done(proc, "crash-1")
        assert st["runtimeStatus"] == "Completed" and st["output"] == [1, 2]
        assert counter(counters, "record:crash-1") == 1      # completed before the crash: never re-run
        assert counter(counters, "blocker:crash-1") == 2     # in flight at the crash: ran again
        timer = wait_done(proc, "crash-timer")
        assert timer["runtimeStatus"] == "Completed" and timer["output"]["waited"] >= 3.0
        assert "Resuming 1 in-flight activity" in proc.log_text()
    finally:
        (tmp_path / "release").write_text("go")
        assert proc.stop() == 0      # SIGTERM: clean exit



def test_second_host_on_a_busy_port_fails_cleanly(rt, tmp_path):
    other = RuntimeProcess(APP_DIR, state=tmp_path / "other.sqlite3", port=rt.port, log_path=tmp_path / "o.log")
    with pytest.raises(RuntimeStartError):
        other.start()
    assert other.proc.returncode == 1
    assert "cannot listen on 127.0.0.1" in other.log_text()
    assert http("GET", rt.url("/admin/host/status"))[0] == 200
