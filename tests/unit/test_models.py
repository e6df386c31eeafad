"""Model configuration, the Azure client, error classification and the demo model (durable_agents._models)."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import openai
import pytest
from agents import (
    Agent,
    ModelSettings,
    RunConfig,
    Runner,
    function_tool,
    handoff,
)
from agents.items import ModelResponse
from agents.models.interface import Model, ModelTracing
from azure.core.credentials import AccessToken
from pydantic import BaseModel

from durable_agents import _models as models
from durable_agents._model_io import decode_model_response, encode_model_request
from durable_agents._models import (
    AZURE_TOKEN_SCOPE,
    DEMO_PREFIX,
    DemoModel,
    classify_model_error,
    get_model,
    get_openai_client,
    invoke_model,
    load_model_config,
)
from tests.support.model_server import ScriptedModelServer, call, calls_step, text_step

MODEL_SETTINGS = ("AGENT_MODEL", "OPENAI_API", "OPENAI_BASE_URL", "OPENAI_API_KEY", "AZURE_OPENAI_ENDPOINT",
                  "AZURE_OPENAI_API_VERSION", "AZURE_CLIENT_ID")


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch):
    for name in MODEL_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(models, "_demo_warned", False)
    monkeypatch.setattr(models, "_clients", {})


class ActivityBridgeModel(Model):
    """Sends every model call through invoke_model's JSON path, as the durable orchestrator does."""

    def __init__(self):
        self.results = []

    async def get_response(self, system_instructions, input, model_settings, tools, output_schema, handoffs,
                           tracing, *, previous_response_id=None, conversation_id=None, prompt=None):
        request = encode_model_request(
            model=None, system_instructions=system_instructions, input=input, model_settings=model_settings,
            tools=tools, output_schema=output_schema, handoffs=handoffs, previous_response_id=previous_response_id,
            conversation_id=conversation_id, prompt=prompt)
        result = await invoke_model(json.loads(json.dumps({"model": None, "request": request}, allow_nan=False)))
        self.results.append(result)
        if not result["ok"]:
            raise RuntimeError(f"model error: {result['error']}")
        return decode_model_response(json.loads(json.dumps(result["response"])))

    def stream_response(self, *args, **kwargs):
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------------------------------


def test_nothing_configured_is_demo_mode(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "   ")  # blank placeholder = unset
    monkeypatch.setenv("AGENT_MODEL", "")
    config = load_model_config()
    assert (config.mode, config.model, config.api, config.label) == ("demo", "gpt-4.1-mini", "responses", "demo")


