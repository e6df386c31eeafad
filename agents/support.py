"""The ``support`` agent: customer support for an online store, run durably.

The agent is a plain OpenAI Agents SDK ``Agent`` whose tools are activity tools (``activities/``); its
orchestrator calls ``Runner.run_sync`` exactly as outside Durable Functions, and ``bp.agent`` makes every model call
and tool call an activity (docs/internals.md). Refunds above ``REFUND_APPROVAL_THRESHOLD`` wait for a person.
"""

from __future__ import annotations

from agents import Agent, Runner

import durable_agents
from activities import list_orders, lookup_order, refund_order, send_message

from .support_demo import support_demo_responder

INSTRUCTIONS = """\
You are the customer support agent of an online store. Be brief, friendly and exact.
- Look orders up with lookup_order before you act on them; list a customer's orders with list_orders.
- Refund with refund_order only what the customer asks for and never more than the order's refundable amount.
  Give a short reason. Large refunds wait for a person's approval: if a refund is rejected or times out, tell the
  customer so, with the reviewer's comment, and do not retry it.
- When you refunded something or a customer needs to hear from us, write to them with send_message.
- Amounts are decimals in the order's currency; always name the currency.
- End with a short summary of what you did."""

support_agent = Agent(
    name="support",
    instructions=INSTRUCTIONS,
    tools=[lookup_order, list_orders, refund_order, send_message],
)

bp = durable_agents.Blueprint(demo_responder=support_demo_responder)


@bp.agent(
    support_agent,
    description="Customer support for the online store: looks up and lists orders, refunds, writes to customers.",
    settings=("REFUND_APPROVAL_THRESHOLD",),
)
def support_agent_run(context):
    """Orchestrator of one ``support`` run: input ``{"agent", "input", "settings"}`` (docs/internals.md)."""
    return Runner.run_sync(support_agent, context.get_input()["input"])
