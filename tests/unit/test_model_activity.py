"""The invoke_model activity (durable_agents._model_activity): error classification, real models, registration."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx2
import openai
import pytest
from agents import ModelSettings

from durable_agents import _model_activity, _model_config
from durable_agents._contracts import AUDIT_ACTIVITY, CONVERSATION_ORCHESTRATOR, INVOKE_MODEL_ACTIVITY
from durable_agents._demo import DEMO_PREFIX
from durable_agents._model_activity import announce_model_configuration, classify_model_error, invoke_model
from durable_agents._model_io import decode_model_response, encode_model_request
from tests.support.model_server import ScriptedModelServer, call, calls_step, text_step
from tests.unit.model_testing import reset_model_state, run_support


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch):
    reset_model_state(monkeypatch)
    monkeypatch.delenv("MODEL_TIMEOUT", raising=False)


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


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_model_timeout_setting_times_the_call_out_as_a_retryable_error(monkeypatch, api):
    monkeypatch.setenv("MODEL_TIMEOUT", "0.3")
    monkeypatch.setenv("OPENAI_API", api)
    with ScriptedModelServer([text_step("slow", delay=3)]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        request = encode_model_request(model=None, system_instructions=None, input="hi",
                                       model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
        started = time.monotonic()
        result = asyncio.run(invoke_model({"model": None, "request": request}))
        elapsed = time.monotonic() - started
    assert result["error"]["type"] == "APITimeoutError" and result["error"]["retryable"] is True
    assert elapsed < 2.5  # the 0.3 s setting, not the 300 s default nor the server's 3 s delay


def test_a_bad_model_timeout_fails_the_activity_naming_the_setting(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("MODEL_TIMEOUT", "soon")
    request = encode_model_request(model=None, system_instructions=None, input="hi",
                                   model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
    with pytest.raises(ValueError, match="MODEL_TIMEOUT must be a positive number of seconds, got 'soon'"):
        asyncio.run(invoke_model({"model": None, "request": request}))


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
# Real models behind the activity, registration, start-up log
# ---------------------------------------------------------------------------------------------------------------


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
            result, bridge = run_support("Please refund ORD-1042", log)
        assert result.final_output == "Refunded 59.90 EUR."
        assert [entry[0] for entry in log] == ["lookup_order", "refund_order"]
        assert [r["step"] for r in server.requests] == [0, 1, 2]
        assert all(r["ok"] and r["demo"] is False for r in bridge.results)
        assert result.context_wrapper.usage.requests == 3
        assert result.context_wrapper.usage.total_tokens == sum(
            r["response"]["usage"]["total_tokens"] for r in bridge.results) > 0


def test_invoke_model_activity_registration_and_worker_style_invocation():
    """An App without its HTTP API holds only the library's activities, invoke_model first and the approval
    audit's durable_agents_audit next (then those of MCP servers and sessions); invoke_model is invoked like the
    worker (JSON in, JSON out)."""
    import azure.durable_functions as df
    import azure.functions as func
    from azure.functions.durable_functions import ActivityTriggerConverter
    from azure.functions.meta import Datum

    import durable_agents

    app = durable_agents.App(http_api=False)
    functions = {f.get_function_name(): f for f in app.get_functions()}
    assert list(functions)[:2] == ["invoke_model", "durable_agents_audit"] == [INVOKE_MODEL_ACTIVITY, AUDIT_ACTIVITY]
    assert all(name.startswith("durable_agents_") for name in list(functions)[1:])
    for name in functions:
        bindings = [json.loads(b.get_dict_repr()) if isinstance(b.get_dict_repr(), str) else b.get_dict_repr()
                    for b in functions[name].get_bindings()]
        if name == CONVERSATION_ORCHESTRATOR:  # the one orchestrator the App registers
            assert [b["type"] for b in bindings] == ["orchestrationTrigger"]
            continue
        assert [(b["type"], b["name"], b.get("activity")) for b in bindings] == [("activityTrigger", "payload", name)]
    function = functions["invoke_model"]

    request = encode_model_request(model=None, system_instructions=None, input="Where is ORD-1001?",
                                   model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])
    text = json.dumps({"model": None, "request": request})
    arg = ActivityTriggerConverter.decode(Datum(type="string", value=text), trigger_metadata=None)
    result = asyncio.run(function.get_user_function()(payload=arg))
    encoded = json.loads(ActivityTriggerConverter.encode(result, expected_type=None).value)
    assert encoded["ok"] is True and encoded["demo"] is True
    assert decode_model_response(encoded["response"]).output[0].content[0].text.startswith(DEMO_PREFIX)

    other = df.Blueprint()
    _model_activity.register_model_activity(other)
    app2 = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)
    app2.register_functions(other)
    assert [f.get_function_name() for f in app2.get_functions()] == ["invoke_model"]


def test_announce_model_configuration_logs_once_and_never_raises(monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="durable_agents"):
        announce_model_configuration()
        announce_model_configuration()
        _model_config.get_model()
    demo_warnings = [r for r in caplog.records if "DEMO model" in r.getMessage()]
    assert len(demo_warnings) == 1 and demo_warnings[0].levelno == logging.WARNING

    caplog.clear()
    monkeypatch.setenv("OPENAI_API", "bogus")
    with caplog.at_level(logging.INFO, logger="durable_agents"):
        announce_model_configuration()
    assert [(r.levelno, "OPENAI_API" in r.getMessage()) for r in caplog.records] == [(logging.ERROR, True)]

    caplog.clear()
    monkeypatch.setenv("OPENAI_API", "chat_completions")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-logged")
    with caplog.at_level(logging.INFO, logger="durable_agents"):
        announce_model_configuration()
    assert [r.getMessage() for r in caplog.records] == [
        "Model calls go to openai:gpt-4.1-mini/chat_completions (settings: docs/internals.md)"]
