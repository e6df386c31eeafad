"""The refund ledger contract (activities/ledger.py), run here against the real SQLite backend.

:class:`LedgerContract` holds the backend-independent cases; ``tests/integration/test_ledger_azurite.py`` runs the
same class against the Azure Table backend on Azurite. A subclass provides the ``ledger`` fixture (a fresh, empty
ledger) and ``reopen(ledger)`` (a second, independent ledger object on the same storage).
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

import pytest

from activities.ledger import (
    IdempotencyKeyReused,
    LedgerConfig,
    MessageOutbox,
    RefundExceedsRemaining,
    RefundLedger,
    RefundNeedsApproval,
    RefundRecord,
    SqliteLedger,
    TableLedger,
    get_ledger,
    ledger_config,
)
from activities.orders import APP_DIR

D = Decimal


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
    assert not any(thread.is_alive() for thread in threads), "a racing call hung"
    return results, errors


class LedgerContract:
    """Backend-independent cases of the RefundLedger / MessageOutbox contract."""

    def reopen(self, ledger):  # pragma: no cover - overridden
        raise NotImplementedError

    def test_implements_the_protocols(self, ledger):
        assert isinstance(ledger, RefundLedger)
        assert isinstance(ledger, MessageOutbox)

    def test_record_returns_the_refund_and_updates_totals(self, ledger):
        assert ledger.refunded_total("ORD-1001") == D("0")
        assert ledger.list_refunds("ORD-1001") == []
        record = ledger.record_refund("run-1:call-1", "ORD-1001", D("25.00"), "USD", "damaged box", limit=D("291.50"))
        assert isinstance(record, RefundRecord)
        assert (record.key, record.order_id, record.amount, record.currency, record.reason) == (
            "run-1:call-1", "ORD-1001", D("25.00"), "USD", "damaged box")
        assert record.refunded_total == D("25.00")
        assert record.refund_id.startswith("RF-") and len(record.refund_id) == 15
        assert record.created_at.endswith("Z")
        second = ledger.record_refund("run-1:call-2", "ORD-1001", D("10.50"), "USD", "late", limit=D("291.50"))
        assert second.refunded_total == D("35.50")
        assert second.refund_id != record.refund_id
        assert ledger.refunded_total("ORD-1001") == D("35.50")
        assert ledger.list_refunds("ORD-1001") == [record, second]
        # Other orders are untouched.
        assert ledger.refunded_total("ORD-1002") == D("0")

    def test_amounts_are_summed_as_decimals(self, ledger):
        for i in range(3):
            ledger.record_refund(f"r:{i}", "ORD-1005", D("0.10"), "EUR", "x", limit=D("1.00"))
        # 0.1 + 0.1 + 0.1 as floats is 0.30000000000000004; the ledger must say exactly 0.30.
        assert ledger.refunded_total("ORD-1005") == D("0.30")
        assert str(ledger.refunded_total("ORD-1005")) == "0.30"
        assert str(self.reopen(ledger).list_refunds("ORD-1005")[0].amount) == "0.10"

    def test_refuses_above_the_remaining_amount(self, ledger):
        ledger.record_refund("r:1", "ORD-1002", D("60.00"), "USD", "x", limit=D("100.00"))
        with pytest.raises(RefundExceedsRemaining) as info:
            ledger.record_refund("r:2", "ORD-1002", D("40.01"), "USD", "x", limit=D("100.00"))
        assert info.value.remaining == D("40.00")
        assert info.value.requested == D("40.01")
        assert info.value.order_id == "ORD-1002"
        assert "40.00" in str(info.value)
        assert ledger.refunded_total("ORD-1002") == D("60.00")
        assert len(ledger.list_refunds("ORD-1002")) == 1
        # Exactly the remaining amount is fine; after that, nothing is left.
        ledger.record_refund("r:3", "ORD-1002", D("40.00"), "USD", "x", limit=D("100.00"))
        with pytest.raises(RefundExceedsRemaining) as info:
            ledger.record_refund("r:4", "ORD-1002", D("0.01"), "USD", "x", limit=D("100.00"))
        assert info.value.remaining == D("0")
        assert ledger.refunded_total("ORD-1002") == D("100.00")

    def test_repeated_key_returns_the_original_record_and_refunds_once(self, ledger):
        first = ledger.record_refund("run-9:call-a", "ORD-1003", D("75.00"), "USD", "x", limit=D("100.00"))
        again = ledger.record_refund("run-9:call-a", "ORD-1003", D("75.00"), "USD", "x", limit=D("100.00"))
        assert again == first
        assert ledger.refunded_total("ORD-1003") == D("75.00")
        assert len(ledger.list_refunds("ORD-1003")) == 1
        # A replay still returns the original even after the rest of the order was refunded by other calls,
        # and even from a different ledger object (another worker process).
        ledger.record_refund("run-9:call-b", "ORD-1003", D("25.00"), "USD", "x", limit=D("100.00"))
        late = self.reopen(ledger).record_refund("run-9:call-a", "ORD-1003", D("75.00"), "USD", "x", limit=D("100"))
        assert late == first
        assert late.refunded_total == D("75.00")
        assert ledger.refunded_total("ORD-1003") == D("100.00")
        assert len(ledger.list_refunds("ORD-1003")) == 2

    def test_key_reused_with_other_arguments_is_an_error(self, ledger):
        ledger.record_refund("run-1:call-1", "ORD-1004", D("5.00"), "USD", "x", limit=D("100.00"))
        with pytest.raises(IdempotencyKeyReused):
            ledger.record_refund("run-1:call-1", "ORD-1004", D("6.00"), "USD", "x", limit=D("100.00"))
        assert ledger.refunded_total("ORD-1004") == D("5.00")

    @pytest.mark.parametrize("amount", [D("0"), D("-1.00"), D("NaN")])
    def test_rejects_non_positive_amounts(self, ledger, amount):
        with pytest.raises(ValueError):
            ledger.record_refund("r:1", "ORD-1006", amount, "USD", "x", limit=D("100.00"))
        assert ledger.list_refunds("ORD-1006") == []

    def test_racing_calls_with_one_key_refund_once(self, ledger):
        # The full amount: a loser that saw the winner's balance before its refund row would wrongly refuse.
        results, errors = race(
            8, lambda i: ledger.record_refund("run-r:call-1", "ORD-1007", D("100.00"), "GBP", "x", limit=D("100.00"))
        )
        assert errors == []
        assert len(results) == 8
        assert all(result == results[0] for result in results)
        assert ledger.refunded_total("ORD-1007") == D("100.00")
        assert len(ledger.list_refunds("ORD-1007")) == 1

    def test_racing_calls_never_refund_more_than_the_limit(self, ledger):
        results, errors = race(
            8, lambda i: ledger.record_refund(f"run-r:call-{i}", "ORD-1008", D("30.00"), "EUR", "x",
                                              limit=D("100.00"))
        )
        # 3 x 30.00 fit into 100.00; the other 5 are refused, whatever the interleaving.
        assert len(results) == 3
        assert len(errors) == 5
        assert all(isinstance(error, RefundExceedsRemaining) for error in errors)
        assert ledger.refunded_total("ORD-1008") == D("90.00")
        refunds = ledger.list_refunds("ORD-1008")
        assert sorted(r.key for r in refunds) == sorted(r.key for r in results)
        # Each record's running total is distinct: the three refunds were serialized.
        assert sorted(r.refunded_total for r in refunds) == [D("30.00"), D("60.00"), D("90.00")]

    def test_approval_limit_refuses_what_would_take_the_refunded_total_above_it(self, ledger):
        ledger.record_refund("run-1:c1", "ORD-1009", D("99.00"), "USD", "x", limit=D("291.50"),
                             approval_limit=D("100"))
        with pytest.raises(RefundNeedsApproval) as info:
            ledger.record_refund("run-2:c1", "ORD-1009", D("99.00"), "USD", "x", limit=D("291.50"),
                                 approval_limit=D("100"))
        assert (info.value.order_id, info.value.requested, info.value.refunded, info.value.approval_limit) == (
            "ORD-1009", D("99.00"), D("99.00"), D("100"))
        assert "100" in str(info.value) and "198.00" in str(info.value)
        # Up to the limit exactly is fine; without an approval limit (an approved call) the order limit alone counts.
        ledger.record_refund("run-2:c2", "ORD-1009", D("1.00"), "USD", "x", limit=D("291.50"), approval_limit=D("100"))
        approved = ledger.record_refund("run-2:c3", "ORD-1009", D("150.00"), "USD", "x", limit=D("291.50"))
        assert approved.refunded_total == D("250.00")
        assert ledger.refunded_total("ORD-1009") == D("250.00")
        assert [r.key for r in ledger.list_refunds("ORD-1009")] == ["run-1:c1", "run-2:c2", "run-2:c3"]

    def test_the_order_limit_is_checked_before_the_approval_limit(self, ledger):
        with pytest.raises(RefundExceedsRemaining):
            ledger.record_refund("r:1", "ORD-1010", D("120.00"), "USD", "x", limit=D("100.00"),
                                 approval_limit=D("50"))

    def test_a_recorded_key_is_returned_whatever_the_approval_limit(self, ledger):
        first = ledger.record_refund("run-1:c1", "ORD-1011", D("150.00"), "USD", "x", limit=D("200.00"))
        again = ledger.record_refund("run-1:c1", "ORD-1011", D("150.00"), "USD", "x", limit=D("200.00"),
                                     approval_limit=D("100"))
        assert again == first and ledger.refunded_total("ORD-1011") == D("150.00")

    def test_racing_unapproved_refunds_never_pass_the_approval_limit(self, ledger):
        """Two (here eight) runs that each passed their approval check: the ledger lets one 99 through."""
        results, errors = race(
            8, lambda i: ledger.record_refund(f"run-{i}:call-1", "ORD-1012", D("99.00"), "USD", "x",
                                              limit=D("291.50"), approval_limit=D("100")))
        assert len(results) == 1 and len(errors) == 7
        assert all(isinstance(error, RefundNeedsApproval) for error in errors)
        assert ledger.refunded_total("ORD-1012") == D("99.00")
        assert len(ledger.list_refunds("ORD-1012")) == 1

    def test_outbox_is_idempotent_per_key(self, ledger):
        first = ledger.record_message("run-1:call-1", "amelia.chen@example.com", "Your refund is on its way.")
        again = self.reopen(ledger).record_message("run-1:call-1", "amelia.chen@example.com", "ignored")
        assert again == first
        assert first.message_id.startswith("MSG-")
        other = ledger.record_message("run-1:call-2", "amelia.chen@example.com", "Second note.")
        assert other.message_id != first.message_id
        assert ledger.list_messages("amelia.chen@example.com") == [first, other]
        assert ledger.list_messages("nobody@example.com") == []

    def test_racing_messages_with_one_key_store_one(self, ledger):
        results, errors = race(6, lambda i: ledger.record_message("run-m:call-1", "a@example.com", f"text {i}"))
        assert errors == []
        assert len({r.message_id for r in results}) == 1
        assert len(ledger.list_messages("a@example.com")) == 1


class TestSqliteLedger(LedgerContract):
    """The contract on a real SQLite file."""

    @pytest.fixture
    def ledger(self, tmp_path: Path) -> SqliteLedger:
        return SqliteLedger(tmp_path / "nested" / "dir" / "ledger.sqlite3")

    def reopen(self, ledger: SqliteLedger) -> SqliteLedger:
        return SqliteLedger(ledger.path)

    def test_creates_parent_folders_and_uses_wal(self, tmp_path: Path):
        import sqlite3

        path = tmp_path / "a" / "b" / "ledger.sqlite3"
        SqliteLedger(path)
        assert path.exists()
        with sqlite3.connect(path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    def test_amounts_are_stored_as_decimal_strings(self, ledger: SqliteLedger):
        import sqlite3

        ledger.record_refund("r:1", "ORD-1010", D("19.90"), "USD", "x", limit=D("100.00"))
        with sqlite3.connect(ledger.path) as conn:
            row = conn.execute("SELECT amount, typeof(amount), refunded_total FROM refunds").fetchone()
        assert row == ("19.90", "text", "19.90")

    def test_a_locked_database_makes_the_refund_wait_then_see_the_new_balance(self, ledger: SqliteLedger):
        """Another writer holds the write lock while it records 80.00: our 30.00 (limit 100) must be refused."""
        import sqlite3

        other = sqlite3.connect(ledger.path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute(
                "INSERT INTO refunds VALUES ('x:1', 'RF-X', 'ORD-1011', '80.00', 'USD', 'x', '80.00', '2026-01-01')"
            )
            results: list = []
            worker = threading.Thread(target=lambda: results.append(_try_refund(ledger)))
            worker.start()
            worker.join(timeout=0.5)
            assert worker.is_alive(), "the refund must wait for the write lock (busy timeout 30 s), not fail"
            other.execute("COMMIT")
            worker.join(timeout=60)
        finally:
            other.close()
        assert len(results) == 1
        assert isinstance(results[0], RefundExceedsRemaining)
        assert ledger.refunded_total("ORD-1011") == D("80.00")


def _try_refund(ledger: SqliteLedger):
    try:
        return ledger.record_refund("y:1", "ORD-1011", D("30.00"), "USD", "x", limit=D("100.00"))
    except RefundExceedsRemaining as exc:
        return exc


class TestLedgerSelection:
    """Which backend the settings select (docs/internals.md settings table)."""

    @pytest.fixture(autouse=True)
    def _clean(self, monkeypatch):
        for name in ("REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING",
                     "REFUND_LEDGER_TABLE_NAME", "REFUND_LEDGER_PATH", "AZURE_CLIENT_ID"):
            monkeypatch.delenv(name, raising=False)

    def test_default_is_sqlite_under_the_app_folder(self):
        assert ledger_config() == LedgerConfig("sqlite", str((APP_DIR / ".local/refund-ledger.sqlite3").resolve()))
        assert APP_DIR == Path(__file__).resolve().parents[2]  # the folder holding function_app.py

    def test_relative_and_absolute_paths(self, monkeypatch, tmp_path):
        monkeypatch.setenv("REFUND_LEDGER_PATH", "some/dir/l.sqlite3")
        assert ledger_config().location == str((APP_DIR / "some/dir/l.sqlite3").resolve())
        monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "abs.sqlite3"))
        ledger = get_ledger()
        assert isinstance(ledger, SqliteLedger)
        assert ledger.path == tmp_path / "abs.sqlite3"
        assert get_ledger() is ledger  # one per process per configuration
        monkeypatch.setenv("REFUND_LEDGER_PATH", "  ")  # blank counts as unset
        assert ledger_config().location == str((APP_DIR / ".local/refund-ledger.sqlite3").resolve())

    def test_connection_string_selects_the_table_backend(self, monkeypatch):
        monkeypatch.setenv("REFUND_LEDGER_TABLE_CONNECTION_STRING",
                           "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
                           "TableEndpoint=http://127.0.0.1:1/devstoreaccount1;")
        config = ledger_config()
        assert (config.kind, config.table_name) == ("table_connection_string", "refunds")
        assert "a2V5" not in repr(config)
        monkeypatch.setenv("REFUND_LEDGER_TABLE_NAME", "ledger2")
        ledger = get_ledger()  # no I/O until first use
        assert isinstance(ledger, TableLedger)
        assert ledger.table_client.table_name == "ledger2"

    def test_endpoint_selects_managed_identity_and_wins(self, monkeypatch):
        from azure.identity import DefaultAzureCredential

        monkeypatch.setenv("REFUND_LEDGER_TABLE_CONNECTION_STRING", "UseDevelopmentStorage=true")
        monkeypatch.setenv("REFUND_LEDGER_TABLE_ENDPOINT", "https://stexample.table.core.windows.net")
        monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
        config = ledger_config()
        assert config == LedgerConfig("table_endpoint", "https://stexample.table.core.windows.net", "refunds",
                                      "00000000-0000-0000-0000-000000000001")
        ledger = get_ledger()
        assert isinstance(ledger, TableLedger)
        assert ledger.table_client.url.startswith("https://stexample.table.core.windows.net")
        assert isinstance(ledger.table_client.credential, DefaultAzureCredential)
