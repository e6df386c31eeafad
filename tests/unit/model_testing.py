"""Helpers shared by the model tests (test_model_config, test_model_activity, test_demo_model, test_support_demo).

* :func:`reset_model_state` - unset the model settings and reset the process state of the model modules (the
  one demo warning, the client cache, the demo responders), for an autouse fixture.
* :class:`ActivityBridgeModel` - sends every model call through ``invoke_model``'s JSON path, as the durable
  orchestrator does.
* :data:`ORDERS`, :func:`support_tools`, :func:`run_support` - fake support tools (``function_tool``s that log
  their calls) and an SDK run of an agent using them through the bridge.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agents import Agent, RunConfig, Runner, function_tool
from agents.models.interface import Model

from durable_agents import _demo, _model_config
from durable_agents._model_activity import invoke_model
from durable_agents._model_io import decode_model_response, encode_model_request

MODEL_SETTINGS = ("AGENT_MODEL", "OPENAI_API", "OPENAI_BASE_URL", "OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
                  "AZURE_OPENAI_API_VERSION", "AZURE_CLIENT_ID")


def reset_model_state(monkeypatch: Any) -> None:
    """Unset every model setting; fresh demo warning, client cache and (empty) demo responders for one test."""
    for name in MODEL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(_model_config, "_demo_warned", False)
    monkeypatch.setattr(_model_config, "_clients", {})
    monkeypatch.setattr(_demo, "_responders", [])


class ActivityBridgeModel(Model):
    """Sends every model call through invoke_model's JSON path, as the durable orchestrator does."""

    def __init__(self):
        self.results = []

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
        request = encode_model_request(
            model=None, system_instructions=system_instructions, input=input, model_settings=model_settings,
            tools=tools, output_schema=output_schema, handoffs=handoffs, previous_response_id=previous_response_id,
            conversation_id=conversation_id, prompt=prompt)
        result = await invoke_model(json.loads(json.dumps({"model": None, "request": request}, allow_nan=False)))
        self.results.append(result)
        if not result["ok"]:
            raise RuntimeError(f"model error: {result['error']}")
        return decode_model_response(json.loads(json.dumps(result["response"])))

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


ORDERS = {
    "ORD-1042": {"id": "ORD-1042", "customer_email": "sam.lee@example.com", "status": "delivered",
                 "currency": "EUR", "total": "59.90", "items": [{"name": "Ceramic mug set", "quantity": 1}],
                 "created_at": "2025-09-01T10:00:00Z"},
    "ORD-1001": {"id": "ORD-1001", "customer_email": "jordan.rivera@example.com", "status": "delivered",
                 "currency": "USD", "total": "291.50", "items": [{"name": "Headphones", "quantity": 1}],
                 "created_at": "2025-08-29T14:21:07Z"},
}


def support_tools(log, *, refund_needs_approval=False, refund_fails=False):
    """Fake ``lookup_order`` / ``list_orders`` / ``refund_order`` / ``send_message`` tools over :data:`ORDERS`;
    each call is appended to ``log`` as a tuple (tool name, arguments...)."""

    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        log.append(("lookup_order", order_id))
        if order_id not in ORDERS:
            return json.dumps({"error": f"order {order_id} not found"})
        return json.dumps(ORDERS[order_id])

    @function_tool
    def list_orders(customer_email: str) -> str:
        """List a customer's orders."""
        log.append(("list_orders", customer_email))
        return json.dumps({"orders": [o for o in ORDERS.values() if o["customer_email"] == customer_email]})

    # Failures read like the durable tool errors the model sees (docs/internals.md "Activities").
    @function_tool(needs_approval=refund_needs_approval,
                   failure_error_function=lambda ctx, exc: f"Tool 'refund_order' failed: {exc}")
    def refund_order(order_id: str, amount: str, reason: str) -> str:
        """Refund an order."""
        log.append(("refund_order", order_id, amount, reason))
        if refund_fails:
            raise RuntimeError("ledger unavailable")
        return json.dumps({"refund_id": "RF-0001", "order_id": order_id, "amount": amount, "status": "refunded"})

    @function_tool
    def send_message(customer_email: str, text: str) -> str:
        """Write to a customer."""
        log.append(("send_message", customer_email, text))
        return json.dumps({"message_id": "MSG-1", "status": "sent"})

    return [lookup_order, list_orders, refund_order, send_message]


def run_support(text, log, **tool_options):
    """Run an agent named ``support`` with :func:`support_tools` on ``text`` through :class:`ActivityBridgeModel`;
    returns ``(result, bridge)``."""
    bridge = ActivityBridgeModel()
    agent = Agent(name="support", instructions="support", tools=support_tools(log, **tool_options), model=bridge)
    result = asyncio.run(Runner.run(agent, text, run_config=RunConfig(tracing_disabled=True)))
    return result, bridge
