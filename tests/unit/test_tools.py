"""Unit tests for durable_agents._tools: the activity wrapper, schema, ToolCall injection, registration."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated

import azure.durable_functions as df
import azure.functions as func
import pydantic
import pytest
from agents import Agent, FunctionTool
from agents.exceptions import UserError
from agents.tool_context import ToolContext
from pydantic import Field

from durable_agents import ActivityTool, ToolCall, ToolRetry, activity_tool, run_setting


@dataclass
class Quote:
    sku: str
    price: float


def _registered(bp: df.Blueprint) -> dict[str, object]:
    """Build the blueprint's functions the way the worker does and return {function name: Function}."""
    app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    return {f.get_function_name(): f for f in app.get_functions()}


def _invoke_activity(function, payload: dict) -> object:
    """Invoke a registered activity like the Python worker: JSON text → ActivityTriggerConverter → user fn."""
    from azure.functions.durable_functions import ActivityTriggerConverter
    from azure.functions.meta import Datum

    text = json.dumps(payload)
    arg = ActivityTriggerConverter.decode(Datum(type="string", value=text), trigger_metadata=None)
    result = function.get_user_function()(payload=arg)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    # The worker encodes the return value with df_dumps (protocol §4.2): it must be JSON-serialisable.
    encoded = ActivityTriggerConverter.encode(result, expected_type=None)
    return json.loads(encoded.value)


def test_activity_tool_is_a_function_tool_with_schema_from_signature_and_docstring():
    bp = df.Blueprint()

    @activity_tool(bp)
    def lookup_order(order_id: str, call: ToolCall, include_items: bool = False) -> dict:
        """Look up an order by id.

        Args:
            order_id: The order id, e.g. ORD-1001.
            include_items: Whether to include the line items.
        """
        return {}

    assert isinstance(lookup_order, FunctionTool)
    assert isinstance(lookup_order, ActivityTool)
    assert lookup_order.name == "lookup_order"
    assert lookup_order.activity_name == "lookup_order"
    assert lookup_order.description == "Look up an order by id."
    schema = lookup_order.params_json_schema
    assert set(schema["properties"]) == {"order_id", "include_items"}  # ToolCall param excluded
    assert schema["properties"]["order_id"]["description"] == "The order id, e.g. ORD-1001."
    assert schema["additionalProperties"] is False
    assert lookup_order.tool_call_param == "call"
    assert lookup_order.needs_approval is False
    assert lookup_order.retry == ToolRetry(3, 2000)
    assert lookup_order.function.__name__ == "lookup_order"
    Agent(name="a", tools=[lookup_order])  # accepted by the SDK as a tool


def test_name_description_needs_approval_and_retry_are_passed_through():
    bp = df.Blueprint()

    async def policy(ctx, args, call_id) -> bool:
        return args["amount"] > 100

    @activity_tool(bp, name="refund", description="Refund money.", needs_approval=policy, retry=ToolRetry(5, 10))
    def refund_order(order_id: str, amount: Annotated[float, Field(description="EUR")]) -> str:
        """Ignored docstring."""
        return "ok"

    assert refund_order.name == "refund"
    assert refund_order.activity_name == "refund"
    assert refund_order.description == "Refund money."
    assert refund_order.needs_approval is policy
    assert refund_order.params_json_schema["properties"]["amount"]["description"] == "EUR"
    options = refund_order.retry.to_retry_options()
    assert options.max_number_of_attempts == 5
    assert options.first_retry_interval_in_milliseconds == 10
    functions = _registered(bp)
    assert list(functions) == ["refund"]
    bindings = [json.loads(b) for b in functions["refund"].get_raw_bindings()]
    assert bindings == [{"direction": "IN", "type": "activityTrigger", "name": "payload", "activity": "refund"}]


def test_registered_activity_calls_the_function_with_args_and_injected_tool_call():
    bp = df.Blueprint()
    seen: list[tuple] = []

    @activity_tool(bp)
    def refund_order(order_id: str, amount: Decimal, call: ToolCall, reason: str = "n/a") -> dict:
        """Refund."""
        seen.append((order_id, amount, call, reason))
        return {"order": order_id, "amount": amount, "key": f"{call.run_id}:{call.call_id}"}

    functions = _registered(bp)
    out = _invoke_activity(
        functions["refund_order"],
        {
            "args": {"order_id": "ORD-1", "amount": "250.00"},
            "call": {"runId": "run-1", "callId": "call_1", "tool": "refund_order", "agent": "support"},
        },
    )
    assert seen == [("ORD-1", Decimal("250.00"), ToolCall("run-1", "call_1", "refund_order", "support"), "n/a")]
    assert out == {"order": "ORD-1", "amount": "250.00", "key": "run-1:call_1"}


