# azd postdeploy hook (Windows / pwsh): print the API base URL, how to get a function key and an Entra ID token,
# and how to grant the Approver / Support app roles. azd exports the provisioning outputs (SERVICE_API_URI,
# AZURE_FUNCTION_NAME, AZURE_RESOURCE_GROUP, AUTH_CLIENT_ID, ...) as environment variables. Neither the key nor a
# token is ever printed: they are secrets; the commands that fetch them are.
$ErrorActionPreference = 'Stop'

if (-not $env:SERVICE_API_URI -or -not $env:AZURE_FUNCTION_NAME) {
    Write-Error "postdeploy: SERVICE_API_URI / AZURE_FUNCTION_NAME not set; run 'azd provision' first."
    exit 1
}

$api = "$($env:SERVICE_API_URI.TrimEnd('/'))/api"
$group = if ($env:AZURE_RESOURCE_GROUP) { $env:AZURE_RESOURCE_GROUP } else { '<resource-group>' }
$name = $env:AZURE_FUNCTION_NAME
$clientId = if ($env:AUTH_CLIENT_ID) { $env:AUTH_CLIENT_ID } else { '<AUTH_CLIENT_ID>' }
$spId = if ($env:AUTH_SERVICE_PRINCIPAL_ID) { $env:AUTH_SERVICE_PRINCIPAL_ID } else { '<AUTH_SERVICE_PRINCIPAL_ID>' }
$approverRole = if ($env:AUTH_APPROVER_ROLE_ID) { $env:AUTH_APPROVER_ROLE_ID } else { '<AUTH_APPROVER_ROLE_ID>' }
$supportRole = if ($env:AUTH_SUPPORT_ROLE_ID) { $env:AUTH_SUPPORT_ROLE_ID } else { '<AUTH_SUPPORT_ROLE_ID>' }
$dashboard = if ($env:DURABLE_TASK_SCHEDULER_DASHBOARD_URL) { $env:DURABLE_TASK_SCHEDULER_DASHBOARD_URL } else { 'https://dashboard.durabletask.io' }

Write-Host ""
Write-Host "Durable agents API: $api"
Write-Host "  e.g. GET $api/agents"
Write-Host ""
Write-Host "Every route needs a function key (auth level FUNCTION). Get the app's default key with:"
Write-Host "  az functionapp keys list -g $group -n $name --query functionKeys.default -o tsv"
Write-Host ""
Write-Host "App Service authentication answers 401 without a Microsoft Entra ID token for the API (api://$clientId)."
Write-Host "Azure CLI is pre-authorized, so no consent prompt:"
Write-Host "  az account get-access-token --scope api://$clientId/user_impersonation --query accessToken -o tsv"
Write-Host ""
Write-Host "Then call the API with both:"
Write-Host "  `$key = az functionapp keys list -g $group -n $name --query functionKeys.default -o tsv"
Write-Host "  `$token = az account get-access-token --scope api://$clientId/user_impersonation --query accessToken -o tsv"
Write-Host "  Invoke-RestMethod -Uri '$api/agents' -Headers @{ 'x-functions-key' = `$key; Authorization = `"Bearer `$token`" }"
Write-Host ""
Write-Host "Approving needs the Approver app role (starting runs for any customer: Support). An owner of the enterprise"
Write-Host "application or a (Cloud) Application Administrator grants it once per person (then get a new token):"
Write-Host "  az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/$spId/appRoleAssignedTo ``"
Write-Host "    --body '{`"principalId`":`"<user-object-id>`",`"resourceId`":`"$spId`",`"appRoleId`":`"$approverRole`"}'"
Write-Host "  (Support: appRoleId $supportRole; a user's object id: az ad user show --id <upn> --query id -o tsv)"
Write-Host "or in the Entra admin center: Enterprise applications > the API > Users and groups > Add user/group."
Write-Host ""
Write-Host "Watch runs in the Durable Task Scheduler dashboard: $dashboard"
