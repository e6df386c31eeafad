"""Record what a client of ``GET /api/runs/{id}/events`` sees during one refund run with an approval, and write
it into docs/workflows/live-progress.md, section "Event stream".

It starts the app on the local runtime with the scripted model server (the stack and the ``[case-approve]``
script of tests/integration/test_agent_runs.py), starts a run that asks for a 291.50 USD refund, and reads the
event stream the way a browser's ``EventSource`` does (HTML Living Standard, "Server-sent events"): each response
body is read to its end, then the client waits the ``retry`` time and reconnects with ``Last-Event-ID`` set to the
last ``id`` it received, until the server answers 204. When the stream shows ``approval_requested`` the reviewer
approves the refund (``POST /api/runs/{id}/approvals/{approvalId}``) between two reads. Every request and the raw
answer are written as they went over the wire (ids, times and token counts differ on every run). Run it from the
repository root::

    python scripts/events_transcript.py [--out docs/workflows/live-progress.md]

The document holds two generated sections; each script rewrites only its own, between ``<!-- <name>:begin -->``
and ``<!-- <name>:end -->`` (:func:`write_section`; scripts/trace_tree.py writes the other).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack, http  # noqa: E402
from tests.integration.test_agent_runs import SCRIPT  # noqa: E402

DOC = REPO / "docs" / "workflows" / "live-progress.md"

INTRO = """# Live progress: an event stream and a trace tree, recorded

Both sections below are real recordings of one refund run of the store's `support` agent on the local runtime
(the real OpenAI client against the scripted model server of the tests): the customer `jordan.rivera@example.com`
asks, through support staff `sam.support`, for a refund of 291.50 USD, above `REFUND_APPROVAL_THRESHOLD`, so the
run waits until the reviewer `riley.reviewer` approves it. Ids, times and token counts differ on every run.

* **Event stream** (`python scripts/events_transcript.py`): `GET /api/runs/{id}/events` read the way a browser's
  `EventSource` reads it (each finite answer to its end, then a reconnect with `Last-Event-ID` after the `retry`
  time, until `204 No Content`), with the reviewer's approval between two reads. docs/internals.md "Timeline and
  events" describes the entries.
* **Trace tree** (`python scripts/trace_tree.py`): the OpenTelemetry spans of a run started with a W3C
  `traceparent` header, as an OTLP/HTTP receiver got them from the app's exporter (`OTEL_EXPORTER_OTLP_ENDPOINT`).
  docs/internals.md "Traces" describes the spans.
"""


def write_section(path: Path, name: str, title: str, body: str) -> None:
    """Replace the text between ``<!-- {name}:begin -->`` and ``<!-- {name}:end -->`` in ``path`` with ``body``.

    A missing document starts as :data:`INTRO`; a missing section is appended under ``## {title}``. Other
    sections are left as they are."""
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = path.read_text(encoding="utf-8") if path.exists() else INTRO
    block = f"{begin}\n{body.rstrip()}\n{end}"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {title}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _events(raw: str) -> list[dict[str, str]]:
    """The events of an SSE body: ``{"id"?, "event"?, "data"?}`` per block (comments and ``retry`` left out)."""
    out = []
    for block in raw.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key] = value[1:] if value.startswith(" ") else value
        if "data" in fields:
            out.append(fields)
    return out


def record_event_stream(stack: AppStack, text: str, customer: str, *, max_reads: int = 60) -> tuple[str, list[str]]:
    """Start a run and follow its event stream as ``EventSource`` would, approving its first requested approval
    as the reviewer; returns ``(run id, transcript blocks)`` (one block per HTTP exchange, in order). Raises
    ``AssertionError`` when the stream does not end with 204 within ``max_reads`` reads."""
    blocks: list[str] = []
    started = http("POST", stack.url("/api/agents/support/runs"), {"input": text, "customer": customer},
                   user=SUPPORT_USER)
    assert started.status == 202, (started.status, started.body)
    run_id = started.json["id"]
    blocks.append(f"POST /api/agents/support/runs\nX-Dev-User: {SUPPORT_USER}\n\n"
                  f"{json.dumps({'input': text, 'customer': customer})}\n\n"
                  f"HTTP/1.1 {started.status}\n\n{json.dumps(started.json, indent=2)}")
    last: str | None = None
    retry_ms = 1000
    decided = False
    for _ in range(max_reads):
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last is not None:
            headers["Last-Event-ID"] = last
        path = f"/api/runs/{run_id}/events"
        answer = http("GET", stack.url(path), user=SUPPORT_USER, headers=headers, timeout=60)
        request = f"GET {path}\nX-Dev-User: {SUPPORT_USER}\nAccept: text/event-stream"
        if last is not None:
            request += f"\nLast-Event-ID: {last}"
        if answer.status == 204:
            blocks.append(f"{request}\n\nHTTP/1.1 204 No Content")
            return run_id, blocks
        assert answer.status == 200, (answer.status, answer.body)
        raw = answer.body.decode("utf-8")
        blocks.append(f"{request}\n\nHTTP/1.1 200 OK\nContent-Type: {answer.headers.get('content-type')}\n\n"
                      f"{raw.rstrip()}")
        for line in raw.splitlines():
            if line.startswith("retry:") and line[6:].strip().isdigit():
                retry_ms = int(line[6:].strip())
        events = _events(raw)
        for event in events:
            if "id" in event:
                last = event["id"]
        for event in events:
            if event.get("event") == "approval_requested" and not decided:
                approval_id = json.loads(event["data"])["approvals"][0]["id"]
                decision = {"approved": True, "comment": "Photos confirm it."}
                decide = f"/api/runs/{run_id}/approvals/{approval_id}"
                answer = http("POST", stack.url(decide), decision, user=REVIEWER)
                assert answer.status == 202, (answer.status, answer.body)
                blocks.append(f"POST {decide}\nX-Dev-User: {REVIEWER}\n\n{json.dumps(decision)}\n\n"
                              f"HTTP/1.1 {answer.status}\n\n{json.dumps(answer.json, indent=2)}")
                decided = True
        time.sleep(retry_ms / 1000)
    raise AssertionError(f"the event stream of {run_id} did not end after {max_reads} reads")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DOC))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stack = AppStack(Path(tmp), SCRIPT, env={"PAYLOAD_PATH": str(Path(tmp) / "payloads")})
        try:
            run_id, blocks = record_event_stream(stack, "Please refund ORD-1001, it arrived broken. [case-approve]",
                                                 "jordan.rivera@example.com")
        finally:
            stack.close()
    body = ("Every HTTP exchange of the client, in order: the start, each read of the event stream (the raw "
            "`text/event-stream` body), the reviewer's approval between two reads, and the final `204` that "
            "stops `EventSource`. The `status` event has no `id` (it is not resumable: each read starts with the "
            "current one); every other event's `id` is its timeline entry id.\n\n"
            + "\n\n".join(f"```http\n{b}\n```" for b in blocks))
    write_section(Path(args.out), "events", "Event stream", body)
    print(f"wrote {args.out}: run {run_id}, {len(blocks)} exchanges")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
