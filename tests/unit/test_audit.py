"""The approval audit store (durable_agents/_audit.py) on real SQLite, and its pure parts (records, hashing, keys,
settings).

:class:`AuditStoreContract` holds the backend-independent cases; ``tests/integration/test_audit_azurite.py`` runs
the same class against the Azure Table backend on Azurite. A subclass provides the ``store`` fixture (a fresh,
empty store) and ``reopen(store)`` (a second, independent store object on the same storage).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sqlite3
import threading
from pathlib import Path

import pytest

from durable_agents import _audit
from durable_agents._audit import (
    AUDIT_EVENTS,
    DEFAULT_AUDIT_PATH,
    AuditConfig,
    AuditRecord,
    AuditStore,
    SqliteAuditStore,
    arguments_hash,
    audit_config,
    audit_key,
    audit_store_from_config,
    get_audit_store,
)
from durable_agents._audit_table import TableAuditStore

ARGS = {"order_id": "ORD-1001", "amount": "250.00", "reason": "damaged"}
ARGS_HASH = arguments_hash(ARGS)


def race(count: int, target) -> tuple[list, list[BaseException]]:
    """Run ``target(i)`` in ``count`` threads released together by a barrier; return (results, exceptions)."""
    barrier = threading.Barrier(count)
    results: list = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(i: int) -> None:
        barrier.wait()
        try:
            value = target(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted by the caller
            with lock:
                errors.append(exc)
        else:
            with lock:
                results.append(value)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a racing append hung"
    return results, errors


def requested(run_id: str = "run-1", approval_id: str = "call_abc", *, arguments=None,
              at: str = "2026-01-01T00:00:00.000Z", tool: str = "refund_order") -> AuditRecord:
    return AuditRecord.requested(run_id, approval_id, kind="tool", tool=tool,
                                 arguments=ARGS if arguments is None else arguments, at=at)


def decided(run_id: str = "run-1", approval_id: str = "call_abc", *, approved: bool = True,
            actor: str = "user-1", comment: str | None = "ok", at: str = "2026-01-01T00:01:00.000Z",
            actor_name: str | None = "Ada Reviewer") -> AuditRecord:
    return AuditRecord.decided(run_id, approval_id, kind="tool", tool="refund_order", arguments_hash=ARGS_HASH,
                               approved=approved, actor_id=actor, actor_name=actor_name, comment=comment, at=at)


def expired(run_id: str = "run-1", approval_id: str = "call_abc", *,
            at: str = "2026-01-02T00:00:00.000Z") -> AuditRecord:
    return AuditRecord.expired(run_id, approval_id, kind="tool", tool="refund_order", arguments_hash=ARGS_HASH,
                               at=at)


class AuditStoreContract:
    """Backend-independent cases of the AuditStore contract."""

    def reopen(self, store):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_implements_the_protocol(self, store):
        assert isinstance(store, AuditStore)

    def test_an_unknown_run_has_no_records(self, store):
        assert store.list_for_run("no-such-run") == []

    def test_appended_records_are_listed_oldest_first_and_equal_what_was_appended(self, store):
        records = [requested(), decided(approved=False, comment="too much"),
                   requested(approval_id="plan-1", at="2026-01-01T00:02:00.000Z"),
                   expired(approval_id="plan-1", at="2026-01-02T00:00:00.001Z")]
        assert [store.append(r) for r in records] == [True] * 4
        assert store.list_for_run("run-1") == records

    def test_a_record_appended_late_is_listed_at_its_time(self, store):
        """A retried ``requested`` write that lands after the decision still lists before it (order by ``at``)."""
        assert store.append(decided()) is True
        assert store.append(requested()) is True
        assert [r.event for r in store.list_for_run("run-1")] == ["requested", "decided"]

    def test_records_with_the_same_time_keep_append_order(self, store):
        at = "2026-01-01T00:00:00.000Z"
        records = [requested(approval_id=f"call_{n}", at=at) for n in (5, 1, 9, 3, 7, 2)]
        for record in records:
            assert store.append(record) is True
        assert [r.approval_id for r in store.list_for_run("run-1")] == [r.approval_id for r in records]

    def test_the_same_key_twice_returns_false_and_keeps_the_first_record(self, store):
        first = decided(comment="first", actor_name="Ada")
        assert store.append(first) is True
        again = decided(comment="a retry with other text", actor_name="Someone else",
                        at="2026-01-01T00:05:00.000Z")
        assert again.key == first.key
        assert store.append(again) is False
        assert store.append(first) is False
        assert store.list_for_run("run-1") == [first]

    def test_a_repeated_decision_is_one_record_another_person_or_decision_is_another(self, store):
        assert store.append(decided(actor="user-1")) is True
        assert store.append(decided(actor="user-1", at="2026-01-01T00:02:00.000Z")) is False
        assert store.append(decided(actor="user-2", at="2026-01-01T00:03:00.000Z")) is True
        assert store.append(decided(actor="user-1", approved=False, at="2026-01-01T00:04:00.000Z")) is True
        assert [r.key for r in store.list_for_run("run-1")] == [
            "decided:call_abc:user-1:approved", "decided:call_abc:user-2:approved",
            "decided:call_abc:user-1:rejected"]

    def test_racing_appends_of_one_key_store_exactly_one(self, store):
        records = [decided(comment=f"writer {i}") for i in range(8)]
        results, errors = race(8, lambda i: store.append(records[i]))
        assert errors == []
        assert sorted(results) == [False] * 7 + [True]
        stored = store.list_for_run("run-1")
        assert len(stored) == 1 and stored[0].comment in {r.comment for r in records}

    def test_racing_appends_of_different_keys_are_all_stored(self, store):
        results, errors = race(6, lambda i: store.append(requested(approval_id=f"call_{i}")))
        assert errors == [] and results == [True] * 6
        assert sorted(r.approval_id for r in store.list_for_run("run-1")) == [f"call_{i}" for i in range(6)]

    def test_runs_are_isolated_even_when_one_id_prefixes_the_other(self, store):
        parent, child = "run-7", "run-7:1"
        assert store.append(requested(run_id=parent)) is True
        assert store.append(requested(run_id=child)) is True  # same key, another run: a new record
        assert store.append(decided(run_id=child)) is True
        assert [r.event for r in store.list_for_run(parent)] == ["requested"]
        assert [(r.run_id, r.event) for r in store.list_for_run(child)] == [(child, "requested"), (child, "decided")]

    def test_unicode_text_round_trips(self, store):
        arguments = {"reason": "Écouteur cassé 😀 — 壊れた", "note": "שלום", "nested": [{"ß": "ǅ"}, None, 1.5, True]}
        record = AuditRecord.requested("run-ü", "call_é", kind="workflow", tool="plan step 😀", arguments=arguments,
                                       at="2026-01-01T00:00:00.000Z")
        decision = AuditRecord.decided("run-ü", "call_é", kind="workflow", tool="plan step 😀",
                                       arguments_hash=record.arguments_hash, approved=True, actor_id="ïd-1",
                                       actor_name="Zoë 🦊", comment="d'accord ✓", at="2026-01-01T00:00:01.000Z")
        assert store.append(record) and store.append(decision)
        assert store.list_for_run("run-ü") == [record, decision]
        assert store.list_for_run("run-ü")[0].arguments == arguments

    def test_lone_surrogates_are_stored_as_replacement_characters(self, store):
        record = AuditRecord.requested("run-s", "call_1", kind="tool", tool="t",
                                       arguments={"bad\ud800key": "x\udfffy", "pair": "\ud83d\ude00"},
                                       at="2026-01-01T00:00:00.000Z")
        decision = AuditRecord.decided("run-s", "call_1", kind="tool", tool="t",
                                       arguments_hash=record.arguments_hash, approved=False, actor_id="u",
                                       actor_name="A\udc80B", comment="no\ud800", at="2026-01-01T00:00:01.000Z")
        assert store.append(record) and store.append(decision)
        listed = store.list_for_run("run-s")
        assert listed[0].arguments == {"bad\ufffdkey": "x\ufffdy", "pair": "😀"}
        assert (listed[1].actor_name, listed[1].comment) == ("A\ufffdB", "no\ufffd")
        assert listed[0].arguments_hash == arguments_hash({"bad\ufffdkey": "x\ufffdy", "pair": "😀"})

    def test_listed_records_round_trip_through_json(self, store):
        records = [requested(), decided(actor_name=None, comment=None), expired()]
        for record in records:
            store.append(record)
        listed = store.list_for_run("run-1")
        wire = json.loads(json.dumps([r.to_json() for r in listed]))
        assert [AuditRecord.from_json(item) for item in wire] == records

    def test_records_survive_reopening(self, store):
        records = [requested(), decided()]
        for record in records:
            store.append(record)
        other = self.reopen(store)
        assert other.list_for_run("run-1") == records
        assert other.append(decided()) is False
        assert other.append(expired()) is True
        assert store.list_for_run("run-1") == [*records, expired()]


class TestSqliteAuditStore(AuditStoreContract):
    """The contract on SQLite, plus what only the SQLite backend promises."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> SqliteAuditStore:
        return SqliteAuditStore(tmp_path / "audit.sqlite3")

    def reopen(self, store: SqliteAuditStore) -> SqliteAuditStore:
        return SqliteAuditStore(store.path)

    def test_creates_parent_folders_and_uses_wal(self, tmp_path: Path):
        store = SqliteAuditStore(tmp_path / "a" / "b" / "audit.sqlite3")
        assert store.path.exists()
        with sqlite3.connect(store.path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert tables == ["approval_audit"]

    def test_rows_are_keyed_by_run_and_key_and_numbered_in_append_order(self, store: SqliteAuditStore):
        store.append(requested(run_id="r2"))
        store.append(requested(run_id="r1"))
        store.append(decided(run_id="r2"))
        with sqlite3.connect(store.path) as conn:
            rows = conn.execute("SELECT run_id, key, seq, arguments FROM approval_audit ORDER BY seq").fetchall()
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("INSERT INTO approval_audit (run_id, key, seq, approval_id, event, kind, tool,"
                             " arguments_hash, at) VALUES ('r1', 'requested:call_abc', 99, 'a', 'requested',"
                             " 'tool', 't', 'h', 'x')")
        assert [(r[0], r[1], r[2]) for r in rows] == [
            ("r2", "requested:call_abc", 1), ("r1", "requested:call_abc", 2),
            ("r2", "decided:call_abc:user-1:approved", 3)]
        assert json.loads(rows[0][3]) == ARGS and rows[2][3] is None

    def test_racing_appends_from_separate_store_objects_store_exactly_one(self, tmp_path: Path):
        path = tmp_path / "audit.sqlite3"
        stores = [SqliteAuditStore(path) for _ in range(6)]
        results, errors = race(6, lambda i: stores[i].append(decided(comment=f"writer {i}")))
        assert errors == [] and sorted(results) == [False] * 5 + [True]
        assert len(SqliteAuditStore(path).list_for_run("run-1")) == 1

    def test_arguments_with_non_string_keys_list_equal_to_what_was_appended(self, store: SqliteAuditStore):
        record = requested(arguments={1: "one", "t": (1, 2)})
        store.append(record)
        assert store.list_for_run("run-1") == [record]

    def test_large_arguments_are_kept_whole(self, store: SqliteAuditStore):
        arguments = {"text": "x😀" * 300_000}
        assert store.append(requested(arguments=arguments)) is True
        assert store.list_for_run("run-1")[0].arguments == arguments


# --------------------------------------------------------------------------------------------------- hashing


class TestArgumentsHash:
    def test_is_sha256_of_the_canonical_json(self):
        expected = hashlib.sha256('{"a":"é","b":[1,2.5,null,true]}'.encode()).hexdigest()
        assert arguments_hash({"b": [1, 2.5, None, True], "a": "é"}) == f"sha256:{expected}"

    def test_does_not_depend_on_key_order_at_any_depth(self):
        one = {"a": 1, "b": {"x": [1, {"p": 1, "q": 2}], "y": "z"}}
        two = {"b": {"y": "z", "x": [1, {"q": 2, "p": 1}]}, "a": 1}
        assert arguments_hash(one) == arguments_hash(two)

    @pytest.mark.parametrize("changed", [
        {"order_id": "ORD-1002", "amount": "250.00", "reason": "damaged"},
        {"order_id": "ORD-1001", "amount": "250.01", "reason": "damaged"},
        {"order_id": "ORD-1001", "amount": 250.00, "reason": "damaged"},
        {"order_id": "ORD-1001", "amount": "250.00", "reason": "damaged "},
        {"order_id": "ORD-1001", "amount": "250.00", "Reason": "damaged"},
        {"order_id": "ORD-1001", "amount": "250.00"},
        {"order_id": "ORD-1001", "amount": "250.00", "reason": "damaged", "extra": None},
        [ARGS],
    ])
    def test_differs_on_any_change(self, changed):
        assert arguments_hash(changed) != ARGS_HASH

    def test_numbers_of_different_json_types_differ(self):
        assert len({arguments_hash(1), arguments_hash(1.0), arguments_hash("1"), arguments_hash(True)}) == 4

    @pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": [float("-inf")]}])
    def test_refuses_nan_and_infinity(self, value):
        with pytest.raises(ValueError):
            arguments_hash(value)

    def test_refuses_values_json_cannot_encode(self):
        with pytest.raises(TypeError):
            arguments_hash({"when": dt.datetime(2026, 1, 1)})

    def test_lone_surrogates_hash_as_replacement_characters_and_pairs_as_their_character(self):
        assert arguments_hash({"k": "a\ud800b"}) == arguments_hash({"k": "a\ufffdb"})
        assert arguments_hash({"k\udc00": 1}) == arguments_hash({"k\ufffd": 1})
        assert arguments_hash("\ud83d\ude00") == arguments_hash("😀")
        expected = hashlib.sha256('"a\ufffdb"'.encode()).hexdigest()
        assert arguments_hash("a\udfffb") == f"sha256:{expected}"


# --------------------------------------------------------------------------------------------------- records


class TestAuditRecord:
    def test_keys_of_the_three_events(self):
        assert AUDIT_EVENTS == ("requested", "decided", "expired")
        assert requested().key == audit_key("requested", "call_abc") == "requested:call_abc"
        assert expired().key == audit_key("expired", "call_abc") == "expired:call_abc"
        assert decided(approved=False).key == "decided:call_abc:user-1:rejected"
        assert audit_key("decided", "a", actor_id="u", decision="approved") == "decided:a:u:approved"
        with pytest.raises(ValueError):
            audit_key("decided", "a")
        with pytest.raises(ValueError):
            audit_key("cancelled", "a")

    def test_to_json_shape(self):
        assert requested().to_json() == {
            "runId": "run-1", "approvalId": "call_abc", "event": "requested", "kind": "tool",
            "tool": "refund_order", "argumentsHash": ARGS_HASH, "arguments": ARGS, "decision": None,
            "comment": None, "actor": None, "at": "2026-01-01T00:00:00.000Z"}
        shown = decided(approved=False, comment="no").to_json()
        assert (shown["decision"], shown["comment"], shown["arguments"]) == ("rejected", "no", None)
        assert shown["actor"] == {"id": "user-1", "name": "Ada Reviewer"}
        assert "key" not in shown
        assert expired().to_json()["decision"] == "expired"

    @pytest.mark.parametrize("record", [requested(), decided(), decided(actor_name=None, comment=None), expired()])
    def test_json_round_trip(self, record):
        assert AuditRecord.from_json(json.loads(json.dumps(record.to_json()))) == record

    def test_from_json_refuses_a_missing_member(self):
        data = requested().to_json()
        del data["argumentsHash"]
        with pytest.raises(ValueError, match="argumentsHash"):
            AuditRecord.from_json(data)

    def test_times_are_formatted_and_checked(self):
        record = requested(at=dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.UTC))  # type: ignore[arg-type]
        assert record.at == "2026-03-04T05:06:07.890Z"
        with pytest.raises(ValueError, match="milliseconds"):
            requested(at="2026-01-01T00:00:00Z")

    def test_arguments_are_copied_as_a_store_gives_them_back_and_hashed(self):
        arguments = {"items": ("a", "b"), 7: {"z": 1, "a": 2}}
        record = requested(arguments=arguments)
        arguments["items"] = ("changed",)
        assert record.arguments == {"items": ["a", "b"], "7": {"z": 1, "a": 2}}
        assert list(record.arguments["7"]) == ["z", "a"]  # key order is kept (only the hash sorts)
        assert record.arguments_hash == arguments_hash({"items": ["a", "b"], "7": {"a": 2, "z": 1}})

    @pytest.mark.parametrize("change, message", [
        ({"event": "cancelled"}, "unknown audit event"),
        ({"kind": "agent"}, "unknown approval kind"),
        ({"decision": "approved"}, "decision"),
        ({"arguments_hash": "sha256:abc"}, "arguments_hash"),
        ({"arguments": {"other": 1}}, "not the hash"),
        ({"actor_id": "user-1"}, "no actor"),
        ({"run_id": ""}, "run_id"),
        ({"tool": ""}, "tool"),
        ({"comment": 5}, "comment"),
    ])
    def test_a_requested_record_refuses_what_does_not_fit(self, change, message):
        fields = {**requested().__dict__, "key": "", **change}
        with pytest.raises(ValueError, match=message):
            AuditRecord(**fields)

    @pytest.mark.parametrize("change, message", [
        ({"actor_id": None}, "actor_id"),
        ({"decision": "expired"}, "decision"),
        ({"arguments": ARGS}, "no arguments"),
    ])
    def test_a_decided_record_refuses_what_does_not_fit(self, change, message):
        fields = {**decided().__dict__, "key": "", **change}
        with pytest.raises(ValueError, match=message):
            AuditRecord(**fields)

    def test_an_expired_record_has_no_actor(self):
        with pytest.raises(ValueError, match="no actor"):
            AuditRecord(**{**expired().__dict__, "actor_name": "someone"})


