"""The refund ledger and the message outbox of the support tools: SQLite locally, Azure Table Storage in Azure.

One interface, two backends, chosen by settings (docs/internals.md "Settings"; :func:`get_ledger`):

* ``REFUND_LEDGER_TABLE_ENDPOINT`` set → :class:`TableLedger` on that endpoint with ``DefaultAzureCredential``
  (the function app's managed identity; ``AZURE_CLIENT_ID`` selects a user-assigned identity), table
  ``REFUND_LEDGER_TABLE_NAME`` (default ``refunds``). The identity needs "Storage Table Data Contributor".
* else ``REFUND_LEDGER_TABLE_CONNECTION_STRING`` set → :class:`TableLedger` with that connection string (Azurite /
  local development only; production uses no keys).
* otherwise :class:`SqliteLedger` at ``REFUND_LEDGER_PATH`` (default ``.local/refund-ledger.sqlite3`` relative to
  the app folder; parent folders are created; WAL journal; busy timeout 30 s).

Both backends give the same guarantees:

* ``record_refund`` is atomic and idempotent per ``key`` (``"<run_id>:<call_id>"``): the first call that commits
  wins; every later call with the same key, including a concurrent one that lost the race, returns the very same
  :class:`RefundRecord` and refunds nothing. The check "refunded so far + amount <= limit" and the insert are one
  atomic step, so racing refunds of one order can never refund more than its total. With ``approval_limit``
  (what a refund may bring the order's refunded total to without a person's approval) the check "refunded so far
  + amount <= approval_limit" is part of the same step: two runs that each passed their approval check cannot
  together refund more than the threshold unapproved (:class:`RefundNeedsApproval`).
* Amounts are stored as decimal strings and summed as ``Decimal`` (never as floats).
* ``record_message`` (the outbox of ``send_message``) is idempotent per key in the same way.

How each backend makes the check-and-insert atomic:

* SQLite: one ``BEGIN IMMEDIATE`` transaction (the database write lock is taken before reading the balance).
* Table: all rows of an order live in one partition (``PartitionKey = "order|<order id>"``): a balance row
  (``RowKey = "balance"``, refunded total + count) and one row per refund (``RowKey = "refund|<key>"``). A refund is
  one entity-group transaction of two operations: *create* the refund row (fails with 409 when the key was already
  recorded → the stored row is returned) and *create* (first refund) or *replace with If-Match ETag* the balance
  row (fails with 409 / 412 when another refund of the order committed in between → re-read and retry, with
  jittered backoff, up to ``max_attempts`` times). Both succeed or neither does, so there is no window in which a
  refund is recorded but not counted (or the reverse), even if the process dies mid-way.
"""

from __future__ import annotations

import hashlib
import random
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote

from durable_agents import get_setting

from .orders import resolve_app_path

__all__ = [
    "DEFAULT_LEDGER_PATH",
    "DEFAULT_TABLE_NAME",
    "IdempotencyKeyReused",
    "LedgerBusy",
    "LedgerError",
    "MessageOutbox",
    "MessageRecord",
    "RefundExceedsRemaining",
    "RefundLedger",
    "RefundNeedsApproval",
    "RefundRecord",
    "SqliteLedger",
    "TableLedger",
    "LedgerConfig",
    "get_ledger",
    "ledger_config",
    "ledger_from_config",
]

DEFAULT_LEDGER_PATH = ".local/refund-ledger.sqlite3"
DEFAULT_TABLE_NAME = "refunds"


