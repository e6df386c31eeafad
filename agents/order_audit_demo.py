"""The ``order_audit`` workflow's script for the offline demo model (used only when no model is configured).

:func:`order_audit_demo_responder` plays the two agents of ``agents/order_audit.py``, told apart by their
instructions (:data:`REVIEWER_MARKER`, :data:`SUMMARIZER_MARKER`); it returns ``None`` for every other agent's turn.

* reviewer: ``lookup_order(order_id)`` for the order id in its input, then a review as JSON: ``attention`` for an
  order with refunds, a cancelled order or one above 500 in its currency, else ``ok``;
* summarizer: reads the reviews' JSON from its input and answers one paragraph counting them.

The review is the reviewer's structured output, sent as it is with ``DemoReply.output``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from durable_agents import DemoReply, DemoTurn

__all__ = ["REVIEWER_MARKER", "SUMMARIZER_MARKER", "order_audit_demo_responder"]

REVIEWER_MARKER = "You are the order reviewer"
"""Text the reviewer's instructions start with (the demo script and the tests tell the agents apart by it)."""
SUMMARIZER_MARKER = "You are the audit summarizer"
"""Text the summarizer's instructions start with."""

_ORDER_RE = re.compile(r"\bORD-?(\d{1,12})\b", re.IGNORECASE)
_HIGH_VALUE = Decimal(500)


def order_audit_demo_responder(turn: DemoTurn) -> DemoReply | None:
    """The next step of the reviewer's or the summarizer's script, or ``None`` for another agent's turn."""
    instructions = turn.instructions or ""
    if instructions.startswith(REVIEWER_MARKER):
        return _review(turn)
    if instructions.startswith(SUMMARIZER_MARKER):
        return _summarize(turn)
    return None


def _json(text: str | None) -> Any:
    try:
        return json.loads(text or "")
    except ValueError:
        return None


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)


def _review(turn: DemoTurn) -> DemoReply:
    match = _ORDER_RE.search(turn.user_text)
    order_id = f"ORD-{match.group(1)}" if match else ""
    lookup = turn.last_call("lookup_order")
    if lookup is None and order_id and turn.has_tool("lookup_order"):
        return DemoReply.call("lookup_order", {"order_id": order_id})
    order = _json(lookup.output if lookup else None)
    if not isinstance(order, Mapping) or order.get("error"):
        review = {"order_id": order_id, "verdict": "attention",
                  "findings": f"The order could not be looked up: {lookup.output if lookup else 'no order id'}"}
        return DemoReply.output(review)
    currency = str(order.get("currency", ""))
    findings = []
    if _decimal(order.get("refunded_total")) > 0:
        findings.append(f"{order.get('refunded_total')} {currency} already refunded")
    if order.get("status") == "cancelled":
        findings.append("cancelled")
    if _decimal(order.get("total")) > _HIGH_VALUE:
        findings.append(f"high value ({order.get('total')} {currency})")
    verdict = "attention" if findings else "ok"
    status = f"{order.get('status')}, {order.get('total')} {currency}, nothing to flag"
    text = "; ".join(findings) if findings else status
    review = {"order_id": order_id, "verdict": verdict, "findings": f"[demo model] {text}"}
    return DemoReply.output(review)


def _summarize(turn: DemoTurn) -> DemoReply:
    start = turn.user_text.find("{")
    data = _json(turn.user_text[start:]) if start >= 0 else None
    if not isinstance(data, Mapping):
        return DemoReply.final("I could not read the reviews.")
    reviews = [r for r in data.get("reviews") or [] if isinstance(r, Mapping)]
    failed = [f for f in data.get("failedReviews") or [] if isinstance(f, Mapping)]
    flagged = [r for r in reviews if r.get("verdict") == "attention"]
    parts = [f"{len(reviews)} of {len(reviews) + len(failed)} orders of {data.get('customer')} reviewed: "
             f"{len(reviews) - len(flagged)} ok, {len(flagged)} need attention"]
    parts += [f"{r.get('order_id')}: {str(r.get('findings', '')).removeprefix('[demo model] ')}" for r in flagged]
    if failed:
        parts.append("not reviewed: " + ", ".join(str(f.get("orderId")) for f in failed))
    return DemoReply.final(". ".join(parts) + ".")
