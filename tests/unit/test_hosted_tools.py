"""Hosted tools (web search, file search, code interpreter, image generation, hosted MCP, tool search...) through
``invoke_model``: the request the real Responses model sends is the one it sends without durability, their output
items cross the activity losslessly, hosted MCP approvals are durable approvals, and Chat Completions refuses them
at once with an error that says what to do."""

from __future__ import annotations

import asyncio
import json

import pytest
from agents import (
    Agent,
    ApplyPatchTool,
    CodeInterpreterTool,
    ComputerTool,
    CustomTool,
    FileSearchTool,
    HostedMCPTool,
    ImageGenerationTool,
    LocalShellTool,
    ModelSettings,
    Runner,
    ShellTool,
    ToolSearchTool,
    WebSearchTool,
    function_tool,
    tool_namespace,
)
from agents.exceptions import UserError
from agents.models.chatcmpl_converter import Converter as ChatConverter
from agents.models.interface import ModelTracing
from agents.models.openai_responses import Converter as ResponsesConverter
from agents.models.openai_responses import OpenAIResponsesModel
from agents.tool import ProgrammaticToolCallingTool
from openai import AsyncOpenAI
from openai.types.responses.response_output_item import McpApprovalRequest, McpCall
from openai.types.responses.tool import ImageGeneration

import durable_agents
from durable_agents import _runner as durable_runner
from durable_agents._model_io import (
    decode_model_request,
    decode_model_response,
    decode_output_item,
    encode_model_request,
    encode_model_response,
    encode_output_item,
    prepare_model_call,
    to_json_value,
)
from durable_agents.testing import ReplayHarness, ScriptedModel, assistant_message
from tests.support.model_server import ScriptedModelServer


@function_tool(defer_loading=True)
def find_customer(email: str) -> str:
    """Find a customer by email."""
    return email


@function_tool
def lookup_account(account_id: str) -> str:
    """Look up an account."""
    return account_id


@function_tool(allowed_callers=["direct", "programmatic"])
def sum_orders(customer: str) -> str:
    """Sum a customer's orders (callable from generated code)."""
    return customer


MCP_CONFIG = {"type": "mcp", "server_label": "gh", "server_url": "https://mcp.example/mcp",
              "require_approval": "always", "allowed_tools": ["create_issue"],
              "headers": {"X-Api-Key": "%GH_MCP_KEY%"}}

# Each case: the tools of one agent, as a user of openai-agents 0.24 writes them.
TOOL_CASES = {
    "web_search_default": [WebSearchTool()],
    "web_search_every_option": [WebSearchTool(
        user_location={"type": "approximate", "city": "Paris", "country": "FR"},
        filters={"allowed_domains": ["learn.microsoft.com"]}, search_context_size="high",
        external_web_access=False, search_content_types=["text", "image"],
        image_settings={"max_results": 3, "caption": True})],
    "file_search": [FileSearchTool(vector_store_ids=["vs_1", "vs_2"], max_num_results=5, include_search_results=True,
                                   ranking_options={"ranker": "auto", "score_threshold": 0.5},
                                   filters={"type": "eq", "key": "lang", "value": "en"})],
    "code_interpreter": [CodeInterpreterTool(tool_config={"type": "code_interpreter",
                                                          "container": {"type": "auto", "file_ids": ["file_1"]}})],
    "image_generation_dict": [ImageGenerationTool(tool_config={"type": "image_generation", "quality": "low",
                                                               "size": "1024x1024", "output_format": "png"})],
    "image_generation_model": [ImageGenerationTool(tool_config=ImageGeneration(type="image_generation",
                                                                                quality="high"))],
    "hosted_mcp": [HostedMCPTool(tool_config=MCP_CONFIG)],  # type: ignore[arg-type]
    "hosted_mcp_with_callback": [HostedMCPTool(tool_config={"type": "mcp", "server_label": "docs",
                                                            "server_url": "https://docs.example/mcp",
                                                            "require_approval": "never"},
                                               on_approval_request=lambda request: {"approve": True})],
    "tool_search_and_namespace": [*tool_namespace(name="crm", description="CRM tools.", tools=[find_customer]),
                                  ToolSearchTool(description="Search the CRM tools.", execution="server"),
                                  lookup_account],
    "programmatic_tool_calling": [ProgrammaticToolCallingTool(), sum_orders, lookup_account],
    "hosted_shell": [ShellTool(environment={"type": "container_auto", "memory_limit": "4g"})],
    "all_hosted_together": [WebSearchTool(), FileSearchTool(vector_store_ids=["vs_1"]),
                            CodeInterpreterTool(tool_config={"type": "code_interpreter",
                                                             "container": {"type": "auto"}}),
                            ImageGenerationTool(tool_config={"type": "image_generation"}),
                            HostedMCPTool(tool_config=MCP_CONFIG), lookup_account],  # type: ignore[arg-type]
}


