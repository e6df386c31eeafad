"""SDK sessions in durable runs on the local runtime as a process (tests/fixtures/session_app): two turns of one
conversation with a workflow approval between them; the runtime is killed (SIGKILL) while the run waits, restarted,
and the approval given: the new process replays the first turn from history with no live run in memory. The session
ends with exactly the items of an uninterrupted run and each model request sees each user message once."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

import pytest
from agents.memory import SQLiteSession

from durable_agents._sessions import LEDGER_TABLE
from tests.integration.conftest import http
from tests.support.model_server import ScriptedModelServer
from tests.support.polling import wait_for
from tests.support.runtime_process import REPO_ROOT, RuntimeProcess

pytestmark = pytest.mark.integration

APP_DIR = REPO_ROOT / "tests" / "fixtures" / "session_app"
FIRST, SECOND = "Hello, I need help [s-turn-1]", "Still there? [s-turn-2]"
SCRIPT = [
    {"when": {"userContains": "[s-turn-1]"}, "text": "Hi! How can I help?"},
    {"when": {"userContains": "[s-turn-2]"}, "text": "Yes, still here."},
]


@pytest.fixture(params=["responses", "chat_completions"])
def stack(request, tmp_path):
    model = ScriptedModelServer(SCRIPT).start()
    db = tmp_path / "sessions.sqlite3"
    runtime = RuntimeProcess(APP_DIR, state=tmp_path / "state.sqlite3", log_path=tmp_path / "runtime.log", env={
        "OPENAI_BASE_URL": model.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_API": request.param,
        "AGENT_MODEL": "scripted-model", "AZURE_OPENAI_ENDPOINT": "", "SESSION_DB": str(db),
        "AUDIT_PATH": str(tmp_path / "audit.sqlite3"),
    })
    runtime.start()
    try:
        yield runtime, model, db
    finally:
        try:
            runtime.stop()
        finally:
            model.stop()


def _run(runtime: RuntimeProcess, run_id: str) -> dict[str, Any]:
    answer = http("GET", runtime.url(f"/api/runs/{run_id}"))
    assert answer.status == 200, answer.body
    return answer.json


def _wait(runtime: RuntimeProcess, run_id: str, *statuses: str) -> dict[str, Any]:
    return wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(_run(runtime, run_id)),
                    timeout=60, what=f"run {run_id} in {statuses}")


def _user_texts(body: dict[str, Any]) -> list[str]:
    items = body.get("input") if "input" in body else body.get("messages")
    texts = []
    for item in items or []:
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            texts.append(content if isinstance(content, str) else "".join(p.get("text", "") for p in content))
    return texts


def _two_turns_with_a_crash_between(runtime: RuntimeProcess, agent: str) -> dict[str, Any]:
    started = http("POST", runtime.url(f"/api/agents/{agent}/runs"), {"input": f"{FIRST} || {SECOND}"},
                   user="sam.support")
    assert started.status == 202, started.body
    run_id = started.json["id"]
    run = _wait(runtime, run_id, "awaiting_approval", "failed")
    assert run["status"] == "awaiting_approval", run
    runtime.kill()  # SIGKILL between the turns: no live run survives
    runtime.start()
    [pending] = run["pendingApprovals"]
    decided = http("POST", runtime.url(f"/api/runs/{run_id}/approvals/{pending['id']}"), {"approved": True})
    assert decided.status == 202, decided.body
    run = _wait(runtime, run_id, "completed", "failed")
    assert run["status"] == "completed", run
    return run


def _shape(items: list[Any]) -> list[tuple[str, str]]:
    """(role, text) of each session item."""
    out = []
    for item in items:
        content = item.get("content")
        text = content if isinstance(content, str) else "".join(p.get("text", "") for p in content or [])
        out.append((item.get("role"), text))
    return out


EXPECTED = [("user", FIRST), ("assistant", "Hi! How can I help?"), ("user", SECOND), ("assistant", "Yes, still here.")]


def test_a_file_session_survives_a_kill_between_turns_with_each_item_once(stack):
    runtime, model, db = stack
    run = _two_turns_with_a_crash_between(runtime, "chat_file")
    assert run["output"]["answers"] == ["Hi! How can I help?", "approved", "Yes, still here."]
    session = SQLiteSession(run["id"], db)
    try:
        items = asyncio.run(session.get_items())
    finally:
        session.close()
    assert _shape(items) == EXPECTED
    assert [_user_texts(entry["body"]) for entry in model.requests] == [[FIRST], [FIRST, SECOND]]
    with sqlite3.connect(db) as conn:
        writes = conn.execute(f"SELECT seq, op FROM {LEDGER_TABLE} WHERE run_id = ? ORDER BY seq",
                              (run["id"],)).fetchall()
    assert writes == [(1, "add_items"), (2, "add_items"), (4, "add_items"), (5, "add_items")]


def test_an_in_memory_session_is_rebuilt_from_history_after_a_kill_between_turns(stack):
    runtime, model, _ = stack
    run = _two_turns_with_a_crash_between(runtime, "chat_memory")
    assert run["output"]["answers"] == ["Hi! How can I help?", "approved", "Yes, still here."]
    assert _shape(run["output"]["items"]) == EXPECTED
    assert [_user_texts(entry["body"]) for entry in model.requests] == [[FIRST], [FIRST, SECOND]]
