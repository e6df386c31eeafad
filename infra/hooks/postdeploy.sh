#!/bin/sh
# azd postdeploy hook (posix): print the API base URL and how to get a function key.
# azd exports the provisioning outputs (SERVICE_API_URI, AZURE_FUNCTION_NAME, AZURE_RESOURCE_GROUP, ...) as
# environment variables. The key itself is never printed: it is a secret.
set -eu

if [ -z "${SERVICE_API_URI:-}" ] || [ -z "${AZURE_FUNCTION_NAME:-}" ]; then
  echo "postdeploy: SERVICE_API_URI / AZURE_FUNCTION_NAME not set; run 'azd provision' first." >&2
  exit 1
fi

api="${SERVICE_API_URI%/}/api"
group="${AZURE_RESOURCE_GROUP:-<resource-group>}"

cat <<MSG

Durable agents API: ${api}
  e.g. GET ${api}/agents

Every route needs a function key (auth level FUNCTION). Get the app's default key with:
  az functionapp keys list -g ${group} -n ${AZURE_FUNCTION_NAME} --query functionKeys.default -o tsv

Then call the API with it:
  key=\$(az functionapp keys list -g ${group} -n ${AZURE_FUNCTION_NAME} --query functionKeys.default -o tsv)
  curl -s "${api}/agents" -H "x-functions-key: \$key"

Watch runs in the Durable Task Scheduler dashboard: ${DURABLE_TASK_SCHEDULER_DASHBOARD_URL:-https://dashboard.durabletask.io}
MSG
