"""The support agent's tools as plain functions (``activities/__init__.py`` registers them as activity tools).

Every tool acts for the one customer of the run (``ToolCall.customer``: the normalized email the run was started
for, docs/internals.md "ToolCall injection"), never for a customer the model names:

* ``lookup_order`` / ``refund_order`` answer an order of another customer exactly as an unknown order
  (``order_not_found``, same text), so a run cannot find out which order ids exist;
* ``list_orders`` lists the run's customer's orders and ``send_message`` writes to the run's customer; neither
  takes an email argument;
* a run that acts for no customer (``customer`` ``None``) gets ``no_customer`` from all four.

Each tool returns a JSON object the model reads, with only the fields the model needs (no customer email, no SKUs).
Expected refusals are *returned* as ``{"error": "<message>", "code": "<code>"}``: the model sees them and can
react, and Durable does not retry them (only unexpected exceptions are retried). Money is a ``decimal.Decimal``
inside the tools and a decimal string (``"25.00"``) in every result.

Codes of refusals: ``no_customer``, ``invalid_order_id``, ``order_not_found``, ``unknown_customer``,
``order_not_refundable``, ``invalid_amount``, ``exceeds_refundable``, ``approval_required``, ``invalid_reason``,
``invalid_text``, ``link_not_allowed``, ``duplicate_call``.

Refund approval: :func:`refund_needs_approval` is the ``approval_check`` activity of ``refund_order`` (it reads
the ledger); ``refund_order`` itself passes the ledger an ``approval_limit`` for calls no person approved, so two
runs that both passed their check still cannot refund more than the threshold unapproved.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import WithJsonSchema

from durable_agents import ApprovalCheck, ToolCall, get_setting, run_setting

from .ledger import IdempotencyKeyReused, RefundExceedsRemaining, RefundNeedsApproval, get_ledger
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
    "approval_threshold",
    "disallowed_link",
    "link_hosts",
    "list_orders",
    "lookup_order",
    "refund_needs_approval",
    "refund_needs_approval_v1",
    "refund_order",
    "send_message",
]

logger = logging.getLogger(__name__)

DEFAULT_REFUND_APPROVAL_THRESHOLD = "100"
MAX_REASON_CHARS = 500
MAX_MESSAGE_CHARS = 4000
Amount = Annotated[Any, WithJsonSchema({"type": "number"})]
"""Type of the ``amount`` argument: JSON schema ``number``, but validation keeps exactly what the model sent (no
coercion: ``true`` stays ``True``, an ``int`` stays an ``int``, a quoted ``"25.00"`` stays a string). The SDK asks
for approval of every call whose arguments validation changed, whatever the approval check says, and a lax type
would turn ``true`` into ``1``; so ``refund_order`` and the approval check read the raw value with
:func:`activities.orders.parse_amount` and refuse booleans, ``null``, NaN, infinities (``1e400``) and text that is
no number as ``invalid_amount``."""

_NOT_REFUNDABLE = {
    "cancelled": "was cancelled; a cancelled order was never charged and cannot be refunded",
    "refunded": "was already refunded in full",
}

_NO_CUSTOMER = ("This run acts for no customer, so it cannot look up, list, refund or message anything; the run "
                "must be started for a customer")


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "code": code, **extra}


def _money(value: Decimal, currency: str) -> str:
    return str(value.quantize(Decimal(1).scaleb(-minor_unit(currency))))


def _customer(tool_call: ToolCall | None) -> str | None:
    """The run's customer (normalized email), or ``None`` when the run acts for nobody."""
    return normalize_email(getattr(tool_call, "customer", None))


def _find_order(order_id: Any, customer: str) -> tuple[Order | None, dict[str, Any] | None]:
    """The order ``order_id`` if it is ``customer``'s; an unknown order and another customer's order get the very
    same refusal (``order_not_found``), so the answer says nothing about orders of other customers."""
    canonical = normalize_order_id(order_id)
    if canonical is None:
        return None, _error("invalid_order_id", f"{order_id!r} is not an order id; order ids look like ORD-1001")
    order = load_orders().get(canonical)
    if order is None or order.customer_email != customer:
        return None, _error("order_not_found", f"No order {canonical} was found for this customer")
    return order, None


