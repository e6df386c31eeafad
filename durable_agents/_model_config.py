"""Model configuration from settings and the OpenAI client (internal; used by the ``invoke_model`` activity).

Settings (docs/internals.md "Settings"; read with :func:`durable_agents._config.get_setting`, empty = unset):

* ``AGENT_MODEL`` (default ``gpt-4.1-mini``): the model (Azure: the deployment) used when the agent names none.
* ``OPENAI_API``: ``responses`` (default) or ``chat_completions``; which SDK model class talks to the endpoint.
* ``AZURE_OPENAI_ENDPOINT`` (+ ``AZURE_OPENAI_API_VERSION``, default ``2025-04-01-preview``, and
  ``AZURE_CLIENT_ID`` for a user-assigned identity): Azure OpenAI with Microsoft Entra ID through
  ``azure-identity`` (``DefaultAzureCredential``, token scope ``https://cognitiveservices.azure.com/.default``);
  no key is ever used. Takes precedence over the OpenAI settings.
* ``OPENAI_BASE_URL`` and / or ``OPENAI_API_KEY``: any OpenAI-compatible endpoint (OpenAI, Ollama, vLLM, ...). A
  base URL without a key uses the placeholder key ``"unused"`` (local servers ignore it).
* Nothing of the above: one warning is logged and every call is answered by
  :class:`durable_agents._demo.DemoModel`, an offline, deterministic model whose text starts with ``[demo model]``
  (DESIGN.md "Models").

The client never retries (``max_retries=0``): retries belong to the orchestrator (docs/internals.md "Activities").
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Literal, cast

import openai
from agents.models.interface import Model
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel

from ._config import get_setting
from ._demo import DEMO_PREFIX, DemoModel

__all__ = [
    "AZURE_TOKEN_SCOPE",
    "CLIENT_TIMEOUT_SECONDS",
    "DEFAULT_AZURE_API_VERSION",
    "DEFAULT_MODEL",
    "ModelConfig",
    "get_model",
    "get_openai_client",
    "load_model_config",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4.1-mini"
DEFAULT_AZURE_API_VERSION = "2025-04-01-preview"
AZURE_TOKEN_SCOPE = "https://cognitiveservices.azure.com/.default"
CLIENT_TIMEOUT_SECONDS = 300.0
"""Per-request timeout of the OpenAI client (seconds); a timeout is a retryable error for the orchestrator."""

Mode = Literal["azure", "openai", "demo"]
Api = Literal["responses", "chat_completions"]


@dataclass(frozen=True)
class ModelConfig:
    """The model configuration read from settings (never holds the API key itself).

    ``mode`` is ``"azure"`` (``AZURE_OPENAI_ENDPOINT`` set), ``"openai"`` (``OPENAI_BASE_URL`` or
    ``OPENAI_API_KEY`` set) or ``"demo"`` (nothing set). ``api`` is ``"responses"`` or ``"chat_completions"``.
    """

    mode: Mode
    model: str
    api: Api
    base_url: str | None = None
    azure_endpoint: str | None = None
    azure_api_version: str | None = None
    azure_client_id: str | None = None
    has_api_key: bool = False

    @property
    def label(self) -> str:
        """A short description for logs (no secrets): e.g. ``azure:gpt-4.1-mini/responses`` or ``demo``."""
        return "demo" if self.mode == "demo" else f"{self.mode}:{self.model}/{self.api}"


def load_model_config() -> ModelConfig:
    """Read the model settings (module docstring) into a :class:`ModelConfig`.

    Raises ``ValueError`` when ``OPENAI_API`` is neither ``responses`` nor ``chat_completions`` (a configuration
    error must not silently fall back to another API).
    """
    model = get_setting("AGENT_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL
    api_text = (get_setting("OPENAI_API", "responses") or "responses").lower().replace("-", "_")
    if api_text not in ("responses", "chat_completions"):
        raise ValueError(f"OPENAI_API must be 'responses' or 'chat_completions', got {api_text!r}")
    api = cast(Api, api_text)
    endpoint = get_setting("AZURE_OPENAI_ENDPOINT")
    if endpoint:
        return ModelConfig(
            mode="azure", model=model, api=api,
            azure_endpoint=endpoint,
            azure_api_version=get_setting("AZURE_OPENAI_API_VERSION", DEFAULT_AZURE_API_VERSION),
            azure_client_id=get_setting("AZURE_CLIENT_ID"),
        )
    base_url = get_setting("OPENAI_BASE_URL")
    has_key = get_setting("OPENAI_API_KEY") is not None
    if base_url or has_key:
        return ModelConfig(mode="openai", model=model, api=api, base_url=base_url, has_api_key=has_key)
    return ModelConfig(mode="demo", model=model, api=api)


_clients: dict[ModelConfig, tuple[asyncio.AbstractEventLoop | None, openai.AsyncOpenAI]] = {}
_clients_lock = threading.Lock()
_demo_warned = False


def _build_client(config: ModelConfig) -> openai.AsyncOpenAI:
    if config.mode == "azure":
        from azure.identity.aio import DefaultAzureCredential, get_bearer_token_provider

        if not config.azure_endpoint:
            raise ValueError("an Azure OpenAI configuration needs AZURE_OPENAI_ENDPOINT")

        credential = (
            DefaultAzureCredential(managed_identity_client_id=config.azure_client_id)
            if config.azure_client_id
            else DefaultAzureCredential()
        )
        return openai.AsyncAzureOpenAI(
            azure_endpoint=config.azure_endpoint,
            api_version=config.azure_api_version,
            azure_ad_token_provider=get_bearer_token_provider(credential, AZURE_TOKEN_SCOPE),
            max_retries=0,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    if config.mode == "openai":
        return openai.AsyncOpenAI(
            api_key=get_setting("OPENAI_API_KEY") or "unused",
            base_url=config.base_url,
            max_retries=0,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )
    raise ValueError("the demo configuration has no OpenAI client")


def get_openai_client(config: ModelConfig | None = None) -> openai.AsyncOpenAI:
    """Return the process's ``AsyncOpenAI`` / ``AsyncAzureOpenAI`` client for ``config`` (default: settings).

    One client per configuration is built and reused for the process; it is rebuilt only when called from a
    different event loop than the one it was built on (an async connection pool belongs to its loop; the Functions
    worker runs all async activities on one loop). The client never retries (``max_retries=0``) and times out after
    :data:`CLIENT_TIMEOUT_SECONDS` seconds. Raises ``ValueError`` in demo mode (and, through
    :func:`load_model_config`, for a bad ``OPENAI_API``).
    """
    config = config or load_model_config()
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    with _clients_lock:
        entry = _clients.get(config)
        if entry is not None and entry[0] is loop:
            return entry[1]
        client = _build_client(config)
        _clients[config] = (loop, client)
        return client


def get_model(model_name: str | None = None, config: ModelConfig | None = None) -> tuple[Model, bool]:
    """Return ``(model, is_demo)`` for a call: the SDK model for the configured API, or the demo model.

    ``model_name`` (the agent's own model name, if any) overrides ``AGENT_MODEL``. In demo mode (nothing
    configured) a single warning per process is logged and a :class:`~durable_agents._demo.DemoModel` (which
    consults the process's demo responders) is returned whatever the name. Raises ``ValueError`` for a bad
    ``OPENAI_API`` when ``config`` is not given.
    """
    global _demo_warned
    config = config or load_model_config()
    if config.mode == "demo":
        if not _demo_warned:
            _demo_warned = True
            logger.warning(
                "No model is configured (set AZURE_OPENAI_ENDPOINT, or OPENAI_API_KEY / OPENAI_BASE_URL): every "
                "model call is answered by the offline DEMO model, whose answers start with '%s'. "
                "See docs/internals.md 'Settings'.", DEMO_PREFIX,
            )
        return DemoModel(), True
    name = model_name or config.model
    client = get_openai_client(config)
    if config.api == "chat_completions":
        return OpenAIChatCompletionsModel(model=name, openai_client=client), False
    return OpenAIResponsesModel(model=name, openai_client=client), False
