"""SDK sessions inside durable runs (durable_agents/_sessions.py): real replay through ``ReplayHarness`` with the
live-run cache on and off, real SQLite files, compared with the same script run by the plain SDK runner."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import Any

import pytest
from agents import Agent, RunConfig, Runner
from agents.exceptions import UserError
from agents.memory import SQLiteSession
from agents.testing import ScriptedModel as SdkScriptedModel

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents._sessions import (
    LEDGER_TABLE,
    SESSION_ACTIVITY,
    DurableSession,
    durable_run_kwargs,
    in_memory_session,
    run_session_operation,
)
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

bp = durable_agents.Blueprint()
agent = Agent(name="chat", instructions="Chat with the customer.")

GLOBAL_SESSION = SQLiteSession("global-conversation")  # a module-level in-memory session: outlives every replay
CREATED: list[SQLiteSession] = []  # the in-memory sessions the orchestrator created (one per fresh replay)


class _DictSession:
    """A custom in-memory session (the SDK's Session protocol, no SDK base class)."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.session_settings = None
        self.items: list[Any] = []

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return list(self.items if limit is None else self.items[-limit:])

    async def add_items(self, items: list[Any]) -> None:
        self.items.extend(items)

    async def pop_item(self) -> Any:
        return self.items.pop() if self.items else None

    async def clear_session(self) -> None:
        self.items.clear()


CUSTOM = _DictSession("custom-conversation")


def _session_for(data: dict[str, Any]) -> Any:
    mode = data["mode"]
    if mode == "file":
        return SQLiteSession(data["conversation"], data["db"])
    if mode == "memory":
        session = SQLiteSession(data["conversation"])
        CREATED.append(session)
        return session
    if mode == "custom":
        return in_memory_session(CUSTOM)
    if mode == "unmarked":
        return _DictSession("unmarked")
    return GLOBAL_SESSION


@bp.agent(agent, description="Chats with a session.")
def chat(context):
    data = context.get_input()["input"]
    session = _session_for(data)
    outputs = [Runner.run_sync(agent, text, session=session).final_output for text in data["turns"]]
    if data.get("pop"):
        popped = asyncio.get_event_loop().run_until_complete(
            durable_run_kwargs({"session": session})["session"].pop_item())
        outputs.append(popped.get("role") if isinstance(popped, dict) else None)
    return outputs


app = durable_agents.App(http_api=False)
app.register_functions(bp)

TURNS = ["hi [turn-1]", "and again [turn-2]"]
ANSWERS = ["Hello!", "Hello again!"]


def _script() -> list:
    return [[assistant_message(text)] for text in ANSWERS]


def _plain_items() -> list[Any]:
    """The session after the same two turns run by the SDK's own runner, outside any durable run."""
    session = SQLiteSession("plain")
    model = SdkScriptedModel(_script())

    async def both() -> list[Any]:
        for text in TURNS:
            await Runner.run(agent, text, session=session, run_config=RunConfig(model=model))
        return await session.get_items()

    try:
        return asyncio.run(both())
    finally:
        session.close()


def _user_texts(request: dict[str, Any]) -> list[str]:
    return [item["content"] for item in request["input"] if isinstance(item, dict) and item.get("role") == "user"]


def _run(data: dict[str, Any], cache_size: int, answers: list[str] = ANSWERS,
         ) -> tuple[Any, ReplayHarness, ScriptedModel]:
    durable_runner.set_session_cache_size(cache_size)  # 0: every episode replays the agent loop from the start
    model = ScriptedModel([[assistant_message(text)] for text in answers])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("chat", data)
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == answers
    model.assert_complete()
    return run, harness, model


def _assert_each_user_message_once(model: ScriptedModel) -> None:
    assert [_user_texts(r) for r in model.requests] == [TURNS[:1], TURNS]


def _read_file(db: Any, conversation: str) -> list[Any]:
    session = SQLiteSession(conversation, db)
    try:
        return asyncio.run(session.get_items())
    finally:
        session.close()


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_file_session_ends_with_the_items_of_an_uninterrupted_run(tmp_path, cache_size):
    db = tmp_path / "sessions.sqlite3"
    run, harness, model = _run({"mode": "file", "db": str(db), "conversation": "c-1", "turns": TURNS}, cache_size)
    items = _read_file(db, "c-1")
    assert items == _plain_items() and len(items) == 4
    _assert_each_user_message_once(model)
    session_ops = [value["op"] for name, value in harness.activity_calls if name == SESSION_ACTIVITY]
    assert session_ops == ["get_items", "add_items", "add_items"] * 2  # each ran once, none again on replay
    with sqlite3.connect(db) as conn:
        ledger = conn.execute(f"SELECT seq, op FROM {LEDGER_TABLE} ORDER BY seq").fetchall()
    assert ledger == [(1, "add_items"), (2, "add_items"), (4, "add_items"), (5, "add_items")]


@pytest.mark.parametrize("cache_size", [64, 0])
def test_an_in_memory_session_created_in_the_orchestrator_ends_with_the_items_of_an_uninterrupted_run(cache_size):
    CREATED.clear()
    run, harness, model = _run({"mode": "memory", "conversation": "m-1", "turns": TURNS}, cache_size)
    items = asyncio.run(CREATED[-1].get_items())  # the object of the last (fresh) replay
    assert items == _plain_items() and len(items) == 4
    _assert_each_user_message_once(model)
    if cache_size == 0:
        assert len(CREATED) > 1  # it was replayed from the start on fresh objects
    records = [value for name, value in harness.activity_calls if name == SESSION_ACTIVITY]
    assert [(r["op"], r["items"]) for r in records] == [("record", [])]  # the snapshot, once, before any write


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_module_level_in_memory_session_is_written_once_whatever_the_replays(cache_size):
    asyncio.run(GLOBAL_SESSION.clear_session())
    _, _, model = _run({"mode": "global", "turns": TURNS}, cache_size)
    assert asyncio.run(GLOBAL_SESSION.get_items()) == _plain_items()
    _assert_each_user_message_once(model)


def test_a_second_run_on_a_module_level_session_reads_the_first_runs_items_from_its_snapshot():
    asyncio.run(GLOBAL_SESSION.clear_session())
    _run({"mode": "global", "turns": TURNS[:1]}, 0, ANSWERS[:1])
    _, harness, model = _run({"mode": "global", "turns": TURNS[1:]}, 0, ANSWERS[1:])
    assert _user_texts(model.requests[0]) == TURNS
    assert asyncio.run(GLOBAL_SESSION.get_items()) == _plain_items()
    [record] = [v for name, v in harness.activity_calls if name == SESSION_ACTIVITY]
    assert [item.get("content") for item in record["items"]][0] == TURNS[0]


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_custom_session_declared_in_memory_is_replay_safe(cache_size):
    CUSTOM.items.clear()
    _, _, model = _run({"mode": "custom", "turns": TURNS}, cache_size)
    assert CUSTOM.items == _plain_items()
    _assert_each_user_message_once(model)


@pytest.mark.parametrize("cache_size", [64, 0])
def test_pop_item_on_a_file_session_removes_one_item_and_returns_it_on_replay(tmp_path, cache_size):
    db = tmp_path / "s.sqlite3"
    durable_runner.set_session_cache_size(cache_size)
    model = ScriptedModel(_script())
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("chat", {"mode": "file", "db": str(db), "conversation": "p", "turns": TURNS,
                                     "pop": True})
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == [*ANSWERS, "assistant"]  # the last item, the second answer, popped once
    assert _read_file(db, "p") == _plain_items()[:-1]
    pops = [v for name, v in harness.activity_calls if name == SESSION_ACTIVITY and v["op"] == "pop_item"]
    assert len(pops) == 1


def test_a_session_the_runner_cannot_make_durable_fails_the_run_with_what_to_do():
    model = ScriptedModel(_script())
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("chat", {"mode": "unmarked", "turns": TURNS})
    harness.run()
    assert run.status == "Failed"
    text = json.dumps(run.output)
    assert "_DictSession" in text and "in_memory_session" in text and "SQLiteSession(session_id" in text
    assert model.requests == []  # refused before any model call


def test_version_1_runs_keep_the_session_as_given(tmp_path):
    harness = ReplayHarness(app, model=ScriptedModel(_script()))
    db = tmp_path / "v1.sqlite3"
    run = harness.start("chat", {"agent": "chat", "input": {"mode": "file", "db": str(db), "conversation": "v1",
                                                             "turns": TURNS}})  # no "version": a version-1 run
    harness.run()
    assert run.status == "Completed", run.output
    assert all(name != SESSION_ACTIVITY for name, _ in harness.activity_calls)


def test_the_activity_applies_a_write_once_per_run_and_sequence_number(tmp_path):
    db = tmp_path / "a.sqlite3"
    session = {"class": "SQLiteSession", "sessionId": "s", "dbPath": str(db), "sessionsTable": "agent_sessions",
               "messagesTable": "agent_messages"}
    write = {"op": "add_items", "runId": "r", "execution": "e", "seq": 3, "session": session,
             "items": [{"role": "user", "content": "hi"}]}
    assert run_session_operation(write) is None
    assert run_session_operation(json.dumps(write)) is None  # a retried activity: nothing written again
    assert run_session_operation({**write, "seq": 4}) is None  # the next write of the run
    assert _read_file(db, "s") == [{"role": "user", "content": "hi"}] * 2
    pop = {"op": "pop_item", "runId": "r", "execution": "e", "seq": 5, "session": session}
    assert run_session_operation(pop) == {"role": "user", "content": "hi"}
    assert run_session_operation(pop) == {"role": "user", "content": "hi"}  # the stored answer, nothing popped
    assert _read_file(db, "s") == [{"role": "user", "content": "hi"}]
    with pytest.raises(ValueError, match="changed under a run in flight"):
        run_session_operation({**write, "seq": 5})
    assert run_session_operation({"op": "get_items", "runId": "r", "seq": 6, "session": session, "limit": 0}) == []
    with pytest.raises(ValueError, match="invalid table names"):
        run_session_operation({**write, "session": {**session, "messagesTable": "x; DROP TABLE y"}})


def test_refusals_name_the_session_and_what_to_use():
    class Remote(SQLiteSession):
        pass

    remote = Remote("r", ":memory:")  # an in-memory subclass is fine
    assert DurableSession.__name__ == "DurableSession"
    from durable_agents._sessions import _refusal, _sqlite_file_descriptor

    assert _sqlite_file_descriptor(remote) is None
    message = str(_refusal(_DictSession("x")))
    assert "durable_agents.in_memory_session" in message
    with pytest.raises(TypeError):
        in_memory_session(object())
    assert isinstance(_refusal(object()), UserError)
