"""The installable distribution: the wheel `pip install .` builds from a clone, its metadata and contents."""

from __future__ import annotations

import email
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import durable_agents

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check", "-w", str(out),
         str(ROOT)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    [path] = list(out.glob("*.whl"))
    return zipfile.ZipFile(path)


def _metadata(wheel: zipfile.ZipFile) -> email.message.Message:
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
    return email.message_from_string(wheel.read(name).decode())


def test_the_wheel_has_the_library_its_test_kit_the_local_runtime_and_the_typing_marker(wheel):
    names = set(wheel.namelist())
    for expected in ("durable_agents/__init__.py", "durable_agents/py.typed", "durable_agents/testing/__init__.py",
                     "durable_agents/_runner/episode.py", "local_runtime/__main__.py", "local_runtime/engine.py"):
        assert expected in names, expected
    assert not [n for n in names if n.startswith(("tests/", "activities/", "agents/", "infra/"))]
    assert "function_app.py" not in names


def test_the_metadata_names_a_non_microsoft_distribution_with_the_package_version_and_the_local_extra(wheel):
    meta = _metadata(wheel)
    assert meta["Name"] == "durable-agents-functions" and not meta["Name"].startswith("azure")
    assert meta["Version"] == durable_agents.__version__
    assert "local" in meta.get_all("Provides-Extra")
    requires = meta.get_all("Requires-Dist")
    assert any(r.startswith("azure-functions-durable") and "<2" in r for r in requires)
    assert any(r.startswith("aiohttp") and 'extra == "local"' in r for r in requires)


def test_the_console_script_runs_the_local_runtime(wheel):
    [name] = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    entry_points = wheel.read(name).decode()
    assert "durable-agents-local = local_runtime.__main__:main" in entry_points
    help_text = subprocess.run([Path(sys.executable).with_name("durable-agents-local"), "--help"],
                               capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "--app-dir" in help_text.stdout
