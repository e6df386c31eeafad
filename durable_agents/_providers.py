"""Model providers and models registered by name, so that the ``invoke_model`` activity can build them (internal).

Inside a durable run every model call is the ``invoke_model`` activity: the model is built and called in the
activity worker, never in the orchestrator (docs/internals.md "Activities"). An object the orchestrator holds, such
as ``RunConfig(model_provider=MyProvider())`` or ``Agent(model=MyModel())``, cannot travel to the activity (the
activity input is JSON). So an app registers, at import time of its modules (every process of the app imports them,
the orchestrator's and the activity worker's alike), a *factory* under a *name*; the run's activity input carries
the name and the activity calls the factory:

* :func:`register_model_provider` ``(name, factory)`` with ``factory() -> agents.ModelProvider`` (or a provider
  object itself). Returns a :class:`RegisteredModelProvider`, an ``agents.ModelProvider`` to pass as
  ``RunConfig(model_provider=...)``; the provider object given as the factory is accepted there too (matched by
  identity). The activity calls ``factory().get_model(<the model name the SDK asked for>)``. The name is also a
  model-name prefix: ``Agent(model="<name>/<model>")`` is routed to that provider by the SDK's ``MultiProvider``
  in the activity (its provider map is this registry).
* :func:`register_model` ``(name, factory)`` with ``factory() -> agents.Model`` (or a model object itself). Returns
  a :class:`RegisteredModel`, an ``agents.Model`` to pass as ``Agent(model=...)`` or ``RunConfig(model=...)``; the
  activity calls ``factory().get_response(...)``. A model object itself cannot be matched by identity (the SDK calls
  an agent's ``Model`` instance directly, bypassing every provider), so the run refuses it with a message naming
  this function.

Outside a durable run both handles behave as what they stand for (the factory's provider or model, built once per
process and event loop), so the same agent code runs under plain ``Runner.run`` too. Factories are called in the
process that runs the activity, at most once per name and event loop (a provider's async client belongs to its
loop; the Functions worker runs all async activities on one loop), never in the orchestrator.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NotRequired

from agents.exceptions import UserError
from agents.items import ModelResponse, TResponseStreamEvent
from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProviderMap

from ._contracts import InvokeModelInput
from ._run_settings import current_session

__all__ = [
    "OPTIONAL_PREFIX_PACKAGES",
    "ProviderInvokeModelInput",
    "RegisteredModel",
    "RegisteredModelProvider",
    "build_model",
    "build_provider",
    "model_factory_names",
    "missing_prefix_package",
    "provider_names",
    "register_model",
    "register_model_provider",
    "registered_map",
    "registered_model_name",
    "registered_provider_name",
    "unregistered_model_message",
    "unregistered_provider_message",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
"""A registered name: 1-64 of ``[A-Za-z0-9._-]``, starting with a letter or digit; no ``/`` (it is a prefix)."""

OPTIONAL_PREFIX_PACKAGES = {"litellm": ("litellm", "openai-agents[litellm]"),
                            "any-llm": ("any_llm", "openai-agents[any-llm]")}
"""The SDK ``MultiProvider``'s built-in prefixes backed by optional packages: prefix -> (module, pip requirement)."""


class ProviderInvokeModelInput(InvokeModelInput):
    """``invoke_model`` input of a call through a registered provider or model: :class:`InvokeModelInput` plus
    ``provider`` (a :func:`register_model_provider` name; the activity calls ``factory().get_model(model)``) or
    ``registeredModel`` (a :func:`register_model` name; ``model`` is then ``null``). At most one of them is
    present, and only in runs that use these features: every other run's input stays ``{"model", "request"}``."""

    provider: NotRequired[str]
    registeredModel: NotRequired[str]


@dataclass
class _Entry:
    name: str
    factory: Callable[[], Any]
    instance: Any  # the object given instead of a factory (matched by identity), else None
    handle: Any  # the RegisteredModelProvider / RegisteredModel returned by the register function


