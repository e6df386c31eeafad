"""``local_runtime.limits``: how payloads are measured (UTF-8 bytes; the custom status as the extension counts it),
the boundary, the messages, and the settings (environment, flags, ``0`` = off, bad values)."""

from __future__ import annotations

import pytest

from local_runtime.__main__ import main
from local_runtime.limits import (
    DEFAULT_MAX_CUSTOM_STATUS_KB,
    DEFAULT_MAX_PAYLOAD_BYTES,
    ENV_MAX_CUSTOM_STATUS_KB,
    ENV_MAX_PAYLOAD_BYTES,
    PayloadLimits,
    utf8_size,
    utf16_size,
)


def test_the_defaults_are_the_production_values():
    assert (DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_MAX_CUSTOM_STATUS_KB) == (1_048_576, 16)
    assert PayloadLimits.from_env({}) == PayloadLimits(1_048_576, 16)


def test_a_payload_of_exactly_the_limit_passes_and_one_byte_more_fails_naming_kind_size_and_limit():
    limits = PayloadLimits(max_payload_bytes=100)
    assert limits.payload_error("activity output", "a" * 100) is None
    assert limits.payload_error("activity output", None) is None
    message = limits.payload_error("activity output", "a" * 101)
    assert message == ("The activity output is 101 bytes of UTF-8 JSON, more than the Durable Task Scheduler's "
                       "payload limit of 100 bytes (local runtime: LOCAL_RUNTIME_MAX_PAYLOAD_BYTES).")
    assert "aaa" not in message


def test_sizes_are_utf8_bytes_not_characters():
    limits = PayloadLimits(max_payload_bytes=100)
    assert utf8_size("€") == 3 and utf8_size("😀") == 4 and utf8_size("\ud800") == 3
    assert limits.payload_error("event", "€" * 33) is None                  # 99 bytes
    assert limits.payload_error("event", "€" * 34) is not None               # 102 bytes in 34 characters
    assert "102 bytes" in (limits.payload_error("event", "€" * 34) or "")
    assert PayloadLimits(max_payload_bytes=1_048_576).payload_error("x", "é" * 524_289) == (
        "The x is 1,048,578 bytes of UTF-8 JSON, more than the Durable Task Scheduler's payload limit of "
        "1,048,576 bytes (local runtime: LOCAL_RUNTIME_MAX_PAYLOAD_BYTES).")


def test_the_custom_status_fails_when_whole_kb_of_utf16_exceed_16_as_the_extension_counts():
    limits = PayloadLimits()
    assert utf16_size("a") == 2 and utf16_size("😀") == 4
    assert limits.custom_status_error("a" * 8703) is None                   # 17,406 bytes: 16 KB rounded down
    assert limits.custom_status_error("a" * 8704) == (                      # 17,408 bytes: 17 KB
        "The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. The current payload size is 17 KB.")
    assert limits.custom_status_error("😀" * 4352) is not None              # astral: two UTF-16 units each
    assert limits.custom_status_error(None) is None
    # off: then only the payload limit applies to it
    assert PayloadLimits(max_payload_bytes=50_000, max_custom_status_kb=0).custom_status_error("a" * 40_000) is None
    assert "custom status is 50,001 bytes" in (
        PayloadLimits(max_payload_bytes=50_000, max_custom_status_kb=0).custom_status_error("a" * 50_001) or "")


def test_zero_turns_a_limit_off():
    off = PayloadLimits.from_env({ENV_MAX_PAYLOAD_BYTES: "0", ENV_MAX_CUSTOM_STATUS_KB: "0"})
    assert off == PayloadLimits(0, 0)
    assert off.payload_error("orchestration input", "x" * 5_000_000) is None
    assert off.custom_status_error("x" * 100_000) is None


def test_settings_from_the_environment_and_flags_that_win():
    env = {ENV_MAX_PAYLOAD_BYTES: " 65536 ", ENV_MAX_CUSTOM_STATUS_KB: "8"}
    assert PayloadLimits.from_env(env) == PayloadLimits(65_536, 8)
    assert PayloadLimits.from_env({ENV_MAX_PAYLOAD_BYTES: "1_000"}).max_payload_bytes == 1000
    assert PayloadLimits.from_env({ENV_MAX_PAYLOAD_BYTES: ""}).max_payload_bytes == DEFAULT_MAX_PAYLOAD_BYTES
    assert PayloadLimits.from_env(env, max_payload_bytes=0, max_custom_status_kb=16) == PayloadLimits(0, 16)


@pytest.mark.parametrize("raw", ["1MB", "-1", "1.5", "lots"])
def test_a_setting_that_is_not_a_whole_number_of_at_least_zero_is_refused(raw):
    with pytest.raises(ValueError, match=ENV_MAX_PAYLOAD_BYTES):
        PayloadLimits.from_env({ENV_MAX_PAYLOAD_BYTES: raw})


def test_the_cli_refuses_a_negative_flag(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--max-payload-bytes", "-5"])
    assert exc.value.code == 2
    assert "--max-payload-bytes" in capsys.readouterr().err
