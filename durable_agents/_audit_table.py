"""The Azure Table backend of the approval audit (internal; :mod:`durable_agents._audit` has the records, the
contract and the SQLite backend, and picks this one from the settings).

``azure.data.tables`` and ``azure.identity`` are imported only when a store is created, so the library imports
without them.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import quote

from ._audit import DEFAULT_AUDIT_TABLE_NAME, AuditRecord, _canonical_json

__all__ = ["TableAuditStore"]


_KEY_SAFE = "-_.~@:"
_MAX_KEY_CHARS = 1024  # PartitionKey / RowKey: at most 1 KiB each
_MAX_PROPERTY_UNITS = 32_000  # a String property holds at most 64 KiB of UTF-16 (32 768 code units)
_ARGUMENT_PART_UNITS = 30_000  # one arguments_<i> part: at most 60 000 bytes of UTF-16
_MAX_ENTITY_BYTES = 1_000_000  # an entity holds at most 1 MiB (1 048 576 bytes); this leaves a margin
_TEXT_PROPERTIES = ("run_id", "key", "seq", "approval_id", "event", "kind", "tool", "arguments_hash", "decision",
                    "comment", "actor_id", "actor_name", "at")


def _table_key(value: str) -> str:
    """``value`` percent-encoded for a PartitionKey / RowKey (they forbid ``/ \\ # ?`` and control characters;
    ``%`` is encoded too, so the mapping is one-to-one). Raises ``ValueError`` beyond 1 KiB."""
    encoded = quote(value, safe=_KEY_SAFE)
    if len(encoded) > _MAX_KEY_CHARS:
        raise ValueError(f"audit key {value[:80]!r}... is longer than a Table key may be ({_MAX_KEY_CHARS} chars)")
    return encoded


def _utf16_units(text: str) -> int:
    """Length of ``text`` in UTF-16 code units (characters beyond U+FFFF count two; ``text`` holds no surrogates)."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le")) // 2


