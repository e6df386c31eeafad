"""The Durable functions of an app, classified once per app object (``get_functions()`` may only be called once)."""

from __future__ import annotations

import threading
import weakref
from typing import Any

from local_runtime.app_loader import FunctionInfo, Registry, classify_function

__all__ = ["durable_registry"]

_cache: weakref.WeakKeyDictionary[Any, list[FunctionInfo]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def durable_registry(app: Any) -> Registry:
    """A new :class:`local_runtime.app_loader.Registry` of ``app``'s orchestrators and activities.

    ``app`` is an ``azure.functions.FunctionRegister`` (``durable_agents.App``, ``df.DFApp``). Its
    ``get_functions()``, which azure-functions allows once per app (a second call raises ``ValueError``), is called
    the first time an app is seen; later calls reuse that classification. Each call returns a fresh registry, so a
    caller may replace entries (the harness's scripted model) without affecting others. Raises ``TypeError`` when
    ``app`` has no ``get_functions``.
    """
    if not callable(getattr(app, "get_functions", None)):
        raise TypeError(f"expected a function app (durable_agents.App or df.DFApp), not {type(app).__name__}")
    with _lock:
        infos = _cache.get(app)
        if infos is None:
            infos = [classify_function(function) for function in app.get_functions()]
            _cache[app] = infos
    registry = Registry()
    for info in infos:
        registry.functions.append(info)
        table = {"orchestrator": registry.orchestrators, "activity": registry.activities,
                 "entity": registry.entities}.get(info.kind)
        if table is not None and info.durable_name:
            table[info.durable_name.lower()] = info
        elif info.kind == "http":
            registry.http.append(info)
    return registry
