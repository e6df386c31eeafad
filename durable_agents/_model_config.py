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
* ``MODEL_TIMEOUT`` (default ``300``): seconds the OpenAI / Azure OpenAI client waits for one model call (a
  positive number; decimals allowed). A timeout is a retryable error for the orchestrator (``APITimeoutError``),
  so one model call of a run takes at most ``MODEL_TIMEOUT`` per attempt. Read by the activity (environment, not
  the run's snapshot: a change applies to the next model call of every run). Models of registered providers
  (:mod:`durable_agents._providers`) build their own clients and are not affected.

The client never retries (``max_retries=0``): retries belong to the orchestrator (docs/internals.md "Activities").

Model names with a prefix (``openai/gpt-4.1``, ``litellm/anthropic/claude-3-5-sonnet``, ``<registered
name>/<model>``) are resolved by the SDK's own ``agents.MultiProvider``, whose provider map is the registry of
:func:`durable_agents.register_model_provider` and whose ``openai`` provider is the configured API above (see
:func:`get_model`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from dataclasses import dataclass
from typing import Any, Literal, cast

import openai
from agents.exceptions import UserError
from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProvider
from agents.models.openai_chatcompletions import OpenAIChatCompletionsModel
from agents.models.openai_responses import OpenAIResponsesModel

from ._config import get_setting
from ._demo import DEMO_PREFIX, DemoModel
from ._providers import missing_prefix_package, registered_map

__all__ = [
    "AZURE_TOKEN_SCOPE",
    "CLIENT_TIMEOUT_SECONDS",
    "DEFAULT_MODEL_TIMEOUT_SECONDS",
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
DEFAULT_MODEL_TIMEOUT_SECONDS = 300.0
"""``MODEL_TIMEOUT`` when it is unset: the OpenAI client's per-request timeout in seconds."""
CLIENT_TIMEOUT_SECONDS = DEFAULT_MODEL_TIMEOUT_SECONDS
"""Kept for callers of earlier versions: the default per-request timeout (seconds); the client uses
``ModelConfig.timeout`` (``MODEL_TIMEOUT``)."""

Mode = Literal["azure", "openai", "demo"]
Api = Literal["responses", "chat_completions"]


@dataclass(frozen=True)
class ModelConfig:
    """The model configuration read from settings (never holds the API key itself).

    ``mode`` is ``"azure"`` (``AZURE_OPENAI_ENDPOINT`` set), ``"openai"`` (``OPENAI_BASE_URL`` or
    ``OPENAI_API_KEY`` set) or ``"demo"`` (nothing set). ``api`` is ``"responses"`` or ``"chat_completions"``.
    ``timeout`` is the client's per-request timeout in seconds (``MODEL_TIMEOUT``).
    """

    mode: Mode
    model: str
    api: Api
    base_url: str | None = None
    azure_endpoint: str | None = None
    azure_api_version: str | None = None
    azure_client_id: str | None = None
    has_api_key: bool = False
    timeout: float = DEFAULT_MODEL_TIMEOUT_SECONDS

    @property
    def label(self) -> str:
        """A short description for logs (no secrets): e.g. ``azure:gpt-4.1-mini/responses`` or ``demo``."""
        return "demo" if self.mode == "demo" else f"{self.mode}:{self.model}/{self.api}"


def load_model_config() -> ModelConfig:
    """Read the model settings (module docstring) into a :class:`ModelConfig`.

    Raises ``ValueError`` when ``OPENAI_API`` is neither ``responses`` nor ``chat_completions``, or when
    ``MODEL_TIMEOUT`` is not a positive, finite number of seconds (a configuration error must not silently fall back
    to a default).
    """
    model = get_setting("AGENT_MODEL", DEFAULT_MODEL) or DEFAULT_MODEL
    api_text = (get_setting("OPENAI_API", "responses") or "responses").lower().replace("-", "_")
    if api_text not in ("responses", "chat_completions"):
        raise ValueError(f"OPENAI_API must be 'responses' or 'chat_completions', got {api_text!r}")
    api = cast(Api, api_text)
    timeout = _timeout_setting()
    endpoint = get_setting("AZURE_OPENAI_ENDPOINT")
    if endpoint:
        return ModelConfig(
            mode="azure", model=model, api=api,
            azure_endpoint=endpoint,
            azure_api_version=get_setting("AZURE_OPENAI_API_VERSION", DEFAULT_AZURE_API_VERSION),
            azure_client_id=get_setting("AZURE_CLIENT_ID"),
            timeout=timeout,
        )
    base_url = get_setting("OPENAI_BASE_URL")
    has_key = get_setting("OPENAI_API_KEY") is not None
    if base_url or has_key:
        return ModelConfig(mode="openai", model=model, api=api, base_url=base_url, has_api_key=has_key,
                           timeout=timeout)
    return ModelConfig(mode="demo", model=model, api=api, timeout=timeout)


def _timeout_setting() -> float:
    """``MODEL_TIMEOUT`` in seconds (unset or blank: :data:`DEFAULT_MODEL_TIMEOUT_SECONDS`); ``ValueError``
    for anything but a positive, finite number."""
    text = get_setting("MODEL_TIMEOUT")
    if text is None:
        return DEFAULT_MODEL_TIMEOUT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"MODEL_TIMEOUT must be a positive number of seconds, got {text!r}")
    return value


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
            timeout=config.timeout,
        )
    if config.mode == "openai":
        return openai.AsyncOpenAI(
            api_key=get_setting("OPENAI_API_KEY") or "unused",
            base_url=config.base_url,
            max_retries=0,
            timeout=config.timeout,
        )
    raise ValueError("the demo configuration has no OpenAI client")


def get_openai_client(config: ModelConfig | None = None) -> openai.AsyncOpenAI:
    """Return the process's ``AsyncOpenAI`` / ``AsyncAzureOpenAI`` client for ``config`` (default: settings).

    One client per configuration is built and reused for the process; it is rebuilt only when called from a
    different event loop than the one it was built on (an async connection pool belongs to its loop; the Functions
    worker runs all async activities on one loop). The client never retries (``max_retries=0``) and times out after
    ``config.timeout`` seconds (``MODEL_TIMEOUT``, default 300). Raises ``ValueError`` in demo mode (and, through
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
    ``OPENAI_API`` / ``MODEL_TIMEOUT`` when ``config`` is not given.

    A name with a ``/`` goes through the SDK's ``MultiProvider`` (its own prefix rules, agents 0.24
    ``agents/models/multi_provider.py``): a registered provider's name as prefix (``durable_agents.
    register_model_provider``) -> that provider with the rest of the name; ``openai/<m>`` -> ``<m>`` on the
    configured API (demo in demo mode); ``litellm/...`` / ``any-llm/...`` -> the SDK's LiteLLM / any-llm provider
    (``agents.UserError`` saying what to install when the package is missing); any other prefix -> the whole name
    on the configured API, as before prefixes were resolved (``unknown_prefix_mode="model_id"``: model ids such as
    ``meta-llama/Llama-3.1-8B`` of vLLM or Ollama keep working).
    """
    config = config or load_model_config()
    if model_name and "/" in model_name:
        return _prefixed_model(model_name, config)
    return _configured_model(model_name, config)


class _ConfiguredProvider(ModelProvider):
    """The configured API (:func:`_configured_model`) as the ``openai`` provider of a ``MultiProvider``; remembers
    whether the model it gave is the demo model."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.demo = False

    def get_model(self, model_name: str | None) -> Model:
        model, self.demo = _configured_model(model_name, self.config)
        return model


def _prefixed_model(model_name: str, config: ModelConfig) -> tuple[Model, bool]:
    problem = missing_prefix_package(model_name)
    if problem is not None:
        raise UserError(problem)
    configured = _ConfiguredProvider(config)
    multi = MultiProvider(provider_map=registered_map(), unknown_prefix_mode="model_id")
    # The SDK's own OpenAIProvider would read OPENAI_API_KEY itself and know nothing of Azure / Entra ID, the
    # timeout or max_retries=0: the configured API stands in for it (a public attribute of MultiProvider).
    multi.openai_provider = cast(Any, configured)
    model = multi.get_model(model_name)
    return model, configured.demo and isinstance(model, DemoModel)


def _configured_model(model_name: str | None, config: ModelConfig) -> tuple[Model, bool]:
    """``(model, is_demo)`` on the configured API (or the demo model), without prefix resolution."""
    global _demo_warned
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
