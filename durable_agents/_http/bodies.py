"""Request reading and validation for the HTTP API: internal, not part of the public API.

Two steps, always in this order, before any call that changes state:

1. :func:`check_size` and :func:`read_object`: the strict JSON reader. A body is at most :data:`MAX_BODY_BYTES`
   bytes (413 ``body-too-large`` above that, on ``Content-Length`` and on the actual body), UTF-8 (a BOM is
   allowed), valid JSON without duplicate member names, ``NaN`` or ``Infinity`` (400 ``malformed-json``), and one
   JSON object (400 ``invalid-body``).
2. :func:`validate`: the object (or the query parameters) through one of the pydantic models below. The models
   are strict (no coercion: ``"true"`` is not a boolean, ``5`` is not a string), forbid members they do not
   define, and treat ``null`` as absent for optional members. :func:`validation_problem` is the one place that
   turns a ``pydantic.ValidationError`` into the caller's problem document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, TypeVar

import azure.functions as func
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from durable_agents._http.views import CONVERSATION_STATUSES, RUN_STATUSES, ConversationStatus, RunStatus
from durable_agents._jsonsafe import has_lone_surrogate
from durable_agents._problems import Problem
from durable_agents._registry import AGENT_NAME_PATTERN

__all__ = [
    "DEFAULT_LIST_TOP",
    "MAX_BODY_BYTES",
    "MAX_COMMENT_CHARS",
    "MAX_LIST_TOP",
    "RUN_ID_PATTERN",
    "CancelBody",
    "CloseConversationBody",
    "DecisionBody",
    "ListConversationsQuery",
    "ListMessagesQuery",
    "ListRunsQuery",
    "MAX_MESSAGES_TOP",
    "MessageBody",
    "StartConversationBody",
    "StartRunBody",
    "JSON_MEDIA_TYPE",
    "MAX_INPUT_CHARS",
    "check_json_content_type",
    "check_size",
    "json_type",
    "read_object",
    "validate",
    "validation_problem",
]

MAX_BODY_BYTES = 1024 * 1024
"""Largest accepted request body (1 MiB); larger bodies get 413 before any parsing."""

MAX_COMMENT_CHARS = 4000
"""Longest approval ``comment`` and cancel ``reason`` (characters, i.e. Unicode code points)."""

_RUN_ID_REGEX = r"[A-Za-z0-9_-]{1,100}"
RUN_ID_PATTERN = re.compile(_RUN_ID_REGEX)
"""Caller-chosen run ids (``runId`` of ``POST agents/{agent}/runs``; use ``fullmatch``); generated ids are uuid4
hex. Path ids that do not match are answered 404 without asking the Durable client."""

DEFAULT_LIST_TOP = 50
"""``GET runs`` page size when ``top`` is not given."""

MAX_LIST_TOP = 100
"""Largest ``top`` of ``GET runs`` (the smallest is 1)."""



# ---------------------------------------------------------------------------------------------------------------
# The strict JSON reader


class _DuplicateKey(ValueError):
    pass


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_size(req: func.HttpRequest) -> None:
    """Raise 413 ``body-too-large`` (extension ``limit``: bytes) when ``Content-Length`` or the actual body of
    ``req`` exceeds :data:`MAX_BODY_BYTES`. An unparsable ``Content-Length`` is left to the host."""
    declared = req.headers.get("content-length")
    if declared is not None:
        try:
            length: int | None = int(declared.strip())
        except ValueError:
            length = None  # the host validates the header; the body length below still applies
        if length is not None and length > MAX_BODY_BYTES:
            raise Problem(
                "body-too-large",
                f"Content-Length {length} exceeds the limit of {MAX_BODY_BYTES} bytes.",
                {"limit": MAX_BODY_BYTES},
            )
    size = len(req.get_body() or b"")
    if size > MAX_BODY_BYTES:
        raise Problem(
            "body-too-large",
            f"The body has {size} bytes; the limit is {MAX_BODY_BYTES} bytes.",
            {"limit": MAX_BODY_BYTES},
        )


def read_object(req: func.HttpRequest, *, required: bool) -> dict[str, Any] | None:
    """Parse the body of ``req`` (size already checked with :func:`check_size`) as one JSON object.

    An empty (or all-whitespace) body gives ``None``, or 400 ``invalid-body`` when ``required``. Raises 400
    ``malformed-json`` for non-UTF-8 bytes, invalid JSON, a member name given twice, ``NaN`` / ``Infinity`` or
    nesting too deep for the parser, and 400 ``invalid-body`` when the value is not an object.
    """
    body = req.get_body() or b""
    if not body.strip():
        if required:
            raise Problem("invalid-body", "The request body is empty; send a JSON object.")
        return None
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise Problem("malformed-json", f"The body is not UTF-8 text (byte {exc.start}).") from None
    try:
        value = json.loads(text, object_pairs_hook=_object_without_duplicates, parse_constant=_reject_constant)
    except _DuplicateKey as exc:
        raise Problem("malformed-json", f"The member {exc.args[0]!r} appears more than once.") from None
    except json.JSONDecodeError as exc:
        raise Problem(
            "malformed-json", f"The body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
        ) from None
    except RecursionError:
        raise Problem("malformed-json", "The body is nested too deeply.") from None
    except ValueError as exc:
        raise Problem("malformed-json", f"The body is not valid JSON: {exc}.") from None
    if not isinstance(value, dict):
        raise Problem("invalid-body", f"The body must be a JSON object, not {json_type(value)}.")
    where = _lone_surrogate_at(value, "")
    if where is not None:
        raise Problem("malformed-json", f"The body holds a lone UTF-16 surrogate (an unpaired \\ud800-\\udfff escape) "
                      f"in {where or 'a member name'}; it is not Unicode text.")
    return value


def _lone_surrogate_at(value: Any, path: str) -> str | None:
    """The path (``'input'``, ``'a.b[2]'``) of the first string holding a lone surrogate, else ``None``."""
    if isinstance(value, str):
        return (path or "the body") if has_lone_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if has_lone_surrogate(key):
                return path or "a member name"
            found = _lone_surrogate_at(item, f"{path}.{key}" if path else f"'{key}'")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_at(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


JSON_MEDIA_TYPE = "application/json"


def check_json_content_type(req: func.HttpRequest, *, body_required: bool) -> None:
    """Raise 415 ``unsupported-media-type`` unless ``Content-Type`` is ``application/json`` (parameters such as
    ``charset=utf-8`` allowed, any case). A request without a body passes when ``body_required`` is false (an
    optional body). This also stops a web page from posting a "simple" cross-site form (``text/plain``)."""
    declared = (req.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if declared == JSON_MEDIA_TYPE:
        return
    if not body_required and not (req.get_body() or b"").strip():
        return
    shown = f"{declared!r}" if declared else "none"
    raise Problem("unsupported-media-type",
                  f"Send the body as {JSON_MEDIA_TYPE} (Content-Type was {shown}).", {"accept": JSON_MEDIA_TYPE})


def json_type(value: Any) -> str:
    """How a JSON value's type reads in a sentence: ``"null"``, ``"a boolean"``, ``"a number"``, ``"a string"``,
    ``"an array"`` or ``"an object"``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    return "an object"


