"""Conversations: the message log on a real file blob store, the inbox and reply activities, and the conversation
orchestrator through real azure-functions-durable replay (durable_agents.testing), cache on and off; the views."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner
from azure.durable_functions import OrchestrationRuntimeStatus as R

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents._blobs import FileBlobStore, run_prefix
from durable_agents._contracts import CONVERSATION_ORCHESTRATOR, RUN_VERSION
from durable_agents._conversations import (
    INBOX_ACTIVITY,
    INBOX_PAGE_SIZE,
    REPLY_ACTIVITY,
    ConversationLog,
    close_event_name,
    conversation_input,
    message_event_name,
    read_inbox,
    write_reply,
)
from durable_agents._http.views import agent_run_input, conversation_status
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

ALICE = {"id": "dev-alice", "name": "Alice"}


# ---------------------------------------------------------------------------------------------------------------
# The message log


def test_concurrent_appends_get_every_sequence_number_once_without_gaps(tmp_path):
    store = FileBlobStore(tmp_path / "blobs")
    seqs: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def writer(n: int) -> None:
        log = ConversationLog("conv-1", store)  # one log object per writer, as per HTTP request
        start.wait()
        for k in range(15):
            message = log.append_user(f"writer {n} message {k}", ALICE)
            with lock:
                seqs.append(message["seq"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(seqs) == list(range(1, 121))
    log = ConversationLog("conv-1", store)
    stored = log.messages()
    assert [m["seq"] for m in stored] == list(range(1, 121))
    assert all(m["id"] == f"{m['seq']:08d}-0" and m["role"] == "user" and m["by"] == ALICE for m in stored)
    assert all(name.startswith(run_prefix("conv-1") + "messages/") for name in store.list("runs/"))


def test_ids_are_cursors_answers_sort_after_their_question_and_replies_are_idempotent(tmp_path):
    log = ConversationLog("conv-2", FileBlobStore(tmp_path))
    assert log.create({"id": "conv-2", "agent": "a"}) is True
    assert log.create({"id": "conv-2", "agent": "b"}) is False and log.info()["agent"] == "a"
    first = log.append_user("one", ALICE)
    second = log.append_user("two", ALICE)
    reply = {"seq": 1, "role": "assistant", "content": "1!", "agent": "a", "toolCalls": [], "usage": {},
             "createdAt": "t", "error": None}
    log.put_reply(reply)
    log.put_reply(reply)  # a retried activity writes the same blob
    assert log.message_ids() == ["00000001-0", "00000001-1", "00000002-0"]
    assert [m["id"] for m in log.messages(after=first["id"])] == ["00000001-1", "00000002-0"]
    assert [m["id"] for m in log.messages(after="00000001-1", limit=1)] == [second["id"]]
    assert log.messages(after=second["id"]) == []
    assert log.last_seq() == 2
    assert log.delete_message(second["id"]) is True and log.delete_message(second["id"]) is False
    assert log.append_user("three", ALICE)["seq"] == 2  # the freed number is the next one


def test_close_keeps_its_first_record_and_the_inbox_reads_pages(tmp_path):
    store = FileBlobStore(tmp_path)
    log = ConversationLog("conv-3", store)
    for k in range(INBOX_PAGE_SIZE + 5):
        log.append_user(f"m{k}", ALICE)
    page = read_inbox({"conversation": "conv-3", "after": 0, "close": None}, store=store)
    assert [m["seq"] for m in page["messages"]] == list(range(1, INBOX_PAGE_SIZE + 1))
    assert page["more"] is True and page["closed"] is None
    rest = read_inbox({"conversation": "conv-3", "after": INBOX_PAGE_SIZE, "close": None}, store=store)
    assert [m["seq"] for m in rest["messages"]] == list(range(INBOX_PAGE_SIZE + 1, INBOX_PAGE_SIZE + 6))
    assert rest["more"] is False
    record, created = log.close(ALICE, "closed", "2026-01-01T00:00:00.000Z")
    assert created and record == {"closedAt": "2026-01-01T00:00:00.000Z", "by": ALICE, "reason": "closed"}
    idle = read_inbox({"conversation": "conv-3", "after": 999, "close": {"reason": "idle"}}, store=store)
    assert idle == {"messages": [], "more": False, "closed": record}  # the caller's close was first
    write_reply({"conversation": "conv-3", "message": {"seq": 1, "role": "assistant", "content": "x"}}, store=store)
    assert log.read(["00000001-1"])[0]["id"] == "00000001-1"


def test_a_big_message_page_stops_before_the_byte_budget(tmp_path):
    store = FileBlobStore(tmp_path)
    log = ConversationLog("conv-4", store)
    for _ in range(5):
        log.append_user("é" * 100_000, ALICE)  # 200 KB of UTF-8 each
    messages, more = log.user_messages(0)
    assert len(messages) == 1 and more is True
    messages, more = log.user_messages(4)
    assert len(messages) == 1 and more is False


# ---------------------------------------------------------------------------------------------------------------
# The orchestrator loop through real replay

HELPER = Agent(name="helper", instructions="Help.")


def _app(tmp_path: Path) -> durable_agents.App:
    app = durable_agents.App(http_api=False, app_dir=tmp_path)

    @app.agent(HELPER, description="Answers.", name="helper")
    def helper_run(context):
        text = context.get_input()["input"][-1]["content"]
        if "explode" in text:
            raise RuntimeError("the tool broke")
        return Runner.run_sync(HELPER, context.get_input()["input"])

    @app.workflow("flow", description="Not conversational.")
    def flow(context):
        return "done"

    return app


def _echo(call: Any) -> list[Any]:
    """Answer with the number of user messages seen and the last one (the history reached the model)."""
    users = [item for item in call.input if isinstance(item, dict) and item.get("role") == "user"]
    return [assistant_message(f"{len(users)}:{users[-1]['content']}")]


class _Conversation:
    """A conversation in the harness: its log (on the App's default file store) and instance."""

    def __init__(self, tmp_path: Path, settings: dict[str, str] | None = None, first: str | None = "hello") -> None:
        from agents.testing import ModelStep

        self.app = _app(tmp_path)
        self.model = ScriptedModel([ModelStep.respond(_echo) for _ in range(40)])
        self.harness = ReplayHarness(self.app, model=self.model)
        self.log = ConversationLog("c-1", app_dir=tmp_path)
        self.log.create({"id": "c-1", "agent": "helper", "customer": None, "startedBy": ALICE,
                         "createdAt": "2026-01-01T00:00:00.000Z"})
        if first:
            self.log.append_user(first, ALICE)
        self.instance = self.harness.start(CONVERSATION_ORCHESTRATOR, {
            "kind": "conversation", "agent": "helper", "settings": settings or {}, "version": RUN_VERSION,
            "customer": None, "startedBy": ALICE}, "c-1")

    def say(self, *texts: str) -> None:
        for text in texts:
            seq = self.log.append_user(text, ALICE)["seq"]
            self.harness.raise_event("c-1", message_event_name(seq), {"seq": seq})

    def answers(self) -> list[Any]:
        return [(m["content"], m["error"]) for m in self.log.messages() if m["role"] == "assistant"]

    @property
    def state(self) -> dict[str, Any]:
        return self.instance.custom_status["conversation"]


@pytest.fixture(params=[64, 0], ids=["cache-on", "cache-off"])
def cache_size(request):
    durable_runner.set_session_cache_size(request.param)
    yield request.param
    durable_runner.set_session_cache_size(64)


def test_messages_are_answered_in_order_with_the_history_and_close_ends_it(tmp_path, monkeypatch, cache_size):
    monkeypatch.delenv("PAYLOAD_PATH", raising=False)
    conv = _Conversation(tmp_path)
    conv.harness.run(advance_timers=False)
    assert conv.instance.status == "Running"
    assert conv.answers() == [("1:hello", None)]
    assert conv.state["state"] == "idle" and conv.state["received"] == 1 and conv.state["answered"] == 1
    conv.say("second", "third")  # two before the orchestration wakes: both answered, in order
    conv.harness.run(advance_timers=False)
    assert conv.answers() == [("1:hello", None), ("2:second", None), ("3:third", None)]
    assert conv.state["turns"] == 3 and conv.state["usage"]["requests"] == 3
    reply = conv.log.read(["00000003-1"])[0]
    assert reply["agent"] == "helper" and reply["toolCalls"] == [] and reply["seq"] == 3
    conv.log.close(ALICE, "closed")
    conv.harness.raise_event("c-1", close_event_name(conv.log), {"reason": "closed"})
    conv.harness.run(advance_timers=False)
    assert conv.instance.status == "Completed"
    assert conv.instance.output == {"closed": True, "reason": "closed", "messages": 3,
                                    "usage": conv.state["usage"], "turns": 3}
    assert conv.state["state"] == "closed"
    names = [name for name, _ in conv.harness.activity_calls]
    assert names.count(INBOX_ACTIVITY) >= 3 and names.count(REPLY_ACTIVITY) == 3


def test_a_failing_turn_answers_with_the_error_and_the_conversation_goes_on(tmp_path, monkeypatch, cache_size):
    monkeypatch.delenv("PAYLOAD_PATH", raising=False)
    conv = _Conversation(tmp_path, first="please explode")
    conv.harness.run(advance_timers=False)
    conv.say("fine now")
    conv.harness.run(advance_timers=False)
    # The failed turn left the history unchanged: the model sees one user message in the next turn.
    assert conv.answers() == [(None, "RuntimeError: the tool broke"), ("1:fine now", None)]
    assert conv.instance.status == "Running"


def test_the_idle_timer_closes_it_and_answers_what_came_first(tmp_path, monkeypatch, cache_size):
    monkeypatch.delenv("PAYLOAD_PATH", raising=False)
    conv = _Conversation(tmp_path, settings={"CONVERSATION_IDLE_TIMEOUT": "PT1H"})
    conv.harness.run(advance_timers=False)
    assert conv.state["idleExpiresAt"] > conv.state["lastActivityAt"]
    conv.log.append_user("sent but its event was lost", ALICE)  # in the log, no event: the idle close reads it
    conv.harness.run(advance_timers=True)
    assert conv.instance.status == "Completed" and conv.instance.output["reason"] == "idle"
    assert conv.answers() == [("1:hello", None), ("2:sent but its event was lost", None)]
    assert conv.log.closed()["reason"] == "idle" and conv.log.closed()["by"] is None


def test_it_continues_as_new_every_k_turns_carrying_history_and_totals(tmp_path, monkeypatch, cache_size):
    monkeypatch.delenv("PAYLOAD_PATH", raising=False)
    conv = _Conversation(tmp_path, settings={"AGENT_TURNS_PER_GENERATION": "2"})
    conv.harness.run(advance_timers=False)
    for text in ("b", "c", "d", "e"):
        conv.say(text)
        conv.harness.run(advance_timers=False)
    assert conv.answers() == [("1:hello", None), ("2:b", None), ("3:c", None), ("4:d", None), ("5:e", None)]
    assert conv.instance.generations == 3  # after turns 2 and 4
    assert conv.state["generation"] == 2 and conv.state["turns"] == 5 and conv.state["answered"] == 5
    assert conv.state["usage"]["requests"] == 5


def test_an_approval_in_a_later_turn_is_asked_and_decided_through_the_run_s_approval_event(tmp_path, monkeypatch,
                                                                                          cache_size):
    """A turn after an idle wait asks for an approval at once (no event wait of the idle step holds it)."""
    monkeypatch.delenv("PAYLOAD_PATH", raising=False)
    bp = durable_agents.Blueprint()

    @durable_agents.activity_tool(bp, needs_approval=True)
    def close_account(account_id: str) -> dict:
        """Close an account."""
        return {"closed": account_id}

    accounts = Agent(name="accounts", instructions="Manage accounts.", tools=[close_account])

    @bp.agent(accounts, description="Accounts.")
    def accounts_run(context):
        return Runner.run_sync(accounts, context.get_input()["input"])

    app = durable_agents.App(http_api=False, app_dir=tmp_path)
    app.register_functions(bp)
    model = ScriptedModel([[assistant_message("Hello.")],
                           [function_call("close_account", {"account_id": "A-1"}, call_id="call_1")],
                           [assistant_message("Closed A-1.")]])
    harness = ReplayHarness(app, model=model)
    log = ConversationLog("c-2", app_dir=tmp_path)
    log.append_user("hi", None)
    run = harness.start(CONVERSATION_ORCHESTRATOR, {"kind": "conversation", "agent": "accounts", "settings": {},
                                                    "version": RUN_VERSION, "customer": None, "startedBy": None},
                        "c-2")
    harness.run(advance_timers=False)
    seq = log.append_user("close A-1", None)["seq"]
    harness.raise_event("c-2", message_event_name(seq), {"seq": seq})
    harness.run(advance_timers=False)
    assert [p["id"] for p in harness.pending_approvals(run)] == ["call_1"]
    assert run.custom_status["conversation"]["state"] == "answering"
    harness.approve(run, "call_1", "ok")
    harness.run(advance_timers=False)
    answers = [m for m in log.messages() if m["role"] == "assistant"]
    assert [a["content"] for a in answers] == ["Hello.", "Closed A-1."]
    assert answers[1]["toolCalls"] == [{"tool": "close_account", "ok": True}]
    assert run.custom_status["approvals"][0]["decision"] == "approved"


def test_the_views_of_a_conversation_and_runs_stay_apart():
    conversation = {"kind": "conversation", "agent": "helper", "settings": {}}
    assert conversation_input(conversation) == conversation
    assert conversation_input('{"kind": "conversation", "agent": "a", "settings": {}}')["agent"] == "a"
    assert conversation_input({"agent": "a", "input": "x", "settings": {}}) is None
    assert agent_run_input({**conversation, "input": "x"}) is None
    assert agent_run_input({"agent": "a", "input": "x", "settings": {}}) is not None
    idle = {"conversation": {"state": "idle"}}
    assert conversation_status(R.Running, idle) == "idle"  # type: ignore[arg-type]
    assert conversation_status(R.Running, idle, unanswered=True) == "answering"  # type: ignore[arg-type]
    assert conversation_status(R.Running, {"conversation": {"state": "answering"}}) == "answering"  # type: ignore
    assert conversation_status(R.Running, {"pendingApprovals": [{"id": "x"}]}) == "awaiting_approval"  # type: ignore
    assert conversation_status(R.Running, idle, closed=True) == "closed"  # type: ignore[arg-type]
    assert conversation_status(R.Completed, {}) == "closed"  # type: ignore[arg-type]
    assert conversation_status(R.Terminated, {}) == "closed"  # type: ignore[arg-type]
    assert conversation_status(R.Failed, idle) == "failed"  # type: ignore[arg-type]
    assert conversation_status(R.Pending, {}) == "idle"  # type: ignore[arg-type]


def test_the_app_registers_one_conversation_orchestrator_and_keeps_each_agent_s_function(tmp_path):
    app = _app(tmp_path)
    entry = app.registry.get("helper")
    assert entry is not None and entry.conversational and entry.function.__name__ == "helper_run"
    assert not app.registry.get("flow").conversational
    names = {f.get_function_name() for f in app.get_functions()}
    assert {CONVERSATION_ORCHESTRATOR, INBOX_ACTIVITY, REPLY_ACTIVITY} <= names
