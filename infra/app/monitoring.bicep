// Log Analytics + workspace-based Application Insights. Local (key) authentication is disabled on both, so
// telemetry is accepted only with an Entra ID token: the app sends APPLICATIONINSIGHTS_AUTHENTICATION_STRING
// with its identity, which holds Monitoring Metrics Publisher (rbac.bicep).

@description('Log Analytics workspace name.')
param logAnalyticsName string

@description('Application Insights component name.')
param applicationInsightsName string

@description('Region.')
param location string

@description('Resource tags.')
param tags object = {}

@minValue(30)
@description('Log retention in days.')
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    features: {
      disableLocalAuth: true
    }
  }
}

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
// The connection string carries the ingestion endpoint and an instrumentation key that is an identifier, not a
// credential: with DisableLocalAuth the service rejects telemetry that has no Entra ID token.
output connectionString string = applicationInsights.properties.ConnectionString
output workspaceId string = workspace.id
