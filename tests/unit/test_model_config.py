"""Model configuration from settings, the OpenAI / Azure OpenAI client, get_model (durable_agents._model_config)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import openai
import pytest
from agents import ModelSettings
from azure.core.credentials import AccessToken

from durable_agents._demo import DemoModel
from durable_agents._model_activity import invoke_model
from durable_agents._model_config import AZURE_TOKEN_SCOPE, get_model, get_openai_client, load_model_config
from durable_agents._model_io import encode_model_request
from tests.support.model_server import ScriptedModelServer, text_step
from tests.unit.model_testing import reset_model_state


@pytest.fixture(autouse=True)
def clean_model_env(monkeypatch):
    reset_model_state(monkeypatch)


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
