"""The support agent's activity tools, registered on the blueprint :data:`bp` (``function_app.py`` registers it).

Tools (``durable_agents.ActivityTool`` objects, i.e. ``agents.FunctionTool``; Durable activity name = tool
name; the plain functions are in :mod:`activities.support` and as ``<tool>.function``):

Every tool acts for the run's customer (``ToolCall.customer``; rules in :mod:`activities.support`):

* :data:`lookup_order` ``(order_id)`` – one of the customer's orders plus ``refunded_total`` and
  ``refundable_amount``.
* :data:`list_orders` ``()`` – the customer's orders, newest first.
* :data:`refund_order` ``(order_id, amount, reason)`` – writes the refund ledger, idempotent per run + tool call;
  needs approval when the order's refunds (ledger + this run's earlier calls + this one) would exceed
  ``REFUND_APPROVAL_THRESHOLD``: the ``approval_check`` activity :data:`refund_approval` (Durable name
  ``refund_needs_approval``, function :func:`activities.support.refund_needs_approval`).
* :data:`send_message` ``(text)`` – records a message to the customer in the outbox, idempotent per run + call.

:data:`SUPPORT_TOOLS` lists the four in that order. Storage: :mod:`activities.ledger`; dataset:
:mod:`activities.orders`.
"""

from __future__ import annotations

import azure.durable_functions as df

from durable_agents import ActivityTool, ToolRetry, activity_tool, approval_check

from . import support

__all__ = [
    "SUPPORT_TOOLS",
    "bp",
    "list_orders",
    "lookup_order",
    "refund_approval",
    "refund_order",
    "send_message",
]

bp = df.Blueprint()
"""The blueprint holding the four tool activities."""

# Reads are cheap and safe to retry; writes are idempotent per run + call, so retrying them is safe too.
_RETRY = ToolRetry(max_attempts=3, first_retry_interval_ms=2000)

refund_approval = approval_check(bp, name="refund_needs_approval", retry=_RETRY,
                                 legacy=support.refund_needs_approval_v1)(support.refund_needs_approval)
"""``needs_approval`` of :data:`refund_order`: runs the ledger-reading check as the activity
``refund_needs_approval`` (a check that fails after its retries needs approval)."""

lookup_order: ActivityTool = activity_tool(bp, retry=_RETRY)(support.lookup_order)
list_orders: ActivityTool = activity_tool(bp, retry=_RETRY)(support.list_orders)
refund_order: ActivityTool = activity_tool(bp, needs_approval=refund_approval, retry=_RETRY)(support.refund_order)
send_message: ActivityTool = activity_tool(bp, retry=_RETRY)(support.send_message)

SUPPORT_TOOLS: list[ActivityTool] = [lookup_order, list_orders, refund_order, send_message]
"""The support agent's tools, for ``Agent(tools=SUPPORT_TOOLS)``."""