def _json(value):
    return json.loads(json.dumps(value, allow_nan=False))


def _request(tools, **overrides):
    kwargs = dict(model="gpt-5.4", system_instructions="Research.", input="What changed in Durable Functions?",
                  model_settings=ModelSettings(), tools=tools, output_schema=None, handoffs=[])
    kwargs.update(overrides)
    return kwargs


def _through_the_activity(tools):
    """The tools as the activity rebuilds them from the JSON the orchestrator scheduled."""
    return decode_model_request(_json(encode_model_request(**_request(tools))))["tools"]


@pytest.mark.parametrize("case", sorted(TOOL_CASES))
def test_hosted_tools_encode_as_deterministic_lossless_json(case):
    tools = TOOL_CASES[case]
    first = encode_model_request(**_request(tools))
    assert json.dumps(first, allow_nan=False) == json.dumps(encode_model_request(**_request(tools)), allow_nan=False)
    decoded = decode_model_request(_json(first))
    assert [type(t) for t in decoded["tools"]] == [type(t) for t in tools]
    decoded.pop("model")
    assert _json(encode_model_request(model="gpt-5.4", **decoded)) == _json(first)


@pytest.mark.parametrize("case", sorted(TOOL_CASES))
def test_the_sdk_converter_builds_the_same_responses_tools_from_the_decoded_tools(case):
    tools = TOOL_CASES[case]
    original = ResponsesConverter.convert_tools(tools, [], model="gpt-5.4")
    decoded = ResponsesConverter.convert_tools(_through_the_activity(tools), [], model="gpt-5.4")
    assert to_json_value(decoded.tools) == to_json_value(original.tools)
    assert sorted(decoded.includes) == sorted(original.includes)


@pytest.fixture(scope="module")
def wire_server():
    with ScriptedModelServer([{"text": "ok"}]) as server:
        yield server


def _sent(server, tools, model_settings=None):
    """The body the real OpenAIResponsesModel posts for ``tools`` (captured by the scripted server)."""
    client = AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)
    model = OpenAIResponsesModel(model="gpt-5.4", openai_client=client)
    asyncio.run(model.get_response(system_instructions="Research.", input="hi",
                                   model_settings=model_settings or ModelSettings(), tools=tools,
                                   output_schema=None, handoffs=[], tracing=ModelTracing.DISABLED))
    return server.requests[-1]


@pytest.mark.parametrize("case", sorted(set(TOOL_CASES) - {"image_generation_model"}))
def test_the_real_responses_model_sends_the_same_tools_with_and_without_the_activity(case, wire_server):
    tools = TOOL_CASES[case]
    without = _sent(wire_server, tools)
    through = _sent(wire_server, _through_the_activity(tools))
    assert through["tools"] == without["tools"] and through["tools"]
    assert sorted(through["body"].get("include") or []) == sorted(without["body"].get("include") or [])
    assert through["body"].get("tool_choice") == without["body"].get("tool_choice")


