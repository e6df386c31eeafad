"""Every use of ``azure-functions-durable`` 1.x internals, in one place (internal, not part of the public API).

DESIGN.md "Durable Functions 2.x": 2.x drops ``context.histories`` and reshapes tasks, so a port touches only this
module. What the runner needs from 1.x beyond its public API:

* task states (``Task.state``: running / completed / failed) to tell which children of a fan-out finished;
* the history (``context.histories``) to find the execution id of the instance;
* the history timestamp parser (``HistoryEvent.dt_parse``), wrapped in a memo for orchestrator CPU;
* the text of a failed activity task (protocol §4.3), to give the model the useful part of it;
* whether the calling thread is inside an orchestrator episode (``TaskOrchestrationExecutor.execute``), so that
  ``Runner.run`` in a plain Durable orchestrator fails instead of calling the model outside any activity.
"""

from __future__ import annotations

import datetime as dt
import functools
import importlib
import re
import sys
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.history.HistoryEventType import HistoryEventType
from azure.durable_functions.models.Task import TaskState
from azure.durable_functions.models.TaskOrchestrationExecutor import TaskOrchestrationExecutor

__all__ = [
    "activity_function_info",
    "execution_key",
    "in_orchestrator_episode",
    "failure_message",
    "install_timestamp_memo",
    "task_failed",
    "task_running",
]


def task_running(task: Any) -> bool:
    """True while a Durable task (activity, timer, ``task_all``...) has neither completed nor failed."""
    return task.state is TaskState.RUNNING


def task_failed(task: Any) -> bool:
    """True when a Durable task failed; its ``result`` is then the exception."""
    return task.state is TaskState.FAILED


def failure_message(exc: BaseException) -> str:
    """The useful part of a Durable task failure: ``"ValueError: boom"`` from
    ``"Activity function 'x' failed:  ValueError: boom \\n {details}"`` (protocol §4.3), ``"boom"`` from a failed
    sub-orchestration's ``"Orchestrator function 'x' failed: boom"``."""
    text = str(exc).split(" \n ", 1)[0]
    match = re.match(r"^(?:Activity|Orchestrator) function '[^']*' failed:\s*(.*)$", text, re.S)
    return (match.group(1) if match else text).strip()


def execution_key(context: df.DurableOrchestrationContext, start: dt.datetime) -> str:
    """Identify this execution of the instance: ``"execution:<ExecutionId>"`` from the ``ExecutionStarted`` event's
    ``OrchestrationInstance`` (protocol §2.3: a new GUID for every start, also after a purge and restart with the
    same instance id), or ``"started:<start isoformat>"`` (the first ``OrchestratorStarted`` time) when a backend
    does not send it."""
    for event in context.histories:
        if event.event_type == HistoryEventType.EXECUTION_STARTED:
            instance = getattr(event, "OrchestrationInstance", None)
            execution_id = instance.get("ExecutionId") if isinstance(instance, dict) else None
            if execution_id:
                return f"execution:{execution_id}"
            break
    return f"started:{start.isoformat()}"


def activity_function_info(activity: Any) -> tuple[str, str | None, Any]:
    """``(Durable activity name, trigger input name, user function)`` of a function decorated with
    ``@app.activity_trigger`` (an ``azure.functions`` ``FunctionBuilder``), as ``context.create_activity_tool`` of
    azure-functions-durable 1.x reads them. Raises ``ValueError`` for anything else."""
    function = getattr(activity, "_function", None)
    trigger = getattr(function, "_trigger", None)
    user_function = getattr(function, "_func", None)
    if function is None or trigger is None or user_function is None:
        raise ValueError(f"{activity!r} is not an activity function (decorate it with @app.activity_trigger)")
    name = getattr(trigger, "activity", None) or getattr(function, "_name", None)
    if not isinstance(name, str):
        raise ValueError(f"{activity!r} has no Durable activity name")
    input_name = getattr(trigger, "name", None)
    return name, input_name if isinstance(input_name, str) else None, user_function


_EXECUTE_CODE = TaskOrchestrationExecutor.execute.__code__


def in_orchestrator_episode() -> bool:
    """True when the calling thread runs inside a Durable orchestrator episode (an orchestrator function called by
    the Durable SDK's ``TaskOrchestrationExecutor.execute``), found by walking the thread's stack."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is _EXECUTE_CODE:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


_HISTORY_EVENT_MODULE = "azure.durable_functions.models.history.HistoryEvent"


def install_timestamp_memo() -> None:
    """Wrap the SDK's history timestamp parser (``dateutil.parser.parse``, bound as ``dt_parse`` in
    ``azure.durable_functions.models.history.HistoryEvent``) in a bounded memo (65,536 entries).

    The SDK re-parses the ``Timestamp`` of every history event on every episode, so a run of *n* episodes parses
    O(n²) timestamps, about 60 µs each with dateutil; the distinct timestamps of a history are few (the events of
    one episode share one). Results are the parser's own, memoized by the exact string (``datetime`` objects are
    immutable, so sharing them is safe). Idempotent; other callers of ``dateutil`` are not affected.
    """
    module = importlib.import_module(_HISTORY_EVENT_MODULE)
    original = getattr(module, "dt_parse", None)
    if original is None or getattr(original, "_durable_agents_memo", False):
        return
    memo = functools.lru_cache(maxsize=65536)(original)

    def dt_parse(timestr: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(timestr, str):
            return original(timestr, *args, **kwargs)
        return memo(timestr)

    dt_parse._durable_agents_memo = True  # type: ignore[attr-defined]
    module.dt_parse = dt_parse  # type: ignore[attr-defined]


def install_long_timer_cancel() -> None:
    """Make ``LongTimerTask.cancel()`` cancel the interval timer it actually scheduled (azure-functions-durable 1.7).

    A timer longer than the backend's ``maximumShortTimerDuration`` is a ``LongTimerTask`` that schedules one
    interval timer at a time (its children). Its ``cancel()`` marks only its own action cancelled, so the interval
    timer in flight stays uncancelled and the orchestration cannot complete until that timer fires (protocol
    §3.4: an orchestration with an open timer stays running). The patched ``cancel`` also marks every child timer's
    action cancelled. Idempotent.
    """
    from azure.durable_functions.models.Task import LongTimerTask

    original = LongTimerTask.cancel
    if getattr(original, "_durable_agents_fix", False):
        return

    def cancel(self: Any) -> None:
        original(self)
        for child in getattr(self, "children", None) or []:
            if not getattr(child, "is_completed", True):
                child._get_action().is_cancelled = True

    cancel._durable_agents_fix = True  # type: ignore[attr-defined]
    LongTimerTask.cancel = cancel


def histories(context: Any) -> list[Any]:
    """The orchestration's history events as the Durable SDK holds them (``context.histories``, 1.x only; 2.x
    raises on it), for the timeline archive of an ending generation."""
    return list(getattr(context, "histories", None) or [])

