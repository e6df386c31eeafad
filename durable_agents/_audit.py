"""The approval audit trail: an append-only store of approval events, outside orchestration state (internal; the
public names are re-exported by ``durable_agents``).

The custom status keeps only the last decisions of a run and a purge erases it (docs/internals.md "Custom
status"); this store keeps every approval event of every run, beside the app's refund ledger. Three events
(:data:`AUDIT_EVENTS`) per approval:

* ``requested`` - the approval became pending; the record holds the full ``arguments`` the reviewer sees and
  their :func:`arguments_hash`. Key ``"requested:<approval_id>"``.
* ``decided`` - a person approved or rejected it (``decision`` ``"approved"`` / ``"rejected"``, ``actor_id`` /
  ``actor_name`` the principal, ``comment``). Key ``"decided:<approval_id>:<actor_id>:<decision>"``: the same
  decision repeated by the same person is one record, another person's (or another decision) is a new one.
* ``expired`` - the approval timed out (``decision`` ``"expired"``, no actor: the system). Key
  ``"expired:<approval_id>"``.

:func:`audit_key` builds these keys; :meth:`AuditRecord.requested` / :meth:`~AuditRecord.decided` /
:meth:`~AuditRecord.expired` build whole records. :meth:`AuditStore.append` is idempotent per ``(run_id, key)``,
so a retried activity or HTTP request never writes a second record.

Backends, chosen by settings (:func:`audit_config`; the same rules as the refund ledger, ``activities/ledger.py``):

* ``AUDIT_TABLE_ENDPOINT`` set → :class:`TableAuditStore` on that endpoint with ``DefaultAzureCredential``
  (managed identity; ``AZURE_CLIENT_ID`` selects a user-assigned identity; the identity needs "Storage Table Data
  Contributor"), table ``AUDIT_TABLE_NAME`` (default ``approvalaudit``).
* else ``AUDIT_TABLE_CONNECTION_STRING`` set → :class:`TableAuditStore` with that connection string (Azurite /
  local development only; production uses no keys).
* otherwise :class:`SqliteAuditStore` at ``AUDIT_PATH`` (default ``.local/approval-audit.sqlite3``, relative to
  the app folder).

Both backends list a run's records ordered by ``at``, then by the order they were appended (for records appended
in time order, as the runner and the HTTP API do, that is exactly append order).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from ._config import get_setting
from ._contracts import format_time
from ._jsonsafe import json_safe, replace_surrogates

__all__ = [
    "AUDIT_EVENTS",
    "DEFAULT_AUDIT_PATH",
    "DEFAULT_AUDIT_TABLE_NAME",
    "AuditConfig",
    "AuditRecord",
    "AuditStore",
    "SqliteAuditStore",
    "arguments_hash",
    "audit_config",
    "audit_key",
    "audit_store_from_config",
    "get_audit_store",
]

AUDIT_EVENTS = ("requested", "decided", "expired")
"""The events of an approval, in the order they happen (``decided`` may repeat: one per person and decision)."""

AUDIT_KINDS = ("tool", "workflow")
DECISIONS = {"requested": (None,), "decided": ("approved", "rejected"), "expired": ("expired",)}

DEFAULT_AUDIT_PATH = ".local/approval-audit.sqlite3"
DEFAULT_AUDIT_TABLE_NAME = "approvalaudit"

_TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
_HASH_RE = re.compile(r"^sha256:[0-9a-f]{64}$")


# --------------------------------------------------------------------------------------------------- canonical JSON


def _as_stored(value: Any) -> Any:
    """A copy of the JSON value ``value`` as a store gives it back: through ``json.dumps`` / ``json.loads`` (tuples
    become lists, non-string object keys strings; ``ValueError`` for NaN / Infinity, ``TypeError`` for non-JSON
    values), then surrogates replaced (:func:`durable_agents._jsonsafe.json_safe`). Object key order is kept."""
    return json_safe(json.loads(json.dumps(value, ensure_ascii=False, allow_nan=False)), floats=False)


def _canonical_json(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return replace_surrogates(text)


def arguments_hash(value: Any) -> str:
    """``"sha256:<64 lower-case hex digits>"`` of the canonical JSON of ``value``: the fingerprint of the
    arguments a reviewer saw, stable across processes, key order and Python versions.

    Canonical JSON is ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=False)`` with surrogate code points replaced (a high+low pair by the character it encodes, a lone
    surrogate by U+FFFD), encoded as UTF-8 (strict: the text holds no surrogates, so no ``surrogatepass``).

    Raises ``ValueError`` for NaN or ±Infinity anywhere in ``value`` (JSON has no such numbers: callers sanitize
    them first) and ``TypeError`` for values JSON cannot encode (``Decimal``, ``datetime``, sets...).
    """
    return "sha256:" + hashlib.sha256(_canonical_json(value).encode("utf-8")).hexdigest()


def audit_key(event: str, approval_id: str, *, actor_id: str | None = None, decision: str | None = None) -> str:
    """The idempotency key of an audit record (unique within a run; module docstring).

    ``"requested:<approval_id>"``, ``"expired:<approval_id>"`` or
    ``"decided:<approval_id>:<actor_id>:<decision>"``. Raises ``ValueError`` for an unknown ``event`` or a
    ``decided`` key without ``actor_id`` / ``decision``. The parts are joined as they are: ids that themselves
    hold ``:`` could in principle spell the same key for two different (approval, actor) pairs; tool call ids,
    workflow approval ids (``<step>-<n>``) and principal ids (GUIDs) do not.
    """
    if event in ("requested", "expired"):
        return f"{event}:{approval_id}"
    if event == "decided":
        if not actor_id or not decision:
            raise ValueError("a decided record's key needs actor_id and decision")
        return f"decided:{approval_id}:{actor_id}:{decision}"
    raise ValueError(f"unknown audit event {event!r}; expected one of {AUDIT_EVENTS}")


def _time_text(at: dt.datetime | str) -> str:
    return format_time(at) if isinstance(at, dt.datetime) else at


# --------------------------------------------------------------------------------------------------- record


@dataclass(frozen=True)
class AuditRecord:
    """One approval event of one run (see the module docstring for the three events and their keys).

    Fields: ``run_id`` (orchestration instance id; a sub-orchestration's may contain ``:``), ``approval_id`` (the
    tool call id or the workflow approval id), ``event`` (one of :data:`AUDIT_EVENTS`), ``kind`` (``"tool"`` |
    ``"workflow"``), ``tool`` (tool name or workflow step name), ``arguments_hash`` (:func:`arguments_hash` of the
    arguments the reviewer saw; on every event, so a decision names what it decided), ``arguments`` (the full JSON
    arguments on ``requested`` records, ``None`` on the others), ``decision`` (``"approved"`` / ``"rejected"`` on
    ``decided``, ``"expired"`` on ``expired``, ``None`` on ``requested``), ``comment``, ``actor_id`` /
    ``actor_name`` (the deciding principal; ``None`` on ``requested`` / ``expired``: the system), ``at`` (UTC,
    :func:`durable_agents._contracts.format_time`: ``2026-01-01T00:00:00.000Z``) and ``key`` (the idempotency key,
    :func:`audit_key`; left empty it is derived from the other fields).

    Construction cleans and checks: every string, and every string inside ``arguments``, has its surrogate code
    points replaced as :func:`arguments_hash` does (so records can always be stored as UTF-8), ``arguments`` is
    copied as a store gives it back (tuples become lists, non-string keys strings), and ``ValueError`` is raised
    for an unknown event / kind / decision, a decision or actor that does not fit the event, empty ids, a malformed
    ``at`` or hash, non-JSON ``arguments`` (also ``TypeError``) or a ``requested`` record whose ``arguments_hash``
    is not the hash of its ``arguments``.
    """

    run_id: str
    approval_id: str
    event: str
    kind: str
    tool: str
    arguments_hash: str
    arguments: Any
    decision: str | None
    comment: str | None
    actor_id: str | None
    actor_name: str | None
    at: str
    key: str = ""

    def __post_init__(self) -> None:
        for name in ("run_id", "approval_id", "event", "kind", "tool", "arguments_hash", "decision", "comment",
                     "actor_id", "actor_name", "at", "key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ValueError(f"audit record {name} must be a string, not {type(value).__name__}")
            if isinstance(value, str):
                object.__setattr__(self, name, replace_surrogates(value))
        for name in ("run_id", "approval_id", "tool"):
            if not getattr(self, name):
                raise ValueError(f"audit record {name} must not be empty")
        if self.event not in AUDIT_EVENTS:
            raise ValueError(f"unknown audit event {self.event!r}; expected one of {AUDIT_EVENTS}")
        if self.kind not in AUDIT_KINDS:
            raise ValueError(f"unknown approval kind {self.kind!r}; expected one of {AUDIT_KINDS}")
        if self.decision not in DECISIONS[self.event]:
            raise ValueError(f"a {self.event} record's decision must be one of {DECISIONS[self.event]}, "
                             f"not {self.decision!r}")
        if self.event == "decided" and not self.actor_id:
            raise ValueError("a decided record needs actor_id (the principal who decided)")
        if self.event != "decided" and (self.actor_id is not None or self.actor_name is not None):
            raise ValueError(f"a {self.event} record has no actor (the system): actor_id and actor_name are None")
        if not _TIME_RE.match(self.at):
            raise ValueError(f"audit record at must be UTC ISO 8601 with milliseconds and Z, not {self.at!r}")
        if not _HASH_RE.match(self.arguments_hash):
            raise ValueError(f"arguments_hash must be 'sha256:<64 hex>', not {self.arguments_hash!r}")
        if self.event != "requested" and self.arguments is not None:
            raise ValueError(f"a {self.event} record keeps no arguments (only arguments_hash)")
        if self.event == "requested":
            arguments = _as_stored(self.arguments)
            object.__setattr__(self, "arguments", arguments)
            if arguments_hash(arguments) != self.arguments_hash:
                raise ValueError("arguments_hash is not the hash of the record's arguments")
        if not self.key:
            object.__setattr__(self, "key", audit_key(self.event, self.approval_id, actor_id=self.actor_id,
                                                       decision=self.decision))

    @classmethod
    def requested(cls, run_id: str, approval_id: str, *, kind: str, tool: str, arguments: Any,
                  at: dt.datetime | str) -> AuditRecord:
        """The ``requested`` record of an approval: ``arguments`` are the JSON arguments the reviewer sees (NaN /
        Infinity must be sanitized first: ``ValueError``), hashed here; ``at`` is the request time (a datetime is
        formatted with ``format_time``, naive = UTC)."""
        cleaned = _as_stored(arguments)
        return cls(run_id, approval_id, "requested", kind, tool, arguments_hash(cleaned), cleaned, None, None, None,
                   None, _time_text(at))

    @classmethod
    def decided(cls, run_id: str, approval_id: str, *, kind: str, tool: str, arguments_hash: str, approved: bool,
                actor_id: str, actor_name: str | None, comment: str | None, at: dt.datetime | str) -> AuditRecord:
        """The ``decided`` record of a person's decision (``arguments_hash`` of the pending approval they saw)."""
        return cls(run_id, approval_id, "decided", kind, tool, arguments_hash, None,
                   "approved" if approved else "rejected", comment, actor_id, actor_name, _time_text(at))

    @classmethod
    def expired(cls, run_id: str, approval_id: str, *, kind: str, tool: str, arguments_hash: str,
                at: dt.datetime | str, comment: str | None = None) -> AuditRecord:
        """The ``expired`` record of an approval that timed out (``at``: when the timer fired)."""
        return cls(run_id, approval_id, "expired", kind, tool, arguments_hash, None, "expired", comment, None, None,
                   _time_text(at))

    def to_json(self) -> dict[str, Any]:
        """The record as JSON (``GET /api/runs/{id}/audit``): ``{"runId", "approvalId", "event", "kind", "tool",
        "argumentsHash", "arguments", "decision", "comment", "actor": {"id", "name"} | null, "at"}``. The key is
        not shown (:meth:`from_json` derives it again)."""
        actor = None if self.actor_id is None else {"id": self.actor_id, "name": self.actor_name}
        return {
            "runId": self.run_id,
            "approvalId": self.approval_id,
            "event": self.event,
            "kind": self.kind,
            "tool": self.tool,
            "argumentsHash": self.arguments_hash,
            "arguments": self.arguments,
            "decision": self.decision,
            "comment": self.comment,
            "actor": actor,
            "at": self.at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], *, key: str = "") -> AuditRecord:
        """The record from its :meth:`to_json` shape (``key`` derived unless given). Raises ``ValueError`` for a
        missing member or any value the constructor refuses."""
        if not isinstance(data, dict):
            raise ValueError(f"an audit record is a JSON object, not {type(data).__name__}")
        try:
            actor = data["actor"]
            if actor is not None and not isinstance(actor, dict):
                raise ValueError("audit record actor must be an object {id, name} or null")
            return cls(
                run_id=data["runId"],
                approval_id=data["approvalId"],
                event=data["event"],
                kind=data["kind"],
                tool=data["tool"],
                arguments_hash=data["argumentsHash"],
                arguments=data["arguments"],
                decision=data["decision"],
                comment=data["comment"],
                actor_id=actor["id"] if actor else None,
                actor_name=actor.get("name") if actor else None,
                at=data["at"],
                key=key,
            )
        except KeyError as exc:
            raise ValueError(f"audit record JSON lacks member {exc.args[0]!r}") from None