_lock = threading.Lock()
_providers: dict[str, _Entry] = {}
_models: dict[str, _Entry] = {}
_built: dict[tuple[str, str], tuple[asyncio.AbstractEventLoop | None, Any]] = {}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"a registered model provider or model needs a name of 1-64 letters, digits, '.', '_' or "
                         f"'-' (no '/': the name is also a model-name prefix), got {name!r}")
    return name


def _register(table: dict[str, _Entry], kind: str, name: str, target: Any, instance_type: type,
              handle: Any, replace: bool) -> _Entry:
    name = _check_name(name)
    if isinstance(target, instance_type):
        instance: Any = target
        factory: Callable[[], Any] = lambda: instance  # noqa: E731 - the object itself is the factory's answer
    elif callable(target):
        instance, factory = None, target
    else:
        raise TypeError(f"register_{kind} expects a zero-argument factory or an agents.{instance_type.__name__}, "
                        f"got {type(target).__name__}")
    with _lock:
        old = table.get(name)
        if old is not None and not replace and (old.instance is not target and old.factory is not target):
            raise ValueError(f"a {kind.replace('_', ' ')} named {name!r} is already registered; pass "
                             "replace=True to replace it")
        entry = _Entry(name, factory, instance, handle)
        table[name] = entry
        _built.pop((kind, name), None)
    return entry


def register_model_provider(name: str, factory: Callable[[], ModelProvider] | ModelProvider, *,
                            replace: bool = False) -> RegisteredModelProvider:
    """Register a model provider for durable runs under ``name``; returns the provider to pass to ``RunConfig``.

    ``factory`` is a zero-argument callable returning an ``agents.ModelProvider`` (called in the process that runs
    the ``invoke_model`` activity, once per event loop), or a provider object (used as is, and accepted by identity
    as ``RunConfig(model_provider=<that object>)``). Call it at import time of the app's modules, so that every
    process of the app has it. Inside a durable run, ``RunConfig(model_provider=<the returned object or the
    registered instance>)`` makes each model call's activity input carry ``"provider": name`` and the activity
    call ``factory().get_model(model_name)``; ``name`` is also a model-name prefix (``Agent(model="<name>/m")``
    reaches ``factory().get_model("m")`` through the SDK's ``MultiProvider``).

    ``name``: 1-64 of ``[A-Za-z0-9._-]``. Raises ``ValueError`` for a bad name or a name already registered with
    another factory (unless ``replace=True``), ``TypeError`` when ``factory`` is neither callable nor a provider.
    """
    handle = RegisteredModelProvider(_check_name(name))
    entry = _register(_providers, "model_provider", name, factory, ModelProvider, handle, replace)
    return entry.handle


def register_model(name: str, factory: Callable[[], Model] | Model, *, replace: bool = False) -> RegisteredModel:
    """Register a model for durable runs under ``name``; returns the ``agents.Model`` to give the agent.

    ``factory`` is a zero-argument callable returning an ``agents.Model`` (called in the activity's process, once
    per event loop), or a model object (used as is by the activity). Use the returned :class:`RegisteredModel` as
    ``Agent(model=...)`` or ``RunConfig(model=...)``: inside a durable run each call is the ``invoke_model``
    activity with ``"registeredModel": name``, which calls ``factory().get_response(...)``; outside one it calls
    that model directly. Raises like :func:`register_model_provider`.
    """
    handle = RegisteredModel(_check_name(name))
    entry = _register(_models, "model", name, factory, Model, handle, replace)
    return entry.handle


def registered_provider_name(provider: Any) -> str | None:
    """The registered name of ``provider`` (a :class:`RegisteredModelProvider` or an object registered as the
    factory, by identity), or ``None``."""
    if isinstance(provider, RegisteredModelProvider):
        return provider.name
    with _lock:
        for entry in _providers.values():
            if entry.instance is not None and entry.instance is provider:
                return entry.name
    return None


