"""Outside a durable run (a plain ``Runner.run`` in a script or a notebook) activity tools run in-process; the
customer they act for comes from the SDK run context (``context={"customer": ...}``), so the store's tools work
there too, and refuse without one."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import pytest
from agents import Agent, Runner
from agents.testing import ScriptedModel

import activities
from durable_agents.testing import assistant_message, function_call

CUSTOMER = "jordan.rivera@example.com"


@dataclass
class SupportContext:
    customer: str


@pytest.fixture(autouse=True)
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))


def _run(context):
    model = ScriptedModel([
        [function_call("lookup_order", {"order_id": "ORD-1001"}, call_id="c1")],
        [assistant_message("done")],
    ])
    agent = Agent(name="support", instructions="help", model=model, tools=[activities.lookup_order])
    # asyncio.run closes its loop (Runner.run_sync leaves one for the garbage collector, see test_runner_lifecycle).
    result = asyncio.run(Runner.run(agent, "Where is ORD-1001?", context=context))
    outputs = [item for item in result.new_items if getattr(item, "type", "") == "tool_call_output_item"]
    return json.loads(outputs[0].output)


@pytest.mark.parametrize("context", [{"customer": CUSTOMER}, SupportContext(CUSTOMER)], ids=["mapping", "object"])
def test_a_plain_run_acts_for_the_customer_of_its_context(context):
    assert _run(context)["id"] == "ORD-1001"


@pytest.mark.parametrize("context", [None, {"customer": "amelia.chen@example.com"}, {"customer": "  "}])
def test_a_plain_run_without_the_orders_customer_is_refused(context):
    answer = _run(context)
    assert answer["code"] in ("no_customer", "order_not_found") and "id" not in answer
    assert answer["code"] == ("order_not_found" if context and context["customer"].strip() else "no_customer")
