// Storage for the Functions host (AzureWebJobsStorage over managed identity: blobs for keys and leases),
// the Flex Consumption deployment container, the agent payload container (large model requests, tool results and
// conversation state kept out of Durable history, PAYLOAD_BLOB_*), the refund ledger table and the approval audit
// table.
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

@description('Blob container that holds agent payloads passed by reference (PAYLOAD_BLOB_CONTAINER).')
param payloadContainerName string = 'agentpayloads'

@minValue(1)
@description('Days after its last modification a payload blob is deleted: the Durable Task Scheduler\'s longest retention (failed runs), so blobs of runs the scheduler purges by retention go too.')
param payloadRetentionDays int = 90

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

// Agent payloads (durable_agents/_blobs.py): private, reached only with the managed identity. No role is added
// for it: the app identity's Storage Blob Data Owner on this account (rbac.bicep, needed anyway by the Functions
// host, which creates its azure-webjobs-* containers) already covers read, write, list and delete of these blobs,
// and a container-scoped Storage Blob Data Contributor next to it would grant nothing more.
resource payloadContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2024-01-01' = {
  parent: blobService
  name: payloadContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Payload blobs are deleted payloadRetentionDays after their last write. A purged run's blobs are deleted by the
// app (runs/<instance id>/ prefix); this rule catches the runs the scheduler purges by retention on its own.
resource lifecyclePolicy 'Microsoft.Storage/storageAccounts/managementPolicies@2024-01-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-expired-agent-payloads'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${payloadContainer.name}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: payloadRetentionDays
                }
              }
            }
          }
        }
      ]
    }
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
output payloadContainerName string = payloadContainer.name
output refundLedgerTableName string = refundLedgerTable.name
output auditTableName string = auditTable.name
