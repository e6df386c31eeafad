"""The app's MCP server in Azure (issue 12): ``host.json`` ``extensions.mcp`` and the extension bundle, and what
``infra/`` says so that MCP clients reach ``/runtime/webhooks/mcp`` through App Service authentication.

What must hold (README "MCP clients", docs/mcp-extension-protocol.md §3, §6, §7):

* ``host.json`` names the server (``serverName``/``serverVersion``, the distribution's version, and
  ``instructions``) and sets ``system.webhookAuthorizationLevel`` to ``Anonymous``: no ``mcp_extension`` key, because
  Microsoft Entra ID sign-in (Easy Auth) is the gate, as the Functions MCP tutorial prescribes for built-in server
  authorization ("Disable key-based authentication"). That is only safe while Easy Auth still requires a token on
  every MCP path, which is asserted here too;
* the bundle range admits only GA bundles that carry the MCP extension (4.29.0 on, tag ``4.28.0`` lacks it);
* the app setting ``WEBSITE_AUTH_PRM_DEFAULT_WITH_SCOPES`` publishes protected resource metadata for the
  registration's ``api://<clientId>/user_impersonation`` scope (app-service/configure-authentication-mcp);
* Visual Studio Code's client id (``aebc6443-996d-45c2-90f0-388ff96faa56``, azure-functions/functions-mcp-tutorial)
  is pre-authorized for that scope beside the Azure CLI, and for nothing else;
* nothing is widened: no excluded path covers the MCP webhook or the metadata, no other Easy Auth setting changes.

Every assertion reads the real files: pycep's JSON of the Bicep (``bicep_model``; interpolated strings stay raw
text) and ``host.json``. The ``excludedPaths`` matching rule is that of ``test_bicep_browser_auth.py``: an entry is
one path, and an entry ending in ``/*`` also matches every path below it.
"""

from __future__ import annotations

import json

from durable_agents._version import __version__
from tests.infra.bicep_model import REPO_ROOT, auth_properties, dotted, excluded_by, load, module_call, one_resource
from tests.infra.test_azd_host import parse_version_range

# Tag 4.28.0 of Azure/azure-functions-extension-bundles lacks Microsoft.Azure.Functions.Extensions.Mcp in
# src/Microsoft.Azure.Functions.ExtensionBundle/extensions.json; 4.29.0 (2025-10-17) and every later 4.x tag have it.
FIRST_BUNDLE_WITH_MCP = (4, 29, 0)
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
VS_CODE_APP_ID = "aebc6443-996d-45c2-90f0-388ff96faa56"
PRM_SETTING = "WEBSITE_AUTH_PRM_DEFAULT_WITH_SCOPES"
# The paths the extension serves (§2) and where the platform publishes the metadata (RFC 9728's default location).
MCP_PATHS = [
    "/runtime/webhooks/mcp", "/runtime/webhooks/mcp/", "/runtime/webhooks/mcp/sse", "/runtime/webhooks/mcp/message",
]
PRM_PATH = "/.well-known/oauth-protected-resource"
# host.json keys of extensions.mcp the extension reads (McpOptions / MessageOptions, §6).
MCP_OPTION_KEYS = {"serverName", "serverVersion", "instructions", "encryptClientState", "messageOptions", "system"}


def _host() -> dict:
    return json.loads((REPO_ROOT / "host.json").read_text())


def _mcp() -> dict:
    return _host()["extensions"]["mcp"]




def _functionapp():
    return load("app/functionapp.bicep")


def _app_settings() -> dict:
    return one_resource(_functionapp(), "Microsoft.Web/sites/config", name="appsettings").body["properties"]






# ---------------------------------------------------------------- host.json


def test_host_json_names_the_mcp_server_and_tells_clients_how_runs_and_approvals_work():
    mcp = _mcp()
    assert set(mcp) <= MCP_OPTION_KEYS, f"unknown extensions.mcp keys: {set(mcp) - MCP_OPTION_KEYS}"
    assert mcp["serverName"] == "durable-agents"
    # initialize's serverInfo.version is the distribution's version (durable_agents/_version.py): bump both.
    assert mcp["serverVersion"] == __version__
    instructions = mcp["instructions"]
    assert isinstance(instructions, str) and len(instructions) < 1000
    for tool in ("get_run", "list_approvals", "decide_approval", "runId"):
        assert tool in instructions, tool
    # Client state (Mcp-Session-Id, azmcpcs) stays encrypted in Azure (the default).
    assert mcp.get("encryptClientState", True) is True


