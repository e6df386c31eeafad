"""The fixture app of the golden histories: a small shop agent with activity tools, an approval and a handoff.

``python -m local_runtime --app-dir tests/golden/app`` hosts it (tests/golden/record.py does, with the model
activity pointed at the scripted model server); tests/unit/test_golden_histories.py imports it and replays every
recorded history through it. A change here that changes what the agent asks of Durable Functions breaks those
tests, as it would break runs in flight: record the histories again only for an intended, compatible change.

* ``support`` (the only registered agent): tools ``lookup_order``, ``check_stock``, ``shipping_status`` and
  ``refund_order`` (approval above the run setting ``REFUND_APPROVAL_THRESHOLD``, default 100), handoff to
  ``refunds``;
* ``refunds``: tool ``refund_order``.

:func:`create_app` also builds the changed apps the negative tests use (its keyword arguments); ``app`` is the app
as recorded.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from agents import Agent, Runner, function_tool, handoff

import durable_agents
from durable_agents import ToolCall, activity_tool, run_setting

ORDERS = {
    "ORD-1": {"order_id": "ORD-1", "item": "keyboard", "sku": "SKU-1", "total": "250.00", "status": "delivered"},
    "ORD-2": {"order_id": "ORD-2", "item": "monitor", "sku": "SKU-2", "total": "180.00", "status": "shipped"},
    "ORD-3": {"order_id": "ORD-3", "item": "cable", "sku": "SKU-3", "total": "20.00", "status": "delivered"},
}
STOCK = {"SKU-1": 4, "SKU-2": 0, "SKU-3": 120}


def _lookup(order_id: str) -> dict[str, Any]:
    return ORDERS.get(order_id) or {"error": f"unknown order {order_id}", "code": "not_found"}


async def _needs_approval(ctx: Any, args: dict[str, Any], call_id: str) -> bool:
    return Decimal(str(args.get("amount", "0"))) > Decimal(run_setting("REFUND_APPROVAL_THRESHOLD", "100") or "100")


def create_app(*, lookup_name: str = "lookup_order", lookup_as_activity: bool = True,
               audit_run: bool = False, stock_check_first: bool = False) -> durable_agents.App:
    """The fixture app; the defaults give the app the histories were recorded with.

    ``lookup_name`` renames the order lookup tool (and its activity), ``lookup_as_activity=False`` makes it a
    plain function tool that runs inside the orchestrator (no activity), ``audit_run=True`` makes the orchestrator
    ask the agent for a one-line audit note after the run (one more model call), ``stock_check_first=True`` makes
    the ``review`` workflow check the stock before it asks for the approval instead of after.
    """
    bp = durable_agents.Blueprint()

    def lookup_order(order_id: str) -> dict[str, Any]:
        """Look an order up by its id (ORD-<n>)."""
        return _lookup(order_id)

    lookup = (activity_tool(bp, name=lookup_name)(lookup_order) if lookup_as_activity
              else function_tool(lookup_order, name_override=lookup_name))

    @activity_tool(bp)
    def check_stock(sku: str) -> dict[str, Any]:
        """How many items of a SKU are in stock."""
        return {"sku": sku, "in_stock": STOCK.get(sku, 0)}

    @activity_tool(bp)
    def shipping_status(order_id: str) -> dict[str, Any]:
        """Where an order's parcel is."""
        order = ORDERS.get(order_id)
        return {"order_id": order_id, "status": order["status"] if order else "unknown"}

    @activity_tool(bp, needs_approval=_needs_approval)
    def refund_order(order_id: str, amount: str, call: ToolCall) -> dict[str, Any]:
        """Refund (part of) an order; large refunds need a person's approval."""
        return {"order_id": order_id, "refunded": amount, "refund_id": f"RF-{call.run_id}-{call.call_id}"}

    refunds = Agent(name="refunds", instructions="You handle refunds.", tools=[refund_order])
    support = Agent(
        name="support",
        instructions="You are the shop's support agent. Look orders up before you act.",
        tools=[lookup, check_stock, shipping_status, refund_order],
        handoffs=[handoff(refunds)],
    )

    @bp.agent(support, description="Shop support: orders, stock, shipping, refunds.",
              settings=("REFUND_APPROVAL_THRESHOLD",))
    def support_run(context: Any) -> Any:
        result = Runner.run_sync(support, context.get_input()["input"], max_turns=20)
        if audit_run:
            Runner.run_sync(support, "Write a one-line audit note of this conversation.")
        return result

    @bp.workflow("review", description="The support agent answers; a person approves the answer; then a stock check.",
                 agents=(support,))
    def review_run(context: Any) -> Any:
        def stock_check() -> Any:
            call = {"runId": context.instance_id, "callId": "workflow-stock", "tool": "check_stock", "agent": "review"}
            return context.call_activity("check_stock", {"args": {"sku": "SKU-1"}, "call": call})

        stock = (yield stock_check()) if stock_check_first else None
        answer = Runner.run_sync(support, context.get_input()["input"], max_turns=20).final_output
        context.set_custom_status({"stage": "waiting for the reviewer"})
        decision = yield context.request_approval("Send this answer to the customer?", {"answer": answer},
                                                  step="answer")
        if stock is None:
            stock = yield stock_check()
        return {"answer": answer, "decision": decision["decision"], "inStock": stock["in_stock"]}

    app = durable_agents.App(http_auth_level="ANONYMOUS")
    app.register_functions(bp)
    return app


app = create_app()