def test_async_function_runs_as_async_activity():
    bp = df.Blueprint()

    @activity_tool(bp)
    async def quote(sku: str, qty: int) -> Quote:
        """Price a quantity of an item."""
        await asyncio.sleep(0)
        return Quote(sku=sku, price=1.5 * qty)

    functions = _registered(bp)
    fn = functions["quote"].get_user_function()
    assert asyncio.iscoroutinefunction(fn)
    out = _invoke_activity(functions["quote"], {"args": {"sku": "X", "qty": 4}, "call": {}})
    assert out == {"sku": "X", "price": 6.0}
    assert quote.run_activity({"args": {"sku": "Y", "qty": 2}, "call": {}}) == {"sku": "Y", "price": 3.0}


def test_invalid_arguments_and_function_errors_propagate_to_the_activity_caller():
    bp = df.Blueprint()

    @activity_tool(bp)
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    fn = _registered(bp)["divide"]
    with pytest.raises(pydantic.ValidationError):
        _invoke_activity(fn, {"args": {"a": "x", "b": 1}, "call": {}})
    with pytest.raises(ZeroDivisionError):
        _invoke_activity(fn, {"args": {"a": 1, "b": 0}, "call": {}})
    # A JSON string holding the input is accepted too.
    assert divide.run_activity(json.dumps({"args": {"a": 6, "b": 3}, "call": {}})) == 2.0


def test_unsupported_signatures_are_rejected():
    bp = df.Blueprint()
    with pytest.raises(UserError):

        @activity_tool(bp)
        def uses_context(ctx: ToolContext, x: int) -> int:
            return x

    with pytest.raises(UserError):

        @activity_tool(bp)
        def two_calls(a: ToolCall, b: ToolCall) -> int:
            return 1


def test_outside_an_orchestration_the_tool_runs_in_process_through_the_sdk_invoker():
    bp = df.Blueprint()

    @activity_tool(bp)
    def add(a: int, b: int, call: ToolCall) -> dict:
        """Add two numbers."""
        return {"sum": a + b, "run": call.run_id, "call": call.call_id}

    @activity_tool(bp)
    def fail(x: int) -> int:
        """Always fails."""
        raise RuntimeError("kaputt")

    def ctx(name: str, args: str) -> ToolContext:
        return ToolContext(context=None, tool_name=name, tool_call_id="call_9", tool_arguments=args)

    out = asyncio.run(add.on_invoke_tool(ctx("add", '{"a": 2, "b": 3}'), '{"a": 2, "b": 3}'))
    assert json.loads(out) == {"sum": 5, "run": "local", "call": "call_9"}
    # A failing body becomes the same model-visible tool error as in an orchestration, not an exception.
    err = asyncio.run(fail.on_invoke_tool(ctx("fail", '{"x": 1}'), '{"x": 1}'))
    assert err == "Tool 'fail' failed: RuntimeError: kaputt"
    # Invalid JSON arguments are rejected by the SDK before the body runs.
    bad = asyncio.run(add.on_invoke_tool(ctx("add", '{"a": "z", "b": 3}'), '{"a": "z", "b": 3}'))
    assert bad == "An error occurred while running the tool. Please try again."


def test_run_setting_outside_an_orchestration_reads_the_environment(monkeypatch):
    monkeypatch.setenv("SOME_TEST_SETTING", "  42 ")
    assert run_setting("SOME_TEST_SETTING", "1") == "42"
    monkeypatch.setenv("SOME_TEST_SETTING", "  ")
    assert run_setting("SOME_TEST_SETTING", "1") == "1"


def test_tool_retry_validation():
    with pytest.raises(ValueError):
        ToolRetry(max_attempts=0)
    with pytest.raises(ValueError):
        ToolRetry(first_retry_interval_ms=0)


def test_the_injected_tool_call_carries_the_run_s_customer_and_whether_a_person_approved_it():
    bp = df.Blueprint()
    seen: list[ToolCall] = []

    @activity_tool(bp)
    def refund_order(order_id: str, call: ToolCall) -> str:
        """Refund."""
        seen.append(call)
        return "ok"

    function = _registered(bp)["refund_order"]
    info = {"runId": "run-1", "callId": "call_1", "tool": "refund_order", "agent": "support",
            "customer": "jordan.rivera@example.com", "approved": True}
    _invoke_activity(function, {"args": {"order_id": "ORD-1"}, "call": info})
    # An input written before these members existed (an in-flight run) and non-boolean / empty values.
    _invoke_activity(function, {"args": {"order_id": "ORD-1"},
                                "call": {"runId": "run-1", "callId": "call_2", "tool": "refund_order", "agent": "a"}})
    _invoke_activity(function, {"args": {"order_id": "ORD-1"},
                                "call": {"runId": "r", "callId": "c", "tool": "t", "agent": "a", "customer": "",
                                         "approved": "true"}})
    assert seen == [
        ToolCall("run-1", "call_1", "refund_order", "support", customer="jordan.rivera@example.com", approved=True),
        ToolCall("run-1", "call_2", "refund_order", "a", customer=None, approved=False),
        ToolCall("r", "c", "t", "a", customer=None, approved=False),
    ]
    assert seen[0].to_json() == info
    assert ToolCall.from_json(seen[1].to_json()) == seen[1]
