"""OpenAI Agents SDK sessions inside durable runs (internal): see :func:`durable_run_kwargs`."""

from __future__ import annotations

from typing import Any

__all__ = ["durable_run_kwargs"]


def durable_run_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The ``Runner.run`` keyword arguments of a durable run with its ``session`` made replay-safe.

    Called by the durable runner (``_runner/seam.py``) inside an agent orchestration, before the SDK runs.
    """
    return kwargs
