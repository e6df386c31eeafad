"""The agent registry: which agents an app's HTTP API can start, and with which orchestrator (internal).

``durable_agents.App`` owns one :class:`AgentRegistry` (``app.registry``); ``Blueprint.agent`` / ``App.agent``
fill it, so an app never registers an agent by hand. ``POST /api/agents/{name}/runs`` starts the entry's
``orchestrator`` with the orchestration input of docs/internals.md, and ``GET /api/agents`` lists
:meth:`RegisteredAgent.to_json` for each agent.

Approval tools are derived from the SDK ``Agent``: every tool in ``agent.tools`` (and in the tools of the agents
reachable through ``agent.handoffs``) whose ``needs_approval`` is not ``False`` is listed, as ``"always"`` when it
is ``True`` and ``"conditional"`` when it is a callable policy (the SDK decides per call). Tools without a
``needs_approval`` attribute (hosted tools, for example) are never listed.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import agents

__all__ = [
    "AGENT_NAME_PATTERN",
    "AgentRegistry",
    "RegisteredAgent",
    "approval_tools",
]

AGENT_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
"""Registered agent names: they appear in URL paths (``/api/agents/{name}/runs``), so letters, digits, ``_``, ``-``."""

_SETTING_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_ORCHESTRATOR_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def approval_tools(agent: agents.Agent[Any] | None) -> list[dict[str, str]]:
    """The approval-gated tools of ``agent`` and of the agents reachable through its handoffs.

    Returns ``[{"name": "<tool name>", "approval": "always" | "conditional"}, ...]`` in discovery order
    (the agent's own tools first, then each handoff target depth-first), one entry per tool name. When two
    reachable tools share a name, ``"always"`` wins over ``"conditional"``. ``None`` gives ``[]``.

    A tool counts when it has a ``needs_approval`` attribute that is not ``False``: ``True`` is ``"always"``,
    a callable (``FunctionTool`` policy ``(run_context, arguments, call_id) -> bool``) is ``"conditional"``.
    Handoffs given as ``Handoff`` objects are followed through the SDK's reference to the target agent when
    it is still alive; a handoff whose target cannot be resolved contributes nothing.
    """
    found: dict[str, str] = {}
    seen_agents: set[int] = set()
    stack: list[Any] = [agent] if agent is not None else []
    while stack:
        current = stack.pop(0)
        if current is None or id(current) in seen_agents:
            continue
        seen_agents.add(id(current))
        for tool in getattr(current, "tools", None) or []:
            policy = getattr(tool, "needs_approval", False)
            if policy is False or policy is None:
                continue
            kind = "always" if policy is True else "conditional" if callable(policy) else "always"
            name = getattr(tool, "name", None)
            if not isinstance(name, str):
                continue
            if found.get(name) != "always":
                found[name] = kind
        for handoff in getattr(current, "handoffs", None) or []:
            if isinstance(handoff, agents.Agent):
                stack.append(handoff)
            else:
                ref = getattr(handoff, "_agent_ref", None)
                target = ref() if callable(ref) else None
                if target is not None:
                    stack.append(target)
    return [{"name": name, "approval": kind} for name, kind in found.items()]


@dataclass(frozen=True)
class RegisteredAgent:
    """One registered agent.

    ``name``: URL-safe agent name (:data:`AGENT_NAME_PATTERN`). ``orchestrator``: the Durable orchestrator
    function name started for a run. ``description``: one line for ``GET /api/agents``. ``agent``: the SDK
    ``Agent`` (or ``None``), used only to derive approval tools. ``settings``: setting names snapshotted into
    the orchestration input in addition to the global ones (docs/internals.md, "Orchestration input").
    ``function``: the user's orchestrator function itself (the one ``Blueprint.agent`` decorated), which a
    conversation calls for every turn (docs/internals.md "Conversations"); ``None`` for entries registered by name.
    """

    name: str
    orchestrator: str
    description: str
    agent: agents.Agent[Any] | None = field(default=None, repr=False)
    settings: tuple[str, ...] = ()
    kind: str = "agent"
    agents: tuple[agents.Agent[Any], ...] = field(default=(), repr=False)
    function: Callable[..., Any] | None = field(default=None, repr=False, compare=False)

    @property
    def conversational(self) -> bool:
        """Whether conversations can be started with this entry: an agent (not a workflow) with its function."""
        return self.kind == "agent" and self.function is not None

    def approval_tools(self) -> list[dict[str, str]]:
        """See :func:`approval_tools`; a workflow lists those of all its agents (first listed first)."""
        if self.kind == "agent":
            return approval_tools(self.agent)
        found: dict[str, str] = {}
        for agent in self.agents:
            for tool in approval_tools(agent):
                if found.get(tool["name"]) != "always":
                    found[tool["name"]] = tool["approval"]
        return [{"name": name, "approval": kind} for name, kind in found.items()]

    def to_json(self, route_prefix: str = "/api") -> dict[str, Any]:
        """The ``GET /api/agents`` entry.

        Shape: ``{"name": str, "kind": "agent" | "workflow", "description": str, "approvalTools": [{"name": str,
        "approval": "always" | "conditional"}], "links": {"runs": "/api/agents/<name>/runs"}}``. Settings and the
        orchestrator name are deliberately not exposed.
        """
        return {
            "name": self.name,
            "kind": self.kind,
            "description": self.description,
            "approvalTools": self.approval_tools(),
            "links": {"runs": f"{route_prefix}/agents/{self.name}/runs"},
        }


class AgentRegistry:
    """A thread-safe name → :class:`RegisteredAgent` map (the HTTP API reads one; tests may build their own)."""

    def __init__(self) -> None:
        self._agents: dict[str, RegisteredAgent] = {}
        self._lock = threading.Lock()

    @staticmethod
    def entry(
        name: str,
        *,
        orchestrator: str,
        description: str,
        agent: agents.Agent[Any] | None = None,
        settings: Sequence[str] = (),
        kind: str = "agent",
        workflow_agents: tuple[agents.Agent[Any], ...] = (),
        function: Callable[..., Any] | None = None,
    ) -> RegisteredAgent:
        """Validate and build an entry (not registered); ``kind`` is ``agent`` or ``workflow`` (whose
        ``workflow_agents`` give its approval tools); ``function`` is the user's orchestrator function
        (:attr:`RegisteredAgent.function`).

        Raises ``ValueError`` for a name outside :data:`AGENT_NAME_PATTERN`, an orchestrator name that is not an
        identifier, an empty description, an ``agent`` that is not an ``agents.Agent``, and setting names that are
        not identifiers (or a single string instead of a tuple).
        """
        if not isinstance(name, str) or not AGENT_NAME_PATTERN.fullmatch(name):
            raise ValueError(f"agent name {name!r} must match {AGENT_NAME_PATTERN.pattern}")
        if not isinstance(orchestrator, str) or not _ORCHESTRATOR_NAME_PATTERN.fullmatch(orchestrator):
            raise ValueError(f"orchestrator {orchestrator!r} must be a function name (letters, digits, _)")
        if not isinstance(description, str) or not description.strip():
            raise ValueError("description must be a non-empty string")
        if agent is not None and not isinstance(agent, agents.Agent):
            raise ValueError(f"agent must be an agents.Agent or None, not {type(agent).__name__}")
        if kind not in ("agent", "workflow"):
            raise ValueError(f"kind must be 'agent' or 'workflow', not {kind!r}")
        if not all(isinstance(a, agents.Agent) for a in workflow_agents):
            raise ValueError("a workflow's agents must be agents.Agent objects")
        if function is not None and not callable(function):
            raise ValueError("function must be callable")
        if isinstance(settings, str):
            raise ValueError("settings must be a tuple of setting names, not a string")
        names = tuple(settings)
        for setting in names:
            if not isinstance(setting, str) or not _SETTING_NAME_PATTERN.fullmatch(setting):
                raise ValueError(f"setting name {setting!r} is not a valid identifier")
        return RegisteredAgent(
            name=name,
            orchestrator=orchestrator,
            description=description.strip(),
            agent=agent,
            settings=tuple(dict.fromkeys(names)),
            kind=kind,
            agents=tuple(workflow_agents),
            function=function,
        )

    def add(self, entry: RegisteredAgent) -> RegisteredAgent:
        """Register (or re-register) ``entry`` and return it.

        Re-registering a name with the same ``orchestrator`` replaces the entry (a module imported twice stays
        harmless); a different ``orchestrator`` for a registered name raises ``ValueError``.
        """
        with self._lock:
            self._check(entry)
            self._agents[entry.name] = entry
        return entry

    def check(self, entry: RegisteredAgent) -> None:
        """Raise ``ValueError`` when :meth:`add` would refuse ``entry`` (its name taken by another orchestrator)."""
        with self._lock:
            self._check(entry)

    def _check(self, entry: RegisteredAgent) -> None:
        existing = self._agents.get(entry.name)
        if existing is not None and existing.orchestrator != entry.orchestrator:
            raise ValueError(f"agent {entry.name!r} is already registered with orchestrator {existing.orchestrator!r}")

    def register(
        self,
        name: str,
        *,
        orchestrator: str,
        description: str,
        agent: agents.Agent[Any] | None = None,
        settings: Sequence[str] = (),
        kind: str = "agent",
        workflow_agents: tuple[agents.Agent[Any], ...] = (),
    ) -> RegisteredAgent:
        """Validate (:meth:`entry`, same errors) and :meth:`add` an agent or workflow; returns its entry."""
        return self.add(
            self.entry(name, orchestrator=orchestrator, description=description, agent=agent, settings=settings,
                       kind=kind, workflow_agents=workflow_agents)
        )

    def get(self, name: str) -> RegisteredAgent | None:
        """The entry for ``name``, or ``None``."""
        with self._lock:
            return self._agents.get(name)

    def list(self) -> list[RegisteredAgent]:
        """All entries, sorted by name."""
        with self._lock:
            return [self._agents[key] for key in sorted(self._agents)]

    def unregister(self, name: str) -> bool:
        """Remove ``name``; returns whether it was registered."""
        with self._lock:
            return self._agents.pop(name, None) is not None