# ---------------------------------------------------------------------------------------------------------------
# The models


class _StrictModel(BaseModel):
    """Base of the request models: strict, closed, immutable.

    ``problem``: the problem slug of a validation failure; ``member_problems``: a slug per wire name that
    overrides it when every failing member maps to that slug; ``noun``: what a member is called in ``detail``;
    ``ignored``: input keys dropped before validation. Each field's ``description`` says what a valid value is,
    as a phrase that completes "must be ...".
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, regex_engine="rust-regex")

    problem: ClassVar[str] = "invalid-body"
    member_problems: ClassVar[Mapping[str, str]] = {}
    noun: ClassVar[str] = "member"
    ignored: ClassVar[frozenset[str]] = frozenset()


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank_string", "must not be empty")
    return value


MAX_INPUT_CHARS = 100_000
"""Longest ``input`` of a new run (characters)."""

_CUSTOMER_REGEX = r"[^\s\x00-\x1f\x7f]{1,254}"


class StartRunBody(_StrictModel):
    """Body of ``POST agents/{agent}/runs``: ``{"input": "<text>", "runId": "<id>" | null?,
    "customer": "<customer id>" | null?}``.

    ``input`` is the user's text, kept as sent (not stripped) but not blank, at most :data:`MAX_INPUT_CHARS`.
    ``runId`` matches :data:`RUN_ID_PATTERN`; a bad ``runId`` alone is the problem ``invalid-run-id``.
    ``customer`` (1 to 254 characters, no blanks or control characters; an email address for the store) is whom
    the run acts for; the HTTP API lower-cases it.
    """

    member_problems: ClassVar[Mapping[str, str]] = {"runId": "invalid-run-id"}

    input: Annotated[str, AfterValidator(_not_blank), Field(max_length=MAX_INPUT_CHARS)] = Field(
        description="a non-empty string (the user's text)")
    run_id: Annotated[str, Field(pattern=f"^{_RUN_ID_REGEX}$")] | None = Field(
        default=None, alias="runId", description="1 to 100 characters from A-Z, a-z, 0-9, '_' and '-'"
    )
    customer: Annotated[str, Field(pattern=f"^{_CUSTOMER_REGEX}$")] | None = Field(
        default=None, description="a customer id such as an email address (1 to 254 characters, no blanks)"
    )


class DecisionBody(_StrictModel):
    """Body of ``POST runs/{runId}/approvals/{approvalId}``: ``{"approved": bool, "comment": str | null?,
    "argumentsHash": str | null?}`` (``comment`` at most :data:`MAX_COMMENT_CHARS` characters; ``argumentsHash``,
    when sent, must be the pending approval's: the decision then applies only to those arguments)."""

    approved: bool = Field(description="true or false")
    comment: Annotated[str, Field(max_length=MAX_COMMENT_CHARS)] | None = Field(
        default=None, description=f"a string of at most {MAX_COMMENT_CHARS} characters"
    )
    arguments_hash: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")] | None = Field(
        default=None, alias="argumentsHash",
        description="the pending approval's argumentsHash ('sha256:' and 64 lower-case hex digits)"
    )


