// Storage for the Functions host (AzureWebJobsStorage over managed identity: blobs for keys and leases),
// the Flex Consumption deployment container, the refund ledger table and the approval audit table.
// The two tables are created here so that the app identity needs no account-wide table role (rbac.bicep
// scopes its table role to each table; the app's create-if-missing gets 403 and carries on).
// Shared-key access is off: every client authenticates with Entra ID.

@description('Storage account name (3-24 lowercase letters and digits).')
param name string

@description('Region.')
param location string

@description('Resource tags.')
param tags object = {}

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Table that holds the refund ledger.')
param refundLedgerTableName string

@description('Table that holds the approval audit (who requested and who decided each approval).')
param auditTableName string = 'approvalaudit'

@allowed([
  'Enabled'
  'Disabled'
])
@description('Disabled when the app reaches storage through private endpoints.')
param publicNetworkAccess string = 'Enabled'

resource account 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: publicNetworkAccess
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: (publicNetworkAccess == 'Disabled') ? 'Deny' : 'Allow'
    }
  }
}

// Child resources are declared with `parent:` (not nested) so that tests/infra can read them with pycep.
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2024-01-01' = {
  parent: account
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2024-01-01' = {
  parent: account
  name: 'default'
}

resource refundLedgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: refundLedgerTableName
}

resource auditTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2024-01-01' = {
  parent: tableService
  name: auditTableName
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
output queueEndpoint string = account.properties.primaryEndpoints.queue
output tableEndpoint string = account.properties.primaryEndpoints.table
output refundLedgerTableName string = refundLedgerTable.name
output auditTableName string = auditTable.name
