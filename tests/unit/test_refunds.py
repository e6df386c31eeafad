"""refund_order and send_message (activities/support.py) on a real SQLite ledger, through the plain functions and the
activity entry point (``ActivityTool.run_activity``, what the Durable activity runs); the approval check
(``refund_needs_approval``, an ``approval_check`` activity) directly and through the SDK's own evaluation; and the
threshold that cannot be split around through real azure-functions-durable replay (durable_agents.testing) with a
scripted model."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from pathlib import Path

import pytest

import activities
import durable_agents
from activities.ledger import get_ledger
from activities.orders import load_orders
from activities.support import (
    MAX_MESSAGE_CHARS,
    amount_needs_approval,
    lookup_order,
    refund_needs_approval,
    refund_order,
    send_message,
)
from durable_agents import ApprovalCheck, ToolCall
from durable_agents import _runner as durable_runner
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs
from tests.unit.test_ledger import race

D = Decimal
REPO_ROOT = Path(__file__).resolve().parents[2]
JORDAN = "jordan.rivera@example.com"  # ORD-1001: 291.50 USD, delivered


def call(call_id: str, run_id: str = "run-1", tool: str = "refund_order", *, customer: str | None = JORDAN,
         approved: bool = False) -> ToolCall:
    return ToolCall(run_id=run_id, call_id=call_id, tool=tool, agent="support", customer=customer, approved=approved)


def approved(call_id: str, run_id: str = "run-1", **kwargs) -> ToolCall:
    """A call a person approved: the ledger's approval limit does not apply (the order's total still does)."""
    return call(call_id, run_id, approved=True, **kwargs)


def order_with(status: str, currency: str | None = None):
    return next(o for o in load_orders()._by_id.values()
                if o.status == status and (currency is None or o.currency == currency))


@pytest.fixture(autouse=True)
def _settings(monkeypatch, tmp_path):
    """Default dataset, a fresh SQLite ledger per test, default approval threshold (100)."""
    for name in ("ORDERS_DATA_PATH", "REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING",
                 "REFUND_APPROVAL_THRESHOLD", "STORE_LINK_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))


class TestRefundOrder:
    def test_refunds_and_reports_the_new_balance(self):
        result = refund_order("ORD-1001", 41.5, "  Left earcup crackles ", call("c1"))
        assert result == {"status": "refunded", "refund_id": result["refund_id"], "order_id": "ORD-1001",
                          "amount": "41.50", "currency": "USD", "refunded_total": "41.50",
                          "refundable_amount": "250.00"}
        assert result["refund_id"].startswith("RF-")
        looked_up = lookup_order("ORD-1001", call("l1", tool="lookup_order"))
        assert (looked_up["refunded_total"], looked_up["refundable_amount"]) == ("41.50", "250.00")
        [record] = get_ledger().list_refunds("ORD-1001")
        assert record.key == "run-1:c1" and record.amount == D("41.50") and record.reason == "Left earcup crackles"

    def test_same_run_and_call_refunds_once_and_returns_the_original(self):
        first = refund_order("ORD-1001", 100, "damaged", approved("c1"))
        assert refund_order("ORD-1001", 100, "damaged", approved("c1")) == first
        # Another call id (or another run with the same call id) is another refund.
        second = refund_order("ORD-1001", 100, "damaged", approved("c2"))
        third = refund_order("ORD-1001", 10, "damaged", approved("c1", run_id="run-2"))
        assert len({first["refund_id"], second["refund_id"], third["refund_id"]}) == 3
        assert third["refunded_total"] == "210.00"
        assert get_ledger().refunded_total("ORD-1001") == D("210.00")

    def test_refuses_more_than_is_left(self):
        refund_order("ORD-1001", 200, "partial", approved("c1"))
        result = refund_order("ORD-1001", 91.51, "rest", approved("c2"))
        assert result["code"] == "exceeds_refundable"
        assert result["refundable_amount"] == "91.50"
        assert "91.50 USD" in result["error"] and "291.50 USD" in result["error"]
        assert refund_order("ORD-1001", "91.50", "rest", approved("c3"))["refundable_amount"] == "0.00"
        done = refund_order("ORD-1001", 1, "more", approved("c4"))
        assert done["code"] == "order_not_refundable" and "in full" in done["error"]
        assert get_ledger().refunded_total("ORD-1001") == D("291.50")

    @pytest.mark.parametrize("status", ["cancelled", "refunded"])
    def test_cancelled_and_refunded_orders_are_refused(self, status):
        order = order_with(status)
        result = refund_order(order.id, 1, "x", call("c1", customer=order.customer_email))
        assert result["code"] == "order_not_refundable"
        assert status in result["error"]
        assert get_ledger().list_refunds(order.id) == []

    def test_shipped_and_paid_orders_can_be_refunded(self):
        for n, status in enumerate(("shipped", "paid")):
            order = order_with(status)
            result = refund_order(order.id, "1.00", "goodwill", call(f"c{n}", customer=order.customer_email))
            assert result["status"] == "refunded"

    @pytest.mark.parametrize("order_id, code", [("ORD-9999", "order_not_found"), ("yesterday's order",
                                                                                  "invalid_order_id")])
    def test_unknown_orders_are_refused(self, order_id, code):
        assert refund_order(order_id, 5, "x", call("c1"))["code"] == code

    @pytest.mark.parametrize("amount", [0, -5, "-0.01", "abc", 10.005, float("nan"), None, True, False, "1e400",
                                        "NaN", "Infinity", float("inf"), [5], {"value": 5}])
    def test_bad_amounts_are_refused_without_touching_the_ledger(self, amount):
        result = refund_order("ORD-1001", amount, "x", call("c1"))
        assert result["code"] == "invalid_amount", result
        assert get_ledger().list_refunds("ORD-1001") == []

    @pytest.mark.parametrize("amount", [True, False, None, "NaN", "Infinity", "-Infinity", float("inf"), "true"])
    def test_bad_amounts_are_not_coerced_by_the_activitys_validation(self, amount):
        """What the Durable activity runs: ``true`` used to be validated into ``1`` and refunded as 1.00."""
        payload = {"args": {"order_id": "ORD-1001", "amount": amount, "reason": "x"}, "call": call("b1").to_json()}
        assert activities.refund_order.run_activity(payload)["code"] == "invalid_amount"
        assert get_ledger().list_refunds("ORD-1001") == []

    def test_currency_minor_unit_and_currency_of_the_order(self):
        order = next(o for o in load_orders()._by_id.values() if o.status == "delivered" and o.currency == "EUR"
                     and o.total > 20)
        result = refund_order(order.id, 12.3, "x", call("c1", customer=order.customer_email))
        assert (result["amount"], result["currency"]) == ("12.30", "EUR")

    @pytest.mark.parametrize("reason", ["", "   ", None, "x" * 501, "broken \ud800", "nul \x00 byte"])
    def test_a_reason_is_required(self, reason):
        assert refund_order("ORD-1001", 5, reason, call("c1"))["code"] == "invalid_reason"
        assert get_ledger().list_refunds("ORD-1001") == []

    def test_quoted_and_malformed_amounts_through_the_activity_entry_point(self):
        quoted = {"args": {"order_id": "ORD-1001", "amount": "19.99", "reason": "x"}, "call": call("q1").to_json()}
        assert activities.refund_order.run_activity(quoted)["amount"] == "19.99"
        bad = {"args": {"order_id": "ORD-1001", "amount": "twenty", "reason": "x"}, "call": call("q2").to_json()}
        assert activities.refund_order.run_activity(bad)["code"] == "invalid_amount"
        assert get_ledger().refunded_total("ORD-1001") == D("19.99")

    def test_through_the_activity_entry_point_repeated_and_racing(self):
        """What the Durable activity runs: args validated against the tool schema, ToolCall injected."""
        payload = {"args": {"order_id": "ORD-1001", "amount": 291.5, "reason": "Never arrived"},
                   "call": approved("call_9").to_json()}
        first = activities.refund_order.run_activity(payload)
        assert first["status"] == "refunded" and first["amount"] == "291.50"
        assert activities.refund_order.run_activity(json.dumps(payload)) == first  # re-delivered
        results, errors = race(6, lambda i: activities.refund_order.run_activity(payload))
        assert errors == [] and all(result == first for result in results)
        results, errors = race(4, lambda i: activities.refund_order.run_activity(
            dict(payload, call=approved(f"call_x{i}").to_json())))
        assert errors == [] and all(r["code"] == "order_not_refundable" for r in results)
        assert [r.key for r in get_ledger().list_refunds("ORD-1001")] == ["run-1:call_9"]

    def test_racing_different_calls_never_refund_more_than_the_total(self):
        results, errors = race(8, lambda i: refund_order("ORD-1001", 100, "x", approved(f"c{i}")))
        assert errors == []
        assert sum(1 for r in results if r.get("status") == "refunded") == 2
        assert sum(1 for r in results if r.get("code") == "exceeds_refundable") == 6
        assert get_ledger().refunded_total("ORD-1001") == D("200.00")

    def test_schema(self):
        schema = activities.refund_order.params_json_schema
        assert schema["required"] == ["order_id", "amount", "reason"]
        assert schema["properties"]["amount"]["type"] == "number"
        assert "tool_call" not in schema["properties"]
        assert activities.refund_order.needs_approval.func is activities.refund_approval


class TestUnapprovedRefundsAreHeldToTheThreshold:
    """Defense in depth: refund_order passes the ledger the threshold (environment) as ``approval_limit`` for calls
    no person approved, so runs that both passed their approval check cannot refund more than it together."""

    def test_a_second_unapproved_refund_that_crosses_the_threshold_is_refused(self):
        assert refund_order("ORD-1001", 99, "x", call("c1", run_id="run-a"))["status"] == "refunded"
        result = refund_order("ORD-1001", 99, "x", call("c1", run_id="run-b"))
        assert result["code"] == "approval_required"
        assert "Nothing was refunded" in result["error"] and "approval" in result["error"]
        assert "Call refund_order again only if the customer still wants" in result["error"]
        assert get_ledger().refunded_total("ORD-1001") == D("99.00")
        # The same call approved by a person goes through.
        assert refund_order("ORD-1001", 99, "x", approved("c1", run_id="run-b"))["refunded_total"] == "198.00"

    def test_racing_runs_that_passed_their_checks_refund_at_most_the_threshold(self):
        results, errors = race(8, lambda i: refund_order("ORD-1001", 99, "x", call("c1", run_id=f"run-{i}")))
        assert errors == []
        assert sorted(r.get("status") or r["code"] for r in results) == ["approval_required"] * 7 + ["refunded"]
        assert get_ledger().refunded_total("ORD-1001") == D("99.00")

    def test_the_environment_threshold_is_the_limit_and_a_bad_one_fails_closed(self, monkeypatch):
        monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", "250")
        assert refund_order("ORD-1001", 200, "x", call("c1"))["status"] == "refunded"
        assert refund_order("ORD-1001", 60, "x", call("c2"))["code"] == "approval_required"
        monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", "a lot")
        assert refund_order("ORD-1002", 1, "x", call("c3"))["code"] == "approval_required"
        assert refund_order("ORD-1002", 1, "x", approved("c4"))["status"] == "refunded"


class TestSendMessage:
    def test_sends_once_per_call(self):
        result = send_message(" Your refund was issued. ", call("m1", tool="send_message"))
        assert result["status"] == "sent" and result["message_id"].startswith("MSG-")
        again = send_message("Your refund was issued.", call("m1", tool="send_message"))
        assert again == result
        [message] = get_ledger().list_messages(JORDAN)
        assert (message.message_id, message.text) == (result["message_id"], "Your refund was issued.")

    def test_through_the_activity_entry_point(self):
        payload = {"args": {"text": "Hello"},
                   "call": call("m2", tool="send_message", customer="grace.okafor@example.co.uk").to_json()}
        first = activities.send_message.run_activity(payload)
        assert activities.send_message.run_activity(payload) == first
        assert len(get_ledger().list_messages("grace.okafor@example.co.uk")) == 1

    @pytest.mark.parametrize("customer, text, code", [
        (None, "hi", "no_customer"),
        ("stranger@example.com", "hi", "unknown_customer"),
        (JORDAN, "   ", "invalid_text"),
        (JORDAN, "x" * (MAX_MESSAGE_CHARS + 1), "invalid_text"),
        (JORDAN, "bad \ud83d surrogate", "invalid_text"),
        (JORDAN, "see https://example.com", "link_not_allowed"),
    ])
    def test_refusals(self, customer, text, code):
        assert send_message(text, call("m3", tool="send_message", customer=customer))["code"] == code
        assert get_ledger().list_messages((customer or JORDAN).lower()) == []


def check(arguments: dict, *, earlier=(), settings=None, run_id: str = "run-1", customer: str | None = JORDAN,
          call_id: str = "c9") -> bool:
    """The approval check as its activity runs it (input JSON through ``ApprovalCheck.from_json``)."""
    value = ApprovalCheck(arguments, call(call_id, run_id, customer=customer), tuple(earlier),
                          {"REFUND_APPROVAL_THRESHOLD": "100"} if settings is None else settings)
    return refund_needs_approval(ApprovalCheck.from_json(json.loads(json.dumps(value.to_json()))))


class TestApprovalPolicy:
    @pytest.mark.parametrize("amount, threshold, expected", [
        (100, "100", False), (100.01, "100", True), ("250.00", "100", True), (25, "100", False),
        (Decimal("100.001"), "100", True), (50, "49.99", True), (50, " 50 ", False),
        # Bad amounts: the tool refuses them, so no approval is needed.
        ("abc", "100", False), (-500, "100", False), (0, "100", False), (None, "100", False), (True, "100", False),
        (float("inf"), "100", False),
        # A bad threshold fails closed: every valid refund needs approval.
        (1, "one hundred", True), (1, "NaN", True),
    ])
    def test_amount_needs_approval(self, amount, threshold, expected):
        assert amount_needs_approval(amount, threshold) is expected

    def test_amount_needs_approval_counts_what_was_refunded_before(self):
        assert amount_needs_approval(1, "100", refunded=D("99")) is False
        assert amount_needs_approval("1.01", "100", refunded=D("99")) is True

    def test_the_check_counts_the_ledger(self):
        args = {"order_id": "ORD-1001", "amount": 99, "reason": "x"}
        assert check(args) is False
        refund_order("ORD-1001", 99, "x", call("c1", run_id="run-0"))
        assert check(args) is True  # 99 refunded + 99 > 100, whichever run refunded it
        assert check(dict(args, amount=1)) is False  # 99 + 1 = 100 is not above
        assert check(dict(args, order_id="ORD-1002")) is False  # another order's refunds do not count

    def test_the_check_counts_earlier_calls_of_the_run_that_are_not_in_the_ledger(self):
        args = {"order_id": "ORD-1001", "amount": 99, "reason": "x"}
        assert check(args, earlier=[("c1", args)]) is True
        # The same order written differently counts; another order, or a malformed amount, does not.
        assert check(args, earlier=[("c1", dict(args, order_id=" ord-1001"))]) is True
        assert check(args, earlier=[("c1", dict(args, order_id="ORD-1002")),
                                    ("c2", dict(args, amount="lots"))]) is False
        # An earlier call that is in the ledger is counted once (from the ledger).
        refund_order("ORD-1001", 99, "x", call("c1"))
        assert check(dict(args, amount=1), earlier=[("c1", args)]) is False
        assert check(dict(args, amount=1.01), earlier=[("c1", args)]) is True

    def test_the_check_reads_the_runs_settings_and_fails_closed(self):
        args = {"order_id": "ORD-1001", "amount": 150, "reason": "x"}
        assert check(args) is True
        assert check(args, settings={"REFUND_APPROVAL_THRESHOLD": "500"}) is False
        assert check(args, settings={}) is True  # default 100
        assert check(args, settings={"REFUND_APPROVAL_THRESHOLD": " "}) is True  # blank = unset
        assert check(dict(args, amount=1), settings={"REFUND_APPROVAL_THRESHOLD": "lots"}) is True

    @pytest.mark.parametrize("arguments, customer", [
        ({"order_id": "ORD-1001", "amount": 150}, None),  # no customer: refused by the tool
        ({"order_id": "ORD-1005", "amount": 150}, JORDAN),  # another customer's order
        ({"order_id": "ORD-9999", "amount": 150}, JORDAN),
        ({"order_id": "ORD-1001", "amount": True}, JORDAN),
        ({"order_id": "ORD-1001", "amount": "NaN"}, JORDAN),
        ({"order_id": "ORD-1018", "amount": 150}, JORDAN),  # refunded already
        ({}, JORDAN),
    ])
    def test_calls_the_tool_refuses_need_no_approval(self, arguments, customer):
        assert check(arguments, customer=customer) is False

    @pytest.mark.parametrize("amount", [25, 25.5, 100, "25.00", "abc", 250, True, "NaN"])
    def test_sdk_evaluation_of_the_tool(self, amount):
        """The SDK's own approval evaluation outside a durable run: validation keeps the arguments as sent (no
        coercion, so the SDK's fail-safe for changed arguments never fires) and the check runs in-process, where the
        run acts for no customer: nothing needs approval because the tool refuses every call (``no_customer``)."""
        from agents import RunContextWrapper
        from agents.util._approvals import evaluate_function_tool_approval

        arguments = json.dumps({"order_id": "ORD-1001", "amount": amount, "reason": "x"})
        evaluation = asyncio.run(
            evaluate_function_tool_approval(activities.refund_order, RunContextWrapper(None), arguments, "c1")
        )
        assert evaluation.outcome == "invoke"


# ---------------------------------------------------------------------------------------------------------------
# The threshold in durable runs (ReplayHarness: real replay, the real activities, the ledger on SQLite)
# ---------------------------------------------------------------------------------------------------------------

SETTINGS = {"REFUND_APPROVAL_THRESHOLD": "100"}


def refund_call(call_id: str, amount=99, order_id: str = "ORD-1001"):
    return function_call("refund_order", {"order_id": order_id, "amount": amount, "reason": "scratched"},
                         call_id=call_id)


def _app() -> durable_agents.App:
    app = durable_agents.App(http_api=False, app_dir=REPO_ROOT)
    app.register_functions(activities.bp)
    assert app.register_agent_modules("support") == ["support"]
    return app


def _outputs(model: ScriptedModel) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for request in model.requests:
        found.update({k: json.loads(v) if v.startswith("{") else {"text": v}
                      for k, v in function_outputs(request).items()})
    return found


def _keys(order_id: str = "ORD-1001") -> list[str]:
    return [r.key for r in get_ledger().list_refunds(order_id)]


@pytest.fixture(params=[64, 0], ids=["cached", "replaying"])
def cache_size(request):
    durable_runner.clear_session_cache()
    durable_runner.set_session_cache_size(request.param)
    yield request.param
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()


class TestTheThresholdCannotBeSplitAround:
    def test_three_sequential_refunds_of_99_in_one_run(self, cache_size):
        model = ScriptedModel([[refund_call("c1")], [refund_call("c2")], [refund_call("c3")],
                               [assistant_message("Done.")]])
        harness = ReplayHarness(_app(), model=model)
        run = harness.start_run("support", "Refund 99 three times on ORD-1001", customer=JORDAN, settings=SETTINGS,
                                run_id="split-1")
        harness.run(advance_timers=False)
        assert _keys() == ["split-1:c1"]  # the first one is within the threshold
        assert [p["id"] for p in harness.pending_approvals(run)] == ["c2"]  # 99 + 99 > 100
        harness.approve(run, "c2", "ok")
        harness.run(advance_timers=False)
        assert _keys() == ["split-1:c1", "split-1:c2"]  # approved: the ledger's approval limit does not apply
        assert [p["id"] for p in harness.pending_approvals(run)] == ["c3"]
        harness.reject(run, "c3", "enough")
        harness.run()
        assert run.status == "Completed", run.output
        assert get_ledger().refunded_total("ORD-1001") == D("198.00")
        outputs = _outputs(model)
        assert outputs["c2"]["refunded_total"] == "198.00" and "enough" in outputs["c3"]["text"]

    def test_three_parallel_refunds_of_99_in_one_turn(self, cache_size):
        model = ScriptedModel([[refund_call("c1"), refund_call("c2"), refund_call("c3")],
                               [assistant_message("Done.")]])
        harness = ReplayHarness(_app(), model=model)
        run = harness.start_run("support", "Refund 297 on ORD-1001 in three parts", customer=JORDAN,
                                settings=SETTINGS, run_id="split-2")
        harness.run(advance_timers=False)
        assert sorted(p["id"] for p in harness.pending_approvals(run)) == ["c2", "c3"]
        assert _keys() == ["split-2:c1"]
        harness.reject(run, "c2", "no")
        harness.reject(run, "c3", "no")
        harness.run()
        assert run.status == "Completed", run.output
        assert get_ledger().refunded_total("ORD-1001") == D("99.00")

    def test_a_second_run_on_the_same_order(self, cache_size):
        first_model = ScriptedModel([[refund_call("c1")], [assistant_message("Refunded 99.")]])
        first = ReplayHarness(_app(), model=first_model)
        run1 = first.start_run("support", "Refund 99 on ORD-1001", customer=JORDAN, settings=SETTINGS,
                               run_id="split-3a")
        first.run()
        assert run1.status == "Completed" and _keys() == ["split-3a:c1"]

        second_model = ScriptedModel([[refund_call("c1")], [assistant_message("Waiting.")]])
        second = ReplayHarness(_app(), model=second_model)
        run2 = second.start_run("support", "Refund 99 on ORD-1001", customer=JORDAN, settings=SETTINGS,
                                run_id="split-3b")
        second.run(advance_timers=False)
        assert [p["id"] for p in second.pending_approvals(run2)] == ["c1"]  # 99 in the ledger + 99 > 100
        assert _keys() == ["split-3a:c1"]
        second.approve(run2, "c1", "fine")
        second.run()
        assert run2.status == "Completed" and _keys() == ["split-3a:c1", "split-3b:c1"]

    def test_an_amount_of_true_is_refused_in_a_run(self, cache_size):
        model = ScriptedModel([[refund_call("c1", amount=True)], [assistant_message("Could not.")]])
        harness = ReplayHarness(_app(), model=model)
        run = harness.start_run("support", "Refund ORD-1001", customer=JORDAN, settings=SETTINGS)
        harness.run()
        assert run.status == "Completed", run.output
        assert _outputs(model)["c1"]["code"] == "invalid_amount"
        assert _keys() == []

    def test_a_run_started_before_activity_backed_checks_keeps_its_rule_and_the_ledger_still_holds(self):
        """A version-1 run (input without ``version``: started before this deploy) replays with the rule it was
        recorded with (``refund_needs_approval_v1``: this amount alone, no activity); its second 99 passes that
        rule, and the ledger's approval limit refuses it instead."""
        model = ScriptedModel([[refund_call("c1")], [refund_call("c2")], [assistant_message("Done.")]])
        harness = ReplayHarness(_app(), model=model)
        run = harness.start("support_agent_run", {"agent": "support", "input": "Refund 99 twice on ORD-1001",
                                                  "settings": SETTINGS, "customer": JORDAN}, "legacy-1")
        harness.run()
        assert run.status == "Completed", run.output
        assert "refund_needs_approval" not in [name for name, _ in harness.activity_calls]
        assert _outputs(model)["c2"]["code"] == "approval_required"
        assert _keys() == ["legacy-1:c1"]
