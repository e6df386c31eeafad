"""tests/support/azurite.py: missing Azurite fails under CI and skips locally; a broken command is reported."""

from __future__ import annotations

import pytest

from tests.support import azurite


def test_missing_azurite_fails_when_ci_is_set(monkeypatch):
    monkeypatch.setattr(azurite, "find_azurite_table", lambda: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        azurite.require_azurite()


def test_missing_azurite_skips_locally_with_the_install_hint(monkeypatch):
    monkeypatch.setattr(azurite, "find_azurite_table", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="install-azurite.sh"):
        azurite.require_azurite()


def test_a_process_that_exits_at_once_is_an_error(tmp_path):
    with pytest.raises(azurite.AzuriteError, match="exited with code 1"):
        with azurite.azurite_table(tmp_path, command=["false"]):
            pass  # pragma: no cover - never reached


def test_connection_string_uses_the_well_known_account_on_loopback():
    text = azurite.connection_string(12345)
    assert "AccountName=devstoreaccount1;" in text
    assert "TableEndpoint=http://127.0.0.1:12345/devstoreaccount1;" in text