# --------------------------------------------------------------------------------------------------- interface


@runtime_checkable
class AuditStore(Protocol):
    """An append-only store of :class:`AuditRecord` (module docstring for the backends)."""

    def append(self, record: AuditRecord) -> bool:
        """Store ``record`` unless its run already has a record with its ``key``.

        Returns ``True`` when stored, ``False`` when the key was already stored (that record is kept unchanged,
        even if it differs: a retry never duplicates or rewrites). Atomic: of racing appends of one key exactly one
        returns ``True``. Raises ``ValueError`` when the record is too large for the backend (Table only).
        """
        ...

    def list_for_run(self, run_id: str) -> list[AuditRecord]:
        """The run's records, oldest first: by ``at``, then append order (``[]`` for an unknown run)."""
        ...


# --------------------------------------------------------------------------------------------------- SQLite

_SCHEMA = """
CREATE TABLE IF NOT EXISTS approval_audit (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    seq INTEGER NOT NULL UNIQUE,
    approval_id TEXT NOT NULL,
    event TEXT NOT NULL,
    kind TEXT NOT NULL,
    tool TEXT NOT NULL,
    arguments_hash TEXT NOT NULL,
    arguments TEXT,
    decision TEXT,
    comment TEXT,
    actor_id TEXT,
    actor_name TEXT,
    at TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);
CREATE INDEX IF NOT EXISTS approval_audit_by_run ON approval_audit (run_id, at, seq);
"""


