"""azure.yaml, its postdeploy hook, host.json, .funcignore and the online infra validation workflow."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest
import yaml

from tests.infra.bicep_model import REPO_ROOT

# First non-preview extension bundle that ships Microsoft.Azure.WebJobs.Extensions.DurableTask.AzureManaged
# (storage provider "azureManaged"): in Azure/azure-functions-extension-bundles, tag 4.29.0's
# src/Microsoft.Azure.Functions.ExtensionBundle/extensions.json lacks it and tag 4.30.0 (2025-10-27) has it.
FIRST_BUNDLE_WITH_AZURE_MANAGED = (4, 30, 0)
FIRST_BUNDLE_WITH_MCP_RESULT_SCHEMA = (4, 33, 0)
"""The first bundle whose MCP extension (1.2.0) takes ``useResultSchema`` (extension 1.1.0+): the app's MCP tools
answer call_tool_result envelopes (docs/mcp-extension-protocol.md §7)."""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("."))


def parse_version_range(text: str) -> tuple[tuple[int, ...], bool, tuple[int, ...], bool]:
    """Parse a NuGet-style interval as host.json ``extensionBundle.version`` uses it, e.g. ``[4.30.0, 5.0.0)``.

    Returns ``(low, low_inclusive, high, high_inclusive)``. Raises ``ValueError`` for anything else (a bare
    version or wildcards such as ``[4.*, 5.0.0)`` are ranges whose lower bound cannot be checked).
    """
    match = re.fullmatch(r"\s*([\[(])\s*([\d.]+)\s*,\s*([\d.]+)\s*([\])])\s*", text)
    if not match:
        raise ValueError(f"not a closed version interval: {text!r}")
    return _version(match[2]), match[1] == "[", _version(match[3]), match[4] == "]"


def _in_range(version: tuple[int, ...], rng) -> bool:
    low, low_inc, high, high_inc = rng
    above = version > low or (low_inc and version == low)
    below = version < high or (high_inc and version == high)
    return above and below


# ---------------------------------------------------------------- azure.yaml and the hook


def _azure_yaml() -> dict:
    return yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())


def test_azure_yaml_declares_one_python_function_service_at_the_root():
    doc = _azure_yaml()
    assert list(doc["services"]) == ["api"]
    api = doc["services"]["api"]
    assert api["host"] == "function"
    assert api["language"] == "python"
    assert (REPO_ROOT / api["project"]).resolve() == REPO_ROOT  # the app lives at the repository root
    assert doc["infra"] == {"provider": "bicep", "path": "infra", "module": "main"}


def test_postdeploy_hook_has_sh_and_pwsh_variants_that_exist():
    hooks = _azure_yaml()["hooks"]
    hook = hooks.get("postdeploy") or hooks["postprovision"]
    assert hook["posix"]["shell"] == "sh"
    assert hook["windows"]["shell"] == "pwsh"
    for variant in ("posix", "windows"):
        script = REPO_ROOT / hook[variant]["run"]
        assert script.is_file(), script
        text = script.read_text()
        assert "SERVICE_API_URI" in text and "az functionapp keys list" in text


def _run_posix_hook(env: dict[str, str]) -> subprocess.CompletedProcess:
    script = REPO_ROOT / _azure_yaml()["hooks"]["postdeploy"]["posix"]["run"]
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(["sh", str(script)], env=clean, capture_output=True, text=True, timeout=30)


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_posix_hook_prints_the_api_base_url_and_the_key_command():
    result = _run_posix_hook({
        "SERVICE_API_URI": "https://func-api-abc.azurewebsites.net/",
        "AZURE_FUNCTION_NAME": "func-api-abc",
        "AZURE_RESOURCE_GROUP": "rg-dev",
        "DURABLE_TASK_SCHEDULER_DASHBOARD_URL": "https://dashboard.example/hub",
    })
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Durable agents API: https://func-api-abc.azurewebsites.net/api\n" in out
    assert "az functionapp keys list -g rg-dev -n func-api-abc --query functionKeys.default -o tsv" in out
    assert 'curl -s "https://func-api-abc.azurewebsites.net/api/agents" -H "x-functions-key: $key"' in out
    assert "https://dashboard.example/hub" in out


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_posix_hook_fails_clearly_before_provisioning():
    result = _run_posix_hook({})
    assert result.returncode != 0
    assert "azd provision" in result.stderr


# ---------------------------------------------------------------- host.json


def _host() -> dict:
    return json.loads((REPO_ROOT / "host.json").read_text())


def test_host_json_uses_the_durable_task_scheduler_and_the_contract_names():
    host = _host()
    assert host["version"] == "2.0"
    durable = host["extensions"]["durableTask"]
    assert durable["hubName"] == "%TASKHUB_NAME%"
    assert durable["storageProvider"] == {
        "type": "azureManaged",
        "connectionStringName": "DURABLE_TASK_SCHEDULER_CONNECTION_STRING",
    }
    assert host["extensions"]["http"]["routePrefix"] == "api"


def test_extension_bundle_range_only_admits_bundles_that_support_azure_managed_and_mcp_result_schemas():
    bundle = _host()["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    rng = parse_version_range(bundle["version"])
    assert _in_range(FIRST_BUNDLE_WITH_MCP_RESULT_SCHEMA, rng)
    low, low_inclusive, high, _ = rng
    for first, what in ((FIRST_BUNDLE_WITH_AZURE_MANAGED, "the azureManaged provider"),
                        (FIRST_BUNDLE_WITH_MCP_RESULT_SCHEMA, "MCP result schemas")):
        assert low > first or (low == first and low_inclusive), f"the range admits a bundle without {what}"
    assert high <= (5, 0, 0), "bundle 5.x is a different major"


def test_version_range_parser():
    rng = parse_version_range("[4.30.0, 5.0.0)")
    assert rng == ((4, 30, 0), True, (5, 0, 0), False)
    assert _in_range((4, 30, 0), rng) and _in_range((4, 38, 1), rng)
    assert not _in_range((4, 29, 0), rng) and not _in_range((5, 0, 0), rng)
    assert not _in_range((4, 30, 0), parse_version_range("(4.30.0, 5.0.0)"))
    with pytest.raises(ValueError):
        parse_version_range("[4.*, 5.0.0)")


def test_host_json_logging_is_configured():
    logging = _host()["logging"]
    assert logging["logLevel"]["default"] == "Information"
    assert logging["logLevel"]["DurableTask.Core"] == "Warning"
    sampling = logging["applicationInsights"]["samplingSettings"]
    assert sampling["isEnabled"] is True
    assert set(sampling["excludedTypes"].split(";")) == {"Request", "Exception"}


# ---------------------------------------------------------------- .funcignore


EXCLUDED = [
    "tests/unit/test_x.py", "tests/support/model_server.py", "local_runtime/__init__.py", "local_runtime/host.py",
    ".venv/bin/python", ".local/durable-state.sqlite3", ".local/helper-preamble.md", "scripts/test.sh",
    "benchmarks/bench.py", "docs/internals.md", ".github/workflows/validate-infra.yml", ".ci/run",
    "infra/main.bicep", "requirements-dev.txt", "refund-ledger.sqlite3", "data/cache.sqlite3",
    "local.settings.json", "durable_agents/__pycache__/_config.cpython-311.pyc", ".azure/dev/.env",
    "durable_agents/testing/__init__.py", "durable_agents/testing/_harness.py", "tests/golden/histories/handoff.json",
    "build/lib/durable_agents/__init__.py", "durable_agents_functions.egg-info/PKG-INFO",
]
DEPLOYED = [
    "function_app.py", "host.json", "requirements.txt", "durable_agents/_config.py", "durable_agents/__init__.py",
    "durable_agents/_runner/episode.py", "durable_agents/_http/handlers.py", "durable_agents/py.typed",
    "agents/support.py", "agents/support_demo.py", "activities/ledger.py", "data/orders.json",
]


@pytest.mark.skipif(shutil.which("git") is None, reason="git is needed to apply gitignore rules")
def test_funcignore_keeps_tests_tooling_and_local_data_out_of_the_package(tmp_path):
    # .funcignore uses gitignore syntax; git applies it exactly. A scratch repository keeps this repository's own
    # .gitignore out of the decision.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    shutil.copy(REPO_ROOT / ".funcignore", tmp_path / "funcignore")
    result = subprocess.run(
        ["git", "-c", f"core.excludesFile={tmp_path / 'funcignore'}", "check-ignore", "--no-index", "--stdin"],
        cwd=tmp_path, input="\n".join(EXCLUDED + DEPLOYED) + "\n", capture_output=True, text=True, timeout=30,
    )
    assert result.returncode in (0, 1), result.stderr
    ignored = set(result.stdout.split())
    assert sorted(set(EXCLUDED) - ignored) == [], "should be excluded from the package"
    assert sorted(set(DEPLOYED) & ignored) == [], "must be deployed"


# ---------------------------------------------------------------- online validation workflow


def test_validate_infra_workflow_builds_lints_and_runs_what_if_with_oidc():
    doc = yaml.safe_load((REPO_ROOT / ".github" / "workflows" / "validate-infra.yml").read_text())
    triggers = doc.get("on", doc.get(True))  # PyYAML reads the bare key `on` as True
    assert "workflow_dispatch" in triggers
    runs = "\n".join(
        step.get("run", "") for job in doc["jobs"].values() for step in job["steps"]
    )
    assert "az bicep build --file infra/main.bicep" in runs
    assert "az bicep lint --file infra/main.bicep" in runs
    assert "az deployment sub what-if" in runs and "--template-file infra/main.bicep" in runs
    what_if = doc["jobs"]["what-if"]
    assert what_if["permissions"]["id-token"] == "write"
    login = [s for s in what_if["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
    assert len(login) == 1
    assert set(login[0]["with"]) == {"client-id", "tenant-id", "subscription-id"}  # OIDC: no client secret
