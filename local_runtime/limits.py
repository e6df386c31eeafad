"""The payload limits of the Durable Task Scheduler and the extension, as the local runtime enforces them.

Two separate limits (sources and the failure each one causes: docs/internals.md, "Payload limits (local runtime)"):

* **The scheduler's message size limit**: every orchestration input, activity input and output, sub-orchestration
  input, orchestration output, continue-as-new input, external event payload and custom status is at most
  ``max_payload_bytes`` bytes of UTF-8 JSON text (default 1 MiB = 1,048,576 bytes; the Durable Task Scheduler's
  "1 MiB scheduler ceiling", which the SDKs' large-payload threshold may not exceed). A payload of exactly the
  limit passes; one byte more fails.
* **The extension's custom status limit** (``DurableOrchestrationContext.SetCustomStatus`` →
  ``MessagePayloadDataConverter.Serialize(value, 16)``, any backend): the custom status fails when
  ``floor(UTF-16 bytes / 1024) > max_custom_status_kb`` (default 16), that is from 17,408 UTF-16 bytes
  (8,704 characters of the BMP) on.

Both are read once when the runtime starts (:meth:`PayloadLimits.from_env`); ``0`` disables a limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["PayloadLimits", "PayloadTooLarge", "DEFAULT_MAX_PAYLOAD_BYTES", "DEFAULT_MAX_CUSTOM_STATUS_KB",
           "ENV_MAX_PAYLOAD_BYTES", "ENV_MAX_CUSTOM_STATUS_KB", "utf8_size", "utf16_size"]

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""1 MiB: the Durable Task Scheduler's message size limit, in bytes of UTF-8."""
DEFAULT_MAX_CUSTOM_STATUS_KB = 16
"""The extension's ``MaxCustomStatusPayloadSizeInKB`` (whole KB of UTF-16, rounded down)."""
ENV_MAX_PAYLOAD_BYTES = "LOCAL_RUNTIME_MAX_PAYLOAD_BYTES"
ENV_MAX_CUSTOM_STATUS_KB = "LOCAL_RUNTIME_MAX_CUSTOM_STATUS_KB"


def utf8_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8 (a lone surrogate counts as the 3 bytes of U+FFFD, as .NET's encoder does)."""
    return len(text.encode("utf-8", "surrogatepass"))


def utf16_size(text: str) -> int:
    """Bytes of ``text`` in UTF-16 (2 per BMP character, 4 per character beyond U+FFFF)."""
    return len(text.encode("utf-16-le", "surrogatepass"))


def _setting(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = (environ.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes or 0 (no limit), not {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must be 0 (no limit) or more, not {value}")
    return value


class PayloadTooLarge(ValueError):
    """A client call (start, raise event) whose payload the scheduler would refuse; ``str()`` is the message of
    :meth:`PayloadLimits.payload_error` (kind, size, limit; never the payload). Nothing was written."""


@dataclass(frozen=True)
class PayloadLimits:
    """The limits one runtime enforces.

    ``max_payload_bytes``: the scheduler's limit per payload, bytes of UTF-8 (0: none). ``max_custom_status_kb``:
    the extension's custom status limit, whole KB of UTF-16 rounded down (0: none).
    """

    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    max_custom_status_kb: int = DEFAULT_MAX_CUSTOM_STATUS_KB

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, max_payload_bytes: int | None = None,
                 max_custom_status_kb: int | None = None) -> PayloadLimits:
        """The limits from ``LOCAL_RUNTIME_MAX_PAYLOAD_BYTES`` and ``LOCAL_RUNTIME_MAX_CUSTOM_STATUS_KB`` in
        ``environ`` (default ``os.environ``; unset or empty → the production default); an explicit argument (the
        CLI flag) wins over the variable. Raises ValueError for a value that is not a whole number ≥ 0."""
        env = os.environ if environ is None else environ
        payload = (_setting(env, ENV_MAX_PAYLOAD_BYTES, DEFAULT_MAX_PAYLOAD_BYTES)
                   if max_payload_bytes is None else max_payload_bytes)
        status = (_setting(env, ENV_MAX_CUSTOM_STATUS_KB, DEFAULT_MAX_CUSTOM_STATUS_KB)
                  if max_custom_status_kb is None else max_custom_status_kb)
        if payload < 0 or status < 0:
            raise ValueError("payload limits must be 0 (no limit) or more")
        return cls(payload, status)

    def payload_error(self, kind: str, text: str | None) -> str | None:
        """Why the payload ``text`` (the JSON text the runtime would hand to the scheduler; ``kind`` names it, e.g.
        ``"activity output"``) is refused, or None when it fits. The message names the kind, the size and the
        limit, never the payload."""
        if not self.max_payload_bytes or text is None or len(text) * 4 <= self.max_payload_bytes:
            return None  # a character is at most 4 bytes of UTF-8: short texts need no encoding
        size = utf8_size(text)
        if size <= self.max_payload_bytes:
            return None
        return (f"The {kind} is {size:,} bytes of UTF-8 JSON, more than the Durable Task Scheduler's payload "
                f"limit of {self.max_payload_bytes:,} bytes (local runtime: {ENV_MAX_PAYLOAD_BYTES}).")

    def custom_status_error(self, text: str | None) -> str | None:
        """Why the custom status JSON text is refused, or None: first the extension's rule, worded as the
        extension words it (``MessagePayloadDataConverter.Serialize``), then the scheduler's payload limit."""
        if text is None:
            return None
        if self.max_custom_status_kb:
            kb = utf16_size(text) // 1024
            if kb > self.max_custom_status_kb:
                return (f"The UTF-16 size of the JSON-serialized payload must not exceed "
                        f"{self.max_custom_status_kb:,} KB. The current payload size is {kb:,} KB.")
        return self.payload_error("custom status", text)
