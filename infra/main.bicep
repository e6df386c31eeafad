// Durable agents on Azure Functions: everything `azd up` provisions.
//
// Architecture (one module per box, under ./app):
//   identity     one user-assigned managed identity; the app uses it for everything (no keys, no secrets)
//   appRegistration      Entra ID app registration of the API (Graph Bicep): app roles Approver and Support,
//                        the identity as federated credential; appRegistrationUris adds api://<appId> afterwards
//   storage      host storage (AzureWebJobsStorage__*), the deployment container, the refund ledger and
//                approval audit tables
//   monitoring   Log Analytics + Application Insights, Entra ID ingestion only
//   durabletask  Durable Task Scheduler + task hub (the Durable Functions backend)
//   model        Azure OpenAI (AI Services account) + one chat model deployment
//   rbac         every role assignment, for the app identity and the deploying user (tables: per table)
//   network      optional virtual network: app subnet + private endpoints/DNS for storage
//   functionapp  Flex Consumption plan (FC1) + Linux Python 3.11 function app + its app settings, Easy Auth
//                (Entra ID, 401 without a token), basic-auth publishing off
targetScope = 'subscription'

// ---------- azd-provided parameters (main.parameters.json) ----------

@minLength(1)
@maxLength(64)
@description('azd environment name; also seeds the unique suffix of every resource name.')
param environmentName string

@minLength(1)
@description('Region for every resource except the model account (see openAiLocation). It must offer Flex Consumption and the Durable Task Scheduler.')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Object id of the deploying user (azd sets AZURE_PRINCIPAL_ID). Gets data-plane access to the scheduler dashboard and the model. Empty: no user role assignments.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Principal type of principalId: User for a person running azd, ServicePrincipal when a pipeline runs azd.')
param principalType string = 'User'

@description('Resource group name; empty means rg-<environmentName>.')
param resourceGroupName string = ''

// ---------- function app ----------

@allowed([
  512
  2048
  4096
])
@description('Flex Consumption instance memory size in MB.')
param functionInstanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Flex Consumption maximum instance count (scale-out limit).')
param functionMaximumInstanceCount int = 100

// ---------- Durable Task Scheduler ----------

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Durable Task Scheduler SKU: Consumption (pay per action, no idle cost) or Dedicated (fixed capacity units).')
param durableTaskSchedulerSku string = 'Consumption'

@minValue(1)
@maxValue(3)
@description('Capacity units when durableTaskSchedulerSku is Dedicated; ignored for Consumption.')
param durableTaskSchedulerCapacity int = 1

@description('IP ranges (CIDR) allowed to reach the scheduler endpoint. An empty list blocks all traffic, the app included.')
param durableTaskSchedulerIpAllowlist array = [
  '0.0.0.0/0'
]

@minLength(3)
@maxLength(64)
@description('Task hub name; becomes the TASKHUB_NAME app setting that host.json reads as %TASKHUB_NAME%.')
param taskHubName string = 'durableagents'

@minValue(0)
@maxValue(90)
@description('Days the scheduler keeps a Completed orchestration instance before autopurge (also the default for other terminal statuses). Maximum 90.')
param completedRetentionDays int = 30

@minValue(0)
@maxValue(90)
@description('Days the scheduler keeps a Failed, Terminated or Canceled instance before autopurge. Maximum 90.')
param failedRetentionDays int = 90

// ---------- model ----------

@description('Region of the Azure OpenAI account; empty means the same as location. Pick one where the model and SKU below are offered.')
param openAiLocation string = ''

@description('Model deployment name; becomes the AGENT_MODEL app setting.')
param modelDeploymentName string = 'gpt-4.1-mini'

@description('Model name in the Azure OpenAI catalogue.')
param modelName string = 'gpt-4.1-mini'

@description('Model version.')
param modelVersion string = '2025-04-14'

@description('Deployment SKU, e.g. GlobalStandard, DataZoneStandard, Standard.')
param modelSkuName string = 'GlobalStandard'

@minValue(1)
@description('Deployment capacity in thousands of tokens per minute.')
param modelCapacity int = 30

@description('Azure OpenAI data-plane API version the app uses (AZURE_OPENAI_API_VERSION).')
param openAiApiVersion string = '2025-04-01-preview'

@allowed([
  'responses'
  'chat_completions'
])
@description('Which OpenAI API the agents call (OPENAI_API).')
param openAiApi string = 'responses'

// ---------- app behaviour ----------

@description('How long a pending approval waits before it expires (ISO 8601 duration, APPROVAL_TIMEOUT).')
param approvalTimeout string = 'P1D'

@description('Refunds above this amount need a human approval (REFUND_APPROVAL_THRESHOLD).')
param refundApprovalThreshold string = '100'

