"""The seam into the OpenAI Agents SDK: model, model provider, runner (internal, not part of the public API).

:func:`durable_agents.install` makes :class:`DurableAgentRunner` the SDK's default runner, so ``Runner.run`` and
``Runner.run_sync`` delegate to it. Outside an agent orchestrator (no session bound to the thread) it is the SDK's
runner unchanged. Inside, it forces a ``RunConfig`` whose model provider returns :class:`DurableModel` (every model
call becomes the ``invoke_model`` activity), disables tracing, and resolves tool approvals (SDK interruptions)
durably through the session (:mod:`.bridge`). A ``RunConfig.model_provider`` or an ``Agent(model=<Model>)`` is
honoured only when registered (:mod:`durable_agents._providers`: the activity builds it by name); anything else
that would have to run in the orchestrator fails at once with a ``UserError`` saying what to do.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import json
from typing import Any

from agents import Agent, RunConfig, RunResult, RunResultStreaming
from agents.exceptions import MaxTurnsExceeded, UserError
from agents.items import ModelResponse, ToolApprovalItem
from agents.model_settings import ModelSettings
from agents.models.default_models import get_default_model_settings
from agents.models.interface import Model, ModelProvider
from agents.models.multi_provider import MultiProvider
from agents.run import DEFAULT_MAX_TURNS, AgentRunner
from openai.types.responses import Response, ResponseCompletedEvent, ResponseFunctionToolCall, ResponseUsage

from .._blobs import is_payload_ref
from .._contracts import (
    DEFAULT_TURNS_PER_GENERATION,
    INVOKE_MODEL_ACTIVITY,
    TURNS_PER_GENERATION_SETTING,
    ApprovalDecision,
    InvokeModelInput,
    format_time,
)
from .._errors import ModelCallError, NonDeterminismError
from .._jsonsafe import dumps, has_lone_surrogate, json_safe, loads_strict, replace_surrogates
from .._model_io import decode_model_response, encode_model_request, to_json_value
from .._payloads import compact_items
from .._providers import (
    ProviderInvokeModelInput,
    missing_prefix_package,
    registered_model_name,
    registered_provider_name,
    unregistered_model_message,
    unregistered_provider_message,
)
from .._run_settings import current_session, run_setting
from .._sessions import durable_run_kwargs
from . import compat
from .bridge import RUN_DEPTH as _RUN_DEPTH
from .bridge import Session
from .episode import DEFAULT_APPROVAL_TIMEOUT
from .steps import ActivityCall, ApprovalItem, ApprovalsCall, CallOutcome, ContinueAsNew, TimerCall

__all__ = [
    "DEFAULT_MODEL_MAX_ATTEMPTS",
    "MODEL_RETRY_BASE_SECONDS",
    "MODEL_RETRY_CAP_SECONDS",
    "DurableAgentRunner",
    "DurableModel",
    "DurableModelProvider",
    "compact_history",
]

MODEL_RETRY_BASE_SECONDS = 2.0
"""First backoff of a retryable model error (seconds); doubles per attempt."""
MODEL_RETRY_CAP_SECONDS = 300.0
"""Longest backoff between model attempts (seconds), unless the API's ``retry-after`` asks for more."""
DEFAULT_MODEL_MAX_ATTEMPTS = 6
"""``MODEL_MAX_ATTEMPTS`` when the run's settings have none."""


def _session() -> Session | None:
    session = current_session()
    return session if isinstance(session, Session) else None


