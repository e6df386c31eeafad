"""Invoking the app's functions the way the Python worker does (protocol §4, §6.4).

Keyword arguments are named after the bindings; a declared ``context`` parameter that is not a binding gets a
:class:`InvocationContext` (``func.Context``). Coroutine functions are awaited on the event loop; plain functions run
in a thread pool. Activity input/output go through the real ``ActivityTriggerConverter``; a failure is turned into
the extension's ``TaskFailed`` ``Reason``/``Details`` texts (protocol §4.3).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from .app_loader import FunctionInfo
from .events import compact

__all__ = ["InvocationContext", "invoke", "run_activity", "run_activity_inline", "decode_activity_input",
           "encode_activity_result", "activity_failure", "orchestrator_state", "orchestrator_output",
           "state_from_output", "call_orchestrator",
           "OUT_OF_PROC_LABEL"]

OUT_OF_PROC_LABEL = "$OutOfProcData$:"


class _TraceContext(func._abc.TraceContext):
    def __init__(self) -> None:
        self._parent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-00"

    @property
    def trace_state(self) -> str:
        return ""

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func._abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> Any:
        return None


class InvocationContext(func.Context):
    """``func.Context`` for one invocation: a fresh ``invocation_id`` (UUID text), the function name and folder."""

    _tls = threading.local()

    def __init__(self, function_name: str, function_directory: str):
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = _TraceContext()
        self._retry = _RetryContext()

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> threading.local:  # type: ignore[override]  # the ABC says type[local]; the
        # Python worker passes an instance, as here
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> Any:
        return self._trace

    @property
    def retry_context(self) -> Any:
        return self._retry


async def invoke(info: FunctionInfo, kwargs: dict[str, Any], executor: ThreadPoolExecutor,
                 app_dir: str) -> Any:
    """Call ``info.fn(**kwargs)`` (+ ``context`` when declared): awaited if async, else in ``executor``.

    Exceptions propagate unchanged.
    """
    kwargs = _with_context(info, kwargs, app_dir)
    if info.is_async:
        return await info.fn(**kwargs)
    loop = asyncio.get_running_loop()
    result = await loop.run_in_executor(executor, functools.partial(info.fn, **kwargs))
    if asyncio.iscoroutine(result):
        return await result
    return result


def activity_failure(name: str, exc: BaseException) -> tuple[str, str]:
    """``(Reason, Details)`` of ``TaskFailed`` for an activity that raised ``exc`` (protocol §4.3).

    Reason: ``"Activity function '<name>' failed:  <Type>: <message>"`` (two spaces). Details: the Newtonsoft
    serialization of a ``System.Exception`` whose ``Message`` is the friendly text with its leading space and whose
    inner exception is the host's ``RpcException`` (inner members approximate, protocol §9 item 1).
    """
    message = f"{type(exc).__name__}: {exc}"
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)[1:]).rstrip()
    friendly = f" {message}"
    rpc_message = f"Result: Failure\nException: {message}\nStack: {stack}"
    common = {"Data": None, "HelpURL": None, "StackTraceString": None, "RemoteStackTraceString": None,
              "RemoteStackIndex": 0, "ExceptionMethod": None, "HResult": -2146233088, "Source": None,
              "WatsonBuckets": None}
    inner = {"$type": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException, Microsoft.Azure.WebJobs.Script",
             "ClassName": "Microsoft.Azure.WebJobs.Script.Workers.Rpc.RpcException", "Message": rpc_message,
             "InnerException": None, **common, "RemoteMessage": message, "RemoteStackTrace": stack,
             "RemoteTypeName": type(exc).__name__, "IsUserException": False}
    details = {"$type": "System.Exception, System.Private.CoreLib", "ClassName": "System.Exception",
               "Message": friendly, "InnerException": inner, **common}
    return f"Activity function '{name}' failed: {friendly}", compact(details)


async def run_activity(info: FunctionInfo, input_text: str | None, executor: ThreadPoolExecutor,
                       app_dir: str) -> tuple[bool, str | None, str | None]:
    """Run an activity with the action's input JSON text.

    Returns ``(True, result_text, None)`` with the compact JSON text of the result (None for a ``None`` result), or
    ``(False, reason, details)`` when the function (or the input/output conversion) raised.
    """
    try:
        ret = await invoke(info, {_trigger_name(info): decode_activity_input(input_text)}, executor, app_dir)
        return True, encode_activity_result(ret), None
    except Exception as exc:  # noqa: BLE001 - a user-code failure becomes TaskFailed
        reason, details = activity_failure(info.durable_name or info.name, exc)
        return False, reason, details


def _trigger_name(info: FunctionInfo) -> str:
    if info.trigger_name is None:
        raise RuntimeError(f"function {info.name!r} has no trigger parameter")
    return info.trigger_name


def run_activity_inline(info: FunctionInfo, input_text: str | None,
                        app_dir: str) -> tuple[bool, str | None, str | None]:
    """:func:`run_activity` in the calling thread, for in-process drivers on a virtual clock
    (:class:`durable_agents.testing.ReplayHarness`): a plain function is called directly, a coroutine function's
    coroutine is run to completion with ``asyncio.run`` (so call this from a thread without a running event loop).
    Same conversions, same results and failure texts as :func:`run_activity`.
    """
    try:
        kwargs = _with_context(info, {_trigger_name(info): decode_activity_input(input_text)}, app_dir)
        ret = info.fn(**kwargs)
        if inspect.isawaitable(ret):
            ret = asyncio.run(_awaited(ret))
        return True, encode_activity_result(ret), None
    except Exception as exc:  # noqa: BLE001 - a user-code failure becomes TaskFailed
        reason, details = activity_failure(info.durable_name or info.name, exc)
        return False, reason, details


def decode_activity_input(input_text: str | None) -> Any:
    """The value an activity function receives for the action's input JSON text (``ActivityTriggerConverter``;
    ``None`` input → ``None``). Raises what the converter raises for text that is not JSON."""
    return ActivityTriggerConverter.decode(meta.Datum(type="string", value=input_text or "null"),
                                           trigger_metadata=None)


def encode_activity_result(value: Any) -> str | None:
    """``TaskCompleted.Result`` for an activity's return value: the converter's JSON, re-serialized compactly
    like the extension (protocol §1); ``None`` for a ``None`` result. Raises for values the converter rejects."""
    parsed = json.loads(ActivityTriggerConverter.encode(value, expected_type=None).value)
    return None if parsed is None else compact(parsed)


def _with_context(info: FunctionInfo, kwargs: dict[str, Any], app_dir: str) -> dict[str, Any]:
    if info.wants_context:
        return {**kwargs, "context": InvocationContext(info.name, app_dir)}
    return kwargs


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def orchestrator_state(fn, body: str, binding_name: str = "context") -> dict:
    """Call an orchestrator wrapper (the DFApp ``handle``) synchronously with the context JSON ``body``.

    Run this in a worker thread. Returns the ``OrchestratorState`` dict. When the wrapper raises, the state after
    ``$OutOfProcData$:`` is parsed (protocol §2.1); a raise without that label yields ``{"isDone": false,
    "schemaVersion": 2, "actions": [[]], "error": str(exc)}``. The two halves are :func:`orchestrator_output`
    and :func:`state_from_output` (for callers that measure the invocation alone).
    """
    return state_from_output(orchestrator_output(fn, body, binding_name))


def orchestrator_output(fn, body: str, binding_name: str = "context") -> Any:
    """The orchestrator invocation alone: what the wrapper returned (the ``OrchestratorState`` JSON text, or a
    dict) or the ``Exception`` it raised."""
    try:
        return fn(**{binding_name: func.OrchestrationContext(body)})
    except Exception as exc:  # noqa: BLE001 - parsed by state_from_output
        return exc


def state_from_output(out: Any) -> dict:
    """The ``OrchestratorState`` dict for a value of :func:`orchestrator_output` (see :func:`orchestrator_state`).

    Raises ``ValueError`` when a returned text is not JSON."""
    if isinstance(out, Exception):
        text = str(out)
        idx = text.find(OUT_OF_PROC_LABEL)
        if idx >= 0:
            try:
                return json.loads(text[idx + len(OUT_OF_PROC_LABEL):])
            except ValueError:
                pass
        return {"isDone": False, "schemaVersion": 2, "actions": [[]], "error": text}
    if isinstance(out, dict):
        return out
    return json.loads(out)


def call_orchestrator(info: FunctionInfo, body: str) -> dict:
    """:func:`orchestrator_state` for a registered orchestrator function."""
    return orchestrator_state(info.fn, body, info.trigger_name or "context")
