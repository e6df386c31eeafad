"""The scripted model of the test kit: the ``invoke_model`` activity answered by the SDK's ``agents.testing`` model.

:class:`ScriptedModel` wraps an ``agents.testing.ScriptedModel`` (openai-agents' own deterministic test model) and
plays the real ``invoke_model`` activity around it: the request is decoded with
``durable_agents._model_io.decode_model_request``, the SDK model's ``get_response`` is awaited, the response is
encoded with ``encode_model_response``, and an ``openai.APIError`` raised by a step is classified with the real
``classify_model_error``, so the orchestrator sees exactly what it would see from a real model call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx2
import openai
from agents.models.interface import ModelTracing
from agents.testing import ModelStep
from agents.testing import ScriptedModel as SdkScriptedModel
from agents.testing.model import ModelScriptItem
from agents.usage import Usage

from local_runtime.app_loader import FunctionInfo

from .._contracts import INVOKE_MODEL_ACTIVITY, InvokeModelResult
from .._model_activity import classify_model_error
from .._model_io import decode_model_request, encode_model_response
from .._payloads import PayloadMissing, resolve_model_payload

__all__ = ["ScriptedModel", "function_outputs", "model_error"]

_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}


def model_error(status: int | None, *, retry_after: float | None = None,
                message: str = "scripted model error") -> ModelStep:
    """A script step whose model call fails like an API error with HTTP ``status``.

    The step raises the ``openai`` exception the client raises for that status (``RateLimitError`` for 429,
    ``InternalServerError`` for 5xx, ``BadRequestError`` for 400, ``APIStatusError`` for others; ``status=None``
    raises ``APIConnectionError``, a connection failure without an answer), with a ``retry-after`` header of
    ``retry_after`` seconds when given. The activity then answers ``{"ok": false, "error": {"type", "message",
    "status", "retryable", "retryAfter"}}`` (``durable_agents.InvokeModelResult`` / ``ModelErrorInfo``) as
    classified by the real ``invoke_model``: retryable for connection errors, 408, 409, 429 and 5xx, which the
    orchestrator retries on a durable timer of ``max(retryAfter, 2 s * 2**attempt)``; anything else fails the run.
    """
    request = httpx2.Request("POST", "https://scripted-model.invalid/v1/responses")
    if status is None:
        return ModelStep.raise_error(openai.APIConnectionError(message=message, request=request))
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    response = httpx2.Response(status, headers=headers, request=request)
    error_class = _STATUS_ERRORS.get(status, openai.InternalServerError if status >= 500 else openai.APIStatusError)
    return ModelStep.raise_error(error_class(message, response=response, body=None))


def function_outputs(request: Mapping[str, Any]) -> dict[str, str]:
    """``{call_id: output text}`` of the tool results the model received in one decoded request.

    ``request`` is an entry of :attr:`ScriptedModel.requests`; a non-text output is given as its JSON text. A tool
    that failed for good, a rejected or an expired approval arrive as a text saying so (docs/internals.md).
    """
    items = request.get("input")
    out: dict[str, str] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, Mapping) and item.get("type") == "function_call_output":
                output = item.get("output")
                out[str(item["call_id"])] = output if isinstance(output, str) else json.dumps(output)
    return out


class ScriptedModel:
    """A scripted model for agent runs: answers every ``invoke_model`` activity from a list of steps.

    ``steps`` are the steps of ``agents.testing.ScriptedModel``, one per model call, in order: a list of output
    items (``[assistant_message("Done.")]``, or several ``function_call(name, arguments, call_id=...)`` for one
    turn that calls tools), an ``agents.testing.ModelStep`` (to give ``usage=agents.Usage(...)``, or
    ``ModelStep.respond(fn)`` to answer from the call), an ``agents.ModelResponse``, an exception to raise, or
    :func:`model_error` (an API error the orchestrator retries or fails on). ``default_usage`` is the usage of
    steps that give none (the SDK's default: one request, no tokens).

    Give it to :class:`~durable_agents.testing.ReplayHarness` (``ReplayHarness(app, model=model)``), or register
    it as an app's ``invoke_model`` activity with :meth:`register`. After a run, :attr:`requests` holds every
    request the model received (decoded: ``{"model", "system_instructions", "input", "model_settings", "tools",
    "output_schema", "handoffs", ...}``), :attr:`raw_inputs` the activity inputs as sent
    (``durable_agents.InvokeModelInput``) and :attr:`results` what the activity answered. A call after the last
    step raises ``agents.testing.UnexpectedModelCall`` inside the activity, so the activity fails.
    """

    def __init__(self, steps: Iterable[ModelScriptItem] = (), *, default_usage: Usage | None = None) -> None:
        self.sdk_model = SdkScriptedModel(steps, default_usage=default_usage)
        """The wrapped ``agents.testing.ScriptedModel`` (its ``calls``, ``remaining_steps``, ``enqueue``...)."""
        self.requests: list[dict[str, Any]] = []
        self.raw_inputs: list[dict[str, Any]] = []
        self.results: list[InvokeModelResult] = []
        self._function_info: FunctionInfo | None = None

    @property
    def remaining_steps(self) -> int:
        """How many scripted steps have not been used yet."""
        return self.sdk_model.remaining_steps

    def extend(self, steps: Iterable[ModelScriptItem]) -> None:
        """Append steps to the script."""
        self.sdk_model.extend(steps)

    def assert_complete(self) -> None:
        """Raise ``agents.testing.UnconsumedModelSteps`` when scripted steps were not used."""
        self.sdk_model.assert_complete()

    async def invoke_model(self, payload: Any) -> InvokeModelResult:
        """The ``invoke_model`` activity body: one scripted model call.

        ``payload`` is ``{"model": <name or null>, "request": <model_io request>}`` (a dict or its JSON text).
        Returns ``{"ok": true, "response": <model_io response>, "demo": false}``, or ``{"ok": false, "error":
        <ModelErrorInfo>}`` when the step raised an ``openai.APIError``. Other exceptions propagate (the activity
        fails), as in the real activity; a malformed payload raises ``TypeError``.
        """
        if isinstance(payload, str):
            payload = json.loads(payload)
        if not isinstance(payload, Mapping) or not isinstance(payload.get("request"), Mapping):
            raise TypeError("invoke_model expects {'model': <name or null>, 'request': <model_io request>}")
        self.raw_inputs.append(dict(payload))
        try:  # markers of payloads in the blob store, as the real activity expands them
            payload, input_ref = resolve_model_payload(payload)
        except PayloadMissing as exc:
            return {"ok": False, "error": {"type": "PayloadMissing", "message": str(exc), "status": None,
                                           "retryable": False, "retryAfter": None}}
        request = decode_model_request(payload["request"])
        self.requests.append(request)
        kwargs = {key: value for key, value in request.items() if key != "model"}
        result: InvokeModelResult
        try:
            response = await self.sdk_model.get_response(tracing=ModelTracing.DISABLED, **kwargs)
        except openai.APIError as exc:
            error = classify_model_error(exc)
            assert error is not None  # every openai.APIError is classified
            result = {"ok": False, "error": error}
        else:
            result = {"ok": True, "response": encode_model_response(response), "demo": False}
            if input_ref is not None:
                result["inputRef"] = input_ref
        self.results.append(result)
        return result

    def register(self, bp: Any) -> None:
        """Register :meth:`invoke_model` as the ``invoke_model`` activity on a ``df.Blueprint`` or ``df.DFApp``.

        For an app that does not register the real one (``durable_agents.App(model_activity=False)`` or a plain
        ``df.DFApp``); with :class:`~durable_agents.testing.ReplayHarness`, ``model=`` is simpler.
        """
        bp.activity_trigger(input_name="payload", activity=INVOKE_MODEL_ACTIVITY)(self._activity())

    def _activity(self) -> Callable[..., Any]:
        model = self

        async def invoke_model(payload: Any) -> InvokeModelResult:
            return await model.invoke_model(payload)

        return invoke_model

    def _activity_info(self) -> FunctionInfo:
        """This model as the local runtime's description of an ``invoke_model`` activity function."""
        if self._function_info is None:
            trigger = {"type": "activityTrigger", "direction": "IN", "name": "payload",
                       "activity": INVOKE_MODEL_ACTIVITY}
            self._function_info = FunctionInfo(
                name=INVOKE_MODEL_ACTIVITY, kind="activity", fn=self._activity(), trigger=trigger,
                bindings=[trigger], durable_name=INVOKE_MODEL_ACTIVITY, trigger_name="payload", is_async=True,
            )
        return self._function_info