class SqliteAuditStore:
    """:class:`AuditStore` in one SQLite file: table ``approval_audit``, primary key ``(run_id, key)``, ``seq``
    the append order (1, 2, ... over the whole file), ``arguments`` as canonical JSON text (NULL for ``None``).

    WAL journal, ``busy_timeout_s`` (default 30 s) busy timeout, one connection per operation: safe to share
    between threads and between processes. The parent folders of ``path`` are created.
    """

    def __init__(self, path: str | Path, *, busy_timeout_s: float = 30.0) -> None:
        """Open (and create) the database at ``path``; raises ``sqlite3.Error`` when it cannot be opened."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._busy_timeout_s = busy_timeout_s
        with self._connection() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"SqliteAuditStore({str(self.path)!r})"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self._busy_timeout_s, isolation_level=None)
        with closing(conn):
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_s * 1000)}")
            conn.row_factory = sqlite3.Row
            yield conn

    def append(self, record: AuditRecord) -> bool:
        """See :meth:`AuditStore.append` (one ``BEGIN IMMEDIATE`` transaction: ``INSERT ... ON CONFLICT DO
        NOTHING`` with ``seq = max + 1``)."""
        arguments = None if record.arguments is None else _canonical_json(record.arguments)
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                cursor = conn.execute(
                    "INSERT INTO approval_audit (run_id, key, seq, approval_id, event, kind, tool, arguments_hash,"
                    " arguments, decision, comment, actor_id, actor_name, at)"
                    " VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM approval_audit),"
                    " ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (run_id, key) DO NOTHING",
                    (record.run_id, record.key, record.approval_id, record.event, record.kind, record.tool,
                     record.arguments_hash, arguments, record.decision, record.comment, record.actor_id,
                     record.actor_name, record.at),
                )
                stored = cursor.rowcount == 1
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        return stored

    def list_for_run(self, run_id: str) -> list[AuditRecord]:
        """See :meth:`AuditStore.list_for_run`."""
        with self._connection() as conn:
            rows = conn.execute("SELECT * FROM approval_audit WHERE run_id = ? ORDER BY at, seq",
                                (run_id,)).fetchall()
        return [
            AuditRecord(
                run_id=row["run_id"], approval_id=row["approval_id"], event=row["event"], kind=row["kind"],
                tool=row["tool"], arguments_hash=row["arguments_hash"],
                arguments=None if row["arguments"] is None else json.loads(row["arguments"]),
                decision=row["decision"], comment=row["comment"], actor_id=row["actor_id"],
                actor_name=row["actor_name"], at=row["at"], key=row["key"],
            )
            for row in rows
        ]


# --------------------------------------------------------------------------------------------------- factory


@dataclass(frozen=True)
class AuditConfig:
    """Which backend the settings select (:func:`audit_config`).

    ``kind``: ``"table_endpoint"`` (``location`` = the Table endpoint URL, managed identity),
    ``"table_connection_string"`` (``location`` = the connection string; Azurite / local only) or ``"sqlite"``
    (``location`` = the absolute database path). ``table_name`` and ``client_id`` (``AZURE_CLIENT_ID``: a
    user-assigned identity) apply to the Table kinds. ``repr`` never shows a connection string (it holds an
    account key).
    """

    kind: str
    location: str
    table_name: str = DEFAULT_AUDIT_TABLE_NAME
    client_id: str | None = None

    def __repr__(self) -> str:
        location = "<connection string>" if self.kind == "table_connection_string" else self.location
        return (f"AuditConfig(kind={self.kind!r}, location={location!r}, table_name={self.table_name!r}, "
                f"client_id={self.client_id!r})")


def audit_config(app_dir: str | Path | None = None) -> AuditConfig:
    """Read the audit settings (``get_setting``; an empty value counts as unset).

    ``AUDIT_TABLE_ENDPOINT`` wins over ``AUDIT_TABLE_CONNECTION_STRING``, which wins over ``AUDIT_PATH`` (default
    ``.local/approval-audit.sqlite3``; a relative path is taken relative to ``app_dir``, default the current
    working directory: the Functions host and the local runtime run in the app folder, the one holding
    ``function_app.py``). ``AUDIT_TABLE_NAME`` defaults to ``approvalaudit``; ``AZURE_CLIENT_ID`` goes with the
    endpoint.
    """
    table_name = get_setting("AUDIT_TABLE_NAME", DEFAULT_AUDIT_TABLE_NAME) or DEFAULT_AUDIT_TABLE_NAME
    endpoint = get_setting("AUDIT_TABLE_ENDPOINT")
    if endpoint:
        return AuditConfig("table_endpoint", endpoint, table_name, get_setting("AZURE_CLIENT_ID"))
    connection_string = get_setting("AUDIT_TABLE_CONNECTION_STRING")
    if connection_string:
        return AuditConfig("table_connection_string", connection_string, table_name)
    path = Path(get_setting("AUDIT_PATH", DEFAULT_AUDIT_PATH) or DEFAULT_AUDIT_PATH).expanduser()
    if not path.is_absolute():
        path = Path(app_dir if app_dir is not None else os.getcwd()) / path
    return AuditConfig("sqlite", str(path.resolve()))


def audit_store_from_config(config: AuditConfig) -> AuditStore:
    """A new store for ``config`` (no network I/O; a Table store, :mod:`durable_agents._audit_table`, creates its
    table on first use). Raises ``ValueError`` for an unknown ``config.kind``."""
    from ._audit_table import TableAuditStore

    if config.kind == "table_endpoint":
        return TableAuditStore.from_endpoint(config.location, config.table_name,
                                             managed_identity_client_id=config.client_id)
    if config.kind == "table_connection_string":
        return TableAuditStore.from_connection_string(config.location, config.table_name)
    if config.kind == "sqlite":
        return SqliteAuditStore(config.location)
    raise ValueError(f"unknown audit store kind {config.kind!r}")


_stores: dict[AuditConfig, AuditStore] = {}
_stores_lock = threading.Lock()


def get_audit_store(app_dir: str | Path | None = None) -> AuditStore:
    """The audit store the current settings select (:func:`audit_config`), created once per process per
    configuration (thread-safe)."""
    config = audit_config(app_dir)
    with _stores_lock:
        store = _stores.get(config)
        if store is None:
            store = _stores[config] = audit_store_from_config(config)
        return store
