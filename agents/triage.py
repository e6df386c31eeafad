"""The ``triage`` workflow: chaining and routing. A triage agent classifies a customer message (structured output),
then deterministic code hands it to the specialist for its category.

* ``refund`` (refunds and questions about an order): the ``support`` agent (``agents/support.py``; large refunds
  wait for a person's approval, decided on this run like on a support run);
* ``shipping`` (where a parcel is, when it arrives): the ``shipping`` agent (``agents/shipping.py``);
* ``other``: a polite fixed answer, no further model call.

Progress is published with ``context.set_custom_status``: ``stage`` (``classifying`` → ``answering`` → ``done``),
``category``, ``specialist``. The output is ``{"answer", "route": {"category", "orderId", "summary",
"specialist"}}``.
"""

from __future__ import annotations

from typing import Any, Literal

from agents import Agent, Runner
from pydantic import BaseModel, Field

import durable_agents

from .shipping import shipping_agent
from .support import support_agent
from .workflows_demo import workflows_demo_responder

__all__ = ["FALLBACK_ANSWER", "TriageDecision", "bp", "route_for", "triage_agent", "triage_workflow"]

Category = Literal["refund", "shipping", "other"]


class TriageDecision(BaseModel):
    """The triage agent's structured output."""

    category: Category = Field(description="refund: refunds, returns, damaged items or any question about an "
                                           "order's contents or payment; shipping: where a parcel is or when it "
                                           "arrives; other: anything else")
    order_id: str | None = Field(description="The order id the message names (like ORD-1001), or null")
    summary: str = Field(description="One sentence: what the customer wants")


INSTRUCTIONS = """\
You are the triage desk of an online store. Classify the customer's message; do not answer it.
- category "refund" for refunds, returns, damaged or wrong items and other questions about an order itself;
  "shipping" for where a parcel is, delays and delivery dates; "other" for anything else.
- order_id: the order id the message names, written like ORD-1001, or null.
- summary: one short sentence saying what the customer wants."""

triage_agent = Agent(name="triage", instructions=INSTRUCTIONS, output_type=TriageDecision)

FALLBACK_ANSWER = ("Thank you for your message. Our assistants can help with refunds, questions about an order and "
                   "deliveries; for anything else a member of our team will answer you by email within two "
                   "business days.")
"""The answer for category ``other`` (no specialist)."""

_SPECIALISTS: dict[str, Agent[Any]] = {"refund": support_agent, "shipping": shipping_agent}

bp = durable_agents.Blueprint(demo_responder=workflows_demo_responder)


def route_for(category: str) -> Agent[Any] | None:
    """The specialist agent for a triage ``category`` (``refund`` → support, ``shipping`` → shipping), or ``None``
    (answered with :data:`FALLBACK_ANSWER`)."""
    return _SPECIALISTS.get(category)


def _specialist_input(message: str, decision: TriageDecision) -> str:
    note = f"(Triage: {decision.summary}"
    if decision.order_id:
        note += f" Order id: {decision.order_id}."
    return f"{message}\n\n{note})"


@bp.workflow(
    "triage",
    description="Classifies a customer message and routes it: refunds and orders to support, deliveries to "
                "shipping, anything else to a polite answer.",
    agents=(triage_agent, support_agent, shipping_agent),
    settings=("REFUND_APPROVAL_THRESHOLD",),
)
def triage_workflow(context):
    """Orchestrator of one ``triage`` run (module docstring); input ``{"agent", "input", "settings"}``."""
    message = str(context.get_input()["input"])
    context.set_custom_status({"stage": "classifying"})
    decision: TriageDecision = Runner.run_sync(triage_agent, message).final_output
    specialist = route_for(decision.category)
    route = {"category": decision.category, "orderId": decision.order_id, "summary": decision.summary,
             "specialist": specialist.name if specialist is not None else None}
    if specialist is None:
        answer = FALLBACK_ANSWER
    else:
        context.set_custom_status({"stage": "answering", "category": decision.category,
                                   "specialist": specialist.name})
        answer = str(Runner.run_sync(specialist, _specialist_input(message, decision)).final_output)
    context.set_custom_status({"stage": "done", "category": decision.category, "specialist": route["specialist"]})
    return {"answer": answer, "route": route}