class CancelBody(_StrictModel):
    """Body of ``POST runs/{runId}/cancel`` (optional; an empty body is ``{}``): ``{"reason": str | null?}``
    (at most :data:`MAX_COMMENT_CHARS` characters)."""

    reason: Annotated[str, Field(max_length=MAX_COMMENT_CHARS)] | None = Field(
        default=None, description=f"a string of at most {MAX_COMMENT_CHARS} characters"
    )


def _split_statuses(value: Any) -> Any:
    return tuple(part.strip() for part in value.split(",")) if isinstance(value, str) else value


def _ascii_integer(value: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only: str.isdigit() is also true for "²" or "٣", which int() refuses. Leading zeros are
        # allowed but bounded so that int() never sees thousands of digits.
        if not re.fullmatch(r"0{0,20}[0-9]{1,6}", text, flags=re.ASCII):
            raise PydanticCustomError("ascii_integer", "must be an integer written with the digits 0-9")
        return int(text)
    return value


class ListRunsQuery(_StrictModel):
    """Query of ``GET runs``: ``agent`` (an agent name), ``status`` (comma list of :data:`RUN_STATUSES`),
    ``top`` (ASCII digits, 1..:data:`MAX_LIST_TOP`, default :data:`DEFAULT_LIST_TOP`), ``continuationToken``
    (opaque, from the previous page).

    Build it with :func:`validate` from the request's query parameters; the host's ``code`` key is ignored,
    any other unknown parameter is a 400 ``invalid-query``.
    """

    problem: ClassVar[str] = "invalid-query"
    noun: ClassVar[str] = "query parameter"
    ignored: ClassVar[frozenset[str]] = frozenset({"code"})  # the Functions host's function key (``?code=``)

    agent: Annotated[str, Field(pattern=f"^{AGENT_NAME_PATTERN.pattern}$")] | None = Field(
        default=None, description="an agent name (1 to 64 characters from A-Z, a-z, 0-9, '_' and '-')"
    )
    status: Annotated[tuple[RunStatus, ...], BeforeValidator(_split_statuses)] | None = Field(
        default=None, description=f"a comma-separated list of {', '.join(RUN_STATUSES)}"
    )
    top: Annotated[int, BeforeValidator(_ascii_integer), Field(ge=1, le=MAX_LIST_TOP)] = Field(
        default=DEFAULT_LIST_TOP, description=f"an integer from 1 to {MAX_LIST_TOP}"
    )
    continuation_token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,600}$")] | None = Field(
        default=None, alias="continuationToken",
        description="the continuationToken of the previous page, as it was returned"
    )


