"""The store's order dataset (``data/orders.json``) and the money rules of the support tools.

The dataset is a JSON list of orders ``{id, customer_email, status, currency, total, items[], created_at}``; totals
and unit prices are JSON strings holding decimals (``"249.90"``) so that no float ever touches money. It is read
once per process (per resolved path) and indexed by order id and by customer email.

Settings (read with :func:`durable_agents.get_setting`, docs/internals.md "Settings"):
``ORDERS_DATA_PATH`` (default ``data/orders.json``, relative to the app folder, the folder holding
``function_app.py``).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from durable_agents import get_setting

__all__ = [
    "APP_DIR",
    "ORDER_STATUSES",
    "InvalidAmount",
    "Order",
    "OrderBook",
    "load_orders",
    "minor_unit",
    "normalize_email",
    "normalize_order_id",
    "parse_amount",
    "resolve_app_path",
    "to_decimal",
]

APP_DIR = Path(__file__).resolve().parent.parent
"""The app folder: the folder holding ``function_app.py`` (relative setting paths are resolved against it)."""

ORDER_STATUSES = ("paid", "shipped", "delivered", "cancelled", "refunded")

# ISO 4217 minor units of the currencies the store sells in (and a few common ones); others default to 2.
_MINOR_UNITS = {"USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "SEK": 2, "DKK": 2, "NOK": 2, "CAD": 2, "AUD": 2,
                "JPY": 0, "KRW": 0}

_ORDER_ID = re.compile(r"^ORD-\d{1,12}$")
# Deliberately simple: one "@", no blanks, a dot in the domain. The tools only compare against known customers.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]{2,}$")


def resolve_app_path(value: str) -> Path:
    """Return ``value`` as a path; a relative path is taken relative to :data:`APP_DIR`."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else APP_DIR / path


def minor_unit(currency: str) -> int:
    """Number of decimal places of ``currency`` (ISO 4217 minor unit; 2 for currencies not in the table)."""
    return _MINOR_UNITS.get(currency.upper(), 2)


class InvalidAmount(ValueError):
    """An amount that is not a positive, finite decimal with at most the currency's minor-unit digits."""


def to_decimal(value: Any) -> Decimal:
    """Convert a JSON number or a plain decimal string to a finite ``Decimal`` via ``Decimal(str(value))``.

    Raises :class:`InvalidAmount` for booleans, ``None``, other types, text that is not a decimal number, NaN and
    infinities. Shared by :func:`parse_amount` and the approval rule so both read an amount the same way.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidAmount(f"amount must be a number, got {value!r}")
    if isinstance(value, (int, float, Decimal)):
        text = str(value)
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise InvalidAmount(f"amount must be a number, got {type(value).__name__}")
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidAmount(f"amount {value!r} is not a number") from None
    if not amount.is_finite():
        raise InvalidAmount(f"amount must be a finite number, got {value!r}")
    return amount


def parse_amount(value: Any, currency: str) -> Decimal:
    """Parse a money amount from a JSON number or a decimal string into a ``Decimal`` of ``currency``.

    The value goes through :func:`to_decimal` (``Decimal(str(value))``, never float arithmetic; ``str`` of a float
    is its shortest round-trip text, so ``19.99`` becomes ``Decimal("19.99")``) and is quantized to the currency's
    minor unit (``"25"`` → ``Decimal("25.00")`` in USD). Raises :class:`InvalidAmount` for what
    :func:`to_decimal` refuses, absurdly large values (>= 10**15), values with more decimals than the currency has
    (``"10.005"`` in EUR: refused, never rounded silently) and values ``<= 0``.
    """
    amount = to_decimal(value)
    text = str(value).strip()
    if amount.adjusted() >= 15:
        raise InvalidAmount(f"amount {text} is too large")
    places = minor_unit(currency)
    quantized = amount.quantize(Decimal(1).scaleb(-places))
    if quantized != amount:
        raise InvalidAmount(f"amount {text} has more than {places} decimal places for {currency.upper()}")
    if quantized <= 0:
        raise InvalidAmount(f"amount must be greater than 0, got {text}")
    return quantized


def normalize_order_id(value: Any) -> str | None:
    """Return the canonical order id (``"ord-1001 "`` → ``"ORD-1001"``), or ``None`` when it cannot be one."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    if text.isdigit():
        text = f"ORD-{text}"
    return text if _ORDER_ID.match(text) else None


