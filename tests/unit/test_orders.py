"""The shipped order dataset (data/orders.json), its loader, the money parser and the read-only order tools."""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

import activities
from activities import orders as orders_module
from activities.orders import (
    APP_DIR,
    InvalidAmount,
    load_orders,
    normalize_email,
    normalize_order_id,
    parse_amount,
)
from activities.support import list_orders, lookup_order
from durable_agents import ToolCall

DATASET = APP_DIR / "data" / "orders.json"
JORDAN = "jordan.rivera@example.com"


@pytest.fixture(autouse=True)
def _settings(monkeypatch, tmp_path):
    """Default dataset; a fresh SQLite ledger per test."""
    monkeypatch.delenv("ORDERS_DATA_PATH", raising=False)
    for name in ("REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))


class TestDataset:
    """Acceptance criteria of the dataset (issue text)."""

    @pytest.fixture
    def data(self) -> list[dict]:
        return json.loads(DATASET.read_text(encoding="utf-8"))

    def test_size_customers_statuses_currencies(self, data):
        assert isinstance(data, list) and len(data) >= 60
        assert len({o["customer_email"] for o in data}) >= 12
        assert {"paid", "shipped", "delivered", "cancelled", "refunded"} <= {o["status"] for o in data}
        assert len({o["currency"] for o in data}) >= 2
        totals = [Decimal(o["total"]) for o in data]
        assert min(totals) < 20 and max(totals) > 500

    def test_every_order_is_well_formed(self, data):
        ids = [o["id"] for o in data]
        assert len(ids) == len(set(ids))
        for order in data:
            assert set(order) == {"id", "customer_email", "status", "currency", "total", "items", "created_at"}
            assert re.fullmatch(r"ORD-\d{4}", order["id"])
            assert normalize_email(order["customer_email"]) == order["customer_email"]
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", order["created_at"])
            # Money is a decimal string with exactly two places, never a JSON number.
            assert isinstance(order["total"], str) and re.fullmatch(r"\d+\.\d\d", order["total"])
            assert order["items"], order["id"]
            total = Decimal(0)
            for item in order["items"]:
                assert set(item) == {"sku", "name", "quantity", "unit_price"}
                assert isinstance(item["quantity"], int) and item["quantity"] >= 1
                assert isinstance(item["unit_price"], str) and re.fullmatch(r"\d+\.\d\d", item["unit_price"])
                total += Decimal(item["unit_price"]) * item["quantity"]
            assert total == Decimal(order["total"]), order["id"]

    def test_every_customer_has_several_orders_and_ids_follow_time(self, data):
        per_customer = Counter(o["customer_email"] for o in data)
        assert min(per_customer.values()) >= 2
        assert [o["created_at"] for o in data] == sorted(o["created_at"] for o in data)

    def test_json_has_no_floats(self):
        json.loads(DATASET.read_text(encoding="utf-8"), parse_float=lambda text: pytest.fail(f"float {text}"))


class TestLoader:
    def test_loads_once_per_path_and_indexes(self):
        book = load_orders()
        assert load_orders() is book
        assert len(book) >= 60
        order = book.get("ORD-1001")
        assert order is not None and order.total == Decimal(order.raw["total"])
        newest_first = [o.created_at for o in book.for_customer(order.customer_email)]
        assert newest_first == sorted(newest_first, reverse=True)

    def test_orders_data_path_setting_relative_and_absolute(self, monkeypatch, tmp_path):
        data = [{"id": "ORD-1", "customer_email": "A@Example.com", "status": "paid", "currency": "eur",
                 "total": "9.99", "items": [], "created_at": "2026-01-01T00:00:00Z"}]
        path = tmp_path / "o.json"
        path.write_text(json.dumps(data))
        monkeypatch.setenv("ORDERS_DATA_PATH", str(path))
        book = load_orders()
        assert len(book) == 1
        assert book.get("ORD-1").customer_email == "a@example.com"
        assert book.get("ORD-1").currency == "EUR"
        monkeypatch.setenv("ORDERS_DATA_PATH", "data/orders.json")  # relative to the app folder
        assert len(load_orders()) >= 60

    @pytest.mark.parametrize("bad", [
        {"not": "a list"},
        [{"id": "ORD-1", "customer_email": "a@example.com", "status": "lost", "currency": "EUR", "total": "1.00",
          "items": [], "created_at": "x"}],
        [{"id": "ORD-1", "customer_email": "a@example.com", "status": "paid", "currency": "EUR", "total": 1.0,
          "items": [], "created_at": "x"}],
        [{"id": "ORD-1", "customer_email": "a@example.com"}],
    ])
    def test_malformed_datasets_are_refused(self, tmp_path, bad):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(bad))
        with pytest.raises(ValueError):
            load_orders(path)

    def test_missing_file(self, tmp_path):
        with pytest.raises(FileNotFoundError):
            load_orders(tmp_path / "nope.json")


