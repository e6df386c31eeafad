"""The Bicep of the agent payload blobs (issue 10): a private container in the app's storage account, the app
settings that point the code at it, a lifecycle rule that deletes its blobs once the scheduler has purged their
runs, and no role beyond the ones the deployment already had.

Walks pycep's JSON of the real files (tests/infra/bicep_model.py), like tests/infra/test_bicep.py.
"""

from __future__ import annotations

from pycep import BicepParser

from durable_agents import _blobs
from tests.infra.bicep_model import dotted, load, module_call, resources, walk
from tests.infra.test_bicep import (
    LOCAL_ONLY_SETTINGS,
    STORAGE_BLOB_DATA_OWNER,
    _app_settings,
    _role_assignments,
)

CONTAINER = "Microsoft.Storage/storageAccounts/blobServices/containers"
POLICY = "Microsoft.Storage/storageAccounts/managementPolicies"


def _storage():
    return load("app/storage.bicep")


def _payload_container():
    [container] = [r for r in resources(_storage(), CONTAINER) if r.body["name"] == "payloadContainerName"]
    return container


def _module_params(symbol: str) -> dict:
    return module_call(load("main.bicep"), symbol)[1]["params"]


def test_the_payload_container_is_private_in_the_apps_storage_account():
    doc = _storage()
    container = _payload_container()
    assert container.body["properties"] == {"publicAccess": "None"}
    [blob_service] = resources(doc, "Microsoft.Storage/storageAccounts/blobServices")
    assert container.body["parent"] == blob_service.symbol
    [account] = [r for r in resources(doc, "Microsoft.Storage/storageAccounts") if not r.existing]
    assert blob_service.body["parent"] == account.symbol
    assert account.body["properties"]["allowBlobPublicAccess"] is False
    assert account.body["properties"]["allowSharedKeyAccess"] is False
    assert doc["parameters"]["payloadContainerName"]["default"] == _blobs.DEFAULT_PAYLOAD_CONTAINER
    assert dotted(doc["outputs"]["payloadContainerName"]["value"]) == f"{container.symbol}.name"


def test_the_app_settings_point_the_code_at_the_container_with_the_identity():
    settings = _app_settings()
    assert settings["PAYLOAD_BLOB_ENDPOINT"] == "storageBlobEndpoint"
    assert settings["PAYLOAD_BLOB_CONTAINER"] == "payloadContainerName"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"  # DefaultAzureCredential's user-assigned identity
    params = _module_params("functionApp")
    assert dotted(params["storageBlobEndpoint"]) == "storage.outputs.blobEndpoint"
    assert dotted(params["payloadContainerName"]) == "storage.outputs.payloadContainerName"
    functionapp = load("app/functionapp.bicep")
    assert functionapp["parameters"]["payloadContainerName"]["default"] == _blobs.DEFAULT_PAYLOAD_CONTAINER


def test_local_only_payload_settings_stay_out_of_azure():
    assert {"PAYLOAD_PATH", "PAYLOAD_BLOB_CONNECTION_STRING"} <= LOCAL_ONLY_SETTINGS
    assert not {"PAYLOAD_PATH", "PAYLOAD_BLOB_CONNECTION_STRING"} & set(_app_settings())


def test_azd_outputs_name_the_endpoint_and_container():
    outs = load("main.bicep")["outputs"]
    assert dotted(outs["PAYLOAD_BLOB_ENDPOINT"]["value"]) == "storage.outputs.blobEndpoint"
    assert dotted(outs["PAYLOAD_BLOB_CONTAINER"]["value"]) == "storage.outputs.payloadContainerName"


def test_a_lifecycle_rule_deletes_payload_blobs_after_the_schedulers_longest_retention():
    doc = _storage()
    [policy] = resources(doc, POLICY)
    assert policy.body["name"] == "default"  # the one management policy an account may have
    [account] = [r for r in resources(doc, "Microsoft.Storage/storageAccounts") if not r.existing]
    assert policy.body["parent"] == account.symbol
    [rule] = policy.body["properties"]["policy"]["rules"]
    assert (rule["enabled"], rule["type"]) == (True, "Lifecycle")
    # pycep keeps interpolated strings as text: the rule covers exactly the payload container's blobs.
    assert rule["definition"]["filters"] == {
        "blobTypes": ["blockBlob"],
        "prefixMatch": [f"${{{_payload_container().symbol}.name}}/"],
    }
    assert rule["definition"]["actions"] == {
        "baseBlob": {"delete": {"daysAfterModificationGreaterThan": "payloadRetentionDays"}}
    }
    assert doc["parameters"]["payloadRetentionDays"]["default"] == 90


