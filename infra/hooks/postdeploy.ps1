# azd postdeploy hook (Windows / pwsh): print the API base URL and how to get a function key.
# azd exports the provisioning outputs (SERVICE_API_URI, AZURE_FUNCTION_NAME, AZURE_RESOURCE_GROUP, ...) as
# environment variables. The key itself is never printed: it is a secret.
$ErrorActionPreference = 'Stop'

if (-not $env:SERVICE_API_URI -or -not $env:AZURE_FUNCTION_NAME) {
    Write-Error "postdeploy: SERVICE_API_URI / AZURE_FUNCTION_NAME not set; run 'azd provision' first."
    exit 1
}

$api = "$($env:SERVICE_API_URI.TrimEnd('/'))/api"
$group = if ($env:AZURE_RESOURCE_GROUP) { $env:AZURE_RESOURCE_GROUP } else { '<resource-group>' }
$name = $env:AZURE_FUNCTION_NAME
$dashboard = if ($env:DURABLE_TASK_SCHEDULER_DASHBOARD_URL) { $env:DURABLE_TASK_SCHEDULER_DASHBOARD_URL } else { 'https://dashboard.durabletask.io' }

Write-Host ""
Write-Host "Durable agents API: $api"
Write-Host "  e.g. GET $api/agents"
Write-Host ""
Write-Host "Every route needs a function key (auth level FUNCTION). Get the app's default key with:"
Write-Host "  az functionapp keys list -g $group -n $name --query functionKeys.default -o tsv"
Write-Host ""
Write-Host "Then call the API with it:"
Write-Host "  `$key = az functionapp keys list -g $group -n $name --query functionKeys.default -o tsv"
Write-Host "  Invoke-RestMethod -Uri '$api/agents' -Headers @{ 'x-functions-key' = `$key }"
Write-Host ""
Write-Host "Watch runs in the Durable Task Scheduler dashboard: $dashboard"
