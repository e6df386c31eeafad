"""Round trips of durable_agents._model_io through JSON, checked against the SDK's own converters."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from agents import Agent, ModelSettings, WebSearchTool, function_tool, handoff
from agents.agent_output import AgentOutputSchema
from agents.items import ModelResponse
from agents.models.chatcmpl_converter import Converter as ChatConverter
from agents.models.openai_responses import Converter as ResponsesConverter
from agents.usage import Usage
from openai._models import construct_type
from openai.types.chat import ChatCompletionMessage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage
from openai.types.responses.response_output_item import ResponseOutputItem
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails
from openai.types.shared import Reasoning
from pydantic import BaseModel

from durable_agents import _model_io as model_io
from durable_agents._model_io import (
    decode_model_request,
    decode_model_response,
    decode_output_item,
    encode_model_request,
    encode_model_response,
    encode_output_item,
)


def _json_round(value):
    text = json.dumps(value, allow_nan=False, sort_keys=True)
    return json.loads(text)


@function_tool
def lookup_order(order_id: str) -> str:
    """Look up an order by id (ORD-1234)."""
    return order_id


@function_tool(strict_mode=False)
def refund_order(order_id: str, amount: str, reason: str = "customer request") -> dict:
    """Refund an order."""
    return {}


class Verdict(BaseModel):
    approved: bool
    note: str


billing = Agent(name="billing", instructions="Billing questions.")


def _request(**overrides):
    kwargs = dict(
        model="gpt-4.1-mini",
        system_instructions="You are a support agent.",
        input=[
            {"role": "user", "content": "Refund ORD-1042"},
            {"type": "function_call", "call_id": "call_1", "name": "lookup_order",
             "arguments": '{"order_id": "ORD-1042"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": '{"total": "59.90"}'},
        ],
        model_settings=ModelSettings(temperature=0.25, tool_choice="auto", reasoning=Reasoning(effort="low"),
                                     metadata={"run": "r1"}, parallel_tool_calls=True),
        tools=[lookup_order, refund_order],
        output_schema=AgentOutputSchema(Verdict),
        handoffs=[handoff(billing)],
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    )
    kwargs.update(overrides)
    return kwargs


# ---------------------------------------------------------------------------------------------------------------
# Requests
# ---------------------------------------------------------------------------------------------------------------


def test_request_round_trip_is_plain_deterministic_json():
    first = encode_model_request(**_request())
    second = encode_model_request(**_request())
    assert json.dumps(first, allow_nan=False) == json.dumps(second, allow_nan=False)
    decoded = decode_model_request(_json_round(first))
    model = decoded.pop("model")
    assert model == "gpt-4.1-mini"
    again = encode_model_request(model=model, **decoded)
    assert _json_round(again) == _json_round(first)
    assert first["modelSettings"] == {
        "temperature": 0.25, "tool_choice": "auto", "parallel_tool_calls": True,
        "reasoning": {"effort": "low"}, "metadata": {"run": "r1"},
    }


def test_decoded_tools_convert_exactly_like_the_originals_for_both_apis():
    original = _request()
    decoded = decode_model_request(_json_round(encode_model_request(**original)))

    for tool_orig, tool_dec in zip(original["tools"], decoded["tools"], strict=True):
        assert ChatConverter.tool_to_openai(tool_dec) == ChatConverter.tool_to_openai(tool_orig)
    assert [ChatConverter.convert_handoff_tool(h) for h in decoded["handoffs"]] == [
        ChatConverter.convert_handoff_tool(h) for h in original["handoffs"]
    ]
    conv_orig = ResponsesConverter.convert_tools(original["tools"], original["handoffs"])
    conv_dec = ResponsesConverter.convert_tools(decoded["tools"], decoded["handoffs"])
    assert conv_dec.tools == conv_orig.tools and conv_dec.includes == conv_orig.includes
    assert conv_dec.tools[1]["strict"] is False  # refund_order was declared non-strict

    assert ResponsesConverter.get_response_format(decoded["output_schema"]) == \
        ResponsesConverter.get_response_format(original["output_schema"])
    assert ChatConverter.convert_response_format(decoded["output_schema"]) == \
        ChatConverter.convert_response_format(original["output_schema"])
    assert decoded["model_settings"].reasoning == Reasoning(effort="low")
    assert decoded["handoffs"][0].agent_name == "billing"


def test_decoded_tool_and_handoff_callbacks_refuse_to_run():
    decoded = decode_model_request(_json_round(encode_model_request(**_request())))
    with pytest.raises(RuntimeError, match="never inside the model call"):
        asyncio.run(decoded["tools"][0].on_invoke_tool(None, "{}"))
    with pytest.raises(RuntimeError, match="handoffs run in the orchestrator"):
        asyncio.run(decoded["handoffs"][0].on_invoke_handoff(None, "{}"))


def test_plain_text_output_schema_and_string_input():
    payload = encode_model_request(**_request(input="hello", output_schema=AgentOutputSchema(str), tools=[],
                                              handoffs=[], model_settings=ModelSettings()))
    assert payload["outputSchema"] == {"plainText": True, "name": "str", "jsonSchema": None, "strict": True}
    assert payload["modelSettings"] == {}
    decoded = decode_model_request(_json_round(payload))
    assert decoded["input"] == "hello"
    assert decoded["output_schema"].is_plain_text()
    assert ResponsesConverter.get_response_format(decoded["output_schema"]) == \
        ResponsesConverter.get_response_format(AgentOutputSchema(str))


def test_retry_settings_are_not_sent_because_the_orchestrator_owns_retries():
    from agents.retry import ModelRetrySettings

    payload = encode_model_request(**_request(model_settings=ModelSettings(retry=ModelRetrySettings(max_retries=4))))
    assert "retry" not in payload["modelSettings"]


def test_a_tool_that_runs_locally_is_rejected_with_its_name_and_the_reason():
    from agents import LocalShellTool

    with pytest.raises(TypeError, match="'local_shell' \\(LocalShellTool\\).*shell commands in the orchestrator"):
        encode_model_request(**_request(tools=[lookup_order, LocalShellTool(executor=lambda request: "")]))


def test_a_hosted_tool_is_encoded_instead_of_rejected():
    payload = encode_model_request(**_request(tools=[lookup_order, WebSearchTool()]))
    assert payload["tools"][1] == {"type": "web_search", "fields": {"search_context_size": "medium"}}


def test_input_with_pydantic_items_and_nan():
    call = ResponseFunctionToolCall(type="function_call", call_id="c1", name="lookup_order", arguments="{}")
    payload = encode_model_request(**_request(input=[{"role": "user", "content": "x"}, call]))
    assert payload["input"][1] == {"arguments": "{}", "call_id": "c1", "name": "lookup_order",
                                   "type": "function_call"}
    with pytest.raises(ValueError, match="not representable"):
        encode_model_request(**_request(input=[{"role": "user", "content": "x", "score": math.nan}]))
    with pytest.raises(TypeError, match="not JSON-serializable"):
        encode_model_request(**_request(input=[{"role": "user", "content": object()}]))


# ---------------------------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------------------------


def _chat_completions_items():
    """Items exactly as the SDK's Chat Completions converter produces them (tool calls have status None)."""
    message = ChatCompletionMessage.model_validate({
        "role": "assistant",
        "content": "Looking that up.",
        "refusal": "I cannot share card numbers.",
        "annotations": [{"type": "url_citation", "url_citation": {"url": "https://example.com", "title": "Ex",
                                                                   "start_index": 0, "end_index": 7}}],
        "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "lookup_order",
                                                              "arguments": '{"order_id": "ORD-1042"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "transfer_to_billing", "arguments": "{}"}},
        ],
    })
    message.reasoning_content = "Thinking about the order."  # what LiteLLM-style providers attach
    return ChatConverter.message_to_output_items(message, provider_data={"model": "llama3", "response_id": "x"})


