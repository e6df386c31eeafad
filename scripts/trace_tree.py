"""Record the OpenTelemetry trace of one refund run with an approval as an OTLP exporter delivers it, print it as
a tree and write it into docs/workflows/live-progress.md, section "Trace tree".

It runs the flow of tests/integration/test_otlp_export.py (:func:`traced_refund_flow`): a real OTLP/HTTP receiver
on loopback, the app on the local runtime exporting to it (``OTEL_EXPORTER_OTLP_ENDPOINT``), the scripted model
server, a run started with a W3C ``traceparent`` header, the reviewer's approval over HTTP. Each line of the tree
is one span: name, duration in ms, key attributes; children sorted by start time, indented under their parent;
spans whose parent was not received (the caller's span, or a span in another trace) are roots of their own.
Run it from the repository root::

    python scripts/trace_tree.py [--out docs/workflows/live-progress.md]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from scripts.events_transcript import DOC, write_section  # noqa: E402
from tests.integration.conftest import AppStack  # noqa: E402
from tests.integration.test_agent_runs import SCRIPT  # noqa: E402
from tests.integration.test_otlp_export import otlp_env, traced_refund_flow  # noqa: E402
from tests.support.otlp_receiver import OtlpReceiver  # noqa: E402

_SHOWN = ("gen_ai.agent.name", "gen_ai.request.model", "gen_ai.provider.name", "gen_ai.usage.input_tokens",
          "gen_ai.usage.output_tokens", "gen_ai.response.finish_reasons", "gen_ai.response.id",
          "gen_ai.tool.call.id", "durable_agents.approval.decision", "durable_agents.approval.id", "error.type")
"""The attributes shown per span (when present), in this order; ``durable_agents.run.id`` is shown once."""


def _line(span: dict[str, Any]) -> str:
    a = span["attributes"]
    shown = [f"{key}={a[key]}" for key in _SHOWN if key in a]
    if span["links"]:
        shown += [f"link→{link['spanId']}" for link in span["links"]]
    if span["status"]["code"] == "ERROR":
        shown.append(f"status=ERROR {span['status']['message']}")
    millis = (span["endTimeUnixNano"] - span["startTimeUnixNano"]) / 1e6
    return f"{span['name']}  [{span['kind']}, {millis:.1f} ms, span {span['spanId']}]  " + "  ".join(shown)


def render_tree(spans: list[dict[str, Any]]) -> str:
    """The spans as an indented text tree, one block per trace id (shapes: tests/support/otlp_receiver.py)."""
    ids = {s["spanId"] for s in spans}
    children: dict[str, list[dict[str, Any]]] = {}
    for span in spans:
        children.setdefault(span["parentSpanId"], []).append(span)
    for group in children.values():
        group.sort(key=lambda s: (s["startTimeUnixNano"], s["name"]))
    lines: list[str] = []

    def walk(span: dict[str, Any], depth: int) -> None:
        lines.append("    " * depth + _line(span))
        for child in children.get(span["spanId"], []):
            walk(child, depth + 1)

    roots = sorted((s for s in spans if s["parentSpanId"] not in ids), key=lambda s: s["startTimeUnixNano"])
    traces = sorted({s["traceId"] for s in roots}, key=lambda t: min(s["startTimeUnixNano"] for s in roots
                                                                      if s["traceId"] == t))
    for trace_id in traces:
        lines.append(f"trace {trace_id}")
        for root in (s for s in roots if s["traceId"] == trace_id):
            depth = 1
            if root["parentSpanId"]:
                lines.append(f"    (parent {root['parentSpanId']}: not received)")
                depth = 2
            walk(root, depth)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DOC))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, OtlpReceiver() as receiver:
        stack = AppStack(Path(tmp), SCRIPT, env=otlp_env(receiver))
        try:
            flow = traced_refund_flow(stack, receiver)
        finally:
            stack.close()
    tree = render_tree(flow["spans"])
    print(tree)
    traceparent = flow["traceparent"]
    body = (f"The run `{flow['runId']}` was started with `traceparent: {traceparent.header}` (the caller's span "
            f"`{traceparent.span_id}` is not exported by the app: the run span links to it). One line per span as "
            "the receiver got it: name, kind, duration, span id, key attributes (all spans carry "
            f"`durable_agents.run.id={flow['runId']}`).\n\n```text\n{tree}\n```")
    write_section(Path(args.out), "trace", "Trace tree", body)
    print(f"wrote {args.out}: {len(flow['spans'])} spans")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
