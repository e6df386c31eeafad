"""OpenTelemetry over real OTLP/HTTP, end to end (docs/internals.md "Traces"; issue 11 item 4).

The app runs on the local runtime (a separate process) with ``OTEL_EXPORTER_OTLP_ENDPOINT`` pointing at a real
OTLP/HTTP receiver on loopback (tests/support/otlp_receiver.py), so the spans travel through the SDK's batch
processor and the OTLP protobuf exporter exactly as they would to a collector. A run is started with a W3C
``traceparent`` header, asks for a large-refund approval, is approved over HTTP by the reviewer and completes; the
test then checks the spans the receiver got against what really happened (the scripted model server's requests,
the run's timeline from its Durable history). A second test SIGKILLs the host in the middle of a model call and
checks that completed work is not exported again after the restart.

The checks collect every violation before failing, so one failure message lists every broken rule.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack, http
from tests.integration.test_agent_runs import SCRIPT, calls, step
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.polling import wait_for

pytestmark = pytest.mark.integration

SERVICE = "durable-agents-otlp-test"
APPROVE_TEXT = "Please refund ORD-1001, it arrived broken. [case-approve]"
"""The user text of test_agent_runs.SCRIPT's refund-with-approval conversation (lookup, refund 291.50 USD above
the threshold, a message, an answer)."""
APPROVE_CUSTOMER = "jordan.rivera@example.com"

KILL_SCRIPT = [
    # Like [case-approve], but the model call after the approved refund takes 5 s: the host is killed inside it.
    step("[case-otlp-kill]", 0, calls=calls(("lookup_order", {"order_id": "ORD-1001"}))),
    step("[case-otlp-kill]", 1, calls=calls(("refund_order", {"order_id": "ORD-1001", "amount": 291.50,
                                                               "reason": "arrived broken"}))),
    step("[case-otlp-kill]", 2, delay=5.0, calls=calls(("send_message", {"text": "Your refund is on its way."}))),
    step("[case-otlp-kill]", 3, text="Refunded 291.50 USD for ORD-1001."),
]


# ---------------------------------------------------------------------------------------------------------------
# Helpers (also used by scripts/trace_tree.py)


@dataclass(frozen=True)
class Traceparent:
    """A W3C ``traceparent`` (Trace Context §3.2) of a made-up caller span: ``trace_id`` 32 hex, ``span_id`` 16."""

    trace_id: str
    span_id: str

    @classmethod
    def new(cls) -> Traceparent:
        return cls(secrets.token_hex(16), secrets.token_hex(8))

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def otlp_env(receiver: OtlpReceiver) -> dict[str, str]:
    """The app settings that export to ``receiver``: OTLP/HTTP protobuf, batches flushed every 200 ms."""
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_SERVICE_NAME": SERVICE}


def start_traced_run(stack: AppStack, text: str, customer: str, traceparent: Traceparent) -> str:
    """``POST /api/agents/support/runs`` as support staff with a ``traceparent`` header; returns the run id."""
    answer = http("POST", stack.url("/api/agents/support/runs"), {"input": text, "customer": customer},
                  user=SUPPORT_USER, headers={"traceparent": traceparent.header})
    assert answer.status == 202, (answer.status, answer.body)
    return answer.json["id"]


def approve_pending(stack: AppStack, run_id: str, comment: str = "Photos confirm it.") -> dict[str, Any]:
    """Wait for the run's one pending approval and approve it as the reviewer over HTTP; returns the pending
    approval (``id``, ``tool``, ``arguments``, ``requestedAt``...)."""
    run = stack.wait_status(run_id, "awaiting_approval", timeout=30)
    [pending] = run["pendingApprovals"]
    answer = http("POST", stack.url(f"/api/runs/{run_id}/approvals/{pending['id']}"),
                  {"approved": True, "comment": comment}, user=REVIEWER)
    assert answer.status == 202, (answer.status, answer.body)
    return pending


def run_span_id(run_id: str) -> str:
    """The run span's deterministic id (docs/internals.md "Traces"): first 8 bytes of
    ``sha256("durable-agents/run/" + run id)``, 16 hex."""
    return hashlib.sha256(f"durable-agents/run/{run_id}".encode()).digest()[:8].hex()


def spans_of(spans: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    """The spans that name run ``run_id`` (attribute ``durable_agents.run.id``), whatever trace they are in."""
    return [s for s in spans if s["attributes"].get("durable_agents.run.id") == run_id]


def named(spans: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    return [s for s in spans if s["name"].startswith(prefix)]


def answered(stack: AppStack) -> list[dict[str, Any]]:
    """The model server's answered (HTTP 200) requests, in answer order."""
    return [r for r in stack.model.requests if r["status"] == 200]


