"""Security hardening of ``infra/``: basic-auth publishing off, Easy Auth with Microsoft Entra ID and its app
registration (Graph Bicep), table-scoped role assignments, and Durable Task Scheduler autopurge.

Every assertion reads pycep's JSON of the real files (``bicep_model``). Interpolated strings stay raw text in
pycep, so those are compared as text; ``bicepconfig.json`` is JSON with ``//`` comments (Bicep allows them).
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.bicep_model import INFRA, decorator, dotted, load, module_call, one_resource, resources

TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
STORAGE_QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
MI_ASSERTION_SETTING = "OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID"
OPENID_ISSUER = "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
VS_CODE_APP_ID = "aebc6443-996d-45c2-90f0-388ff96faa56"  # Visual Studio Code, an MCP client (test_bicep_mcp.py)
AZURE_CLI_APP_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


def _doc(name: str):
    return load("main.bicep" if name == "main" else f"app/{name}.bicep")




def _params(symbol: str) -> dict:
    return module_call(_doc("main"), symbol)[1]["params"]


def _default(doc, name):
    assert name in doc["parameters"], f"parameter {name!r} missing"
    return doc["parameters"][name]["default"]


def _var(doc, name):
    return doc["variables"][name]["value"]


def _auth():
    return one_resource(_doc("functionapp"), "Microsoft.Web/sites/config", name="authsettingsV2")


def _app_settings() -> dict:
    return one_resource(_doc("functionapp"), "Microsoft.Web/sites/config", name="appsettings").body["properties"]


def _bicepconfig() -> dict:
    text = (INFRA / "bicepconfig.json").read_text()
    return json.loads("\n".join(line for line in text.splitlines() if not line.lstrip().startswith("//")))


# ---------------------------------------------------------------- 1. basic publishing credentials


@pytest.mark.parametrize("kind", ["ftp", "scm"])
def test_basic_auth_publishing_is_disabled_on_the_function_app(kind):
    doc = _doc("functionapp")
    site = one_resource(doc, "Microsoft.Web/sites")
    policy = one_resource(doc, "Microsoft.Web/sites/basicPublishingCredentialsPolicies", name=kind)
    assert policy.body["parent"] == site.symbol
    assert policy.body["properties"] == {"allow": False}


# ---------------------------------------------------------------- 2. Easy Auth


def test_easy_auth_requires_a_token_and_answers_401_instead_of_redirecting():
    auth = _auth()
    props = auth.body["properties"]
    assert auth.body["parent"] == one_resource(_doc("functionapp"), "Microsoft.Web/sites").symbol
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"]["requireAuthentication"] is True
    assert props["globalValidation"]["unauthenticatedClientAction"] == "Return401"
    # only the browser app's static files are open (tests/infra/test_bicep_browser_auth.py); the API needs a caller
    assert props["globalValidation"]["excludedPaths"] == ["/api/ui", "/api/ui/", "/api/ui/*"]
    assert props["httpSettings"]["requireHttps"] is True
    assert props["login"]["tokenStore"]["enabled"] is False


def test_easy_auth_validates_entra_id_tokens_for_the_app_registration():
    aad = _auth().body["properties"]["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    registration = aad["registration"]
    assert registration["clientId"] == "authClientId"
    doc = _doc("functionapp")
    # Interpolated string: pycep keeps it as text.
    assert _var(doc, registration["openIdIssuer"]) == OPENID_ISSUER
    assert aad["validation"]["allowedAudiences"] == ["api://${authClientId}", "authClientId"]
    assert dotted(_params("functionApp")["authClientId"]) == "appRegistration.outputs.clientId"


def test_easy_auth_uses_the_managed_identity_as_client_credential_not_a_secret():
    doc = _doc("functionapp")
    registration = _auth().body["properties"]["identityProviders"]["azureActiveDirectory"]["registration"]
    assert _var(doc, registration["clientSecretSettingName"]) == MI_ASSERTION_SETTING
    # The setting holds the managed identity's client id (not the registration's, not a secret) ...
    assert _app_settings()[MI_ASSERTION_SETTING] == "identityClientId"
    assert "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET" not in _app_settings()
    # ... and the registration trusts that identity through a federated credential.
    reg = _doc("appregistration")
    fic = one_resource(reg, "Microsoft.Graph/applications/federatedIdentityCredentials")
    app = one_resource(reg, "Microsoft.Graph/applications")
    assert fic.body["name"] == "${" + app.symbol + ".uniqueName}/function-app-managed-identity"
    assert fic.body["subject"] == "identityPrincipalId"
    assert _var(reg, fic.body["issuer"]) == OPENID_ISSUER
    assert [_var(reg, a) for a in fic.body["audiences"]] == ["api://AzureADTokenExchange"]
    assert dotted(_params("appRegistration")["identityPrincipalId"]) == "identity.outputs.principalId"
    # The authentication config is applied after the setting it names exists.
    assert "appSettings" in _auth().body["dependsOn"]


def test_graph_extension_is_configured_and_declared_by_the_registration_modules():
    extensions = _bicepconfig()["extensions"]
    assert re.fullmatch(
        r"br:mcr\.microsoft\.com/bicep/extensions/microsoftgraph/v1\.0:\d+\.\d+\.\d+", extensions["microsoftGraphV1"]
    )
    for name in ("appregistration", "appregistrationuris"):
        assert "microsoftGraphV1" in _doc(name)["extensions"], name
        for r in resources(_doc(name)):
            if r.type.startswith("Microsoft.Graph/"):
                assert r.api_version == "v1.0", r.symbol
    graph_users = sorted(
        path.name for path in (INFRA / "app").glob("*.bicep")
        if any(r.type.startswith("Microsoft.Graph/") for r in resources(load(f"app/{path.name}")))
    )
    assert graph_users == ["appregistration.bicep", "appregistrationuris.bicep"]


def test_app_registration_defines_the_approver_and_support_app_roles():
    reg = _doc("appregistration")
    app = one_resource(reg, "Microsoft.Graph/applications")
    assert app.body["uniqueName"] == "uniqueName"
    assert app.body["signInAudience"] == "AzureADMyOrg"
    assert app.body["api"]["requestedAccessTokenVersion"] == 2
    assert app.body["groupMembershipClaims"] == "SecurityGroup"  # group ids for APPROVER_GROUPS / SUPPORT_GROUPS
    roles = {_default(reg, role["value"]): role for role in app.body["appRoles"]}
    assert set(roles) == {"Approver", "Support"}
    for value, role in roles.items():
        assert role["allowedMemberTypes"] == ["User", "Application"], value
        assert role["isEnabled"] is True
        assert role["description"] and role["displayName"] == value
        # Stable ids: guid(uniqueName, 'appRole', <value param>), so redeploying keeps role assignments.
        guid = _var(reg, role["id"])["function"]
        assert guid["type"] == "guid"
        assert list(guid["parameters"].values()) == ["uniqueName", "appRole", role["value"]]
    assert "decide" in roles["Approver"]["description"] and "any customer" in roles["Support"]["description"]
    assert dotted(reg["outputs"]["appRoles"]["value"]) == f"{app.symbol}.appRoles"
    main = _params("appRegistration")
    assert (main["approverRole"], main["supportRole"]) == ("approverRole", "supportRole")
    assert _default(_doc("main"), "approverRole") == "Approver"
    assert _default(_doc("main"), "supportRole") == "Support"


def test_app_registration_has_a_service_principal_for_role_assignments():
    reg = _doc("appregistration")
    app = one_resource(reg, "Microsoft.Graph/applications")
    sp = one_resource(reg, "Microsoft.Graph/servicePrincipals")
    assert dotted(sp.body["appId"]) == f"{app.symbol}.appId"
    assert sp.body["appRoleAssignmentRequired"] is False  # a caller without a role acts only for itself
    outs = {name: dotted(o["value"]) for name, o in reg["outputs"].items()}
    assert outs["clientId"] == f"{app.symbol}.appId"
    assert outs["servicePrincipalId"] == f"{sp.symbol}.id"
    main_outs = {name: dotted(o["value"]) for name, o in _doc("main")["outputs"].items()}
    assert main_outs["AUTH_CLIENT_ID"] == "appRegistration.outputs.clientId"
    assert main_outs["AUTH_SERVICE_PRINCIPAL_ID"] == "appRegistration.outputs.servicePrincipalId"
    assert main_outs["AUTH_APPROVER_ROLE_ID"] == "appRegistration.outputs.approverRoleId"
    assert main_outs["AUTH_SUPPORT_ROLE_ID"] == "appRegistration.outputs.supportRoleId"


def test_second_step_sets_the_application_id_uri_to_api_client_id_and_keeps_the_roles():
    uris = _doc("appregistrationuris")
    app = one_resource(uris, "Microsoft.Graph/applications")
    assert app.body["identifierUris"] == ["api://${clientId}"]
    assert app.body["groupMembershipClaims"] == "SecurityGroup"
    assert app.body["uniqueName"] == "uniqueName"  # the same registration as step 1 (Graph Bicep upsert key)
    assert app.body["appRoles"] == "appRoles"  # restated from step 1's output, whatever the update semantics
    assert app.body["api"]["oauth2PermissionScopes"] == "oauth2PermissionScopes"
    assert app.body["web"]["redirectUris"] == ["https://${appHostName}/.auth/login/aad/callback"]
    pre = app.body["api"]["preAuthorizedApplications"]
    assert pre["loop_type"]["detail"]["array_name"] == "preAuthorizedClientIds"
    assert pre["config"]["delegatedPermissionIds"] == ["userImpersonationScopeId"]
    assert _default(uris, "preAuthorizedClientIds") == [AZURE_CLI_APP_ID, VS_CODE_APP_ID]
    params = _params("appRegistrationUris")
    assert {k: dotted(v) for k, v in params.items()} == {
        "uniqueName": "appRegistration.outputs.uniqueName",
        "displayName": "appRegistration.outputs.displayName",
        "clientId": "appRegistration.outputs.clientId",
        "appRoles": "appRegistration.outputs.appRoles",
        "oauth2PermissionScopes": "appRegistration.outputs.oauth2PermissionScopes",
        "userImpersonationScopeId": "appRegistration.outputs.userImpersonationScopeId",
        "appHostName": "functionApp.outputs.hostName",  # so it runs after the function app exists
    }
    assert dotted(_doc("functionapp")["outputs"]["hostName"]["value"]) == "site.properties.defaultHostName"
    assert _doc("main")["outputs"]["AUTH_IDENTIFIER_URI"]["value"] == {"operator": {
        "type": "property_accessor", "operands": {"operand_1": "appRegistrationUris", "operand_2": {
            "operator": {"type": "property_accessor", "operands": {
                "operand_1": "outputs", "operand_2": "identifierUri"}}}}}}


def test_role_and_separation_settings_are_app_settings_with_their_defaults():
    settings = _app_settings()
    assert settings["APPROVER_ROLES"] == "approverRoles"
    assert settings["SUPPORT_ROLES"] == "supportRoles"
    assert settings["SEPARATION_OF_DUTIES"] == "separationOfDuties"
    fa = _doc("functionapp")
    assert (_default(fa, "approverRoles"), _default(fa, "supportRoles")) == ("Approver", "Support")
    assert _default(fa, "separationOfDuties") == "true"
    params = _params("functionApp")
    # The role values the app checks are the ones the registration defines.
    assert (params["approverRoles"], params["supportRoles"]) == ("approverRole", "supportRole")
    assert params["separationOfDuties"] == "separationOfDuties"
    assert (settings["APPROVER_GROUPS"], settings["SUPPORT_GROUPS"]) == ("approverGroups", "supportGroups")
    assert (_default(fa, "approverGroups"), _default(fa, "supportGroups")) == ("", "")
    assert (params["approverGroups"], params["supportGroups"]) == ("approverGroups", "supportGroups")
    main = _doc("main")
    assert _default(main, "separationOfDuties") == "true"
    assert decorator(main["parameters"]["separationOfDuties"], "allowed") == ["true", "false"]


# ---------------------------------------------------------------- 3. narrow role assignments


def _assignments():
    rbac = _doc("rbac")
    existing = {r.symbol: r for r in resources(rbac) if r.existing}
    return rbac, existing, [r for r in resources(rbac, "Microsoft.Authorization/roleAssignments")]


def test_table_data_role_is_scoped_to_each_table_never_to_the_account():
    rbac, existing, assignments = _assignments()
    variables = {name: v["value"] for name, v in rbac["variables"].items()}
    table_scopes = []
    for r in assignments:
        role = r.body["properties"]["roleDefinitionId"]["function"]["parameters"]["resource_name_1"]
        if variables.get(role, role) != STORAGE_TABLE_DATA_CONTRIBUTOR:
            continue
        scope = existing[r.body["scope"]]
        assert scope.type == TABLE, f"{r.symbol}: table role at {scope.type}"
        # The assignment name is derived from the table, so each table gets its own assignment.
        assert r.body["name"]["function"]["parameters"]["base_string"] == {"operator": {
            "type": "property_accessor", "operands": {"operand_1": scope.symbol, "operand_2": "id"}}}
        table_scopes.append(scope.body["name"])
    assert sorted(table_scopes) == ["auditTableName", "refundLedgerTableName"]
    # Each existing table hangs off the account's default table service.
    service = existing[existing[next(s for s, r in existing.items() if r.type == TABLE)].body["parent"]]
    assert service.type == "Microsoft.Storage/storageAccounts/tableServices" and service.body["name"] == "default"
    assert existing[service.body["parent"]].type == "Microsoft.Storage/storageAccounts"


def test_no_queue_role_and_only_blob_owner_at_account_scope():
    rbac, existing, assignments = _assignments()
    variables = {name: v["value"] for name, v in rbac["variables"].items()}
    assert STORAGE_QUEUE_DATA_CONTRIBUTOR not in set(variables.values())
    account = "Microsoft.Storage/storageAccounts"
    at_account = [r.symbol for r in assignments if existing[r.body["scope"]].type == account]
    assert at_account == ["appStorageBlobDataOwner"]


def test_audit_table_is_created_and_wired_to_the_app_settings():
    storage = _doc("storage")
    audit = one_resource(storage, TABLE, name="auditTableName")
    assert _default(storage, "auditTableName") == "approvalaudit"
    assert dotted(storage["outputs"]["auditTableName"]["value"]) == f"{audit.symbol}.name"
    main = _doc("main")
    assert _default(main, "auditTableName") == "approvalaudit"
    assert _params("storage")["auditTableName"] == "auditTableName"
    for module in ("functionApp", "rbac"):
        assert dotted(_params(module)["auditTableName"]) == "storage.outputs.auditTableName", module
    settings = _app_settings()
    assert settings["AUDIT_TABLE_ENDPOINT"] == "storageTableEndpoint"
    assert settings["AUDIT_TABLE_NAME"] == "auditTableName"
    outs = {name: dotted(o["value"]) for name, o in main["outputs"].items()}
    assert outs["AUDIT_TABLE_ENDPOINT"] == "storage.outputs.tableEndpoint"
    assert outs["AUDIT_TABLE_NAME"] == "storage.outputs.auditTableName"


# ---------------------------------------------------------------- 4. Durable Task Scheduler retention


def test_scheduler_autopurges_finished_instances_with_per_status_retention():
    doc = _doc("durabletask")
    scheduler = one_resource(doc, "Microsoft.DurableTask/schedulers")
    policy = one_resource(doc, "Microsoft.DurableTask/schedulers/retentionPolicies")
    assert policy.api_version == scheduler.api_version == "2025-11-01"
    assert policy.body["parent"] == scheduler.symbol
    assert policy.body["name"] == "default"  # the only name the resource type accepts
    by_state = {
        p.get("orchestrationState"): p["retentionPeriodInDays"] for p in policy.body["properties"]["retentionPolicies"]
    }
    assert by_state == {
        None: "completedRetentionDays",  # default for any purgeable status without its own entry
        "Completed": "completedRetentionDays",
        "Failed": "failedRetentionDays",
        "Terminated": "failedRetentionDays",
        "Canceled": "failedRetentionDays",
    }


@pytest.mark.parametrize("file", ["main", "durabletask"])
def test_retention_parameters_default_to_30_and_90_days_within_the_service_limit(file):
    doc = _doc(file)
    assert _default(doc, "completedRetentionDays") == 30
    assert _default(doc, "failedRetentionDays") == 90
    for name in ("completedRetentionDays", "failedRetentionDays"):
        entry = doc["parameters"][name]
        assert (decorator(entry, "min_value"), decorator(entry, "max_value")) == (0, 90), name


def test_retention_parameters_are_passed_to_the_scheduler_module():
    params = _params("durableTask")
    assert params["completedRetentionDays"] == "completedRetentionDays"
    assert params["failedRetentionDays"] == "failedRetentionDays"
