"""The per-thread durable run context and :func:`run_setting` (internal; ``run_setting`` is public).

Orchestrator code must be deterministic, so it never reads the environment: the HTTP API snapshots the settings a
run needs into the orchestration input (``{"settings": {...}}``, docs/internals.md "Orchestration input"), and
:func:`run_setting` reads that snapshot. The durable runner (``durable_agents._runner``) runs the user's orchestrator
function in a worker thread and binds that thread to its session here; :func:`current_session` is how the
activity tools and :func:`run_setting` find it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from ._config import get_setting

__all__ = ["GLOBAL_RUN_SETTINGS", "bind_session", "current_session", "run_setting", "settings_snapshot"]

GLOBAL_RUN_SETTINGS = ("APPROVAL_TIMEOUT", "MODEL_MAX_ATTEMPTS", "AGENT_MAX_TURNS", "AGENT_TURNS_PER_GENERATION",
                       "CONVERSATION_IDLE_TIMEOUT")
"""Settings snapshotted into every run's input (docs/internals.md), before the agent's registered ones."""

_local = threading.local()


def current_session() -> Any | None:
    """Return the durable session bound to the calling thread, or ``None`` outside a durable orchestration.

    The session object is the runner's ``durable_agents._runner.bridge.Session``; it exposes ``settings``
    (``dict[str, str]``, the run's snapshot) and the calls activity tools use.
    """
    return getattr(_local, "session", None)


def bind_session(session: Any | None) -> None:
    """Bind ``session`` to the calling thread (``None`` unbinds). Used by the runner's worker thread only."""
    _local.session = session


def run_setting(name: str, default: str | None = None) -> str | None:
    """Return the setting ``name`` for the current run, or ``default``.

    Inside a durable orchestration (any code the durable runner executes for a run: the orchestrator function,
    tool ``needs_approval`` callables, instructions callables) the value comes from the run's settings snapshot,
    the ``settings`` object of the orchestration input; blank values count as unset. This keeps replay
    deterministic (DESIGN.md "Orchestration rules"). Outside an orchestration (plain ``Runner.run`` in a script
    or a test) it falls back to :func:`durable_agents._config.get_setting`, i.e. the environment.

    Values are strings (as in app settings); convert them yourself, e.g. ``Decimal(run_setting("X", "100"))``.
    """
    session = current_session()
    if session is None:
        return get_setting(name, default)
    value = session.settings.get(name)
    if value is None:
        return default
    text = str(value).strip()
    return text if text else default


def settings_snapshot(names: Iterable[str] = ()) -> dict[str, str]:
    """The settings snapshot of a new run (the ``settings`` of its orchestration input): :data:`GLOBAL_RUN_SETTINGS`
    and ``names`` (an agent's registered settings) read with :func:`durable_agents.get_setting`, those that are set.
    Call it where a run starts (the HTTP API, the test kit), never in orchestrator code."""
    return {name: value for name in (*GLOBAL_RUN_SETTINGS, *names) if (value := get_setting(name)) is not None}
