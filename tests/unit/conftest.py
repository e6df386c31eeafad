"""Fixtures shared by the unit tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from durable_agents import _runner as durable_runner


@pytest.fixture
def fresh_runner_cache() -> Iterator[None]:
    """Start and end with the runner's default live-run cache (64 sessions) and no live worker, as after a restart;
    modules that run orchestrations use it for every test (``pytestmark``)."""
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()
    yield
    durable_runner.set_session_cache_size(64)
    durable_runner.clear_session_cache()


@pytest.fixture(autouse=True)
def _audit_in_tmp(monkeypatch, tmp_path):
    """Version-2 runs append their approvals to the audit store: keep it in the test's ``tmp_path``, never under
    the repository's ``.local/``."""
    monkeypatch.setenv("AUDIT_PATH", str(tmp_path / "audit.sqlite3"))
    monkeypatch.setenv("PAYLOAD_PATH", str(tmp_path / "payloads"))  # version-3 runs store large payloads