def test_openai_compatible_endpoint(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API", "chat_completions")
    monkeypatch.setenv("AGENT_MODEL", "llama3.1")
    config = load_model_config()
    assert (config.mode, config.model, config.api, config.base_url, config.has_api_key) == (
        "openai", "llama3.1", "chat_completions", "http://127.0.0.1:9/v1", False)
    assert "sk-" not in repr(config)

    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret-value")
    config = load_model_config()
    assert config.has_api_key and "sk-secret-value" not in repr(config)

    async def build():
        return get_openai_client(config), get_openai_client(config)

    first, second = asyncio.run(build())
    assert first is second  # one client per process (and loop)
    assert first.max_retries == 0 and first.api_key == "sk-secret-value"
    assert str(first.base_url) == "http://127.0.0.1:9/v1/"


def test_invalid_api_setting_is_an_error(monkeypatch):
    monkeypatch.setenv("OPENAI_API", "completions")
    with pytest.raises(ValueError, match="OPENAI_API"):
        load_model_config()


def test_azure_takes_precedence_and_uses_entra_id(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-should-not-be-used")
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com")
    monkeypatch.setenv("AZURE_CLIENT_ID", "00000000-0000-0000-0000-000000000001")
    config = load_model_config()
    assert (config.mode, config.azure_api_version, config.azure_client_id) == (
        "azure", "2025-04-01-preview", "00000000-0000-0000-0000-000000000001")

    async def build():
        return get_openai_client(config)

    client = asyncio.run(build())
    assert isinstance(client, openai.AsyncAzureOpenAI)
    assert client.max_retries == 0
    assert str(client.base_url) == "https://contoso.openai.azure.com/openai/"
    assert client._custom_query == {"api-version": "2025-04-01-preview"}
    assert client.api_key != "sk-should-not-be-used"
    provider = client._azure_ad_token_provider
    policy = next(cell.cell_contents for cell in provider.__closure__)
    from azure.identity.aio import DefaultAzureCredential

    assert isinstance(policy._credential, DefaultAzureCredential)
    assert tuple(policy._scopes) == (AZURE_TOKEN_SCOPE,)


class _StaticCredential:
    """Stands in for DefaultAzureCredential (no Entra ID here); records the scopes it is asked for."""

    scopes_seen: list = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    async def get_token(self, *scopes, **kwargs):
        _StaticCredential.scopes_seen.append(scopes)
        return AccessToken("entra-token-123", int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))

    async def get_token_info(self, *scopes, options=None):
        from azure.core.credentials import AccessTokenInfo

        _StaticCredential.scopes_seen.append(scopes)
        return AccessTokenInfo("entra-token-123", int((datetime.now(UTC) + timedelta(hours=1)).timestamp()))

    async def close(self):
        return None

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        return None


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_azure_mode_sends_bearer_token_and_no_key(monkeypatch, api):
    import azure.identity.aio

    monkeypatch.setattr(azure.identity.aio, "DefaultAzureCredential", _StaticCredential)
    _StaticCredential.scopes_seen = []
    with ScriptedModelServer([text_step("hello from azure")]) as server:
        monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", f"http://127.0.0.1:{server.port}")
        monkeypatch.setenv("AGENT_MODEL", "my-deployment")
        monkeypatch.setenv("OPENAI_API", api)
        request = encode_model_request(model=None, system_instructions=None, input="hi",
                                       model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
        result = asyncio.run(invoke_model({"model": None, "request": request}))
    assert result["ok"], result
    assert result["demo"] is False
    recorded = server.requests[0]
    assert recorded["headers"]["authorization"] == "Bearer entra-token-123"
    assert "api-key" not in recorded["headers"]
    assert recorded["query"] == {"api-version": "2025-04-01-preview"}
    expected = "/openai/responses" if api == "responses" else "/openai/deployments/my-deployment/chat/completions"
    assert recorded["path"] == expected
    assert _StaticCredential.scopes_seen == [(AZURE_TOKEN_SCOPE,)]


def test_demo_mode_warns_once_and_is_labelled(caplog):
    with caplog.at_level(logging.WARNING, logger="durable_agents._models"):
        model, demo = get_model("gpt-4.1")
        again, demo_again = get_model(None)
    assert isinstance(model, DemoModel) and isinstance(again, DemoModel) and demo and demo_again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "DEMO model" in warnings[0].getMessage()


# ---------------------------------------------------------------------------------------------------------------
# Errors (real HTTP through the real OpenAI client)
# ---------------------------------------------------------------------------------------------------------------


def _call_failing(monkeypatch, failure, api="responses"):
    script = [text_step("after the failure", failures=[failure])]
    with ScriptedModelServer(script) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_API", api)
        request = encode_model_request(model="m", system_instructions=None, input="hi",
                                       model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])

        async def twice():
            return (await invoke_model({"model": None, "request": request}),
                    await invoke_model({"model": None, "request": request}))

        first, second = asyncio.run(twice())
    # The client itself never retried: one request per activity call.
    assert [r["status"] for r in server.requests][:1] == [failure.get("status", 500) or 0]
    assert len(server.requests) == 2
    assert second["ok"] is True
    assert all(r["headers"].get("x-stainless-retry-count", "0") == "0" for r in server.requests)
    return first


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_429_with_retry_after_is_retryable(monkeypatch, api):
    result = _call_failing(monkeypatch, {"status": 429, "headers": {"retry-after": "1"}}, api)
    assert result == {"ok": False, "error": {
        "type": "RateLimitError", "message": result["error"]["message"], "status": 429, "retryable": True,
        "retryAfter": 1.0}}


def test_retry_after_ms_and_http_date(monkeypatch):
    result = _call_failing(monkeypatch, {"status": 503, "headers": {"retry-after-ms": "1500", "retry-after": "9"}})
    assert result["error"]["retryAfter"] == 1.5 and result["error"]["retryable"] is True
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    result = _call_failing(monkeypatch, {"status": 429, "headers": {"retry-after": when}})
    assert 100 <= result["error"]["retryAfter"] <= 120


@pytest.mark.parametrize("status,retryable", [(500, True), (502, True), (408, True), (409, True), (400, False),
                                              (401, False), (404, False), (422, False)])
def test_status_classification(monkeypatch, status, retryable):
    result = _call_failing(monkeypatch, {"status": status})
    error = result["error"]
    assert (error["status"], error["retryable"], error["retryAfter"]) == (status, retryable, None)
    assert f"scripted failure {status}" in error["message"]


def test_dropped_connection_is_retryable(monkeypatch):
    result = _call_failing(monkeypatch, {"status": 0})
    assert result["error"]["type"] == "APIConnectionError"
    assert result["error"]["retryable"] is True and result["error"]["status"] is None


def test_connection_refused_is_retryable(monkeypatch):
    with ScriptedModelServer([text_step("x")]) as server:
        port = server.port
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    request = encode_model_request(model=None, system_instructions=None, input="hi",
                                   model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
    result = asyncio.run(invoke_model({"model": None, "request": request}))
    assert result["ok"] is False
    assert result["error"]["type"] == "APIConnectionError" and result["error"]["retryable"] is True


def test_timeout_is_retryable(monkeypatch):
    monkeypatch.setattr(models, "CLIENT_TIMEOUT_SECONDS", 0.3)
    with ScriptedModelServer([text_step("slow", delay=3)]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        request = encode_model_request(model=None, system_instructions=None, input="hi",
                                       model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
        result = asyncio.run(invoke_model({"model": None, "request": request}))
    assert result["error"]["type"] == "APITimeoutError" and result["error"]["retryable"] is True


def test_classify_ignores_non_api_errors_and_bugs_propagate(monkeypatch):
    assert classify_model_error(ValueError("bug")) is None
    request = httpx2.Request("POST", "http://x")
    err = openai.APIResponseValidationError(httpx2.Response(200, request=request), body=None)
    assert classify_model_error(err)["retryable"] is False
    with pytest.raises(TypeError, match="invoke_model expects"):
        asyncio.run(invoke_model({"request": "not a request"}))
    monkeypatch.setenv("OPENAI_API", "bogus")
    with pytest.raises(ValueError, match="OPENAI_API"):
        asyncio.run(invoke_model(json.dumps({"model": None, "request": {"input": "x"}})))


# ---------------------------------------------------------------------------------------------------------------
# The demo model, driven by the real SDK Runner through invoke_model's JSON path
# ---------------------------------------------------------------------------------------------------------------

ORDERS = {
    "ORD-1042": {"id": "ORD-1042", "customer_email": "sam.lee@example.com", "status": "delivered",
                 "currency": "EUR", "total": "59.90", "items": [{"name": "Ceramic mug set", "quantity": 1}],
                 "created_at": "2025-09-01T10:00:00Z"},
    "ORD-1001": {"id": "ORD-1001", "customer_email": "jordan.rivera@example.com", "status": "delivered",
                 "currency": "USD", "total": "291.50", "items": [{"name": "Headphones", "quantity": 1}],
                 "created_at": "2025-08-29T14:21:07Z"},
}


def _support_tools(log, *, refund_needs_approval=False, refund_fails=False):
    @function_tool
    def lookup_order(order_id: str) -> str:
        """Look up an order."""
        log.append(("lookup_order", order_id))
        if order_id not in ORDERS:
            return json.dumps({"error": f"order {order_id} not found"})
        return json.dumps(ORDERS[order_id])

    @function_tool
    def list_orders(customer_email: str) -> str:
        """List a customer's orders."""
        log.append(("list_orders", customer_email))
        return json.dumps({"orders": [o for o in ORDERS.values() if o["customer_email"] == customer_email]})

    # Failures read like the durable tool errors the model sees (docs/internals.md "Activities").
    @function_tool(needs_approval=refund_needs_approval,
                   failure_error_function=lambda ctx, exc: f"Tool 'refund_order' failed: {exc}")
    def refund_order(order_id: str, amount: str, reason: str) -> str:
        """Refund an order."""
        log.append(("refund_order", order_id, amount, reason))
        if refund_fails:
            raise RuntimeError("ledger unavailable")
        return json.dumps({"refund_id": "RF-0001", "order_id": order_id, "amount": amount, "status": "refunded"})

    @function_tool
    def send_message(customer_email: str, text: str) -> str:
        """Write to a customer."""
        log.append(("send_message", customer_email, text))
        return json.dumps({"message_id": "MSG-1", "status": "sent"})

    return [lookup_order, list_orders, refund_order, send_message]


def _run_support(text, log, **tool_options):
    bridge = ActivityBridgeModel()
    agent = Agent(name="support", instructions="support", tools=_support_tools(log, **tool_options), model=bridge)
    result = asyncio.run(Runner.run(agent, text, run_config=RunConfig(tracing_disabled=True)))
    return result, bridge


def test_demo_refund_flow():
    log = []
    result, bridge = _run_support("Please refund order ORD-1042, it arrived broken", log)
    assert log[:2] == [("lookup_order", "ORD-1042"), ("refund_order", "ORD-1042", "59.90", "item arrived damaged")]
    assert log[2][0:2] == ("send_message", "sam.lee@example.com") and "59.90 EUR" in log[2][2]
    assert len(log) == 3
    assert result.final_output.startswith(DEMO_PREFIX)
    assert "RF-0001" in result.final_output and "59.90 EUR" in result.final_output
    assert all(r["ok"] and r["demo"] for r in bridge.results) and len(bridge.results) == 4


def test_demo_partial_refund_in_named_currency():
    log = []
    result, _ = _run_support("Could you refund 25 EUR on ord-1042? The lid was missing.", log)
    assert log[1] == ("refund_order", "ORD-1042", "25.00", "customer request")
    assert "25.00 EUR" in result.final_output


def test_demo_lookup_and_unknown_order():
    log = []
    result, _ = _run_support("Where is my order ORD-1001?", log)
    assert log == [("lookup_order", "ORD-1001")]
    assert result.final_output == (f"{DEMO_PREFIX} Order ORD-1001 is delivered: total 291.50 USD (Headphones), "
                                   "placed 2025-08-29T14:21:07Z by jordan.rivera@example.com.")
    log = []
    result, _ = _run_support("Please refund ORD-9999", log)
    assert log == [("lookup_order", "ORD-9999")]
    assert "could not look up order ORD-9999" in result.final_output and "not found" in result.final_output


def test_demo_lists_a_customers_orders():
    log = []
    result, _ = _run_support("What orders does jordan.rivera@example.com have?", log)
    assert log == [("list_orders", "jordan.rivera@example.com")]
    assert "ORD-1001 (delivered, 291.50 USD)" in result.final_output


def test_demo_reports_tool_errors():
    log = []
    result, _ = _run_support("Refund ORD-1042 please", log, refund_fails=True)
    assert [entry[0] for entry in log] == ["lookup_order", "refund_order", "send_message"]
    assert "was not made" in result.final_output and "ledger unavailable" in result.final_output


def test_demo_reports_a_rejected_approval():
    log = []
    bridge = ActivityBridgeModel()
    agent = Agent(name="support", instructions="support", model=bridge,
                  tools=_support_tools(log, refund_needs_approval=True))
    config = RunConfig(tracing_disabled=True)
    first = asyncio.run(Runner.run(agent, "Please refund order ORD-1001, it arrived broken", run_config=config))
    assert [i.raw_item.name for i in first.interruptions] == ["refund_order"]
    state = first.to_state()
    state.reject(first.interruptions[0], rejection_message="Refund rejected by reviewer: needs photos")
    second = asyncio.run(Runner.run(agent, state, run_config=config))
    assert ("refund_order", "ORD-1001", "291.50", "item arrived damaged") not in log
    assert "was not made" in second.final_output and "needs photos" in second.final_output
    assert log[-1][0] == "send_message" and "could not refund" in log[-1][2]


def test_demo_generic_answer_handoff_and_structured_output():
    log = []
    result, _ = _run_support("Hello there", log)
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


def test_demo_only_calls_tools_it_was_given():
    response = asyncio.run(DemoModel().get_response(
        None, "Please refund order ORD-1042", ModelSettings(), [], None, [], ModelTracing.DISABLED))
    assert isinstance(response, ModelResponse)
    assert [item.type for item in response.output] == ["message"]
    assert "ORD-1042" in response.output[0].content[0].text


def test_demo_is_deterministic():
    async def twice():
        args = (None, [{"role": "user", "content": "Where is ORD-1042?"}], ModelSettings(),
                _support_tools([]), None, [], ModelTracing.DISABLED)
        return await DemoModel().get_response(*args), await DemoModel().get_response(*args)

    a, b = asyncio.run(twice())
    from durable_agents._model_io import encode_model_response

    assert json.dumps(encode_model_response(a)) == json.dumps(encode_model_response(b))
    assert a.output[0].call_id == "call_demo_1"


def test_real_models_through_scripted_server_and_runner(monkeypatch):
    """The real OpenAIResponsesModel / OpenAIChatCompletionsModel behind invoke_model, driven by the SDK Runner."""
    script = [calls_step(call("lookup_order", {"order_id": "ORD-1042"})),
              calls_step(call("refund_order", {"order_id": "ORD-1042", "amount": "59.90", "reason": "broken"})),
              text_step("Refunded 59.90 EUR.")]
    for api in ("responses", "chat_completions"):
        log = []
        with ScriptedModelServer(script) as server:
            monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
            monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
            monkeypatch.setenv("OPENAI_API", api)
            result, bridge = _run_support("Please refund ORD-1042", log)
        assert result.final_output == "Refunded 59.90 EUR."
        assert [entry[0] for entry in log] == ["lookup_order", "refund_order"]
        assert [r["step"] for r in server.requests] == [0, 1, 2]
        assert all(r["ok"] and r["demo"] is False for r in bridge.results)
        assert result.context_wrapper.usage.requests == 3
        assert result.context_wrapper.usage.total_tokens == sum(
            r["response"]["usage"]["total_tokens"] for r in bridge.results) > 0


def test_demo_with_the_real_support_tools_and_ledger(monkeypatch, tmp_path):
    """The README demo offline: the demo model through invoke_model, the store's real tool bodies and ledger."""
    monkeypatch.setenv("REFUND_LEDGER_PATH", str(tmp_path / "ledger.sqlite3"))
    for name in ("REFUND_LEDGER_TABLE_ENDPOINT", "REFUND_LEDGER_TABLE_CONNECTION_STRING", "ORDERS_DATA_PATH"):
        monkeypatch.delenv(name, raising=False)
    from activities import SUPPORT_TOOLS

    tools = {tool.name: tool for tool in SUPPORT_TOOLS}
    items = [{"role": "user", "content": "Please refund order ORD-1042, it arrived broken"}]
    executed = []
    for _turn in range(6):
        request = encode_model_request(model=None, system_instructions="support", input=items,
                                       model_settings=ModelSettings(), tools=list(tools.values()),
                                       output_schema=None, handoffs=[])
        result = asyncio.run(invoke_model(json.loads(json.dumps({"model": None, "request": request}))))
        assert result["ok"] and result["demo"] is True
        response = decode_model_response(result["response"])
        items += response.to_input_items()
        item = response.output[0]
        if item.type == "message":
            break
        args = json.loads(item.arguments)
        # The arguments validate against the real tool's parameters (amount is a JSON number there).
        output = tools[item.name].run_activity(
            {"args": args, "call": {"runId": "run-1", "callId": item.call_id, "tool": item.name, "agent": "support"}})
        executed.append((item.name, args, output))
        items.append({"type": "function_call_output", "call_id": item.call_id, "output": json.dumps(output)})
    assert [name for name, _, _ in executed] == ["lookup_order", "refund_order", "send_message"]
    refund_args, refund = executed[1][1], executed[1][2]
    assert refund_args == {"order_id": "ORD-1042", "amount": 668.0, "reason": "item arrived damaged"}
    raw_refund_call = next(i for i in items if i.get("type") == "function_call" and i["name"] == "refund_order")
    assert '"amount": 668.00' in raw_refund_call["arguments"]  # the decimal's digits, as a JSON number
    assert refund["status"] == "refunded" and refund["refund_id"]
    assert executed[2][1]["customer_email"] == "sam.whitaker@example.org"
    final = item.content[0].text
    assert final.startswith(DEMO_PREFIX) and refund["refund_id"] in final and "668.00 USD" in final


def test_invoke_model_activity_registration_and_worker_style_invocation():
    """An App without its HTTP API holds one activity, invoke_model; invoked like the worker (JSON in, JSON out)."""
    import azure.durable_functions as df
    import azure.functions as func
    from azure.functions.durable_functions import ActivityTriggerConverter
    from azure.functions.meta import Datum

    import durable_agents

    app = durable_agents.App(http_api=False)
    functions = {f.get_function_name(): f for f in app.get_functions()}
    assert list(functions) == ["invoke_model"]
    function = functions["invoke_model"]
    bindings = [json.loads(b.get_dict_repr()) if isinstance(b.get_dict_repr(), str) else b.get_dict_repr()
                for b in function.get_bindings()]
    assert [(b["type"], b["name"], b.get("activity")) for b in bindings] == [
        ("activityTrigger", "payload", "invoke_model")]

    request = encode_model_request(model=None, system_instructions=None, input="Where is ORD-1001?",
                                   model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
    text = json.dumps({"model": None, "request": request})
    arg = ActivityTriggerConverter.decode(Datum(type="string", value=text), trigger_metadata=None)
    result = asyncio.run(function.get_user_function()(payload=arg))
    encoded = json.loads(ActivityTriggerConverter.encode(result, expected_type=None).value)
    assert encoded["ok"] is True and encoded["demo"] is True
    assert decode_model_response(encoded["response"]).output[0].content[0].text.startswith(DEMO_PREFIX)

    other = df.Blueprint()
    models.register_model_activity(other)
    app2 = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app2.register_functions(other)
    assert [f.get_function_name() for f in app2.get_functions()] == ["invoke_model"]
