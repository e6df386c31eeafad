"""Durable OpenAI Agents SDK runs on Azure Durable Functions (the reusable agent runtime layer).

See docs/internals.md for the contracts between this package, the app's ``agents/`` and ``activities/``,
and the local runtime.
"""

from .run_settings import run_setting
from .runner import ModelCallError, agent_orchestrator
from .tools import ActivityTool, ToolCall, ToolRetry, activity_tool

__all__ = [
    "ActivityTool",
    "ModelCallError",
    "ToolCall",
    "ToolRetry",
    "activity_tool",
    "agent_orchestrator",
    "run_setting",
]
