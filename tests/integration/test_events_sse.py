"""Live progress over Server-Sent Events on the local runtime (docs/internals.md "Timeline and events"): a client
reading ``GET /api/runs/{id}/events`` with ``Last-Event-ID`` across a ``kill -9`` of the host receives every
timeline entry exactly once, across continue-as-new generations, and the stream ends (204) when the run has."""

from __future__ import annotations

import json
import time
from typing import Any

from tests.integration.conftest import AppStack, http
from tests.integration.test_agent_runs import calls, step
from tests.support.polling import wait_for


def _parse_sse(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, _, value = line.partition(":")
            fields[name] = value[1:] if value.startswith(" ") else value
        if "data" in fields or "id" in fields:
            events.append(fields)
    return events


def _read(app: AppStack, run_id: str, last: str | None, wait: float = 2.0) -> tuple[int, list[dict[str, Any]]]:
    headers = {"Last-Event-ID": last} if last else {}
    answer = http("GET", app.url(f"/api/runs/{run_id}/events?wait={wait}"), headers=headers, timeout=40)
    if answer.status == 200:
        assert answer.headers["content-type"].startswith("text/event-stream")
        assert "retry: 1000" in answer.body.decode()
    return answer.status, _parse_sse(answer.body.decode()) if answer.status == 200 else []


def test_events_resume_with_last_event_id_across_a_host_kill(tmp_path):
    script = [
        step("[case-sse]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1006"}))),
        step("[case-sse]", 1, calls=calls(("refund_order", {"order_id": "ORD-1006", "amount": 25.00,
                                                            "reason": "wrong size"}))),
        step("[case-sse]", 2, delay=5.0, calls=calls(("send_message", {"text": "Refund of 25.00 USD sent."}))),
        step("[case-sse]", 3, text="Refunded 25.00 USD."),
    ]
    app = AppStack(tmp_path, script, env={"PAYLOAD_PATH": str(tmp_path / "payloads")})
    try:
        run_id = app.start_run("Refund ORD-1006, wrong size. [case-sse]", customer="sam.whitaker@example.org")
        received: list[dict[str, Any]] = []
        statuses: list[str] = []
        last: str | None = None

        def pull() -> int:
            nonlocal last
            code, events = _read(app, run_id, last)
            for event in events:
                if "id" in event:
                    received.append(event)
                    last = event["id"]
                else:
                    statuses.append(json.loads(event["data"])["status"])
            return code

        wait_for(lambda: app.refunds("ORD-1006"), timeout=60, what="the refund")
        time.sleep(1.0)
        assert pull() == 200 and received  # something before the crash
        app.runtime.kill()
        app.runtime.start()
        deadline = time.monotonic() + 90
        while pull() != 204:
            assert time.monotonic() < deadline, "the stream did not end"
        ids = [e["id"] for e in received]
        assert len(ids) == len(set(ids)), ids  # nothing duplicated
        timeline = http("GET", app.url(f"/api/runs/{run_id}/timeline")).json
        assert ids == [e["id"] for e in timeline["entries"]]  # nothing lost, in order
        assert timeline["generation"] >= 1  # the run continued as new: earlier generations come from the archive
        kinds = [e["event"] for e in received]
        assert kinds.count("model_turn") == 4 and kinds[-1] == "output"
        tools = [json.loads(e["data"]) for e in received if e["event"] == "tool_call"]
        # the approval check of refund_order is an activity of its own but no tool call (it decides whether to ask)
        assert [t["name"] for t in tools] == ["lookup_order", "refund_order", "send_message"]
        assert "approval_requested" not in kinds  # 25.00 USD is under the threshold: the check asked for nobody
        assert json.loads(received[-1]["data"])["output"]["finalOutput"] == "Refunded 25.00 USD."
        assert statuses and statuses[-1] == "completed"
        transcript = "\n\n".join(f"id: {e['id']}\nevent: {e['event']}\ndata: {e['data']}" for e in received)
        (tmp_path / "sse-transcript.txt").write_text(transcript)
        assert http("GET", app.url(f"/api/runs/{run_id}/events"), user="nobody.else", roles="").status == 404
    finally:
        app.close()
