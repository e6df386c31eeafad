"""The Azure Table approval audit store against the real Azurite emulator (Table service on a free loopback port).

Runs the shared :class:`~tests.unit.test_audit.AuditStoreContract` (the same cases as the SQLite backend), then
what only the Table backend does: percent-encoded keys for run ids with ``:`` and characters Table keys forbid,
arguments over one property's 64 KiB split over ``arguments_<i>`` properties, 409 idempotency across store objects,
and the settings selecting it. Without Azurite these tests skip locally and FAIL when ``CI`` is set (install it
with ``scripts/install-azurite.sh``).
"""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableClient, TableServiceClient

from durable_agents import _audit
from durable_agents._audit import AuditRecord, arguments_hash, get_audit_store
from durable_agents._audit_table import TableAuditStore
from tests.support.azurite import azurite_table, require_azurite
from tests.unit.test_audit import AuditStoreContract, decided, expired, race, requested

pytestmark = pytest.mark.azurite


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> str:
    """Connection string of an Azurite Table service running for this module."""
    command = require_azurite()
    with azurite_table(tmp_path_factory.mktemp("azurite"), command=command) as connection_string:
        yield connection_string


def _table_name() -> str:
    return "audit" + uuid.uuid4().hex[:12]


def _entities(store: TableAuditStore, partition: str) -> list:
    return list(store.table_client.query_entities("PartitionKey eq @pk", parameters={"pk": partition}))


