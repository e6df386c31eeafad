"""Model configuration from settings, the OpenAI / Azure OpenAI client, get_model (durable_agents._model_config)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import openai
import pytest
from agents import ModelSettings
from agents.exceptions import UserError
from azure.core.credentials import AccessToken

from durable_agents import _providers
from durable_agents._demo import DemoModel
from durable_agents._model_activity import invoke_model
from durable_agents._model_config import (
    AZURE_TOKEN_SCOPE,
    DEFAULT_MODEL_TIMEOUT_SECONDS,
    get_model,
    get_openai_client,
    load_model_config,
)
from durable_agents._model_io import encode_model_request
from tests.support.model_server import ScriptedModelServer, text_step
from tests.unit.model_testing import reset_model_state


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch):
    reset_model_state(monkeypatch)
    monkeypatch.delenv("MODEL_TIMEOUT", raising=False)
    monkeypatch.setattr(_providers, "_providers", {})
    monkeypatch.setattr(_providers, "_built", {})


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
    with caplog.at_level(logging.WARNING, logger="durable_agents._model_config"):
        model, demo = get_model("gpt-4.1")
        again, demo_again = get_model(None)
    assert isinstance(model, DemoModel) and isinstance(again, DemoModel) and demo and demo_again
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "DEMO model" in warnings[0].getMessage()


# ---------------------------------------------------------------------------------------------------------------
# MODEL_TIMEOUT
# ---------------------------------------------------------------------------------------------------------------


def test_model_timeout_defaults_to_300_seconds_and_reaches_both_clients(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    config = load_model_config()
    assert config.timeout == DEFAULT_MODEL_TIMEOUT_SECONDS == 300.0

    async def build(config):
        return get_openai_client(config)

    assert asyncio.run(build(config)).timeout == 300.0
    monkeypatch.setenv("MODEL_TIMEOUT", "42.5")
    config = load_model_config()
    assert config.timeout == 42.5 and asyncio.run(build(config)).timeout == 42.5
    monkeypatch.setenv("AZURE_OPENAI_ENDPOINT", "https://contoso.openai.azure.com")
    azure = load_model_config()
    assert azure.mode == "azure" and azure.timeout == 42.5
    assert asyncio.run(build(azure)).timeout == 42.5
    monkeypatch.setenv("MODEL_TIMEOUT", " ")  # blank = unset
    assert load_model_config().timeout == 300.0


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "5m", "PT5M"])
def test_model_timeout_must_be_a_positive_number_of_seconds(monkeypatch, text):
    monkeypatch.setenv("MODEL_TIMEOUT", text)
    with pytest.raises(ValueError, match=f"MODEL_TIMEOUT must be a positive number of seconds, got {text!r}"):
        load_model_config()


# ---------------------------------------------------------------------------------------------------------------
# Prefixed model names (the SDK's MultiProvider) on the configured API
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_prefixed_names_reach_the_configured_endpoint_by_the_multiprovider_rules(monkeypatch, api):
    with ScriptedModelServer([text_step("ok")]) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_API", api)
        monkeypatch.setenv("MODEL_TIMEOUT", "7")
        request = encode_model_request(model=None, system_instructions=None, input="hi",
                                       model_settings=ModelSettings(), tools=[], output_schema=None, handoffs=[])

        async def calls():
            return [await invoke_model({"model": name, "request": request})
                    for name in ("openai/gpt-4.1", "meta-llama/Llama-3.1-8B", "plain-name")]

        results = asyncio.run(calls())
    assert all(r["ok"] and r["demo"] is False for r in results), results
    # openai/ is the SDK's alias for its OpenAI provider (stripped); an unknown prefix is a model id the endpoint
    # gets whole, as before prefixes were resolved; the configured client (key, no retries) served all three.
    assert [r["body"]["model"] for r in server.requests] == ["gpt-4.1", "meta-llama/Llama-3.1-8B", "plain-name"]
    assert {r["headers"]["authorization"] for r in server.requests} == {"Bearer sk-test"}
    models = [get_model(name)[0] for name in ("openai/gpt-4.1", "x/y")]
    assert all(m._client.timeout == 7.0 and m._client.max_retries == 0 for m in models)


def test_prefixed_names_in_demo_mode_are_the_demo_model_but_litellm_needs_its_package():
    model, demo = get_model("openai/gpt-4.1")
    assert isinstance(model, DemoModel) and demo
    with pytest.raises(UserError, match=r"add 'openai-agents\[litellm\]' to requirements.txt"):
        get_model("litellm/anthropic/claude-3-5-sonnet")
    with pytest.raises(UserError, match=r"openai-agents\[any-llm\]"):
        get_model("any-llm/openrouter/openai/gpt-4.1")
