"""The local runtime enforces the Durable Task Scheduler's payload limits (``local_runtime.limits``; docs/internals.md
"Payload limits (local runtime)"), on a real ``python -m local_runtime`` process over loopback hosting a real app
written by this module: starts and raise-events over the Durable HTTP API, activities and orchestrators of the
real ``azure-functions-durable`` SDK, state in SQLite.

Starts post what the Python client posts (``json.dumps`` of the ``json.dumps`` text: a JSON string literal).
Sizes are of the JSON text the scheduler would get. For a string of ``n`` characters of ASCII: an event payload
posted as raw JSON, an activity output or an orchestration output is ``n + 2`` bytes (a JSON string literal); an
orchestration, sub-orchestration or continue-as-new input is ``n + 6`` (that literal serialized again); an activity
input is ``n + 8`` (``TaskScheduled.Input`` is ``["\\"...\\""]``); a custom status is ``n + 2`` characters,
``2 (n + 2)`` bytes of UTF-16.
"""

from __future__ import annotations

import json
import textwrap
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from local_runtime.limits import DEFAULT_MAX_PAYLOAD_BYTES
from tests.support.polling import wait_for
from tests.support.runtime_process import RuntimeProcess, RuntimeStartError

pytestmark = pytest.mark.integration

DT = "/runtime/webhooks/durabletask"
LIMIT = 64 * 1024
ENV_NOTE = "(local runtime: LOCAL_RUNTIME_MAX_PAYLOAD_BYTES)."

APP = textwrap.dedent('''
    import azure.durable_functions as df
    import azure.functions as func

    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


    @app.activity_trigger(input_name="n")
    def make_text(n: int) -> str:
        return "a" * n


    @app.activity_trigger(input_name="text")
    def measure(text: str) -> int:
        return len(text)


    @app.orchestration_trigger(context_name="context")
    def activity_output(context: df.DurableOrchestrationContext):
        try:
            text = yield context.call_activity("make_text", context.get_input())
        except Exception as exc:  # the TaskFailed of the activity, as the orchestrator sees it
            return {"failed": str(exc)}
        return {"length": len(text)}


    @app.orchestration_trigger(context_name="context")
    def activity_input(context: df.DurableOrchestrationContext):
        n = yield context.call_activity("measure", "x" * context.get_input())
        return n


    @app.orchestration_trigger(context_name="context")
    def big_output(context: df.DurableOrchestrationContext):
        return "y" * context.get_input()


    @app.orchestration_trigger(context_name="context")
    def echo_input(context: df.DurableOrchestrationContext):
        return len(context.get_input())


    @app.orchestration_trigger(context_name="context")
    def wait_event(context: df.DurableOrchestrationContext):
        data = yield context.wait_for_external_event("data")
        return len(data)


    @app.orchestration_trigger(context_name="context")
    def big_status(context: df.DurableOrchestrationContext):
        context.set_custom_status("s" * context.get_input())
        yield context.call_activity("measure", "ok")
        return "done"


    @app.orchestration_trigger(context_name="context")
    def parent(context: df.DurableOrchestrationContext):
        try:
            n = yield context.call_sub_orchestrator("echo_input", "z" * context.get_input())
        except Exception as exc:
            return {"failed": str(exc)}
        return {"length": n}


    @app.orchestration_trigger(context_name="context")
    def parent_of_big_output(context: df.DurableOrchestrationContext):
        try:
            yield context.call_sub_orchestrator("big_output", context.get_input())
        except Exception as exc:
            return {"failed": str(exc)}
        return "no failure"


    @app.orchestration_trigger(context_name="context")
    def continue_big(context: df.DurableOrchestrationContext):
        value = context.get_input()
        if isinstance(value, int):
            context.continue_as_new("c" * value)
            return None
        return len(value)
''')


def _write_app(root: Path) -> Path:
    app_dir = root / "app"
    app_dir.mkdir()
    (app_dir / "function_app.py").write_text(APP)
    (app_dir / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {
        "http": {"routePrefix": "api"}, "durableTask": {"hubName": "limits"}}}))
    (app_dir / "local.settings.json").write_text(json.dumps({"IsEncrypted": False,
                                                            "Values": {"FUNCTIONS_WORKER_RUNTIME": "python"}}))
    return app_dir


