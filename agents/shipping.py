"""The ``shipping`` agent: answers delivery questions with the read-only tool ``track_shipment``.

The tool is an activity tool on this module's blueprint, so ``app.register_agent_modules()`` registers it together
with the agent. It reads the store's orders (``data/orders.json`` through :mod:`activities.orders`): the order's
status says where the parcel is, and the store's standard delivery time (:data:`STANDARD_DELIVERY_DAYS` from the
order date) gives the expected delivery of orders still on their way. Like the support tools it acts for the run's
customer (``ToolCall.customer``): another customer's order is answered as an unknown one. The ``triage`` workflow
(``agents/triage.py``) routes delivery questions here; the agent also runs on its own
(``POST /api/agents/shipping/runs``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from agents import Agent, Runner

import durable_agents
from activities.orders import load_orders, normalize_email, normalize_order_id
from durable_agents import ToolCall

from .workflows_demo import workflows_demo_responder

__all__ = ["STANDARD_DELIVERY_DAYS", "bp", "shipping_agent", "shipping_agent_run", "track_shipment"]

STANDARD_DELIVERY_DAYS = 5
"""The store's standard delivery time in days from the order date (the expected delivery of open orders)."""

_SHIPMENT = {
    "paid": ("preparing", "The order is paid and is being prepared; it has not been handed to the carrier yet."),
    "shipped": ("in_transit", "The parcel has been handed to the carrier and is on its way."),
    "delivered": ("delivered", "The parcel has been delivered."),
    "cancelled": ("not_shipping", "The order was cancelled, so nothing will be shipped."),
    "refunded": ("not_shipping", "The order was refunded, so nothing more will be shipped."),
}

bp = durable_agents.Blueprint(demo_responder=workflows_demo_responder)


def track_shipment(order_id: str, tool_call: ToolCall) -> dict[str, Any]:
    """Track the delivery of one of the customer's orders: where the parcel is and when it should arrive.

    Returns {order_id, order_status, shipment_status, detail, placed_at, items, estimated_delivery}:
    shipment_status is preparing, in_transit, delivered or not_shipping; estimated_delivery (YYYY-MM-DD) is set
    for orders still on their way, else null. Or {error, code} with code no_customer, invalid_order_id or
    order_not_found.

    Args:
        order_id: The order id, for example "ORD-1063".
    """
    customer = normalize_email(tool_call.customer)
    if customer is None:
        return {"error": "This run acts for no customer, so it cannot track orders; the run must be started for a "
                         "customer", "code": "no_customer"}
    canonical = normalize_order_id(order_id)
    if canonical is None:
        return {"error": f"{order_id!r} is not an order id; order ids look like ORD-1001", "code": "invalid_order_id"}
    order = load_orders().get(canonical)
    if order is None or order.customer_email != customer:
        return {"error": f"No order {canonical} was found for this customer", "code": "order_not_found"}
    shipment_status, detail = _SHIPMENT.get(order.status, ("unknown", f"The order's status is {order.status}."))
    estimated = None
    if shipment_status in ("preparing", "in_transit"):
        placed = dt.datetime.fromisoformat(order.created_at.replace("Z", "+00:00"))
        estimated = (placed + dt.timedelta(days=STANDARD_DELIVERY_DAYS)).date().isoformat()
    return {
        "order_id": order.id,
        "order_status": order.status,
        "shipment_status": shipment_status,
        "detail": detail,
        "placed_at": order.created_at,
        "items": [str(item.get("name", "")) for item in order.raw.get("items") or []],
        "estimated_delivery": estimated,
    }


track_shipment_tool: durable_agents.ActivityTool = durable_agents.activity_tool(
    bp, retry=durable_agents.ToolRetry(max_attempts=3, first_retry_interval_ms=2000)
)(track_shipment)
"""``track_shipment`` as an activity tool (activity name ``track_shipment``); reads only, so retries are safe."""

INSTRUCTIONS = """\
You are the shipping desk of an online store. Be brief, friendly and exact.
- Look the delivery up with track_shipment before you answer; never guess where a parcel is.
- Say where the parcel is and, when the tool gives one, the expected delivery date.
- Without an order id, ask the customer for it (order ids look like ORD-1001).
- You act for one customer: track_shipment finds only their orders; an order it does not find is not theirs.
- You cannot refund or change orders; for that, point the customer to the support desk."""

shipping_agent = Agent(name="shipping", instructions=INSTRUCTIONS, tools=[track_shipment_tool])


@bp.agent(shipping_agent, description="Delivery questions for the online store: tracks an order's shipment.")
def shipping_agent_run(context):
    """Orchestrator of one ``shipping`` run: input ``{"agent", "input", "settings"}`` (docs/internals.md)."""
    return Runner.run_sync(shipping_agent, context.get_input()["input"])
