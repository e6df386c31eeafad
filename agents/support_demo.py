"""The ``support`` agent's script for the offline demo model (used only when no model is configured).

:func:`support_demo_responder` is a demo responder (``durable_agents.Blueprint(demo_responder=...)``): from the
conversation alone, and calling only the tools the model was given, it plays the support agent of a run that acts
for one customer (the tools find only that customer's orders and write only to that customer):

* a refund ("please refund order ORD-1042, it arrived broken", "refund 25 EUR on ORD-1001"): ``lookup_order`` →
  ``refund_order(order_id, amount, reason)`` with the requested amount or the order's refundable amount / total (a
  decimal string, sent as a JSON number where the tool wants one) → ``send_message(text)`` → a summary quoting
  the tool results (the refund, or the error / rejection text);
* an order id alone: ``lookup_order`` → a summary of the order;
* "my orders" (or an email address): ``list_orders()`` → the customer's list;
* anything else about the store: a short help text with example requests.

It answers only turns that concern the store (one of the support tools is offered, or the message names an order
id or an email) and returns ``None`` otherwise, so other agents get the demo model's generic answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from durable_agents import DemoReply, DemoTurn

__all__ = ["SUPPORT_TOOL_NAMES", "support_demo_responder"]

SUPPORT_TOOL_NAMES = frozenset({"lookup_order", "list_orders", "refund_order", "send_message"})
"""The tools of the ``support`` agent; a turn offering any of them is the script's."""

_ORDER_RE = re.compile(r"\bORD-?(\d{1,12})\b", re.IGNORECASE)
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_AMOUNT_RES = (
    re.compile(r"(?P<cur>[$€£])\s?(?P<num>\d+(?:[.,]\d{1,2})?)"),
    re.compile(r"(?<![\w-])(?P<num>\d+(?:[.,]\d{1,2})?)\s?(?P<cur>EUR|USD|GBP|CHF|SEK|DKK|NOK|CAD|AUD|JPY|euros?|dollars?)\b",
               re.IGNORECASE),
    re.compile(r"(?P<cur>EUR|USD|GBP|CHF|CAD|AUD)\s?(?P<num>\d+(?:[.,]\d{1,2})?)\b", re.IGNORECASE),
)
_REFUND_WORDS = ("refund", "money back", "reimburse", "chargeback")
_LIST_WORDS = ("my orders", "list orders", "list my", "which orders", "what orders", "all orders")
_FAILURE_WORDS = ("reject", "denied", "declin", "expired", "not approved", "timed out", "failed", "error",
                  "not found", "cannot", "can't", "unknown", "invalid", "exceeds", "not allowed", "not refundable")
_REASONS = (
    (("broken", "damaged", "cracked", "defect", "faulty", "shattered"), "item arrived damaged"),
    (("late", "never arrived", "not arrived", "didn't arrive", "lost"), "delivery problem"),
    (("wrong", "incorrect", "not what i ordered"), "wrong item delivered"),
    (("cancel",), "order cancelled by customer"),
)


def support_demo_responder(turn: DemoTurn) -> DemoReply | None:
    """The next step of the support script for ``turn``: a tool call, a final text, or ``None`` (not a store turn).

    Texts are without the ``[demo model]`` label (the demo model adds it). Never raises for odd tool outputs: a
    result that is not the JSON the script expects is quoted in the answer.
    """
    text = turn.user_text
    lowered = text.lower()
    match = _ORDER_RE.search(text)
    order_id = f"ORD-{match.group(1)}" if match else None
    email_match = _EMAIL_RE.search(text)
    wants_list = bool(email_match) or any(word in lowered for word in _LIST_WORDS)
    if not (SUPPORT_TOOL_NAMES & set(turn.tools) or order_id or email_match):
        return None
    wants_refund = any(word in lowered for word in _REFUND_WORDS)

    if order_id and (turn.has_tool("lookup_order") or (wants_refund and turn.has_tool("refund_order"))):
        return _order_flow(turn, order_id, wants_refund)
    if wants_list and turn.has_tool("list_orders"):
        return _list_flow(turn)
    names = ", ".join(sorted(turn.tools)) or "none"
    return DemoReply.final(
        "I am the offline demo model (no model is configured). For the customer this run acts for I can look up "
        "an order (\"Where is ORD-1001?\"), list their orders (\"Which orders do I have?\") and refund an order "
        f"(\"Please refund order ORD-1001, it arrived broken\"). Tools available: {names}. Configure "
        "AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY / OPENAI_BASE_URL for a real model.")


def _list_flow(turn: DemoTurn) -> DemoReply:
    listed = turn.last_call("list_orders")
    if listed is None:
        return DemoReply.call("list_orders", {})
    if listed.output is None:
        return DemoReply.final("Still waiting for the order list.")
    parsed = _parse_json(listed.output)
    if _output_failed(listed.output, parsed):
        return DemoReply.final(f"I could not list your orders: {listed.output}")
    orders = parsed.get("orders") if isinstance(parsed, Mapping) else parsed
    if isinstance(orders, list) and orders:
        lines = []
        for order in orders:
            if isinstance(order, Mapping):
                lines.append(f"{order.get('id')} ({order.get('status')}, {order.get('total')} "
                             f"{order.get('currency', '')})".replace(" )", ")"))
        return DemoReply.final("Your orders: " + "; ".join(lines) + ".")
    if isinstance(orders, list):
        return DemoReply.final("I found no orders for you.")
    return DemoReply.final(f"Your orders: {listed.output}")


