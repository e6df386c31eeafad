"""Payloads by reference: what keeps a run's activity inputs and outputs under the Durable Task Scheduler's limits
(internal; docs/internals.md "Payloads by reference").

Two markers stand for data kept in the payload blob store (:mod:`durable_agents._blobs`, content-addressed under
the run's prefix), and only activities read or write the store; orchestrator code only moves markers around:

* **earlier items** - an input item ``{"role": "user", "content": "[[durable_agents.items <ref>]]"}`` stands for a
  list of items stored by an earlier ``invoke_model`` call of the run (its whole input, resolved). A version-3 run
  sends the activity ``"run": <instance id>``; the activity expands such items before it calls the model and,
  when the resolved input is larger than :data:`STORE_INPUT_MIN_BYTES`, stores it and answers ``"inputRef"``. The
  orchestrator then sends the next call's input as that marker plus the items added since
  (:func:`compact_items`), so an ``invoke_model`` input holds one turn, not the whole conversation, and a run that
  continues as new carries the marker instead of its history.
* **a large result** - an activity tool whose result's JSON is larger than ``PAYLOAD_INLINE_MAX_BYTES`` (default
  :data:`DEFAULT_INLINE_MAX_BYTES`) stores it and returns the text
  ``[[durable_agents.blob {"ref": ..., "run": ..., "bytes": n}]]`` (:func:`offload_result`); the model sees the real
  result, because ``invoke_model`` expands a ``function_call_output`` whose output is exactly such a marker.

A marker that cannot be resolved (the run was purged, the blob expired) fails the model call with a
non-retryable ``PayloadMissing`` error, never a silent gap.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from ._blobs import BlobStore, get_blob_store, get_payload, is_payload_ref, put_payload
from ._config import get_setting

__all__ = [
    "DEFAULT_INLINE_MAX_BYTES",
    "PayloadMissing",
    "STORE_INPUT_MIN_BYTES",
    "compact_items",
    "is_items_marker",
    "items_marker",
    "offload_result",
    "resolve_model_payload",
]

DEFAULT_INLINE_MAX_BYTES = 64 * 1024
"""``PAYLOAD_INLINE_MAX_BYTES`` when unset: larger tool results go to the blob store (UTF-8 bytes of their JSON)."""

STORE_INPUT_MIN_BYTES = 8 * 1024
"""A version-3 ``invoke_model`` call stores its resolved input (and answers ``inputRef``) above this many bytes."""

_ITEMS_RE = re.compile(r"^\[\[durable_agents\.items (blob:sha256:[0-9a-f]{64})\]\]$")
_BLOB_RE = re.compile(r"^\[\[durable_agents\.blob (\{.*\})\]\]$", re.DOTALL)


def items_marker(ref: str) -> dict[str, str]:
    """The input item that stands for the stored items ``ref`` (``"blob:sha256:<hex>"``)."""
    return {"role": "user", "content": f"[[durable_agents.items {ref}]]"}


def is_items_marker(item: Any) -> str | None:
    """The reference an earlier-items marker item stands for, or ``None`` for any other item."""
    if isinstance(item, Mapping) and item.get("role") == "user" and set(item) <= {"role", "content", "type"}:
        content = item.get("content")
        match = _ITEMS_RE.match(content) if isinstance(content, str) else None
        if match is not None:
            return match.group(1)
    return None


def compact_items(items: list[Any], stored: list[tuple[list[Any], str]]) -> list[Any]:
    """``items`` with its longest prefix that equals the input of a stored call replaced by that call's marker.

    ``stored`` lists ``(input items as sent, inputRef)`` of the run's earlier ``invoke_model`` calls that stored
    their input (most recent last). Pure and deterministic: the refs come from activity results in the history.
    """
    best: tuple[int, str] | None = None
    for sent, ref in stored:
        size = len(sent)
        if size and size <= len(items) and (best is None or size > best[0]) and items[:size] == sent:
            best = (size, ref)
    if best is None:
        return items
    return [items_marker(best[1]), *items[best[0]:]]


def _inline_max() -> int:
    text = (get_setting("PAYLOAD_INLINE_MAX_BYTES") or "").strip()
    if text.isascii() and text.isdigit():
        return int(text)
    return DEFAULT_INLINE_MAX_BYTES


def offload_result(value: Any, run_id: str | None, *, store: BlobStore | None = None) -> Any:
    """An activity tool's result as it goes into the history: ``value`` itself, or, when its JSON is larger than
    ``PAYLOAD_INLINE_MAX_BYTES`` (0: never) and the call belongs to a run, the blob marker text of the stored
    value (a string stays a string; anything else is stored as its JSON text, which is what the model would read).
    Runs in the activity (it reads settings and writes the store)."""
    limit = _inline_max()
    if not run_id or limit <= 0:
        return value
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return value
    ref = put_payload(store or get_blob_store(), run_id, data)
    marker = json.dumps({"ref": ref, "run": run_id, "bytes": len(data)}, separators=(",", ":"))
    return f"[[durable_agents.blob {marker}]]"


def _blob_text(text: str, load: Callable[[str, str], bytes]) -> str | None:
    match = _BLOB_RE.match(text)
    if match is None:
        return None
    try:
        info = json.loads(match.group(1))
    except ValueError:
        return None
    if not isinstance(info, dict) or not is_payload_ref(info.get("ref")) or not isinstance(info.get("run"), str):
        return None
    return load(info["run"], info["ref"]).decode("utf-8", "surrogatepass")


class PayloadMissing(Exception):
    """A marker in a model request names a payload the blob store does not have (purged, expired, corrupt)."""


def resolve_model_payload(payload: Mapping[str, Any], *, store: BlobStore | None = None
                          ) -> tuple[dict[str, Any], str | None]:
    """The ``invoke_model`` activity input with every marker expanded, and the ``inputRef`` to answer.

    Earlier-items markers are expanded with the items stored for the run ``payload["run"]``; blob markers in
    ``function_call_output`` items with their stored text. When ``"run"`` is present and the resolved input's JSON
    is larger than :data:`STORE_INPUT_MIN_BYTES`, the resolved input is stored and its reference returned (else
    ``None``). ``"run"`` is removed from the result. Raises :class:`PayloadMissing` for a marker that cannot be
    resolved. Runs in the activity.
    """
    data = dict(payload)
    run = data.pop("run", None)
    request = data.get("request")
    if not isinstance(request, Mapping) or not isinstance(request.get("input"), list):
        return data, None
    cache: dict[tuple[str, str], bytes] = {}
    backend = store

    def load(run_id: str, ref: str) -> bytes:
        nonlocal backend
        if (run_id, ref) not in cache:
            backend = backend or get_blob_store()
            try:
                cache[(run_id, ref)] = get_payload(backend, run_id, ref)
            except (KeyError, ValueError) as exc:
                raise PayloadMissing(str(exc)) from None
        return cache[(run_id, ref)]

    def flatten(items: list[Any], depth: int = 0) -> list[Any]:  # earlier-items markers → the stored items
        out: list[Any] = []
        for item in items:
            ref = is_items_marker(item)
            if ref is not None and isinstance(run, str) and depth < 8:
                stored = json.loads(load(run, ref))
                out.extend(flatten(stored, depth + 1) if isinstance(stored, list) else [])
            else:
                out.append(item)
        return out

    def expand_results(items: list[Any]) -> list[Any]:  # blob markers of large tool results → their text
        out: list[Any] = []
        for item in items:
            if isinstance(item, Mapping) and item.get("type") == "function_call_output" \
                    and isinstance(item.get("output"), str):
                text = _blob_text(item["output"], load)
                if text is not None:
                    item = {**item, "output": text}
            out.append(item)
        return out

    flat = flatten(list(request["input"]))
    input_ref = None
    if isinstance(run, str) and run:  # stored with the large results still as markers: each is stored once
        blob = json.dumps(flat, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
        if len(blob) > STORE_INPUT_MIN_BYTES:
            backend = backend or get_blob_store()
            input_ref = put_payload(backend, run, blob)
    data["request"] = {**request, "input": expand_results(flat)}
    return data, input_ref
