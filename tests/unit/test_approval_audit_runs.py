"""The run's side of the approval audit (``durable_agents._approval_audit``): version-2 runs driven by the test kit's
ReplayHarness write ``requested`` / ``expired`` records to the real SQLite audit store (AUDIT_PATH in tmp_path);
decisions bound to other arguments are rejected; version-1 runs write nothing."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents import ToolCall, activity_tool
from durable_agents import _runner as durable_runner
from durable_agents._audit import AuditRecord, get_audit_store
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

CUSTOMER = "jordan.rivera@example.com"
SETTINGS = {"APPROVAL_TIMEOUT": "PT1H"}
ARGS = {"order_id": "ORD-1", "amount": "250.00", "reason": "arrived broken, é"}
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture(autouse=True)
def _sqlite_audit_only(monkeypatch):
    """The audit store of these tests is the SQLite file of the conftest's ``_audit_in_tmp``, never a Table."""
    for name in ("AUDIT_TABLE_ENDPOINT", "AUDIT_TABLE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)


def _hash(arguments: Any) -> str:
    """sha256 of the canonical JSON, computed here independently of the library."""
    text = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class Shop:
    """One gated tool, ``refund_order``; the executions are recorded in ``refunds``."""

    def __init__(self, script: list[Any]) -> None:
        bp = durable_agents.Blueprint()
        self.refunds: list[ToolCall] = []
        shop = self

        @activity_tool(bp, needs_approval=True)
        def refund_order(order_id: str, amount: str, reason: str, call: ToolCall) -> dict:
            """Refund an order."""
            shop.refunds.append(call)
            return {"refunded": amount}

        agent = Agent(name="support", instructions="Refund orders.", tools=[refund_order])

        @bp.agent(agent, description="Refunds.", name="support")
        def support(context):
            return Runner.run_sync(agent, context.get_input()["input"])

        app = durable_agents.App(http_api=False)
        app.register_functions(bp)
        self.model = ScriptedModel(script)
        self.harness = ReplayHarness(app, model=self.model)

    def start(self, run_id: str = "r") -> Any:
        return self.harness.start_run("support", "refund", settings=SETTINGS, run_id=run_id, customer=CUSTOMER,
                                      started_by={"id": "dev-sam", "name": "sam"})

    def audit_inputs(self) -> list[Any]:
        return [value for name, value in self.harness.activity_calls if name == "durable_agents_audit"]


def _script(final: str = "done") -> list[Any]:
    return [[function_call("refund_order", ARGS, call_id="c1")], [assistant_message(final)]]


def _records(run_id: str) -> list[AuditRecord]:
    return get_audit_store().list_for_run(run_id)


def _without_at(record: AuditRecord) -> dict[str, Any]:
    assert TIME.match(record.at), record.at
    return {k: v for k, v in vars(record).items() if k != "at"}


@pytest.mark.parametrize("cache_size", [64, 0])
def test_a_gated_call_writes_one_requested_record_with_the_whole_arguments_and_the_pending_hash(cache_size):
    durable_runner.set_session_cache_size(cache_size)  # 0: every episode replays the whole history
    shop = Shop(_script())
    run = shop.start()
    shop.harness.run(advance_timers=False)
    [pending] = shop.harness.pending_approvals(run)
    assert pending["argumentsHash"] == _hash(ARGS)
    [record] = _records("r")
    assert _without_at(record) == {
        "run_id": "r", "approval_id": "c1", "event": "requested", "kind": "tool", "tool": "refund_order",
        "arguments_hash": pending["argumentsHash"], "arguments": ARGS, "decision": None, "comment": None,
        "actor_id": None, "actor_name": None, "key": "requested:c1",
    }
    assert shop.audit_inputs() == [{"runId": "r", "event": "requested", "items": [
        {"id": "c1", "kind": "tool", "tool": "refund_order", "arguments": ARGS, "argumentsHash": _hash(ARGS)}]}]
    shop.harness.approve(run, "c1", "ok", decided_by={"id": "dev-ana", "name": "ana"})
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    # The runner writes no decided record (the HTTP API does, knowing who decided) and none twice on replay.
    assert [r.event for r in _records("r")] == ["requested"] and len(shop.audit_inputs()) == 1
    [decision] = run.custom_status["approvals"]
    assert decision == {"id": "c1", "kind": "tool", "tool": "refund_order", "decision": "approved", "comment": "ok",
                        "decidedAt": decision["decidedAt"], "decidedBy": {"id": "dev-ana", "name": "ana"}}
    assert [(c.call_id, c.approved, c.customer) for c in shop.refunds] == [("c1", True, CUSTOMER)]


def test_an_expired_approval_writes_an_expired_record_after_the_timer():
    shop = Shop(_script("expired noted"))
    run = shop.start()
    shop.harness.run(advance_timers=True)
    assert run.status == "Completed", run.output
    assert "expired" in function_outputs(shop.model.requests[1])["c1"] and shop.refunds == []
    requested, expired = _records("r")
    assert requested.event == "requested"
    assert _without_at(expired) == {
        "run_id": "r", "approval_id": "c1", "event": "expired", "kind": "tool", "tool": "refund_order",
        "arguments_hash": _hash(ARGS), "arguments": None, "decision": "expired", "comment": None,
        "actor_id": None, "actor_name": None, "key": "expired:c1",
    }
    assert [payload["event"] for payload in shop.audit_inputs()] == ["requested", "expired"]
    [decision] = run.custom_status["approvals"]
    assert (decision["decision"], decision["decidedBy"]) == ("expired", None)
    assert decision["decidedAt"].startswith("2026-01-01T01:00:00")


def test_a_version_1_run_writes_no_audit_record_and_its_history_has_no_audit_activity():
    shop = Shop(_script())
    run = shop.harness.start("support", {"agent": "support", "input": "refund", "settings": SETTINGS}, "old")
    shop.harness.run(advance_timers=False)
    [pending] = shop.harness.pending_approvals(run)
    assert pending["argumentsHash"] == _hash(ARGS)  # shown to reviewers of old runs too
    shop.harness.approve(run, "c1")
    shop.harness.run(advance_timers=True)
    assert run.status == "Completed", run.output
    assert _records("old") == [] and shop.audit_inputs() == []
    scheduled = [e["Name"] for e in run.history if e["EventType"] == 4]  # TaskScheduled
    assert scheduled == ["invoke_model", "refund_order", "invoke_model"]
    assert [(c.approved, c.customer) for c in shop.refunds] == [(True, None)]


def test_a_decision_for_other_arguments_is_recorded_as_rejected_with_a_comment_and_the_tool_does_not_run():
    shop = Shop(_script("not run"))
    run = shop.start()
    shop.harness.run(advance_timers=False)
    other = _hash({**ARGS, "amount": "25.00"})
    shop.harness.raise_event("r", "approval:c1", {"approved": True, "comment": "ok", "argumentsHash": other,
                                                  "decidedBy": {"id": "dev-ana", "name": "ana"}})
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert shop.refunds == []
    [decision] = run.custom_status["approvals"]
    comment = (f"The decision was made for other arguments ({other}); this call's arguments hash to {_hash(ARGS)}, "
               "so it was not run.")
    assert decision == {"id": "c1", "kind": "tool", "tool": "refund_order", "decision": "rejected",
                        "comment": comment, "decidedAt": decision["decidedAt"],
                        "decidedBy": {"id": "dev-ana", "name": "ana"}}
    seen = function_outputs(shop.model.requests[1])["c1"]
    assert "rejected" in seen and comment in seen


@pytest.mark.parametrize(("event", "decided_by"), [
    ({"approved": True, "comment": None}, None),  # an event without hash or identity (older clients) applies
    ({"approved": True, "comment": None, "argumentsHash": None, "decidedBy": {"id": "u-1"}}, {"id": "u-1",
                                                                                              "name": None}),
    ({"approved": True, "comment": None, "decidedBy": {"name": "no id"}}, None),  # not a principal: ignored
])
def test_decided_by_is_taken_from_the_event_when_it_is_a_principal(event, decided_by):
    shop = Shop(_script())
    run = shop.start()
    shop.harness.run(advance_timers=False)
    shop.harness.raise_event("r", "approval:c1", event)
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    [decision] = run.custom_status["approvals"]
    assert (decision["decision"], decision["decidedBy"]) == ("approved", decided_by)
    assert len(shop.refunds) == 1 and shop.refunds[0].approved is True


def test_an_audit_store_that_cannot_be_written_does_not_hold_the_run(monkeypatch, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's folder should be")
    monkeypatch.setenv("AUDIT_PATH", str(blocker / "audit.sqlite3"))
    shop = Shop(_script())
    run = shop.start()
    for _ in range(100):  # the audit activity's 5 attempts, 2 s apart on durable timers, then the approval wait
        if shop.harness.pending_approvals(run) or not shop.harness.step(advance_timers=True):
            break
    assert len(shop.audit_inputs()) == 5
    assert [p["id"] for p in shop.harness.pending_approvals(run)] == ["c1"]
    shop.harness.approve(run, "c1")
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert len(shop.refunds) == 1


@pytest.mark.parametrize(("name", "audits", "decision"), [
    ("v2-approval-approved", 1, ("approved", {"id": "dev-golden-approver", "name": "golden-approver"})),
    ("v2-approval-expired", 2, ("expired", None)),
])
def test_the_recorded_version_2_histories_replay_with_their_audit_activities(name, audits, decision):
    from durable_agents.testing import replay_history
    from tests.golden.app.function_app import app

    path = Path(__file__).resolve().parents[1] / "golden" / "histories" / f"{name}.json"
    golden = json.loads(path.read_text(encoding="utf-8"))
    assert (golden["input"]["version"], golden["input"]["customer"]) == (2, CUSTOMER)
    scheduled = [e["Name"] for e in golden["history"] if e["EventType"] == 4]
    assert scheduled.count("durable_agents_audit") == audits
    result = replay_history(app, golden)
    assert (result.status, result.output) == ("Completed", golden["expectedOutput"])
    [decided] = result.custom_status["approvals"]
    assert (decided["decision"], decided["decidedBy"]) == decision
