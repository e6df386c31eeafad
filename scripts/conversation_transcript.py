"""Record a real transcript of a three-message conversation (an approval in the second turn) and write it as
docs/workflows/conversation.md.

It starts the store's app on the local runtime with the scripted model server (the same stack and script as
tests/integration/test_conversations.py), runs the README's walk-through over HTTP and writes every request and
answer as curl commands with their JSON. Run it from the repository root::

    python scripts/conversation_transcript.py [--out docs/workflows/conversation.md]
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

from tests.integration.conftest import REVIEWER, AppStack, HttpAnswer  # noqa: E402
from tests.integration.test_conversations import SCRIPT, three_message_flow  # noqa: E402


def _curl(method: str, path: str, body: Any, user: str) -> str:
    parts = [f"curl -s -X {method} http://127.0.0.1:7071{path}", f"-H 'X-Dev-User: {user}'"]
    if body is not None:
        parts += ["-H 'Content-Type: application/json'", f"-d '{json.dumps(body)}'"]
    return " \\\n  ".join(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "workflows" / "conversation.md"))
    args = parser.parse_args()
    entries: list[str] = []

    def record(method: str, path: str, body: Any, answer: HttpAnswer) -> None:
        user = REVIEWER if "/approvals/" in path else "sam.support"
        shown = answer.json if answer.body else None
        location = answer.headers.get("location")
        head = f"HTTP {answer.status}" + (f"\nLocation: {location}" if location else "")
        entries.append(f"```bash\n{_curl(method, path, body, user)}\n```\n```http\n{head}\n\n"
                       f"{json.dumps(shown, indent=2, ensure_ascii=False)}\n```\n")

    with tempfile.TemporaryDirectory() as tmp:
        stack = AppStack(Path(tmp), SCRIPT, env={"PAYLOAD_PATH": str(Path(tmp) / "payloads")})
        try:
            three_message_flow(stack, record)
        finally:
            stack.close()
    intro = (
        "# A conversation, recorded\n\n"
        "A real transcript, written by `python scripts/conversation_transcript.py`: the store's `support` agent on "
        "the local runtime (the real OpenAI client against the scripted model server of the tests), driven over "
        "the HTTP API. Three messages; the second asks for a refund above `REFUND_APPROVAL_THRESHOLD`, so its turn "
        "waits for a reviewer (`riley.reviewer`), who decides through the runs' approvals route with the "
        "conversation id. `sam.support` (support staff) talks for the customer `jordan.rivera@example.com`. Ids, "
        "times and token counts differ on every run; the polling GETs are left out (one `GET` after each step "
        "is shown). The README section \"Conversations\" explains each route.\n\n"
    )
    Path(args.out).write_text(intro + "\n".join(entries), encoding="utf-8")
    print(f"wrote {args.out} ({len(entries)} requests)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