def _refundable(order: Order, refunded: Decimal) -> Decimal:
    if order.status in _NOT_REFUNDABLE:
        return Decimal(0)
    return max(order.total - refunded, Decimal(0))


def _bad_text(text: str) -> str | None:
    """Why ``text`` cannot be stored (a lone UTF-16 surrogate such as ``"\\ud800"``, or NUL), or ``None``."""
    if any("\ud800" <= char <= "\udfff" for char in text):
        return "contains an invalid character (a lone surrogate)"
    if "\x00" in text:
        return "contains a NUL character"
    return None


# --------------------------------------------------------------------------------------------------- links

_SCHEME_URL = re.compile(r"(?<![\w+.-])[a-z][a-z0-9+.-]{0,30}://[^\s<>\"'()\[\]{}]*", re.IGNORECASE)
_LABEL = r"[^\W_](?:[\w-]{0,61}[^\W_])?"
_BARE_HOST = re.compile(rf"(?<![\w.-])(?:{_LABEL}\.)+(?:[^\W\d_]{{2,63}}|xn--[a-z0-9-]{{1,59}})(?![\w-]|@)",
                        re.IGNORECASE)
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]\w)")
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def link_hosts() -> frozenset[str]:
    """The hosts links in customer messages may point to: the setting ``STORE_LINK_HOSTS`` (comma-separated host
    names, compared lower-case and exactly: list ``www.`` variants too), read with ``durable_agents.get_setting``
    (the activity's environment). Unset or blank: no host, so no link is allowed."""
    value = get_setting("STORE_LINK_HOSTS") or ""
    return frozenset(host.strip().lower().rstrip(".") for host in value.split(",") if host.strip())


def _links(text: str) -> Iterable[tuple[str, str | None]]:
    """``(link text, host or None)`` of every link-looking part of ``text``: ``scheme://...`` URLs (host from
    ``urllib.parse.urlsplit``; ``None`` when it has none), ``www.``/bare domains such as ``evil.example`` (also the
    domain of an email address), and IPv4 addresses. Checked after NFKC normalization with full-width and
    ideographic full stops read as dots, so look-alike spellings are found too."""
    normalized = unicodedata.normalize("NFKC", text).translate(_DOTS)
    for match in _SCHEME_URL.finditer(normalized):
        try:
            host = urlsplit(match.group(0)).hostname
        except ValueError:
            host = None
        yield match.group(0), host.lower().rstrip(".") if host else None
    for pattern in (_BARE_HOST, _IPV4):
        for match in pattern.finditer(normalized):
            yield match.group(0), match.group(0).lower().rstrip(".")


def disallowed_link(text: str, allowed: frozenset[str]) -> str | None:
    """The first link in ``text`` (see :func:`_links`) whose host is not in ``allowed``, or ``None``."""
    for link, host in _links(text):
        if host is None or host not in allowed:
            return link
    return None


# --------------------------------------------------------------------------------------------------- approval


def approval_threshold(value: Any) -> Decimal:
    """The approval threshold ``REFUND_APPROVAL_THRESHOLD`` as a ``Decimal`` (in the order's currency). A value that
    is not a finite number fails closed: ``Decimal(0)``, so every refund needs approval (logged as a warning)."""
    try:
        limit = Decimal(str(value).strip())
        if not limit.is_finite():
            raise InvalidOperation
    except (InvalidOperation, ValueError):
        logger.warning("REFUND_APPROVAL_THRESHOLD %r is not a number: every refund needs approval", value)
        return Decimal(0)
    return limit


def amount_needs_approval(amount: Any, threshold: Any, *, refunded: Decimal = Decimal(0)) -> bool:
    """Whether a refund of ``amount`` needs a person's approval: ``refunded + Decimal(amount) > threshold``.

    ``amount`` is the model's raw argument (JSON number or string), read exactly as ``refund_order`` reads it
    (:func:`activities.orders.to_decimal`); ``refunded`` is what already counts against the threshold on the same
    order (default 0). Amounts that are not positive finite numbers need no approval (``refund_order`` refuses
    them anyway). A threshold that is not a finite number fails closed (:func:`approval_threshold`). Rule:
    docs/internals.md settings table, ``REFUND_APPROVAL_THRESHOLD``.
    """
    limit = approval_threshold(threshold)
    try:
        value = to_decimal(amount)
    except InvalidAmount:
        return False
    if value <= 0:
        return False
    return refunded + value > limit


