"""The ``resolution`` workflow: a planner agent proposes, a person approves, an executor agent carries it out.

1. The planner (tool ``lookup_order``, structured output :class:`ResolutionPlan`) proposes a plan for the customer's
   complaint: the order, the steps, a refund amount if any and the message for the customer.
2. A person approves or rejects the plan: ``context.request_approval(summary, plan, step="plan")`` is a pending
   approval of kind ``workflow`` (id ``plan-1``), decided through ``POST /api/runs/{id}/approvals/plan-1``; it
   expires after the run setting ``PLAN_APPROVAL_TIMEOUT`` (ISO 8601 duration, default ``P1D``).
3. Approved: the executor (tools ``lookup_order``, ``refund_order``, ``send_message``) carries out the plan; its
   refunds above ``REFUND_APPROVAL_THRESHOLD`` still wait for their own approval, as in the ``support`` agent.
   Rejected or expired: nothing is refunded; the customer gets a message (the ``send_message`` activity, called by
   the workflow itself) and the output says so.

The run acts for one customer (start body ``"customer"``, ``ToolCall.customer``): every tool, the workflow's own
``lookup_order`` / ``send_message`` calls included, sees only that customer's orders and writes only to them.

Progress is published with ``context.set_custom_status({"stage": ...})``: ``planning``, ``awaiting plan
approval``, ``executing`` or ``messaging customer``, then ``done``. The output (``GET /api/runs/{id}`` ``output``)
is ``{"outcome": "executed" | "rejected" | "expired", "orderId", "plan", "decision", "result", "customerMessage",
"summary"}``.
"""

from __future__ import annotations

from typing import Any

from agents import Agent, Runner
from pydantic import BaseModel, ConfigDict, Field

import durable_agents
from activities import lookup_order, refund_order, send_message
from durable_agents import ToolCall, run_setting

from .resolution_demo import (
    EXECUTOR_MARKER,
    PLAN_JSON_LABEL,
    PLANNER_MARKER,
    resolution_demo_responder,
)

__all__ = ["ResolutionPlan", "bp", "executor_agent", "planner_agent", "resolution_workflow"]

WORKFLOW = "resolution"
DEFAULT_PLAN_APPROVAL_TIMEOUT = "P1D"


class ResolutionPlan(BaseModel):
    """The planner's proposal: what to do about one order, for a person to approve before anything happens."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(description="The order the complaint is about, for example ORD-1001.")
    steps: list[str] = Field(description="What to do, in order, one short sentence per step.")
    refund_amount: float | None = Field(
        description="The amount to refund in the order's currency (at most its refundable amount), or null for no "
                    "refund.")
    customer_message: str = Field(description="The message the customer gets once the plan is carried out.")


PLANNER_INSTRUCTIONS = f"""\
{PLANNER_MARKER} of an online store. Read the customer's complaint, look the order up with lookup_order, and
propose a resolution plan; you do not act yourself, a person reviews your plan first. You act for one customer:
lookup_order finds only their orders; an order it does not find is not theirs (plan no refund for it).
- Refund only for a real problem (damaged, wrong or missing items, a late delivery) and never more than the order's
  refundable_amount; set refund_amount to null when no refund is due.