def test_an_image_generation_config_given_as_the_openai_model_is_sent_as_its_set_fields(wire_server):
    tools = TOOL_CASES["image_generation_model"]
    # openai-agents 0.24 itself cannot send it (it iterates the pydantic model as a mapping) ...
    with pytest.raises(TypeError, match="Invalid Responses tool param payload"):
        _sent(wire_server, tools)
    # ... through the activity it is the dict of its set fields, which the SDK sends.
    assert _sent(wire_server, _through_the_activity(tools))["tools"] == [{"type": "image_generation",
                                                                          "quality": "high"}]


def test_a_named_hosted_tool_choice_is_sent_the_same(wire_server):
    tools = [WebSearchTool(), FileSearchTool(vector_store_ids=["vs_1"])]
    settings = ModelSettings(tool_choice="file_search")
    without = _sent(wire_server, tools, settings)
    through = _sent(wire_server, _through_the_activity(tools), settings)
    assert through["body"]["tool_choice"] == without["body"]["tool_choice"] == {"type": "file_search"}


def test_the_encoded_form_names_the_responses_tool_type_and_the_sdk_fields():
    payload = encode_model_request(**_request(TOOL_CASES["all_hosted_together"]))
    assert [t["type"] for t in payload["tools"]] == ["web_search", "file_search", "code_interpreter",
                                                     "image_generation", "mcp", "function"]
    assert payload["tools"][1] == {"type": "file_search", "fields": {"vector_store_ids": ["vs_1"],
                                                                     "include_search_results": False}}
    assert payload["tools"][4] == {"type": "mcp", "fields": {"tool_config": MCP_CONFIG}}


def test_an_mcp_approval_callback_stays_in_the_orchestrator_and_is_not_sent():
    [encoded] = encode_model_request(**_request(TOOL_CASES["hosted_mcp_with_callback"]))["tools"]
    assert set(encoded["fields"]) == {"tool_config"}
    [decoded] = _through_the_activity(TOOL_CASES["hosted_mcp_with_callback"])
    assert decoded.on_approval_request is None


# ---------------------------------------------------------------------------------------------------------------
# Refusals and credentials
# ---------------------------------------------------------------------------------------------------------------


class _Editor:
    def create_file(self, operation):
        return None

    update_file = delete_file = create_file


async def _raw(context, text):
    return text


@pytest.mark.parametrize(("tool", "message"), [
    (LocalShellTool(executor=lambda request: ""), r"'local_shell' \(LocalShellTool\).*shell commands"),
    (ComputerTool(computer=object()), r"\(ComputerTool\).*local computer"),
    (ApplyPatchTool(editor=_Editor()), r"'apply_patch' \(ApplyPatchTool\).*editor"),
    (CustomTool(name="grammar", description="raw text", on_invoke_tool=_raw), r"'grammar' \(CustomTool\)"),
    (ShellTool(executor=lambda request: ""), r"ShellTool with a local environment"),
])
def test_tools_that_run_the_callers_code_are_refused_with_the_reason(tool, message):
    with pytest.raises(TypeError, match=message):
        encode_model_request(**_request([tool]))


@pytest.mark.parametrize("config", [
    {**MCP_CONFIG, "headers": {"X-Api-Key": "sk-live-123"}},
    {"type": "mcp", "server_label": "gh", "server_url": "https://mcp.example/mcp", "authorization": "ey.secret"},
])
def test_a_literal_mcp_credential_is_refused_because_the_history_would_keep_it(config):
    with pytest.raises(TypeError, match=r"plain text in the run's history.*%SETTING_NAME%") as caught:
        encode_model_request(**_request([HostedMCPTool(tool_config=config)]))
    assert "sk-live-123" not in str(caught.value) and "ey.secret" not in str(caught.value)


def test_the_activity_resolves_mcp_setting_references_only_when_it_calls_the_model(wire_server):
    config = {**MCP_CONFIG, "authorization": "%GH_MCP_TOKEN%"}
    payload = _json(encode_model_request(**_request([HostedMCPTool(tool_config=config)])))
    assert "%GH_MCP_TOKEN%" in json.dumps(payload) and "tok-1" not in json.dumps(payload)
    kwargs = decode_model_request(payload)
    prepare_model_call(kwargs, api="responses", environ={"GH_MCP_TOKEN": "tok-1", "GH_MCP_KEY": "key-1"})
    [sent] = _sent(wire_server, kwargs["tools"])["tools"]
    assert (sent["authorization"], sent["headers"]) == ("tok-1", {"X-Api-Key": "key-1"})
    with pytest.raises(UserError, match="GH_MCP_TOKEN named in its tool_config is not set"):
        prepare_model_call(decode_model_request(payload), api="responses", environ={"GH_MCP_KEY": "key-1"})


