"""The ``triage`` (chaining + routing) and ``customer_message`` (evaluator loop) workflows through real
azure-functions-durable replay (durable_agents.testing): a scripted model answering each agent by its instructions,
the real activity tools on data/orders.json, the live-run cache on and off; the ``track_shipment`` tool; and both
workflows on the offline demo script (agents/workflows_demo.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agents.models.interface import ModelTracing
from agents.testing import ModelStep

import durable_agents
from activities import bp as tools
from durable_agents import ToolCall
from durable_agents import _runner as durable_runner
from durable_agents._demo import DemoModel
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs

REPO = Path(__file__).resolve().parents[2]
JORDAN = "jordan.rivera@example.com"  # ORD-1001
SOFIA = "sofia.rossi@example.it"  # ORD-1063 (shipped)
PACKAGE = durable_agents.load_app_agents("shipping", "support", "support_demo", "triage", "writer_judge",
                                         "workflows_demo", app_dir=REPO)
shipping, support, triage, writer_judge = PACKAGE.shipping, PACKAGE.support, PACKAGE.triage, PACKAGE.writer_judge


def _app() -> durable_agents.App:
    app = durable_agents.App(http_api=False, app_dir=REPO)
    app.register_functions(tools)
    for module in (shipping, support, triage, writer_judge):
        app.register_functions(module.bp)
    return app


APP = _app()


pytestmark = pytest.mark.usefixtures("fresh_runner_cache")


@pytest.fixture(autouse=True)
def _fresh_ledger(monkeypatch, tmp_path):
    """A fresh SQLite ledger per test (refunds count against the approval threshold: none may leak between tests or
    come from the app folder's own ledger)."""
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    for name in ("REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING", "ORDERS_DATA_PATH",
                 "REFUND_APPROVAL_THRESHOLD"):
        monkeypatch.delenv(name, raising=False)


def _user_text(call: Any) -> str:
    items = call.input
    if isinstance(items, str):
        return items
    text = ""
    for item in items:
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            text = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
    return text


def _outputs(call: Any) -> int:
    items = call.input if isinstance(call.input, list) else []
    return sum(1 for item in items if isinstance(item, dict) and item.get("type") == "function_call_output")


def _by_agent(answers: dict[str, Callable[[Any], Any]], count: int = 20) -> ScriptedModel:
    """A model that answers each call with ``answers[<agent>](call)``, the agent told apart by its instructions."""
    instructions = {
        triage.INSTRUCTIONS: "triage",
        shipping.INSTRUCTIONS: "shipping",
        support.INSTRUCTIONS: "support",
        writer_judge.WRITER_INSTRUCTIONS: "writer",
        writer_judge.JUDGE_INSTRUCTIONS: "judge",
    }

    def respond(call: Any) -> Any:
        return answers[instructions[call.system_instructions]](call)

    return ScriptedModel([ModelStep.respond(respond) for _ in range(count)])


def _json(value: dict[str, Any]) -> list[Any]:
    return [assistant_message(json.dumps(value))]


def _shipping_model() -> ScriptedModel:
    return _by_agent({
        "triage": lambda call: _json({"category": "shipping", "order_id": "ORD-1063",
                                      "summary": "The customer asks where the parcel is."}),
        "shipping": lambda call: (
            [function_call("track_shipment", {"order_id": "ORD-1063"}, call_id="call_track")] if not _outputs(call)
            else [assistant_message("Your parcel ORD-1063 is on its way.")]),
    })


@pytest.mark.parametrize("cache_size", [64, 0])
def test_triage_routes_a_shipping_question_to_the_shipping_agent(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    model = _shipping_model()
    harness = ReplayHarness(APP, model=model)
    run = harness.start_run("triage", "Where is my parcel? ORD-1063", settings={}, customer=SOFIA)
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output == {
        "answer": "Your parcel ORD-1063 is on its way.",
        "route": {"category": "shipping", "orderId": "ORD-1063", "specialist": "shipping",
                  "summary": "The customer asks where the parcel is."},
    }
    assert [value["args"] for name, value in harness.activity_calls if name == "track_shipment"] == [
        {"order_id": "ORD-1063"}]
    tracked = json.loads(function_outputs(model.requests[2])["call_track"])
    assert tracked["shipment_status"] == "in_transit" and tracked["estimated_delivery"]
    # The specialist got the customer's words and the routing note.
    assert "Where is my parcel? ORD-1063" in _user_text(model.sdk_model.calls[1])
    assert "Order id: ORD-1063" in _user_text(model.sdk_model.calls[1])
    status = run.custom_status
    assert (status["stage"], status["category"], status["specialist"]) == ("done", "shipping", "shipping")
    assert status["agent"] == "triage" and status["currentAgent"] == "shipping" and status["turns"] == 3


def test_triage_publishes_its_stage_while_the_specialist_works():
    model = _shipping_model()
    harness = ReplayHarness(APP, model=model)
    run = harness.start_run("triage", "Where is my parcel? ORD-1063", settings={}, customer=SOFIA)
    seen = []
    while harness.step(advance_timers=False):
        status = run.custom_status or {}
        seen.append((status.get("stage"), status.get("category"), status.get("specialist")))
    assert seen[0] == ("classifying", None, None)
    assert ("answering", "shipping", "shipping") in seen
    assert seen[-1] == ("done", "shipping", "shipping")


def test_triage_routes_a_refund_request_to_support_and_its_refund_runs():
    model = _by_agent({
        "triage": lambda call: _json({"category": "refund", "order_id": "ORD-1001",
                                      "summary": "Refund of the broken cable."}),
        "support": lambda call: (
            [function_call("refund_order", {"order_id": "ORD-1001", "amount": 12.5, "reason": "broken cable"},
                           call_id="call_refund")] if not _outputs(call)
            else [assistant_message("Refunded 12.50 USD for ORD-1001.")]),
    })
    harness = ReplayHarness(APP, model=model)
    run = harness.start_run("triage", "Please refund the broken cable of ORD-1001.",
                            settings={"REFUND_APPROVAL_THRESHOLD": "100"}, run_id="triage-refund-unit",
                            customer=JORDAN)
    harness.run()
    assert run.status == "Completed", run.output
    assert run.output["answer"] == "Refunded 12.50 USD for ORD-1001."
    assert run.output["route"]["specialist"] == "support" and run.output["route"]["category"] == "refund"
    [refund] = [value for name, value in harness.activity_calls if name == "refund_order"]
    assert refund["args"]["order_id"] == "ORD-1001" and refund["call"]["runId"] == "triage-refund-unit"
    assert refund["call"]["customer"] == JORDAN


def test_triage_large_refund_waits_for_approval_on_the_workflow_run():
    model = _by_agent({
        "triage": lambda call: _json({"category": "refund", "order_id": "ORD-1001", "summary": "Full refund."}),
        "support": lambda call: (
            [function_call("refund_order", {"order_id": "ORD-1001", "amount": 291.5, "reason": "broken"},
                           call_id="call_big")] if not _outputs(call)
            else [assistant_message("The refund was not approved.")]),
    })
    harness = ReplayHarness(APP, model=model)
    run = harness.start_run("triage", "Refund all of ORD-1001.", settings={"REFUND_APPROVAL_THRESHOLD": "100"},
                            customer=JORDAN)
    harness.run(advance_timers=False)
    assert [p["id"] for p in harness.pending_approvals(run)] == ["call_big"]
    harness.reject(run, "call_big", "Needs photos first.")
    harness.run()
    assert run.status == "Completed" and run.output["answer"] == "The refund was not approved."
    assert "Needs photos first." in function_outputs(model.requests[-1])["call_big"]
    assert not [name for name, _ in harness.activity_calls if name == "refund_order"]


def test_triage_answers_other_messages_politely_without_a_specialist():
    model = _by_agent({"triage": lambda call: _json({"category": "other", "order_id": None,
                                                     "summary": "Asks about gift cards."})})
    harness = ReplayHarness(APP, model=model)
    run = harness.start_run("triage", "Do you sell gift cards?", settings={})
    harness.run()
    assert run.status == "Completed"
    assert run.output["answer"] == triage.FALLBACK_ANSWER
    assert run.output["route"] == {"category": "other", "orderId": None, "specialist": None,
                                   "summary": "Asks about gift cards."}
    assert len(model.requests) == 1


def _loop_model(scores: list[int]) -> ScriptedModel:
    """Writer drafts ``draft <n>``; the judge scores the n-th draft ``scores[n-1]``."""

    def write(call: Any) -> Any:
        text = _user_text(call)
        number = 1 if "Previous draft:" not in text else int(text.split("Previous draft:\ndraft ")[1][0]) + 1
        return [assistant_message(f"draft {number}")]

    def judge(call: Any) -> Any:
        number = int(_user_text(call).split("Draft:\ndraft ")[1][0])
        return _json({"score": scores[number - 1], "feedback": f"feedback on draft {number}"})

    return _by_agent({"writer": write, "judge": judge})


@pytest.mark.parametrize("cache_size", [64, 0])
def test_the_loop_revises_with_the_feedback_and_passes_in_round_two(cache_size):
    durable_runner.set_session_cache_size(cache_size)
    model = _loop_model([4, 9])
    harness = ReplayHarness(APP, model=model)
    run = harness.start_run("customer_message", "ORD-1069 ships a week late.", settings={})
    rounds_seen = []
    while harness.step(advance_timers=False):
        rounds_seen.append(len((run.custom_status or {}).get("rounds") or []))
    assert run.status == "Completed", run.output
    rounds = [{"round": 1, "draft": "draft 1", "score": 4, "feedback": "feedback on draft 1"},
              {"round": 2, "draft": "draft 2", "score": 9, "feedback": "feedback on draft 2"}]
    assert run.output == {"message": "draft 2", "score": 9, "passed": True, "roundsUsed": 2, "passingScore": 8,
                          "maxRounds": 3, "rounds": rounds}
    assert 1 in rounds_seen  # round 1 was visible while round 2 ran
    assert run.custom_status["rounds"] == rounds and run.custom_status["stage"] == "done"
    revision = _user_text(model.sdk_model.calls[2])
    assert "Previous draft:\ndraft 1" in revision and "feedback on draft 1 (score 4/10)" in revision
    assert "ORD-1069 ships a week late." in revision
    assert len(model.requests) == 4


def test_the_loop_stops_at_max_rounds_when_it_never_passes():
    harness = ReplayHarness(APP, model=_loop_model([3, 5, 7, 7]))
    run = harness.start_run("customer_message", "A refund is late.", settings={"MESSAGE_MAX_ROUNDS": "3"})
    harness.run()
    assert run.status == "Completed"
    assert (run.output["passed"], run.output["roundsUsed"], run.output["score"]) == (False, 3, 7)
    assert [r["score"] for r in run.output["rounds"]] == [3, 5, 7]


def test_the_loop_reads_its_settings_from_the_run_snapshot():
    harness = ReplayHarness(APP, model=_loop_model([6]))
    run = harness.start_run("customer_message", "A refund is late.",
                            settings={"MESSAGE_PASSING_SCORE": "6", "MESSAGE_MAX_ROUNDS": "1"})
    harness.run()
    assert (run.output["passed"], run.output["roundsUsed"], run.output["passingScore"]) == (True, 1, 6)
    harness = ReplayHarness(APP, model=_loop_model([2, 2]))
    run = harness.start_run("customer_message", "A refund is late.",
                            settings={"MESSAGE_PASSING_SCORE": "eight", "MESSAGE_MAX_ROUNDS": "2"})
    harness.run()
    assert (run.output["passingScore"], run.output["maxRounds"], run.output["roundsUsed"]) == (8, 2, 2)


def test_the_workflows_are_listed_with_their_agents_and_settings():
    entries = {entry.name: entry for entry in APP.registry.list()}
    assert entries["triage"].kind == "workflow" and entries["customer_message"].kind == "workflow"
    assert entries["shipping"].kind == "agent"
    assert "REFUND_APPROVAL_THRESHOLD" in entries["triage"].settings
    assert set(entries["customer_message"].settings) == {"MESSAGE_PASSING_SCORE", "MESSAGE_MAX_ROUNDS"}


def _for(customer: str | None) -> ToolCall:
    return ToolCall(run_id="run-1", call_id="c1", tool="track_shipment", agent="shipping", customer=customer)


@pytest.mark.parametrize(("order_id", "customer", "status", "estimated"), [
    ("ORD-1063", SOFIA, "in_transit", True), ("ord-1070", "amelia.chen@example.com", "preparing", True),
    ("ORD-1001", JORDAN, "delivered", False), ("ORD-1013", "hannah.lindqvist@example.com", "not_shipping", False),
])
def test_track_shipment_reads_the_order(order_id, customer, status, estimated):
    result = shipping.track_shipment(order_id, _for(customer))
    assert result["shipment_status"] == status and result["order_id"] == order_id.upper()
    assert bool(result["estimated_delivery"]) is estimated and result["items"]


def test_track_shipment_refuses_bad_unknown_and_other_customers_ids():
    assert shipping.track_shipment("parcel 7", _for(JORDAN))["code"] == "invalid_order_id"
    unknown = shipping.track_shipment("ORD-9999", _for(JORDAN))
    theirs = shipping.track_shipment("ORD-1063", _for(JORDAN))
    assert unknown["code"] == theirs["code"] == "order_not_found"
    assert theirs["error"] == unknown["error"].replace("ORD-9999", "ORD-1063")
    assert shipping.track_shipment("ORD-1063", _for(None))["code"] == "no_customer"


def _demo_model() -> ScriptedModel:
    """The offline demo model with the app's script order: this module's responder before the support one."""
    demo = DemoModel(responders=[PACKAGE.workflows_demo.workflows_demo_responder,
                                 PACKAGE.support_demo.support_demo_responder])

    async def respond(call: Any) -> Any:
        return await demo.get_response(call.system_instructions, call.input, call.model_settings, call.tools,
                                       call.output_schema, call.handoffs, ModelTracing.DISABLED,
                                       previous_response_id=None, conversation_id=None, prompt=None)

    return ScriptedModel([ModelStep.respond(respond) for _ in range(20)])


@pytest.mark.parametrize(("text", "customer", "category", "specialist", "answer"), [
    ("Where is my parcel for ORD-1063?", SOFIA, "shipping", "shipping", "is on its way"),
    ("Please refund 12.50 USD on ORD-1001, the cable is broken.", JORDAN, "refund", "support", "Refunded 12.50 USD"),
    ("Do you sell gift cards?", None, "other", None, "Thank you for your message"),
])
def test_the_demo_script_routes_like_a_model(text, customer, category, specialist, answer):
    harness = ReplayHarness(APP, model=_demo_model())
    run = harness.start_run("triage", text, settings={"REFUND_APPROVAL_THRESHOLD": "100"}, customer=customer)
    harness.run()
    assert run.status == "Completed", run.output
    assert (run.output["route"]["category"], run.output["route"]["specialist"]) == (category, specialist)
    assert answer in run.output["answer"]


def test_the_demo_script_passes_the_loop_in_round_two():
    harness = ReplayHarness(APP, model=_demo_model())
    run = harness.start_run("customer_message", "The espresso machine of ORD-1069 ships a week late.", settings={})
    harness.run()
    assert run.status == "Completed", run.output
    assert [r["score"] for r in run.output["rounds"]] == [6, 10] and run.output["passed"] is True
    assert "sorry" in run.output["message"] and "Apologise" in run.output["rounds"][0]["feedback"]
