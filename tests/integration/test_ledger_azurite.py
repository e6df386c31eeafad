"""The Azure Table refund ledger against the real Azurite emulator (Table service on a free loopback port).

Runs the shared :class:`~tests.unit.test_ledger.LedgerContract` (the same cases as the SQLite backend), a
forced optimistic-concurrency conflict, and the support tools end to end with
``REFUND_LEDGER_TABLE_CONNECTION_STRING`` pointing at Azurite. Without Azurite these tests skip locally and FAIL
when ``CI`` is set (install it with ``scripts/install-azurite.sh``).
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from azure.data.tables import TableClient

from activities.ledger import RefundExceedsRemaining, RefundNeedsApproval, TableLedger, get_ledger
from durable_agents import ToolCall
from tests.support.azurite import azurite_table, require_azurite
from tests.unit.test_ledger import LedgerContract, race

pytestmark = pytest.mark.azurite

D = Decimal
JORDAN = "jordan.rivera@example.com"  # ORD-1001


@pytest.fixture(scope="module")
def azurite(tmp_path_factory) -> str:
    """Connection string of an Azurite Table service running for this module."""
    command = require_azurite()
    with azurite_table(tmp_path_factory.mktemp("azurite"), command=command) as connection_string:
        yield connection_string


def _table_name() -> str:
    return "refunds" + uuid.uuid4().hex[:12]


class TestTableLedger(LedgerContract):
    """The ledger contract on Azure Table storage (Azurite); one fresh table per test."""

    @pytest.fixture
    def ledger(self, azurite: str) -> TableLedger:
        self._connection_string = azurite
        return TableLedger.from_connection_string(azurite, _table_name())

    def reopen(self, ledger: TableLedger) -> TableLedger:
        return TableLedger.from_connection_string(self._connection_string, ledger.table_client.table_name)

    def test_rows_hold_decimal_strings_in_one_partition_per_order(self, ledger: TableLedger):
        ledger.record_refund("run-1:call/1#?", "ORD-1012", D("19.90"), "GBP", "x", limit=D("25.30"))
        rows = list(ledger.table_client.query_entities("PartitionKey eq 'order|ORD-1012'"))
        by_kind = {row["Kind"]: row for row in rows}
        assert set(by_kind) == {"refund", "balance"}
        assert by_kind["refund"]["Amount"] == "19.90"
        assert by_kind["refund"]["Key"] == "run-1:call/1#?"  # characters Table keys forbid are encoded
        assert by_kind["balance"]["RefundedTotal"] == "19.90"
        assert by_kind["balance"]["RefundCount"] == 1

    def test_a_refund_committed_between_read_and_write_forces_a_retry(self, azurite: str):
        """Deterministic interleaving: after our ledger read the balance, another worker commits a refund.

        Our transaction carries the stale ETag, Azurite answers 412, and the retry sees the new balance and
        refuses the refund (60 + 50 > 100) instead of over-refunding.
        """
        name = _table_name()
        other = TableLedger.from_connection_string(azurite, name)
        other.record_refund("w2:seed", "ORD-1013", D("10.00"), "USD", "x", limit=D("100.00"))

        class Interleaved(TableLedger):
            reads = 0

            def _get(self, partition, row):
                value = super()._get(partition, row)
                if row == "balance":
                    type(self).reads += 1
                    if type(self).reads == 1:
                        other.record_refund("w2:call-1", "ORD-1013", D("50.00"), "USD", "x", limit=D("100.00"))
                return value

        ours = Interleaved(TableClient.from_connection_string(azurite, table_name=name))
        with pytest.raises(RefundExceedsRemaining) as info:
            ours.record_refund("w1:call-1", "ORD-1013", D("50.00"), "USD", "x", limit=D("100.00"))
        assert Interleaved.reads == 2  # read, conflict, read again
        assert info.value.remaining == D("40.00")
        assert ours.refunded_total("ORD-1013") == D("60.00")
        assert sorted(r.key for r in ours.list_refunds("ORD-1013")) == ["w2:call-1", "w2:seed"]

    def test_an_unapproved_refund_committed_between_read_and_write_is_counted_against_the_approval_limit(
            self, azurite: str):
        """Two runs each passed their approval check for 99 on one order: after our read, the other commits its
        99. Our stale ETag gets 412; the retry sees 99 refunded and refuses (99 + 99 > 100) instead of letting 198
        through unapproved."""
        name = _table_name()
        other = TableLedger.from_connection_string(azurite, name)
        other.record_refund("w2:seed", "ORD-1015", D("0.50"), "USD", "x", limit=D("291.50"))

        class Interleaved(TableLedger):
            reads = 0

            def _get(self, partition, row):
                value = super()._get(partition, row)
                if row == "balance":
                    type(self).reads += 1
                    if type(self).reads == 1:
                        other.record_refund("w2:call-1", "ORD-1015", D("99.00"), "USD", "x", limit=D("291.50"),
                                            approval_limit=D("100"))
                return value

        ours = Interleaved(TableClient.from_connection_string(azurite, table_name=name))
        with pytest.raises(RefundNeedsApproval) as info:
            ours.record_refund("w1:call-1", "ORD-1015", D("99.00"), "USD", "x", limit=D("291.50"),
                               approval_limit=D("100"))
        assert Interleaved.reads == 2
        assert info.value.refunded == D("99.50")
        assert ours.refunded_total("ORD-1015") == D("99.50")

    def test_the_same_key_committed_by_a_racing_execution_between_reads_is_returned(self, azurite: str):
        """Deterministic interleaving: right after our first read, a racing execution of the SAME tool call
        commits the full refund. We must return its record, not refuse for lack of remaining amount."""
        name = _table_name()
        other = TableLedger.from_connection_string(azurite, name)

        class Interleaved(TableLedger):
            reads = 0

            def _get(self, partition, row):
                value = super()._get(partition, row)
                type(self).reads += 1
                if type(self).reads == 1:
                    other.record_refund("w:call-1", "ORD-1014", D("100.00"), "USD", "x", limit=D("100.00"))
                return value

        ours = Interleaved(TableClient.from_connection_string(azurite, table_name=name))
        record = ours.record_refund("w:call-1", "ORD-1014", D("100.00"), "USD", "x", limit=D("100.00"))
        assert record == other.list_refunds("ORD-1014")[0]
        assert ours.refunded_total("ORD-1014") == D("100.00")


class TestSupportToolsOnTableStorage:
    """The tools' ledger writes go to Azure Table storage when the connection-string setting is set."""

    @pytest.fixture
    def table_settings(self, azurite: str, monkeypatch) -> str:
        name = _table_name()
        monkeypatch.delenv("REFUND_LEDGER_TABLE_ENDPOINT", raising=False)
        monkeypatch.setenv("REFUND_LEDGER_TABLE_CONNECTION_STRING", azurite)
        monkeypatch.setenv("REFUND_LEDGER_TABLE_NAME", name)
        return name

    def test_refund_lookup_and_message_use_the_table(self, table_settings: str):
        import activities

        ledger = get_ledger()
        assert isinstance(ledger, TableLedger)
        assert ledger.table_client.table_name == table_settings
        payload = {"args": {"order_id": "ORD-1001", "amount": 41.5, "reason": "Left earcup crackles"},
                   "call": ToolCall("run-az", "call-1", "refund_order", "support", JORDAN).to_json()}
        first = activities.refund_order.run_activity(payload)
        assert first["status"] == "refunded"
        assert (first["amount"], first["refunded_total"], first["refundable_amount"]) == ("41.50", "41.50", "250.00")
        assert activities.refund_order.run_activity(payload) == first  # re-delivered activity
        looked_up = activities.lookup_order.run_activity({
            "args": {"order_id": "ORD-1001"}, "call": ToolCall("run-az", "call-0", "lookup_order", "support",
                                                               JORDAN).to_json()})
        assert (looked_up["refunded_total"], looked_up["refundable_amount"]) == ("41.50", "250.00")
        sent = activities.send_message.run_activity({
            "args": {"text": "Refund of 41.50 USD issued."},
            "call": ToolCall("run-az", "call-2", "send_message", "support", JORDAN).to_json(),
        })
        assert sent["status"] == "sent"
        assert [m.message_id for m in ledger.list_messages(JORDAN)] == [sent["message_id"]]

    def test_racing_redeliveries_of_one_tool_call_refund_once(self, table_settings: str):
        import activities

        payload = {"args": {"order_id": "ORD-1003", "amount": 700, "reason": "Arrived broken"},
                   "call": ToolCall("run-az2", "call-7", "refund_order", "support", "amelia.chen@example.com",
                                    approved=True).to_json()}
        results, errors = race(6, lambda i: activities.refund_order.run_activity(payload))
        assert errors == []
        assert all(result == results[0] for result in results), results
        assert results[0]["amount"] == "700.00"
        assert get_ledger().refunded_total("ORD-1003") == D("700.00")
        assert len(get_ledger().list_refunds("ORD-1003")) == 1

    def test_racing_unapproved_refunds_of_runs_that_passed_their_checks_stop_at_the_threshold(self, table_settings):
        import activities

        def refund(i: int):
            return activities.refund_order.run_activity({
                "args": {"order_id": "ORD-1001", "amount": 99, "reason": "scratched"},
                "call": ToolCall(f"run-{i}", "call-1", "refund_order", "support", JORDAN).to_json()})

        results, errors = race(6, refund)
        assert errors == []
        assert sorted(r.get("status") or r["code"] for r in results) == ["approval_required"] * 5 + ["refunded"]
        assert get_ledger().refunded_total("ORD-1001") == D("99.00")