def http(method: str, url: str, raw: bytes | None = None) -> tuple[int, object]:
    """``(status, parsed JSON body or None)``."""
    req = urllib.request.Request(url, data=raw, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, payload = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, payload = err.code, err.read()
    return status, (json.loads(payload) if payload else None)


def start(rt: RuntimeProcess, name: str, iid: str, value: object) -> tuple[int, object]:
    """``POST orchestrators/{name}/{iid}`` with ``value`` posted as the Python client posts it."""
    return http("POST", rt.url(f"{DT}/orchestrators/{name}/{iid}"), json.dumps(json.dumps(value)).encode())


def status(rt: RuntimeProcess, iid: str) -> dict | None:
    code, body = http("GET", rt.url(f"{DT}/instances/{iid}?showInput=false"))
    return body if code in (200, 202) and isinstance(body, dict) else None


def finished(rt: RuntimeProcess, iid: str, timeout: float = 30.0) -> dict:
    def done():
        st = status(rt, iid)
        return st if st and st["runtimeStatus"] in ("Completed", "Failed", "Terminated") else None
    return wait_for(done, timeout, what=f"instance {iid} to finish")


def run(rt: RuntimeProcess, name: str, iid: str, value: object) -> dict:
    code, body = start(rt, name, iid, value)
    assert code == 202, body
    return finished(rt, iid)


def over(kind: str, size: int, limit: int = LIMIT) -> str:
    return (f"The {kind} is {size:,} bytes of UTF-8 JSON, more than the Durable Task Scheduler's payload limit "
            f"of {limit:,} bytes {ENV_NOTE}")


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    with RuntimeProcess(_write_app(root), state=root / "state.sqlite3", log_path=root / "runtime.log",
                        env={"LOCAL_RUNTIME_MAX_PAYLOAD_BYTES": str(LIMIT)}) as proc:
        yield proc


def test_an_oversized_activity_output_fails_the_activity_task_and_the_orchestrator_sees_why(rt):
    st = run(rt, "activity_output", "out-over", LIMIT - 1)                  # LIMIT + 1 bytes
    assert st["runtimeStatus"] == "Completed"
    failed = st["output"]["failed"]
    assert failed.startswith(f"Activity function 'make_text' failed: {over('activity output', LIMIT + 1)}")
    assert "aaaa" not in failed and "aaaa" not in rt.log_text()             # never the payload itself
    # exactly the limit passes
    assert run(rt, "activity_output", "out-at", LIMIT - 2)["output"] == {"length": LIMIT - 2}


def test_an_oversized_orchestration_input_fails_the_start_call_with_500_and_creates_nothing(rt):
    code, body = start(rt, "echo_input", "in-over", "i" * (LIMIT - 5))      # LIMIT + 1 bytes
    assert code == 500
    assert body == {"Message": "Something went wrong while processing your request",
                    "ExceptionMessage": over("orchestration input", LIMIT + 1),
                    "ExceptionType": "Grpc.Core.RpcException", "StackTrace": None}
    assert http("GET", rt.url(f"{DT}/instances/in-over"))[0] == 404
    st = run(rt, "echo_input", "in-at", "i" * (LIMIT - 6))                  # exactly the limit
    assert (st["runtimeStatus"], st["output"]) == ("Completed", LIMIT - 6)


def test_an_oversized_event_payload_fails_the_raise_call_and_the_instance_keeps_waiting(rt):
    code, body = start(rt, "wait_event", "ev", None)
    assert code == 202, body
    wait_for(lambda: (status(rt, "ev") or {}).get("runtimeStatus") == "Running", 30, what="ev running")
    url = rt.url(f"{DT}/instances/ev/raiseEvent/data")
    code, body = http("POST", url, json.dumps("e" * (LIMIT - 1)).encode())
    assert code == 500
    assert body == {"Message": "Something went wrong while processing your request",
                    "ExceptionMessage": over("external event payload", LIMIT + 1),
                    "ExceptionType": "Grpc.Core.RpcException", "StackTrace": None}
    assert status(rt, "ev")["runtimeStatus"] == "Running"
    code, _ = http("POST", url, json.dumps("e" * (LIMIT - 2)).encode())     # exactly the limit
    assert code == 202
    st = finished(rt, "ev")
    assert (st["runtimeStatus"], st["output"]) == ("Completed", LIMIT - 2)


def test_an_oversized_activity_input_fails_the_orchestration_and_schedules_nothing(rt):
    st = run(rt, "activity_input", "ain-over", LIMIT - 7)                   # LIMIT + 1 bytes in TaskScheduled
    assert st["runtimeStatus"] == "Failed"
    assert st["output"] == (f"Orchestrator function 'activity_input' failed: "
                            f"{over('activity input of measure (task 0)', LIMIT + 1)}")
    code, hist = http("GET", rt.url(f"{DT}/instances/ain-over?showHistory=true"))
    assert code == 200 and not [e for e in hist["historyEvents"] if e["EventType"] == "TaskScheduled"]
    st = run(rt, "activity_input", "ain-at", LIMIT - 8)                     # exactly the limit
    assert (st["runtimeStatus"], st["output"]) == ("Completed", LIMIT - 8)


def test_an_oversized_orchestration_output_fails_the_orchestration(rt):
    st = run(rt, "big_output", "bo-over", LIMIT - 1)
    assert st["runtimeStatus"] == "Failed"
    assert st["output"] == f"Orchestrator function 'big_output' failed: {over('orchestration output', LIMIT + 1)}"
    st = run(rt, "big_output", "bo-at", LIMIT - 2)
    assert st["runtimeStatus"] == "Completed" and len(st["output"]) == LIMIT - 2


def test_a_child_with_an_oversized_output_fails_the_parents_sub_orchestration_task(rt):
    st = run(rt, "parent_of_big_output", "pbo", LIMIT - 1)
    assert st["runtimeStatus"] == "Completed"
    assert st["output"]["failed"].startswith(
        f"Orchestrator function 'big_output' failed: {over('orchestration output', LIMIT + 1)}")


def test_an_oversized_sub_orchestration_input_fails_the_parent(rt):
    st = run(rt, "parent", "sub-over", LIMIT - 5)                            # LIMIT + 1 bytes
    assert st["runtimeStatus"] == "Failed"
    assert st["output"] == (f"Orchestrator function 'parent' failed: "
                            f"{over('sub-orchestration input of echo_input (task 0)', LIMIT + 1)}")
    st = run(rt, "parent", "sub-at", LIMIT - 6)
    assert (st["runtimeStatus"], st["output"]) == ("Completed", {"length": LIMIT - 6})


def test_an_oversized_continue_as_new_input_fails_the_orchestration(rt):
    st = run(rt, "continue_big", "can-over", LIMIT - 5)
    assert st["runtimeStatus"] == "Failed"
    assert st["output"] == (f"Orchestrator function 'continue_big' failed: "
                            f"{over('continue-as-new input', LIMIT + 1)}")
    st = run(rt, "continue_big", "can-at", LIMIT - 6)
    assert (st["runtimeStatus"], st["output"]) == ("Completed", LIMIT - 6)


def test_the_custom_status_fails_from_17_kb_of_utf16_as_the_extension_counts(rt):
    # floor(2 * (n + 2) / 1024) > 16 from n + 2 = 8704 characters on
    st = run(rt, "big_status", "cs-over", 8702)
    assert st["runtimeStatus"] == "Failed"
    assert st["output"] == ("Orchestrator function 'big_status' failed: The UTF-16 size of the JSON-serialized "
                            "payload must not exceed 16 KB. The current payload size is 17 KB.")
    st = run(rt, "big_status", "cs-at", 8701)
    assert (st["runtimeStatus"], st["output"], st["customStatus"]) == ("Completed", "done", "s" * 8701)


class _FlagProcess(RuntimeProcess):
    """The runtime started with extra command-line flags."""

    def __init__(self, *args, flags: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.flags = flags

    def command(self) -> list[str]:
        return super().command() + self.flags


def test_the_default_is_one_mib_of_utf8_and_the_flag_overrides_the_variable(tmp_path):
    app_dir = _write_app(tmp_path)
    with RuntimeProcess(app_dir, state=tmp_path / "default.sqlite3", log_path=tmp_path / "default.log",
                        env={"LOCAL_RUNTIME_MAX_PAYLOAD_BYTES": ""}) as proc:
        limit = DEFAULT_MAX_PAYLOAD_BYTES
        assert limit == 1_048_576
        st = run(proc, "activity_output", "d-over", limit - 1)
        assert st["output"]["failed"].startswith(
            f"Activity function 'make_text' failed: {over('activity output', limit + 1, limit)}")
        assert run(proc, "activity_output", "d-at", limit - 2)["output"] == {"length": limit - 2}
        # UTF-8 bytes, not characters: 349,524 three-byte characters + 6 bytes of quotes = 1,048,578 bytes in
        # 349,530 characters (the body carries the characters unescaped; the runtime keeps them, like Newtonsoft)
        text = json.dumps("€" * 349_524, ensure_ascii=False)
        code, body = http("POST", proc.url(f"{DT}/orchestrators/echo_input/d-utf8"),
                          json.dumps(text, ensure_ascii=False).encode())
        assert code == 500 and body["ExceptionMessage"] == over("orchestration input", limit + 2, limit)
    with _FlagProcess(app_dir, state=tmp_path / "flag.sqlite3", log_path=tmp_path / "flag.log",
                      env={"LOCAL_RUNTIME_MAX_PAYLOAD_BYTES": "100"}, flags=["--max-payload-bytes", "0"]) as proc:
        st = run(proc, "echo_input", "off", "i" * (2 * limit))             # 0: no limit
        assert (st["runtimeStatus"], st["output"]) == ("Completed", 2 * limit)


def test_a_bad_setting_stops_the_start_with_a_clear_message(tmp_path):
    proc = RuntimeProcess(_write_app(tmp_path), state=tmp_path / "bad.sqlite3", log_path=tmp_path / "bad.log",
                          env={"LOCAL_RUNTIME_MAX_PAYLOAD_BYTES": "1MB"}, ready_timeout=30)
    with pytest.raises(RuntimeStartError):
        proc.start()
    assert proc.proc is not None and proc.proc.wait(10) == 1
    assert ("Cannot start the local runtime: LOCAL_RUNTIME_MAX_PAYLOAD_BYTES must be a whole number of bytes or 0 "
            "(no limit), not '1MB'") in proc.log_text()
