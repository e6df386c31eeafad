"""The custom status stays under the 16 KB the Durable Task Scheduler and the extension accept
(``durable_agents._runner.episode.fit_custom_status``): crafted statuses, then a real run through the test kit."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents import ToolCall, activity_tool
from durable_agents._audit import arguments_hash, get_audit_store
from durable_agents._runner.episode import MAX_CUSTOM_STATUS_CHARS, fit_custom_status
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

CUSTOMER = "jordan.rivera@example.com"
SDK_LIMIT = 8_704  # the extension: UTF-16 size in whole KB must not exceed 16 (17,408 bytes = 8,704 code units)


def _size(status: Any) -> int:
    """Characters of the custom status as the Durable SDK sends it (``json.dumps``, ASCII escapes)."""
    return len(json.dumps(status))


def _decision(n: int, comment: str | None) -> dict[str, Any]:
    return {"id": f"call_{n}", "kind": "tool", "tool": "refund_order", "decision": "rejected", "comment": comment,
            "decidedAt": f"2026-01-01T00:0{n}:00.000Z", "decidedBy": {"id": "dev-ana", "name": "ana"}}


def _pending(reason: str) -> dict[str, Any]:
    arguments = {"order_id": "ORD-1", "reason": reason}
    return {"id": "call_9", "kind": "tool", "tool": "refund_order", "summary": "Call refund_order with ...",
            "arguments": arguments, "argumentsHash": arguments_hash(arguments),
            "requestedAt": "2026-01-01T00:09:00.000Z", "expiresAt": "2026-01-02T00:09:00.000Z"}


def _status(pending: list[dict[str, Any]], approvals: list[dict[str, Any]], **custom: Any) -> dict[str, Any]:
    return {"agent": "support", "currentAgent": "support", "turns": 5, "lastTool": "refund_order",
            "pendingApprovals": pending, "approvals": approvals, "demo": False, **custom}


def test_a_status_within_the_budget_is_returned_as_it_is():
    status = _status([_pending("damaged")], [_decision(1, "no")], step="review")
    assert fit_custom_status(status) is status


def test_long_comments_and_a_20_kb_reason_are_cut_to_2000_characters_and_the_approval_marked_truncated():
    status = _status([_pending("r" * 20_000)], [_decision(n, "c" * 4000) for n in range(1, 3)])
    original = copy.deepcopy(status)
    fitted = fit_custom_status(status)
    assert status == original  # the input is not changed
    assert _size(status) > MAX_CUSTOM_STATUS_CHARS >= _size(fitted)
    [pending] = fitted["pendingApprovals"]
    # 2000 was enough: 1999 characters and an ellipsis; ids, times and the hash of the WHOLE arguments are kept.
    assert pending == {**original["pendingApprovals"][0], "arguments": {"order_id": "ORD-1",
                                                                        "reason": "r" * 1999 + "…"},
                       "truncated": True}
    assert pending["argumentsHash"] == arguments_hash({"order_id": "ORD-1", "reason": "r" * 20_000})
    assert fitted["approvals"] == [{**_decision(n, "c" * 1999 + "…")} for n in range(1, 3)]
    assert {k: v for k, v in fitted.items() if k not in ("pendingApprovals", "approvals")} == {
        k: v for k, v in original.items() if k not in ("pendingApprovals", "approvals")}
    assert fit_custom_status(copy.deepcopy(original)) == fitted  # deterministic


def test_many_escaped_characters_are_cut_further_down_the_limits():
    # "é" is 6 characters in the SDK's ASCII-escaped JSON: at 2000 and at 500 characters per string the five long
    # strings are still too many (5 * 500 * 6 = 15 000 before the rest of the status); 200 fits.
    status = _status([_pending("é" * 5000)], [_decision(n, "é" * 4000) for n in range(1, 5)])
    fitted = fit_custom_status(status)
    assert _size(fitted) <= MAX_CUSTOM_STATUS_CHARS
    assert [d["comment"] for d in fitted["approvals"]] == ["é" * 199 + "…"] * 4
    assert fitted["pendingApprovals"][0]["arguments"]["reason"] == "é" * 199 + "…"
    assert fitted["pendingApprovals"][0]["truncated"] is True


def test_a_huge_workflow_progress_is_replaced_by_progress_truncated_after_the_decisions_are_dropped():
    # 400 plan steps: even at 60 characters each the workflow's own member is over the budget.
    steps = [f"step {n}: " + "x" * 100 for n in range(400)]
    status = _status([_pending("damaged")], [_decision(n, "fine") for n in range(1, 5)], plan=steps, phase="review",
                     children=["run:sub-1"])
    fitted = fit_custom_status(status)
    assert _size(fitted) <= MAX_CUSTOM_STATUS_CHARS
    assert fitted == {"agent": "support", "currentAgent": "support", "turns": 5, "lastTool": "refund_order",
                      "pendingApprovals": [_pending("damaged")], "approvals": [], "demo": False,
                      "children": ["run:sub-1"], "progressTruncated": True}


def test_the_oldest_decisions_are_dropped_first_when_cutting_strings_is_not_enough():
    # 50 decisions (the status keeps at most 50) whose ids alone are long: cutting comments to 60 does not fit.
    decisions = [{**_decision(1, "ok"), "id": f"call_{n:03d}_" + "i" * 250} for n in range(50)]
    fitted = fit_custom_status(_status([], decisions))
    assert _size(fitted) <= MAX_CUSTOM_STATUS_CHARS
    kept = fitted["approvals"]
    assert 0 < len(kept) < 50
    assert [d["id"] for d in kept] == [d["id"] for d in decisions[-len(kept):]]  # the newest, in order, ids whole
    assert _size({**fitted, "approvals": [decisions[-len(kept) - 1], *kept]}) > MAX_CUSTOM_STATUS_CHARS


def _app(seen: list[tuple[str, ToolCall]]) -> durable_agents.App:
    bp = durable_agents.Blueprint()

    @activity_tool(bp, needs_approval=True)
    def refund_order(order_id: str, reason: str, call: ToolCall) -> dict:
        """Refund an order, giving a reason."""
        seen.append((reason, call))
        return {"refunded": order_id}

    agent = Agent(name="support", instructions="Refund orders.", tools=[refund_order])

    @bp.agent(agent, description="Refunds.", name="support")
    def support(context):
        return Runner.run_sync(agent, context.get_input()["input"], max_turns=20)

    app = durable_agents.App(http_api=False)
    app.register_functions(bp)
    return app


def test_a_run_with_a_20_kb_pending_approval_after_four_long_decisions_completes_under_16_kb():
    seen: list[tuple[str, ToolCall]] = []
    reason = "because " * 2500  # 20 000 characters
    script = [[function_call("refund_order", {"order_id": f"ORD-{n}", "reason": "short"}, call_id=f"c{n}")]
              for n in range(1, 5)]
    script += [[function_call("refund_order", {"order_id": "ORD-5", "reason": reason}, call_id="c5")],
               [assistant_message("done")]]
    harness = ReplayHarness(_app(seen), model=ScriptedModel(script))
    run = harness.start_run("support", "refunds", settings={"APPROVAL_TIMEOUT": "PT1H"}, run_id="big",
                            customer=CUSTOMER)
    for n in range(1, 5):
        harness.run(advance_timers=False)
        harness.reject(run, f"c{n}", f"{n}" * 4000, decided_by={"id": "dev-ana", "name": "ana"})
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    assert pending["id"] == "c5" and pending["truncated"] is True
    assert pending["argumentsHash"] == arguments_hash({"order_id": "ORD-5", "reason": reason})
    harness.approve(run, "c5", decided_by={"id": "dev-bo", "name": "bo"})  # the harness sends that hash
    harness.run(advance_timers=False)

    assert run.status == "Completed", run.output
    assert [(r, c.call_id, c.approved) for r, c in seen] == [(reason, "c5", True)]  # the tool got it whole
    assert len(run.custom_statuses) == run.episodes > 10
    assert max(_size(s) for s in run.custom_statuses) <= MAX_CUSTOM_STATUS_CHARS < SDK_LIMIT
    assert max(_size(s) for s in run.custom_statuses) > 4000  # the big approval was in it, shortened
    # The four 4000-character comments alone are over the budget: the status keeps 500 of each, the run's
    # history keeps them whole.
    assert [(d["id"], d["decision"], d["comment"]) for d in run.custom_status["approvals"]] == [
        (f"c{n}", "rejected", f"{n}" * 499 + "…") for n in range(1, 5)] + [("c5", "approved", None)]
    assert run.custom_status["approvals"][-1]["decidedBy"] == {"id": "dev-bo", "name": "bo"}
    [requested] = [r for r in get_audit_store().list_for_run("big") if r.approval_id == "c5"]
    assert requested.arguments == {"order_id": "ORD-5", "reason": reason}  # the audit keeps the whole value