def refund_needs_approval(check: ApprovalCheck) -> bool:
    """The approval check of ``refund_order`` (an ``approval_check`` activity: it reads the ledger).

    A refund needs approval iff *refunded on the order (ledger)* + *this run's earlier ``refund_order`` calls on
    the same order that are not in the ledger* (``check.earlier``: waiting for approval, running in the same turn,
    or rejected / refused; they all count, erring toward asking a person) + *this amount* > the run's
    ``REFUND_APPROVAL_THRESHOLD`` (``check.setting``, default ``"100"``, in the order's currency): so splitting a
    refund into small ones, in one turn, over several turns or over several runs, does not get around the
    threshold. Calls the tool refuses anyway (no customer, not the customer's order, not refundable, invalid
    amount) need no approval. A ledger failure raises: after the activity's retries the call needs approval.
    """
    arguments = check.arguments or {}
    threshold = check.setting("REFUND_APPROVAL_THRESHOLD", DEFAULT_REFUND_APPROVAL_THRESHOLD)
    customer = _customer(check.call)
    if customer is None:
        return False
    order, error = _find_order(arguments.get("order_id"), customer)
    if error is not None or order is None or order.status in _NOT_REFUNDABLE:
        return False
    try:
        parse_amount(arguments.get("amount"), order.currency)
    except InvalidAmount:
        return False
    records = get_ledger().list_refunds(order.id)
    recorded = {record.key for record in records}
    counted = sum((record.amount for record in records), Decimal(0))
    for call_id, earlier in check.earlier:
        if (normalize_order_id((earlier or {}).get("order_id")) != order.id
                or f"{check.call.run_id}:{call_id}" in recorded):
            continue
        try:
            counted += parse_amount(earlier.get("amount"), order.currency)
        except InvalidAmount:
            continue
    return amount_needs_approval(arguments.get("amount"), threshold, refunded=counted)


async def refund_needs_approval_v1(run_context: Any, arguments: dict[str, Any], call_id: str) -> bool:
    """The rule of runs started before activity-backed checks (run input without ``version`` 2): this amount alone
    against the run's ``REFUND_APPROVAL_THRESHOLD`` (:func:`amount_needs_approval`), in the orchestrator, no I/O.
    Kept only so that such runs replay as recorded (``approval_check(..., legacy=...)``); their unapproved refunds
    are still held to the threshold by the ledger's ``approval_limit`` in ``refund_order``."""
    threshold = run_setting("REFUND_APPROVAL_THRESHOLD", DEFAULT_REFUND_APPROVAL_THRESHOLD)
    return amount_needs_approval((arguments or {}).get("amount"), threshold)


# --------------------------------------------------------------------------------------------------- tools


def lookup_order(order_id: str, tool_call: ToolCall) -> dict[str, Any]:
    """Look up one of the customer's orders: status, items, total, and how much can still be refunded.

    Returns {id, status, currency, total, created_at, items: [{name, quantity, unit_price}], refunded_total,
    refundable_amount} (amounts are decimal strings; refundable_amount is "0.00" for cancelled or refunded
    orders), or {error, code} with code no_customer, invalid_order_id or order_not_found.

    Args:
        order_id: The order id, for example "ORD-1001".
    """
    customer = _customer(tool_call)
    if customer is None:
        return _error("no_customer", _NO_CUSTOMER)
    order, error = _find_order(order_id, customer)
    if error is not None:
        return error
    assert order is not None
    refunded = get_ledger().refunded_total(order.id)
    return {
        "id": order.id,
        "status": order.status,
        "currency": order.currency,
        "total": order.raw["total"],
        "created_at": order.created_at,
        "items": [{"name": str(item.get("name", "")), "quantity": item.get("quantity"),
                   "unit_price": item.get("unit_price")} for item in order.raw.get("items") or []],
        "refunded_total": _money(refunded, order.currency),
        "refundable_amount": _money(_refundable(order, refunded), order.currency),
    }


