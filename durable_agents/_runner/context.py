"""The orchestration context an agent orchestrator function receives (internal, not part of the public API).

The user's function runs in the session's worker thread (:mod:`.bridge`), not in the Durable SDK's generator, so
it gets this view instead of the episode's ``DurableOrchestrationContext``. It offers the Durable orchestration API
on top of the bridge: every method that does durable work submits a *call* (:mod:`.steps`) and returns a
:class:`DurableTask`, with Durable Functions' result and exception semantics. Three ways to write the function:

* **generator** (exactly like a Durable Functions orchestrator): ``value = yield context.call_activity(...)``,
  ``yield context.task_all([...])``, ``winner = yield context.task_any([...])``; between yields it may call
  ``Runner.run_sync`` any number of times;
* **async def**: ``await context.call_activity(...)``, ``await Runner.run(...)``, ``asyncio.gather(...)``;
* **plain**: the same methods block and return the result (``context.call_activity(...)`` is the activity's
  result); ``task_all`` / ``task_any`` need a generator or ``async def`` function.

Replay-safe members: ``get_input()``, ``instance_id``, ``current_utc_datetime``, ``is_replaying``, ``new_uuid()``,
``set_custom_status(value)`` (merged into the run's custom status, never hiding its ``pendingApprovals``),
``continue_as_new(input)``. Durable work: ``call_activity[_with_retry]``, ``call_sub_orchestrator[_with_retry]``,
``create_timer``, ``wait_for_external_event``, ``task_all``, ``task_any``, ``request_approval`` (a person's
decision on a plan or a step, like a tool approval); and ``create_activity_tool`` (the
azure-functions-durable 1.x OpenAI integration's, so its orchestrators port by changing the decorator). Anything
else raises ``AttributeError`` saying what to use instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import json
import re
import uuid
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

import azure.durable_functions as df
from agents import FunctionTool, RunContextWrapper
from agents.exceptions import UserError
from agents.function_schema import function_schema

from .._contracts import ToolRetry, parse_iso_duration
from .._errors import TaskFailedError
from .._jsonsafe import json_safe, replace_surrogates
from . import compat
from .steps import (
    ActivityCall,
    ApprovalItem,
    ApprovalsCall,
    CallOutcome,
    EventCall,
    LeafCall,
    SubOrchestratorCall,
    TimerCall,
)

if TYPE_CHECKING:
    from .bridge import Session

__all__ = ["DurableTask", "OrchestrationContextView", "run_user_function"]

_UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_OID, "durable-agents/new_uuid")
_APPROVAL_ID = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_MICROSOFT_TOOL_RETRY = ToolRetry(max_attempts=5, first_retry_interval_ms=2000)  # create_activity_tool's default


class DurableTask:
    """A durable task of an agent orchestrator function: a leaf (activity, timer, event) or ``task_all`` /
    ``task_any`` over tasks. Yield it (generator), await it (``async def``), or get its result from a blocking call.

    After it finished: ``is_completed`` (True also when it failed), ``is_faulted``, ``result`` (the value; for
    ``task_any`` the winning task) and ``exception`` (a :class:`durable_agents.TaskFailedError`).
    """

    def __init__(self, session: Session, call: LeafCall | ApprovalsCall | None = None, *,
                 children: Sequence[DurableTask] = (), mode: str = "leaf") -> None:
        self._session = session
        self._call = call
        self._children = list(children)
        self._mode = mode
        self._future: asyncio.Future[Any] | None = None
        self.is_completed = False
        self.is_faulted = False
        self.result: Any = None
        self.exception: BaseException | None = None

    def _start(self, wait_any: bool) -> asyncio.Future[Any]:
        if self._future is None:
            assert self._call is not None and not isinstance(self._call, ApprovalsCall)
            self._future = self._session.submit(self._call, wait_any=wait_any)
        return self._future

    def _finish(self, value: Any = None, error: BaseException | None = None) -> None:
        self.is_completed = True
        self.is_faulted = error is not None
        self.result, self.exception = (None, error) if error is not None else (value, None)

    async def _settle(self, wait_any: bool = True) -> None:
        """Wait until this task finished (the outcome is on the task; nothing raised here)."""
        if self.is_completed:
            return
        if self._mode == "approval":
            assert isinstance(self._call, ApprovalsCall)
            decisions = await self._session.wait_for_approvals(self._call)
            self._finish(decisions[0])
        elif self._mode == "leaf":
            outcome: CallOutcome = await self._start(wait_any)
            if outcome.ok:
                self._finish(outcome.value)
            else:
                name = getattr(self._call, "name", type(self._call).__name__)
                self._finish(error=TaskFailedError(str(name), outcome.error or ""))
        elif self._mode == "all":
            await asyncio.gather(*(child._settle(wait_any=False) for child in self._children))
            failed = next((child for child in self._children if child.is_faulted), None)
            if failed is not None:
                self._finish(error=failed.exception)
            else:
                self._finish([child.result for child in self._children])
        else:  # any
            waiting = {asyncio.ensure_future(child._settle(wait_any=True)): child for child in self._children}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            self._finish(next(child for child in self._children if child.is_completed))

    def _value(self) -> Any:
        if self.exception is not None:
            raise self.exception
        return self.result

    def __await__(self) -> Generator[Any, None, Any]:
        yield from self._settle().__await__()
        return self._value()

    def cancel(self) -> None:
        """Cancel a pending durable timer (as ``TimerTask.cancel``), so the orchestration need not wait for it.
        Raises ``ValueError`` for any other task."""
        if not isinstance(self._call, TimerCall):
            raise ValueError("only durable timers (context.create_timer) can be cancelled")
        if not self.is_completed and self._future is not None and self._session.cancel_timer(self._future):
            self.is_completed = True

    @property
    def is_cancelled(self) -> bool:
        """True when this timer was cancelled before it fired."""
        return self._future is not None and self._future.cancelled()


class OrchestrationContextView:
    """The ``context`` of an agent orchestrator function (see the module docstring for the three styles)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._blocking = False
        self._uuid_counter = 0
        self._approvals = 0
        self._children = 0
        self.continued_as_new: tuple[bool, Any] = (False, None)

    # -- replay-safe state --------------------------------------------------------------------------------------

    def get_input(self) -> Any:
        """The orchestration input (for agent runs ``{"agent", "input", "settings"}``)."""
        return self._session.input

    @property
    def instance_id(self) -> str:
        """The orchestration instance id (the run id)."""
        return self._session.instance_id

    @property
    def current_utc_datetime(self) -> dt.datetime:
        """The orchestration's replay-safe current time (aware UTC): the time of the episode that resolved the
        last durable task."""
        return self._session.now

    @property
    def is_replaying(self) -> bool:
        """True while the function re-runs work the history already holds (a replay after a restart, an eviction or
        on another worker); False on the live path. Use it only to silence logs."""
        return self._session.replaying

    def new_uuid(self) -> str:
        """A UUID that is the same on every replay: name-based (RFC 4122 §4.3) on the instance id, the current
        orchestration time and a counter."""
        name = f"{self.instance_id}_{self.current_utc_datetime.isoformat()}_{self._uuid_counter}"
        self._uuid_counter += 1
        return str(uuid.uuid5(_UUID_NAMESPACE, name))

    def set_custom_status(self, value: Any) -> None:
        """Publish ``value`` (JSON) in the run's custom status from the next step on: a dict's members are merged
        with the run's progress (the runner's members win, so ``pendingApprovals`` is never hidden), any other value
        is the member ``custom``."""
        self._session.progress.custom = value

    # -- durable work -------------------------------------------------------------------------------------------

    def _task(self, call: LeafCall) -> Any:
        task = DurableTask(self._session, call)
        return self._run_blocking(task) if self._blocking else task

    def call_activity(self, name: str, input_: Any = None) -> Any:
        """Schedule the activity ``name`` with JSON ``input_`` (a task; its result, in a plain function)."""
        return self._task(ActivityCall(name=_function_name(name), input=input_))

    def call_activity_with_retry(self, name: str, retry_options: df.RetryOptions | ToolRetry,
                                 input_: Any = None) -> Any:
        """``call_activity`` with Durable retry options (``df.RetryOptions`` or ``durable_agents.ToolRetry``)."""
        return self._task(ActivityCall(name=_function_name(name), input=input_, retry=_retry(retry_options)))

    def call_sub_orchestrator(self, name: str, input_: Any = None, instance_id: str | None = None) -> Any:
        """Run the orchestrator ``name`` as a sub-orchestration (an agent orchestrator too: give it an
        ``OrchestrationInput``); the result is its output, a failure raises :class:`durable_agents.TaskFailedError`.
        The child's pending approvals show in this run's ``pendingApprovals`` (HTTP API) and are decided there."""
        return self._task(SubOrchestratorCall(name=_function_name(name), input=input_,
                                              instance_id=self._child_id(instance_id)))

    def call_sub_orchestrator_with_retry(self, name: str, retry_options: df.RetryOptions | ToolRetry,
                                         input_: Any = None, instance_id: str | None = None) -> Any:
        """``call_sub_orchestrator`` with Durable retry options."""
        return self._task(SubOrchestratorCall(name=_function_name(name), input=input_,
                                              instance_id=self._child_id(instance_id), retry=_retry(retry_options)))

    def _child_id(self, instance_id: str | None) -> str:
        """The child's instance id (default ``<instance id>:sub-<n>``, the same on every replay), recorded in the
        run's custom status (``children``) so that the HTTP API shows and decides the child's approvals."""
        self._children += 1
        child = instance_id or f"{self.instance_id}:sub-{self._children}"
        progress = self._session.progress
        if child not in progress.children:
            progress.children = (*progress.children, child)
        return child

    def continue_as_new(self, input_: Any) -> None:
        """Restart the orchestration with ``input_`` when the function returns (its return value is then ignored).
        The new execution starts with an empty history, so a long loop stays cheap to replay. In a version-3 run a
        dict ``input_`` also carries the run's progress, usage and decided approvals (member ``"$durableAgents"``,
        docs/internals.md "Bounded history"), so the run's status keeps showing the whole run."""
        self.continued_as_new = (True, input_)

    def create_activity_tool(
        self,
        activity_func: Any,
        *,
        description: str | None = None,
        retry_options: df.RetryOptions | ToolRetry | None = _MICROSOFT_TOOL_RETRY,
        needs_approval: Any = False,
    ) -> FunctionTool:
        """An Agents SDK tool that runs the ``@app.activity_trigger`` function ``activity_func`` as its activity,
        as ``DurableAIAgentContext.create_activity_tool`` of azure-functions-durable 1.x does (same schema from the
        function's signature and docstring, same input: the argument named like the trigger's ``input_name`` when
        the model sent it, else the arguments' JSON text; default retry 5 attempts, 2 s apart).

        Unlike there, the tool calls of one model turn run in parallel (one fan-out), a call that still fails after
        its retries becomes a tool error the model reads (``"Tool '<name>' failed: ..."``), and ``needs_approval``
        (``True`` or the SDK's callable policy) makes calls wait for a person's decision. Raises ``ValueError`` when
        ``activity_func`` is not an activity function.
        """
        activity_name, input_name, user_function = compat.activity_function_info(activity_func)
        retry = None if retry_options is None else _retry(retry_options)
        session = self._session

        async def run_activity(ctx: RunContextWrapper[Any], arguments: str) -> Any:
            value: Any = arguments
            if input_name:
                try:
                    parsed = json.loads(arguments)
                except (TypeError, ValueError):
                    parsed = None
                if isinstance(parsed, dict) and input_name in parsed:
                    value = parsed[input_name]
            outcome: CallOutcome = await session.call(ActivityCall(name=activity_name, input=value, retry=retry))
            if not outcome.ok:
                return f"Tool '{activity_name}' failed: {outcome.error}"
            return outcome.value

        schema = function_schema(func=user_function, docstring_style=None, description_override=description,
                                 use_docstring_info=True, strict_json_schema=True)
        return FunctionTool(name=schema.name, description=schema.description or "",
                            params_json_schema=schema.params_json_schema, on_invoke_tool=run_activity,
                            strict_json_schema=True, needs_approval=needs_approval)

    def request_approval(
        self,
        summary: str,
        payload: Any = None,
        *,
        step: str = "approval",
        timeout: dt.timedelta | str | None = None,
        approval_id: str | None = None,
    ) -> Any:
        """Ask a person to approve a plan, a draft or a step; the result is the decision
        (``durable_agents.ApprovalDecision``: ``decision`` ``approved``, ``rejected`` or ``expired``, ``comment``...).

        The request is a pending approval of the run (``kind`` ``workflow``, ``tool`` = ``step``, ``summary``,
        ``arguments`` = ``payload``), decided like a tool approval through ``POST /api/runs/{id}/approvals/{id}``
        (the external event ``approval:<id>``). ``timeout`` (a ``timedelta`` or an ISO 8601 duration) defaults to
        the run's ``APPROVAL_TIMEOUT``; ``approval_id`` defaults to ``<step>-<n>`` (n counts this run's requests, the
        same on every replay). Await it on its own (not inside ``task_any``). Raises ``ValueError`` for an empty
        summary or a bad id or timeout.
        """
        if not isinstance(summary, str) or not summary.strip():
            raise ValueError("request_approval needs a summary for the reviewer")
        self._approvals += 1
        approval_id = approval_id or f"{step}-{self._approvals}"
        if not _APPROVAL_ID.fullmatch(approval_id):
            raise ValueError(f"approval id {approval_id!r} must match {_APPROVAL_ID.pattern}")
        if isinstance(timeout, str):
            timeout = parse_iso_duration(timeout)
        timeout_ms = None if timeout is None else int(timeout.total_seconds() * 1000)
        if timeout_ms is not None and timeout_ms <= 0:
            raise ValueError("request_approval's timeout must be positive")
        item = ApprovalItem(id=approval_id, tool=step, arguments=json_safe(payload), kind="workflow",
                            summary=replace_surrogates(summary.strip()))
        task = DurableTask(self._session, ApprovalsCall((item,), timeout_ms), mode="approval")
        return self._run_blocking(task) if self._blocking else task

    def create_timer(self, fire_at: dt.datetime) -> Any:
        """A durable timer that fires at ``fire_at`` (aware or UTC); ``task.cancel()`` cancels it."""
        return self._task(TimerCall(fire_at=fire_at.isoformat()))

    def wait_for_external_event(self, name: str) -> Any:
        """Wait for the external event ``name``; the result is the event's data as the Durable SDK gives it (from
        the Python client's ``raise_event``, JSON text: that client encodes twice, azure-functions-durable-python
        #295)."""
        return self._task(EventCall(name=name))

    def task_all(self, tasks: Sequence[DurableTask]) -> DurableTask:
        """A task that finishes when every task finished: the list of their results, or the exception of the first
        failed one in list order (after all finished, as the extension's ``WhenAll``)."""
        return self._composite(tasks, "all")

    def task_any(self, tasks: Sequence[DurableTask]) -> DurableTask:
        """A task that finishes when the first task finished; its result is that task (first in list order when
        several finished in the same episode)."""
        return self._composite(tasks, "any")

    def _composite(self, tasks: Sequence[DurableTask], mode: str) -> DurableTask:
        if self._blocking:
            raise UserError(f"context.task_{mode} needs a generator (yield) or async def agent orchestrator; in a "
                            "plain function each durable call returns its result")
        if not tasks or not all(isinstance(task, DurableTask) for task in tasks):
            raise ValueError(f"task_{mode} takes a non-empty list of tasks from this context")
        return DurableTask(self._session, children=tasks, mode=mode)

    def _run_blocking(self, task: DurableTask) -> Any:
        loop = self._session.loop
        if loop is None or loop.is_running():
            raise UserError("a blocking durable call inside the event loop: in async code, await the task instead")
        loop.run_until_complete(task._settle())
        return task._value()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(
            f"context.{name} is not available inside an agent orchestrator: the function runs in a worker thread "
            "with a replay-safe view of the orchestration (get_input, instance_id, current_utc_datetime, "
            "is_replaying, new_uuid, set_custom_status, continue_as_new, call_activity[_with_retry], "
            "call_sub_orchestrator[_with_retry], create_timer, wait_for_external_event, task_all, task_any, "
            "request_approval, create_activity_tool); run "
            "agents with Runner.run_sync / Runner.run"
        )


