"""The ``order_audit`` workflow: one reviewer agent per order in parallel, then a summarizer (fan-out / fan-in).

1. The audited customer is the one the run acts for (start body ``"customer"``, never an email in the input
   text); the ``list_orders`` activity lists their orders. A run without a customer fails at once.
2. Every order is reviewed by the ``order_reviewer`` agent (tool ``lookup_order``, structured output
   :class:`OrderReview`) in its own sub-orchestration, all started in one episode, with the deterministic child
   instance id ``<run id>:<order id>``, acting for the same customer. The reviewer is an agent of its own too
   (``POST /api/agents/order_reviewer/runs`` with an order id and a customer).
3. Failed reviews are tolerated: they are reported in the output (``failed``), the other reviews are kept; only when
   every review failed does the run fail.
4. The ``audit_summarizer`` agent aggregates the reviews into one answer (``summary``).

Output: ``{"customerEmail", "orders", "reviews": [OrderReview...], "failed": [{"orderId", "error"}], "summary"}``.
Progress: ``set_custom_status({"stage": "listing orders" | "reviewing" | "summarizing" | "done", ...})``.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from agents import Agent, Runner
from pydantic import BaseModel, ConfigDict, Field

import durable_agents
from activities import list_orders, lookup_order
from activities.orders import normalize_email
from durable_agents import TaskFailedError, ToolCall

from .order_audit_demo import REVIEWER_MARKER, SUMMARIZER_MARKER, order_audit_demo_responder

__all__ = ["OrderReview", "bp", "order_audit_workflow", "order_review_run", "reviewer_agent", "summarizer_agent"]

WORKFLOW = "order_audit"
REVIEWER_ORCHESTRATOR = "order_review_run"


class OrderReview(BaseModel):
    """One reviewer's verdict on one order."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(description="The reviewed order's id, for example ORD-1001.")
    verdict: Literal["ok", "attention"] = Field(description="attention when a person should look at the order.")
    findings: str = Field(description="What the review found, in one or two sentences.")


REVIEWER_INSTRUCTIONS = f"""\
{REVIEWER_MARKER} of an online store, acting for one customer (lookup_order finds only their orders). Look the
order you are given up with lookup_order and review it: flag it
(verdict attention) when it was refunded in part or in full, was cancelled, is of unusually high value, or anything
in it looks wrong; otherwise the verdict is ok. Findings are short and exact, amounts with their currency."""

SUMMARIZER_INSTRUCTIONS = f"""\
{SUMMARIZER_MARKER} of an online store. You get the reviews of one customer's orders as JSON (and the orders whose
review failed). Answer in one short paragraph: how many orders were reviewed, which need attention and why, and which
could not be reviewed."""

reviewer_agent = Agent(name="order_reviewer", instructions=REVIEWER_INSTRUCTIONS, tools=[lookup_order],
                       output_type=OrderReview)
summarizer_agent = Agent(name="audit_summarizer", instructions=SUMMARIZER_INSTRUCTIONS)

bp = durable_agents.Blueprint(demo_responder=order_audit_demo_responder)


@bp.agent(reviewer_agent, description="Reviews one order of the store (give its id) and flags what needs attention.")
def order_review_run(context):
    """Orchestrator of one ``order_reviewer`` run (a child of ``order_audit``, or started on its own)."""
    return Runner.run_sync(reviewer_agent, context.get_input()["input"])


def _child_input(run_input: dict[str, Any], text: str, customer: str) -> dict[str, Any]:
    """A reviewer run's input: the parent's settings, run version and customer (docs/internals.md orchestration
    input), so the child's tools act for the same customer."""
    child: dict[str, Any] = {"agent": reviewer_agent.name, "input": text, "settings": run_input.get("settings") or {},
                             "customer": customer}
    if "version" in run_input:
        child["version"] = run_input["version"]
    return child


@bp.workflow(
    WORKFLOW,
    description="Audits the orders of the customer the run acts for: one reviewer agent per order in parallel, then "
                "a summary.",
    agents=(reviewer_agent, summarizer_agent),
)
def order_audit_workflow(context):
    """Orchestrator of one ``order_audit`` run: input ``{"agent", "input", "settings", "customer", ...}``."""
    run_input = context.get_input()
    email = normalize_email(run_input.get("customer"))
    if email is None:
        raise ValueError("order_audit audits the orders of the customer the run acts for: start it with a customer")
    context.set_custom_status({"stage": "listing orders", "customerEmail": email})
    call = ToolCall(run_id=context.instance_id, call_id="audit-list-orders", tool=list_orders.name, agent=WORKFLOW,
                    customer=email)
    listed = yield context.call_activity_with_retry(list_orders.activity_name, list_orders.retry,
                                                    list_orders.activity_input({}, call))
    if not isinstance(listed, dict) or listed.get("error"):
        raise ValueError(f"could not list the orders of {email}: {listed}")
    order_ids = [str(order["id"]) for order in listed.get("orders") or []]
    output: dict[str, Any] = {"customerEmail": email, "orders": order_ids, "reviews": [], "failed": []}
    if not order_ids:
        output["summary"] = f"{email} has no orders to audit."
        return output

    context.set_custom_status({"stage": "reviewing", "customerEmail": email, "orders": order_ids})
    children = [
        context.call_sub_orchestrator(
            REVIEWER_ORCHESTRATOR,
            _child_input(run_input, f"Review order {order_id}.", email),
            f"{context.instance_id}:{order_id}",
        )
        for order_id in order_ids
    ]
    try:
        yield context.task_all(children)
    except TaskFailedError:
        pass  # raised once every child finished: keep the reviews that succeeded
    for order_id, child in zip(order_ids, children, strict=True):
        if child.is_faulted:
            output["failed"].append({"orderId": order_id, "error": getattr(child.exception, "message",
                                                                           str(child.exception))})
        else:
            output["reviews"].append(child.result["finalOutput"])
    if not output["reviews"]:
        raise RuntimeError(f"every review of {email}'s orders failed: {output['failed']}")

    context.set_custom_status({"stage": "summarizing", "customerEmail": email, "orders": order_ids,
                               "failed": [f["orderId"] for f in output["failed"]]})
    summary_input = json.dumps({"customer": email, "reviews": output["reviews"], "failedReviews": output["failed"]})
    output["summary"] = Runner.run_sync(summarizer_agent, f"Summarize this audit:\n{summary_input}").final_output
    context.set_custom_status({"stage": "done", "customerEmail": email, "orders": order_ids})
    return output
