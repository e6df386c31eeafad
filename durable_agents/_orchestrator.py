"""The public face of the durable runner: :func:`agent_orchestrator` and :func:`install` (internal module)."""

from __future__ import annotations

import threading

from agents.run import set_default_agent_runner

from .runner import DurableAgentRunner, _install_timestamp_memo, agent_orchestrator

__all__ = ["agent_orchestrator", "install"]

_install_lock = threading.Lock()
_installed = False


def install() -> None:
    """Install the durable runner into the OpenAI Agents SDK and the history timestamp memo (idempotent).

    ``Runner.run`` / ``Runner.run_sync`` then delegate to ``DurableAgentRunner`` (``agents.run.
    set_default_agent_runner``): durable inside an agent orchestrator, the SDK's own behaviour everywhere else.
    ``durable_agents.App()`` calls it; an agent orchestrator calls it at its first episode, so apps that compose
    by hand with ``df.DFApp`` need not. Importing ``durable_agents`` installs nothing.
    """
    global _installed
    with _install_lock:
        if _installed:
            return
        set_default_agent_runner(DurableAgentRunner())
        _install_timestamp_memo()
        _installed = True