@description('Attempts per model call before the run fails (MODEL_MAX_ATTEMPTS).')
param modelMaxAttempts string = '6'

@description('Model turns per agent run before the SDK stops it (AGENT_MAX_TURNS; the SDK default is 10).')
param agentMaxTurns string = '25'

@description('Live agent runs each worker process keeps in memory between episodes (AGENT_RUN_CACHE_SIZE; 0: replay every episode).')
param agentRunCacheSize string = '64'

@description('Seconds the OpenAI / Azure OpenAI client waits for one model call before it is a retryable timeout (MODEL_TIMEOUT).')
param modelTimeout string = '300'

@description('Model turns per generation: agent runs and conversations continue-as-new after this many (AGENT_TURNS_PER_GENERATION; 0: never).')
param agentTurnsPerGeneration string = '2'

@description('ISO 8601 duration after which an idle conversation closes itself (CONVERSATION_IDLE_TIMEOUT).')
param conversationIdleTimeout string = 'P7D'

@description('Tool results larger than this many bytes of JSON go to the payload blob container by reference (PAYLOAD_INLINE_MAX_BYTES).')
param payloadInlineMaxBytes string = '65536'

@description('How long the resolution workflow waits for a person to approve its plan (PLAN_APPROVAL_TIMEOUT).')
param planApprovalTimeout string = 'P1D'

@description('Score (1..10) a customer message needs from the judge agent (MESSAGE_PASSING_SCORE).')
param messagePassingScore string = '8'

@description('Writer/judge rounds before the customer_message workflow stops (MESSAGE_MAX_ROUNDS).')
param messageMaxRounds string = '3'

@description('Comma-separated host names the send_message tool lets customer messages link to (STORE_LINK_HOSTS); empty: no links at all.')
param storeLinkHosts string = ''

@description('Azure Table that holds the refund ledger (REFUND_LEDGER_TABLE_NAME).')
param refundLedgerTableName string = 'refunds'

@description('Azure Table that holds the approval audit (AUDIT_TABLE_NAME); it outlives orchestration autopurge.')
param auditTableName string = 'approvalaudit'

// ---------- authentication and authorization ----------

@description('App role value of approvers; the app registration defines it and APPROVER_ROLES lists it.')
param approverRole string = 'Approver'

@description('App role value of support staff (start runs for any customer); the app registration defines it and SUPPORT_ROLES lists it.')
param supportRole string = 'Support'

@description('Comma-separated Entra security group object ids whose members may decide approvals, besides the Approver role (APPROVER_GROUPS). Empty: roles only.')
param approverGroups string = ''

@description('Comma-separated Entra security group object ids whose members may act for any customer, besides the Support role (SUPPORT_GROUPS). Empty: roles only.')
param supportGroups string = ''

@allowed([
  'true'
  'false'
])
@description('Whoever started a run may not decide its approvals (SEPARATION_OF_DUTIES).')
param separationOfDuties string = 'true'

// ---------- network ----------

@description('Put the app in a virtual network and reach storage over private endpoints only.')
param enableVirtualNetwork bool = false

// ---------- names ----------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-api-${resourceToken}'
var authApplicationName = 'durable-agents-api-${resourceToken}'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity './app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-api-${resourceToken}'
    location: location
    tags: tags
  }
}

module appRegistration './app/appregistration.bicep' = {
  name: 'appregistration'
  scope: rg
  params: {
    uniqueName: authApplicationName
    displayName: 'Durable agents API (${environmentName})'
    identityPrincipalId: identity.outputs.principalId
    approverRole: approverRole
    supportRole: supportRole
  }
}

module storage './app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    refundLedgerTableName: refundLedgerTableName
    auditTableName: auditTableName
    // Payload blobs live as long as the scheduler keeps its longest-kept runs (failed, terminated, canceled: 90
    // days by default), at least one day.
    payloadRetentionDays: max(completedRetentionDays, failedRetentionDays, 1)
    publicNetworkAccess: enableVirtualNetwork ? 'Disabled' : 'Enabled'
  }
}

module monitoring './app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
  }
}

module durableTask './app/durabletask.bicep' = {
  name: 'durabletask'
  scope: rg
  params: {
    name: 'dts-${resourceToken}'
    location: location
    tags: tags
    skuName: durableTaskSchedulerSku
    capacity: durableTaskSchedulerCapacity
    ipAllowlist: durableTaskSchedulerIpAllowlist
    taskHubName: taskHubName
    completedRetentionDays: completedRetentionDays
    failedRetentionDays: failedRetentionDays
  }
}

module model './app/model.bicep' = {
  name: 'model'
  scope: rg
  params: {
    name: 'oai-${resourceToken}'
    location: empty(openAiLocation) ? location : openAiLocation
    tags: tags
    deploymentName: modelDeploymentName
    modelName: modelName
    modelVersion: modelVersion
    skuName: modelSkuName
    capacity: modelCapacity
  }
}