def registered_model_name(model: Any) -> str | None:
    """The name of a :class:`RegisteredModel`, or ``None`` (a plain ``Model`` object is never matched: see the
    module docstring)."""
    return model.name if isinstance(model, RegisteredModel) else None


def provider_names() -> list[str]:
    """Names of the registered model providers, sorted."""
    with _lock:
        return sorted(_providers)


def model_factory_names() -> list[str]:
    """Names of the registered models, sorted."""
    with _lock:
        return sorted(_models)


def _loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _build(table: dict[str, _Entry], kind: str, name: str, expected: type) -> Any:
    loop = _loop()
    with _lock:
        entry = table.get(name)
        if entry is None:
            known = ", ".join(sorted(table)) or "none"
            raise UserError(
                f"no {kind.replace('_', ' ')} named {name!r} is registered in this process (registered: {known}); "
                f"call durable_agents.register_{kind}({name!r}, factory) at import time of the app's modules, so "
                "that the activity worker has it too")
        key = (kind, name)
        built = _built.get(key)
        if built is not None and built[0] is loop:
            return built[1]
    value = entry.factory()  # outside the lock: a factory may be slow, and may itself register things
    if not isinstance(value, expected) or isinstance(value, RegisteredModel | RegisteredModelProvider):
        raise TypeError(f"the factory registered as {kind.replace('_', ' ')} {name!r} returned "
                        f"{type(value).__name__}, not an agents.{expected.__name__} (nor a registered handle)")
    with _lock:
        built = _built.get(key)
        if built is not None and built[0] is loop and table.get(name) is entry:
            return built[1]  # another thread built it meanwhile: one object per process and loop
        if table.get(name) is entry:
            _built[key] = (loop, value)
    return value


def build_provider(name: str) -> ModelProvider:
    """The provider registered as ``name``: its factory's result, built once per process and event loop.

    Raises ``agents.UserError`` when ``name`` is not registered in this process (the message says to register it
    at import time), ``TypeError`` when the factory returns something that is not an ``agents.ModelProvider``;
    the factory's own exceptions propagate.
    """
    value: ModelProvider = _build(_providers, "model_provider", name, ModelProvider)
    return value  # rebuilt when called from another event loop than the one it was built on


def build_model(name: str) -> Model:
    """The model registered as ``name`` (see :func:`build_provider`, with ``agents.Model``)."""
    value: Model = _build(_models, "model", name, Model)
    return value


class _RegistryMap(MultiProviderMap):
    """A ``MultiProviderMap`` over the registered providers: prefix = registered name, each provider built when
    a model name first uses its prefix (so a prefixed call never builds the other providers)."""

    def has_prefix(self, prefix: str) -> bool:
        with _lock:
            return prefix in _providers

    def get_mapping(self) -> dict[str, ModelProvider]:
        return {name: build_provider(name) for name in provider_names()}

    def get_provider(self, prefix: str) -> ModelProvider | None:
        return build_provider(prefix) if self.has_prefix(prefix) else None

    def set_mapping(self, mapping: dict[str, ModelProvider]) -> None:
        raise UserError("the durable model provider map is the registry: use durable_agents.register_model_provider")

    def add_provider(self, prefix: str, provider: ModelProvider) -> None:
        self.set_mapping({prefix: provider})

    def remove_provider(self, prefix: str) -> None:
        self.set_mapping({})


def registered_map() -> MultiProviderMap:
    """A ``MultiProviderMap`` whose prefixes are the registered provider names (for the activity's
    ``MultiProvider``)."""
    return _RegistryMap()


