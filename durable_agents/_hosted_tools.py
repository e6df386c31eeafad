"""Hosted tools (web search, file search, MCP, ...) in the model requests of the ``invoke_model`` activity (internal).

Hosted tools are run by the model provider, so a model request only describes them. The orchestrator encodes each
one with :func:`encode_hosted_tool` inside :func:`durable_agents._model_io.encode_model_request`; the activity
rebuilds it with :func:`decode_hosted_tool` (in :func:`durable_agents._model_io.decode_model_request`) as the same
SDK class, which the SDK's own converter (``agents.models.openai_responses.Converter``) then turns into the
Responses ``tools`` entry exactly as it would have without durability. :func:`prepare_model_call` then makes the
decoded tools ready for the configured API.

Encoded shape (one entry of the request's ``"tools"`` list)::

    {"type": "<Responses tool type>",   # web_search, file_search, code_interpreter, image_generation, mcp,
                                        # tool_search, programmatic_tool_calling, shell
     "fields": {<the SDK dataclass's fields, non-null, as JSON>}}

Rules:

* Callbacks (``on_approval_request``, ``executor``, ``on_approval``, ``needs_approval``) are run by the SDK in the
  orchestrator, never by the model call: they are never sent.
* ``HostedMCPTool`` credentials (``authorization`` and every ``headers`` value of its ``tool_config``) must be
  written as ``%SETTING_NAME%``, the name of an app setting: the request is the ``invoke_model`` activity's input,
  kept in the run's history, so a literal one raises ``TypeError`` when encoding. The activity replaces each
  reference with the setting's value (:func:`prepare_model_call`); a missing setting raises ``UserError``.
* Chat Completions has no hosted tools: with ``OPENAI_API=chat_completions`` a request with any raises
  ``agents.exceptions.UserError`` naming them, before any request is made (not retryable).
* Tools whose work is done by the caller's code inside the orchestrator (``ComputerTool``, ``LocalShellTool``,
  ``ApplyPatchTool``, ``CustomTool``, a ``ShellTool`` with a local environment) would run again on every replay:
  they are refused with a ``TypeError`` saying why (:func:`unsupported_tool_error`).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import typing
from collections.abc import Mapping
from typing import Any

from agents.exceptions import UserError
from agents.tool import (
    CodeInterpreterTool,
    FileSearchTool,
    HostedMCPTool,
    ImageGenerationTool,
    ProgrammaticToolCallingTool,
    ShellTool,
    ToolSearchTool,
    WebSearchTool,
)

from ._config import SETTING_REFERENCE, expand_setting_references

__all__ = [
    "decode_hosted_tool",
    "encode_hosted_tool",
    "is_hosted_tool",
    "prepare_model_call",
    "unsupported_tool_error",
]

# Responses tool type -> the SDK class rebuilt in the activity.
_HOSTED_TOOLS: dict[str, type[Any]] = {
    "web_search": WebSearchTool,
    "file_search": FileSearchTool,
    "code_interpreter": CodeInterpreterTool,
    "image_generation": ImageGenerationTool,
    "mcp": HostedMCPTool,
    "tool_search": ToolSearchTool,
    "programmatic_tool_calling": ProgrammaticToolCallingTool,
    "shell": ShellTool,  # hosted container environments only (encode_hosted_tool)
}
_HOSTED_TYPE_BY_CLASS = {cls: type_name for type_name, cls in _HOSTED_TOOLS.items()}

# Fields that are callbacks run by the SDK in the orchestrator (never by the model call): not sent.
_CALLBACK_FIELDS = frozenset({"on_approval_request", "executor", "on_approval", "needs_approval"})

# Tools whose work is done by the caller's code (an executor, a computer, an editor) inside the orchestrator,
# again on every replay: refused until they run as activities.
_LOCAL_TOOL_REASONS = {
    "ComputerTool": "it drives a local computer from the orchestrator (screenshots and clicks would run again on "
                    "every replay)",
    "LocalShellTool": "its executor would run shell commands in the orchestrator, again on every replay",
    "ApplyPatchTool": "its editor would change files from the orchestrator, again on every replay",
    "CustomTool": "its raw-text executor has no activity form yet; use a function tool (@activity_tool)",
}



def is_hosted_tool(tool: Any) -> bool:
    """Whether ``tool`` is one of the hosted tool classes this module encodes (exact class, not subclasses)."""
    return type(tool) in _HOSTED_TYPE_BY_CLASS


def unsupported_tool_error(tool: Any) -> TypeError:
    """The ``TypeError`` for a tool that is neither a ``FunctionTool`` nor a hosted tool (returned, for raising).

    It names the tool, says why it cannot be used (:data:`_LOCAL_TOOL_REASONS` for the SDK's local tools) and lists
    the supported tools.
    """
    name = getattr(tool, "name", None) or type(tool).__name__
    reason = _LOCAL_TOOL_REASONS.get(type(tool).__name__, "it is not a tool type durable agents know")
    return TypeError(
        f"tool {name!r} ({type(tool).__name__}) cannot be sent to the invoke_model activity: {reason}. "
        "Durable agents support function tools (@function_tool, @activity_tool) and the hosted tools "
        "(WebSearchTool, FileSearchTool, CodeInterpreterTool, ImageGenerationTool, HostedMCPTool, "
        "ToolSearchTool, ProgrammaticToolCallingTool, ShellTool with a hosted environment)"
    )


def _is_setting_reference(value: Any) -> bool:
    return isinstance(value, str) and SETTING_REFERENCE.fullmatch(value) is not None


def _check_mcp_secrets(config: Mapping[str, Any], where: str) -> None:
    """Refuse credentials written literally in a hosted MCP tool's config: the request is the ``invoke_model``
    activity's input, kept in the run's history (storage, not a secret store)."""
    secrets: list[tuple[str, Any]] = []
    if config.get("authorization") is not None:
        secrets.append(("authorization", config["authorization"]))
    headers = config.get("headers")
    if isinstance(headers, Mapping):
        secrets.extend((f"headers[{name!r}]", value) for name, value in headers.items())
    for name, value in secrets:
        if not _is_setting_reference(value):
            raise TypeError(
                f"{where}: tool_config {name} would be stored in plain text in the run's history (the "
                "invoke_model activity's input); write it as '%SETTING_NAME%', the name of an app setting that "
                "the invoke_model activity reads when it calls the model"
            )


def encode_hosted_tool(tool: Any, index: int) -> dict[str, Any]:
    """Encode a hosted tool (:func:`is_hosted_tool`) at position ``index`` of the request's tools (shape above).

    Raises ``TypeError`` (naming ``tools[index]``) for a ``ShellTool`` with a local environment, for a literal
    ``HostedMCPTool`` credential, and for a field value JSON cannot represent (``ValueError`` for NaN).
    """
    # Imported here: _model_io imports this module at module level, and to_json_value is its generic converter.
    from ._model_io import to_json_value

    type_name = _HOSTED_TYPE_BY_CLASS[type(tool)]
    where = f"tools[{index}]({type(tool).__name__})"
    if isinstance(tool, ShellTool):
        environment: Mapping[str, Any] = tool.environment or {}
        if environment.get("type") == "local":
            raise TypeError(
                f"{where}: a ShellTool with a local environment cannot be used by durable agents: its executor "
                "would run shell commands in the orchestrator, again on every replay (hosted container "
                "environments, 'container_auto' / 'container_reference', are supported)"
            )
    fields = {}
    for field in dataclasses.fields(tool):
        value = getattr(tool, field.name)
        if field.name in _CALLBACK_FIELDS or value is None:
            continue
        fields[field.name] = to_json_value(value, where=f"{where}.{field.name}")
    if isinstance(tool, HostedMCPTool):
        _check_mcp_secrets(fields["tool_config"], where)
    return {"type": type_name, "fields": fields}


def decode_hosted_tool(data: Mapping[str, Any]) -> Any | None:
    """Rebuild the SDK hosted tool from :func:`encode_hosted_tool` output, or ``None`` when ``data["type"]`` (default
    ``"function"``) is not a hosted tool type. The fields are deep-copied, so the tool never shares ``data``."""
    hosted = _HOSTED_TOOLS.get(data.get("type", "function"))
    if hosted is None:
        return None
    return hosted(**copy.deepcopy(dict(data.get("fields") or {})))


def prepare_model_call(kwargs: dict[str, Any], *, api: str, environ: Mapping[str, str] | None = None) -> None:
    """Make decoded request arguments ready for one model call on ``api``, in place (the activity, after decoding).

    ``kwargs`` is :func:`durable_agents._model_io.decode_model_request` output; ``api`` the configured
    ``OPENAI_API`` (``"responses"``, ``"chat_completions"``, or ``"demo"`` for the offline model). Two rules:

    * Chat Completions has no hosted tools (the SDK's ``ChatCmplConverter.tool_to_openai`` accepts function tools
      only): with ``api == "chat_completions"`` a hosted tool raises ``agents.exceptions.UserError`` naming every
      such tool and saying to set ``OPENAI_API=responses``, before any request is made (not retryable).
    * ``HostedMCPTool`` credentials are written as ``%SETTING_NAME%``
      (:func:`durable_agents._model_io.encode_model_request` refuses literal ones, which the run's history would
      keep in plain text): each ``authorization`` and ``headers`` value is replaced by that setting from
      ``environ`` (default ``os.environ``: the activity's app settings). A missing setting raises ``UserError``
      naming it (never a value).
    """
    tools = kwargs.get("tools") or []
    hosted = [tool for tool in tools if is_hosted_tool(tool)]
    if hosted and api == "chat_completions":
        names = ", ".join(f"{_tool_label(tool)} ({type(tool).__name__})" for tool in hosted)
        raise UserError(
            f"Hosted tools are not supported with the Chat Completions API: {names}. They are tools of the "
            "Responses API, run by the model provider; set OPENAI_API=responses (the default) to use them, or "
            "remove them from the agent"
        )
    env = os.environ if environ is None else environ
    resolved = []
    for tool in tools:
        if isinstance(tool, HostedMCPTool):
            config: dict[str, Any] = dict(tool.tool_config)
            if config.get("authorization") is not None:
                config["authorization"] = _resolve_reference(config["authorization"], env, tool)
            if isinstance(config.get("headers"), Mapping):
                config["headers"] = {name: _resolve_reference(value, env, tool)
                                     for name, value in config["headers"].items()}
            tool = dataclasses.replace(tool, tool_config=typing.cast(Any, config))
        resolved.append(tool)
    kwargs["tools"] = resolved


def _tool_label(tool: Any) -> str:
    if isinstance(tool, HostedMCPTool):
        return f"hosted MCP server {tool.tool_config.get('server_label', '?')!r}"
    return repr(str(tool.name))


def _resolve_reference(value: Any, environ: Mapping[str, str], tool: HostedMCPTool) -> Any:
    """A ``%NAME%`` value (the only form :func:`encode_hosted_tool` lets through) replaced from ``environ``."""
    if not isinstance(value, str):
        return value
    return expand_setting_references(value, environ.get, missing=lambda setting: UserError(
        f"{_tool_label(tool)}: the app setting {setting} named in its tool_config is not set in the "
        "invoke_model activity's environment"))
