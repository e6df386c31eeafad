"""Reading the app's settings (internal; ``get_setting`` is re-exported by ``durable_agents``).

Every setting the deployed code reads goes through :func:`get_setting`, so that the infrastructure tests can
cross-check the names against the function app's settings in ``infra/`` (one regular expression finds them all).
Locally, ``local.settings.json`` ``Values`` become environment variables; in Azure they are app settings.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable

__all__ = ["SETTING_REFERENCE", "expand_setting_references", "get_setting"]

SETTING_REFERENCE = re.compile(r"%([A-Za-z_][A-Za-z0-9_]*)%")
"""An app-setting reference inside a value: ``%NAME%`` (the Functions convention), used where a value is kept in
a run's history (hosted MCP credentials, MCP server headers and environment) so the secret itself is not."""


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


def expand_setting_references(
    text: str, lookup: Callable[[str], str | None] | None = None, *, missing: Callable[[str], Exception]
) -> str:
    """``text`` with every ``%NAME%`` (:data:`SETTING_REFERENCE`) replaced by ``lookup(NAME)`` (default
    :func:`get_setting`). Raises ``missing(NAME)`` for a setting ``lookup`` gives ``None`` for; the error names the
    setting, never a value."""
    find = lookup or get_setting

    def value_of(match: re.Match[str]) -> str:
        found = find(match.group(1))
        if found is None:
            raise missing(match.group(1))
        return found

    return SETTING_REFERENCE.sub(value_of, text)