def test_the_retention_days_are_the_schedulers_failed_run_retention():
    main = load("main.bicep")
    assert _module_params("storage")["payloadRetentionDays"] == {"function": {"type": "max", "parameters": {
        "arg_1": "completedRetentionDays", "arg_2": "failedRetentionDays", "arg_3": 1}}}
    assert main["parameters"]["failedRetentionDays"]["default"] == 90
    assert main["parameters"]["completedRetentionDays"]["default"] == 30
    assert _module_params("durableTask")["failedRetentionDays"] == "failedRetentionDays"
    assert _module_params("durableTask")["completedRetentionDays"] == "completedRetentionDays"
    [policy] = resources(load("app/durabletask.bicep"), "Microsoft.DurableTask/schedulers/retentionPolicies")
    by_state = {p.get("orchestrationState"): p["retentionPeriodInDays"]
                for p in policy.body["properties"]["retentionPolicies"]}
    assert by_state["Failed"] == by_state["Terminated"] == by_state["Canceled"] == "failedRetentionDays"
    assert load("app/durabletask.bicep")["parameters"]["failedRetentionDays"]["default"] == 90


def test_no_role_is_added_for_the_payloads():
    """The app identity's account-wide Storage Blob Data Owner (the Functions host needs it) already covers the
    container; the deployment's storage roles are exactly those it had before the payload container."""
    storage_roles = [row for row in _role_assignments() if row[3].startswith("Microsoft.Storage/")]
    assert sorted(storage_roles) == sorted([
        (STORAGE_BLOB_DATA_OWNER, "identityPrincipalId", "ServicePrincipal", "Microsoft.Storage/storageAccounts",
         False),
        ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "identityPrincipalId", "ServicePrincipal",
         "Microsoft.Storage/storageAccounts/tableServices/tables:refundLedgerTableName", False),
        ("0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3", "identityPrincipalId", "ServicePrincipal",
         "Microsoft.Storage/storageAccounts/tableServices/tables:auditTableName", False),
    ])
    rbac = load("app/rbac.bicep")
    assert not resources(rbac, CONTAINER), "no role is scoped to a container"
    assert not resources(rbac, "Microsoft.Authorization/roleDefinitions"), "no custom role"


KEY_FUNCTIONS = {"listkeys", "listaccountsas", "listservicesas"}


def key_or_sas_calls(doc) -> list[str]:
    """Names of the key / SAS functions (``listKeys``, ``listAccountSas``, ``listServiceSas``) called anywhere in
    pycep's JSON ``doc``: as functions, as resource methods (``account.listKeys()``) or inside interpolated text."""
    found = []
    for node in walk(doc):
        if isinstance(node, dict) and isinstance(node.get("function"), dict):
            name = str(node["function"].get("type", ""))
        elif isinstance(node, dict) and isinstance(node.get("func_name"), str):
            name = node["func_name"]
        elif isinstance(node, str):
            name = next((k for k in ("listKeys(", "listAccountSas(", "listServiceSas(") if k in node), "")
        else:
            continue
        if name.replace("_", "").rstrip("(").lower() in KEY_FUNCTIONS:
            found.append(name.rstrip("("))
    return found


def test_the_key_scanner_finds_every_form(tmp_path):
    bicep = tmp_path / "keys.bicep"
    bicep.write_text(
        "resource account 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {\n  name: 'x'\n}\n"
        "var k = account.listKeys().keys[0].value\n"
        "var s = listAccountSas(account.id, '2024-01-01', {})\n"
        "var t = 'key=${account.listKeys().keys[0].value}'\n"
        "var fine = account.properties.primaryEndpoints.blob\n"
    )
    doc = BicepParser().parse(file_path=bicep)
    assert sorted(key_or_sas_calls(doc)) == ["listAccountSas", "listKeys", "listKeys"]


def test_nothing_hands_out_a_key_or_sas_for_the_payloads():
    for path in ("app/storage.bicep", "app/functionapp.bicep", "app/rbac.bicep", "main.bicep"):
        assert key_or_sas_calls(load(path)) == [], path
    assert not [name for name in _app_settings() if name.startswith("PAYLOAD_") and "CONNECTION" in name]
