"""The ``resolution`` workflow's script for the offline demo model (used only when no model is configured).

:func:`resolution_demo_responder` plays the two agents of ``agents/resolution.py``, told apart by their
instructions (:data:`PLANNER_MARKER`, :data:`EXECUTOR_MARKER`); it returns ``None`` for every other agent's turn.

* planner: ``lookup_order(order_id)`` for the order id in the complaint, then a plan as JSON: a full refund of what
  is still refundable when the complaint asks for one (or names a broken / damaged / missing item), else no refund;
* executor: reads the plan's JSON from its input, ``lookup_order`` → ``refund_order`` (when the plan refunds) →
  ``send_message(text)`` (the plan's message, to the run's customer) → a summary quoting the tool results.

The plan is the planner's structured output, sent as it is with ``DemoReply.output``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from durable_agents import DEMO_PREFIX, DemoReply, DemoTurn

__all__ = ["EXECUTOR_MARKER", "PLANNER_MARKER", "resolution_demo_responder"]

PLANNER_MARKER = "You are the resolution planner"
"""Text the planner's instructions start with (the demo script and the tests tell the agents apart by it)."""
EXECUTOR_MARKER = "You are the resolution executor"
"""Text the executor's instructions start with."""
PLAN_JSON_LABEL = "Plan (JSON):"
"""The line of the executor's input after which the approved plan's JSON follows."""

_ORDER_RE = re.compile(r"\bORD-?(\d{1,12})\b", re.IGNORECASE)
_REFUND_WORDS = ("refund", "money back", "broken", "damaged", "cracked", "defect", "faulty", "missing", "never arrived")


def resolution_demo_responder(turn: DemoTurn) -> DemoReply | None:
    """The next step of the planner's or the executor's script, or ``None`` for another agent's turn."""
    instructions = turn.instructions or ""
    if instructions.startswith(PLANNER_MARKER):
        return _plan(turn)
    if instructions.startswith(EXECUTOR_MARKER):
        return _execute(turn)
    return None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return None


def _plan(turn: DemoTurn) -> DemoReply:
    match = _ORDER_RE.search(turn.user_text)
    if match is None:
        plan = {"order_id": "", "steps": ["Ask the customer for their order id"], "refund_amount": None,
                "customer_message": f"{DEMO_PREFIX} Hello, please tell us your order id so we can help."}
        return DemoReply.output(plan)
    order_id = f"ORD-{match.group(1)}"
    lookup = turn.last_call("lookup_order")
    if lookup is None and turn.has_tool("lookup_order"):
        return DemoReply.call("lookup_order", {"order_id": order_id})
    order = _json(lookup.output if lookup else None)
    order = order if isinstance(order, Mapping) and not order.get("error") else {}
    currency = str(order.get("currency", ""))
    refundable = _decimal(order.get("refundable_amount"))
    wants_refund = any(word in turn.user_text.lower() for word in _REFUND_WORDS)
    if wants_refund and refundable is not None and refundable > 0:
        amount = f"{refundable} {currency}".strip()
        plan = {
            "order_id": order_id,
            "steps": [f"Refund {amount} on {order_id}", "Write to the customer about the refund"],
            "refund_amount": float(refundable),
            "customer_message": f"{DEMO_PREFIX} Hello, we are refunding {amount} for your order {order_id}. "
                                "It will appear on your statement within a few days.",
        }
    else:
        plan = {
            "order_id": order_id,
            "steps": [f"Write to the customer about {order_id}; no refund is due"],
            "refund_amount": None,
            "customer_message": f"{DEMO_PREFIX} Hello, we looked into your order {order_id}; a member of our "
                                "team will follow up with you.",
        }
    return DemoReply.output(plan)


def _execute(turn: DemoTurn) -> DemoReply:
    _, _, plan_text = turn.user_text.partition(PLAN_JSON_LABEL)
    plan = _json(plan_text.strip())
    if not isinstance(plan, Mapping) or not plan.get("order_id"):
        return DemoReply.final("The plan could not be read, so nothing was done.")
    order_id = str(plan["order_id"])
    lookup = turn.last_call("lookup_order")
    if lookup is None:
        return DemoReply.call("lookup_order", {"order_id": order_id})
    order = _json(lookup.output)
    if not isinstance(order, Mapping) or order.get("error"):
        return DemoReply.final(f"I could not look up {order_id}: {lookup.output}")
    done: list[str] = []
    amount = _decimal(plan.get("refund_amount"))
    if amount is not None and amount > 0:
        refund = turn.last_call("refund_order")
        if refund is None:
            return DemoReply.call("refund_order", {"order_id": order_id, "amount": str(amount),
                                                   "reason": "resolution plan approved by a reviewer"})
        result = _json(refund.output)
        if isinstance(result, Mapping) and result.get("status") == "refunded":
            done.append(f"Refunded {result.get('amount')} {result.get('currency')} on {order_id} "
                        f"(refund {result.get('refund_id')}).")
        else:
            done.append(f"The refund on {order_id} was not made: {refund.output}")
    sent = turn.last_call("send_message")
    if sent is None:
        text = str(plan.get("customer_message") or f"Hello, we have an update on your order {order_id}.")
        return DemoReply.call("send_message", {"text": text})
    result = _json(sent.output)
    if isinstance(result, Mapping) and result.get("status") == "sent":
        done.append("Wrote to the customer.")
    else:
        done.append(f"Writing to the customer failed: {sent.output}")
    return DemoReply.final(" ".join(done))


def _decimal(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