def settle(receiver: OtlpReceiver, run_id: str, expected: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The run's spans once at least ``expected`` arrived (or ``timeout`` passed), plus one more second so that
    anything exported twice would have arrived too."""
    try:
        receiver.wait_for(lambda spans: len(spans_of(spans, run_id)) >= expected, timeout=timeout)
    except AssertionError:
        pass  # the checks below say what is missing
    time.sleep(1.0)
    return spans_of(receiver.spans(), run_id)


def tool_executions(stack: AppStack, run_id: str) -> list[str]:
    """The tool executions of the run from its timeline (Durable history, every generation): the tool name once
    per attempt (a success with ``retries`` counts them); approval checks (no ``callId``) are left out."""
    timeline = http("GET", stack.url(f"/api/runs/{run_id}/timeline")).json
    names: list[str] = []
    for entry in timeline["entries"]:
        if entry["kind"] == "tool_call" and entry.get("callId"):
            names += [entry["name"]] * (1 + int(entry.get("retries") or 0) if entry.get("ok") else 1)
    return names


def model_call_in_flight(stack: AppStack, run_id: str) -> bool:
    """True while the current generation's Durable history holds an ``invoke_model`` task scheduled and not
    completed (the local runtime leaves matched schedules out of ``historyEvents``; 202 while running)."""
    answer = http("GET", stack.url(f"/runtime/webhooks/durabletask/instances/{run_id}?showHistory=true"))
    events = ((answer.json or {}).get("historyEvents") or []) if answer.status in (200, 202) else []
    return any(e.get("EventType") == "TaskScheduled" and e.get("Name") == "invoke_model" for e in events)


def model_turns(stack: AppStack, run_id: str) -> list[dict[str, Any]]:
    timeline = http("GET", stack.url(f"/api/runs/{run_id}/timeline")).json
    return [e for e in timeline["entries"] if e["kind"] == "model_turn"]


def traced_refund_flow(stack: AppStack, receiver: OtlpReceiver) -> dict[str, Any]:
    """Start [case-approve] with a ``traceparent``, approve its refund, wait for completion and for its spans.

    Returns ``{"runId", "traceparent", "pending", "run", "spans"}`` (``spans``: the run's spans as received)."""
    traceparent = Traceparent.new()
    run_id = start_traced_run(stack, APPROVE_TEXT, APPROVE_CUSTOMER, traceparent)
    pending = approve_pending(stack, run_id)
    run = stack.wait_status(run_id, "completed", "failed", timeout=40)
    assert run["status"] == "completed", run
    # run span + one chat span per model call + three tools + one approval
    spans = settle(receiver, run_id, 1 + len(answered(stack)) + 3 + 1)
    return {"runId": run_id, "traceparent": traceparent, "pending": pending, "run": run, "spans": spans}


def _brief(span: dict[str, Any]) -> str:
    return f"{span['name']}({span['spanId']} parent={span['parentSpanId'] or '-'} trace={span['traceId']})"


def trace_problems(spans: list[dict[str, Any]], run_id: str, traceparent: Traceparent) -> list[str]:
    """What is wrong with a run's spans in general (shapes that hold whatever the flow): one run span with the
    deterministic id, linked to the request's span and spanning its children; every span in the request's trace;
    children of the run span; no span id twice."""
    problems: list[str] = []
    ids = [s["spanId"] for s in spans]
    twice = sorted({i for i in ids if ids.count(i) > 1})
    if twice:
        problems.append(f"span ids exported more than once: {[_brief(s) for s in spans if s['spanId'] in twice]}")
    other_trace = [_brief(s) for s in spans if s["traceId"] != traceparent.trace_id]
    if other_trace:
        problems.append(f"spans outside the traceparent's trace {traceparent.trace_id}: {other_trace}")
    runs = named(spans, "invoke_agent")
    if [s["name"] for s in runs] != ["invoke_agent support"]:
        problems.append(f"expected exactly one 'invoke_agent support' run span, got {[_brief(s) for s in runs]}")
    if not runs:
        return problems
    run = runs[0]
    if run["spanId"] != run_span_id(run_id):
        problems.append(f"run span id {run['spanId']} is not the deterministic {run_span_id(run_id)}")
    if run["parentSpanId"]:
        problems.append(f"the run span has a parent ({run['parentSpanId']}); it should be a root with a link")
    if not any(link["traceId"] == traceparent.trace_id and link["spanId"] == traceparent.span_id
               for link in run["links"]):
        problems.append(f"the run span does not link to the request's span {traceparent.span_id}: {run['links']}")
    if run["attributes"].get("gen_ai.operation.name") != "invoke_agent" or \
            run["attributes"].get("gen_ai.agent.name") != "support":
        problems.append(f"run span attributes: {run['attributes']}")
    if run["kind"] != "INTERNAL" or run["service"] != SERVICE:
        problems.append(f"run span kind/service: {run['kind']}/{run['service']}")
    children = [s for s in spans if s is not run]
    orphans = [_brief(s) for s in children if s["parentSpanId"] != run["spanId"]]
    if orphans:
        problems.append(f"spans that are not children of the run span {run['spanId']}: {orphans}")
    if children:
        first = min(s["startTimeUnixNano"] for s in children)
        last = max(s["endTimeUnixNano"] for s in children)
        if run["startTimeUnixNano"] > first:
            problems.append(f"the run span starts {(run['startTimeUnixNano'] - first) / 1e6:.0f} ms after its "
                            "first child: it should start when the run started")
        if run["endTimeUnixNano"] < last:
            problems.append(f"the run span ends {(last - run['endTimeUnixNano']) / 1e6:.0f} ms before its last "
                            "child: it should end when the run ended")
    return problems


def chat_problems(chats: list[dict[str, Any]], models: set[str], turns: list[dict[str, Any]]) -> list[str]:
    """GenAI attributes of the ``chat`` spans against the requests' models and the timeline's model turns
    (usage and finish reason per turn, compared as multisets)."""
    problems: list[str] = []
    for span in chats:
        a = span["attributes"]
        if span["name"] != f"chat {a.get('gen_ai.request.model')}" or a.get("gen_ai.request.model") not in models:
            problems.append(f"chat span name/model {span['name']!r}/{a.get('gen_ai.request.model')!r}; "
                            f"the requests named {sorted(models)}")
        if span["kind"] != "CLIENT" or a.get("gen_ai.operation.name") != "chat":
            problems.append(f"chat span kind/operation: {span['kind']}/{a.get('gen_ai.operation.name')}")
        for key in ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons",
                    "gen_ai.response.id", "gen_ai.provider.name"):
            if key not in a:
                problems.append(f"chat span {span['spanId']} lacks {key}: {a}")
    seen = sorted((s["attributes"].get("gen_ai.usage.input_tokens"), s["attributes"].get("gen_ai.usage.output_tokens"),
                   tuple(s["attributes"].get("gen_ai.response.finish_reasons") or ())) for s in chats)
    want = sorted((t["usage"]["inputTokens"], t["usage"]["outputTokens"], (t["finish"],)) for t in turns)
    if seen != want:
        problems.append(f"chat spans (input, output, finish) {seen} differ from the timeline's turns {want}")
    response_ids = [s["attributes"].get("gen_ai.response.id") for s in chats]
    if len(response_ids) != len(set(response_ids)):
        problems.append(f"a model response was exported twice: {response_ids}")
    return problems


# ---------------------------------------------------------------------------------------------------------------
# Tests


@pytest.fixture
def receiver():
    with OtlpReceiver() as server:
        yield server


def test_run_with_approval_exports_one_span_tree_over_otlp(tmp_path: Path, receiver: OtlpReceiver):
    stack = AppStack(tmp_path, SCRIPT, env=otlp_env(receiver))
    try:
        flow = traced_refund_flow(stack, receiver)
        run_id, traceparent, spans = flow["runId"], flow["traceparent"], flow["spans"]
        problems = trace_problems(spans, run_id, traceparent)

        requests = answered(stack)
        chats = named(spans, "chat ")
        if len(chats) != len(requests) or len(requests) != 4:
            problems.append(f"{len(chats)} chat spans for {len(requests)} model calls (4 expected)")
        problems += chat_problems(chats, {r["body"]["model"] for r in requests}, model_turns(stack, run_id))

        executed = tool_executions(stack, run_id)
        tools = named(spans, "execute_tool ")
        if sorted(s["name"] for s in tools) != sorted(f"execute_tool {n}" for n in executed) or \
                sorted(executed) != ["lookup_order", "refund_order", "send_message"]:
            problems.append(f"tool spans {[s['name'] for s in tools]} for the executions {executed}")
        for span in tools:
            a = span["attributes"]
            if a.get("gen_ai.operation.name") != "execute_tool" or not a.get("gen_ai.tool.call.id") or \
                    span["name"] != f"execute_tool {a.get('gen_ai.tool.name')}":
                problems.append(f"tool span attributes: {span['name']} {a}")

        approvals = named(spans, "approval ")
        pending = flow["pending"]
        if [s["name"] for s in approvals] != ["approval refund_order"]:
            problems.append(f"expected one 'approval refund_order' span, got {[s['name'] for s in approvals]}")
        for span in approvals:
            a = span["attributes"]
            if a.get("durable_agents.approval.decision") != "approved" or \
                    a.get("durable_agents.approval.id") != pending["id"]:
                problems.append(f"approval span attributes: {a}")
            if span["endTimeUnixNano"] <= span["startTimeUnixNano"]:
                problems.append("the approval span does not cover the wait")

        unexpected = [s["name"] for s in spans if not s["name"].startswith(
            ("invoke_agent", "chat ", "execute_tool ", "approval "))]
        if unexpected:
            problems.append(f"unexpected spans: {unexpected}")
        assert not problems, "\n".join(problems) + f"\n(all spans: {[_brief(s) for s in spans]})"
        assert not receiver.errors, receiver.errors
    finally:
        stack.close()


def test_host_kill_does_not_export_completed_work_again(tmp_path: Path, receiver: OtlpReceiver):
    """SIGKILL the host while the model call after the approved refund is in flight; restart. Spans of work that
    completed before the kill arrive once; the call in flight ran again (at-least-once) and only its second
    execution, which finished, has a span."""
    stack = AppStack(tmp_path, KILL_SCRIPT, env=otlp_env(receiver))
    try:
        traceparent = Traceparent.new()
        run_id = start_traced_run(stack, "Please refund ORD-1001, it arrived broken. [case-otlp-kill]",
                                  APPROVE_CUSTOMER, traceparent)
        approve_pending(stack, run_id)
        wait_for(lambda: stack.refunds("ORD-1001"), timeout=30, what="the refund")

        def before_kill(spans: list[dict[str, Any]]) -> bool:
            mine = spans_of(spans, run_id)
            return len(named(mine, "chat ")) >= 2 and len(named(mine, "execute_tool ")) >= 2 and \
                len(named(mine, "approval ")) >= 1

        try:  # the spans of completed work were exported before the kill (else there is nothing to duplicate)
            receiver.wait_for(before_kill, timeout=10)
        except AssertionError as exc:
            raise AssertionError(f"spans of completed work missing before the kill: {exc}") from None
        wait_for(lambda: model_call_in_flight(stack, run_id), timeout=20, what="the third model call scheduled")
        time.sleep(0.5)  # the third model call is in flight now (it answers after 5 s)
        assert not any(r["step"] == 2 for r in stack.model.requests), "the third model call already answered"
        exported_before = {s["spanId"]: s for s in spans_of(receiver.spans(), run_id)}
        stack.runtime.kill()
        stack.runtime.start()
        run = stack.wait_status(run_id, "completed", "failed", timeout=40)
        assert run["status"] == "completed", run

        requests = answered(stack)
        steps = [r["step"] for r in requests]
        assert sorted(steps) == [0, 1, 2, 2, 3], steps  # the call in flight at the kill ran again
        # run span + a chat span per FINISHED call (the one killed in flight never ended) + 3 tools + approval
        spans = settle(receiver, run_id, 1 + (len(requests) - 1) + 3 + 1)
        problems = trace_problems(spans, run_id, traceparent)
        counts = {span_id: sum(1 for s in spans if s["spanId"] == span_id) for span_id in exported_before}
        again = [_brief(exported_before[i]) for i, n in counts.items() if n != 1]
        if again:
            problems.append(f"spans of work completed before the kill exported again (or lost): {again}")
        chats = named(spans, "chat ")
        if len(chats) != len(requests) - 1:
            problems.append(f"{len(chats)} chat spans for {len(requests)} answered model calls, one of which was "
                            "answered to the killed host (expected one span per finished call)")
        problems += chat_problems(chats, {r["body"]["model"] for r in requests}, model_turns(stack, run_id))
        tools = sorted(s["name"] for s in named(spans, "execute_tool "))
        if tools != ["execute_tool lookup_order", "execute_tool refund_order", "execute_tool send_message"]:
            problems.append(f"tool spans after the restart: {tools}")
        if [s["name"] for s in named(spans, "approval ")] != ["approval refund_order"]:
            problems.append(f"approval spans: {[s['name'] for s in named(spans, 'approval ')]}")
        assert not problems, "\n".join(problems) + f"\n(all spans: {[_brief(s) for s in spans]})"
        assert len(stack.refunds("ORD-1001")) == 1
    finally:
        stack.close()