class DurableModel(Model):
    """An ``agents.Model`` whose ``get_response`` runs as the ``invoke_model`` activity of the current run.

    The request is encoded with ``model_io.encode_model_request``; the activity answers
    ``{"ok": true, "response", "demo"}`` or ``{"ok": false, "error": {..., "retryable", "retryAfter"}}``.
    Retryable errors wait on a durable timer of ``min(300 s, max(retryAfter, 2 s * 2**attempt))`` and call again,
    up to ``MODEL_MAX_ATTEMPTS`` calls (run setting, default 6); then, or for a non-retryable error,
    :class:`ModelCallError` is raised and the run fails. Streaming is not supported.

    ``provider`` (a :func:`durable_agents.register_model_provider` name) or ``registered_model`` (a
    :func:`durable_agents.register_model` name) adds ``"provider"`` / ``"registeredModel"`` to the activity input,
    which then builds the model from the registered factory; without them the input is exactly ``{"model",
    "request"}``, as in runs recorded before these existed.
    """

    def __init__(self, model_name: str | None, run_model_settings: ModelSettings | None = None, *,
                 provider: str | None = None, registered_model: str | None = None) -> None:
        self.model_name = model_name
        self.run_model_settings = run_model_settings
        self.provider = provider
        self.registered_model = registered_model

    async def get_response(
        self,
        system_instructions,
        input,
        model_settings,
        tools,
        output_schema,
        handoffs,
        tracing,
        *,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    ) -> ModelResponse:
        session = _session()
        if session is None:
            raise UserError("DurableModel can only be used inside an agent_orchestrator run")
        if self.model_name is None and self.registered_model is None:
            model_settings = _without_implicit_defaults(_CURRENT_AGENT.get(), model_settings, self.run_model_settings)
        request = encode_model_request(
            model=self.model_name,
            system_instructions=system_instructions,
            input=input,
            model_settings=model_settings,
            tools=tools,
            output_schema=output_schema,
            handoffs=handoffs,
            previous_response_id=previous_response_id,
            conversation_id=conversation_id,
            prompt=prompt,
        )
        _continue_if_due(session)
        max_attempts = max(1, int(run_setting("MODEL_MAX_ATTEMPTS", str(DEFAULT_MODEL_MAX_ATTEMPTS)) or 6))
        logical = request["input"] if session.version >= 3 and isinstance(request["input"], list) else None
        if logical is not None:  # the input already stored by an earlier call goes by reference
            request = {**request, "input": compact_items(logical, session.stored_inputs)}
        attempt = 0
        while True:
            attempt += 1
            activity_input: InvokeModelInput | ProviderInvokeModelInput = {"model": self.model_name,
                                                                            "request": request}
            if self.provider is not None:
                activity_input = {**activity_input, "provider": self.provider}
            elif self.registered_model is not None:
                activity_input = {**activity_input, "registeredModel": self.registered_model}
            if logical is not None:  # version 3: the run (payloads, spans), its agent and trace (spans)
                activity_input = {**activity_input, "run": session.instance_id}
                agent = _CURRENT_AGENT.get()
                if agent is not None:
                    activity_input["agent"] = agent.name
                if session.trace is not None:
                    activity_input["trace"] = session.trace
                span_start = _RUN_SPAN_START.get()
                if span_start is not None and _RUN_DEPTH.get() == 1:
                    activity_input["runStartedAt"] = span_start
            outcome: CallOutcome = await session.call(ActivityCall(name=INVOKE_MODEL_ACTIVITY, input=activity_input))
            if not outcome.ok:
                raise ModelCallError({"type": "activity_failed", "message": outcome.error or ""}, attempt)
            result = outcome.value
            if not isinstance(result, dict) or not isinstance(result.get("ok"), bool):
                # The Durable SDK matched this task to a history event by sequence id alone: the history holds
                # the result of other work here (code changed while the run was in flight).
                raise NonDeterminismError(
                    len(session.log) - 1, result, INVOKE_MODEL_ACTIVITY,
                    detail="the history holds a result that is not an invoke_model result at this step",
                )
            if result.get("ok"):
                if logical is not None and is_payload_ref(result.get("inputRef")):
                    session.stored_inputs = [*session.stored_inputs[-3:], (logical, result["inputRef"])]
                response = _safe_tool_arguments(decode_model_response(json_safe(result["response"])))
                session.progress.turns += 1
                budget = _GENERATION.get()
                if budget is not None and _RUN_DEPTH.get() == 1:
                    budget.turns += 1
                session.progress.demo = bool(session.progress.demo or result.get("demo"))
                usage = response.usage
                session.usage["requests"] += usage.requests or 1
                session.usage["inputTokens"] += usage.input_tokens
                session.usage["outputTokens"] += usage.output_tokens
                session.usage["totalTokens"] += usage.total_tokens
                if session.version >= 3:
                    session.progress.usage = (session.usage["requests"], session.usage["inputTokens"],
                                              session.usage["outputTokens"], session.usage["totalTokens"])
                return response
            error = result.get("error") or {}
            if not error.get("retryable") or attempt >= max_attempts:
                raise ModelCallError(error, attempt)
            backoff = min(MODEL_RETRY_CAP_SECONDS, MODEL_RETRY_BASE_SECONDS * 2 ** (attempt - 1))
            delay = min(MODEL_RETRY_CAP_SECONDS, max(_retry_after(error.get("retryAfter")), backoff))
            await session.call(TimerCall(delay_ms=int(round(delay * 1000))))

    async def stream_response(
        self,
        system_instructions,
        input,
        model_settings,
        tools,
        output_schema,
        handoffs,
        tracing,
        *,
        previous_response_id=None,
        conversation_id=None,
        prompt=None,
    ):
        """``Runner.run_streamed`` inside a durable run: the model call is the same ``invoke_model`` activity as
        :meth:`get_response` (a whole response, never tokens), answered as one ``response.completed`` event, so the
        SDK's streamed loop emits its item-level events (``RunItemStreamEvent``, ``AgentUpdatedStreamEvent``) and
        one ``RawResponsesStreamEvent`` per model turn."""
        response = await self.get_response(
            system_instructions, input, model_settings, tools, output_schema, handoffs, tracing,
            previous_response_id=previous_response_id, conversation_id=conversation_id, prompt=prompt,
        )
        usage = response.usage
        completed = Response.model_construct(
            id=response.response_id or "resp_durable", created_at=0.0, model=self.model_name or "",
            object="response", output=list(response.output), parallel_tool_calls=True, tool_choice="auto",
            tools=[], usage=ResponseUsage.model_construct(
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, total_tokens=usage.total_tokens,
                input_tokens_details=usage.input_tokens_details, output_tokens_details=usage.output_tokens_details),
        )
        yield ResponseCompletedEvent(type="response.completed", sequence_number=0, response=completed)


