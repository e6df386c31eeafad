"""``App`` and ``Blueprint``: the one registration of a durable agents app (internal; re-exported publicly).

An app is::

    import durable_agents
    app = durable_agents.App()                    # a df.DFApp: + the invoke_model activity and the HTTP API
    app.register_functions(tools_blueprint)       # activity tools (durable_agents.activity_tool)
    app.register_functions(agents_blueprint)      # agents (Blueprint.agent)

and an agent is one decorator on a :class:`Blueprint` (or on the app itself)::

    bp = durable_agents.Blueprint()

    @bp.agent(helper_agent, description="Answers questions.", settings=("ANSWER_LIMIT",))
    def helper_run(context):
        return Runner.run_sync(helper_agent, context.get_input()["input"])

The decorator registers the function as a Durable orchestrator under its own name (``helper_run``) through
``agent_orchestrator`` and records the agent (API name ``helper_agent.name``), which :meth:`App.register_functions`
adds to the app's :class:`~durable_agents._registry.AgentRegistry`, the registry its HTTP API serves.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import agents
import azure.durable_functions as df
import azure.functions as func

from ._demo import DemoResponder, add_demo_responder
from ._registry import AgentRegistry, RegisteredAgent

if TYPE_CHECKING:
    from ._http.handlers import HttpApi

__all__ = ["App", "Blueprint", "route_prefix_from_host_json"]


def route_prefix_from_host_json(app_dir: str | Path) -> str:
    """The HTTP route prefix of the app in ``app_dir`` as a path prefix: ``"/api"`` by default.

    Reads ``extensions.http.routePrefix`` of ``<app_dir>/host.json`` (the Functions host's rule: default ``api``;
    an empty string means routes have no prefix, giving ``""`` here). A missing or unreadable host.json gives the
    default. Raises ``ValueError`` when ``routePrefix`` is not a string.
    """
    path = Path(app_dir) / "host.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):
        return "/api"
    http = ((data or {}).get("extensions") or {}).get("http") or {}
    prefix = http.get("routePrefix", "api")
    if not isinstance(prefix, str):
        raise ValueError(f"{path}: extensions.http.routePrefix must be a string, not {type(prefix).__name__}")
    prefix = prefix.strip("/")
    return f"/{prefix}" if prefix else ""


def _caller_dir(depth: int) -> Path:
    """The folder of the module ``depth`` frames up (the app's ``function_app.py``); the cwd if it has no file."""
    frame = sys._getframe(depth + 1)
    file = frame.f_globals.get("__file__")
    return Path(file).resolve().parent if file else Path.cwd()


class _AgentDecorators:
    """The ``agent`` decorator shared by :class:`Blueprint` and :class:`App`."""

    def _agent_entries(self) -> list[RegisteredAgent]:
        entries = self.__dict__.get("_durable_agents")
        if entries is None:
            entries = []
            self.__dict__["_durable_agents"] = entries
        return entries

    def _add_agent(self, entry: RegisteredAgent) -> None:
        self._agent_entries().append(entry)

    def agent(
        self,
        agent: agents.Agent[Any],
        *,
        description: str,
        settings: Sequence[str] = (),
        name: str | None = None,
        context_name: str = "context",
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: register the decorated function as the orchestrator of ``agent``'s runs.

        Args:
            agent: the OpenAI Agents SDK ``Agent`` the function runs (its tools and handoffs give the approval
                tools that ``GET /api/agents`` lists).
            description: one line for ``GET /api/agents``.
            settings: setting names snapshotted into every run's input besides ``APPROVAL_TIMEOUT`` and
                ``MODEL_MAX_ATTEMPTS`` (read them with ``durable_agents.run_setting``).
            name: the agent's name in the HTTP API (``/api/agents/{name}/runs``); default ``agent.name``.
            context_name: the name of the function's context parameter (default ``context``).

        The function (plain, written as for ``durable_agents.agent_orchestrator``) becomes a Durable orchestrator
        named after the function. Raises ``ValueError`` for a name outside ``[A-Za-z0-9_-]{1,64}``, an empty
        description or a ``settings`` string, ``TypeError`` when ``agent`` is not an ``agents.Agent``.
        """
        if not isinstance(agent, agents.Agent):
            raise TypeError(f"agent must be an agents.Agent, not {type(agent).__name__}")
        api_name = name if name is not None else agent.name
        return self._orchestrator_decorator(
            api_name, context_name, description=description, agent=agent, settings=settings
        )

    def workflow(
        self,
        name: str,
        *,
        description: str,
        agents: Sequence[agents.Agent[Any]] = (),
        settings: Sequence[str] = (),
        context_name: str = "context",
    ) -> Callable[[Callable[..., Any]], Any]:
        """Decorator: register the decorated function as the orchestrator of the workflow ``name``.

        A workflow composes agent runs with the Durable orchestration API (``context.call_activity``,
        ``wait_for_external_event``, ``request_approval``, ``call_sub_orchestrator``, ``task_all``...; a generator,
        plain or ``async def`` function). It is listed by ``GET /api/agents`` with ``kind: "workflow"``, the
        approval tools of ``agents``, and started like an agent (``POST /api/agents/{name}/runs``). Same errors as
        :meth:`agent`.
        """
        return self._orchestrator_decorator(
            name, context_name, description=description, settings=settings, kind="workflow",
            workflow_agents=tuple(agents),
        )

    def _orchestrator_decorator(
        self, name: str, context_name: str, **entry: Any
    ) -> Callable[[Callable[..., Any]], Any]:
        """The decorator of :meth:`agent` and :meth:`workflow`: validate the registry entry (``AgentRegistry.entry``
        with ``entry``), register ``fn`` as the orchestrator ``fn.__name__`` through ``agent_orchestrator``, record
        the entry."""
        from ._orchestrator import agent_orchestrator

        def decorate(fn: Callable[..., Any]) -> Any:
            registered_entry = AgentRegistry.entry(name, orchestrator=fn.__name__, function=fn, **entry)
            orchestrator = agent_orchestrator(fn, agent_name=name)
            registered = self.orchestration_trigger(context_name=context_name)(orchestrator)  # type: ignore[attr-defined]
            self._add_agent(registered_entry)
            return registered

        return decorate


class Blueprint(_AgentDecorators, df.Blueprint):
    """A ``df.Blueprint`` with the :meth:`agent` decorator; register it with ``App.register_functions``.

    Args:
        http_auth_level: the default auth level of HTTP routes on this blueprint (``df.Blueprint``'s).
        demo_responder: an optional demo responder, ``(turn: DemoTurn) -> DemoReply | None``, that scripts the
            offline demo model (used when no model is configured) for this blueprint's agents;
            ``App.register_functions`` adds it to the process's responders. Raises ``TypeError`` when it is not
            callable.
    """

    def __init__(
        self,
        http_auth_level: func.AuthLevel | str = func.AuthLevel.FUNCTION,
        *,
        demo_responder: DemoResponder | None = None,
    ) -> None:
        if demo_responder is not None and not callable(demo_responder):
            raise TypeError(f"demo_responder must be callable, not {type(demo_responder).__name__}")
        super().__init__(http_auth_level=http_auth_level)
        self.demo_responder = demo_responder
        """The blueprint's demo responder (or ``None``); added to the process's list on registration."""

    @property
    def agents(self) -> list[RegisteredAgent]:
        """The agents decorated on this blueprint, in decoration order."""
        return list(self._agent_entries())


def _apply_run_cache_setting() -> None:
    """Apply ``AGENT_RUN_CACHE_SIZE`` (live runs this process keeps between episodes; default 64, ``0``: every
    episode replays the run from history, as after a restart). Raises ``ValueError`` for a value that is not a
    whole number >= 0."""
    from ._config import get_setting
    from ._runner import set_session_cache_size

    value = get_setting("AGENT_RUN_CACHE_SIZE")
    if value is None:
        return
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"AGENT_RUN_CACHE_SIZE must be a whole number >= 0 (live runs kept in memory), not {value!r}")
    set_session_cache_size(int(value))
    logging.getLogger("durable_agents").info("AGENT_RUN_CACHE_SIZE: live-run cache size %d", int(value))


class App(_AgentDecorators, df.DFApp):
    """The function app: a ``df.DFApp`` that registers the model activity and the HTTP API once.

    Args:
        http_auth_level: auth level of the HTTP API routes (default ``FUNCTION``: callers send a function key).
        app_dir: the app folder (default: the folder of the module that creates the App, i.e. ``function_app.py``);
            its host.json gives the route prefix of the API's links (``extensions.http.routePrefix``).
        http_api: register the HTTP API (``/api/agents``, ``/api/runs``...); default true.
        model_activity: register the ``invoke_model`` activity; default true (set false to register your own).
        approval_wait_seconds: how long a decision request waits for the run to record it (default 10 s).
        demo_responder: an optional demo responder, ``(turn: DemoTurn) -> DemoReply | None``, that scripts the
            offline demo model (used when no model is configured); added to the process's responders before those
            of blueprints registered later. Raises ``TypeError`` when it is not callable.
        mcp_tools: make the app a remote MCP server (:mod:`durable_agents._mcp_tools`; README "MCP clients"):
            one Functions MCP tool trigger per agent and workflow (tool = the agent's name) plus ``get_run``,
            ``list_approvals`` and ``decide_approval``; default: the same as ``http_api`` (the tools are that API
            over MCP). With them no agent may take one of those three names (``ValueError``).

    It also registers the conversation orchestrator ``durable_agents_conversation`` and its two activities (one
    for all agents: ``POST /api/agents/{agent}/conversations``, docs/internals.md "Conversations").

    Creating an App applies the ``AGENT_RUN_CACHE_SIZE`` setting (live runs kept between episodes, default 64; ``0``
    turns the cache off), installs the durable runner into the OpenAI Agents SDK (``Runner.run`` / ``run_sync``
    become durable inside agent orchestrators, unchanged elsewhere) and the history timestamp memo
    (:func:`durable_agents.install`; idempotent), and logs the model configuration once.
    """

    def __init__(
        self,
        http_auth_level: func.AuthLevel | str = func.AuthLevel.FUNCTION,
        *,
        app_dir: str | Path | None = None,
        http_api: bool = True,
        model_activity: bool = True,
        approval_wait_seconds: float = 10.0,
        demo_responder: DemoResponder | None = None,
        mcp_tools: bool | None = None,
    ) -> None:
        if demo_responder is not None and not callable(demo_responder):
            raise TypeError(f"demo_responder must be callable, not {type(demo_responder).__name__}")
        super().__init__(http_auth_level=http_auth_level)
        from ._approval_audit import register_audit_activity
        from ._conversations import register_conversation_functions
        from ._http import http_api_blueprint
        from ._mcp import register_mcp_activities
        from ._model_activity import announce_model_configuration, register_model_activity
        from ._orchestrator import install
        from ._sessions import register_session_activity
        from ._timeline import register_timeline_activity

        install()
        _apply_run_cache_setting()
        self.app_dir = Path(app_dir) if app_dir is not None else _caller_dir(1)
        self.registry = AgentRegistry()
        """The agents this app serves (filled by :meth:`agent` and :meth:`register_functions`)."""
        self.route_prefix = route_prefix_from_host_json(self.app_dir)
        if demo_responder is not None:
            add_demo_responder(demo_responder)
        if model_activity:
            register_model_activity(self)
        register_audit_activity(self)
        register_mcp_activities(self)
        register_session_activity(self)
        register_timeline_activity(self, app_dir=self.app_dir)
        register_conversation_functions(self, self.registry, app_dir=self.app_dir)
        if http_api:
            self.register_functions(
                http_api_blueprint(
                    self.registry, route_prefix=self.route_prefix, approval_wait_seconds=approval_wait_seconds,
                    app_dir=self.app_dir,
                )
            )
        self._mcp_api: HttpApi | None = None
        self._mcp_tools: set[str] = set()
        if http_api if mcp_tools is None else mcp_tools:  # the app as a remote MCP server (README "MCP clients")
            from ._http.handlers import HttpApi
            from ._mcp_tools import register_utility_tools

            self._mcp_api = HttpApi(registry=self.registry, route_prefix=self.route_prefix,
                                    approval_wait_seconds=approval_wait_seconds, app_dir=self.app_dir)
            register_utility_tools(self, self._mcp_api)
        announce_model_configuration()
        from ._telemetry import setup_telemetry

        setup_telemetry()  # OTLP / Application Insights when configured (docs/internals.md "Traces")

    def _add_agent(self, entry: RegisteredAgent) -> None:
        self._check_tool_name(entry)
        super()._add_agent(entry)
        self.registry.add(entry)
        self._add_mcp_tool(entry)

    def _check_tool_name(self, entry: RegisteredAgent) -> None:
        if getattr(self, "_mcp_api", None) is not None:  # before anything of the entry is registered
            from ._mcp_tools import check_tool_name

            check_tool_name(entry.name)

    def _add_mcp_tool(self, entry: RegisteredAgent) -> None:
        if getattr(self, "_mcp_api", None) is not None:
            from ._mcp_tools import register_agent_tool

            assert self._mcp_api is not None
            if entry.name.lower() not in self._mcp_tools:  # the same entry registered again: one tool
                self._mcp_tools.add(entry.name.lower())
                register_agent_tool(self, self._mcp_api, entry)

    def register_agent_modules(self, *modules: str) -> list[str]:
        """Import the app's ``agents/`` modules (package ``app_agents``, see ``durable_agents.load_app_agents``) and
        register the blueprint ``bp`` of each module that has one; returns the names of the registered modules.

        ``modules`` names them (``"support"`` for ``agents/support.py``); none means every ``agents/*.py`` whose
        name does not start with ``_``, in name order. Raises what :func:`durable_agents.load_app_agents` raises
        and ``ValueError`` for an agent-name conflict.
        """
        from ._loader import load_app_agents

        names = list(modules) or sorted(p.stem for p in (self.app_dir / "agents").glob("*.py")
                                        if not p.stem.startswith("_"))
        package = load_app_agents(*names, app_dir=self.app_dir)
        registered = []
        for name in names:
            blueprint = getattr(getattr(package, name), "bp", None)
            if isinstance(blueprint, df.Blueprint):
                self.register_functions(blueprint)
                registered.append(name)
        return registered

    def register_functions(self, function_container: Any) -> None:
        """Register a blueprint's functions (``FunctionRegister.register_functions``), its agents and its demo
        responder (``Blueprint(demo_responder=...)``, added to the process's responders).

        Raises ``ValueError`` when an agent name is already registered with another orchestrator.
        """
        entries = [e for e in getattr(function_container, "agents", None) or [] if isinstance(e, RegisteredAgent)]
        for entry in entries:  # refuse a conflict before anything of the blueprint is registered
            self.registry.check(entry)
            self._check_tool_name(entry)
        super().register_functions(function_container)
        for entry in entries:
            self.registry.add(entry)
            self._add_mcp_tool(entry)
        responder = getattr(function_container, "demo_responder", None)
        if responder is not None:
            add_demo_responder(responder)