class StartConversationBody(_StrictModel):
    """Body of ``POST agents/{agent}/conversations`` (optional; an empty body is ``{}``): ``{"input": "<text>" |
    null?, "conversationId": "<id>" | null?, "customer": "<customer id>" | null?}``.

    ``input`` is an optional first message (same rules as a run's ``input``); ``conversationId`` follows the rules of
    ``runId`` (:data:`RUN_ID_PATTERN`; a bad one alone is ``invalid-conversation-id``); ``customer`` as for runs.
    """

    member_problems: ClassVar[Mapping[str, str]] = {"conversationId": "invalid-conversation-id"}

    input: Annotated[str, AfterValidator(_not_blank), Field(max_length=MAX_INPUT_CHARS)] | None = Field(
        default=None, description="a non-empty string (the first message)")
    conversation_id: Annotated[str, Field(pattern=f"^{_RUN_ID_REGEX}$")] | None = Field(
        default=None, alias="conversationId", description="1 to 100 characters from A-Z, a-z, 0-9, '_' and '-'"
    )
    customer: Annotated[str, Field(pattern=f"^{_CUSTOMER_REGEX}$")] | None = Field(
        default=None, description="a customer id such as an email address (1 to 254 characters, no blanks)"
    )


class MessageBody(_StrictModel):
    """Body of ``POST conversations/{id}/messages``: ``{"input": "<text>"}`` (not blank, at most
    :data:`MAX_INPUT_CHARS` characters)."""

    input: Annotated[str, AfterValidator(_not_blank), Field(max_length=MAX_INPUT_CHARS)] = Field(
        description="a non-empty string (the user's message)")


class CloseConversationBody(_StrictModel):
    """Body of ``POST conversations/{id}/close``: none, or ``{}`` (no members are defined)."""


class ListConversationsQuery(_StrictModel):
    """Query of ``GET conversations``: ``agent``, ``status`` (comma list of :data:`CONVERSATION_STATUSES`), ``top``
    (1..:data:`MAX_LIST_TOP`, default :data:`DEFAULT_LIST_TOP`) and ``continuationToken``, as for ``GET runs``."""

    problem: ClassVar[str] = "invalid-query"
    noun: ClassVar[str] = "query parameter"
    ignored: ClassVar[frozenset[str]] = frozenset({"code"})

    agent: Annotated[str, Field(pattern=f"^{AGENT_NAME_PATTERN.pattern}$")] | None = Field(
        default=None, description="an agent name (1 to 64 characters from A-Z, a-z, 0-9, '_' and '-')"
    )
    status: Annotated[tuple[ConversationStatus, ...], BeforeValidator(_split_statuses)] | None = Field(
        default=None, description=f"a comma-separated list of {', '.join(CONVERSATION_STATUSES)}"
    )
    top: Annotated[int, BeforeValidator(_ascii_integer), Field(ge=1, le=MAX_LIST_TOP)] = Field(
        default=DEFAULT_LIST_TOP, description=f"an integer from 1 to {MAX_LIST_TOP}"
    )
    continuation_token: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,600}$")] | None = Field(
        default=None, alias="continuationToken",
        description="the continuationToken of the previous page, as it was returned"
    )


MAX_MESSAGES_TOP = 200
"""Largest ``top`` of ``GET conversations/{id}/messages``."""


class ListMessagesQuery(_StrictModel):
    """Query of ``GET conversations/{id}/messages``: ``after`` (a message id, the cursor: only later messages are
    listed) and ``top`` (1..:data:`MAX_MESSAGES_TOP`, default :data:`DEFAULT_LIST_TOP`)."""

    problem: ClassVar[str] = "invalid-query"
    noun: ClassVar[str] = "query parameter"
    ignored: ClassVar[frozenset[str]] = frozenset({"code"})

    after: Annotated[str, Field(pattern=r"^[0-9]{8}-[01]$")] | None = Field(
        default=None, description="a message id such as '00000003-1' (the nextCursor of an earlier answer)"
    )
    top: Annotated[int, BeforeValidator(_ascii_integer), Field(ge=1, le=MAX_MESSAGES_TOP)] = Field(
        default=DEFAULT_LIST_TOP, description=f"an integer from 1 to {MAX_MESSAGES_TOP}"
    )


