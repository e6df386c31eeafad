"""JSON every parser accepts (``durable_agents._jsonsafe``): the helpers, then tool arguments with NaN and lone
surrogates in real runs through the test kit."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from agents import Agent, Runner

import durable_agents
from durable_agents import ToolCall, activity_tool
from durable_agents._jsonsafe import dumps, has_lone_surrogate, json_safe, loads_strict, replace_surrogates
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message, function_call, function_outputs

pytestmark = pytest.mark.usefixtures("fresh_runner_cache")

CUSTOMER = "jordan.rivera@example.com"
NAN_ARGUMENTS = '{"order_id": "ORD-1", "amount": NaN}'


def test_has_lone_surrogate_and_replace_surrogates():
    assert has_lone_surrogate("a\ud800b") and has_lone_surrogate("\udfff")
    assert not has_lone_surrogate("plain é 😀") and not has_lone_surrogate("")
    assert replace_surrogates("a\ud800b\udc00") == "a\ufffdb\ufffd"
    text = "unchanged"
    assert replace_surrogates(text) is text


def test_json_safe_replaces_surrogates_and_non_finite_floats_everywhere_and_keeps_clean_values():
    value = {"\ud83dkey": ["x\udc00", math.nan, math.inf, -math.inf, 1.5, (1, "\ud800")], "n": None, "ok": True}
    assert json_safe(value) == {"\ufffdkey": ["x\ufffd", None, None, None, 1.5, [1, "\ufffd"]], "n": None,
                                "ok": True}
    assert value["\ud83dkey"][0] == "x\udc00"  # the input is not changed
    clean = {"a": [1, 2.5, "é"], "b": {"c": None}}
    assert json_safe(clean) == clean
    assert json_safe("plain") == "plain" and json_safe(3) == 3


def test_dumps_always_writes_valid_utf8_json():
    text = dumps({"amount": math.nan, "note": "caf\u00e9 \ud800", "list": (1, math.inf)})
    assert text == '{"amount": null, "note": "café \ufffd", "list": [1, null]}'
    text.encode("utf-8")  # strict: raises for a surrogate
    assert dumps({"a": 1}, sort_keys=True, separators=(",", ":")) == '{"a":1}'
    with pytest.raises(TypeError):
        dumps({"a": object()})  # what json.dumps cannot write is still an error


@pytest.mark.parametrize("text", ['{"a": NaN}', "[Infinity]", "-Infinity", '{"a": [1, {"b": -Infinity}]}'])
def test_loads_strict_refuses_the_non_standard_constants(text):
    json.loads(text)  # Python's own parser accepts them
    with pytest.raises(ValueError, match="is not valid JSON"):
        loads_strict(text)


def test_loads_strict_parses_json_and_raises_value_error_for_invalid_text():
    assert loads_strict('{"a": [1, 2.5e3, "NaN", null]}') == {"a": [1, 2500.0, "NaN", None]}
    with pytest.raises(ValueError):
        loads_strict("{not json")


class Shop:
    """An app with an ungated ``refund`` (amount: number) and a gated ``close_account``; tools record their inputs."""

    def __init__(self, script: list[Any]) -> None:
        bp = durable_agents.Blueprint()
        self.seen: list[tuple[str, Any]] = []
        shop = self

        @activity_tool(bp)
        def refund(order_id: str, amount: float) -> dict:
            """Refund an order."""
            shop.seen.append(("refund", (order_id, amount)))
            return {"refunded": amount}

        @activity_tool(bp, needs_approval=True)
        def close_account(account_id: str, note: str, call: ToolCall) -> dict:
            """Close an account."""
            shop.seen.append(("close_account", (account_id, note, call.approved)))
            return {"closed": account_id}

        agent = Agent(name="support", instructions="Help.", tools=[refund, close_account])

        @bp.agent(agent, description="Helps.", name="support")
        def support(context):
            return Runner.run_sync(agent, context.get_input()["input"])

        app = durable_agents.App(http_api=False)
        app.register_functions(bp)
        self.model = ScriptedModel(script)
        self.harness = ReplayHarness(app, model=self.model)

    def start(self) -> Any:
        return self.harness.start_run("support", "hi", settings={"APPROVAL_TIMEOUT": "PT1H"}, run_id="r",
                                      customer=CUSTOMER)


def _statuses_are_strict_json(run: Any) -> None:
    for status in run.custom_statuses:
        json.dumps(status, allow_nan=False).encode("utf-8")


def test_nan_in_tool_arguments_gives_the_model_a_tool_error_and_runs_no_activity():
    shop = Shop([[function_call("refund", NAN_ARGUMENTS, call_id="c1")], [assistant_message("sorry")]])
    run = shop.start()
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    output = function_outputs(shop.model.requests[1])["c1"]
    assert output.startswith("Tool 'refund' failed: the arguments are not valid JSON (NaN is not valid JSON)")
    assert output.endswith("; send JSON numbers.")
    assert shop.seen == []
    assert [name for name, _ in shop.harness.activity_calls] == ["invoke_model", "invoke_model"]
    _statuses_are_strict_json(run)


def test_nan_in_a_gated_call_s_arguments_is_rejected_without_asking_anyone():
    arguments = '{"account_id": "A-1", "note": "x", "limit": NaN}'
    shop = Shop([[function_call("close_account", arguments, call_id="c1")], [assistant_message("sorry")]])
    run = shop.start()
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert function_outputs(shop.model.requests[1])["c1"] == (
        "The call to 'close_account' was not run: its arguments are not valid JSON (NaN is not valid JSON); "
        "call it again with plain JSON numbers and strings.")
    # No reviewer was asked (no pending approval, no audit record, no approval timer) and the tool never ran.
    assert [name for name, _ in shop.harness.activity_calls] == ["invoke_model", "invoke_model"]
    assert all(not status["pendingApprovals"] and not status["approvals"] for status in run.custom_statuses)
    assert not [e for e in run.history if e["EventType"] == 10]
    assert shop.seen == []
    _statuses_are_strict_json(run)


def test_a_version_1_run_shows_a_nan_call_to_the_reviewer_as_the_model_s_text_and_never_runs_the_tool():
    arguments = '{"account_id": "A-1", "note": "x", "limit": NaN}'
    shop = Shop([[function_call("close_account", arguments, call_id="c1")], [assistant_message("sorry")]])
    run = shop.harness.start("support", {"agent": "support", "input": "hi", "settings": {"APPROVAL_TIMEOUT": "PT1H"}},
                             "r")
    shop.harness.run(advance_timers=False)
    [pending] = shop.harness.pending_approvals(run)
    # Not JSON: the reviewer sees the text as a string (valid JSON), never a NaN number.
    assert pending["arguments"] == arguments
    assert pending["summary"] == "Call close_account with " + json.dumps(arguments, ensure_ascii=False)
    shop.harness.approve(run, "c1")
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert function_outputs(shop.model.requests[1])["c1"].startswith(
        "Tool 'close_account' failed: the arguments are not valid JSON (NaN is not valid JSON)")
    assert shop.seen == []
    _statuses_are_strict_json(run)


def test_a_lone_surrogate_in_tool_arguments_reaches_the_activity_and_the_reviewer_as_u_fffd():
    # The model's text escapes the surrogate (\ud800): valid JSON text whose string value cannot be UTF-8.
    arguments = '{"account_id": "A-1", "note": "bad \\ud800 char"}'
    shop = Shop([[function_call("close_account", arguments, call_id="c1")], [assistant_message("closed")]])
    run = shop.start()
    shop.harness.run(advance_timers=False)
    assert run.status == "Running", run.output  # today: Failed, "'utf-8' codec can't encode character '\\ud800'"
    [pending] = shop.harness.pending_approvals(run)
    assert pending["arguments"] == {"account_id": "A-1", "note": "bad \ufffd char"}
    assert pending["summary"] == 'Call close_account with {"account_id": "A-1", "note": "bad \ufffd char"}'
    shop.harness.approve(run, "c1")
    shop.harness.run(advance_timers=False)
    assert run.status == "Completed", run.output
    assert shop.seen == [("close_account", ("A-1", "bad \ufffd char", True))]
    [tool_input] = [value for name, value in shop.harness.activity_calls if name == "close_account"]
    assert tool_input["args"] == {"account_id": "A-1", "note": "bad \ufffd char"}
    for status in run.custom_statuses:
        assert not has_lone_surrogate(json.dumps(status, ensure_ascii=False))
    _statuses_are_strict_json(run)
