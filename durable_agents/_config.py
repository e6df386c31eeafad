"""Reading the app's settings (internal; ``get_setting`` is re-exported by ``durable_agents``).

Every setting the deployed code reads goes through :func:`get_setting`, so that the infrastructure tests can
cross-check the names against the function app's settings in ``infra/`` (one regular expression finds them all).
Locally, ``local.settings.json`` ``Values`` become environment variables; in Azure they are app settings.
"""

from __future__ import annotations

import os

__all__ = ["get_setting"]


def get_setting(name: str, default: str | None = None) -> str | None:
    """Return the setting ``name`` from the environment, or ``default``.

    An empty or all-blank value counts as unset (``local.settings.json`` ships empty placeholders), so
    ``get_setting("X", "d")`` returns ``"d"`` for ``X=""``. Values are returned stripped.

    Never call this from orchestrator code: settings may differ between replays. Orchestrators read the run's
    settings snapshot through ``durable_agents.run_setting`` instead (docs/internals.md).
    """
    value = os.environ.get(name)
    if value is None or not value.strip():
        return default
    return value.strip()