def _split_utf16(text: str, units: int) -> list[str]:
    """``text`` cut into parts of at most ``units`` UTF-16 code units each, never inside a character."""
    parts: list[str] = []
    start = 0
    while start < len(text):
        end = min(len(text), start + units)
        while _utf16_units(text[start:end]) > units:
            end -= max(1, (_utf16_units(text[start:end]) - units) // 2)
        parts.append(text[start:end])
        start = end
    return parts


def _entity_bytes(entity: dict[str, str]) -> int:
    """The stored size of an entity of string properties, by the Table service's published formula: 4 bytes +
    2 per key character + per property 8 + 2 per name character + 4 + 2 per UTF-16 code unit of the value."""
    size = 4
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            size += 2 * len(value)
        else:
            size += 8 + 2 * len(name) + 4 + 2 * _utf16_units(value)
    return size


class TableAuditStore:
    """:class:`AuditStore` in an Azure Table (Azure Storage, or Azurite locally).

    Row layout: ``PartitionKey`` = the run id and ``RowKey`` = the record key, both percent-encoded (``%XX`` for
    every character except letters, digits and ``-_.~@:``; Table keys forbid ``/ \\ # ?`` and control
    characters); string properties named like the :class:`AuditRecord` fields (``run_id``, ``key``, ``event``...;
    ``None`` values are omitted), plus ``seq`` (20 zero-padded digits, increasing within a process).
    ``list_for_run`` sorts client-side by (``at``, the entity's server ``Timestamp``, ``seq``): entities are only
    ever created, so the server timestamp is the append time.

    Large values: a String property holds at most 64 KiB (32 768 UTF-16 code units) and an entity at most 1 MiB.
    ``arguments`` is stored as canonical JSON text in ``arguments`` when it is at most 32 000 UTF-16 code units;
    longer text is cut into ``arguments_0``, ``arguments_1``, ... of at most 30 000 code units each (never inside a
    character) with ``arguments_parts`` = their count. That keeps arguments of up to about 490 000 UTF-16 code units
    (~490 KB of ASCII JSON: the 1 MiB counts two bytes per code unit); beyond that, or for any other text property
    over 32 000 code units, :meth:`append` raises ``ValueError`` before any I/O (callers limit sizes).

    Idempotency: ``create_entity``; HTTP 409 (``ResourceExistsError``) means the key is stored → ``False``.
    Thread-safe (``TableClient`` may be shared between threads).
    """

    def __init__(self, table: Any, *, create_table: bool = True) -> None:
        """Wrap an ``azure.data.tables.TableClient`` (no I/O here). With ``create_table`` the first operation
        creates the table unless it exists; an HTTP 403 there is ignored (the identity may not create tables: the
        infrastructure must have created it)."""
        self._table = table
        self._table_ready = not create_table
        self._lock = threading.Lock()
        self._last_seq = 0

    @property
    def table_client(self) -> Any:
        """The wrapped ``azure.data.tables.TableClient``."""
        return self._table

    def __repr__(self) -> str:
        return f"TableAuditStore({self._table.account_name!r}, {self._table.table_name!r})"

    @classmethod
    def from_connection_string(cls, connection_string: str,
                               table_name: str = DEFAULT_AUDIT_TABLE_NAME) -> TableAuditStore:
        """Store on the table ``table_name`` of the account a connection string names (Azurite / local only).
        Needs the ``azure-data-tables`` package (imported here, not at module import)."""
        from azure.data.tables import TableClient

        return cls(TableClient.from_connection_string(connection_string, table_name=table_name))

    @classmethod
    def from_endpoint(cls, endpoint: str, table_name: str = DEFAULT_AUDIT_TABLE_NAME, *,
                      managed_identity_client_id: str | None = None) -> TableAuditStore:
        """Store on ``https://<account>.table.core.windows.net`` with ``DefaultAzureCredential`` (no keys;
        ``managed_identity_client_id`` selects a user-assigned identity). Needs ``azure-data-tables`` and
        ``azure-identity`` (imported here)."""
        from azure.data.tables import TableClient
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential(managed_identity_client_id=managed_identity_client_id)
        return cls(TableClient(endpoint=endpoint, table_name=table_name, credential=credential))

    def _ensure_table(self) -> None:
        if self._table_ready:
            return
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        with self._lock:
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

    def _next_seq(self) -> str:
        with self._lock:
            self._last_seq = max(self._last_seq + 1, time.time_ns())
            return f"{self._last_seq:020d}"

    def _entity(self, record: AuditRecord) -> dict[str, str]:
        """The entity of ``record``; ``ValueError`` when it does not fit the service's size limits."""
        entity = {"PartitionKey": _table_key(record.run_id), "RowKey": _table_key(record.key)}
        values = {name: getattr(record, name) for name in _TEXT_PROPERTIES if name != "seq"}
        values["seq"] = self._next_seq()
        for name in _TEXT_PROPERTIES:
            value = values[name]
            if value is None:
                continue
            if _utf16_units(value) > _MAX_PROPERTY_UNITS:
                raise ValueError(f"audit record {name} is longer than a Table property may be "
                                 f"({_MAX_PROPERTY_UNITS} UTF-16 code units)")
            entity[name] = value
        if record.arguments is not None:
            text = _canonical_json(record.arguments)
            if _utf16_units(text) <= _MAX_PROPERTY_UNITS:
                entity["arguments"] = text
            else:
                parts = _split_utf16(text, _ARGUMENT_PART_UNITS)
                entity["arguments_parts"] = str(len(parts))
                entity.update({f"arguments_{i}": part for i, part in enumerate(parts)})
        size = _entity_bytes(entity)
        if size > _MAX_ENTITY_BYTES:
            raise ValueError(f"audit record of {record.run_id!r}/{record.key!r} needs {size} bytes in Azure Table "
                             f"storage, over the {_MAX_ENTITY_BYTES} this store allows (1 MiB per entity)")
        return entity

    @staticmethod
    def _record(entity: Any) -> AuditRecord:
        if "arguments_parts" in entity:
            text: str | None = "".join(entity[f"arguments_{i}"] for i in range(int(entity["arguments_parts"])))
        else:
            text = entity.get("arguments")
        return AuditRecord(
            run_id=entity["run_id"], approval_id=entity["approval_id"], event=entity["event"], kind=entity["kind"],
            tool=entity["tool"], arguments_hash=entity["arguments_hash"],
            arguments=None if text is None else json.loads(text), decision=entity.get("decision"),
            comment=entity.get("comment"), actor_id=entity.get("actor_id"), actor_name=entity.get("actor_name"),
            at=entity["at"], key=entity["key"],
        )

    def append(self, record: AuditRecord) -> bool:
        """See :meth:`AuditStore.append` (one ``create_entity``; 409 → ``False``)."""
        from azure.core.exceptions import ResourceExistsError

        entity = self._entity(record)
        self._ensure_table()
        try:
            self._table.create_entity(entity)
        except ResourceExistsError:
            return False
        return True

    def list_for_run(self, run_id: str) -> list[AuditRecord]:
        """See :meth:`AuditStore.list_for_run` (one partition query, sorted client-side)."""
        self._ensure_table()
        entities = self._table.query_entities("PartitionKey eq @pk", parameters={"pk": _table_key(run_id)})
        rows = []
        for entity in entities:
            timestamp = entity.metadata.get("timestamp") if hasattr(entity, "metadata") else None
            created = (timestamp.isoformat() if timestamp is not None else "", entity["seq"])
            rows.append((self._record(entity), created))
        rows.sort(key=lambda row: (row[0].at, row[1]))
        return [record for record, _ in rows]


