"""The support agent's tools as plain functions (``activities/__init__.py`` registers them as activity tools).

Each tool returns a JSON object the model reads. Expected refusals (unknown order, cancelled order, amount above
what is left to refund, malformed input ...) are *returned* as ``{"error": "<message>", "code": "<code>"}``: the
model sees them and can react, and Durable does not retry them (only unexpected exceptions are retried). Money is a
``decimal.Decimal`` inside the tools and a decimal string (``"25.00"``) in every result.

Codes of refusals: ``invalid_order_id``, ``order_not_found``, ``invalid_email``, ``unknown_customer``,
``order_not_refundable``, ``invalid_amount``, ``exceeds_refundable``, ``invalid_reason``, ``invalid_text``.
"""

from __future__ import annotations

import logging
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import WithJsonSchema

from durable_agents import ToolCall, run_setting

from .ledger import IdempotencyKeyReused, RefundExceedsRemaining, get_ledger
from .orders import (
    InvalidAmount,
    Order,
    load_orders,
    minor_unit,
    normalize_email,
    normalize_order_id,
    parse_amount,
    to_decimal,
)

__all__ = [
    "Amount",
    "DEFAULT_REFUND_APPROVAL_THRESHOLD",
    "MAX_MESSAGE_CHARS",
    "MAX_REASON_CHARS",
    "amount_needs_approval",
    "list_orders",
    "lookup_order",
    "refund_needs_approval",
    "refund_order",
    "send_message",
]

logger = logging.getLogger(__name__)

DEFAULT_REFUND_APPROVAL_THRESHOLD = "100"
MAX_REASON_CHARS = 500
MAX_MESSAGE_CHARS = 4000
Amount = Annotated[float | int | str, WithJsonSchema({"type": "number"})]
"""Type of the ``amount`` argument: JSON schema ``number``, but validation keeps what the model sent (an ``int``
stays an ``int``, a quoted ``"25.00"`` stays a string). The SDK asks for approval of every call whose arguments
validation changed (``25`` → ``25.0`` with plain ``float``), whatever ``refund_needs_approval`` says; and malformed
amounts reach ``refund_order``, which refuses them as a tool error instead of failing validation."""

_NOT_REFUNDABLE = {
    "cancelled": "was cancelled; a cancelled order was never charged and cannot be refunded",
    "refunded": "was already refunded in full",
}


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "code": code, **extra}


def _money(value: Decimal, currency: str) -> str:
    return str(value.quantize(Decimal(1).scaleb(-minor_unit(currency))))


def _find_order(order_id: Any) -> tuple[Order | None, dict[str, Any] | None]:
    canonical = normalize_order_id(order_id)
    if canonical is None:
        return None, _error("invalid_order_id", f"{order_id!r} is not an order id; order ids look like ORD-1001")
    order = load_orders().get(canonical)
    if order is None:
        return None, _error("order_not_found", f"No order with id {canonical} exists")
    return order, None


def _refundable(order: Order, refunded: Decimal) -> Decimal:
    if order.status in _NOT_REFUNDABLE:
        return Decimal(0)
    return max(order.total - refunded, Decimal(0))


def lookup_order(order_id: str) -> dict[str, Any]:
    """Look up one order by its id: status, items, total, and how much of it can still be refunded.

    Args:
        order_id: The order id, for example "ORD-1001".

    Returns:
        The order ``{id, customer_email, status, currency, total, items[{sku, name, quantity, unit_price}],
        created_at}`` plus ``refunded_total`` (sum of the refunds in the ledger) and ``refundable_amount`` (what
        may still be refunded; ``"0.00"`` for cancelled or refunded orders), all amounts decimal strings; or
        ``{"error", "code"}`` with code ``invalid_order_id`` / ``order_not_found``.
    """
    order, error = _find_order(order_id)
    if error is not None:
        return error
    assert order is not None
    refunded = get_ledger().refunded_total(order.id)
    return {
        **order.raw,
        "refunded_total": _money(refunded, order.currency),
        "refundable_amount": _money(_refundable(order, refunded), order.currency),
    }


def list_orders(customer_email: str) -> dict[str, Any]:
    """List a customer's orders, newest first.

    Args:
        customer_email: The customer's email address.

    Returns:
        ``{"customer_email", "count", "orders": [{id, status, currency, total, created_at, item_count, items}]}``
        (``items`` holds product names; an unknown customer has ``count`` 0), or ``{"error", "code"}`` with code
        ``invalid_email`` when the text is not an email address.
    """
    email = normalize_email(customer_email)
    if email is None:
        return _error("invalid_email", f"{customer_email!r} is not a valid email address")
    orders = [order.summary() for order in load_orders().for_customer(email)]
    return {"customer_email": email, "count": len(orders), "orders": orders}


