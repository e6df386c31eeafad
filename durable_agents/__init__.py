"""Durable OpenAI Agents SDK agents on Azure Durable Functions: the public API.

An app is ``app = durable_agents.App()`` (a ``df.DFApp`` that registers the model activity and the HTTP API), its
tools are ``@activity_tool(bp)`` functions and each agent is one ``@bp.agent(agent, description=...)`` decorator
on a :class:`Blueprint`. Everything an app touches is in ``__all__``; modules whose names start with ``_`` are
internal. The test kit is :mod:`durable_agents.testing`. Contracts between the parts: docs/internals.md.

Importing this package changes nothing global: ``App()`` (or an agent orchestrator's first episode) calls
:func:`install`.
"""

from ._app import App, Blueprint
from ._config import get_setting
from ._contracts import (
    INVOKE_MODEL_ACTIVITY,
    ApprovalDecision,
    ApprovalEvent,
    ApprovalKind,
    CustomStatus,
    InvokeModelInput,
    InvokeModelResult,
    ModelErrorInfo,
    OrchestrationInput,
    OrchestrationOutput,
    PendingApproval,
    Principal,
    ToolActivityInput,
    ToolCallInfo,
    ToolRetry,
    UsageTotals,
)
from ._demo import DEMO_PREFIX, DemoReply, DemoResponder, DemoToolCall, DemoTurn
from ._errors import DurableAgentsError, ModelCallError, NonDeterminismError, TaskFailedError
from ._loader import load_app_agents
from ._orchestrator import agent_orchestrator, install
from ._providers import RegisteredModel, RegisteredModelProvider, register_model, register_model_provider
from ._run_settings import run_setting
from ._sessions import DurableSessionError, in_memory_session
from ._tools import ActivityTool, ApprovalCheck, ToolCall, activity_tool, approval_check, as_activity_tool
from ._version import __version__

__all__ = [
    "DEMO_PREFIX",
    "INVOKE_MODEL_ACTIVITY",
    "ActivityTool",
    "App",
    "ApprovalCheck",
    "ApprovalDecision",
    "ApprovalEvent",
    "ApprovalKind",
    "Blueprint",
    "CustomStatus",
    "DemoReply",
    "DemoResponder",
    "DemoToolCall",
    "DemoTurn",
    "DurableAgentsError",
    "DurableSessionError",
    "InvokeModelInput",
    "InvokeModelResult",
    "ModelCallError",
    "ModelErrorInfo",
    "NonDeterminismError",
    "OrchestrationInput",
    "OrchestrationOutput",
    "PendingApproval",
    "Principal",
    "RegisteredModel",
    "RegisteredModelProvider",
    "TaskFailedError",
    "ToolActivityInput",
    "ToolCall",
    "ToolCallInfo",
    "ToolRetry",
    "UsageTotals",
    "__version__",
    "activity_tool",
    "agent_orchestrator",
    "approval_check",
    "as_activity_tool",
    "get_setting",
    "in_memory_session",
    "install",
    "load_app_agents",
    "register_model",
    "register_model_provider",
    "run_setting",
]