# --------------------------------------------------------------------------------------------------- settings


AUDIT_SETTINGS = ("AUDIT_TABLE_ENDPOINT", "AUDIT_TABLE_CONNECTION_STRING", "AUDIT_PATH", "AUDIT_TABLE_NAME",
                  "AZURE_CLIENT_ID")
CONNECTION_STRING = ("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=c2VjcmV0LWtleQ==;"
                     "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;")


@pytest.fixture
def settings(monkeypatch, tmp_path: Path):
    """No audit settings, the cwd a fresh folder, and an empty store cache; returns ``monkeypatch``."""
    for name in AUDIT_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(_audit, "_stores", {})
    return monkeypatch


class TestAuditConfig:
    def test_default_is_sqlite_under_the_app_folder(self, settings, tmp_path: Path):
        config = audit_config()
        assert config == AuditConfig("sqlite", str((tmp_path / DEFAULT_AUDIT_PATH).resolve()))
        assert config.table_name == "approvalaudit"
        assert audit_config(tmp_path / "app").location == str((tmp_path / "app" / DEFAULT_AUDIT_PATH).resolve())

    def test_audit_path_relative_or_absolute(self, settings, tmp_path: Path):
        settings.setenv("AUDIT_PATH", "data/audit.db")
        assert audit_config().location == str((tmp_path / "data" / "audit.db").resolve())
        settings.setenv("AUDIT_PATH", str(tmp_path / "abs.db"))
        assert audit_config(tmp_path / "elsewhere").location == str(tmp_path / "abs.db")

    def test_connection_string_wins_over_the_path(self, settings):
        settings.setenv("AUDIT_PATH", "x.db")
        settings.setenv("AUDIT_TABLE_CONNECTION_STRING", CONNECTION_STRING)
        settings.setenv("AUDIT_TABLE_NAME", "audittest")
        assert audit_config() == AuditConfig("table_connection_string", CONNECTION_STRING, "audittest")

    def test_endpoint_wins_over_everything_and_takes_the_client_id(self, settings):
        settings.setenv("AUDIT_PATH", "x.db")
        settings.setenv("AUDIT_TABLE_CONNECTION_STRING", CONNECTION_STRING)
        settings.setenv("AUDIT_TABLE_ENDPOINT", "https://acct.table.core.windows.net")
        settings.setenv("AZURE_CLIENT_ID", "11111111-2222-3333-4444-555555555555")
        assert audit_config() == AuditConfig("table_endpoint", "https://acct.table.core.windows.net",
                                             "approvalaudit", "11111111-2222-3333-4444-555555555555")

    def test_blank_settings_count_as_unset(self, settings, tmp_path: Path):
        for name in ("AUDIT_TABLE_ENDPOINT", "AUDIT_TABLE_CONNECTION_STRING", "AUDIT_PATH", "AUDIT_TABLE_NAME"):
            settings.setenv(name, "  ")
        assert audit_config() == AuditConfig("sqlite", str((tmp_path / DEFAULT_AUDIT_PATH).resolve()))

    def test_repr_never_shows_a_connection_string(self, settings):
        settings.setenv("AUDIT_TABLE_CONNECTION_STRING", CONNECTION_STRING)
        config = audit_config()
        assert "c2VjcmV0LWtleQ" not in repr(config) and "AccountKey" not in repr(config)
        assert "<connection string>" in repr(config)

    def test_get_audit_store_is_one_per_configuration(self, settings, tmp_path: Path):
        first = get_audit_store()
        assert isinstance(first, SqliteAuditStore)
        assert first.path == (tmp_path / DEFAULT_AUDIT_PATH).resolve() and first.path.exists()
        assert get_audit_store() is first
        settings.setenv("AUDIT_PATH", "other.db")
        second = get_audit_store()
        assert second is not first and second.path == (tmp_path / "other.db").resolve()
        settings.delenv("AUDIT_PATH")
        assert get_audit_store() is first

    def test_get_audit_store_from_racing_threads_builds_one(self, settings):
        results, errors = race(8, lambda i: get_audit_store())
        assert errors == [] and all(store is results[0] for store in results)

    def test_a_connection_string_builds_a_table_store_without_io(self, settings):
        settings.setenv("AUDIT_TABLE_CONNECTION_STRING", CONNECTION_STRING)
        store = get_audit_store()
        assert isinstance(store, TableAuditStore)
        assert store.table_client.table_name == "approvalaudit"
        assert "c2VjcmV0LWtleQ" not in repr(store)

    def test_an_unknown_kind_is_refused(self):
        with pytest.raises(ValueError, match="unknown audit store kind"):
            audit_store_from_config(AuditConfig("blob", "x"))


def test_table_store_refuses_a_record_too_large_for_an_entity_before_any_io():
    """Port 1 on loopback has no Table service: a ValueError (not a connection error) proves nothing was sent."""
    store = TableAuditStore.from_connection_string(CONNECTION_STRING, "audittoolarge")
    with pytest.raises(ValueError, match="1 MiB"):
        store.append(requested(arguments={"text": "x" * 600_000}))
    with pytest.raises(ValueError, match="comment"):
        store.append(decided(comment="y" * 40_000))
