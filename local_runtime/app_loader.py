"""Loading the function app like the Functions host + Python worker do (protocol §6.1-6.5).

* :func:`load_host_config` reads ``host.json`` (route prefix, task hub name with ``%NAME%`` resolved).
* :func:`apply_local_settings` copies ``local.settings.json`` ``Values`` into the environment (unless already set;
  empty strings are set too), like ``func start``.
* :func:`load_functions` puts the app folder first on ``sys.path``, imports ``function_app.py``, finds the single
  ``azure.functions.FunctionRegister`` and calls ``get_functions()`` exactly once. The app's ``agents/`` folder has
  no ``__init__.py``; a namespace portion never wins over the installed regular package ``agents`` (the OpenAI
  Agents SDK), and nothing here adds that folder to ``sys.path``.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

__all__ = ["HostConfig", "FunctionInfo", "Registry", "load_host_config", "apply_local_settings",
           "load_functions", "AppLoadError"]

log = logging.getLogger("local_runtime")


class AppLoadError(Exception):
    """The app cannot be loaded (missing file, no or several FunctionRegister instances, bad bindings)."""


@dataclass
class HostConfig:
    """The parts of ``host.json`` the local runtime honours."""

    route_prefix: str = "api"
    hub_name: str = "TestHubName"


def _resolve_percent(value: str) -> str:
    """Resolve ``%NAME%`` app-setting references from the environment (unset → left as is)."""
    return re.sub(r"%([^%]+)%", lambda m: os.environ.get(m.group(1), m.group(0)), value)


def load_host_config(app_dir: Path) -> HostConfig:
    """Read ``<app_dir>/host.json``: ``extensions.http.routePrefix`` (default ``api``; ``""`` allowed) and
    ``extensions.durableTask.hubName`` (``%NAME%`` resolved; default ``TestHubName``). Missing file → defaults.
    Call after :func:`apply_local_settings` so that ``%NAME%`` sees the local settings."""
    cfg = HostConfig()
    path = app_dir / "host.json"
    if not path.exists():
        return cfg
    data = json.loads(path.read_text(encoding="utf-8"))
    ext = data.get("extensions") or {}
    prefix = (ext.get("http") or {}).get("routePrefix")
    if prefix is not None:
        cfg.route_prefix = str(prefix).strip("/")
    hub = (ext.get("durableTask") or {}).get("hubName")
    if hub:
        resolved = _resolve_percent(str(hub))
        cfg.hub_name = resolved if "%" not in resolved and resolved.strip() else "TestHubName"
    return cfg


def apply_local_settings(app_dir: Path) -> dict[str, str]:
    """Copy ``local.settings.json`` ``Values`` into ``os.environ`` unless already set (empty strings are set too).

    Returns the values that were applied. A missing file applies nothing.
    """
    path = app_dir / "local.settings.json"
    applied: dict[str, str] = {}
    if not path.exists():
        return applied
    values = (json.loads(path.read_text(encoding="utf-8")).get("Values") or {})
    for key, value in values.items():
        if key not in os.environ:
            text = "" if value is None else (value if isinstance(value, str) else json.dumps(value))
            os.environ[key] = text
            applied[key] = text
    return applied


@dataclass
class FunctionInfo:
    """One function of the app, classified by its trigger.

    ``kind``: ``http``, ``orchestrator``, ``activity``, ``entity``, ``mcp_tool`` (an ``mcpToolTrigger``: served by
    :mod:`local_runtime.mcp_webhook`) or ``other``. ``durable_name`` is the Durable
    name (trigger ``orchestration``/``activity``/``entityName`` override, else the function name; protocol §6.3).
    ``trigger_name`` is the trigger parameter's name; ``client_binding`` the durableClient parameter's name, if any.
    """

    name: str
    kind: str
    fn: Any
    trigger: dict
    bindings: list[dict]
    durable_name: str | None = None
    trigger_name: str | None = None
    client_binding: str | None = None
    wants_context: bool = False
    is_async: bool = False
    route: str | None = None
    methods: list[str] | None = None
    return_binding: str | None = None

    @property
    def durable(self) -> str:
        """The Durable name, else the function name: the name the :class:`Registry` indexes it by (always the
        Durable name for the orchestrators, activities and entities of a loaded app)."""
        return self.durable_name or self.name


@dataclass
class Registry:
    """All functions of the app, indexed by kind and Durable name (lower-cased keys)."""

    functions: list[FunctionInfo] = field(default_factory=list)
    orchestrators: dict[str, FunctionInfo] = field(default_factory=dict)
    activities: dict[str, FunctionInfo] = field(default_factory=dict)
    entities: dict[str, FunctionInfo] = field(default_factory=dict)
    http: list[FunctionInfo] = field(default_factory=list)
    mcp_tools: list[FunctionInfo] = field(default_factory=list)

    def orchestrator(self, name: str) -> FunctionInfo | None:
        """The orchestrator with Durable name ``name`` (case-insensitive), or None."""
        return self.orchestrators.get(name.lower())

    def activity(self, name: str) -> FunctionInfo | None:
        """The activity with Durable name ``name`` (case-insensitive), or None."""
        return self.activities.get(name.lower())


def _unwrap(fn: Any) -> Any:
    return getattr(fn, "__wrapped__", fn)


def classify_function(f: Any) -> FunctionInfo:
    """Describe one function of ``app.get_functions()`` (its trigger, bindings, kind and Durable name; protocol
    §6.2-6.4) as a :class:`FunctionInfo`. Raises :class:`AppLoadError` for a function without a trigger binding."""
    bindings = [json.loads(b) for b in f.get_raw_bindings()]
    trigger = next((b for b in bindings if str(b.get("type", "")).lower().endswith("trigger")), None)
    if trigger is None:
        raise AppLoadError(f"Function '{f.get_function_name()}' has no trigger binding")
    user_fn = f.get_user_function()
    name = f.get_function_name()
    ttype = trigger["type"]
    binding_names = {b.get("name") for b in bindings}
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(user_fn).parameters
    except (TypeError, ValueError):
        params = {}
    info = FunctionInfo(name=name, kind="other", fn=user_fn, trigger=trigger, bindings=bindings,
                        trigger_name=trigger.get("name"))
    info.wants_context = "context" in params and "context" not in binding_names
    info.is_async = inspect.iscoroutinefunction(user_fn) or inspect.iscoroutinefunction(_unwrap(user_fn))
    client = next((b for b in bindings if b.get("type") == "durableClient"), None)
    if client:
        info.client_binding = client.get("name")
    if ttype == "httpTrigger":
        info.kind = "http"
        info.route = trigger.get("route") or name
        methods = trigger.get("methods")
        info.methods = [m.upper() for m in methods] if methods else None
        out = next((b for b in bindings if b.get("type") == "http" and b.get("direction") in ("OUT", 1)), None)
        info.return_binding = out.get("name") if out else "$return"
    elif ttype == "orchestrationTrigger":
        info.kind = "orchestrator"
        info.durable_name = trigger.get("orchestration") or name
    elif ttype == "activityTrigger":
        info.kind = "activity"
        info.durable_name = trigger.get("activity") or name
    elif ttype == "entityTrigger":
        info.kind = "entity"
        info.durable_name = trigger.get("entityName") or name
    elif ttype == "mcpToolTrigger":
        info.kind = "mcp_tool"
    return info


def load_functions(app_dir: Path, script: str | None = None) -> tuple[Any, Registry]:
    """Import the app's script (``function_app.py`` or ``PYTHON_SCRIPT_FILE_NAME``) and index its functions.

    Returns ``(app, registry)``. Raises :class:`AppLoadError` when the script is missing, when there is no
    ``FunctionRegister`` instance or more than one, or when two functions share a Durable name.
    ``get_functions()`` is called exactly once (a second call raises in azure-functions).
    """
    app_dir = app_dir.resolve()
    script = script or os.environ.get("PYTHON_SCRIPT_FILE_NAME") or "function_app.py"
    path = app_dir / script
    if not path.exists():
        raise AppLoadError(f"{path} not found")
    if sys.path[:1] != [str(app_dir)]:
        sys.path.insert(0, str(app_dir))
    module_name = Path(script).stem
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise AppLoadError(f"{script} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    registers = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if not registers:
        raise AppLoadError(f"{script} defines no azure.functions.FunctionRegister instance (e.g. df.DFApp())")
    if len(registers) > 1:
        raise AppLoadError(f"{script} defines {len(registers)} FunctionRegister instances; exactly one is allowed")
    app = registers[0]
    reg = Registry()
    for f in app.get_functions():
        info = classify_function(f)
        reg.functions.append(info)
        table = {"orchestrator": reg.orchestrators, "activity": reg.activities,
                 "entity": reg.entities}.get(info.kind)
        if table is not None:
            key = info.durable.lower()
            if key in table:
                raise AppLoadError(f"Two {info.kind} functions share the Durable name '{info.durable_name}'")
            table[key] = info
        elif info.kind == "http":
            reg.http.append(info)
        elif info.kind == "mcp_tool":
            reg.mcp_tools.append(info)
    return app, reg