def _safe_tool_arguments(response: ModelResponse) -> ModelResponse:
    """``response`` with every function call's ``arguments`` text free of lone surrogates: a model can write one as
    a JSON escape (``"\\ud800"``), which the SDK parses and then fails to encode (its call fingerprint), failing
    the run. Such arguments are re-written with U+FFFD (:mod:`durable_agents._jsonsafe`); others are untouched."""
    for item in response.output:
        if not isinstance(item, ResponseFunctionToolCall):
            continue
        arguments = item.arguments
        if "\\u" not in arguments.lower() and not has_lone_surrogate(arguments):
            continue
        try:
            value = json.loads(arguments)
        except ValueError:
            item.arguments = replace_surrogates(arguments)
            continue
        if has_lone_surrogate(arguments) or has_lone_surrogate(json.dumps(value, ensure_ascii=False)):
            item.arguments = json.dumps(json_safe(value, floats=False), ensure_ascii=False)
    return response


DEFAULT_AGENT_MAX_TURNS = 25
"""``AGENT_MAX_TURNS`` when unset: model turns per ``Runner.run`` of a version-2 run (the SDK's own default is 10)."""


def _max_turns_setting() -> int:
    """The run's ``AGENT_MAX_TURNS`` setting (snapshot) as a positive integer, else :data:`DEFAULT_AGENT_MAX_TURNS`."""
    text = run_setting("AGENT_MAX_TURNS") or ""
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) <= 10_000 else DEFAULT_AGENT_MAX_TURNS


