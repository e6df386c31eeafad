"""Structure of the Bicep in ``infra/``: what `azd up` creates, how it is wired, and that it holds no secret.

Every assertion walks pycep's JSON of the real files (see ``bicep_model``); text is compared only where pycep
keeps it as text (interpolated strings) or cannot represent it at all (said at each place).
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from tests.infra.bicep_model import (
    INFRA,
    REPO_ROOT,
    bicep_files,
    decorator,
    dotted,
    load,
    module_call,
    resources,
    walk,
)

# The architecture, one module each (infra/main.bicep symbol -> file).
MODULES = {
    "identity": "./app/identity.bicep",
    "appRegistration": "./app/appregistration.bicep",
    "appRegistrationUris": "./app/appregistrationuris.bicep",
    "storage": "./app/storage.bicep",
    "monitoring": "./app/monitoring.bicep",
    "functionApp": "./app/functionapp.bicep",
    "durableTask": "./app/durabletask.bicep",
    "model": "./app/model.bicep",
    "rbac": "./app/rbac.bicep",
    "network": "./app/network.bicep",
}

# Built-in role definition ids (https://learn.microsoft.com/azure/role-based-access-control/built-in-roles).
STORAGE_BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
STORAGE_TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"
DURABLE_TASK_DATA_CONTRIBUTOR = "0ad04412-c4d5-4796-b79c-f76d14c8d402"
COGNITIVE_SERVICES_OPENAI_USER = "5e0bd9bd-7b93-4f28-af87-19fc36ad61bd"

# Settings the code reads that must NOT be app settings in Azure (each with the reason):
LOCAL_ONLY_SETTINGS = {
    "OPENAI_BASE_URL",  # any OpenAI-compatible endpoint, for laptops; Azure uses AZURE_OPENAI_ENDPOINT
    "OPENAI_API_KEY",  # a key; Azure authenticates with Entra ID only (local auth is disabled)
    "REFUND_LEDGER_PATH",  # the SQLite ledger; Azure uses the table (REFUND_LEDGER_TABLE_ENDPOINT)
    "REFUND_LEDGER_TABLE_CONNECTION_STRING",  # Azurite only; a connection string would carry a key
    "ORDERS_DATA_PATH",  # its default, data/orders.json, is deployed with the package
    "AUDIT_PATH",  # the SQLite approval audit; Azure uses the table (AUDIT_TABLE_ENDPOINT)
    "AUDIT_TABLE_CONNECTION_STRING",  # Azurite only; a connection string would carry a key
    "PAYLOAD_PATH",  # the local payload folder; Azure uses the blob container (PAYLOAD_BLOB_ENDPOINT)
    "PAYLOAD_BLOB_CONNECTION_STRING",  # Azurite only; a connection string would carry a key
}

# Settings the platform sets itself and that must never be app settings: App Service sets WEBSITE_AUTH_ENABLED
# when authentication (authsettingsV2 platform.enabled) is on, and the code trusts the X-MS-CLIENT-PRINCIPAL
# headers only then; an app setting could claim authentication that is not there.
PLATFORM_SETTINGS = {"WEBSITE_AUTH_ENABLED"}

# Folders / files of deployed code whose get_setting / run_setting calls infra must cover.
CODE_PATHS = ["durable_agents", "activities", "agents", "function_app.py"]
SETTING_READERS = {"get_setting", "run_setting"}


def _main():
    return load("main.bicep")


def _app(name: str):
    return load(f"app/{name}.bicep")


def _one(doc, type_):
    found = [r for r in resources(doc, type_) if not r.existing]
    assert len(found) == 1, f"expected exactly one {type_}, found {[r.symbol for r in found]}"
    return found[0]


def _param_default(doc, name):
    assert name in doc["parameters"], f"parameter {name!r} missing"
    return doc["parameters"][name]["default"]


def _module_params(symbol: str) -> dict:
    return module_call(_main(), symbol)[1]["params"]


def _site_config(name: str):
    found = [r for r in resources(_app("functionapp"), "Microsoft.Web/sites/config") if r.body["name"] == name]
    assert len(found) == 1, f"expected exactly one sites/config named {name!r}"
    return found[0]


def _app_settings() -> dict:
    return _site_config("appsettings").body["properties"]


# ---------------------------------------------------------------- files and wiring


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path):
    doc = load(str(path.relative_to(INFRA)))
    assert doc.get("resources") or doc.get("modules"), f"{path.name} declares nothing"


def test_main_is_subscription_scoped_and_composes_the_architecture_modules():
    main = _main()
    assert main["globals"]["scope"]["value"] == "subscription"
    assert {s: module_call(main, s)[0] for s in main["modules"]} == MODULES
    on_disk = {f"./app/{p.name}" for p in (INFRA / "app").glob("*.bicep")}
    assert on_disk == set(MODULES.values()), "every module file is used, and only those"
    groups = resources(main, "Microsoft.Resources/resourceGroups")
    assert len(groups) == 1
    for symbol in main["modules"]:
        assert module_call(main, symbol)[1]["scope"] == groups[0].symbol, f"{symbol} deploys into the group"


@pytest.mark.parametrize("symbol", sorted(MODULES))
def test_module_calls_pass_exactly_declared_params(symbol):
    """A typo in a param name, or a required param left out, would only show up at deployment time."""
    _, body, _ = module_call(_main(), symbol)
    declared = _app(Path(MODULES[symbol]).stem)["parameters"]
    passed = set(body["params"])
    assert passed <= set(declared), f"unknown params {passed - set(declared)}"
    required = {name for name, p in declared.items() if p["default"] is None}
    assert required <= passed, f"required params not passed: {required - passed}"


def test_parameters_file_maps_azd_environment_variables():
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    values = {name: entry["value"] for name, entry in params.items()}
    assert values["environmentName"] == "${AZURE_ENV_NAME}"
    assert values["location"] == "${AZURE_LOCATION}"
    assert values["principalId"] == "${AZURE_PRINCIPAL_ID}"
    main_params = _main()["parameters"]
    assert set(values) <= set(main_params), f"unknown parameters {set(values) - set(main_params)}"
    required = {name for name, p in main_params.items() if p["default"] is None}
    assert required <= set(values), f"required parameters without a value: {required - set(values)}"
    assert decorator(main_params["location"], "metadata") == {"azd": {"type": "location"}}


# ---------------------------------------------------------------- identity


def test_one_user_assigned_identity_is_the_apps_only_identity():
    uamis = [
        (path.name, r.symbol)
        for path in bicep_files()
        for r in resources(load(str(path.relative_to(INFRA))), "Microsoft.ManagedIdentity/userAssignedIdentities")
    ]
    assert uamis == [("identity.bicep", "identity")]
    identity_out = _app("identity")["outputs"]
    assert dotted(identity_out["principalId"]["value"]) == "identity.properties.principalId"
    assert dotted(identity_out["clientId"]["value"]) == "identity.properties.clientId"

    site = _one(_app("functionapp"), "Microsoft.Web/sites").body
    assert site["identity"]["type"] == "UserAssigned"  # no system-assigned identity next to it
    assert list(site["identity"]["userAssignedIdentities"]) == ["'${identityId}'"]
    params = _module_params("functionApp")
    assert dotted(params["identityId"]) == "identity.outputs.id"
    assert dotted(params["identityClientId"]) == "identity.outputs.clientId"
    assert _app_settings()["AZURE_CLIENT_ID"] == "identityClientId"


# ---------------------------------------------------------------- storage


def test_storage_account_is_locked_down():
    doc = _app("storage")
    account = _one(doc, "Microsoft.Storage/storageAccounts").body["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"
    assert account["allowBlobPublicAccess"] is False
    assert account["supportsHttpsTrafficOnly"] is True
    containers = resources(doc, "Microsoft.Storage/storageAccounts/blobServices/containers")
    assert sorted(c.body["name"] for c in containers) == ["deploymentContainerName", "payloadContainerName"]
    blob_service = _one(doc, "Microsoft.Storage/storageAccounts/blobServices").symbol
    for container in containers:
        assert container.body["properties"]["publicAccess"] == "None"
        assert container.body["parent"] == blob_service
    tables = resources(doc, "Microsoft.Storage/storageAccounts/tableServices/tables")
    assert sorted(t.body["name"] for t in tables) == ["auditTableName", "refundLedgerTableName"]
    table_service = _one(doc, "Microsoft.Storage/storageAccounts/tableServices").symbol
    assert all(t.body["parent"] == table_service for t in tables)
    outs = doc["outputs"]
    for svc in ("blob", "queue", "table"):
        assert dotted(outs[f"{svc}Endpoint"]["value"]) == f"account.properties.primaryEndpoints.{svc}"


def test_host_storage_uses_the_identity_not_a_key():
    settings = _app_settings()
    assert settings["AzureWebJobsStorage__blobServiceUri"] == "storageBlobEndpoint"
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert "AzureWebJobsStorage" not in settings, "a plain AzureWebJobsStorage would be a connection string"
    params = _module_params("functionApp")
    for svc in ("Blob", "Table"):
        assert dotted(params[f"storage{svc}Endpoint"]) == f"storage.outputs.{svc.lower()}Endpoint"


def test_host_storage_is_blob_only_so_the_identity_needs_no_account_wide_queue_or_table_role():
    """No queue or blob triggers and Durable state in the scheduler: the host needs blobs only. A queue or table
    service URI would make the host use that service with account-wide rights the identity no longer has."""
    settings = _app_settings()
    assert "AzureWebJobsStorage__queueServiceUri" not in settings
    assert "AzureWebJobsStorage__tableServiceUri" not in settings
    assert "AzureWebJobsStorage__accountName" not in settings, "accountName would imply every service"
    assert "storageQueueEndpoint" not in _module_params("functionApp")


# ---------------------------------------------------------------- function app


def test_flex_consumption_plan_and_linux_python_app():
    doc = _app("functionapp")
    plan = _one(doc, "Microsoft.Web/serverfarms")
    assert plan.body["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan.body["properties"]["reserved"] is True  # Linux
    site = _one(doc, "Microsoft.Web/sites")
    assert site.body["kind"] == "functionapp,linux"
    props = site.body["properties"]
    assert dotted(props["serverFarmId"]) == f"{plan.symbol}.id"
    assert props["httpsOnly"] is True
    assert props["siteConfig"]["ftpsState"] == "Disabled"
    assert props["siteConfig"]["minTlsVersion"] == "1.2"
    config = props["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["scaleAndConcurrency"] == {
        "instanceMemoryMB": "instanceMemoryMB",
        "maximumInstanceCount": "maximumInstanceCount",
    }
    params = _module_params("functionApp")
    assert params["instanceMemoryMB"] == "functionInstanceMemoryMB"
    assert params["maximumInstanceCount"] == "functionMaximumInstanceCount"
    assert _param_default(_main(), "functionInstanceMemoryMB") == 2048
    assert _param_default(_main(), "functionMaximumInstanceCount") == 100


def test_app_deploys_from_the_blob_container_with_the_identity():
    storage = _one(_app("functionapp"), "Microsoft.Web/sites").body["properties"]["functionAppConfig"]["deployment"][
        "storage"
    ]
    assert storage["type"] == "blobContainer"
    # pycep keeps interpolated strings as text, so the container URL is compared as text.
    assert storage["value"] == "${storageBlobEndpoint}${deploymentContainerName}"
    assert storage["authentication"] == {
        "type": "UserAssignedIdentity",
        "userAssignedIdentityResourceId": "identityId",
    }
    params = _module_params("functionApp")
    assert params["deploymentContainerName"] == "deploymentContainerName"
    assert _module_params("storage")["deploymentContainerName"] == "deploymentContainerName"


def test_flex_consumption_managed_settings_are_not_set():
    forbidden = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "WEBSITE_RUN_FROM_PACKAGE",
                 "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING", "WEBSITE_CONTENTSHARE"}
    assert not forbidden & set(_app_settings())


def test_azd_finds_the_function_app_by_its_service_tag():
    tags = _module_params("functionApp")["tags"]["function"]
    assert tags["type"] == "union"
    assert tags["parameters"]["arg_2"] == {"'azd-service-name'": "api"}


# ---------------------------------------------------------------- Durable Task Scheduler


def test_durable_task_scheduler_and_task_hub():
    doc = _app("durabletask")
    scheduler = _one(doc, "Microsoft.DurableTask/schedulers")
    assert scheduler.api_version >= "2025-04-01-preview"
    assert scheduler.body["properties"]["ipAllowlist"] == "ipAllowlist"
    sku = scheduler.body["properties"]["sku"]["operator"]
    assert sku["type"] == "conditional"
    assert sku["operands"]["condition"]["operator"]["operands"] == {"operand_1": "skuName", "operand_2": "Dedicated"}
    assert sku["operands"]["true_value"] == {"name": "Dedicated", "capacity": "capacity"}
    assert sku["operands"]["false_value"] == {"name": "Consumption"}
    for d in (doc, _main()):
        name = "skuName" if d is doc else "durableTaskSchedulerSku"
        assert _param_default(d, name) == "Consumption"
        assert decorator(d["parameters"][name], "allowed") == ["Consumption", "Dedicated"]
    assert _module_params("durableTask")["skuName"] == "durableTaskSchedulerSku"
    hub = _one(doc, "Microsoft.DurableTask/schedulers/taskHubs")
    assert hub.body["parent"] == scheduler.symbol
    assert hub.body["name"] == "taskHubName"
    assert _param_default(_main(), "durableTaskSchedulerIpAllowlist") == ["0.0.0.0/0"]


def test_scheduler_endpoint_is_read_from_the_resource():
    doc = _app("durabletask")
    assert dotted(doc["outputs"]["endpoint"]["value"]) == "scheduler.properties.endpoint"
    assert dotted(doc["outputs"]["taskHubName"]["value"]) == "taskHub.name"
    params = _module_params("functionApp")
    assert dotted(params["schedulerEndpoint"]) == "durableTask.outputs.endpoint"
    assert dotted(params["taskHubName"]) == "durableTask.outputs.taskHubName"
    settings = _app_settings()
    # Interpolated string: pycep keeps it as text.
    assert settings["DURABLE_TASK_SCHEDULER_CONNECTION_STRING"] == (
        "Endpoint=${schedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}"
    )
    assert settings["TASKHUB_NAME"] == "taskHubName"
    for path in bicep_files():  # no hand-built scheduler host name anywhere (text: it would be inside a string)
        assert "durabletask.io" not in path.read_text(), path


# ---------------------------------------------------------------- model


def test_openai_account_has_local_auth_disabled_and_one_chat_deployment():
    doc = _app("model")
    account = _one(doc, "Microsoft.CognitiveServices/accounts")
    assert account.body["kind"] == "AIServices"
    assert account.body["properties"]["disableLocalAuth"] is True
    assert account.body["properties"]["customSubDomainName"] == "name"  # Entra ID needs a custom subdomain
    deployment = _one(doc, "Microsoft.CognitiveServices/accounts/deployments")
    assert deployment.body["parent"] == account.symbol
    assert deployment.body["name"] == "deploymentName"
    assert deployment.body["sku"] == {"name": "skuName", "capacity": "capacity"}
    model = deployment.body["properties"]["model"]
    assert model == {"format": "OpenAI", "name": "modelName", "version": "modelVersion"}
    params = _module_params("model")
    assert {k: params[k] for k in ("deploymentName", "modelName", "modelVersion", "skuName", "capacity")} == {
        "deploymentName": "modelDeploymentName",
        "modelName": "modelName",
        "modelVersion": "modelVersion",
        "skuName": "modelSkuName",
        "capacity": "modelCapacity",
    }
    main = _main()
    assert _param_default(main, "modelDeploymentName") == "gpt-4.1-mini"  # docs/internals.md AGENT_MODEL default
    assert _param_default(main, "modelSkuName") == "GlobalStandard"
    assert isinstance(_param_default(main, "modelCapacity"), int)


def test_model_settings_come_from_the_deployed_resources():
    out = _app("model")["outputs"]
    assert dotted(out["endpoint"]["value"]) == "account.properties.endpoints['OpenAI Language Model Instance API']"
    assert dotted(out["deploymentName"]["value"]) == "deployment.name"
    params = _module_params("functionApp")
    assert dotted(params["openAiEndpoint"]) == "model.outputs.endpoint"
    assert dotted(params["modelDeploymentName"]) == "model.outputs.deploymentName"
    settings = _app_settings()
    assert settings["AGENT_MODEL"] == "modelDeploymentName"
    assert settings["AZURE_OPENAI_ENDPOINT"] == "openAiEndpoint"
    assert settings["AZURE_OPENAI_API_VERSION"] == "openAiApiVersion"
    assert settings["OPENAI_API"] == "openAiApi"
    assert _param_default(_main(), "openAiApiVersion") == "2025-04-01-preview"
    assert decorator(_main()["parameters"]["openAiApi"], "allowed") == ["responses", "chat_completions"]


def test_model_timeout_is_an_app_setting_passed_from_main_with_the_code_default():
    # durable_agents._model_config.DEFAULT_MODEL_TIMEOUT_SECONDS: 300 s unless the deployment says otherwise.
    assert _app_settings()["MODEL_TIMEOUT"] == "modelTimeout"
    assert dotted(_module_params("functionApp")["modelTimeout"]) == "modelTimeout"
    assert _param_default(_main(), "modelTimeout") == "300"
    assert _param_default(_app("functionapp"), "modelTimeout") == "300"


# ---------------------------------------------------------------- monitoring


def test_monitoring_accepts_entra_id_telemetry_only():
    doc = _app("monitoring")
    workspace = _one(doc, "Microsoft.OperationalInsights/workspaces")
    assert workspace.body["properties"]["features"]["disableLocalAuth"] is True
    insights = _one(doc, "Microsoft.Insights/components")
    assert insights.body["properties"]["DisableLocalAuth"] is True
    assert dotted(insights.body["properties"]["WorkspaceResourceId"]) == f"{workspace.symbol}.id"
    assert dotted(doc["outputs"]["connectionString"]["value"]) == "applicationInsights.properties.ConnectionString"
    settings = _app_settings()
    assert settings["APPLICATIONINSIGHTS_CONNECTION_STRING"] == "applicationInsightsConnectionString"
    # Interpolated string: pycep keeps it as text.
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"
    assert dotted(_module_params("functionApp")["applicationInsightsConnectionString"]) == (
        "monitoring.outputs.connectionString"
    )


# ---------------------------------------------------------------- RBAC


TABLE = "Microsoft.Storage/storageAccounts/tableServices/tables"


def _role_assignments():
    """(role GUID, principal, principalType, scope resource type, conditional) for every assignment in rbac.bicep."""
    doc = _app("rbac")
    variables = {name: v["value"] for name, v in doc["variables"].items()}
    existing = {r.symbol: r.type for r in resources(doc) if r.existing}
    tables = {r.symbol: r.body["name"] for r in resources(doc, TABLE) if r.existing}
    rows = []
    for r in resources(doc, "Microsoft.Authorization/roleAssignments"):
        props = r.body["properties"]
        fn = props["roleDefinitionId"]["function"]
        assert fn["type"] == "subscription_resource_id"
        assert fn["parameters"]["resource_type"] == "Microsoft.Authorization/roleDefinitions"
        role = fn["parameters"]["resource_name_1"]
        role = variables.get(role, role)  # a variable holding the GUID, or the GUID itself
        principal_type = props["principalType"]
        if principal_type in doc["parameters"]:
            principal_type = f"param:{principal_type}={doc['parameters'][principal_type]['default']}"
        scope = existing[r.body["scope"]]
        if scope == TABLE:  # which table: its name parameter
            scope = f"{TABLE}:{tables[r.body['scope']]}"
        rows.append((role, props["principalId"], principal_type, scope, r.condition is not None))
    return rows


def test_every_role_assignment_has_the_right_role_principal_and_scope():
    storage, insights = "Microsoft.Storage/storageAccounts", "Microsoft.Insights/components"
    scheduler, openai = "Microsoft.DurableTask/schedulers", "Microsoft.CognitiveServices/accounts"
    app, user = ("identityPrincipalId", "ServicePrincipal"), ("userPrincipalId", "param:userPrincipalType=User")
    expected = [
        (STORAGE_BLOB_DATA_OWNER, *app, storage, False),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, *app, f"{TABLE}:refundLedgerTableName", False),
        (STORAGE_TABLE_DATA_CONTRIBUTOR, *app, f"{TABLE}:auditTableName", False),
        (MONITORING_METRICS_PUBLISHER, *app, insights, False),
        (DURABLE_TASK_DATA_CONTRIBUTOR, *app, scheduler, False),
        (COGNITIVE_SERVICES_OPENAI_USER, *app, openai, False),
        (DURABLE_TASK_DATA_CONTRIBUTOR, *user, scheduler, True),
        (COGNITIVE_SERVICES_OPENAI_USER, *user, openai, True),
    ]
    assert sorted(_role_assignments()) == sorted(expected)


def test_role_assignment_principals_are_wired_to_the_identity_and_the_deploying_user():
    params = _module_params("rbac")
    assert dotted(params["identityPrincipalId"]) == "identity.outputs.principalId"
    assert params["userPrincipalId"] == "principalId"
    assert params["userPrincipalType"] == "principalType"
    main = _main()
    assert _param_default(main, "principalType") == "User"
    assert _param_default(main, "principalId") == ""
    rbac = _app("rbac")
    for r in resources(rbac, "Microsoft.Authorization/roleAssignments"):
        if r.body["properties"]["principalId"] == "userPrincipalId":  # only when azd knows the user
            assert r.condition == {"operator": {"type": "not", "operands": {
                "bool_value": {"function": {"type": "empty", "parameters": {"item_to_test": "userPrincipalId"}}}}}}
    for symbol, scope in (("storageAccountName", "storage.outputs.name"),
                          ("refundLedgerTableName", "storage.outputs.refundLedgerTableName"),
                          ("auditTableName", "storage.outputs.auditTableName"),
                          ("applicationInsightsName", "monitoring.outputs.applicationInsightsName"),
                          ("schedulerName", "durableTask.outputs.schedulerName"),
                          ("openAiAccountName", "model.outputs.name")):
        assert dotted(params[symbol]) == scope


def test_role_assignments_live_only_in_the_rbac_module():
    elsewhere = [
        path.name
        for path in bicep_files()
        if path.name != "rbac.bicep"
        and resources(load(str(path.relative_to(INFRA))), "Microsoft.Authorization/roleAssignments")
    ]
    assert elsewhere == []


# ---------------------------------------------------------------- no secrets


def test_no_keys_secrets_or_secure_outputs():
    for path in bicep_files():
        doc = load(str(path.relative_to(INFRA)))
        for name, out in doc.get("outputs", {}).items():
            assert decorator(out, "secure") is None, f"{path.name}: @secure() output {name}"
        for node in walk(doc):
            if isinstance(node, dict) and "function" in node and isinstance(node["function"], dict):
                assert node["function"].get("type") != "list_func", f"{path.name}: list*() call"
            if isinstance(node, dict) and node.get("operator", {}).get("type") == "function_accessor":
                func = node["operator"]["operands"]["func_name"]
                assert not func.lower().startswith("list"), f"{path.name}: .{func}()"
        # Backstop over the text, for what pycep keeps inside strings (interpolations) or comments out.
        text = "\n".join(line.split("//")[0] for line in path.read_text().splitlines())
        assert not re.search(r"listKeys|listkeys|AccountKey=|SharedAccessSignature|api-key", text), path.name


# ---------------------------------------------------------------- network


def test_virtual_network_is_optional_and_off_by_default():
    main = _main()
    assert _param_default(main, "enableVirtualNetwork") is False
    _, _, condition = module_call(main, "network")
    assert condition == "enableVirtualNetwork"
    subnet = _module_params("functionApp")["virtualNetworkSubnetId"]["operator"]
    assert subnet["type"] == "conditional" and subnet["operands"]["condition"] == "enableVirtualNetwork"
    assert dotted(subnet["operands"]["true_value"]) == "network.outputs.appSubnetId"
    assert subnet["operands"]["false_value"] == ""
    access = _module_params("storage")["publicNetworkAccess"]["operator"]["operands"]
    assert access == {"condition": "enableVirtualNetwork", "true_value": "Disabled", "false_value": "Enabled"}


def test_network_delegates_the_app_subnet_and_adds_private_storage_endpoints():
    doc = _app("network")
    vnet = _one(doc, "Microsoft.Network/virtualNetworks")
    subnets = {s["name"]: s["properties"] for s in vnet.body["properties"]["subnets"]}
    assert [d["properties"]["serviceName"] for d in subnets["app"]["delegations"]] == ["Microsoft.App/environments"]
    assert "private-endpoints" in subnets
    services = doc["variables"]["storageServices"]["value"]
    assert services == ["blob", "queue", "table"]
    endpoints = _one(doc, "Microsoft.Network/privateEndpoints")
    assert endpoints.loop["detail"]["array_name"] == "storageServices"
    item = endpoints.loop["detail"]["item_name"]
    connection = endpoints.body["properties"]["privateLinkServiceConnections"][0]["properties"]
    assert connection["groupIds"] == [item]
    assert connection["privateLinkServiceId"] == "storageAccountId"
    zones = _one(doc, "Microsoft.Network/privateDnsZones")
    assert zones.loop["detail"]["array_name"] == "storageServices"
    # Interpolated string: pycep keeps it as text.
    item = zones.loop["detail"]["item_name"]
    assert zones.body["name"] == "privatelink.${" + item + "}.${environment().suffixes.storage}"
    for type_ in ("Microsoft.Network/privateDnsZones/virtualNetworkLinks",
                  "Microsoft.Network/privateEndpoints/privateDnsZoneGroups"):
        assert _one(doc, type_).loop["detail"]["array_name"] == "storageServices"
    assert dotted(_module_params("network")["storageAccountId"]) == "storage.outputs.id"


# ---------------------------------------------------------------- outputs


def test_outputs_azd_and_the_docs_rely_on():
    outs = _main()["outputs"]
    expected = {
        "AZURE_FUNCTION_NAME": "functionApp.outputs.name",
        "SERVICE_API_NAME": "functionApp.outputs.name",
        "SERVICE_API_URI": "functionApp.outputs.uri",
        "AZURE_OPENAI_ENDPOINT": "model.outputs.endpoint",
        "AZURE_OPENAI_DEPLOYMENT_NAME": "model.outputs.deploymentName",
        "AGENT_MODEL": "model.outputs.deploymentName",
        "DURABLE_TASK_SCHEDULER_ENDPOINT": "durableTask.outputs.endpoint",
        "DURABLE_TASK_SCHEDULER_DASHBOARD_URL": "durableTask.outputs.dashboardUrl",
        "TASKHUB_NAME": "durableTask.outputs.taskHubName",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "monitoring.outputs.connectionString",
        "AZURE_RESOURCE_GROUP": "rg.name",
    }
    assert {name: dotted(outs[name]["value"]) for name in expected} == expected
    assert _app("functionapp")["outputs"]["uri"]["value"] == "https://${site.properties.defaultHostName}"
    assert dotted(_app("durabletask")["outputs"]["dashboardUrl"]["value"]) == "taskHub.properties.dashboardUrl"


# ---------------------------------------------------------------- settings the code reads


def setting_names_read_by(paths: list[Path]) -> tuple[set[str], list[str]]:
    """Names passed as a string literal to ``get_setting`` / ``run_setting`` in the Python files under ``paths``,
    and ``file:line`` of calls whose name is not a literal (those cannot be cross-checked)."""
    names, dynamic = set(), []
    files = [p for root in paths for p in ([root] if root.is_file() else sorted(root.rglob("*.py")))]
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), filename=str(file))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if func not in SETTING_READERS:
                continue
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                names.add(first.value)
            else:
                dynamic.append(f"{file.name}:{node.lineno}")
    return names, dynamic


def documented_settings() -> set[str]:
    """Setting names in the first column of the docs/internals.md "Settings" table (the contract)."""
    text = (REPO_ROOT / "docs" / "internals.md").read_text()
    section = re.search(r"^## Settings\b.*?(?=^## )", text, re.S | re.M)
    assert section, "docs/internals.md has no '## Settings' section"
    names = set()
    for line in section.group(0).splitlines():
        if line.startswith("| `"):
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def test_setting_scanner_finds_literal_names_and_reports_dynamic_ones(tmp_path):
    code = tmp_path / "mod.py"
    code.write_text(
        "from durable_agents import _config as config, run_setting\n"
        "from durable_agents import get_setting\n"
        "a = get_setting('ALPHA', 'x')\n"
        "b = config.get_setting(\"BETA\")\n"
        "c = run_setting('GAMMA', '1')\n"
        "d = get_setting(name)\n"
        "e = other('NOT_A_SETTING')\n"
    )
    names, dynamic = setting_names_read_by([code])
    assert names == {"ALPHA", "BETA", "GAMMA"}
    assert dynamic == ["mod.py:6"]


def test_every_setting_the_code_reads_is_an_app_setting():
    code_names, _ = setting_names_read_by([REPO_ROOT / p for p in CODE_PATHS if (REPO_ROOT / p).exists()])
    documented = documented_settings()
    assert {"AGENT_MODEL", "TASKHUB_NAME", "DURABLE_TASK_SCHEDULER_CONNECTION_STRING"} <= documented
    needed = (code_names | documented) - LOCAL_ONLY_SETTINGS - PLATFORM_SETTINGS
    missing = needed - set(_app_settings())
    assert not missing, f"read by the code or documented, but not set on the function app: {sorted(missing)}"
    leaked = LOCAL_ONLY_SETTINGS & set(_app_settings())
    assert not leaked, f"local-only settings set in Azure: {sorted(leaked)}"
    platform = PLATFORM_SETTINGS & set(_app_settings())
    assert not platform, f"settings only the platform may set: {sorted(platform)}"
