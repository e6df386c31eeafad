"""JSON that every parser accepts: no NaN / Infinity, no lone surrogates (internal).

Python's ``json`` writes ``NaN`` / ``Infinity`` (not JSON: RFC 8259 section 6) and keeps lone surrogates
(``"\\ud800"``) that cannot be encoded as UTF-8, so one such value from a model's tool arguments or a tool result
makes an HTTP answer invalid or a model request fail. Everything the product writes for a caller or a model goes
through :func:`json_safe` first; :func:`loads_strict` parses model-written JSON text without accepting the
non-standard constants.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["dumps", "has_lone_surrogate", "has_non_finite", "json_safe", "loads_strict", "parse_json_text",
           "replace_surrogates"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def has_lone_surrogate(text: str) -> bool:
    """Whether ``text`` holds a UTF-16 surrogate code point (U+D800..U+DFFF): it cannot be encoded as UTF-8."""
    return _SURROGATE.search(text) is not None


def _join_pair(match: re.Match[str]) -> str:
    pair = match.group(0)
    high, low = pair[0], pair[1]
    return chr(0x10000 + ((ord(high) - 0xD800) << 10) + (ord(low) - 0xDC00))


def replace_surrogates(text: str) -> str:
    """``text`` with no surrogate code points: a high+low pair becomes the character it encodes (what a JSON reader
    makes of ``"\\ud83d\\ude00"``), every other surrogate U+FFFD (the replacement character)."""
    if not has_lone_surrogate(text):
        return text
    return _SURROGATE.sub("\ufffd", _SURROGATE_PAIR.sub(_join_pair, text))


def json_safe(value: Any, *, floats: bool = True) -> Any:
    """A copy of the JSON value ``value`` that is valid JSON and UTF-8 encodable.

    Strings (and object member names) get lone surrogates replaced by U+FFFD; floats that are NaN or infinite
    become ``None`` (unless ``floats`` is false: then only strings change); tuples become lists; other values are
    returned as they are (``json.dumps`` decides what it can write).
    """
    if isinstance(value, str):
        return replace_surrogates(value)
    if isinstance(value, float):
        return value if not floats or math.isfinite(value) else None
    if isinstance(value, dict):
        return {replace_surrogates(k) if isinstance(k, str) else k: json_safe(v, floats=floats)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, floats=floats) for v in value]
    return value


def has_non_finite(value: Any) -> bool:
    """Whether the JSON value ``value`` holds a float that is NaN or infinite (anywhere inside)."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(has_non_finite(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(has_non_finite(item) for item in value)
    return False


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False, **kwargs)``: never invalid JSON."""
    return json.dumps(json_safe(value), ensure_ascii=False, allow_nan=False, **kwargs)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads_strict(text: str) -> Any:
    """Parse JSON text, refusing ``NaN``, ``Infinity`` and ``-Infinity`` (``ValueError``, like any invalid JSON,
    ``json.JSONDecodeError`` being a ``ValueError``)."""
    return json.loads(text, parse_constant=_refuse_constant)


def parse_json_text(value: Any, depth: int = 1) -> Any:
    """``value`` with up to ``depth`` layers of JSON text decoded: a status field or event payload may be a JSON
    value or JSON text, and the Python client double-encodes event payloads (protocol §1). A string that is not
    JSON stops the decoding and is returned as it is; anything else is returned unchanged."""
    for _ in range(depth):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            break
    return value