def _retry_after(value: Any) -> float:
    """The ``retryAfter`` seconds of a model error as a number >= 0 (anything else, NaN and negatives: 0)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    return float(value) if value == value and value > 0 else 0.0


class DurableModelProvider(ModelProvider):
    """Model provider used inside orchestrations: every model name maps to a :class:`DurableModel`.

    ``run_model_settings`` is the run's ``RunConfig.model_settings`` (the overrides the caller set explicitly);
    the models keep them when they drop the SDK's environment-derived defaults (see
    :func:`_without_implicit_defaults`). ``provider`` is the registered name of the run's
    ``RunConfig.model_provider`` (``None``: the built-in APIs of the settings), passed to every model.
    """

    def __init__(self, run_model_settings: ModelSettings | None = None, provider: str | None = None) -> None:
        self.run_model_settings = run_model_settings
        self.provider = provider

    def get_model(self, model_name: str | None) -> Model:
        return DurableModel(model_name, self.run_model_settings, provider=self.provider)


_CURRENT_AGENT: contextvars.ContextVar[Agent[Any] | None] = contextvars.ContextVar(
    "durable_agents_current_agent", default=None
)
_RUN_SPAN_START: contextvars.ContextVar[str | None] = contextvars.ContextVar("durable_agents_run_span_start",
                                                                          default=None)
"""Start time (ISO 8601) of the top-level run whose final model call emits the run span, inside that run only
(docs/internals.md "Traces"): an agent run orchestration's one run, never a conversation's turn or a
workflow's later run."""
_MODEL_INPUT: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "durable_agents_model_input", default=None
)
"""The input items of the model call being prepared, before the user's ``call_model_input_filter`` (set beside
:data:`_CURRENT_AGENT`): what a continued run resumes from."""


@dataclasses.dataclass
class _Generation:
    """The continue-as-new budget of a top-level run (docs/internals.md "Bounded history"): ``limit`` (K) model
    turns per generation, ``turns`` taken in this generation, ``base`` taken in earlier generations."""

    limit: int
    base: int = 0
    turns: int = 0


_GENERATION: contextvars.ContextVar[_Generation | None] = contextvars.ContextVar(
    "durable_agents_generation", default=None
)


def _turns_per_generation() -> int:
    """The run's ``AGENT_TURNS_PER_GENERATION`` (K) as a whole number >= 0 (0: never continue), else the default."""
    text = run_setting(TURNS_PER_GENERATION_SETTING) or ""
    if text.isascii() and text.isdigit() and int(text) <= 100_000:
        return int(text)
    return DEFAULT_TURNS_PER_GENERATION


def _continue_if_due(session: Session) -> None:
    """Raise :class:`.steps.ContinueAsNew` before the next model call of the top-level run when its generation has
    had K model turns: the next generation resumes from the items this call would have sent."""
    budget = _GENERATION.get()
    if budget is None or _RUN_DEPTH.get() != 1 or session.top_runs != 1 or budget.turns < budget.limit \
            or session.outside_work:
        return
    items = _MODEL_INPUT.get()
    agent = _CURRENT_AGENT.get()
    if items is None or agent is None:
        return
    carried = compact_items(to_json_value(list(items), where="run items"), session.stored_inputs)
    raise ContinueAsNew({"agent": agent.name, "items": carried, "turnsUsed": budget.base + budget.turns})


def compact_history(items: Any) -> Any:
    """``items`` (a run's input list, e.g. ``RunResult.to_input_list()``) as JSON, with the prefix an earlier model
    call of the current run stored replaced by its marker (:func:`durable_agents._payloads.compact_items`): what a
    conversation carries into its next generation. Outside a version-3 run: ``items`` as JSON, unchanged."""
    session = _session()
    value = to_json_value(list(items), where="items") if isinstance(items, list | tuple) else items
    if session is None or session.version < 3 or not isinstance(value, list):
        return value
    return compact_items(value, session.stored_inputs)