def _responses_api_items():
    """Output items as the openai client parses Responses API JSON (lenient construction, nulls included)."""
    raw = [
        {"type": "message", "id": "msg_1", "role": "assistant", "status": "completed", "phase": None,
         "content": [{"type": "output_text", "text": "Done.", "logprobs": [],
                      "annotations": [{"type": "url_citation", "url": "https://x.test", "title": "X",
                                       "start_index": 0, "end_index": 4}]},
                     {"type": "refusal", "refusal": "no"}]},
        {"type": "message", "id": "msg_2", "role": "assistant", "status": None,
         "content": [{"type": "output_text", "text": "null status", "annotations": None}]},
        {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "lookup_order",
         "arguments": '{"order_id":"ORD-1"}', "status": "completed", "caller": None, "namespace": None},
        {"type": "function_call", "id": "fc_2", "call_id": "call_2", "name": "refund_order",
         "arguments": "{}", "status": None, "namespace": "shop", "async": False},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "plan"}],
         "encrypted_content": "gAAAA", "status": None},
        {"type": "web_search_call", "id": "ws_1", "status": "completed",
         "action": {"type": "search", "query": "weather"}},
        {"type": "file_search_call", "id": "fs_1", "status": "completed", "queries": ["refund policy"],
         "results": None},
        {"type": "computer_call", "id": "cu_1", "call_id": "call_cu", "status": "completed",
         "pending_safety_checks": [], "action": {"type": "click", "button": "left", "x": 1, "y": 2}},
        {"type": "image_generation_call", "id": "ig_1", "status": "completed", "result": None},
        {"type": "code_interpreter_call", "id": "ci_1", "status": "completed", "code": "1+1",
         "container_id": "cnt", "outputs": [{"type": "logs", "logs": "2"}]},
        {"type": "local_shell_call", "id": "ls_1", "call_id": "call_ls", "status": "completed",
         "action": {"type": "exec", "command": ["ls"], "env": {}}},
        {"type": "mcp_call", "id": "mcp_1", "server_label": "s", "name": "t", "arguments": "{}",
         "output": "ok", "error": None},
        {"type": "mcp_list_tools", "id": "mcpl_1", "server_label": "s",
         "tools": [{"name": "t", "input_schema": {"type": "object"}}]},
        {"type": "mcp_approval_request", "id": "mcpa_1", "server_label": "s", "name": "t", "arguments": "{}"},
        {"type": "custom_tool_call", "id": "ct_1", "call_id": "call_ct", "name": "grammar", "input": "x"},
    ]
    return [construct_type(value=item, type_=ResponseOutputItem) for item in raw]