class TestTableAuditStore(AuditStoreContract):
    """The audit store contract on Azure Table storage (Azurite); one fresh table per test."""

    @pytest.fixture
    def store(self, azurite: str) -> TableAuditStore:
        self._connection_string = azurite
        return TableAuditStore.from_connection_string(azurite, _table_name())

    def reopen(self, store: TableAuditStore) -> TableAuditStore:
        return TableAuditStore.from_connection_string(self._connection_string, store.table_client.table_name)

    def test_the_table_is_created_on_first_use(self, azurite: str):
        name = _table_name()
        store = TableAuditStore.from_connection_string(azurite, name)
        service = TableServiceClient.from_connection_string(azurite)
        assert name not in [t.name for t in service.list_tables()]
        assert store.list_for_run("run-1") == []
        assert name in [t.name for t in service.list_tables()]

    def test_run_ids_with_colons_and_forbidden_key_characters_are_encoded(self, store: TableAuditStore):
        run_id = "parent:0:child/a\\b#c?d%e\x07f"
        approval_id = "step/1#?"
        record = AuditRecord.requested(run_id, approval_id, kind="workflow", tool="plan", arguments={"a": 1},
                                       at="2026-01-01T00:00:00.000Z")
        assert store.append(record) is True
        assert store.append(record) is False
        partition = "parent:0:child%2Fa%5Cb%23c%3Fd%25e%07f"
        [entity] = _entities(store, partition)
        assert entity["RowKey"] == "requested:step%2F1%23%3F"
        assert (entity["run_id"], entity["key"]) == (run_id, f"requested:{approval_id}")
        assert store.list_for_run(run_id) == [record]
        assert store.list_for_run("parent:0:child") == []
        assert store.list_for_run("parent:0:child%2Fa%5Cb%23c%3Fd%25e%07f") == []  # '%' is encoded too

    def test_rows_hold_the_record_fields_as_named_string_properties(self, store: TableAuditStore):
        store.append(requested(run_id="run:1"))
        store.append(decided(run_id="run:1", actor_name=None))
        rows = {e["event"]: e for e in _entities(store, "run:1")}
        assert rows["requested"]["arguments"] == '{"amount":"250.00","order_id":"ORD-1001","reason":"damaged"}'
        assert rows["requested"]["arguments_hash"] == arguments_hash(requested().arguments)
        assert "decision" not in rows["requested"] and "actor_id" not in rows["requested"]  # None is omitted
        assert rows["decided"]["decision"] == "approved" and rows["decided"]["actor_id"] == "user-1"
        assert "arguments" not in rows["decided"] and "actor_name" not in rows["decided"]
        assert len(rows["requested"]["seq"]) == 20 and rows["requested"]["seq"] < rows["decided"]["seq"]

    def test_arguments_larger_than_64_kib_are_split_over_properties(self, store: TableAuditStore):
        # ~330 KB of UTF-8; astral characters take two UTF-16 code units, so the cut must count code units.
        arguments = {"reason": "Écouteur 😀 壊れた " * 9_000,
                     "lines": [{"n": i, "text": "x" * 50} for i in range(1000)]}
        record = AuditRecord.requested("run-big", "call_big", kind="tool", tool="refund_order", arguments=arguments,
                                       at="2026-01-01T00:00:00.000Z")
        assert store.append(record) is True
        [entity] = _entities(store, "run-big")
        parts = int(entity["arguments_parts"])
        assert parts > 2 and "arguments" not in entity
        texts = [entity[f"arguments_{i}"] for i in range(parts)]
        assert all(len(t.encode("utf-16-le")) // 2 <= 32_768 for t in texts)
        assert "".join(texts) == _audit._canonical_json(arguments)
        [listed] = self.reopen(store).list_for_run("run-big")
        assert listed == record and listed.arguments == arguments
        assert arguments_hash(listed.arguments) == record.arguments_hash

    def test_arguments_that_fit_one_property_stay_in_one(self, store: TableAuditStore):
        arguments = {"text": "y" * 31_900}
        store.append(requested(run_id="run-fit", arguments=arguments))
        [entity] = _entities(store, "run-fit")
        assert "arguments_parts" not in entity and len(entity["arguments"]) < 32_000
        assert store.list_for_run("run-fit")[0].arguments == arguments

    def test_a_record_too_large_for_an_entity_is_refused_and_nothing_is_stored(self, store: TableAuditStore):
        with pytest.raises(ValueError, match="1 MiB"):
            store.append(requested(run_id="run-huge", arguments={"text": "z" * 600_000}))
        assert store.list_for_run("run-huge") == []

    def test_an_existing_entity_answers_409_and_append_returns_false(self, store: TableAuditStore):
        first = decided(comment="first")
        assert store.append(first) is True
        [entity] = _entities(store, "run-1")
        with pytest.raises(ResourceExistsError):  # what append maps to False: the service's own 409
            store.table_client.create_entity({"PartitionKey": "run-1", "RowKey": entity["RowKey"]})
        other = self.reopen(store)  # another worker process, say
        assert other.append(decided(comment="second", at="2026-01-01T00:09:00.000Z")) is False
        [after] = _entities(store, "run-1")
        assert after.metadata["etag"] == entity.metadata["etag"]  # the stored entity was not touched
        assert other.list_for_run("run-1") == [first]

    def test_racing_appends_from_separate_store_objects_store_exactly_one(self, store: TableAuditStore):
        stores = [self.reopen(store) for _ in range(6)]
        results, errors = race(6, lambda i: stores[i].append(expired(at=f"2026-01-02T00:00:0{i}.000Z")))
        assert errors == [] and sorted(results) == [False] * 5 + [True]
        assert len(store.list_for_run("run-1")) == 1

    def test_an_existing_table_is_used_as_it_is(self, azurite: str):
        name = _table_name()
        client = TableClient.from_connection_string(azurite, table_name=name)
        client.create_table()
        client.create_entity({"PartitionKey": "x", "RowKey": "y"})
        store = TableAuditStore(client)
        assert store.append(requested()) is True
        assert [e["RowKey"] for e in client.list_entities()] == ["requested:call_abc", "y"]


def test_the_connection_string_setting_selects_the_table_store(azurite: str, monkeypatch, tmp_path):
    name = _table_name()
    monkeypatch.delenv("AUDIT_TABLE_ENDPOINT", raising=False)
    monkeypatch.setenv("AUDIT_TABLE_CONNECTION_STRING", azurite)
    monkeypatch.setenv("AUDIT_TABLE_NAME", name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_audit, "_stores", {})
    store = get_audit_store()
    assert isinstance(store, TableAuditStore) and store.table_client.table_name == name
    assert store.append(requested(run_id="run-settings")) is True
    assert get_audit_store() is store
    assert TableAuditStore.from_connection_string(azurite, name).list_for_run("run-settings") == [
        requested(run_id="run-settings")]
    assert not (tmp_path / ".local").exists()  # no SQLite file was made