def _retry(options: df.RetryOptions | ToolRetry) -> ToolRetry:
    """Durable retry options as named fields (``df.RetryOptions`` carries just these two)."""
    if isinstance(options, ToolRetry):
        return options
    return ToolRetry(max_attempts=options.max_number_of_attempts,
                     first_retry_interval_ms=options.first_retry_interval_in_milliseconds)


def _function_name(name: Any) -> str:
    """A Durable function name: a string, or the function object itself (registered under its ``__name__``)."""
    if isinstance(name, str):
        return name
    value = getattr(name, "__name__", None)
    if isinstance(value, str):
        return value
    raise ValueError(f"not a Durable function name: {name!r}")


def run_user_function(fn: Callable[..., Any], view: OrchestrationContextView, loop: asyncio.AbstractEventLoop) -> Any:
    """Run the user's orchestrator function with ``view`` in the worker thread and return its output.

    A generator is driven like the Durable SDK drives an orchestrator: each yielded :class:`DurableTask` is settled on
    the worker's loop and its result sent back (its exception thrown in); a coroutine is run to completion on the
    loop; a plain function runs as it is, its durable calls blocking. Raises ``UserError`` when a generator yields
    something that is not a task of this context.
    """
    view._blocking = not (inspect.isgeneratorfunction(fn) or inspect.iscoroutinefunction(fn))
    output = fn(view)
    if inspect.iscoroutine(output):
        view._blocking = False
        return loop.run_until_complete(output)
    if not inspect.isgenerator(output):
        return output
    view._blocking = False
    send: Any = None
    throw: BaseException | None = None
    while True:
        try:
            yielded = output.throw(throw) if throw is not None else output.send(send)
        except StopIteration as stop:
            return stop.value
        if not isinstance(yielded, DurableTask):
            output.close()
            raise UserError(f"an agent orchestrator may only yield tasks of its context, not {type(yielded).__name__}")
        loop.run_until_complete(yielded._settle())
        send, throw = (None, yielded.exception) if yielded.exception is not None else (yielded.result, None)
