// The one user-assigned managed identity the function app uses for everything: host storage, deployment
// package, refund ledger table, Durable Task Scheduler, Azure OpenAI and Application Insights ingestion.
// Being user-assigned, it exists before the app and its role assignments can be granted up front.

@description('Identity name.')
param name string

@description('Region.')
param location string

@description('Resource tags.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
