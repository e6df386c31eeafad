"""Scripted model responses and an in-process ``invoke_model`` activity for replay tests (no model API here).

A :class:`ScriptedModel` answers each ``invoke_model`` activity call with the next scripted entry: a real
``agents.ModelResponse`` built from ``openai.types.responses`` objects, encoded with ``model_io`` exactly like
the real activity, or an ``{"ok": false, "error": ...}`` result. It records every decoded request so tests can
assert what the model saw (tool results, rejection messages).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import azure.durable_functions as df
from agents import ModelResponse, Usage
from openai.types.responses import ResponseFunctionToolCall, ResponseOutputMessage, ResponseOutputText

from durable_agents._model_io import decode_model_request, encode_model_response


def text_response(text: str, *, rid: str = "resp") -> ModelResponse:
    """A final assistant message."""
    message = ResponseOutputMessage(
        id=f"msg_{rid}",
        type="message",
        role="assistant",
        status="completed",
        content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
    )
    return ModelResponse(output=[message], usage=Usage(requests=1, input_tokens=10, output_tokens=5,
                                                       total_tokens=15), response_id=None)


def tool_calls(*calls: tuple[str, str, dict[str, Any]]) -> ModelResponse:
    """A response with function tool calls ``(call_id, tool_name, arguments)``."""
    items = [
        ResponseFunctionToolCall(
            id=f"fc_{call_id}", call_id=call_id, name=name, arguments=json.dumps(args), type="function_call",
            status="completed",
        )
        for call_id, name, args in calls
    ]
    return ModelResponse(output=items, usage=Usage(requests=1, input_tokens=20, output_tokens=7, total_tokens=27),
                         response_id=None)


def error_result(status: int | None, *, retry_after: float | None = None, message: str = "boom",
                 error_type: str = "APIStatusError") -> dict[str, Any]:
    """An ``invoke_model`` failure result as docs/internals.md defines it."""
    retryable = status is None or status in (408, 409, 429) or status >= 500
    return {"ok": False, "error": {"type": error_type, "message": message, "status": status,
                                   "retryable": retryable, "retryAfter": retry_after}}


Script = ModelResponse | dict[str, Any] | Callable[[dict[str, Any]], Any]


class ScriptedModel:
    """Answers ``invoke_model`` calls from a script; ``requests`` keeps every decoded request."""

    def __init__(self, script: list[Script] | None = None) -> None:
        self.script: list[Script] = list(script or [])
        self.requests: list[dict[str, Any]] = []
        self.raw_inputs: list[dict[str, Any]] = []

    def __call__(self, payload: dict[str, Any]) -> dict[str, Any]:
        self.raw_inputs.append(payload)
        request = decode_model_request(payload["request"])
        self.requests.append(request)
        if not self.script:
            raise RuntimeError("script exhausted")
        entry = self.script.pop(0)
        if callable(entry) and not isinstance(entry, ModelResponse):
            entry = entry(request)
        if isinstance(entry, ModelResponse):
            return {"ok": True, "response": encode_model_response(entry), "demo": False}
        return entry

    def register(self, bp: df.Blueprint) -> None:
        """Register this model as the ``invoke_model`` activity on ``bp``."""
        model = self

        def invoke_model(payload: dict) -> dict:
            return model(payload)

        bp.activity_trigger(input_name="payload", activity="invoke_model")(invoke_model)


def function_outputs(request: dict[str, Any]) -> dict[str, str]:
    """``{call_id: output}`` of the function-call outputs in a decoded model request's input."""
    items = request.get("input")
    out: dict[str, str] = {}
    if isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("type") == "function_call_output":
                output = item.get("output")
                out[item["call_id"]] = output if isinstance(output, str) else json.dumps(output)
    return out