def test_mcp_webhook_needs_no_function_key_because_entra_id_sign_in_guards_it():
    # functions-mcp-tutorial, "Disable key-based authentication": with built-in server authorization, set
    # system.webhookAuthorizationLevel to Anonymous; the sign-in below is then the only gate, so it must hold.
    assert _mcp()["system"] == {"webhookAuthorizationLevel": "Anonymous"}
    auth = auth_properties()
    assert auth["platform"]["enabled"] is True
    assert auth["globalValidation"]["requireAuthentication"] is True
    # A 401 (with the metadata challenge), never a 302 to a sign-in page: MCP clients start their OAuth flow from it.
    assert auth["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    assert auth["identityProviders"]["azureActiveDirectory"]["enabled"] is True
    # No app setting puts the key requirement (or anything else of extensions.mcp) elsewhere than host.json.
    overrides = [k for k in _app_settings() if k.lower().startswith("azurefunctionsjobhost__extensions__mcp")]
    assert overrides == []


def test_other_host_json_extensions_are_unchanged_by_the_mcp_block():
    extensions = _host()["extensions"]
    assert set(extensions) == {"http", "durableTask", "mcp"}
    assert extensions["http"] == {"routePrefix": "api"}
    assert extensions["durableTask"]["hubName"] == "%TASKHUB_NAME%"


def test_bundle_range_only_admits_ga_bundles_that_carry_the_mcp_extension():
    bundle = _host()["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"  # GA, not ...ExtensionBundle.Preview
    low, low_inclusive, high, high_inclusive = parse_version_range(bundle["version"])
    assert low > FIRST_BUNDLE_WITH_MCP or (low == FIRST_BUNDLE_WITH_MCP and low_inclusive), (
        "the range admits a bundle without the MCP extension"
    )
    assert high < (5, 0, 0) or (high == (5, 0, 0) and not high_inclusive), "bundle 5.x is a different major"


# ---------------------------------------------------------------- protected resource metadata


def test_protected_resource_metadata_names_the_registrations_user_impersonation_scope():
    settings = _app_settings()
    # Interpolated string: pycep keeps it as text. One scope (the setting takes a comma-separated list).
    assert settings[PRM_SETTING] == "api://${authClientId}/user_impersonation"
    # authClientId is the registration App Service authentication validates tokens for ...
    aad = auth_properties()["identityProviders"]["azureActiveDirectory"]
    assert aad["registration"]["clientId"] == "authClientId"
    params = module_call(load("main.bicep"), "functionApp")[1]["params"]
    assert dotted(params["authClientId"]) == "appRegistration.outputs.clientId"
    # ... whose Application ID URI is api://<clientId> (step 2) and which defines the user_impersonation scope
    # (step 1), with v2.0 access tokens: their aud is the client id, one of the allowed audiences.
    uris = load("app/appregistrationuris.bicep")
    assert one_resource(uris, "Microsoft.Graph/applications").body["identifierUris"] == ["api://${clientId}"]
    reg = load("app/appregistration.bicep")
    app = one_resource(reg, "Microsoft.Graph/applications")
    scopes = {scope["value"]: scope for scope in app.body["api"]["oauth2PermissionScopes"]}
    assert set(scopes) == {"user_impersonation"}
    assert scopes["user_impersonation"]["id"] == "userImpersonationScopeId"
    assert app.body["api"]["requestedAccessTokenVersion"] == 2
    assert "authClientId" in aad["validation"]["allowedAudiences"]


def test_no_other_easy_auth_app_setting_is_added():
    auth_settings = sorted(k for k in _app_settings() if k.upper().startswith("WEBSITE_AUTH_"))
    assert auth_settings == [PRM_SETTING]


# ---------------------------------------------------------------- pre-authorized clients


def test_vs_code_is_pre_authorized_for_user_impersonation_beside_the_azure_cli():
    uris = load("app/appregistrationuris.bicep")
    assert uris["parameters"]["preAuthorizedClientIds"]["default"] == [AZURE_CLI_APP_ID, VS_CODE_APP_ID]
    pre = one_resource(uris, "Microsoft.Graph/applications").body["api"]["preAuthorizedApplications"]
    assert pre["loop_type"]["detail"]["array_name"] == "preAuthorizedClientIds"
    # Each pre-authorized client gets the one delegated scope, nothing more.
    assert pre["config"] == {"appId": pre["loop_type"]["detail"]["item_name"],
                             "delegatedPermissionIds": ["userImpersonationScopeId"]}
    # main.bicep does not override the default list.
    params = module_call(load("main.bicep"), "appRegistrationUris")[1]["params"]
    assert "preAuthorizedClientIds" not in params


# ---------------------------------------------------------------- nothing widened


def test_no_excluded_path_opens_the_mcp_webhook_or_the_metadata():
    excluded = auth_properties()["globalValidation"]["excludedPaths"]
    for path in [*MCP_PATHS, PRM_PATH]:
        assert not excluded_by(path, excluded), f"{path} is excluded from App Service authentication"
    # Still only the browser app's static files (tests/infra/test_bicep_browser_auth.py).
    assert excluded == ["/api/ui", "/api/ui/", "/api/ui/*"]


def test_easy_auth_accepts_any_client_of_the_tenant_as_before_and_no_other_provider():
    aad = auth_properties()["identityProviders"]
    assert set(aad) == {"azureActiveDirectory"}
    validation = aad["azureActiveDirectory"]["validation"]
    # No client-application allow-list was added or loosened: the audiences are the registration's, as before.
    assert validation == {"allowedAudiences": ["api://${authClientId}", "authClientId"]}
