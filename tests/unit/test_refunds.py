"""refund_order and send_message (activities/support.py) on a real SQLite ledger, through the plain functions, the
activity entry point (``ActivityTool.run_activity``, what the Durable activity runs) and a real OpenAI Agents SDK
run (approval policy via the SDK's own evaluation, with a scripted in-process model)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import pytest
from agents import Agent, ModelResponse, RunConfig, Runner, Usage
from agents.models.interface import Model

import activities
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
from durable_agents import ToolCall
from durable_agents.testing import assistant_message, function_call
from tests.unit.test_ledger import race

D = Decimal


def call(call_id: str, run_id: str = "run-1", tool: str = "refund_order") -> ToolCall:
    return ToolCall(run_id=run_id, call_id=call_id, tool=tool, agent="support")


def order_with(status: str, currency: str | None = None):
    return next(o for o in load_orders()._by_id.values()
                if o.status == status and (currency is None or o.currency == currency))


@pytest.fixture(autouse=True)
def _settings(monkeypatch, tmp_path):
    """Default dataset, a fresh SQLite ledger per test, default approval threshold."""
    for name in ("ORDERS_DATA_PATH", "REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING",
                 "REFUND_APPROVAL_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))


class TestRefundOrder:
    def test_refunds_and_reports_the_new_balance(self):
        result = refund_order("ORD-1001", 41.5, "  Left earcup crackles ", call("c1"))
        assert result["status"] == "refunded"
        assert result["order_id"] == "ORD-1001"
        assert (result["amount"], result["currency"], result["reason"]) == ("41.50", "USD", "Left earcup crackles")
        assert (result["refunded_total"], result["refundable_amount"]) == ("41.50", "250.00")
        assert result["refund_id"].startswith("RF-") and result["created_at"].endswith("Z")
        looked_up = lookup_order("ORD-1001")
        assert (looked_up["refunded_total"], looked_up["refundable_amount"]) == ("41.50", "250.00")
        [record] = get_ledger().list_refunds("ORD-1001")
        assert record.key == "run-1:c1" and record.amount == D("41.50")

    def test_same_run_and_call_refunds_once_and_returns_the_original(self):
        first = refund_order("ORD-1001", 100, "damaged", call("c1"))
        assert refund_order("ORD-1001", 100, "damaged", call("c1")) == first
        # Another call id (or another run with the same call id) is another refund.
        second = refund_order("ORD-1001", 100, "damaged", call("c2"))
        third = refund_order("ORD-1001", 10, "damaged", call("c1", run_id="run-2"))
        assert len({first["refund_id"], second["refund_id"], third["refund_id"]}) == 3
        assert third["refunded_total"] == "210.00"
        assert get_ledger().refunded_total("ORD-1001") == D("210.00")

    def test_refuses_more_than_is_left(self):
        refund_order("ORD-1001", 200, "partial", call("c1"))
        result = refund_order("ORD-1001", 91.51, "rest", call("c2"))
        assert result["code"] == "exceeds_refundable"
        assert result["refundable_amount"] == "91.50"
        assert "91.50 USD" in result["error"] and "291.50 USD" in result["error"]
        assert refund_order("ORD-1001", "91.50", "rest", call("c3"))["refundable_amount"] == "0.00"
        done = refund_order("ORD-1001", 1, "more", call("c4"))
        assert done["code"] == "order_not_refundable" and "in full" in done["error"]
        assert get_ledger().refunded_total("ORD-1001") == D("291.50")

    @pytest.mark.parametrize("status", ["cancelled", "refunded"])
    def test_cancelled_and_refunded_orders_are_refused(self, status):
        order = order_with(status)
        result = refund_order(order.id, 1, "x", call("c1"))
        assert result["code"] == "order_not_refundable"
        assert status in result["error"]
        assert get_ledger().list_refunds(order.id) == []

    def test_shipped_and_paid_orders_can_be_refunded(self):
        for n, status in enumerate(("shipped", "paid")):
            order = order_with(status)
            assert refund_order(order.id, "1.00", "goodwill", call(f"c{n}"))["status"] == "refunded"

    @pytest.mark.parametrize("order_id, code", [("ORD-9999", "order_not_found"), ("yesterday's order",
                                                                                  "invalid_order_id")])
    def test_unknown_orders_are_refused(self, order_id, code):
        assert refund_order(order_id, 5, "x", call("c1"))["code"] == code

    @pytest.mark.parametrize("amount", [0, -5, "-0.01", "abc", 10.005, float("nan"), None, True, "1e400"])
    def test_bad_amounts_are_refused_without_touching_the_ledger(self, amount):
        result = refund_order("ORD-1001", amount, "x", call("c1"))
        assert result["code"] == "invalid_amount", result
        assert get_ledger().list_refunds("ORD-1001") == []

    def test_currency_minor_unit_and_currency_of_the_order(self):
        order = order_with("delivered", "EUR")
        result = refund_order(order.id, 12.3, "x", call("c1"))
        assert (result["amount"], result["currency"]) == ("12.30", "EUR")

    @pytest.mark.parametrize("reason", ["", "   ", None, "x" * 501])
    def test_a_reason_is_required(self, reason):
        assert refund_order("ORD-1001", 5, reason, call("c1"))["code"] == "invalid_reason"

    def test_quoted_and_malformed_amounts_through_the_activity_entry_point(self):
        quoted = {"args": {"order_id": "ORD-1001", "amount": "19.99", "reason": "x"}, "call": call("q1").to_json()}
        assert activities.refund_order.run_activity(quoted)["amount"] == "19.99"
        bad = {"args": {"order_id": "ORD-1001", "amount": "twenty", "reason": "x"}, "call": call("q2").to_json()}
        assert activities.refund_order.run_activity(bad)["code"] == "invalid_amount"
        assert get_ledger().refunded_total("ORD-1001") == D("19.99")

    def test_through_the_activity_entry_point_repeated_and_racing(self):
        """What the Durable activity runs: args validated against the tool schema, ToolCall injected."""
        payload = {"args": {"order_id": "ORD-1001", "amount": 291.5, "reason": "Never arrived"},
                   "call": call("call_9").to_json()}
        first = activities.refund_order.run_activity(payload)
        assert first["status"] == "refunded" and first["amount"] == "291.50"
        assert activities.refund_order.run_activity(json.dumps(payload)) == first  # re-delivered
        results, errors = race(6, lambda i: activities.refund_order.run_activity(payload))
        assert errors == [] and all(result == first for result in results)
        other = dict(payload, call=call("call_10").to_json())
        results, errors = race(4, lambda i: activities.refund_order.run_activity(
            dict(other, call=call(f"call_x{i}").to_json())))
        assert errors == [] and all(r["code"] == "order_not_refundable" for r in results)
        assert [r.key for r in get_ledger().list_refunds("ORD-1001")] == ["run-1:call_9"]

    def test_racing_different_calls_never_refund_more_than_the_total(self):
        results, errors = race(8, lambda i: refund_order("ORD-1001", 100, "x", call(f"c{i}")))
        assert errors == []
        assert sum(1 for r in results if r.get("status") == "refunded") == 2
        assert sum(1 for r in results if r.get("code") == "exceeds_refundable") == 6
        assert get_ledger().refunded_total("ORD-1001") == D("200.00")

    def test_schema(self):
        schema = activities.refund_order.params_json_schema
        assert schema["required"] == ["order_id", "amount", "reason"]
        assert schema["properties"]["amount"]["type"] == "number"
        assert "tool_call" not in schema["properties"]
        assert activities.refund_order.needs_approval is refund_needs_approval


class TestSendMessage:
    def test_sends_once_per_call(self):
        result = send_message("Amelia.Chen@example.com", " Your refund was issued. ", call("m1", tool="send_message"))
        assert result["status"] == "sent" and result["message_id"].startswith("MSG-")
        assert result["customer_email"] == "amelia.chen@example.com"
        again = send_message("amelia.chen@example.com", "Your refund was issued.", call("m1", tool="send_message"))
        assert again == result
        [message] = get_ledger().list_messages("amelia.chen@example.com")
        assert (message.message_id, message.text) == (result["message_id"], "Your refund was issued.")

    def test_through_the_activity_entry_point(self):
        payload = {"args": {"customer_email": "grace.okafor@example.co.uk", "text": "Hello"},
                   "call": call("m2", tool="send_message").to_json()}
        first = activities.send_message.run_activity(payload)
        assert activities.send_message.run_activity(payload) == first
        assert len(get_ledger().list_messages("grace.okafor@example.co.uk")) == 1

    @pytest.mark.parametrize("email, text, code", [
        ("not-an-email", "hi", "invalid_email"),
        ("stranger@example.com", "hi", "unknown_customer"),
        ("amelia.chen@example.com", "   ", "invalid_text"),
        ("amelia.chen@example.com", "x" * (MAX_MESSAGE_CHARS + 1), "invalid_text"),
    ])
    def test_refusals(self, email, text, code):
        assert send_message(email, text, call("m3", tool="send_message"))["code"] == code
        assert get_ledger().list_messages(email.lower()) == []


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

    def test_reads_the_threshold_setting_outside_an_orchestration(self, monkeypatch):
        assert refund_needs_approval(None, {"amount": 150}, "c1") is True
        assert refund_needs_approval(None, {"amount": 100}, "c1") is False
        monkeypatch.setenv("REFUND_APPROVAL_THRESHOLD", "500")
        assert refund_needs_approval(None, {"amount": 150}, "c1") is False
        assert refund_needs_approval(None, {}, "c1") is False

    @pytest.mark.parametrize("amount, expected", [
        (25, "invoke"), (25.5, "invoke"), (100, "invoke"), ("25.00", "invoke"), ("abc", "invoke"),
        (100.5, "require_approval"), (250, "require_approval"), ("250", "require_approval"),
    ])
    def test_sdk_evaluation_of_the_tool(self, amount, expected):
        """The SDK's own approval evaluation: validation keeps integers and quoted amounts as sent, so the policy
        decides (a changed argument would force approval); a malformed amount needs none (the tool refuses it)."""
        from agents import RunContextWrapper
        from agents.util._approvals import evaluate_function_tool_approval

        arguments = json.dumps({"order_id": "ORD-1001", "amount": amount, "reason": "x"})
        evaluation = asyncio.run(
            evaluate_function_tool_approval(activities.refund_order, RunContextWrapper(None), arguments, "c1")
        )
        assert evaluation.outcome == expected


class _ScriptedModel(Model):
    """An in-process SDK model answering from a list of ``ModelResponse`` objects (no model API here)."""

    def __init__(self, responses: list) -> None:
        self.responses = list(responses)
        self.inputs: list[Any] = []

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, *, previous_response_id=None, conversation_id=None, prompt=None, **kwargs):
        self.inputs.append(input)
        return self.responses.pop(0)

    def stream_response(self, *args, **kwargs):  # pragma: no cover - not used
        raise NotImplementedError


def _turn(*items: Any) -> ModelResponse:
    """One model answer made of ``agents.testing`` output items."""
    return ModelResponse(output=list(items), usage=Usage(requests=1), response_id=None)


class TestInAnSdkRun:
    """A plain ``Runner.run`` (no orchestration): small refunds run at once, large ones interrupt for approval."""

    def _agent(self, model: Model) -> Agent:
        return Agent(name="support", instructions="test", model=model, tools=list(activities.SUPPORT_TOOLS))

    def test_small_refund_runs_and_large_one_waits_for_approval(self):
        model = _ScriptedModel([
            _turn(function_call("refund_order", {"order_id": "ORD-1001", "amount": 40, "reason": "scratch"},
                                call_id="call_small"),
                  function_call("refund_order", {"order_id": "ORD-1001", "amount": 150, "reason": "broken"},
                                call_id="call_big")),
            _turn(assistant_message("done")),
        ])
        result = asyncio.run(Runner.run(self._agent(model), "refund", run_config=RunConfig(tracing_disabled=True)))
        [interruption] = result.interruptions
        assert interruption.name == "refund_order"
        assert json.loads(interruption.arguments)["amount"] == 150
        [record] = get_ledger().list_refunds("ORD-1001")
        assert (record.key, record.amount) == ("local:call_small", D("40.00"))

        state = result.to_state()
        state.approve(interruption)
        resumed = asyncio.run(Runner.run(self._agent(model), state, run_config=RunConfig(tracing_disabled=True)))
        assert resumed.final_output == "done"
        assert get_ledger().refunded_total("ORD-1001") == D("190.00")
        outputs = [item for item in model.inputs[-1] if isinstance(item, dict)
                   and item.get("type") == "function_call_output"]
        by_call = {item["call_id"]: json.loads(item["output"]) for item in outputs}
        assert by_call["call_small"]["amount"] == "40.00"
        assert by_call["call_big"]["refunded_total"] == "190.00"