def normalize_email(value: Any) -> str | None:
    """Return the email lower-cased and stripped, or ``None`` when it does not look like an email address."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    return text if len(text) <= 254 and _EMAIL.match(text) else None


@dataclass(frozen=True)
class Order:
    """One order of the dataset. ``total`` is a ``Decimal`` in ``currency``; ``raw`` is the JSON object as loaded."""

    id: str
    customer_email: str
    status: str
    currency: str
    total: Decimal
    created_at: str
    raw: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """Summary fields for listings: ``{id, status, currency, total, created_at, items}`` (``items``: the
        product names; no customer email, no SKUs)."""
        items = self.raw.get("items") or []
        return {
            "id": self.id,
            "status": self.status,
            "currency": self.currency,
            "total": self.raw["total"],
            "created_at": self.created_at,
            "items": [str(item.get("name", "")) for item in items],
        }


class OrderBook:
    """The loaded dataset: orders indexed by id and by customer email (read-only, thread-safe)."""

    def __init__(self, orders: list[Order]) -> None:
        self._by_id = {order.id: order for order in orders}
        if len(self._by_id) != len(orders):
            raise ValueError("orders dataset has duplicate order ids")
        self._by_email: dict[str, list[Order]] = {}
        for order in sorted(orders, key=lambda o: (o.created_at, o.id), reverse=True):
            self._by_email.setdefault(order.customer_email, []).append(order)

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, order_id: str) -> Order | None:
        """The order with this canonical id, or ``None``."""
        return self._by_id.get(order_id)

    def for_customer(self, email: str) -> list[Order]:
        """The customer's orders, newest first (``email`` already normalized)."""
        return list(self._by_email.get(email, ()))

    def has_customer(self, email: str) -> bool:
        """Whether any order belongs to ``email`` (already normalized)."""
        return email in self._by_email


def _parse_orders(data: Any, source: Path) -> list[Order]:
    if not isinstance(data, list):
        raise ValueError(f"{source}: expected a JSON list of orders")
    orders = []
    for index, raw in enumerate(data):
        try:
            order_id = normalize_order_id(raw["id"])
            email = normalize_email(raw["customer_email"])
            status = str(raw["status"])
            currency = str(raw["currency"]).upper()
            total = Decimal(str(raw["total"]))
            created_at = str(raw["created_at"])
        except (KeyError, TypeError, InvalidOperation) as exc:
            raise ValueError(f"{source}: order #{index} is malformed: {exc!r}") from None
        if order_id is None or email is None or status not in ORDER_STATUSES or not isinstance(raw["total"], str):
            raise ValueError(f"{source}: order #{index} has a bad id, email, status or total: {raw!r}")
        orders.append(Order(order_id, email, status, currency, total, created_at, raw))
    return orders


_cache: dict[Path, OrderBook] = {}
_cache_lock = threading.Lock()


def load_orders(path: str | Path | None = None) -> OrderBook:
    """Return the :class:`OrderBook` of ``path`` (default: the ``ORDERS_DATA_PATH`` setting), loaded once per process.

    Raises ``FileNotFoundError`` when the file is missing and ``ValueError`` when it is not a valid dataset.
    """
    if path is None:
        path = get_setting("ORDERS_DATA_PATH", "data/orders.json") or "data/orders.json"
    resolved = resolve_app_path(str(path)).resolve()
    with _cache_lock:
        book = _cache.get(resolved)
        if book is None:
            with resolved.open(encoding="utf-8") as handle:
                book = OrderBook(_parse_orders(json.load(handle), resolved))
            _cache[resolved] = book
        return book