def _resume_agent(start: Agent[Any], name: str) -> Agent[Any]:
    """The agent named ``name`` among ``start`` and the agents its handoffs reach (breadth first), as the next
    generation's starting agent, without input guardrails (they ran when the run started). Raises ``UserError``
    when no reachable agent has that name (the code changed while the run was in flight)."""
    seen: set[int] = set()
    queue: list[Any] = [start]
    while queue:
        agent = queue.pop(0)
        if not isinstance(agent, Agent) or id(agent) in seen:
            continue
        seen.add(id(agent))
        if agent.name == name:
            return agent.clone(input_guardrails=[])
        for handoff in agent.handoffs or []:
            target = handoff if isinstance(handoff, Agent) else getattr(handoff, "_agent_ref", None)
            queue.append(target() if callable(target) and not isinstance(target, Agent) else target)
    raise UserError(f"The run continued as new at agent {name!r}, which the starting agent "
                    f"{start.name!r} no longer reaches through its handoffs.")
"""The agent of the model call being prepared, set by the run config's ``call_model_input_filter`` (the SDK awaits
it in the task that then calls the model, so concurrent agents-as-tools each see their own)."""


def _without_implicit_defaults(
    agent: Agent[Any] | None, resolved: ModelSettings, run_model_settings: ModelSettings | None
) -> ModelSettings:
    """Model settings for a model call whose agent names no model, independent of ``OPENAI_DEFAULT_MODEL``.

    The SDK gives an agent without a model the default settings of the model named by the environment variable
    ``OPENAI_DEFAULT_MODEL`` (default a GPT-5 model: ``reasoning.effort`` and ``verbosity``), read inside the
    orchestration (``agents.run_internal.turn_preparation.get_model_settings``). Inside a durable run that model
    is never used: the ``invoke_model`` activity calls ``AGENT_MODEL``. So when the agent's settings are the
    SDK's implicit default (the SDK's own rule: equal to ``get_default_model_settings()``), every field in which
    that default differs from ``ModelSettings()`` is reset to ``ModelSettings()``'s value unless the run config
    sets it; explicit agent settings and run-config overrides are kept. The request then no longer depends on the
    environment of the process that runs the episode.
    """
    if agent is None or agent.model is not None:
        return resolved
    implicit = get_default_model_settings()
    if agent.model_settings != implicit:
        return resolved
    neutral = ModelSettings()
    changes = {}
    for field in dataclasses.fields(ModelSettings):
        if getattr(implicit, field.name) == getattr(neutral, field.name):
            continue
        if run_model_settings is not None and getattr(run_model_settings, field.name) is not None:
            continue
        changes[field.name] = getattr(neutral, field.name)
    return dataclasses.replace(resolved, **changes) if changes else resolved


def _check_models(agent: Agent[Any], seen: set[int] | None = None) -> None:
    """Raise ``UserError`` at once when ``agent`` or an agent it hands off to (transitively) has a model a durable
    run cannot call in the ``invoke_model`` activity: a ``Model`` object that is not a
    :class:`durable_agents._providers.RegisteredModel`, or a ``litellm/...`` / ``any-llm/...`` name whose package
    is not installed. The message says what to do instead."""
    seen = seen if seen is not None else set()
    if id(agent) in seen:
        return
    seen.add(id(agent))
    if isinstance(agent.model, Model) and registered_model_name(agent.model) is None:
        raise UserError(unregistered_model_message(f"Agent '{agent.name}' model", agent.model))
    problem = missing_prefix_package(agent.model)
    if problem is not None:
        raise UserError(f"Agent '{agent.name}': {problem}")
    for handoff in agent.handoffs or []:
        target = handoff if isinstance(handoff, Agent) else getattr(handoff, "_agent_ref", None)
        if isinstance(target, Agent):
            _check_models(target, seen)