def missing_prefix_package(model_name: Any) -> str | None:
    """Why a prefixed model name cannot be resolved in this process, or ``None``.

    For ``litellm/...`` and ``any-llm/...`` (the SDK ``MultiProvider``'s optional providers) whose prefix is not a
    registered provider name and whose package is not installed, the text says what to install; anything else
    gives ``None``.
    """
    if not isinstance(model_name, str) or "/" not in model_name:
        return None
    prefix = model_name.split("/", 1)[0]
    if prefix not in OPTIONAL_PREFIX_PACKAGES:
        return None
    with _lock:
        if prefix in _providers:
            return None
    module, requirement = OPTIONAL_PREFIX_PACKAGES[prefix]
    if importlib.util.find_spec(module) is not None:
        return None
    return (f"model {model_name!r} needs the SDK's {prefix!r} provider, whose package {module!r} is not installed: "
            f"add {requirement!r} to requirements.txt (or register your own provider under the prefix with "
            f"durable_agents.register_model_provider({prefix!r}, factory))")


def unregistered_provider_message(provider: Any) -> str:
    """The error text for ``RunConfig(model_provider=<provider>)`` in a durable run when it is not registered."""
    kind = type(provider).__name__
    return (
        f"RunConfig(model_provider=<{kind}>) is not registered for durable runs: inside a durable run every model "
        "call is the invoke_model activity, which cannot receive a provider object. Register it at import time of "
        "your app (every process must have it): provider = durable_agents.register_model_provider('my-provider', "
        f"lambda: {kind}(...)), then pass RunConfig(model_provider=provider); the activity builds the provider "
        "from the factory and calls its get_model(model_name). Or drop model_provider to use the built-in model "
        "settings (AGENT_MODEL, OPENAI_API, AZURE_OPENAI_*).")


def unregistered_model_message(where: str, model: Any) -> str:
    """The error text for ``Agent(model=<Model>)`` / ``RunConfig(model=<Model>)`` when it is not registered."""
    kind = type(model).__name__
    return (
        f"{where} is a {kind} object, which a durable run cannot call: every model call is the invoke_model "
        "activity, and the SDK calls an agent's Model object directly, in the orchestrator. Register it at import "
        "time of your app: model = durable_agents.register_model('my-model', "
        f"lambda: {kind}(...)), and give the agent that object (Agent(model=model)); the activity builds the model "
        "from the factory. Or use a model name (str).")


class RegisteredModelProvider(ModelProvider):
    """The ``agents.ModelProvider`` returned by :func:`register_model_provider` (``name``: the registered name).

    Inside a durable run the runner replaces it by its durable provider (each model call's activity input carries
    ``"provider": name``); a direct ``get_model`` call there returns the durable model too. Outside one it returns
    ``build_provider(name).get_model(model_name)``: the registered provider, as plain SDK code would use it.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def get_model(self, model_name: str | None) -> Model:
        if current_session() is not None:
            from ._runner.seam import DurableModel

            return DurableModel(model_name, provider=self.name)
        return build_provider(self.name).get_model(model_name)

    def __repr__(self) -> str:
        return f"RegisteredModelProvider({self.name!r})"


class RegisteredModel(Model):
    """The ``agents.Model`` returned by :func:`register_model` (``name``: the registered name).

    Inside a durable run ``get_response`` is the ``invoke_model`` activity with ``"registeredModel": name`` (the
    run's retries, timers and history as for any model call); outside one it calls ``build_model(name)``. Streaming
    is supported only outside durable runs.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
        if current_session() is not None:
            from ._runner.seam import DurableModel

            return await DurableModel(None, registered_model=self.name).get_response(*args, **kwargs)
        return await build_model(self.name).get_response(*args, **kwargs)

    def stream_response(self, *args: Any, **kwargs: Any) -> AsyncIterator[TResponseStreamEvent]:
        if current_session() is not None:  # a durable run: one invoke_model activity, answered as a whole
            from ._runner.seam import DurableModel

            return DurableModel(None, registered_model=self.name).stream_response(*args, **kwargs)
        return build_model(self.name).stream_response(*args, **kwargs)

    def __repr__(self) -> str:
        return f"RegisteredModel({self.name!r})"