def _usage():
    return Usage(requests=1, input_tokens=120, output_tokens=30, total_tokens=150,
                 input_tokens_details=InputTokensDetails(cached_tokens=100, cache_write_tokens=3),
                 output_tokens_details=OutputTokensDetails(reasoning_tokens=7))


@pytest.mark.parametrize("items_factory", [_chat_completions_items, _responses_api_items])
def test_response_round_trip_is_lossless(items_factory):
    items = items_factory()
    response = ModelResponse(output=items, usage=_usage(), response_id="resp_1", request_id="req_9")
    encoded = encode_model_response(response)
    text = json.dumps(encoded, allow_nan=False)
    assert text == json.dumps(encode_model_response(response), allow_nan=False)

    decoded = decode_model_response(json.loads(text))
    assert encode_model_response(decoded) == json.loads(text)
    assert decoded.response_id == "resp_1" and decoded.request_id == "req_9"
    assert (decoded.usage.input_tokens, decoded.usage.output_tokens, decoded.usage.total_tokens) == (120, 30, 150)
    assert decoded.usage.input_tokens_details.cached_tokens == 100
    assert decoded.usage.output_tokens_details.reasoning_tokens == 7
    for original, restored in zip(items, decoded.output, strict=True):
        assert type(restored) is type(original)
        if hasattr(original, "model_dump"):
            assert restored.model_dump() == original.model_dump()
            assert restored.model_fields_set == original.model_fields_set
    # What the runner sends back to the model next turn is unchanged.
    assert decoded.to_input_items() == response.to_input_items()


def test_chat_completions_tool_calls_keep_null_status_and_provider_data():
    items = _chat_completions_items()
    kinds = [item.type for item in items]
    assert kinds == ["reasoning", "message", "function_call", "function_call"]
    encoded = [encode_output_item(item) for item in items]
    call = decode_output_item(json.loads(json.dumps(encoded[2])))
    assert isinstance(call, ResponseFunctionToolCall)
    assert call.status is None and call.call_id == "call_a"
    assert call.provider_data == {"model": "llama3", "response_id": "x"}
    message = decode_output_item(json.loads(json.dumps(encoded[1])))
    assert isinstance(message, ResponseOutputMessage)
    assert [part.type for part in message.content] == ["output_text", "refusal"]


def test_items_with_nulls_in_required_fields_decode_to_sdk_types():
    """A strict validation would reject status=None on a message; decoding stays lenient and typed."""
    data = {"type": "message", "id": "m", "role": "assistant", "status": None,
            "content": [{"type": "output_text", "text": "hi", "annotations": None}]}
    with pytest.raises(Exception):  # noqa: B017 - the strict path really fails
        ResponseOutputMessage.model_validate(data)
    item = decode_output_item(data)
    assert isinstance(item, ResponseOutputMessage)
    assert item.content[0].text == "hi"
    assert encode_output_item(item) == data


def test_unknown_items_and_empty_usage_pass_through():
    decoded = decode_model_response({"output": [{"type": "brand_new", "x": 1}, "opaque"]})
    assert decoded.output == [{"type": "brand_new", "x": 1}, "opaque"]
    assert decoded.usage.total_tokens == 0 and decoded.response_id is None


def test_module_exports_documented_api():
    for name in model_io.__all__:
        assert getattr(model_io, name).__doc__, name


def test_model_settings_of_every_json_kind_round_trip():
    from agents.model_settings import MCPToolChoice

    settings = ModelSettings(
        tool_choice=MCPToolChoice(server_label="s", name="n"), extra_body={"a": 1}, extra_headers={"X-A": "b"},
        extra_args={"seed": 3}, truncation="auto", top_logprobs=2, timeout=12.5, max_tokens=100, store=False,
        response_include=["reasoning.encrypted_content"], verbosity="low", include_usage=True,
        prompt_cache_retention="24h", top_p=0.5, frequency_penalty=0.1, presence_penalty=0.2,
    )
    payload = encode_model_request(**_request(model_settings=settings))
    decoded = decode_model_request(_json_round(payload))["model_settings"]
    assert decoded == settings
    assert payload["modelSettings"]["tool_choice"] == {"server_label": "s", "name": "n"}


def test_prompt_and_response_ids_pass_through():
    prompt = {"id": "pmpt_1", "version": "2", "variables": {"customer": "Sam"}}
    payload = encode_model_request(**_request(previous_response_id="resp_0", conversation_id="conv_1",
                                              prompt=prompt))
    decoded = decode_model_request(_json_round(payload))
    assert (decoded["previous_response_id"], decoded["conversation_id"], decoded["prompt"]) == (
        "resp_0", "conv_1", prompt)