class TestMoneyAndIds:
    @pytest.mark.parametrize(("value", "currency", "expected"), [
        (25, "USD", "25.00"), (19.99, "USD", "19.99"), ("19.9", "EUR", "19.90"), ("  7 ", "GBP", "7.00"),
        (Decimal("0.01"), "USD", "0.01"), (0.1 + 0.2, "USD", None), (1500, "JPY", "1500"),
    ])
    def test_parse_amount(self, value, currency, expected):
        if expected is None:  # 0.30000000000000004: more than 2 places, refused, never rounded
            with pytest.raises(InvalidAmount):
                parse_amount(value, currency)
            return
        result = parse_amount(value, currency)
        assert isinstance(result, Decimal)
        assert str(result) == expected

    @pytest.mark.parametrize("value", [
        0, -5, "0.00", "-1", "abc", "", None, True, float("nan"), float("inf"), "NaN", "1e20", "10.005", [],
        {"amount": 1}, "12,50",
    ])
    def test_parse_amount_refusals(self, value):
        with pytest.raises(InvalidAmount):
            parse_amount(value, "EUR")

    def test_normalizers(self):
        assert normalize_order_id(" ord-1001 ") == "ORD-1001"
        assert normalize_order_id("1001") == "ORD-1001"
        assert normalize_order_id("ORDER 5") is None
        assert normalize_order_id(1001) is None
        assert normalize_email(" Amelia.Chen@Example.COM ") == "amelia.chen@example.com"
        for bad in ("amelia", "a@b", "a b@example.com", "@example.com", None, 5):
            assert normalize_email(bad) is None


def _for(customer: str | None, tool: str = "lookup_order") -> ToolCall:
    return ToolCall(run_id="run-1", call_id="c1", tool=tool, agent="support", customer=customer)


class TestLookupOrder:
    def test_returns_the_order_with_refund_figures(self):
        result = lookup_order("ORD-1001", _for(JORDAN))
        raw = load_orders().get("ORD-1001").raw
        assert {k: result[k] for k in ("id", "status", "currency", "total", "created_at")} == {
            k: raw[k] for k in ("id", "status", "currency", "total", "created_at")}
        assert result["items"] == [{k: item[k] for k in ("name", "quantity", "unit_price")} for item in raw["items"]]
        assert result["refunded_total"] == "0.00"
        assert result["refundable_amount"] == raw["total"]

    def test_cancelled_and_refunded_orders_have_nothing_refundable(self):
        book = load_orders()
        for status in ("cancelled", "refunded"):
            order = next(o for o in book._by_id.values() if o.status == status)
            result = lookup_order(order.id.lower(), _for(order.customer_email))
            assert result["status"] == status
            assert result["refundable_amount"] == "0.00"

    def test_unknown_and_malformed_ids_are_tool_errors(self):
        assert lookup_order("ORD-9999", _for(JORDAN)) == {"error": "No order ORD-9999 was found for this customer",
                                                          "code": "order_not_found"}
        result = lookup_order("my order", _for(JORDAN))
        assert result["code"] == "invalid_order_id" and "ORD-1001" in result["error"]

    def test_through_the_activity_tool(self):
        result = activities.lookup_order.run_activity({"args": {"order_id": "ORD-1002"},
                                                       "call": _for(JORDAN).to_json()})
        assert result["id"] == "ORD-1002" and "refundable_amount" in result
        # An activity input without a customer (e.g. written before runs had one) acts for nobody.
        legacy = activities.lookup_order.run_activity({"args": {"order_id": "ORD-1002"}, "call": {}})
        assert legacy["code"] == "no_customer"


class TestListOrders:
    def test_lists_newest_first_with_summaries(self):
        result = list_orders(_for("Jordan.Rivera@example.com", "list_orders"))
        assert set(result) == {"count", "orders"}
        assert result["count"] == len(result["orders"]) >= 2
        dates = [o["created_at"] for o in result["orders"]]
        assert dates == sorted(dates, reverse=True)
        first = result["orders"][0]
        assert set(first) == {"id", "status", "currency", "total", "created_at", "items"}
        order = load_orders().get(first["id"])
        assert order.customer_email == JORDAN
        assert first["items"] == [i["name"] for i in order.raw["items"]]
        assert first["total"] == order.raw["total"]

    def test_a_customer_without_orders_has_none(self):
        assert list_orders(_for("nobody@example.com", "list_orders")) == {"count": 0, "orders": []}

    def test_no_customer_is_a_tool_error(self):
        assert list_orders(_for(None, "list_orders"))["code"] == "no_customer"

    def test_tool_schema(self):
        assert activities.list_orders.name == "list_orders"
        assert activities.list_orders.params_json_schema["properties"] == {}


def test_dataset_path_default_is_relative_to_the_app_folder():
    assert orders_module.resolve_app_path("data/orders.json") == DATASET
    assert Path(orders_module.resolve_app_path("/abs/x.json")) == Path("/abs/x.json")