# ---------------------------------------------------------------------------------------------------------------
# Validation and its one translator

_M = TypeVar("_M", bound=_StrictModel)


def validate(model: type[_M], data: Mapping[str, Any]) -> _M:
    """Validate ``data`` (a parsed JSON object, or query parameters) as ``model``, without ``model.ignored`` keys.

    Returns the model instance; raises the :class:`Problem` of :func:`validation_problem` when it is invalid.
    """
    try:
        return model.model_validate({key: value for key, value in data.items() if key not in model.ignored})
    except ValidationError as error:
        raise validation_problem(error, model) from None


def validation_problem(error: ValidationError, model: type[_StrictModel]) -> Problem:
    """Turn ``error`` (raised by ``model``) into the caller's problem.

    The problem is ``model.problem`` (``invalid-body`` / ``invalid-query``), or the slug that
    ``model.member_problems`` gives when every failing member maps to it (``invalid-run-id``). Extension
    ``fields`` lists the failing members by wire name, unknown members first (in the caller's order), then the
    model's members in definition order. ``detail`` has one sentence per failing member saying what was wrong
    and what is allowed, e.g. ``'input' must be a string, not a number.``
    """
    fields_by_wire = {info.alias or name: info for name, info in model.model_fields.items()}
    unknown: list[str] = []
    by_member: dict[str, list[ErrorDetails]] = {}
    for item in error.errors(include_url=False):
        member = str(item["loc"][0]) if item["loc"] else ""
        if item["type"] == "extra_forbidden":
            if member not in unknown:
                unknown.append(member)
        else:
            by_member.setdefault(member, []).append(item)
    sentences: list[str] = []
    if unknown:
        listed = ", ".join(repr(name) for name in unknown)
        sentences.append(f"Unknown {model.noun}(s) {listed}; allowed: {', '.join(fields_by_wire)}.")
    for member, items in by_member.items():
        info = fields_by_wire.get(member)
        description = (info.description if info else None) or "valid"
        optional = info is not None and not info.is_required()
        literals = [item for item in items if item["type"] == "literal_error"]
        if literals:  # one sentence for all the unknown values of a list member
            listed = ", ".join(repr(item.get("input")) for item in literals)
            expected = (literals[0].get("ctx") or {}).get("expected")
            sentences.append(f"'{member}' has unknown value(s) {listed}; allowed: {expected}.")
        for item in items:
            if item["type"] != "literal_error":
                text = _explain(item, member, description, optional, model.noun)
                if text not in sentences:
                    sentences.append(text)
    failing = [*unknown, *by_member]
    slugs = {model.member_problems.get(name, model.problem) for name in failing}
    slug = slugs.pop() if len(slugs) == 1 else model.problem
    detail = " ".join(sentences) or f"The {model.noun}s are invalid."
    return Problem(slug, detail, {"fields": failing})


def _explain(item: ErrorDetails, member: str, description: str, optional: bool, noun: str) -> str:
    """One sentence for one pydantic error (``item`` is an ``ErrorDetails``) about ``member``."""
    kind: str = item["type"]
    value = item.get("input")
    ctx: dict[str, Any] = item.get("ctx") or {}
    shown = f"'{member}'"
    if kind == "missing":
        return f"The {noun} {shown} is required; it must be {description}."
    if kind in ("string_type", "bool_type", "int_type", "tuple_type"):
        expected = {"string_type": "a string", "bool_type": "true or false", "int_type": "an integer",
                    "tuple_type": "a list"}[kind]
        return f"{shown} must be {expected}{' or null' if optional else ''}, not {json_type(value)}."
    if kind == "string_too_long":
        size = len(value) if isinstance(value, str) else "too many"
        return f"{shown} has {size} characters; the limit is {ctx.get('max_length')}."
    if kind == "string_pattern_mismatch":
        return f"{shown} must be {description}; got {value!r}."
    if kind == "blank_string":
        return f"{shown} must not be empty."
    if kind in ("greater_than_equal", "less_than_equal", "ascii_integer"):
        return f"{shown} must be {description}, not {value!r}."
    return f"{shown} is invalid ({item.get('msg')}); it must be {description}."