def refund_order(order_id: str, amount: Amount, reason: str, tool_call: ToolCall) -> dict[str, Any]:
    """Refund part or all of an order to the customer's original payment method.

    The amount is in the order's currency and may not exceed the order's refundable amount (see lookup_order).
    Cancelled and fully refunded orders cannot be refunded. Larger refunds may wait for a person's approval.

    Args:
        order_id: The order id, for example "ORD-1001".
        amount: The amount to refund in the order's currency, for example 25.5.
        reason: Why the customer gets this refund, in a short sentence.

    Returns:
        ``{"status": "refunded", refund_id, order_id, amount, currency, reason, refunded_total,
        refundable_amount, created_at}`` (amounts decimal strings; ``refunded_total`` / ``refundable_amount`` as
        right after this refund), or ``{"error", "code"}`` (codes in the module docstring). Idempotent per
        ``tool_call`` (key ``"<run_id>:<call_id>"``): a retried or re-delivered activity returns the original
        result and refunds nothing more. Ledger / storage failures raise (Durable retries the activity).
    """
    order, error = _find_order(order_id)
    if error is not None:
        return error
    assert order is not None
    if order.status in _NOT_REFUNDABLE:
        return _error("order_not_refundable", f"Order {order.id} {_NOT_REFUNDABLE[order.status]}")
    try:
        value = parse_amount(amount, order.currency)
    except InvalidAmount as exc:
        return _error("invalid_amount", f"Invalid refund amount: {exc}")
    if not isinstance(reason, str) or not reason.strip():
        return _error("invalid_reason", "A refund needs a reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON_CHARS:
        return _error("invalid_reason", f"The reason is longer than {MAX_REASON_CHARS} characters")
    key = f"{tool_call.run_id}:{tool_call.call_id}"
    try:
        record = get_ledger().record_refund(key, order.id, value, order.currency, reason, limit=order.total)
    except RefundExceedsRemaining as exc:
        remaining = _money(exc.remaining, order.currency)
        if exc.remaining <= 0:
            return _error("order_not_refundable", f"Order {order.id} was already refunded in full",
                          refundable_amount=remaining)
        return _error(
            "exceeds_refundable",
            f"Cannot refund {_money(value, order.currency)} {order.currency} for {order.id}: only {remaining} "
            f"{order.currency} of the {_money(order.total, order.currency)} {order.currency} total is left to refund",
            refundable_amount=remaining,
        )
    except IdempotencyKeyReused as exc:
        # Same run + call id, different arguments: never refund again; tell the model what happened.
        logger.error("refund_order: %s", exc)
        return _error("duplicate_call", str(exc))
    return {
        "status": "refunded",
        **record.to_json(),
        "amount": _money(record.amount, record.currency),
        "refunded_total": _money(record.refunded_total, record.currency),
        "refundable_amount": _money(max(order.total - record.refunded_total, Decimal(0)), record.currency),
    }


def send_message(customer_email: str, text: str, tool_call: ToolCall) -> dict[str, Any]:
    """Send an email message to a customer of the store.

    Args:
        customer_email: The customer's email address (must be a customer with orders).
        text: The message body, plain text.

    Returns:
        ``{"status": "sent", "message_id", "customer_email", "created_at"}``, or ``{"error", "code"}`` with code
        ``invalid_email`` / ``unknown_customer`` / ``invalid_text``. The message goes to the outbox of the ledger
        store; idempotent per ``tool_call`` (a retried activity returns the original ``message_id``).
    """
    email = normalize_email(customer_email)
    if email is None:
        return _error("invalid_email", f"{customer_email!r} is not a valid email address")
    if not load_orders().has_customer(email):
        return _error("unknown_customer", f"No customer with email {email}; messages go to customers only")
    if not isinstance(text, str) or not text.strip():
        return _error("invalid_text", "The message text is empty")
    if len(text) > MAX_MESSAGE_CHARS:
        return _error("invalid_text", f"The message is longer than {MAX_MESSAGE_CHARS} characters")
    record = get_ledger().record_message(f"{tool_call.run_id}:{tool_call.call_id}", email, text.strip())
    return {
        "status": "sent",
        "message_id": record.message_id,
        "customer_email": record.customer_email,
        "created_at": record.created_at,
    }


def amount_needs_approval(amount: Any, threshold: Any) -> bool:
    """Whether a refund of ``amount`` needs a person's approval: ``Decimal(amount) > Decimal(threshold)``.

    ``amount`` is the model's raw argument (JSON number or string), read exactly as ``refund_order`` reads it
    (:func:`activities.orders.to_decimal`). Amounts that are not positive finite numbers need no approval
    (``refund_order`` refuses them anyway). A threshold that is not a finite number fails closed: every refund
    then needs approval. Rule: docs/internals.md settings table, ``REFUND_APPROVAL_THRESHOLD``.
    """
    try:
        limit = Decimal(str(threshold).strip())
        if not limit.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        logger.warning("REFUND_APPROVAL_THRESHOLD %r is not a number: every refund needs approval", threshold)
        limit = Decimal(0)
    try:
        value = to_decimal(amount)
    except InvalidAmount:
        return False
    if value <= 0:
        return False
    return value > limit


def refund_needs_approval(run_context: Any, arguments: dict[str, Any], call_id: str) -> bool:
    """``needs_approval`` callable of ``refund_order`` (SDK signature ``(run_context, arguments, call_id)``).

    Compares ``arguments["amount"]`` with the run's ``REFUND_APPROVAL_THRESHOLD`` setting (default ``"100"``, in
    the order's currency) read with ``durable_agents.run_setting`` (the run's settings snapshot inside an
    orchestration, so replay is deterministic; the environment outside one). See :func:`amount_needs_approval`.
    Runs in the orchestrator: no I/O.
    """
    threshold = run_setting("REFUND_APPROVAL_THRESHOLD", DEFAULT_REFUND_APPROVAL_THRESHOLD)
    return amount_needs_approval((arguments or {}).get("amount"), threshold)
