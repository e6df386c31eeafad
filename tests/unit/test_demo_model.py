"""The generic demo model and its responder hook (durable_agents._demo), through invoke_model's JSON path."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from decimal import Decimal

import azure.durable_functions as df
import pytest
from agents import Agent, ModelSettings, RunConfig, Runner, function_tool, handoff
from agents.models.interface import ModelTracing
from pydantic import BaseModel

import durable_agents
from durable_agents._demo import (
    DEMO_PREFIX,
    DemoModel,
    DemoReply,
    DemoToolCall,
    DemoTurn,
    add_demo_responder,
    demo_responders,
    remove_demo_responder,
)
from durable_agents._model_activity import invoke_model
from durable_agents._model_io import decode_model_response, encode_model_request
from tests.unit.model_testing import ActivityBridgeModel, reset_model_state, run_support

CONFIG = RunConfig(tracing_disabled=True)
ORDER_WORDS = re.compile(r"order|refund|email|ORD-|customer|amount", re.IGNORECASE)


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch):
    reset_model_state(monkeypatch)


def _weather_tools(log):
    @function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        log.append(("get_weather", city))
        return json.dumps({"city": city, "sky": "sunny", "celsius": 21.50})

    @function_tool
    def convert_units(value: float, unit: str) -> str:
        """Convert a temperature."""
        log.append(("convert_units", value, unit))
        return json.dumps({"value": value * 9 / 5 + 32, "unit": "F"})

    return [get_weather, convert_units]


def _weather_agent(log, **options):
    return Agent(name="weather", instructions="You report the weather.", tools=_weather_tools(log),
                 model=ActivityBridgeModel(), **options)


def _request(text="hi", tools=()):
    return {"model": None, "request": encode_model_request(
        model=None, system_instructions=None, input=text, model_settings=ModelSettings(), tools=list(tools),
        output_schema=None, handoffs=[])}


# ---------------------------------------------------------------------------------------------------------------
# Without responders: labels, handoffs, structured output, the generic answer
# ---------------------------------------------------------------------------------------------------------------


def test_demo_generic_answer_handoff_and_structured_output():
    log = []
    result, _ = run_support("Hello there", log)
    assert log == [] and result.final_output.startswith(f"{DEMO_PREFIX} I am the offline demo model")

    billing = Agent(name="billing", instructions="billing", model=ActivityBridgeModel())
    triage = Agent(name="triage", instructions="triage", handoffs=[handoff(billing)], model=ActivityBridgeModel())
    result = asyncio.run(Runner.run(triage, "I have a billing question", run_config=RunConfig(tracing_disabled=True)))
    assert result.last_agent.name == "billing"
    assert result.final_output.startswith(DEMO_PREFIX)

    class Answer(BaseModel):
        summary: str
        resolved: bool

    agent = Agent(name="s", instructions="s", output_type=Answer, model=ActivityBridgeModel())
    result = asyncio.run(Runner.run(agent, "hi", run_config=RunConfig(tracing_disabled=True)))
    assert isinstance(result.final_output, Answer) and result.final_output.summary.startswith(DEMO_PREFIX)


def test_generic_answer_names_the_tools_and_no_order_words():
    log = []
    agent = _weather_agent(log)
    result = asyncio.run(Runner.run(agent, "Please refund order ORD-1042, it arrived broken", run_config=CONFIG))
    assert log == []
    text = result.final_output
    assert text.startswith(f"{DEMO_PREFIX} I am the offline demo model (no model is configured)")
    assert "Tools available: convert_units, get_weather." in text
    assert "AZURE_OPENAI_ENDPOINT" in text and "OPENAI_API_KEY / OPENAI_BASE_URL" in text
    assert not ORDER_WORDS.search(text), text
    assert all(r["ok"] and r["demo"] is True for r in agent.model.results)

    no_tools = asyncio.run(invoke_model(_request("hello")))
    answer = decode_model_response(no_tools["response"]).output[0].content[0].text
    assert "Tools available: none." in answer and not ORDER_WORDS.search(answer)

    billing = Agent(name="billing", instructions="billing", model=ActivityBridgeModel())
    triage = Agent(name="triage", instructions="triage", handoffs=[handoff(billing)], model=ActivityBridgeModel())
    result = asyncio.run(Runner.run(triage, "hello", run_config=CONFIG))
    assert result.last_agent.name == "triage"
    assert "hand off to an agent you name (billing)" in result.final_output


def test_handoff_comes_before_the_responders_and_happens_once():
    seen = []

    def responder(turn):
        seen.append((turn.user_text, [c.name for c in turn.calls], dict(turn.handoffs)))
        return DemoReply.final("scripted")

    add_demo_responder(responder)
    billing = Agent(name="billing", instructions="billing", model=ActivityBridgeModel())
    triage_model = ActivityBridgeModel()
    triage = Agent(name="triage", instructions="triage", handoffs=[handoff(billing)], model=triage_model)
    result = asyncio.run(Runner.run(triage, "Ask BILLING, please", run_config=CONFIG))
    assert result.last_agent.name == "billing" and result.final_output == f"{DEMO_PREFIX} scripted"
    first = decode_model_response(triage_model.results[0]["response"]).output[0]
    assert (first.type, first.name, first.call_id, first.arguments) == (
        "function_call", "transfer_to_billing", "call_demo_1", "{}")
    # Only the billing agent's call reached the responder; it saw the handoff call since the user message.
    assert seen == [("Ask BILLING, please", ["transfer_to_billing"], {})]


# ---------------------------------------------------------------------------------------------------------------
# The responder hook
# ---------------------------------------------------------------------------------------------------------------


def test_a_responder_scripts_tool_calls_and_the_final_text():
    turns = []

    def weather_script(turn):
        turns.append(turn)
        if "weather" not in turn.user_text.lower() or not turn.has_tool("get_weather"):
            return None
        looked = turn.last_call("get_weather")
        if looked is None:
            return DemoReply.call("get_weather", {"city": "Oslo"})
        if turn.last_call("convert_units") is None:
            return DemoReply.call("convert_units", {"value": Decimal("21.50"), "unit": "C"})
        return DemoReply.final(f"Oslo: {json.loads(looked.output)['sky']}, {turn.calls[1].arguments['value']} C.")

    add_demo_responder(weather_script)
    log = []
    agent = _weather_agent(log)
    result = asyncio.run(Runner.run(agent, "What is the weather in Oslo?", run_config=CONFIG))
    assert log == [("get_weather", "Oslo"), ("convert_units", 21.5, "C")]
    assert result.final_output == f"{DEMO_PREFIX} Oslo: sunny, 21.50 C."
    assert all(r["ok"] and r["demo"] is True for r in agent.model.results) and len(agent.model.results) == 3
    calls = [decode_model_response(r["response"]).output[0] for r in agent.model.results[:2]]
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_demo_1", "get_weather", '{"city": "Oslo"}'),
        ("call_demo_2", "convert_units", '{"value": 21.50, "unit": "C"}')]  # a Decimal keeps its digits

    # What the responder saw on the last turn: a typed, read-only view of the conversation.
    last = turns[-1]
    assert isinstance(last, DemoTurn)
    assert last.user_text == "What is the weather in Oslo?" and last.instructions == "You report the weather."
    assert last.total_calls == 2 and [c.call_id for c in last.calls] == ["call_demo_1", "call_demo_2"]
    assert all(isinstance(c, DemoToolCall) for c in last.calls)
    assert dict(last.calls[0].arguments) == {"city": "Oslo"}
    assert json.loads(last.calls[0].output) == {"city": "Oslo", "sky": "sunny", "celsius": 21.5}
    assert last.calls[1].arguments["value"] == Decimal("21.50") and str(last.calls[1].arguments["value"]) == "21.50"
    assert list(last.tools) == ["get_weather", "convert_units"]
    assert last.tools["get_weather"]["properties"]["city"]["type"] == "string"
    assert dict(last.handoffs) == {} and last.output_schema is None and last.wants_structured_output is False
    assert turns[0].calls == () and turns[0].total_calls == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        last.user_text = "changed"
    with pytest.raises(TypeError):
        last.calls[0].arguments["city"] = "Bergen"
    with pytest.raises(TypeError):
        last.tools["get_weather"]["properties"] = {}


def test_a_responder_returning_none_falls_through_in_registration_order():
    asked = []

    def silent(turn):
        asked.append("silent")
        return None

    def answering(turn):
        asked.append("answering")
        return DemoReply.final("answered by the second responder") if "second" in turn.user_text else None

    def never(turn):
        asked.append("never")
        return DemoReply.final("third")

    add_demo_responder(silent)
    add_demo_responder(answering)
    add_demo_responder(silent)  # already there: keeps its place
    assert demo_responders() == (silent, answering)

    result = asyncio.run(invoke_model(_request("for the second one")))
    assert decode_model_response(result["response"]).output[0].content[0].text == (
        f"{DEMO_PREFIX} answered by the second responder")
    assert result["demo"] is True and asked == ["silent", "answering"]

    asked.clear()
    result = asyncio.run(invoke_model(_request("nobody scripted this")))
    assert decode_model_response(result["response"]).output[0].content[0].text.startswith(
        f"{DEMO_PREFIX} I am the offline demo model")
    assert asked == ["silent", "answering"]

    add_demo_responder(never)
    remove_demo_responder(answering)
    remove_demo_responder(answering)  # not there: nothing happens
    asked.clear()
    result = asyncio.run(invoke_model(_request("for the second one")))
    assert decode_model_response(result["response"]).output[0].content[0].text == f"{DEMO_PREFIX} third"
    assert asked == ["silent", "never"]

    # A model given its own responders does not consult the process's list.
    response = asyncio.run(DemoModel(responders=[answering]).get_response(
        None, "the second", ModelSettings(), [], None, [], ModelTracing.DISABLED))
    assert response.output[0].content[0].text == f"{DEMO_PREFIX} answered by the second responder"


def test_a_final_reply_is_shaped_by_the_structured_output_schema():
    seen = []

    def script(turn):
        seen.append((turn.wants_structured_output, sorted(turn.output_schema["properties"])))
        return DemoReply.final("all good")

    class Report(BaseModel):
        summary: str
        score: int
        tags: list[str]
        ok: bool

    add_demo_responder(script)
    agent = Agent(name="r", instructions="r", output_type=Report, model=ActivityBridgeModel())
    result = asyncio.run(Runner.run(agent, "report", run_config=CONFIG))
    assert result.final_output == Report(summary=f"{DEMO_PREFIX} all good", score=0, tags=[], ok=False)
    assert seen == [(True, ["ok", "score", "summary", "tags"])]


def test_a_structured_output_reply_is_sent_as_it_is_and_the_run_stays_labelled_demo():
    class Verdict(BaseModel):
        score: int
        feedback: str
        refund: float | None

    add_demo_responder(lambda turn: DemoReply.output({"score": 9, "feedback": f"{DEMO_PREFIX} fine", "refund": None}))
    model = ActivityBridgeModel()
    agent = Agent(name="judge", instructions="Judge.", output_type=Verdict, model=model)
    result = asyncio.run(Runner.run(agent, "judge this", run_config=CONFIG))
    assert result.final_output == Verdict(score=9, feedback=f"{DEMO_PREFIX} fine", refund=None)
    assert [r["demo"] for r in model.results] == [True]  # the invoke_model result says it was the demo model
    with pytest.raises(ValueError, match="must be a JSON value"):
        DemoReply.output({"score": float("nan")})


def test_responder_mistakes_fail_the_call():
    add_demo_responder(lambda turn: DemoReply.call("delete_everything", {}))
    with pytest.raises(ValueError, match="'delete_everything', which the model was not given"):
        asyncio.run(invoke_model(_request("x", tools=_weather_tools([]))))

    with pytest.raises(TypeError, match="not a DemoReply or None"):
        asyncio.run(DemoModel(responders=[lambda turn: "just text"]).get_response(
            None, "x", ModelSettings(), [], None, [], ModelTracing.DISABLED))

    with pytest.raises(ValueError):
        DemoReply.call("")
    with pytest.raises(ValueError):
        DemoReply.final(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        DemoReply(kind="call", tool="t", text="both")
    with pytest.raises(TypeError):
        add_demo_responder("not callable")  # type: ignore[arg-type]
    assert DemoReply.call("t", {"a": 1}).arguments == {"a": 1} and DemoReply.final("done").text == "done"


def test_demo_is_deterministic_with_a_responder():
    add_demo_responder(lambda turn: DemoReply.call("get_weather", {"city": "Rome"}) if not turn.calls else None)

    async def twice():
        args = (None, [{"role": "user", "content": "weather?"}], ModelSettings(), _weather_tools([]), None, [],
                ModelTracing.DISABLED)
        return await DemoModel().get_response(*args), await DemoModel().get_response(*args)

    a, b = asyncio.run(twice())
    from durable_agents._model_io import encode_model_response

    assert json.dumps(encode_model_response(a)) == json.dumps(encode_model_response(b))
    assert a.output[0].call_id == "call_demo_1" and a.response_id.startswith("resp_demo_")


# ---------------------------------------------------------------------------------------------------------------
# Registration through Blueprint and App
# ---------------------------------------------------------------------------------------------------------------


def test_blueprint_and_app_register_their_responders():
    def app_script(turn):
        return DemoReply.final("from the app") if "app" in turn.user_text else None

    def blueprint_script(turn):
        return DemoReply.final("from the blueprint") if "blueprint" in turn.user_text else None

    bp = durable_agents.Blueprint(demo_responder=blueprint_script)
    assert bp.demo_responder is blueprint_script and isinstance(bp, df.Blueprint)
    assert durable_agents.Blueprint().demo_responder is None
    assert demo_responders() == ()  # a blueprint registers its responder only with an app

    app = durable_agents.App(http_api=False, demo_responder=app_script)
    assert demo_responders() == (app_script,)
    app.register_functions(bp)
    app.register_functions(bp)  # again: no second entry
    assert demo_responders() == (app_script, blueprint_script)
    other = durable_agents.App(http_api=False)
    other.register_functions(bp)
    assert demo_responders() == (app_script, blueprint_script)

    function = {f.get_function_name(): f for f in app.get_functions()}["invoke_model"].get_user_function()
    for text, expected in (("the app and the blueprint", "from the app"), ("the blueprint", "from the blueprint")):
        result = asyncio.run(function(payload=_request(text)))
        assert result["demo"] is True
        assert decode_model_response(result["response"]).output[0].content[0].text == f"{DEMO_PREFIX} {expected}"

    with pytest.raises(TypeError, match="demo_responder must be callable"):
        durable_agents.Blueprint(demo_responder="nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="demo_responder must be callable"):
        durable_agents.App(http_api=False, demo_responder=42)  # type: ignore[arg-type]
