"""The public face of the durable runner: :func:`agent_orchestrator` and :func:`install` (internal module; both
are re-exported by ``durable_agents``). The runner itself is the private package ``durable_agents._runner``."""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any, overload

import azure.durable_functions as df
from agents.run import set_default_agent_runner

from ._mcp import install_mcp_seam
from ._runner import DurableAgentRunner, drive, install_long_timer_cancel, install_timestamp_memo

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
        install_timestamp_memo()
        install_long_timer_cancel()
        install_mcp_seam()
        _installed = True


OrchestratorFunction = Callable[[df.DurableOrchestrationContext], Generator[Any, Any, Any]]


@overload
def agent_orchestrator(fn: Callable[..., Any], *, agent_name: str | None = None) -> OrchestratorFunction: ...


@overload
def agent_orchestrator(
    fn: None = None, *, agent_name: str | None = None
) -> Callable[[Callable[..., Any]], OrchestratorFunction]: ...


def agent_orchestrator(
    fn: Callable[..., Any] | None = None, *, agent_name: str | None = None
) -> OrchestratorFunction | Callable[[Callable[..., Any]], OrchestratorFunction]:
    """Decorator: turn a plain function that runs an agent with the SDK into a Durable orchestrator function.

    Use it bare or called (``@agent_orchestrator`` / ``@agent_orchestrator(agent_name="support")``) under
    ``@bp.orchestration_trigger(context_name="context")``, or let ``Blueprint.agent`` apply it. The function receives
    a ``context`` with ``get_input()`` (the orchestration input ``{"agent", "input", "settings"}``), ``instance_id``
    and ``current_utc_datetime``, and typically returns ``Runner.run_sync(agent, context.get_input()["input"])``.
    It may be ``async def`` and ``await Runner.run(...)``: agents run concurrently with ``asyncio.gather`` have their
    model calls of one round scheduled in one fan-out. A generator function raises ``agents.exceptions.UserError``
    at its first episode (no durable work is done), and so does ``Runner.run`` in a Durable orchestrator that is not
    an agent orchestrator (its model calls would run in the orchestrator, again on every replay).
    A returned ``RunResult`` becomes the output ``{"finalOutput", "lastAgent", "turns", "usage", "demo"}``
    (``durable_agents.OrchestrationOutput``); any other JSON value is returned as it is. ``agent_name`` is the
    ``agent`` of the custom status (default: the input's ``agent``).

    Inside, every model call is the ``invoke_model`` activity (retried on a durable timer when retryable),
    every ``ActivityTool`` call its activity (one fan-out per model turn), and tool approvals wait durably
    for the event ``approval:<id>`` (docs/internals.md). Agents must name their model with a string (or leave
    it unset); an ``agents.Model`` instance raises ``agents.exceptions.UserError``. A replay that asks for other
    durable work than the history records raises ``durable_agents.NonDeterminismError``.
    """

    def decorate(user_fn: Callable[..., Any]) -> OrchestratorFunction:
        def orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
            install()
            return (yield from drive(context, user_fn, agent_name))

        orchestrator.__name__ = user_fn.__name__
        orchestrator.__qualname__ = user_fn.__qualname__
        orchestrator.__doc__ = user_fn.__doc__
        orchestrator.__module__ = user_fn.__module__
        orchestrator.agent_function = user_fn  # type: ignore[attr-defined]
        return orchestrator

    if fn is not None:
        return decorate(fn)
    return decorate