def test_chat_completions_refuses_hosted_tools_naming_them_and_saying_to_use_responses():
    kwargs = decode_model_request(_json(encode_model_request(**_request(TOOL_CASES["all_hosted_together"]))))
    with pytest.raises(UserError) as caught:
        prepare_model_call(kwargs, api="chat_completions", environ={})
    text = str(caught.value)
    for name in ("'web_search' (WebSearchTool)", "'file_search' (FileSearchTool)", "CodeInterpreterTool",
                 "ImageGenerationTool", "hosted MCP server 'gh' (HostedMCPTool)", "OPENAI_API=responses"):
        assert name in text
    # What the SDK would do: its Chat Completions converter refuses every non-function tool.
    with pytest.raises(UserError, match="Hosted tools are not supported with the ChatCompletions API"):
        ChatConverter.tool_to_openai(kwargs["tools"][0])
    only_functions = decode_model_request(_json(encode_model_request(**_request([lookup_account]))))
    prepare_model_call(only_functions, api="chat_completions", environ={})  # nothing to refuse


# ---------------------------------------------------------------------------------------------------------------
# Output items
# ---------------------------------------------------------------------------------------------------------------

HOSTED_OUTPUT_ITEMS = [
    {"id": "ws_1", "type": "web_search_call", "status": "completed",
     "action": {"type": "search", "query": "durable functions python", "sources": [
         {"type": "url", "url": "https://learn.microsoft.com/azure/azure-functions/durable/"}]}},
    {"id": "ws_2", "type": "web_search_call", "status": "completed",
     "action": {"type": "open_page", "url": "https://learn.microsoft.com/"}},
    {"id": "fs_1", "type": "file_search_call", "status": "completed", "queries": ["refund policy"],
     "results": [{"file_id": "file_1", "filename": "policy.md", "score": 0.91, "text": "Refunds within 30 days.",
                  "attributes": {"lang": "en"}}]},
    {"id": "ci_1", "type": "code_interpreter_call", "status": "completed", "code": "print(6 * 7)",
     "container_id": "cntr_1", "outputs": [{"type": "logs", "logs": "42\n"}]},
    {"id": "ig_1", "type": "image_generation_call", "status": "completed", "result": "iVBORw0KGgo=",
     "revised_prompt": "a lighthouse", "output_format": "png", "size": "1024x1024"},
    {"id": "mcpl_1", "type": "mcp_list_tools", "server_label": "gh",
     "tools": [{"name": "create_issue", "input_schema": {"type": "object", "properties": {"title": {"type": "string"}}},
                "description": "Create an issue", "annotations": None}]},
    {"id": "mcpr_1", "type": "mcp_approval_request", "server_label": "gh", "name": "create_issue",
     "arguments": "{\"title\": \"Bug\"}"},
    {"id": "mcp_1", "type": "mcp_call", "server_label": "gh", "name": "create_issue",
     "arguments": "{\"title\": \"Bug\"}", "output": "#12", "error": None,
     "approval_request_id": "mcpr_1", "status": "completed"},
    {"id": "ts_1", "type": "tool_search_call", "execution": "server", "status": "completed",
     "arguments": {"query": "customer"}, "call_id": None},
    {"id": "tso_1", "type": "tool_search_output", "execution": "server", "status": "completed", "call_id": None,
     "tools": [{"type": "function", "name": "find_customer", "parameters": {"type": "object"}, "strict": True,
                "description": "Find a customer by email."}]},
    {"id": "sh_1", "type": "shell_call", "call_id": "call_sh", "status": "completed",
     "action": {"commands": ["ls"], "timeout_ms": 1000, "max_output_length": 100}, "environment": None},
]


