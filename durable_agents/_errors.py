"""The error hierarchy: internal module, public names re-exported by ``durable_agents``.

Every error this library raises on purpose derives from :class:`DurableAgentsError`, so an app can catch them
in one place. Configuration mistakes in agent definitions (a ``Model`` instance where a model name is needed,
streaming inside an orchestration) stay the OpenAI Agents SDK's ``agents.exceptions.UserError``, because they are
mistakes in SDK usage and SDK users already catch that type.
"""

from __future__ import annotations

from typing import Any

from ._contracts import ModelErrorInfo

__all__ = ["DurableAgentsError", "ModelCallError", "NonDeterminismError", "TaskFailedError"]


class DurableAgentsError(Exception):
    """Base class of the errors of ``durable_agents``."""


class ModelCallError(DurableAgentsError, RuntimeError):
    """A model call failed for good: a non-retryable error, or retries exhausted; the run fails.

    ``error`` is the ``error`` object of the ``invoke_model`` result (``type``, ``message``, ``status``,
    ``retryable``, ``retryAfter``; :class:`durable_agents.ModelErrorInfo`); ``attempts`` is the number of calls
    made (at most the run setting ``MODEL_MAX_ATTEMPTS``).
    """

    def __init__(self, error: ModelErrorInfo | dict[str, Any], attempts: int) -> None:
        self.error = error
        self.attempts = attempts
        status = error.get("status")
        super().__init__(
            f"Model call failed after {attempts} attempt(s): {error.get('type') or 'error'}"
            f"{f' (HTTP {status})' if status else ''}: {error.get('message') or ''}"
        )


class TaskFailedError(DurableAgentsError):
    """A durable task of an agent orchestrator function failed (an activity after its retries, for example).

    Raised where the function yields or awaits the task (Durable Functions' semantics). ``name`` is the activity
    name; ``message`` the failure text from the history (``"ValueError: boom"``; protocol §4.3).
    """

    def __init__(self, name: str, message: str) -> None:
        self.name = name
        self.message = message
        super().__init__(f"{name} failed: {message}")


class NonDeterminismError(DurableAgentsError, RuntimeError):
    """The orchestrator asked for different durable work than its history records.

    Raised when a replay of an agent run diverges from what the run did before: a code change deployed while
    runs were in flight, or orchestrator code that is not deterministic (DESIGN.md "Orchestration rules").
    ``step`` is the 0-based index of the durable step (model call, tool fan-out, approval wait, timer...) or the
    Durable sequence id where the divergence is; ``recorded`` what the history (or the live run) recorded there and
    ``requested`` what the code asked for (``None`` when one side has nothing at that place).
    """

    def __init__(self, step: int, recorded: Any, requested: Any, *, detail: str = "") -> None:
        self.step = step
        self.recorded = recorded
        self.requested = requested
        message = (
            f"Non-deterministic orchestration at step {step}: the history recorded {_describe(recorded)}, "
            f"the code asked for {_describe(requested)}"
        )
        super().__init__(message + (f" ({detail})" if detail else ""))


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."