- The customer_message is friendly, short and exact: name the order and, for a refund, the amount and currency."""

EXECUTOR_INSTRUCTIONS = f"""\
{EXECUTOR_MARKER} of an online store. Carry out the approved resolution plan you are given, exactly and nothing
more: look the order up with lookup_order, make the planned refund with refund_order (large refunds wait for a
person's approval: if one is rejected or times out, do not retry it and tell the customer so instead), then send the
plan's customer_message with send_message (it goes to the customer this run acts for). End with a short summary of
what you did."""

planner_agent = Agent(name="resolution_planner", instructions=PLANNER_INSTRUCTIONS, tools=[lookup_order],
                      output_type=ResolutionPlan)
executor_agent = Agent(name="resolution_executor", instructions=EXECUTOR_INSTRUCTIONS,
                       tools=[lookup_order, refund_order, send_message])

bp = durable_agents.Blueprint(demo_responder=resolution_demo_responder)


def plan_summary(plan: ResolutionPlan) -> str:
    """One line for the reviewer: the order, the refund (or none) and the steps."""
    refund = f"refund {plan.refund_amount:.2f}" if plan.refund_amount else "no refund"
    text = f"{plan.order_id or 'unknown order'}: {refund}; " + "; ".join(plan.steps)
    return text if len(text) <= 300 else text[:297] + "..."


def executor_input(plan: ResolutionPlan, comment: str | None) -> str:
    """The executor's input: the approved plan as JSON, with the reviewer's comment."""
    note = f"Reviewer's comment: {comment}\n" if comment else ""
    return f"Carry out this approved resolution plan.\n{note}{PLAN_JSON_LABEL}\n{plan.model_dump_json()}"


def declined_message(plan: ResolutionPlan, outcome: str) -> str:
    """What the customer hears when the plan was rejected (``outcome`` ``rejected``) or nobody decided in time."""
    order = plan.order_id or "your order"
    if outcome == "expired":
        return (f"Hello, we could not finish reviewing your request about {order} yet. A member of our team will "
                "contact you shortly.")
    return (f"Hello, we reviewed your request about {order} and cannot resolve it as proposed. A member of our team "
            "will contact you with the next steps.")


@bp.workflow(
    WORKFLOW,
    description="Resolves a customer's complaint: a planner proposes a plan, a person approves it, an executor "
                "carries it out (refund, message).",
    agents=(planner_agent, executor_agent),
    settings=("PLAN_APPROVAL_TIMEOUT", "REFUND_APPROVAL_THRESHOLD"),
)
def resolution_workflow(context):
    """Orchestrator of one ``resolution`` run: input ``{"agent", "input": <complaint>, "settings"}``."""
    complaint = context.get_input()["input"]
    context.set_custom_status({"stage": "planning"})
    plan: ResolutionPlan = Runner.run_sync(planner_agent, complaint).final_output
    context.set_custom_status({"stage": "awaiting plan approval", "orderId": plan.order_id})
    decision = yield context.request_approval(
        plan_summary(plan), plan.model_dump(), step="plan",
        timeout=run_setting("PLAN_APPROVAL_TIMEOUT", DEFAULT_PLAN_APPROVAL_TIMEOUT),
    )
    outcome = "executed" if decision["decision"] == "approved" else decision["decision"]
    output: dict[str, Any] = {
        "outcome": outcome, "orderId": plan.order_id, "plan": plan.model_dump(),
        "decision": {"decision": decision["decision"], "comment": decision.get("comment")},
        "result": None, "customerMessage": None,
    }
    if outcome == "executed":
        context.set_custom_status({"stage": "executing", "orderId": plan.order_id})
        result = Runner.run_sync(executor_agent, executor_input(plan, decision.get("comment")))
        output["result"] = result.final_output
        output["summary"] = f"The plan for {plan.order_id} was approved and carried out: {result.final_output}"
    else:
        context.set_custom_status({"stage": "messaging customer", "orderId": plan.order_id})
        output["customerMessage"] = yield from _message_customer(context, plan, outcome)
        output["summary"] = (f"The plan for {plan.order_id or 'the complaint'} was {outcome}; nothing was refunded "
                             + ("and the customer was told." if output["customerMessage"].get("status") == "sent"
                                else "and the customer could not be messaged."))
    context.set_custom_status({"stage": "done", "orderId": plan.order_id, "outcome": outcome})
    return output


def _message_customer(context: Any, plan: ResolutionPlan, outcome: str):
    """Check that the plan's order is the run's customer's, then write to that customer (the ``lookup_order`` and
    ``send_message`` activities with the activity-tool input, ``ToolCall.customer`` the run's customer; idempotent
    per run). Returns ``send_message``'s result, or the lookup's error (``order_not_found`` for an order that is
    not the customer's: then nobody is written to)."""
    customer = context.get_input().get("customer")

    def tool_input(tool: Any, args: dict[str, Any]) -> Any:
        call = ToolCall(run_id=context.instance_id, call_id=f"plan-{outcome}-{tool.name}", tool=tool.name,
                        agent=WORKFLOW, customer=customer if isinstance(customer, str) and customer else None)
        return tool.activity_input(args, call)

    order = yield context.call_activity_with_retry(lookup_order.activity_name, lookup_order.retry,
                                                   tool_input(lookup_order, {"order_id": plan.order_id}))
    if not isinstance(order, dict) or order.get("error"):
        return order if isinstance(order, dict) else {"error": str(order)}
    text = declined_message(plan, outcome)
    return (yield context.call_activity_with_retry(send_message.activity_name, send_message.retry,
                                                   tool_input(send_message, {"text": text})))