# --------------------------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class RefundRecord:
    """One recorded refund.

    ``key`` is the idempotency key (``"<run_id>:<call_id>"``), ``refund_id`` a stable id derived from it
    (``"RF-" + 12 hex digits``), ``amount`` the refunded ``Decimal`` in ``currency``, ``refunded_total`` the order's
    refunded total right after this refund (so a replayed call reports exactly what the original reported) and
    ``created_at`` the UTC time it was recorded (ISO 8601 with ``Z``).
    """

    key: str
    refund_id: str
    order_id: str
    amount: Decimal
    currency: str
    reason: str
    refunded_total: Decimal
    created_at: str

    def to_json(self) -> dict[str, str]:
        """JSON shape: ``{refund_id, order_id, amount, currency, reason, refunded_total, created_at}``, amounts as
        decimal strings (``"25.00"``)."""
        return {
            "refund_id": self.refund_id,
            "order_id": self.order_id,
            "amount": str(self.amount),
            "currency": self.currency,
            "reason": self.reason,
            "refunded_total": str(self.refunded_total),
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class MessageRecord:
    """One message in the outbox: ``message_id`` (``"MSG-" + 12 hex digits``, derived from ``key``),
    ``customer_email``, ``text`` and ``created_at`` (UTC ISO 8601 with ``Z``)."""

    key: str
    message_id: str
    customer_email: str
    text: str
    created_at: str


# --------------------------------------------------------------------------------------------------- errors


class LedgerError(RuntimeError):
    """Base class of the ledger's errors."""


class RefundExceedsRemaining(LedgerError):
    """The refund would take the order's refunded total above its limit (the order total).

    Attributes: ``order_id``, ``requested`` and ``remaining`` (``Decimal``), ``currency``.
    """

    def __init__(self, order_id: str, requested: Decimal, remaining: Decimal, currency: str) -> None:
        super().__init__(
            f"refund of {requested} {currency} for {order_id} exceeds the refundable amount {remaining} {currency}"
        )
        self.order_id = order_id
        self.requested = requested
        self.remaining = remaining
        self.currency = currency


class RefundNeedsApproval(LedgerError):
    """The refund would take the order's refunded total above ``approval_limit`` (the approval threshold) and it
    was not approved by a person. Attributes: ``order_id``, ``requested``, ``refunded`` (the order's refunded total
    before it), ``approval_limit`` (``Decimal``), ``currency``."""

    def __init__(self, order_id: str, requested: Decimal, refunded: Decimal, approval_limit: Decimal,
                 currency: str) -> None:
        super().__init__(
            f"refund of {requested} {currency} for {order_id} would bring its refunded total from {refunded} to "
            f"{refunded + requested} {currency}, above the approval threshold {approval_limit} {currency}"
        )
        self.order_id = order_id
        self.requested = requested
        self.refunded = refunded
        self.approval_limit = approval_limit
        self.currency = currency


class IdempotencyKeyReused(LedgerError):
    """The key was already recorded for a different order, amount or currency (a caller bug, never a retry)."""


class LedgerBusy(LedgerError):
    """The Table backend lost the optimistic-concurrency race ``max_attempts`` times in a row (retry later)."""


# --------------------------------------------------------------------------------------------------- interfaces


@runtime_checkable
class RefundLedger(Protocol):
    """The refund ledger (see the module docstring for the guarantees)."""

    def record_refund(
        self, key: str, order_id: str, amount: Decimal, currency: str, reason: str, *, limit: Decimal,
        approval_limit: Decimal | None = None,
    ) -> RefundRecord:
        """Record a refund of ``amount`` (> 0) unless ``key`` is already recorded; atomic and idempotent.

        Returns the new record, or the stored one when ``key`` was recorded before (nothing is refunded twice).
        Raises :class:`RefundExceedsRemaining` when refunded-so-far + ``amount`` > ``limit`` (only for a new key),
        then :class:`RefundNeedsApproval` when ``approval_limit`` is given and refunded-so-far + ``amount`` >
        ``approval_limit`` (only for a new key; the caller passes it for refunds no person approved),
        :class:`IdempotencyKeyReused` when ``key`` was recorded with another order / amount / currency,
        ``ValueError`` for ``amount <= 0``, :class:`LedgerBusy` (Table only) under extreme contention.
        """
        ...

    def refunded_total(self, order_id: str) -> Decimal:
        """Sum of the order's recorded refunds (``Decimal("0")`` when none)."""
        ...

    def list_refunds(self, order_id: str) -> list[RefundRecord]:
        """The order's refunds, oldest first."""
        ...


@runtime_checkable
class MessageOutbox(Protocol):
    """The outbox of customer messages (``send_message``); idempotent per key."""

    def record_message(self, key: str, customer_email: str, text: str) -> MessageRecord:
        """Store the message unless ``key`` is already stored; returns the (original) record."""
        ...

    def list_messages(self, customer_email: str) -> list[MessageRecord]:
        """The customer's messages, oldest first."""
        ...


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _derived_id(prefix: str, key: str) -> str:
    return f"{prefix}-{hashlib.sha256(key.encode('utf-8')).hexdigest()[:12].upper()}"


def _check_refund_args(key: str, amount: Decimal) -> None:
    if not key:
        raise ValueError("idempotency key must not be empty")
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValueError(f"refund amount must be a positive finite Decimal, got {amount!r}")


def _check_same(stored: RefundRecord, order_id: str, amount: Decimal, currency: str) -> RefundRecord:
    if stored.order_id != order_id or stored.amount != amount or stored.currency != currency:
        raise IdempotencyKeyReused(
            f"idempotency key {stored.key!r} already recorded a refund of {stored.amount} {stored.currency} "
            f"for {stored.order_id}"
        )
    return stored


def _new_refund(
    key: str, order_id: str, amount: Decimal, currency: str, reason: str, *, refunded: Decimal, limit: Decimal,
    approval_limit: Decimal | None,
) -> RefundRecord:
    """The record of a new refund of ``amount`` on top of ``refunded`` (the order's refunded total so far), or
    :class:`RefundExceedsRemaining` when it would take the total above ``limit``, or :class:`RefundNeedsApproval`
    when it would take it above ``approval_limit`` (when given). Shared by both backends, which call it inside
    their atomic step."""
    if refunded + amount > limit:
        raise RefundExceedsRemaining(order_id, amount, max(limit - refunded, Decimal(0)), currency)
    if approval_limit is not None and refunded + amount > approval_limit:
        raise RefundNeedsApproval(order_id, amount, refunded, approval_limit, currency)
    return RefundRecord(
        key=key,
        refund_id=_derived_id("RF", key),
        order_id=order_id,
        amount=amount,
        currency=currency,
        reason=reason,
        refunded_total=refunded + amount,
        created_at=_utc_now(),
    )


# --------------------------------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS refunds (
    key TEXT PRIMARY KEY,
    refund_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    amount TEXT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT NOT NULL,
    refunded_total TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_by_order ON refunds (order_id);
CREATE TABLE IF NOT EXISTS outbox (
    key TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    customer_email TEXT NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_email ON outbox (customer_email);
"""


class SqliteLedger:
    """:class:`RefundLedger` and :class:`MessageOutbox` in one SQLite file (WAL, one connection per operation, so
    it is safe to share between threads and between processes)."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        """Open (and create, with its parent folders) the database at ``path``."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteLedger({str(self.path)!r})"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        with closing(conn):
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            conn.row_factory = sqlite3.Row
            yield conn

    @contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any exception."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @staticmethod
    def _refund(row: sqlite3.Row) -> RefundRecord:
        return RefundRecord(
            key=row["key"],
            refund_id=row["refund_id"],
            order_id=row["order_id"],
            amount=Decimal(row["amount"]),
            currency=row["currency"],
            reason=row["reason"],
            refunded_total=Decimal(row["refunded_total"]),
            created_at=row["created_at"],
        )

    def record_refund(
        self, key: str, order_id: str, amount: Decimal, currency: str, reason: str, *, limit: Decimal,
        approval_limit: Decimal | None = None,
    ) -> RefundRecord:
        """See :meth:`RefundLedger.record_refund`."""
        _check_refund_args(key, amount)
        with self._immediate() as conn:
            row = conn.execute("SELECT * FROM refunds WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return _check_same(self._refund(row), order_id, amount, currency)
            rows = conn.execute("SELECT amount, currency FROM refunds WHERE order_id = ?", (order_id,)).fetchall()
            if any(r["currency"] != currency for r in rows):
                raise LedgerError(f"{order_id} has refunds in another currency than {currency}")
            refunded = sum((Decimal(r["amount"]) for r in rows), Decimal(0))
            record = _new_refund(key, order_id, amount, currency, reason, refunded=refunded, limit=limit,
                                 approval_limit=approval_limit)
            conn.execute(
                "INSERT INTO refunds (key, refund_id, order_id, amount, currency, reason, refunded_total, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (key, record.refund_id, order_id, str(amount), currency, reason, str(record.refunded_total),
                 record.created_at),
            )
            return record

    def refunded_total(self, order_id: str) -> Decimal:
        """See :meth:`RefundLedger.refunded_total` (summed as ``Decimal`` in Python, not with SQL ``SUM``)."""
        with self._connection() as conn:
            rows = conn.execute("SELECT amount FROM refunds WHERE order_id = ?", (order_id,)).fetchall()
        return sum((Decimal(r["amount"]) for r in rows), Decimal(0))

    def list_refunds(self, order_id: str) -> list[RefundRecord]:
        """See :meth:`RefundLedger.list_refunds`."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT * FROM refunds WHERE order_id = ? ORDER BY created_at, rowid", (order_id,)
            ).fetchall()
        return [self._refund(r) for r in rows]

    def record_message(self, key: str, customer_email: str, text: str) -> MessageRecord:
        """See :meth:`MessageOutbox.record_message`."""
        if not key:
            raise ValueError("idempotency key must not be empty")
        with self._immediate() as conn:
            row = conn.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone()
            if row is None:
                conn.execute(
                    "INSERT INTO outbox (key, message_id, customer_email, text, created_at) VALUES (?, ?, ?, ?, ?)",
                    (key, _derived_id("MSG", key), customer_email, text, _utc_now()),
                )
                row = conn.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone()
        return MessageRecord(row["key"], row["message_id"], row["customer_email"], row["text"], row["created_at"])

    def list_messages(self, customer_email: str) -> list[MessageRecord]:
        """See :meth:`MessageOutbox.list_messages`."""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT * FROM outbox WHERE customer_email = ? ORDER BY created_at, rowid", (customer_email,)
            ).fetchall()
        return [MessageRecord(r["key"], r["message_id"], r["customer_email"], r["text"], r["created_at"])
                for r in rows]


# --------------------------------------------------------------------------------------------------- Azure Table

_BALANCE_ROW = "balance"
_OUTBOX_PARTITION = "outbox"


def _order_partition(order_id: str) -> str:
    return "order|" + quote(order_id, safe="-_.~@:")


def _key_row(prefix: str, key: str) -> str:
    # PartitionKey / RowKey may not contain / \ # ? or control characters: percent-encode everything unusual.
    return prefix + "|" + quote(key, safe="-_.~@:")


class TableLedger:
    """:class:`RefundLedger` and :class:`MessageOutbox` in one Azure Table (see the module docstring for the row
    layout and the concurrency scheme). Thread-safe: ``TableClient`` is safe to share between threads."""

    def __init__(self, table: Any, *, max_attempts: int = 40, create_table: bool = True) -> None:
        """Wrap an ``azure.data.tables.TableClient`` (no I/O here).

        With ``create_table`` the first operation creates the table unless it exists. That is best-effort: when
        the identity may not create tables (HTTP 403) the table must exist already (the infrastructure creates
        it). ``max_attempts`` bounds the optimistic-concurrency retries of one ``record_refund``.
        """
        self._table = table
        self._max_attempts = max_attempts
        self._table_ready = not create_table
        self._table_lock = threading.Lock()

    @property
    def table_client(self) -> Any:
        """The wrapped ``azure.data.tables.TableClient``."""
        return self._table

    def __repr__(self) -> str:
        return f"TableLedger({self._table.account_name!r}, {self._table.table_name!r})"

    @classmethod
    def from_connection_string(cls, connection_string: str, table_name: str = DEFAULT_TABLE_NAME) -> TableLedger:
        """Ledger on the table ``table_name`` of a storage account given by connection string (Azurite)."""
        from azure.data.tables import TableClient

        return cls(TableClient.from_connection_string(connection_string, table_name=table_name))

    @classmethod
    def from_endpoint(
        cls, endpoint: str, table_name: str = DEFAULT_TABLE_NAME, *, managed_identity_client_id: str | None = None
    ) -> TableLedger:
        """Ledger on ``https://<account>.table.core.windows.net`` with ``DefaultAzureCredential`` (no keys)."""
        from azure.data.tables import TableClient
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
        return cls(TableClient(endpoint=endpoint, table_name=table_name, credential=credential))

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        with self._table_lock:
            if self._table_ready:
                return
            try:
                self._table.create_table()
            except ResourceExistsError:
                pass
            except HttpResponseError as exc:
                if exc.status_code != 403:
                    raise
            self._table_ready = True

    def _get(self, partition: str, row: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self._table.get_entity(partition_key=partition, row_key=row)
        except ResourceNotFoundError:
            return None

    @staticmethod
    def _refund(entity: Any) -> RefundRecord:
        return RefundRecord(
            key=entity["Key"],
            refund_id=entity["RefundId"],
            order_id=entity["OrderId"],
            amount=Decimal(entity["Amount"]),
            currency=entity["Currency"],
            reason=entity["Reason"],
            refunded_total=Decimal(entity["RefundedTotal"]),
            created_at=entity["CreatedAt"],
        )

    def _backoff(self, attempt: int) -> None:
        time.sleep(random.uniform(0, min(0.5, 0.01 * 2 ** min(attempt, 6))))

    def record_refund(
        self, key: str, order_id: str, amount: Decimal, currency: str, reason: str, *, limit: Decimal,
        approval_limit: Decimal | None = None,
    ) -> RefundRecord:
        """See :meth:`RefundLedger.record_refund` (one entity-group transaction per attempt)."""
        from azure.core import MatchConditions
        from azure.data.tables import TableTransactionError, UpdateMode

        _check_refund_args(key, amount)
        self._ensure_table()
        partition = _order_partition(order_id)
        refund_row = _key_row("refund", key)
        for attempt in range(self._max_attempts):
            # Balance first, then the refund row: if the balance already counts a refund committed under our
            # key by a racing execution, the refund row read after it shows that refund too (no false refusal).
            balance = self._get(partition, _BALANCE_ROW)
            stored = self._get(partition, refund_row)
            if stored is not None:
                return _check_same(self._refund(stored), order_id, amount, currency)
            refunded = Decimal(balance["RefundedTotal"]) if balance is not None else Decimal(0)
            if balance is not None and balance["Currency"] != currency:
                raise LedgerError(f"{order_id} has refunds in {balance['Currency']}, not {currency}")
            record = _new_refund(key, order_id, amount, currency, reason, refunded=refunded, limit=limit,
                                 approval_limit=approval_limit)
            refund_entity = {
                "PartitionKey": partition,
                "RowKey": refund_row,
                "Kind": "refund",
                "Key": key,
                "RefundId": record.refund_id,
                "OrderId": order_id,
                "Amount": str(amount),
                "Currency": currency,
                "Reason": reason,
                "RefundedTotal": str(record.refunded_total),
                "CreatedAt": record.created_at,
            }
            balance_entity = {
                "PartitionKey": partition,
                "RowKey": _BALANCE_ROW,
                "Kind": "balance",
                "OrderId": order_id,
                "Currency": currency,
                "RefundedTotal": str(record.refunded_total),
                "RefundCount": int(balance["RefundCount"]) + 1 if balance is not None else 1,
                "UpdatedAt": record.created_at,
            }
            if balance is None:
                balance_op: tuple[Any, ...] = ("create", balance_entity)
            else:
                balance_op = (
                    "update",
                    balance_entity,
                    {"mode": UpdateMode.REPLACE, "etag": balance.metadata["etag"],
                     "match_condition": MatchConditions.IfNotModified},
                )
            try:
                self._table.submit_transaction([("create", refund_entity), balance_op])
            except TableTransactionError as exc:
                # 409: the refund row (same key, another execution won) or the first balance row exists;
                # 412: the balance changed since we read it. Either way: re-read and decide again.
                if exc.status_code in (409, 412):
                    self._backoff(attempt)
                    continue
                raise
            return record
        raise LedgerBusy(f"could not record refund {key!r} for {order_id}: {self._max_attempts} conflicts in a row")

    def refunded_total(self, order_id: str) -> Decimal:
        """See :meth:`RefundLedger.refunded_total` (reads the balance row)."""
        self._ensure_table()
        balance = self._get(_order_partition(order_id), _BALANCE_ROW)
        return Decimal(balance["RefundedTotal"]) if balance is not None else Decimal(0)

    def list_refunds(self, order_id: str) -> list[RefundRecord]:
        """See :meth:`RefundLedger.list_refunds`."""
        self._ensure_table()
        entities = self._table.query_entities(
            "PartitionKey eq @pk and Kind eq 'refund'", parameters={"pk": _order_partition(order_id)}
        )
        return sorted((self._refund(e) for e in entities), key=lambda r: (r.created_at, r.key))

    def record_message(self, key: str, customer_email: str, text: str) -> MessageRecord:
        """See :meth:`MessageOutbox.record_message` (``create_entity``; a 409 means already stored)."""
        from azure.core.exceptions import ResourceExistsError

        if not key:
            raise ValueError("idempotency key must not be empty")
        self._ensure_table()
        row = _key_row("message", key)
        entity = {
            "PartitionKey": _OUTBOX_PARTITION,
            "RowKey": row,
            "Kind": "message",
            "Key": key,
            "MessageId": _derived_id("MSG", key),
            "CustomerEmail": customer_email,
            "Text": text,
            "CreatedAt": _utc_now(),
        }
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            entity = self._table.get_entity(partition_key=_OUTBOX_PARTITION, row_key=row)
        return MessageRecord(entity["Key"], entity["MessageId"], entity["CustomerEmail"], entity["Text"],
                             entity["CreatedAt"])

    def list_messages(self, customer_email: str) -> list[MessageRecord]:
        """See :meth:`MessageOutbox.list_messages`."""
        self._ensure_table()
        entities = self._table.query_entities(
            "PartitionKey eq @pk and CustomerEmail eq @email",
            parameters={"pk": _OUTBOX_PARTITION, "email": customer_email},
        )
        records = [MessageRecord(e["Key"], e["MessageId"], e["CustomerEmail"], e["Text"], e["CreatedAt"])
                   for e in entities]
        return sorted(records, key=lambda m: (m.created_at, m.key))


# --------------------------------------------------------------------------------------------------- factory

@dataclass(frozen=True)
class LedgerConfig:
    """Which backend the settings select: ``kind`` is ``"table_endpoint"`` (``location`` = endpoint URL,
    managed identity), ``"table_connection_string"`` (``location`` = connection string) or ``"sqlite"``
    (``location`` = absolute database path); ``table_name`` and ``client_id`` (``AZURE_CLIENT_ID``) apply to
    the Table kinds."""

    kind: str
    location: str
    table_name: str = DEFAULT_TABLE_NAME
    client_id: str | None = None

    def __repr__(self) -> str:  # never print a connection string (it holds an account key)
        location = "<connection string>" if self.kind == "table_connection_string" else self.location
        return f"LedgerConfig(kind={self.kind!r}, location={location!r}, table_name={self.table_name!r})"


def ledger_config() -> LedgerConfig:
    """Read the ledger settings (rules in the module docstring; ``REFUND_LEDGER_TABLE_ENDPOINT`` wins over
    ``REFUND_LEDGER_TABLE_CONNECTION_STRING``, which wins over ``REFUND_LEDGER_PATH``)."""
    table_name = get_setting("REFUND_LEDGER_TABLE_NAME", DEFAULT_TABLE_NAME) or DEFAULT_TABLE_NAME
    endpoint = get_setting("REFUND_LEDGER_TABLE_ENDPOINT")
    if endpoint:
        return LedgerConfig("table_endpoint", endpoint, table_name, get_setting("AZURE_CLIENT_ID"))
    connection_string = get_setting("REFUND_LEDGER_TABLE_CONNECTION_STRING")
    if connection_string:
        return LedgerConfig("table_connection_string", connection_string, table_name)
    path = get_setting("REFUND_LEDGER_PATH", DEFAULT_LEDGER_PATH) or DEFAULT_LEDGER_PATH
    return LedgerConfig("sqlite", str(resolve_app_path(path).resolve()))


def ledger_from_config(config: LedgerConfig) -> SqliteLedger | TableLedger:
    """Build a new ledger for ``config`` (no network I/O; a Table ledger creates its table on first use)."""
    if config.kind == "table_endpoint":
        return TableLedger.from_endpoint(config.location, config.table_name,
                                         managed_identity_client_id=config.client_id)
    if config.kind == "table_connection_string":
        return TableLedger.from_connection_string(config.location, config.table_name)
    return SqliteLedger(config.location)


_ledgers: dict[LedgerConfig, SqliteLedger | TableLedger] = {}
_ledgers_lock = threading.Lock()


def get_ledger() -> SqliteLedger | TableLedger:
    """The ledger (and outbox) chosen by the current settings, created once per process per configuration."""
    config = ledger_config()
    with _ledgers_lock:
        ledger = _ledgers.get(config)
        if ledger is None:
            ledger = _ledgers[config] = ledger_from_config(config)
        return ledger
