"""Activity tools: plain functions that run as Durable activities and are OpenAI Agents SDK tools (internal;
``activity_tool``, ``ActivityTool``, ``ToolCall`` are re-exported by ``durable_agents``).

``@activity_tool(bp)`` does two things with a typed (sync or async) function:

1. it registers on the ``df.Blueprint`` an activity function whose Durable name is the function name (or
   ``name=``). Its input is ``{"args": {<tool params>}, "call": {"runId", "callId", "tool", "agent"}}``
   (docs/internals.md "Activities"); it validates ``args`` against the function's signature, calls the function
   (injecting a :class:`ToolCall` into the parameter annotated ``ToolCall``, if any) and returns its JSON result;
2. it returns an :class:`ActivityTool`, which *is* an ``agents.FunctionTool``: its JSON schema comes from the
   signature and docstring through the SDK's own ``function_tool`` / ``function_schema`` machinery (the
   ``ToolCall`` parameter excluded), so it goes straight into ``Agent(tools=[...])``.

Inside a durable orchestration (``durable_agents.agent_orchestrator``) invoking the tool schedules the activity
with Durable retry options (:class:`ToolRetry`); a call that still fails after its retries becomes the tool result
``"Tool '<name>' failed: <message>"`` that the model sees. Outside an orchestration (a plain ``Runner.run`` in a
script or test) the function is called in-process, with ``ToolCall(run_id="local", ...)`` whose ``customer`` comes
from the run context (``Runner.run(agent, text, context={"customer": "<email>"})``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import azure.durable_functions as df
import pydantic_core
from agents import FunctionTool, RunContextWrapper, function_tool
from agents.exceptions import UserError
from agents.function_schema import FuncSchema, function_schema
from agents.tool_context import ToolContext

from ._contracts import ToolActivityInput, ToolCallInfo, ToolRetry
from ._jsonsafe import dumps, has_non_finite, json_safe, loads_strict, replace_surrogates
from ._run_settings import current_session
from ._telemetry import tool_span
from ._timeline import register_check_activity

__all__ = [
    "ActivityTool", "ApprovalCheck", "ToolCall", "ToolRetry", "activity_tool", "approval_check", "as_activity_tool",
]

NeedsApproval = bool | Callable[[RunContextWrapper[Any], dict[str, Any], str], Awaitable[bool]]


@dataclass(frozen=True)
class ToolCall:
    """Identity of one tool call, injected into a tool function parameter annotated ``ToolCall``.

    ``run_id`` is the orchestration instance id (the run id of the HTTP API; ``"local"`` outside an
    orchestration), ``call_id`` the model's tool call id (unique within a run), ``tool`` the tool name and
    ``agent`` the name of the agent that called it. ``f"{run_id}:{call_id}"`` is a stable idempotency key: it
    is the same on every retry of the activity (docs/internals.md "ToolCall injection"). ``customer`` is whom the
    run acts for (the start request's ``customer``, or the caller's identity; ``None``: the run acts for nobody);
    a tool that reads or changes a customer's data must check it. ``approved`` is true only when a person approved
    this very call in this run (a gated tool's second line of defence, e.g. a ledger limit for unapproved calls).
    """

    run_id: str
    call_id: str
    tool: str
    agent: str
    customer: str | None = None
    approved: bool = False

    def to_json(self) -> ToolCallInfo:
        """Return the ``call`` object of the activity input:
        ``{"runId", "callId", "tool", "agent", "customer", "approved"}``."""
        return {"runId": self.run_id, "callId": self.call_id, "tool": self.tool, "agent": self.agent,
                "customer": self.customer, "approved": self.approved}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ToolCall:
        """Build a ``ToolCall`` from the activity input's ``call`` object; missing keys become ``""`` (``customer``
        ``None``, ``approved`` false: inputs written before these members existed)."""
        customer = data.get("customer")
        return cls(
            run_id=str(data.get("runId") or ""),
            call_id=str(data.get("callId") or ""),
            tool=str(data.get("tool") or ""),
            agent=str(data.get("agent") or ""),
            customer=customer if isinstance(customer, str) and customer else None,
            approved=data.get("approved") is True,
        )


@dataclass
class ActivityTool(FunctionTool):
    """An ``agents.FunctionTool`` whose body runs as a Durable activity. Create it with :func:`activity_tool`.

    Extra attributes: ``function`` (the original callable, for direct calls and tests), ``activity_name``
    (its Durable activity name), ``retry`` (:class:`ToolRetry`), ``tool_call_param`` (name of the injected
    ``ToolCall`` parameter or ``None``) and ``schema`` (the SDK ``FuncSchema`` of the tool's parameters).
    """

    function: Callable[..., Any] | None = field(default=None, kw_only=True, repr=False)
    activity_name: str = field(default="", kw_only=True)
    retry: ToolRetry = field(default_factory=ToolRetry, kw_only=True)
    tool_call_param: str | None = field(default=None, kw_only=True, repr=False)
    schema: FuncSchema | None = field(default=None, kw_only=True, repr=False)

    def activity_input(self, args: dict[str, Any], call: ToolCall) -> ToolActivityInput:
        """Return the activity input ``{"args": args, "call": call.to_json()}`` (docs/internals.md)."""
        return {"args": args, "call": call.to_json()}

    def run_activity(self, payload: dict[str, Any]) -> Any:
        """Execute the tool body for one activity input (sync entry; awaits async functions in a new loop).

        ``payload`` is ``{"args": {...}, "call": {...}}`` (a JSON string holding it is accepted too). Raises
        ``pydantic.ValidationError`` for arguments that do not match the signature and whatever the function
        raises (Durable then retries the activity, then the orchestrator turns it into a tool error).
        """
        result = _call_tool_function(self, payload)
        if inspect.isawaitable(result):
            result = asyncio.run(_await(result))
        return _to_json(result)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


def _is_tool_call_annotation(annotation: Any) -> bool:
    if annotation is ToolCall:
        return True
    origin = typing.get_origin(annotation)
    if origin is typing.Union or origin is types.UnionType:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return len(args) == 1 and args[0] is ToolCall
    return False


def _to_json(value: Any) -> Any:
    """Convert a tool result to plain JSON data (pydantic models, dataclasses, decimals, dates ...)."""
    return pydantic_core.to_jsonable_python(value)


def _activity_result(value: Any, payload: Any) -> Any:
    """A tool activity's result as it goes into the history: its JSON, or the blob marker of it when it is larger
    than ``PAYLOAD_INLINE_MAX_BYTES`` (:func:`durable_agents._payloads.offload_result`; the model still reads it)."""
    from ._payloads import offload_result

    if isinstance(payload, str):
        payload = json.loads(payload)
    call = payload.get("call") if isinstance(payload, dict) else None
    run_id = call.get("runId") if isinstance(call, dict) else None
    return offload_result(_to_json(value), run_id if isinstance(run_id, str) else None)


def _call_tool_function(tool: ActivityTool, payload: Any) -> Any:
    """Validate ``payload["args"]`` and call ``tool.function``; returns its (possibly awaitable) result."""
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict):
        raise TypeError(f"activity tool '{tool.activity_name}' expects a JSON object input, got {type(payload)}")
    raw_args = payload.get("args") or {}
    call = ToolCall.from_json(payload.get("call") or {})
    assert tool.schema is not None and tool.function is not None
    model = tool.schema.params_pydantic_model(**raw_args)
    values = object.__getattribute__(model, "__dict__")
    positional: list[Any] = []
    keywords: dict[str, Any] = {}
    for name, param in inspect.signature(tool.function).parameters.items():
        value: Any = call if name == tool.tool_call_param else values.get(name)
        if param.kind == param.VAR_POSITIONAL:
            positional.extend(value or [])
        elif param.kind == param.VAR_KEYWORD:
            keywords.update(value or {})
        elif param.kind == param.POSITIONAL_ONLY:
            positional.append(value)
        else:
            keywords[name] = value
    return tool.function(*positional, **keywords)


def _format_result(value: Any) -> str:
    """The model-visible text of a tool result: strings as they are, everything else as JSON; lone surrogates
    become U+FFFD and NaN / Infinity ``null`` (:mod:`durable_agents._jsonsafe`: no model request carries them)."""
    if isinstance(value, str):
        return replace_surrogates(value)
    return dumps(value)


def activity_tool(
    bp: df.Blueprint,
    *,
    name: str | None = None,
    description: str | None = None,
    needs_approval: NeedsApproval = False,
    retry: ToolRetry | None = None,
) -> Callable[[Callable[..., Any]], ActivityTool]:
    """Decorator: turn a typed function into an activity registered on ``bp`` and an :class:`ActivityTool`.

    Args:
        bp: the ``azure.durable_functions.Blueprint`` (or ``DFApp``) the activity is registered on.
        name: tool name and Durable activity name (default: the function's ``__name__``). It must be unique in
            the function app.
        description: tool description for the model (default: from the docstring, SDK rules).
        needs_approval: passed to the SDK: ``True`` / ``False`` or an async callable
            ``(run_context, arguments: dict, call_id) -> bool``. Inside an orchestration an approval pauses the run
            durably until a person decides (docs/internals.md "Approvals").
        retry: Durable retry options of the activity (default ``ToolRetry()``: 3 attempts, 2 s apart).

    The function may be ``def`` or ``async def``; it may not take a ``RunContextWrapper`` / ``ToolContext`` (the
    activity runs in another process, with no run context). A parameter annotated :class:`ToolCall` is injected and
    left out of the schema. The return value must be JSON-serialisable (pydantic models and dataclasses are
    converted). Raises ``agents.exceptions.UserError`` for unsupported signatures.
    """
    retry = retry or ToolRetry()

    def decorator(func: Callable[..., Any]) -> ActivityTool:
        if not inspect.isfunction(func):
            raise UserError("activity_tool decorates plain functions (def / async def)")
        tool_name = name or func.__name__
        hints = typing.get_type_hints(func, include_extras=True)
        signature = inspect.signature(func)
        tool_call_param: str | None = None
        kept: list[inspect.Parameter] = []
        annotations: dict[str, Any] = {}
        for pname, param in signature.parameters.items():
            ann = hints.get(pname, param.annotation)
            base = typing.get_origin(ann) or ann
            if base is RunContextWrapper or base is ToolContext:
                raise UserError(
                    f"activity tool '{tool_name}': RunContextWrapper/ToolContext parameters are not available "
                    "in an activity; declare a ToolCall parameter instead"
                )
            if _is_tool_call_annotation(typing.get_args(ann)[0] if _is_annotated(ann) else ann):
                if tool_call_param is not None:
                    raise UserError(f"activity tool '{tool_name}' declares more than one ToolCall parameter")
                tool_call_param = pname
                continue
            kept.append(param.replace(annotation=ann))
            if ann is not inspect.Parameter.empty:
                annotations[pname] = ann

        ctx_param = inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_ONLY, annotation=ToolContext)
        proxy_signature = inspect.Signature([ctx_param, *kept])

        async def proxy(ctx: ToolContext[Any], *args: Any, **kwargs: Any) -> str:
            session = current_session()
            if session is None:
                # Plain SDK run (no orchestration): run the body in-process.
                call = ToolCall(
                    run_id="local",
                    call_id=ctx.tool_call_id,
                    tool=tool_name,
                    agent=getattr(ctx.agent, "name", "") or "",
                    customer=context_customer(ctx),
                )
                payload = tool.activity_input(_raw_arguments(ctx), call)
                try:
                    if inspect.iscoroutinefunction(func):
                        result = await _call_tool_function(tool, payload)
                    else:
                        result = await asyncio.to_thread(_call_tool_function, tool, payload)
                    return _format_result(_to_json(result))
                except Exception as exc:  # same model-visible error as in an orchestration
                    return f"Tool '{tool_name}' failed: {type(exc).__name__}: {exc}"
            try:
                arguments = _raw_arguments(ctx)
            except ValueError as exc:  # NaN / Infinity: not JSON, never sent to an activity or shown to a caller
                return f"Tool '{tool_name}' failed: the arguments are not valid JSON ({exc}); send JSON numbers."
            ok, value = await session.call_activity_tool(tool, arguments, ctx)
            if not ok:
                return f"Tool '{tool_name}' failed: {value}"
            return _format_result(value)

        proxy.__name__ = tool_name
        proxy.__qualname__ = tool_name
        proxy.__doc__ = func.__doc__
        proxy.__module__ = func.__module__
        proxy.__signature__ = proxy_signature  # type: ignore[attr-defined]
        proxy.__annotations__ = {"ctx": ToolContext, **annotations}

        gate: NeedsApproval = needs_approval
        if callable(needs_approval) and getattr(needs_approval, "_durable_check", None):
            check: Any = needs_approval
            gate = functools.partial(check, tool_name=tool_name)  # an approval_check: tell it the tool
        base_tool = function_tool(
            proxy,
            name_override=tool_name,
            description_override=description,
            needs_approval=gate,
        )
        schema = function_schema(
            proxy,
            name_override=tool_name,
            description_override=description,
        )
        init_values = {f.name: getattr(base_tool, f.name) for f in fields(FunctionTool) if f.init}
        tool = ActivityTool(
            **init_values,
            function=func,
            activity_name=tool_name,
            retry=retry,
            tool_call_param=tool_call_param,
            schema=schema,
        )
        _register_activity(bp, tool, func)
        return tool

    return decorator


def context_customer(run_context: Any) -> str | None:
    """Outside a durable run: the customer of a plain SDK run, from ``Runner.run(..., context=...)`` (a mapping
    with ``"customer"`` or an object with a ``customer`` attribute), else ``None``."""
    context = getattr(run_context, "context", None)
    value = context.get("customer") if isinstance(context, Mapping) else getattr(context, "customer", None)
    return value if isinstance(value, str) and value.strip() else None


def _is_annotated(ann: Any) -> bool:
    return typing.get_origin(ann) is typing.Annotated


def _raw_arguments(ctx: ToolContext[Any]) -> dict[str, Any]:
    """The model's arguments for this call as a dict (already validated by the SDK against the schema), lone
    surrogates replaced by U+FFFD. Raises ``ValueError`` when the text holds ``NaN`` / ``Infinity`` (the SDK's
    parser accepts them; JSON does not)."""
    text = ctx.tool_arguments or "{}"
    value = loads_strict(text) if text.strip() else {}
    return json_safe(value) if isinstance(value, dict) else {}


def _register_activity(bp: df.Blueprint, tool: ActivityTool, func: Callable[..., Any]) -> None:
    """Register the activity function for ``tool`` on ``bp`` (Durable name = ``tool.activity_name``); each execution
    is one ``execute_tool <tool>`` span (:func:`durable_agents._telemetry.tool_span`)."""
    activity: Callable[[Any], Any]
    if inspect.iscoroutinefunction(func):

        async def run_async(payload: Any) -> Any:
            with tool_span(payload, tool.name):
                result = _call_tool_function(tool, payload)
                if inspect.isawaitable(result):
                    result = await result
                return _activity_result(result, payload)

        activity = run_async
    else:

        def run_sync(payload: Any) -> Any:
            with tool_span(payload, tool.name):
                return _activity_result(_call_tool_function(tool, payload), payload)

        activity = run_sync

    activity.__name__ = tool.activity_name
    activity.__qualname__ = tool.activity_name
    activity.__doc__ = f"Durable activity for the tool '{tool.name}' (durable_agents.activity_tool)."
    bp.activity_trigger(input_name="payload", activity=tool.activity_name)(activity)


# ---------------------------------------------------------------------------------------------------------------
# Activity-backed approval checks


@dataclass(frozen=True)
class ApprovalCheck:
    """What an :func:`approval_check` function decides on: one call of a gated tool.

    ``arguments``: the model's arguments (JSON object). ``call``: the call's :class:`ToolCall` (``customer``
    included; ``approved`` is false). ``earlier``: ``(call_id, arguments)`` of the same check's calls checked
    before this one in this run, oldest first (this call excluded; the calls of one model turn are checked in
    the model's order), so a rule can count what the run already asked for. ``settings``: the run's settings
    snapshot (inside a durable run; the environment outside one).
    """

    arguments: dict[str, Any]
    call: ToolCall
    earlier: tuple[tuple[str, dict[str, Any]], ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)

    def setting(self, name: str, default: str | None = None) -> str | None:
        """The run's setting ``name`` (blank counts as unset), else ``default``."""
        value = self.settings.get(name)
        text = str(value).strip() if value is not None else ""
        return text or default

    def to_json(self) -> dict[str, Any]:
        """The activity input: ``{"arguments", "call": ToolCallInfo, "earlier": [{"callId", "arguments"}],
        "settings"}``."""
        return {"arguments": self.arguments, "call": self.call.to_json(),
                "earlier": [{"callId": cid, "arguments": args} for cid, args in self.earlier],
                "settings": dict(self.settings)}

    @classmethod
    def from_json(cls, data: Any) -> ApprovalCheck:
        """Inverse of :meth:`to_json` (a JSON string holding it is accepted). Raises ``TypeError`` when ``data``
        is not an object."""
        if isinstance(data, str):
            data = json.loads(data)
        if not isinstance(data, dict):
            raise TypeError(f"an approval check input must be a JSON object, not {type(data).__name__}")
        earlier = tuple((str(e.get("callId") or ""), dict(e.get("arguments") or {}))
                        for e in data.get("earlier") or () if isinstance(e, dict))
        return cls(arguments=dict(data.get("arguments") or {}), call=ToolCall.from_json(data.get("call") or {}),
                   earlier=earlier, settings={str(k): str(v) for k, v in (data.get("settings") or {}).items()})


class _EnvironmentSettings(Mapping[str, str]):
    """The environment as a read-only mapping of settings (:func:`durable_agents.get_setting`), for checks that run
    outside a durable run."""

    def __getitem__(self, name: str) -> str:
        from ._config import get_setting

        value = get_setting(name)
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> typing.Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _verdict(answer: Any) -> bool:
    """An approval check's answer as "needs approval": a boolean as it is, anything else (``None`` from a forgotten
    ``return``, ``1``, ``"yes"``) ``True`` (fail closed)."""
    return answer if isinstance(answer, bool) else True


def approval_check(
    bp: df.Blueprint,
    *,
    name: str | None = None,
    retry: ToolRetry | None = None,
    legacy: NeedsApproval | None = None,
) -> Callable[[Callable[[ApprovalCheck], bool]], Callable[..., Awaitable[bool]]]:
    """Decorator: run a tool's ``needs_approval`` rule as a Durable activity, so the rule may read state (a ledger,
    a database) and replay stays deterministic (its answer is in the history).

    The decorated function takes one :class:`ApprovalCheck` and returns ``True`` when the call needs a person's
    approval. It is registered on ``bp`` as the activity ``name`` (default: the function's name) and the decorator
    returns the ``needs_approval`` callable to pass to :func:`activity_tool` (SDK signature
    ``(run_context, arguments, call_id) -> bool``). Inside a durable run that callable records the call in the
    run's list for this check (``ApprovalCheck.earlier`` of later calls) and runs the activity with ``retry``
    (default ``ToolRetry()``); a check that still fails after its retries, or answers something other than a
    boolean, needs approval (fail closed). Runs started before version 2 of the run input
    (:data:`durable_agents._contracts.RUN_VERSION`) call ``legacy`` instead when given (their histories hold no
    check activity), else the activity. Outside a durable run the function is called in-process with
    ``earlier=()`` and the environment's settings. Raises ``TypeError`` for a function that is not a plain
    function.
    """
    retry = retry or ToolRetry()

    def decorator(fn: Callable[[ApprovalCheck], bool]) -> Callable[..., Awaitable[bool]]:
        if not inspect.isfunction(fn):
            raise TypeError("approval_check decorates plain functions (def)")
        activity_name = name or fn.__name__

        async def needs_approval(run_context: RunContextWrapper[Any], arguments: dict[str, Any], call_id: str,
                                 *, tool_name: str = "") -> bool:
            session = current_session()
            args = dict(arguments or {})
            if session is None:
                call = ToolCall(run_id="local", call_id=call_id, tool=tool_name, agent="",
                                customer=context_customer(run_context))
                return _verdict(fn(ApprovalCheck(args, call, (), _EnvironmentSettings())))
            if session.version < 2 and legacy is not None:
                if callable(legacy):
                    return bool(await legacy(run_context, arguments, call_id))
                return bool(legacy)
            if has_non_finite(args):
                return False  # the tool refuses NaN / Infinity before any activity: nothing to approve
            return await session.run_approval_check(activity_name, retry, args, call_id, tool_name)

        needs_approval._durable_check = activity_name  # type: ignore[attr-defined]  # activity_tool binds the tool
        needs_approval.__name__ = f"{activity_name}_needs_approval"
        needs_approval.__doc__ = f"needs_approval of the activity-backed check {activity_name!r}."

        def run_check(payload: Any) -> bool:
            return _verdict(fn(ApprovalCheck.from_json(payload)))

        run_check.__name__ = activity_name
        run_check.__qualname__ = activity_name
        run_check.__doc__ = f"Durable activity of the approval check '{activity_name}' (durable_agents.approval_check)."
        bp.activity_trigger(input_name="payload", activity=activity_name)(run_check)
        register_check_activity(activity_name)
        return needs_approval

    return decorator


# ---------------------------------------------------------------------------------------------------------------
# Any function tool as an activity


def as_activity_tool(bp: df.Blueprint, tool: FunctionTool, *, name: str | None = None,
                     retry: ToolRetry | None = None) -> ActivityTool:
    """Turn an existing ``agents.FunctionTool`` (``@function_tool``, or one built by hand) into an activity tool,
    without rewriting it: ``refund = durable_agents.as_activity_tool(bp, refund)``.

    A plain function tool runs inside the orchestrator, on every replay of the agent loop: fine for deterministic,
    cheap work only. The returned :class:`ActivityTool` has the same name, description, schema, ``strict`` and
    ``needs_approval``; inside a durable run a call schedules the activity ``name`` (default ``tool.name``) with
    ``retry`` (default ``ToolRetry()``), whose body calls the original ``on_invoke_tool`` in the activity worker with
    a ``ToolContext`` holding the call id and arguments (``context`` is ``None``: an activity has no run context,
    so a tool that reads ``ctx.context`` must not be converted). Outside a durable run it calls the original in
    process. The result is what the tool returned (its text, as the model would see it); a tool whose own error
    handling turns exceptions into text keeps doing so. Raises ``TypeError`` for something that is not a
    ``FunctionTool``.
    """
    if not isinstance(tool, FunctionTool):
        raise TypeError(f"as_activity_tool converts agents.FunctionTool objects, not {type(tool).__name__}")
    activity_name = name or tool.name
    original = tool.on_invoke_tool

    async def on_invoke(ctx: ToolContext[Any], arguments: str) -> Any:
        session = current_session()
        if session is None:
            return await original(ctx, arguments)
        try:
            args = loads_strict(arguments) if arguments and arguments.strip() else {}
        except ValueError as exc:
            return f"Tool '{tool.name}' failed: the arguments are not valid JSON ({exc}); send JSON numbers."
        ok, value = await session.call_activity_tool(converted, json_safe(args) if isinstance(args, dict) else {}, ctx)
        return value if ok else f"Tool '{tool.name}' failed: {value}"

    init_values = {f.name: getattr(tool, f.name) for f in fields(FunctionTool) if f.init}
    init_values["on_invoke_tool"] = on_invoke
    converted = ActivityTool(**init_values, activity_name=activity_name, retry=retry or ToolRetry())

    async def run(payload: Any) -> Any:
        if isinstance(payload, str):
            payload = json.loads(payload)
        call = ToolCall.from_json(payload.get("call") or {})
        text = json.dumps(payload.get("args") or {}, ensure_ascii=False)
        ctx = ToolContext(context=None, tool_name=tool.name, tool_call_id=call.call_id, tool_arguments=text)
        return _activity_result(await original(ctx, text), payload)

    run.__name__ = activity_name
    run.__qualname__ = activity_name
    run.__doc__ = f"Durable activity for the function tool '{tool.name}' (durable_agents.as_activity_tool)."
    bp.activity_trigger(input_name="payload", activity=activity_name)(run)
    return converted
