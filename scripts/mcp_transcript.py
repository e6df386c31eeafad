"""Record an MCP session with the app and write it as docs/workflows/mcp.md: the tool list as the official ``mcp``
client sees it, then a refund that needs approval: the agent's tool answers that the run waits, the reviewer lists
the approvals and decides one through ``decide_approval``, and ``get_run`` gives the output.

It starts the store's app on the local runtime with the scripted model server (the stack and script of
tests/integration/test_mcp_server.py) and talks to ``/runtime/webhooks/mcp`` over Streamable HTTP. Each step is
shown as the JSON-RPC ``tools/call`` params the client sent and the ``CallToolResult`` it got. Run it from the
repository root::

    python scripts/mcp_transcript.py [--out docs/workflows/mcp.md]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.integration.conftest import REVIEWER, SUPPORT_USER, AppStack  # noqa: E402
from tests.integration.test_mcp_server import SCRIPT, as_user  # noqa: E402


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "workflows" / "mcp.md"))
    args = parser.parse_args()
    parts: list[str] = []

    def record(user: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = as_user(stack, user, lambda c: c.call_tool(name, arguments))
        shown = result.model_dump(mode="json", by_alias=True, exclude_none=True)
        parts.append(f"**{user}** calls `{name}`:\n\n```json\n{_dump({'name': name, 'arguments': arguments})}\n```\n\n"
                     f"Result:\n\n```json\n{_dump(shown)}\n```\n")
        return shown

    with tempfile.TemporaryDirectory() as tmp:
        stack = AppStack(Path(tmp), SCRIPT, env={"PAYLOAD_PATH": str(Path(tmp) / "payloads")})
        try:
            tools = as_user(stack, SUPPORT_USER, lambda c: c.list_tools()).tools
            listed = [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]
            started = record(SUPPORT_USER, "support", {
                "input": "Refund ORD-1001, it arrived broken. [mcp-large]", "customer": "jordan.rivera@example.com",
                "wait": 30})
            run = started["structuredContent"]
            pending = run["pendingApprovals"][0]
            record(REVIEWER, "list_approvals", {"agent": "support"})
            record(REVIEWER, "decide_approval", {"runId": run["id"], "approvalId": pending["id"], "approved": True,
                                                 "comment": "Photos confirm it.",
                                                 "argumentsHash": pending["argumentsHash"]})
            record(REVIEWER, "get_run", {"runId": run["id"], "wait": 60})
        finally:
            stack.close()
    text = (
        "# An MCP session, recorded\n\n"
        "A real session, written by `python scripts/mcp_transcript.py`: the official `mcp` Python client (Streamable "
        "HTTP) against the store app's MCP server on the local runtime (`/runtime/webhooks/mcp`; the real OpenAI "
        "client of the app against the scripted model server of the tests). `sam.support` (support staff) asks the "
        "`support` agent for a refund above `REFUND_APPROVAL_THRESHOLD` for the customer `jordan.rivera@example.com`; "
        "the reviewer `riley.reviewer` decides it through the `decide_approval` tool. Ids and times differ on "
        "every run. README \"MCP clients\" tells how to connect VS Code or the MCP Inspector.\n\n"
        f"## The tools as the client lists them\n\n```json\n{_dump(listed)}\n```\n\n"
        "## A refund that waits for a person\n\n" + "\n".join(parts))
    Path(args.out).write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