def _durable_run_config(session: Session, run_config: RunConfig | dict[str, Any] | None) -> RunConfig:
    """The run's ``RunConfig`` with the durable model provider, tracing off and the agent-tracking input filter.

    ``RunConfig.model`` may be a name or a registered model; ``RunConfig.model_provider`` may be the SDK's default
    (a plain ``MultiProvider()``), a registered provider (:func:`durable_agents.register_model_provider`: its name
    goes into every model call's activity input) or the durable provider of an enclosing run (agents as tools).
    Anything else raises ``UserError`` at once, with what to do (never silently replaced).
    """
    if isinstance(run_config, dict):
        run_config = RunConfig(**run_config)
    base = run_config or RunConfig()
    if isinstance(base.model, Model) and registered_model_name(base.model) is None:
        raise UserError(unregistered_model_message("RunConfig.model", base.model))
    problem = missing_prefix_package(base.model)
    if problem is not None:
        raise UserError(f"RunConfig.model: {problem}")
    provider = _provider_name(base.model_provider)
    user_filter = base.call_model_input_filter

    async def track_agent(data: Any) -> Any:
        session.progress.current_agent = data.agent.name
        _CURRENT_AGENT.set(data.agent)
        _MODEL_INPUT.set(list(data.model_data.input))
        if user_filter is None:
            return data.model_data
        result = user_filter(data)
        if asyncio.iscoroutine(result):
            result = await result
        return result

    return dataclasses.replace(
        base,
        model_provider=DurableModelProvider(base.model_settings, provider),
        tracing_disabled=True,
        call_model_input_filter=track_agent,
    )


def _provider_name(provider: Any) -> str | None:
    """The registered name of a run's ``model_provider`` (``None``: the built-in APIs); ``UserError`` when it is
    neither the SDK's default, nor registered, nor an enclosing durable run's provider."""
    if isinstance(provider, DurableModelProvider):  # an agent run as a tool inherits the enclosing run's config
        return provider.provider
    name = registered_provider_name(provider)
    if name is not None:
        return name
    if _is_sdk_default_provider(provider):
        return None
    raise UserError(unregistered_provider_message(provider))


_PLAIN = (type(None), bool, int, float, str)


def _is_sdk_default_provider(provider: Any) -> bool:
    """True for the ``MultiProvider()`` a ``RunConfig`` gets when the caller sets no provider: no provider map
    and every plain option (API key, base URL, organisation, API choice, prefix modes...) as in a fresh
    ``MultiProvider()``. Anything configured differently is the caller's own provider."""
    if type(provider) is not MultiProvider or provider.provider_map is not None:
        return False
    fresh = MultiProvider()
    for mine, default in ((provider, fresh), (provider.openai_provider, fresh.openai_provider)):
        for key, value in vars(default).items():
            if isinstance(value, _PLAIN) and vars(mine).get(key, value) != value:
                return False
    return True


def _approval_item(item: ToolApprovalItem) -> ApprovalItem:
    """The reviewer's view of a tool call: its arguments parsed as strict JSON (text with ``NaN`` / ``Infinity``
    or that is not JSON stays the model's text), lone surrogates replaced (:mod:`durable_agents._jsonsafe`)."""
    arguments: Any = item.arguments
    if isinstance(arguments, str):
        try:
            arguments = loads_strict(arguments)
        except ValueError:
            pass
    arguments = json_safe(arguments)
    tool = str(item.tool_name or item.name)
    raw: Any = item.raw_item
    fields = raw if isinstance(raw, dict) else vars(raw) if hasattr(raw, "__dict__") else {}
    server = fields.get("server_label") if fields.get("type") == "mcp_approval_request" else None
    where = f" on MCP server '{server}'" if server else ""  # a hosted MCP tool's approval request
    return ApprovalItem(id=str(item.call_id), tool=tool, arguments=arguments, kind="tool",
                        summary=_summary(f"Call {tool}{where} with {dumps(arguments)}"))


def _invalid_arguments(item: ToolApprovalItem) -> str | None:
    """Why a gated call's arguments cannot be run (text that is not a strict JSON object: ``NaN``, ``Infinity``,
    broken JSON), as the text the model reads; ``None`` when they are fine. Such a call is rejected without asking
    anyone (version-2 runs)."""
    arguments = item.arguments
    if not isinstance(arguments, str):
        return None
    try:
        value = loads_strict(arguments) if arguments.strip() else {}
    except ValueError as exc:
        return (f"The call to '{item.tool_name or item.name}' was not run: its arguments are not valid JSON ({exc}); "
                "call it again with plain JSON numbers and strings.")
    return None if isinstance(value, dict) else "The call was not run: its arguments must be a JSON object."


