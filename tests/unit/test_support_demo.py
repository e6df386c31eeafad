"""The support agent's demo script (agents/support_demo.py), played by the demo model through the responder hook.

The script is registered the way the app registers it (``Blueprint(demo_responder=...)`` in agents/support.py,
``App.register_functions``) or with ``add_demo_responder``; every model call goes through invoke_model's JSON
path with no model configured.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool
from agents.items import ModelResponse
from agents.models.interface import ModelTracing

import durable_agents
from durable_agents._demo import DEMO_PREFIX, DemoModel, DemoTurn, add_demo_responder, demo_responders
from durable_agents._model_activity import invoke_model
from durable_agents._model_io import decode_model_response, encode_model_request
from tests.unit.model_testing import ActivityBridgeModel, reset_model_state

REPO_ROOT = Path(__file__).resolve().parents[2]
support_demo = durable_agents.load_app_agents("support_demo", app_dir=REPO_ROOT).support_demo


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch):
    reset_model_state(monkeypatch)


@pytest.fixture
def support_script():
    """The support script as the process's one demo responder."""
    add_demo_responder(support_demo.support_demo_responder)
    return support_demo.support_demo_responder


@pytest.fixture
def real_store(monkeypatch, tmp_path):
    """The store's real tools over data/orders.json with a fresh SQLite ledger."""
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    for name in ("REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING", "ORDERS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    from activities import SUPPORT_TOOLS

    return {tool.name: tool for tool in SUPPORT_TOOLS}


# Fake tools with the store tools' signatures and result shapes, for a run that acts for one customer (the orders
# below are that customer's; the tools know no others).
ORDERS = {
    "ORD-1042": {"id": "ORD-1042", "status": "delivered", "currency": "EUR", "total": "59.90",
                 "items": [{"name": "Ceramic mug set", "quantity": 1, "unit_price": "59.90"}],
                 "created_at": "2025-09-01T10:00:00Z", "refunded_total": "0.00", "refundable_amount": "59.90"},
    "ORD-1001": {"id": "ORD-1001", "status": "delivered", "currency": "USD", "total": "291.50",
                 "items": [{"name": "Headphones", "quantity": 1, "unit_price": "291.50"}],
                 "created_at": "2025-08-29T14:21:07Z", "refunded_total": "0.00", "refundable_amount": "291.50"},
}


def support_tools(log, *, refund_needs_approval=False, refund_fails=False):
    """Fake ``lookup_order`` / ``list_orders`` / ``refund_order`` / ``send_message`` over :data:`ORDERS`; each
    call is appended to ``log`` as a tuple (tool name, arguments...)."""

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up one of the customer's orders."""
        log.append(("lookup_order", order_id))
        if order_id not in ORDERS:
            return json.dumps({"error": f"No order {order_id} was found for this customer",
                               "code": "order_not_found"})
        return json.dumps(ORDERS[order_id])

    @function_tool
    def list_orders() -> str:
        """List the customer's orders."""
        log.append(("list_orders",))
        orders = [{k: o[k] for k in ("id", "status", "currency", "total", "created_at")} for o in ORDERS.values()]
        return json.dumps({"count": len(orders), "orders": orders})

    # Failures read like the durable tool errors the model sees (docs/internals.md "Activities").
    @function_tool(needs_approval=refund_needs_approval,
                   failure_error_function=lambda ctx, exc: f"Tool 'refund_order' failed: {exc}")
    def refund_order(order_id: str, amount: str, reason: str) -> str:
        """Refund an order."""
        log.append(("refund_order", order_id, amount, reason))
        if refund_fails:
            raise RuntimeError("ledger unavailable")
        return json.dumps({"status": "refunded", "refund_id": "RF-0001", "order_id": order_id, "amount": amount})

    @function_tool
    def send_message(text: str) -> str:
        """Write to the customer."""
        log.append(("send_message", text))
        return json.dumps({"status": "sent", "message_id": "MSG-1"})

    return [lookup_order, list_orders, refund_order, send_message]


def run_support(text, log, **tool_options):
    """Run an agent named ``support`` with :func:`support_tools` on ``text`` through ``ActivityBridgeModel``;
    returns ``(result, bridge)``."""
    bridge = ActivityBridgeModel()
    agent = Agent(name="support", instructions="support", tools=support_tools(log, **tool_options), model=bridge)
    result = asyncio.run(Runner.run(agent, text, run_config=RunConfig(tracing_disabled=True)))
    return result, bridge


def _play(text, tools, *, customer, run_id="run-1", model_call=None):
    """Drive the demo model through invoke_model (or ``model_call``) with the real tool bodies until it answers,
    for a run that acts for ``customer``; every call counts as approved by a person (no approval step here: the
    threshold is tested through durable runs in test_refunds.py).

    Returns ``(executed, items, final_item)``: ``executed`` lists ``(tool, decoded args, output)``."""
    call_model = model_call or (lambda payload: asyncio.run(invoke_model(payload)))
    items = [{"role": "user", "content": text}]
    executed = []
    for _turn in range(6):
        request = encode_model_request(model=None, system_instructions="support", input=items,
                                       model_settings=ModelSettings(), tools=list(tools.values()),
                                       output_schema=None, handoffs=[])
        result = call_model(json.loads(json.dumps({"model": None, "request": request})))
        assert result["ok"] and result["demo"] is True
        response = decode_model_response(result["response"])
        items += response.to_input_items()
        item = response.output[0]
        if item.type == "message":
            return executed, items, item
        args = json.loads(item.arguments)
        # The arguments validate against the real tool's parameters (amount is a JSON number there).
        output = tools[item.name].run_activity(
            {"args": args, "call": {"runId": run_id, "callId": item.call_id, "tool": item.name, "agent": "support",
                                    "customer": customer, "approved": True}})
        executed.append((item.name, args, output))
        items.append({"type": "function_call_output", "call_id": item.call_id, "output": json.dumps(output)})
    raise AssertionError("the demo model did not finish in 6 turns")


# ---------------------------------------------------------------------------------------------------------------
# The script with fake tools, driven by the real SDK Runner
# ---------------------------------------------------------------------------------------------------------------


def test_demo_refund_flow(support_script):
    log = []
    result, bridge = run_support("Please refund order ORD-1042, it arrived broken", log)
    assert log[:2] == [("lookup_order", "ORD-1042"), ("refund_order", "ORD-1042", "59.90", "item arrived damaged")]
    assert log[2][0] == "send_message" and "59.90 EUR" in log[2][1]
    assert len(log) == 3
    assert result.final_output.startswith(DEMO_PREFIX)
    assert "RF-0001" in result.final_output and "59.90 EUR" in result.final_output
    assert all(r["ok"] and r["demo"] for r in bridge.results) and len(bridge.results) == 4


def test_demo_partial_refund_in_named_currency(support_script):
    log = []
    result, _ = run_support("Could you refund 25 EUR on ord-1042? The lid was missing.", log)
    assert log[1] == ("refund_order", "ORD-1042", "25.00", "customer request")
    assert "25.00 EUR" in result.final_output


def test_demo_lookup_and_unknown_order(support_script):
    log = []
    result, _ = run_support("Where is my order ORD-1001?", log)
    assert log == [("lookup_order", "ORD-1001")]
    assert result.final_output == (f"{DEMO_PREFIX} Order ORD-1001 is delivered: total 291.50 USD (Headphones), "
                                   "placed 2025-08-29T14:21:07Z.")
    log = []
    result, _ = run_support("Please refund ORD-9999", log)
    assert log == [("lookup_order", "ORD-9999")]
    assert "could not look up order ORD-9999" in result.final_output
    assert "order_not_found" in result.final_output


def test_demo_lists_the_customers_orders(support_script):
    for text in ("Which orders do I have?", "Show me my orders", "What orders does jordan.rivera@example.com have?"):
        log = []
        result, _ = run_support(text, log)
        assert log == [("list_orders",)], text
        assert result.final_output.startswith(f"{DEMO_PREFIX} Your orders: ")
        assert "ORD-1001 (delivered, 291.50 USD)" in result.final_output


def test_demo_reports_tool_errors(support_script):
    log = []
    result, _ = run_support("Refund ORD-1042 please", log, refund_fails=True)
    assert [entry[0] for entry in log] == ["lookup_order", "refund_order", "send_message"]
    assert "was not made" in result.final_output and "ledger unavailable" in result.final_output


def test_demo_reports_a_rejected_approval(support_script):
    log = []
    bridge = ActivityBridgeModel()
    agent = Agent(name="support", instructions="support", model=bridge,
                  tools=support_tools(log, refund_needs_approval=True))
    config = RunConfig(tracing_disabled=True)
    first = asyncio.run(Runner.run(agent, "Please refund order ORD-1001, it arrived broken", run_config=config))
    assert [i.raw_item.name for i in first.interruptions] == ["refund_order"]
    state = first.to_state()
    state.reject(first.interruptions[0], rejection_message="Refund rejected by reviewer: needs photos")
    second = asyncio.run(Runner.run(agent, state, run_config=config))
    assert ("refund_order", "ORD-1001", "291.50", "item arrived damaged") not in log
    assert "was not made" in second.final_output and "needs photos" in second.final_output
    assert log[-1][0] == "send_message" and "could not refund" in log[-1][1]


def test_demo_help_text_for_the_store(support_script):
    log = []
    result, _ = run_support("Hello there", log)
    assert log == [] and result.final_output == (
        f"{DEMO_PREFIX} I am the offline demo model (no model is configured). For the customer this run acts for I "
        "can look up an order (\"Where is ORD-1001?\"), list their orders (\"Which orders do I have?\") and refund "
        "an order (\"Please refund order ORD-1001, it arrived broken\"). Tools available: list_orders, "
        "lookup_order, refund_order, send_message. Configure AZURE_OPENAI_ENDPOINT or OPENAI_API_KEY / "
        "OPENAI_BASE_URL for a real model.")


def test_demo_only_calls_tools_it_was_given(support_script):
    response = asyncio.run(DemoModel().get_response(
        None, "Please refund order ORD-1042", ModelSettings(), [], None, [], ModelTracing.DISABLED))
    assert isinstance(response, ModelResponse)
    assert [item.type for item in response.output] == ["message"]
    assert "no model is configured" in response.output[0].content[0].text


def test_demo_is_deterministic(support_script):
    async def twice():
        args = (None, [{"role": "user", "content": "Where is ORD-1042?"}], ModelSettings(),
                support_tools([]), None, [], ModelTracing.DISABLED)
        return await DemoModel().get_response(*args), await DemoModel().get_response(*args)

    a, b = asyncio.run(twice())
    from durable_agents._model_io import encode_model_response

    assert json.dumps(encode_model_response(a)) == json.dumps(encode_model_response(b))
    assert a.output[0].call_id == "call_demo_1"


def test_the_script_leaves_other_agents_to_the_generic_answer(support_script):
    assert support_script(DemoTurn(user_text="What is the weather?")) is None
    assert support_script(DemoTurn(user_text="Hello", tools={"get_weather": {}})) is None
    assert support_script(DemoTurn(user_text="Where is ORD-7?")).kind == "final"  # names an order: the store's
    result = asyncio.run(invoke_model({"model": None, "request": encode_model_request(
        model=None, system_instructions=None, input="What is the weather?", model_settings=ModelSettings(),
        tools=[], output_schema=None, handoffs=[])}))
    text = decode_model_response(result["response"]).output[0].content[0].text
    assert text.startswith(f"{DEMO_PREFIX} I am the offline demo model") and "order" not in text.lower()


# ---------------------------------------------------------------------------------------------------------------
# The script with the store's real tools and ledger
# ---------------------------------------------------------------------------------------------------------------


def test_demo_with_the_real_support_tools_and_ledger(support_script, real_store):
    """The README demo offline: the demo model through invoke_model, the store's real tool bodies and ledger."""
    tools = real_store
    executed, items, item = _play("Please refund order ORD-1042, it arrived broken", tools,
                                  customer="sam.whitaker@example.org")
    assert [name for name, _, _ in executed] == ["lookup_order", "refund_order", "send_message"]
    refund_args, refund = executed[1][1], executed[1][2]
    assert refund_args == {"order_id": "ORD-1042", "amount": 668.0, "reason": "item arrived damaged"}
    raw_refund_call = next(i for i in items if i.get("type") == "function_call" and i["name"] == "refund_order")
    assert '"amount": 668.00' in raw_refund_call["arguments"]  # the decimal's digits, as a JSON number
    assert refund["status"] == "refunded" and refund["refund_id"]
    assert executed[2][1] == {"text": "Hello, we refunded 668.00 USD for your order ORD-1042 (refund "
                                      f"{refund['refund_id']}). It will appear on your statement within a few days."}
    assert executed[2][2]["status"] == "sent"
    final = item.content[0].text
    assert final.startswith(DEMO_PREFIX) and refund["refund_id"] in final and "668.00 USD" in final


def test_readme_walkthrough_through_the_apps_registration(real_store):
    """README "Walk-through": the support blueprint registers the script; the App's invoke_model plays it."""
    package = durable_agents.load_app_agents("support", app_dir=REPO_ROOT)
    assert package.support.bp.demo_responder is support_demo.support_demo_responder
    assert demo_responders() == ()
    app = durable_agents.App(http_api=False, app_dir=REPO_ROOT)
    app.register_functions(package.support.bp)
    assert demo_responders() == (support_demo.support_demo_responder,)
    activity = {f.get_function_name(): f for f in app.get_functions()}["invoke_model"].get_user_function()

    executed, items, item = _play("Please refund order ORD-1008, the keyboard arrived broken.", real_store,
                                  run_id="refund-1008", customer="jonas.becker@example.de",
                                  model_call=lambda payload: asyncio.run(activity(payload=payload)))
    calls = [i for i in items if i.get("type") == "function_call"]
    assert [(c["call_id"], c["name"]) for c in calls] == [
        ("call_demo_1", "lookup_order"), ("call_demo_2", "refund_order"), ("call_demo_3", "send_message")]
    assert executed[0][1] == {"order_id": "ORD-1008"}
    assert executed[1][1] == {"order_id": "ORD-1008", "amount": 384.5, "reason": "item arrived damaged"}
    assert calls[1]["arguments"] == '{"order_id": "ORD-1008", "amount": 384.50, "reason": "item arrived damaged"}'
    assert set(executed[2][1]) == {"text"} and executed[2][2]["status"] == "sent"
    assert item.content[0].text == (
        "[demo model] Refunded 384.50 EUR for order ORD-1008 (refund RF-D1E499A4E359). Still refundable on this "
        "order: 0.00 EUR. I wrote to the customer.")


def test_readme_walkthrough_as_a_durable_run_for_a_customer(real_store, monkeypatch):
    """README "Walk-through" as the local runtime plays it: a support run started with ``"customer":
    "jordan.rivera@example.com"`` asks to refund ORD-1001 291.50; the demo model looks it up, the refund waits for a
    person's approval (above the threshold), then it is refunded and the customer is written to."""
    from activities import bp as tools
    from activities.ledger import get_ledger
    from durable_agents import _demo
    from durable_agents import _runner as durable_runner
    from durable_agents.testing import ReplayHarness

    monkeypatch.setattr(_demo, "_responders", [])
    durable_runner.clear_session_cache()
    app = durable_agents.App(http_api=False, app_dir=REPO_ROOT)
    app.register_functions(tools)
    assert app.register_agent_modules("support") == ["support"]
    harness = ReplayHarness(app)  # no model: the app's invoke_model, no model configured: the demo model
    run = harness.start_run("support", "Please refund order ORD-1001 291.50, it arrived broken.",
                            customer="jordan.rivera@example.com", settings={"REFUND_APPROVAL_THRESHOLD": "100"})
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    assert pending["tool"] == "refund_order" and pending["arguments"] == {
        "order_id": "ORD-1001", "amount": 291.5, "reason": "item arrived damaged"}
    assert get_ledger().list_refunds("ORD-1001") == []
    harness.approve(run, pending["id"], "photos checked")
    harness.run()
    assert run.status == "Completed", run.output
    [refund] = get_ledger().list_refunds("ORD-1001")
    assert refund.amount == 291.5
    [message] = get_ledger().list_messages("jordan.rivera@example.com")
    assert "291.50 USD" in message.text and refund.refund_id in message.text
    assert run.output["finalOutput"] == (
        f"[demo model] Refunded 291.50 USD for order ORD-1001 (refund {refund.refund_id}). Still refundable on "
        "this order: 0.00 USD. I wrote to the customer.")
    durable_runner.clear_session_cache()
