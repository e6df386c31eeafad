"""The offline demo model's script for the ``shipping`` agent and the ``triage`` and ``customer_message`` workflows.

Used only when no model is configured. :func:`workflows_demo_responder` is one demo responder for the four agents
of those modules; it tells them apart by what the model is given, never by the run:

* ``track_shipment`` offered (the ``shipping`` agent): ``track_shipment(order_id)`` for the order id in the
  message, then a summary of the tool's result (or a request for the order id);
* structured output with ``category`` (the triage agent): a keyword classification of the message (refund words →
  ``refund``; delivery words → ``shipping``; an order id alone → ``refund``, the support desk; else ``other``);
* structured output with ``score`` (the judge): the rubric checked by keywords (greeting, apology, a concrete next
  step, a sign-off): 10 minus 2 per missing item, with feedback naming what is missing;
* instructions of the writer (:data:`WRITER_MARKER`): a first draft without apology and next step, then a revision
  that adds what the reviewer's feedback asks for; so a demo run passes in round 2.

Structured outputs (the triage decision, the judge's verdict) are sent as they are with ``DemoReply.output``.
Responders are asked in registration order and the ``support`` script answers every turn whose message names an
order id; this one responder is therefore given to all three blueprints, so it is registered with the first of them
(``shipping``, before ``support`` in name order) and sees these agents' turns first.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from durable_agents import DEMO_PREFIX, DemoReply, DemoTurn

__all__ = ["WRITER_MARKER", "workflows_demo_responder"]

WRITER_MARKER = "You write short messages from an online store to one of its customers."
"""The first line of the writer agent's instructions (how the script recognizes the writer's turns)."""

_ORDER_RE = re.compile(r"\bORD-?(\d{1,12})\b", re.IGNORECASE)
_REFUND_WORDS = ("refund", "money back", "reimburse", "broken", "damaged", "return")
_SHIPPING_WORDS = ("where is", "where's", "parcel", "package", "delivery", "deliver", "shipping", "shipment",
                   "track", "arrive", "shipped", "dispatch", "courier")
_RUBRIC = (
    (("dear", "hello", "hi "), "Greet the customer."),
    (("sorry", "apologi"), "Apologise for the trouble."),
    (("we will", "next step", "you will receive", "we'll"), "Say what happens next and when."),
    (("kind regards", "best regards", "sincerely"), "End with a sign-off."),
)


def workflows_demo_responder(turn: DemoTurn) -> DemoReply | None:
    """The next step of this script for ``turn`` (module docstring), or ``None`` when the turn is not of these
    agents. Texts are without the ``[demo model]`` label (the demo model adds it), except inside the JSON answers."""
    schema = turn.output_schema or {}
    properties = schema.get("properties") if isinstance(schema, Mapping) else None
    fields = set(properties) if isinstance(properties, Mapping) else set()
    if turn.has_tool("track_shipment"):
        return _shipping(turn)
    if {"category", "order_id", "summary"} <= fields:
        return _triage(turn)
    if {"score", "feedback"} <= fields:
        return _judge(turn)
    if turn.instructions and WRITER_MARKER in turn.instructions:
        return _writer(turn)
    return None


def _order_id(text: str) -> str | None:
    match = _ORDER_RE.search(text)
    return f"ORD-{match.group(1)}" if match else None


def _shipping(turn: DemoTurn) -> DemoReply:
    order_id = _order_id(turn.user_text)
    if order_id is None:
        return DemoReply.final("I can track a delivery for you: please tell me the order id (it looks like "
                               "ORD-1001).")
    tracked = turn.last_call("track_shipment")
    if tracked is None:
        return DemoReply.call("track_shipment", {"order_id": order_id})
    if tracked.output is None:
        return DemoReply.final(f"Still waiting for the tracking of {order_id}.")
    try:
        result = json.loads(tracked.output)
    except ValueError:
        result = None
    if not isinstance(result, Mapping) or result.get("error"):
        return DemoReply.final(f"I could not track order {order_id}: {tracked.output}")
    text = f"Order {order_id}: {result.get('detail', result.get('shipment_status'))}"
    if result.get("estimated_delivery"):
        text += f" Expected by {result['estimated_delivery']}."
    return DemoReply.final(text)


def _triage(turn: DemoTurn) -> DemoReply:
    text = turn.user_text
    lowered = text.lower()
    order_id = _order_id(text)
    if any(word in lowered for word in _REFUND_WORDS):
        category = "refund"
    elif any(word in lowered for word in _SHIPPING_WORDS):
        category = "shipping"
    elif order_id:
        category = "refund"  # an order question without delivery words: the support desk handles orders
    else:
        category = "other"
    short = " ".join(text.split())
    short = short if len(short) <= 80 else short[:77] + "..."
    summary = f"{DEMO_PREFIX} {category} request" + (f" about {order_id}" if order_id else "") + f": {short}"
    return DemoReply.output({"category": category, "order_id": order_id, "summary": summary})


def _section(text: str, name: str) -> str:
    """The text after the line ``<name>:`` up to the next ``<Word>:`` header line (or the end)."""
    match = re.search(rf"^{re.escape(name)}:\s*(.*?)(?=^\w[\w ]*:\s*$|\Z)", text, re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else ""


def _judge(turn: DemoTurn) -> DemoReply:
    draft = _section(turn.user_text, "Draft") or turn.user_text
    lowered = draft.lower()
    missing = [advice for words, advice in _RUBRIC if not any(word in lowered for word in words)]
    score = max(1, 10 - 2 * len(missing))
    feedback = " ".join(missing) if missing else "Clear, kind and complete."
    return DemoReply.output({"score": score, "feedback": f"{DEMO_PREFIX} {feedback}"})


def _writer(turn: DemoTurn) -> DemoReply:
    text = turn.user_text
    situation = _section(text, "Situation") or text.strip()
    feedback = _section(text, "Reviewer feedback").lower()
    lines = ["Dear customer,", "", f"We are writing to let you know: {situation}"]
    if feedback:
        if "apolog" in feedback:
            lines.insert(2, "We are sorry for the trouble.")
        if "next" in feedback:
            lines.append("We will get back to you within two business days with the next step.")
    lines += ["", "Kind regards,", "The store team"]
    return DemoReply.final("\n".join(lines))
