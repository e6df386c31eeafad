"""The azd postdeploy hooks tell a deployer how to call the API behind App Service authentication and how to grant
the Approver / Support app roles, from the provisioning outputs azd exports (main.bicep ``AUTH_*`` outputs)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from tests.infra.bicep_model import REPO_ROOT, load

AUTH_OUTPUTS = ("AUTH_CLIENT_ID", "AUTH_SERVICE_PRINCIPAL_ID", "AUTH_APPROVER_ROLE_ID", "AUTH_SUPPORT_ROLE_ID")


def _hook(variant: str):
    return REPO_ROOT / yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())["hooks"]["postdeploy"][variant]["run"]


def _run_posix(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
    return subprocess.run(["sh", str(_hook("posix"))], env=clean, capture_output=True, text=True, timeout=30)


BASE_ENV = {
    "SERVICE_API_URI": "https://func-api-abc.azurewebsites.net/",
    "AZURE_FUNCTION_NAME": "func-api-abc",
    "AZURE_RESOURCE_GROUP": "rg-dev",
}


def test_both_hooks_read_the_auth_outputs_that_main_bicep_declares():
    outputs = load("main.bicep")["outputs"]
    for name in AUTH_OUTPUTS:
        assert name in outputs, name
        for variant in ("posix", "windows"):
            assert name in _hook(variant).read_text(), f"{variant} hook does not read {name}"


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_posix_hook_prints_the_token_command_and_calls_the_api_with_key_and_bearer_token():
    result = _run_posix({**BASE_ENV, "AUTH_CLIENT_ID": "00000000-0000-0000-0000-0000000000c1"})
    assert result.returncode == 0, result.stderr
    out = result.stdout
    token = "az account get-access-token --scope api://00000000-0000-0000-0000-0000000000c1/user_impersonation"
    assert f"token=$({token} --query accessToken -o tsv)" in out
    assert (
        'curl -s "https://func-api-abc.azurewebsites.net/api/agents" -H "x-functions-key: $key" '
        '-H "Authorization: Bearer $token"'
    ) in out


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_posix_hook_prints_the_graph_call_that_grants_the_approver_role():
    result = _run_posix({
        **BASE_ENV,
        "AUTH_SERVICE_PRINCIPAL_ID": "sp-object-id",
        "AUTH_APPROVER_ROLE_ID": "approver-role-id",
        "AUTH_SUPPORT_ROLE_ID": "support-role-id",
    })
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "https://graph.microsoft.com/v1.0/servicePrincipals/sp-object-id/appRoleAssignedTo" in out
    assert '{"principalId":"<user-object-id>","resourceId":"sp-object-id","appRoleId":"approver-role-id"}' in out
    assert "appRoleId support-role-id" in out
    assert "Enterprise applications > the API > Users and groups" in out


@pytest.mark.skipif(shutil.which("sh") is None, reason="no POSIX sh on this machine")
def test_posix_hook_shows_placeholders_when_auth_outputs_are_missing():
    result = _run_posix(BASE_ENV)
    assert result.returncode == 0, result.stderr
    for name in AUTH_OUTPUTS:
        assert f"<{name}>" in result.stdout, name