def _order_flow(turn: DemoTurn, order_id: str, wants_refund: bool) -> DemoReply:
    text = turn.user_text
    order: Mapping[str, Any] | None = None
    if turn.has_tool("lookup_order"):
        lookup = turn.last_call("lookup_order")
        if lookup is None:
            return DemoReply.call("lookup_order", {"order_id": order_id})
        if lookup.output is None:
            return DemoReply.final(f"Still waiting for the lookup of {order_id}.")
        parsed = _parse_json(lookup.output)
        if _output_failed(lookup.output, parsed) or not isinstance(parsed, Mapping):
            return DemoReply.final(f"I could not look up order {order_id}: {lookup.output}")
        nested = parsed.get("order")
        order = nested if isinstance(nested, Mapping) else parsed
    currency = str(order.get("currency", "")) if order else ""

    if not wants_refund or not turn.has_tool("refund_order"):
        if order is None:
            return DemoReply.final(f"I cannot look up {order_id}: no lookup tool is available.")
        items = order.get("items") or []
        names = ", ".join(str(i.get("name")) for i in items if isinstance(i, Mapping)) or "no items"
        return DemoReply.final(f"Order {order.get('id', order_id)} is {order.get('status', 'unknown')}: total "
                               f"{order.get('total')} {currency} ({names}), placed {order.get('created_at', 'n/a')}.")

    refund = turn.last_call("refund_order")
    if refund is None:
        left = _money(order)
        amount = _requested_amount(text) or left
        if amount is None:
            return DemoReply.final(f"I could not determine an amount to refund for {order_id}; please tell me how "
                                   "much.")
        try:
            nothing_left = left is not None and Decimal(left) <= 0
        except InvalidOperation:
            nothing_left = False
        if nothing_left:
            return DemoReply.final(f"Order {order_id} has nothing left to refund (refunded so far: "
                                   f"{order.get('refunded_total', order.get('total')) if order else 'n/a'} "
                                   f"{currency}).")
        return DemoReply.call("refund_order", {"order_id": order_id, "amount": amount, "reason": _reason(text)})
    if refund.output is None:
        return DemoReply.final(f"The refund for {order_id} is waiting for a decision.")
    amount_value: Any = refund.arguments.get("amount")
    parsed_refund = _parse_json(refund.output)
    failed = _output_failed(refund.output, parsed_refund)
    refund_id = None
    if isinstance(parsed_refund, Mapping):
        refund_id = parsed_refund.get("refund_id") or parsed_refund.get("refundId") or parsed_refund.get("id")
    if isinstance(parsed_refund, Mapping) and isinstance(parsed_refund.get("amount"), str | int | float):
        amount_value = parsed_refund["amount"]
        currency = str(parsed_refund.get("currency") or currency)
    money = f"{amount_value} {currency}".strip()
    if failed:
        summary = f"The refund of {money} for order {order_id} was not made: {refund.output}"
        customer_text = (f"Hello, we could not refund {money} for your order {order_id} at this time. "
                         "Our team will get back to you.")
    else:
        ref = f" (refund {refund_id})" if refund_id else ""
        summary = f"Refunded {money} for order {order_id}{ref}."
        still = parsed_refund.get("refundable_amount") if isinstance(parsed_refund, Mapping) else None
        if still is not None:
            summary += f" Still refundable on this order: {still} {currency}."
        customer_text = (f"Hello, we refunded {money} for your order {order_id}{ref}. "
                         "It will appear on your statement within a few days.")

    if turn.has_tool("send_message"):
        sent = turn.last_call("send_message")
        if sent is None:
            return DemoReply.call("send_message", {"text": customer_text})
        if sent.output is not None and _output_failed(sent.output, _parse_json(sent.output)):
            summary += f" Messaging the customer failed: {sent.output}"
        else:
            summary += " I wrote to the customer."
    return DemoReply.final(summary)


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except (TypeError, ValueError):
        return None


def _output_failed(text: str, parsed: Any) -> bool:
    """True when a tool's output reads as a failure (an error object, a failed status, or failure words)."""
    if isinstance(parsed, Mapping):
        if parsed.get("error") or parsed.get("ok") is False:
            return True
        status = str(parsed.get("status", "")).lower()
        return status in ("rejected", "failed", "error", "denied", "expired")
    if isinstance(parsed, list):
        return False
    lowered = text.lower()
    return any(word in lowered for word in _FAILURE_WORDS)


def _money(order: Mapping[str, Any] | None) -> str | None:
    """What may still be refunded on ``order`` as a decimal string (``refundable_amount``, even ``"0.00"``, else a
    positive ``refundable`` / ``remaining_refundable`` / ``total``), or ``None``."""
    if not isinstance(order, Mapping):
        return None
    if isinstance(order.get("refundable_amount"), str | int | float):
        return str(order["refundable_amount"])  # what the store says may still be refunded, even "0.00"
    for key in ("refundable", "remaining_refundable", "total"):
        value = order.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            try:
                amount = Decimal(str(value))
            except InvalidOperation:
                continue
            if amount > 0:
                return str(value)
    return None


def _requested_amount(text: str) -> str | None:
    """The amount the customer asks for (``25 EUR``, ``$12,5``...) as a two-decimal string, or ``None``."""
    for pattern in _AMOUNT_RES:
        found = pattern.search(text)
        if found:
            try:
                return str(Decimal(found.group("num").replace(",", ".")).quantize(Decimal("0.01")))
            except InvalidOperation:
                continue
    return None


def _reason(text: str) -> str:
    lowered = text.lower()
    for words, reason in _REASONS:
        if any(word in lowered for word in words):
            return reason
    return "customer request"
