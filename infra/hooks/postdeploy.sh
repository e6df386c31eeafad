#!/bin/sh
# azd postdeploy hook (posix): print the API base URL, how to get a function key and an Entra ID token, and how
# to grant the Approver / Support app roles. azd exports the provisioning outputs (SERVICE_API_URI,
# AZURE_FUNCTION_NAME, AZURE_RESOURCE_GROUP, AUTH_CLIENT_ID, ...) as environment variables. Neither the key nor a
# token is ever printed: they are secrets; the commands that fetch them are.
set -eu

if [ -z "${SERVICE_API_URI:-}" ] || [ -z "${AZURE_FUNCTION_NAME:-}" ]; then
  echo "postdeploy: SERVICE_API_URI / AZURE_FUNCTION_NAME not set; run 'azd provision' first." >&2
  exit 1
fi

api="${SERVICE_API_URI%/}/api"
group="${AZURE_RESOURCE_GROUP:-<resource-group>}"
client_id="${AUTH_CLIENT_ID:-<AUTH_CLIENT_ID>}"
sp_id="${AUTH_SERVICE_PRINCIPAL_ID:-<AUTH_SERVICE_PRINCIPAL_ID>}"
approver_role="${AUTH_APPROVER_ROLE_ID:-<AUTH_APPROVER_ROLE_ID>}"
support_role="${AUTH_SUPPORT_ROLE_ID:-<AUTH_SUPPORT_ROLE_ID>}"

cat <<MSG

Durable agents API: ${api}
  e.g. GET ${api}/agents

Every route needs a function key (auth level FUNCTION). Get the app's default key with:
  az functionapp keys list -g ${group} -n ${AZURE_FUNCTION_NAME} --query functionKeys.default -o tsv

App Service authentication answers 401 without a Microsoft Entra ID token for the API (api://${client_id}).
Azure CLI is pre-authorized, so no consent prompt:
  az account get-access-token --scope api://${client_id}/user_impersonation --query accessToken -o tsv

Then call the API with both:
  key=\$(az functionapp keys list -g ${group} -n ${AZURE_FUNCTION_NAME} --query functionKeys.default -o tsv)
  token=\$(az account get-access-token --scope api://${client_id}/user_impersonation --query accessToken -o tsv)
  curl -s "${api}/agents" -H "x-functions-key: \$key" -H "Authorization: Bearer \$token"

Approving needs the Approver app role (starting runs for any customer: Support). An owner of the enterprise
application or a (Cloud) Application Administrator grants it once per person (then get a new token):
  az rest --method POST --uri https://graph.microsoft.com/v1.0/servicePrincipals/${sp_id}/appRoleAssignedTo \\
    --body '{"principalId":"<user-object-id>","resourceId":"${sp_id}","appRoleId":"${approver_role}"}'
  (Support: appRoleId ${support_role}; a user's object id: az ad user show --id <upn> --query id -o tsv)
or in the Entra admin center: Enterprise applications > the API > Users and groups > Add user/group.

Watch runs in the Durable Task Scheduler dashboard: ${DURABLE_TASK_SCHEDULER_DASHBOARD_URL:-https://dashboard.durabletask.io}
MSG