def _summary(text: str, limit: int = 300) -> str:
    """One line for a reviewer, at most ``limit`` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _rejection_message(decision: ApprovalDecision, timeout_text: str) -> str:
    tool = decision["tool"]
    comment = decision.get("comment")
    if decision["decision"] == "expired":
        return (
            f"The call to '{tool}' was not run: no reviewer approved it within {timeout_text} "
            "(the approval expired)."
        )
    text = f"The call to '{tool}' was rejected by the reviewer and was not run."
    if comment:
        text += f" Reviewer's comment: {comment}"
    return text


class DurableAgentRunner(AgentRunner):
    """``AgentRunner`` installed as the SDK's default runner; durable inside ``agent_orchestrator`` runs.

    Outside an orchestration (no session bound to the thread) every call goes to the SDK's implementation
    unchanged. Inside, ``run`` forces the durable model provider and disabled tracing, then loops over the
    SDK's interruptions: each pending tool approval waits durably for a decision, is applied with
    ``RunState.approve`` / ``RunState.reject(..., rejection_message=...)``, and the run resumes from the state.
    """

    async def run(self, starting_agent: Agent[Any], input: Any, **kwargs: Any) -> RunResult:
        session = _session()
        if session is None:
            _refuse_plain_orchestrator()
            return await super().run(starting_agent, input, **kwargs)
        depth = _RUN_DEPTH.get()
        top = depth == 0
        first_work = not session.log  # nothing durable happened before this run in this generation
        depth_token = _RUN_DEPTH.set(depth + 1)
        span_token = None
        if top:
            session.top_runs += 1
            kind = session.input.get("kind") if isinstance(session.input, dict) else None
            if first_work and kind != "conversation":
                span_token = _RUN_SPAN_START.set(session.carried.started_at or format_time(session.now))
        try:
            return await self._run_durably(session, starting_agent, input, top and first_work, kwargs)
        finally:
            if span_token is not None:
                _RUN_SPAN_START.reset(span_token)
            _RUN_DEPTH.reset(depth_token)
            if top:
                session.top_runs -= 1

    async def _run_durably(self, session: Session, starting_agent: Agent[Any], input: Any, first: bool,
                           kwargs: dict[str, Any]) -> RunResult:
        """``run`` inside an agent orchestrator. ``first``: a top-level run that is the generation's first durable
        work, so it may resume a continued run and continue as new itself (docs/internals.md "Bounded
        history"); then ``session`` must be the only top-level run in progress when the K-th turn is reached."""
        _check_models(starting_agent)
        resume = session.carried.resume if first else None
        if resume is not None:
            session.carried.resume = None
            starting_agent = _resume_agent(starting_agent, str(resume.get("agent")))
            input = resume["items"]
        kwargs["run_config"] = _durable_run_config(session, kwargs.get("run_config"))
        if resume is not None:  # the run's input guardrails ran in its first generation
            kwargs["run_config"] = dataclasses.replace(kwargs["run_config"], input_guardrails=[])
        kwargs = durable_run_kwargs(kwargs)
        if session.version >= 2 and kwargs.get("max_turns", DEFAULT_MAX_TURNS) == DEFAULT_MAX_TURNS:
            # The SDK passes its default (10) when the caller gave none: the run's AGENT_MAX_TURNS replaces it.
            kwargs["max_turns"] = _max_turns_setting()
        used = resume.get("turnsUsed") if resume is not None else 0
        used = used if isinstance(used, int) and used >= 0 else 0
        if resume is not None:
            kwargs["max_turns"] = max(1, int(kwargs.get("max_turns", DEFAULT_MAX_TURNS)) - used)
        limit = _turns_per_generation()
        server_side = any(kwargs.get(k) for k in ("session", "previous_response_id", "conversation_id",
                                                  "auto_previous_response_id"))
        budget = _Generation(limit, base=used) if first and session.version >= 3 and limit > 0 and not server_side \
            else None
        _GENERATION.set(budget)
        try:
            result = await super().run(starting_agent, input, **kwargs)
        except MaxTurnsExceeded as exc:
            if used:  # the SDK counted this generation's share: report the run's own limit
                exc.message = f"Max turns ({used + int(kwargs['max_turns'])}) exceeded"
                exc.args = (exc.message,)
            raise
        timeout_text = run_setting("APPROVAL_TIMEOUT", DEFAULT_APPROVAL_TIMEOUT) or DEFAULT_APPROVAL_TIMEOUT
        while result.interruptions:
            state = result.to_state()
            items = []
            for item in result.interruptions:
                problem = _invalid_arguments(item) if session.version >= 2 else None
                if problem is None:
                    items.append(item)
                else:  # never put a call the tool would refuse in front of a person
                    state.reject(item, rejection_message=problem)
            if items:
                decisions = await session.wait_for_approvals(
                    ApprovalsCall(tuple(_approval_item(item) for item in items)))
                for item, decision in zip(items, decisions, strict=True):
                    if decision["decision"] == "approved":
                        state.approve(item)
                    else:
                        state.reject(item, rejection_message=_rejection_message(decision, timeout_text))
            kept: tuple[str, ...] = ("run_config", "hooks", "max_turns", "error_handlers")
            if session.version >= 2:
                kept += ("session",)  # the session records the resumed turns too
            resume_kwargs = {k: v for k, v in kwargs.items() if k in kept}
            result = await super().run(starting_agent, state, **resume_kwargs)
        return result

    def run_sync(self, starting_agent: Agent[Any], input: Any, **kwargs: Any) -> RunResult:
        """The SDK's ``run_sync``; in a plain Durable orchestrator it fails before the SDK makes an event loop."""
        if _session() is None:
            _refuse_plain_orchestrator()
        return super().run_sync(starting_agent, input, **kwargs)

    def run_streamed(
        self, starting_agent: Agent[Any], input: Any, **kwargs: Any
    ) -> RunResultStreaming:
        """The SDK's ``run_streamed``; inside an agent orchestrator (an ``async def`` one: the SDK starts the run as
        a task of the running loop) the run is durable like :meth:`run`: every model call is one ``invoke_model``
        activity answered as a whole response, so ``stream_events()`` yields item-level events and no token
        deltas. Tool approvals end the stream with ``result.interruptions`` as in the SDK (durable approvals need
        ``Runner.run``), and a run with a streamed part never continues as new. In a plain Durable orchestrator it
        raises ``UserError`` (its model calls would run in the orchestrator)."""
        session = _session()
        if session is None:
            if compat.in_orchestrator_episode():
                raise UserError("Runner.run_streamed is not supported in a Durable orchestrator that is not an agent "
                                "orchestrator: decorate it with durable_agents.agent_orchestrator")
            return super().run_streamed(starting_agent, input, **kwargs)
        _check_models(starting_agent)
        kwargs["run_config"] = _durable_run_config(session, kwargs.get("run_config"))
        kwargs = durable_run_kwargs(kwargs)
        if session.version >= 2 and kwargs.get("max_turns", DEFAULT_MAX_TURNS) == DEFAULT_MAX_TURNS:
            kwargs["max_turns"] = _max_turns_setting()
        session.outside_work = True  # restarting the function at a hand-over would stream this run again
        depth_token = _RUN_DEPTH.set(_RUN_DEPTH.get() + 1)
        budget_token = _GENERATION.set(None)
        try:  # the SDK's run task copies this context: its model calls see the run depth and no budget
            return super().run_streamed(starting_agent, input, **kwargs)
        finally:
            _GENERATION.reset(budget_token)
            _RUN_DEPTH.reset(depth_token)


def _refuse_plain_orchestrator() -> None:
    """Raise ``UserError`` when the calling thread runs a Durable orchestrator episode outside an agent orchestrator
    (its model calls would run in the orchestrator, again on every replay)."""
    if compat.in_orchestrator_episode():
        raise UserError(
            "Runner.run / Runner.run_sync was called in a Durable orchestrator that is not an agent "
            "orchestrator: its model calls would run in the orchestrator, again on every replay. Decorate "
            "the orchestrator with durable_agents.agent_orchestrator (or use Blueprint.agent) so that every "
            "model call and tool call is an activity."
        )
