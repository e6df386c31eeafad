"""MCP servers of agents inside durable runs (internal): see :func:`install_mcp_seam`."""

from __future__ import annotations

__all__ = ["install_mcp_seam"]


def install_mcp_seam() -> None:
    """Make the MCP servers of agents durable inside agent orchestrations (idempotent); called by
    ``durable_agents.install()``."""