module rbac './app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    identityPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    storageAccountName: storage.outputs.name
    refundLedgerTableName: storage.outputs.refundLedgerTableName
    auditTableName: storage.outputs.auditTableName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    schedulerName: durableTask.outputs.schedulerName
    openAiAccountName: model.outputs.name
  }
}

module network './app/network.bicep' = if (enableVirtualNetwork) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
    storageAccountId: storage.outputs.id
  }
}

module functionApp './app/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: union(tags, {
      'azd-service-name': 'api'
    })
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    instanceMemoryMB: functionInstanceMemoryMB
    maximumInstanceCount: functionMaximumInstanceCount
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageTableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    schedulerEndpoint: durableTask.outputs.endpoint
    taskHubName: durableTask.outputs.taskHubName
    openAiEndpoint: model.outputs.endpoint
    modelDeploymentName: model.outputs.deploymentName
    openAiApiVersion: openAiApiVersion
    openAiApi: openAiApi
    refundLedgerTableName: storage.outputs.refundLedgerTableName
    approvalTimeout: approvalTimeout
    refundApprovalThreshold: refundApprovalThreshold
    modelMaxAttempts: modelMaxAttempts
    agentMaxTurns: agentMaxTurns
    agentRunCacheSize: agentRunCacheSize
    modelTimeout: modelTimeout
    agentTurnsPerGeneration: agentTurnsPerGeneration
    conversationIdleTimeout: conversationIdleTimeout
    payloadInlineMaxBytes: payloadInlineMaxBytes
    planApprovalTimeout: planApprovalTimeout
    messagePassingScore: messagePassingScore
    messageMaxRounds: messageMaxRounds
    storeLinkHosts: storeLinkHosts
    auditTableName: storage.outputs.auditTableName
    payloadContainerName: storage.outputs.payloadContainerName
    approverRoles: approverRole
    supportRoles: supportRole
    approverGroups: approverGroups
    supportGroups: supportGroups
    separationOfDuties: separationOfDuties
    authClientId: appRegistration.outputs.clientId
    virtualNetworkSubnetId: enableVirtualNetwork ? network!.outputs.appSubnetId : ''
  }
  // Role assignments first, so the app's first start already has its data-plane access.
  dependsOn: [
    rbac
  ]
}

module appRegistrationUris './app/appregistrationuris.bicep' = {
  name: 'appregistrationuris'
  scope: rg
  params: {
    uniqueName: appRegistration.outputs.uniqueName
    displayName: appRegistration.outputs.displayName
    clientId: appRegistration.outputs.clientId
    appRoles: appRegistration.outputs.appRoles
    oauth2PermissionScopes: appRegistration.outputs.oauth2PermissionScopes
    userImpersonationScopeId: appRegistration.outputs.userImpersonationScopeId
    appHostName: functionApp.outputs.hostName
  }
}

// ---------- outputs (azd stores them in .azure/<env>/.env) ----------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = functionApp.outputs.name
output SERVICE_API_NAME string = functionApp.outputs.name
output SERVICE_API_URI string = functionApp.outputs.uri
output AZURE_CLIENT_ID string = identity.outputs.clientId
output AZURE_OPENAI_ENDPOINT string = model.outputs.endpoint
output AZURE_OPENAI_DEPLOYMENT_NAME string = model.outputs.deploymentName
output AZURE_OPENAI_API_VERSION string = openAiApiVersion
output AGENT_MODEL string = model.outputs.deploymentName
output DURABLE_TASK_SCHEDULER_ENDPOINT string = durableTask.outputs.endpoint
output DURABLE_TASK_SCHEDULER_DASHBOARD_URL string = durableTask.outputs.dashboardUrl
output TASKHUB_NAME string = durableTask.outputs.taskHubName
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output REFUND_LEDGER_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AUDIT_TABLE_ENDPOINT string = storage.outputs.tableEndpoint
output AUDIT_TABLE_NAME string = storage.outputs.auditTableName
output PAYLOAD_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output PAYLOAD_BLOB_CONTAINER string = storage.outputs.payloadContainerName
// Entra ID app registration of the API (README "Security in Azure": assigning the Approver / Support roles).
output AUTH_CLIENT_ID string = appRegistration.outputs.clientId
output AUTH_IDENTIFIER_URI string = appRegistrationUris.outputs.identifierUri
output AUTH_SERVICE_PRINCIPAL_ID string = appRegistration.outputs.servicePrincipalId
output AUTH_APPROVER_ROLE_ID string = appRegistration.outputs.approverRoleId
output AUTH_SUPPORT_ROLE_ID string = appRegistration.outputs.supportRoleId
