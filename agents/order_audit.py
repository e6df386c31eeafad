"""The ``order_audit`` workflow: one reviewer agent per order in parallel, then a summarizer (fan-out / fan-in).

1. The customer's email is taken from the input text; the ``list_orders`` activity lists their orders.
2. Every order is reviewed by the ``order_reviewer`` agent (tool ``lookup_order``, structured output
   :class:`OrderReview`) in its own sub-orchestration, all started in one episode, with the deterministic child
   instance id ``<run id>:<order id>``. The reviewer is an agent of its own too (``POST
   /api/agents/order_reviewer/runs`` with an order id).
3. Failed reviews are tolerated: they are reported in the output (``failed``), the other reviews are kept; only when
   every review failed does the run fail.
4. The ``audit_summarizer`` agent aggregates the reviews into one answer (``summary``).

Output: ``{"customerEmail", "orders", "reviews": [OrderReview...], "failed": [{"orderId", "error"}], "summary"}``.
Progress: ``set_custom_status({"stage": "listing orders" | "reviewing" | "summarizing" | "done", ...})``.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from agents import Agent, Runner
from pydantic import BaseModel, ConfigDict, Field

import durable_agents
from activities import list_orders, lookup_order
from durable_agents import TaskFailedError, ToolCall

from .order_audit_demo import REVIEWER_MARKER, SUMMARIZER_MARKER, order_audit_demo_responder

__all__ = ["OrderReview", "bp", "order_audit_workflow", "order_review_run", "reviewer_agent", "summarizer_agent"]

WORKFLOW = "order_audit"
REVIEWER_ORCHESTRATOR = "order_review_run"
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")


class OrderReview(BaseModel):
    """One reviewer's verdict on one order."""

    model_config = ConfigDict(extra="forbid")

    order_id: str = Field(description="The reviewed order's id, for example ORD-1001.")
    verdict: Literal["ok", "attention"] = Field(description="attention when a person should look at the order.")
    findings: str = Field(description="What the review found, in one or two sentences.")


REVIEWER_INSTRUCTIONS = f"""\
{REVIEWER_MARKER} of an online store. Look the order you are given up with lookup_order and review it: flag it
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


def customer_email(text: Any) -> str | None:
    """The first email address in the input text, lower-cased, or ``None``."""
    found = _EMAIL_RE.search(text) if isinstance(text, str) else None
    return found.group(0).lower() if found else None


@bp.workflow(
    WORKFLOW,
    description="Audits a customer's orders (give their email): one reviewer agent per order in parallel, then a "
                "summary.",
    agents=(reviewer_agent, summarizer_agent),
)
def order_audit_workflow(context):
    """Orchestrator of one ``order_audit`` run: input ``{"agent", "input": <text with an email>, "settings"}``."""
    run_input = context.get_input()
    email = customer_email(run_input["input"])
    if email is None:
        raise ValueError("order_audit needs the customer's email address in its input")
    context.set_custom_status({"stage": "listing orders", "customerEmail": email})
    call = ToolCall(run_id=context.instance_id, call_id="audit-list-orders", tool=list_orders.name, agent=WORKFLOW)
    listed = yield context.call_activity_with_retry(list_orders.activity_name, list_orders.retry,
                                                    list_orders.activity_input({"customer_email": email}, call))
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
            {"agent": reviewer_agent.name, "input": f"Review order {order_id} of {email}.",
             "settings": run_input.get("settings") or {}},
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