@pytest.mark.parametrize("item", HOSTED_OUTPUT_ITEMS, ids=lambda item: item["id"])
def test_hosted_output_items_decode_to_their_pydantic_class_and_encode_back_unchanged(item):
    decoded = decode_output_item(_json(item))
    assert type(decoded).__name__ != "dict" and decoded.type == item["type"]
    assert encode_output_item(decoded) == item
    assert encode_output_item(decode_output_item(encode_output_item(decoded))) == item


def test_the_items_the_api_answered_are_the_items_that_cross_the_activity(wire_server):
    server = ScriptedModelServer([{"items": HOSTED_OUTPUT_ITEMS, "text": "Here is what I found."}]).start()
    try:
        client = AsyncOpenAI(base_url=server.base_url, api_key="test-key", max_retries=0)
        response = asyncio.run(OpenAIResponsesModel(model="gpt-5.4", openai_client=client).get_response(
            system_instructions=None, input="hi", model_settings=ModelSettings(), tools=[WebSearchTool()],
            output_schema=None, handoffs=[], tracing=ModelTracing.DISABLED))
    finally:
        server.stop()
    encoded = _json(encode_model_response(response))
    assert encoded["output"][:len(HOSTED_OUTPUT_ITEMS)] == HOSTED_OUTPUT_ITEMS
    assert encoded["output"][-1]["type"] == "message"
    again = decode_model_response(encoded)
    assert [type(i) for i in again.output] == [type(i) for i in response.output]
    assert _json(encode_model_response(again)) == encoded


# ---------------------------------------------------------------------------------------------------------------
# Runs (replay harness): hosted tools and hosted MCP approvals, cache on and off
# ---------------------------------------------------------------------------------------------------------------

bp = durable_agents.Blueprint()

researcher = Agent(name="researcher", instructions="Research with the web.",
                   tools=[WebSearchTool(search_context_size="low"), CodeInterpreterTool(
                       tool_config={"type": "code_interpreter", "container": {"type": "auto"}})])
github = Agent(name="github", instructions="File issues.",
               tools=[HostedMCPTool(tool_config={"type": "mcp", "server_label": "gh",
                                                 "server_url": "https://mcp.example/mcp",
                                                 "require_approval": "always"})])


@bp.agent(researcher, description="Researches with hosted tools.")
def researcher_run(context):
    return Runner.run_sync(researcher, context.get_input()["input"])


@bp.agent(github, description="Files issues through a hosted MCP server.")
def github_run(context):
    return Runner.run_sync(github, context.get_input()["input"])


app = durable_agents.App(http_api=False)
app.register_functions(bp)


@pytest.fixture(params=[64, 0], ids=["cache-on", "cache-off"])
def cache_size(request, fresh_runner_cache):
    durable_runner.set_session_cache_size(request.param)
    yield request.param


def test_a_hosted_tool_run_sends_the_tools_and_keeps_their_items(cache_size):
    items = [decode_output_item(HOSTED_OUTPUT_ITEMS[0]), decode_output_item(HOSTED_OUTPUT_ITEMS[3])]
    model = ScriptedModel([[*items, assistant_message("Durable Functions 3 shipped.")]])
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("researcher", "What is new?")
    harness.run()
    assert run.status == "Completed" and run.output["finalOutput"] == "Durable Functions 3 shipped."
    [payload] = model.raw_inputs
    assert payload["request"]["tools"] == [
        {"type": "web_search", "fields": {"search_context_size": "low"}},
        {"type": "code_interpreter", "fields": {"tool_config": {"type": "code_interpreter",
                                                                "container": {"type": "auto"}}}}]
    [result] = model.results
    assert result["response"]["output"][:2] == [HOSTED_OUTPUT_ITEMS[0], HOSTED_OUTPUT_ITEMS[3]]
    completed = [e for e in run.history if e["EventType"] == 5]  # TaskCompleted: the items are in the history
    assert any("ws_1" in e["Result"] and "ci_1" in e["Result"] for e in completed)