def list_orders(tool_call: ToolCall) -> dict[str, Any]:
    """List the customer's orders, newest first.

    Returns {count, orders: [{id, status, currency, total, created_at, items}]} (items: product names), or
    {error, code} with code no_customer.
    """
    customer = _customer(tool_call)
    if customer is None:
        return _error("no_customer", _NO_CUSTOMER)
    orders = [order.summary() for order in load_orders().for_customer(customer)]
    return {"count": len(orders), "orders": orders}


def refund_order(order_id: str, amount: Amount, reason: str, tool_call: ToolCall) -> dict[str, Any]:
    """Refund part or all of one of the customer's orders to the original payment method.

    At most the order's refundable_amount (see lookup_order), in the order's currency. A refund that brings the
    order's refunds above a limit waits for a person's approval.

    Returns {status: "refunded", refund_id, order_id, amount, currency, refunded_total, refundable_amount}
    (decimal strings, as right after this refund), or {error, code} with code no_customer, invalid_order_id,
    order_not_found, order_not_refundable, invalid_amount, invalid_reason, exceeds_refundable (with
    refundable_amount) or approval_required.

    Args:
        order_id: The order id, for example "ORD-1001".
        amount: The amount to refund in the order's currency, for example 25.5.
        reason: Why the customer gets this refund, in a short sentence.
    """
    customer = _customer(tool_call)
    if customer is None:
        return _error("no_customer", _NO_CUSTOMER)
    order, error = _find_order(order_id, customer)
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
    bad = _bad_text(reason)
    if bad is not None:
        return _error("invalid_reason", f"The reason {bad}")
    # Defense in depth: a call no person approved may not bring the order's refunds above the threshold, checked
    # atomically with the insert (two runs that each passed their approval check race here).
    approval_limit = None if tool_call.approved else approval_threshold(
        get_setting("REFUND_APPROVAL_THRESHOLD", DEFAULT_REFUND_APPROVAL_THRESHOLD))
    key = f"{tool_call.run_id}:{tool_call.call_id}"
    try:
        record = get_ledger().record_refund(key, order.id, value, order.currency, reason, limit=order.total,
                                            approval_limit=approval_limit)
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
    except RefundNeedsApproval:
        return _error(
            "approval_required",
            f"Nothing was refunded: refunding {_money(value, order.currency)} {order.currency} on {order.id} needs "
            "a person's approval, because it would bring the refunds on this order above what may be refunded "
            "without approval. Call refund_order again only if the customer still wants this refund; that call "
            "will wait for a person's approval.",
        )
    except IdempotencyKeyReused as exc:
        # Same run + call id, different arguments: never refund again; tell the model what happened.
        logger.error("refund_order: %s", exc)
        return _error("duplicate_call", str(exc))
    return {
        "status": "refunded",
        "refund_id": record.refund_id,
        "order_id": record.order_id,
        "amount": _money(record.amount, record.currency),
        "currency": record.currency,
        "refunded_total": _money(record.refunded_total, record.currency),
        "refundable_amount": _money(max(order.total - record.refunded_total, Decimal(0)), record.currency),
    }


def send_message(text: str, tool_call: ToolCall) -> dict[str, Any]:
    """Send the customer an email message: plain text, no links or web addresses.

    Returns {status: "sent", message_id}, or {error, code} with code no_customer, unknown_customer (the customer
    has no orders), invalid_text or link_not_allowed (write the message without the link).

    Args:
        text: The message body, plain text.
    """
    customer = _customer(tool_call)
    if customer is None:
        return _error("no_customer", _NO_CUSTOMER)
    if not load_orders().has_customer(customer):
        return _error("unknown_customer", "The customer has no orders with the store; messages go to customers only")
    if not isinstance(text, str) or not text.strip():
        return _error("invalid_text", "The message text is empty")
    text = text.strip()
    if len(text) > MAX_MESSAGE_CHARS:
        return _error("invalid_text", f"The message is longer than {MAX_MESSAGE_CHARS} characters")
    bad = _bad_text(text)
    if bad is not None:
        return _error("invalid_text", f"The message {bad}")
    link = disallowed_link(text, link_hosts())
    if link is not None:
        return _error("link_not_allowed", f"Messages may not contain links or web addresses the store does not "
                                          f"allow; found {link!r}. Write the message without it.")
    record = get_ledger().record_message(f"{tool_call.run_id}:{tool_call.call_id}", customer, text)
    return {"status": "sent", "message_id": record.message_id}
