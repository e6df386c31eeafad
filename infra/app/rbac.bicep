// Every role assignment of the deployment. Data-plane roles only, each at the narrowest scope the data allows;
// no keys anywhere.
//   app identity (ServicePrincipal):
//     storage account   Storage Blob Data Owner: host storage (AzureWebJobsStorage__blobServiceUri; the host
//                       creates its azure-webjobs-* containers, so account scope) and the deployment container
//     refund ledger     Storage Table Data Contributor, scoped to that table
//     approval audit    Storage Table Data Contributor, scoped to that table. No built-in table role is narrower
//                       than Contributor on the write side (Storage Table Data Reader / Contributor are the only
//                       two); insert-only would need a custom role with .../tables/entities/add/action.
//     (none)            no queue role: no queue or blob triggers, Durable state is in the scheduler
//     App Insights      Monitoring Metrics Publisher (Entra ID telemetry ingestion)
//     scheduler         Durable Task Data Contributor
//     OpenAI account    Cognitive Services OpenAI User
//   deploying user (principalType User unless told otherwise), only when userPrincipalId is set:
//     scheduler         Durable Task Data Contributor (the dashboard)
//     OpenAI account    Cognitive Services OpenAI User (call the model from a laptop with az login)
// Role definition ids: https://learn.microsoft.com/azure/role-based-access-control/built-in-roles

@description('principalId of the app\'s user-assigned identity.')
param identityPrincipalId string

@description('Object id of the deploying user; empty skips the user assignments.')
param userPrincipalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Principal type of userPrincipalId.')
param userPrincipalType string = 'User'

@description('Storage account name.')
param storageAccountName string

@description('Refund ledger table name (a table of storageAccountName).')
param refundLedgerTableName string

@description('Approval audit table name (a table of storageAccountName).')
param auditTableName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Durable Task Scheduler name.')
param schedulerName string

@description('Azure OpenAI (AI Services) account name.')
param openAiAccountName string

var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'
var durableTaskDataContributor = '0ad04412-c4d5-4796-b79c-f76d14c8d402'
var cognitiveServicesOpenAiUser = '5e0bd9bd-7b93-4f28-af87-19fc36ad61bd'

resource storageAccount 'Microsoft.Storage/storageAccounts@2024-01-01' existing = {
  name: storageAccountName
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource refundLedgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' existing = {
  parent: tableService
  name: refundLedgerTableName
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' existing = {
  parent: tableService
  name: auditTableName
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' existing = {
  name: schedulerName
}

resource openAiAccount 'Microsoft.CognitiveServices/accounts@2025-06-01' existing = {
  name: openAiAccountName
}

// ---------- app identity ----------

resource appStorageBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storageAccount.id, identityPrincipalId, storageBlobDataOwner)
  scope: storageAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appRefundLedgerTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(refundLedgerTable.id, identityPrincipalId, storageTableDataContributor)
  scope: refundLedgerTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appAuditTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditTable.id, identityPrincipalId, storageTableDataContributor)
  scope: auditTable
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appMonitoringMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, identityPrincipalId, monitoringMetricsPublisher)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appDurableTaskDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scheduler.id, identityPrincipalId, durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource appOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(openAiAccount.id, identityPrincipalId, cognitiveServicesOpenAiUser)
  scope: openAiAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAiUser)
    principalId: identityPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// ---------- deploying user ----------

resource userDurableTaskDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(scheduler.id, userPrincipalId, durableTaskDataContributor)
  scope: scheduler
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', durableTaskDataContributor)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userOpenAiUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(openAiAccount.id, userPrincipalId, cognitiveServicesOpenAiUser)
  scope: openAiAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cognitiveServicesOpenAiUser)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
