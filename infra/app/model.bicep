// Azure OpenAI: an AI Services account with local (key) authentication disabled, so callers must present an
// Entra ID token (the app identity and the deploying user hold Cognitive Services OpenAI User, rbac.bicep),
// and one chat model deployment whose name the app reads as AGENT_MODEL.

@description('Account name; also its custom subdomain, which Entra ID authentication requires.')
param name string

@description('Region; must offer the model and SKU below.')
param location string

@description('Resource tags.')
param tags object = {}

@description('Deployment name (AGENT_MODEL).')
param deploymentName string

@description('Model name, e.g. gpt-4.1-mini.')
param modelName string

@description('Model version, e.g. 2025-04-14.')
param modelVersion string

@description('Deployment SKU, e.g. GlobalStandard.')
param skuName string = 'GlobalStandard'

@minValue(1)
@description('Capacity in thousands of tokens per minute.')
param capacity int = 30

resource account 'Microsoft.CognitiveServices/accounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'AIServices'
  sku: {
    name: 'S0'
  }
  properties: {
    customSubDomainName: name
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource deployment 'Microsoft.CognitiveServices/accounts/deployments@2025-06-01' = {
  parent: account
  name: deploymentName
  sku: {
    name: skuName
    capacity: capacity
  }
  properties: {
    model: {
      format: 'OpenAI'
      name: modelName
      version: modelVersion
    }
    versionUpgradeOption: 'OnceNewDefaultVersionAvailable'
  }
}

output name string = account.name
output id string = account.id
output endpoint string = account.properties.endpoints['OpenAI Language Model Instance API']
output deploymentName string = deployment.name