def _mcp_script():
    request = McpApprovalRequest(id="mcpr_1", type="mcp_approval_request", server_label="gh", name="create_issue",
                                 arguments='{"title": "Checkout fails", "labels": ["bug"]}')
    call = McpCall(id="mcp_1", type="mcp_call", server_label="gh", name="create_issue", output="#12",
                   arguments='{"title": "Checkout fails", "labels": ["bug"]}', approval_request_id="mcpr_1")
    return ScriptedModel([[request], [call, assistant_message("Filed #12.")]])


def _approval_responses(request):
    return [item for item in request["input"] if isinstance(item, dict) and item.get("type") ==
            "mcp_approval_response"]


@pytest.mark.parametrize("approve", [True, False], ids=["approved", "rejected"])
def test_a_hosted_mcp_approval_is_a_durable_approval_and_its_answer_reaches_the_model(cache_size, approve):
    model = _mcp_script()
    harness = ReplayHarness(app, model=model)
    run = harness.start_run("github", "File a bug: checkout fails", run_id=f"mcp-{approve}-{cache_size}")
    harness.run(advance_timers=False)
    [pending] = harness.pending_approvals(run)
    assert (pending["id"], pending["kind"], pending["tool"], pending["arguments"]) == (
        "mcpr_1", "tool", "create_issue", {"title": "Checkout fails", "labels": ["bug"]})
    assert run.status == "Running" and len(model.requests) == 1
    if approve:
        harness.approve(run, "mcpr_1", "go ahead")
    else:
        harness.reject(run, "mcpr_1", "not a bug")
    harness.run()
    assert run.status == "Completed" and run.output["finalOutput"] == "Filed #12."
    [response] = _approval_responses(model.requests[1])
    assert (response["approval_request_id"], response["approve"]) == ("mcpr_1", approve)
    if not approve:
        assert "not a bug" in response["reason"]
    assert [d["decision"] for d in run.custom_status["approvals"]] == ["approved" if approve else "rejected"]
    assert [name for name, _ in harness.activity_calls] == [
        "invoke_model", "durable_agents_audit", "invoke_model"]


# ---------------------------------------------------------------------------------------------------------------
# The real invoke_model activity (replay harness, real OpenAI client, scripted model server in-process)
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture
def model_server_env(monkeypatch):
    def configure(api, script):
        server = ScriptedModelServer(script).start()
        for name, value in {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "test-key", "OPENAI_API": api,
                            "AGENT_MODEL": "scripted-model", "AZURE_OPENAI_ENDPOINT": ""}.items():
            monkeypatch.setenv(name, value)
        servers.append(server)
        return server

    servers: list[ScriptedModelServer] = []
    yield configure
    for server in servers:
        server.stop()


def test_through_invoke_model_the_responses_request_is_the_one_the_sdk_sends(cache_size, model_server_env):
    server = model_server_env("responses", [{"items": [HOSTED_OUTPUT_ITEMS[0]], "text": "Found it."}])
    harness = ReplayHarness(app)  # the app's own invoke_model activity
    run = harness.start_run("researcher", "What is new?")
    harness.run()
    assert run.status == "Completed" and run.output["finalOutput"] == "Found it."
    [through] = server.requests
    direct = _sent(server, researcher.tools)
    assert through["tools"] == direct["tools"] == [
        {"type": "web_search", "filters": None, "user_location": None, "search_context_size": "low"},
        {"type": "code_interpreter", "container": {"type": "auto"}}]


def test_through_invoke_model_chat_completions_fails_the_run_at_once_naming_the_tool(cache_size, model_server_env):
    server = model_server_env("chat_completions", [{"text": "never"}])
    harness = ReplayHarness(app)
    run = harness.start_run("researcher", "What is new?")
    harness.run()
    assert run.status == "Failed"
    assert "after 1 attempt" in run.output and "WebSearchTool" in run.output and "Chat Completions" in run.output
    assert "OPENAI_API=responses" in run.output  # the activity's prepare_model_call names the fix
    assert [name for name, _ in harness.activity_calls] == ["invoke_model"] and server.requests == []
