// Durable Task Scheduler: the managed Durable Functions backend (host.json storageProvider "azureManaged").
// The endpoint is read from the resource, never assembled from the name.

@description('Scheduler name (3-64 letters, digits, hyphens).')
param name string

@description('Region.')
param location string

@description('Resource tags.')
param tags object = {}

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Consumption: pay per dispatched action, no idle cost. Dedicated: fixed monthly capacity units.')
param skuName string = 'Consumption'

@minValue(1)
@maxValue(3)
@description('Capacity units; used only by the Dedicated SKU.')
param capacity int = 1

@description('Allowed client IP ranges; an empty list denies all traffic.')
param ipAllowlist array = [
  '0.0.0.0/0'
]

@description('Task hub name.')
param taskHubName string

@minValue(0)
@maxValue(90)
@description('Days a Completed orchestration instance (and any purgeable status without its own policy) is kept before autopurge. Service maximum: 90.')
param completedRetentionDays int = 30

@minValue(0)
@maxValue(90)
@description('Days a Failed, Terminated or Canceled instance is kept before autopurge (longer: these are investigated). Service maximum: 90.')
param failedRetentionDays int = 90

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: (skuName == 'Dedicated') ? {
      name: 'Dedicated'
      capacity: capacity
    } : {
      name: 'Consumption'
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

// Autopurge of finished instances, for every task hub of the scheduler (only terminal statuses are purged;
// Pending, Running, Suspended and ContinuedAsNew instances are never touched). The entry without
// orchestrationState is the default for any purgeable status that has no entry of its own. The approval
// audit is not orchestration state (it is a table row, storage.bicep), so purging a run keeps who approved what.
// Reference: https://learn.microsoft.com/azure/durable-task/scheduler/durable-task-scheduler-auto-purge
resource retentionPolicy 'Microsoft.DurableTask/schedulers/retentionPolicies@2025-11-01' = {
  parent: scheduler
  name: 'default'
  properties: {
    retentionPolicies: [
      {
        retentionPeriodInDays: completedRetentionDays
      }
      {
        orchestrationState: 'Completed'
        retentionPeriodInDays: completedRetentionDays
      }
      {
        orchestrationState: 'Failed'
        retentionPeriodInDays: failedRetentionDays
      }
      {
        orchestrationState: 'Terminated'
        retentionPeriodInDays: failedRetentionDays
      }
      {
        orchestrationState: 'Canceled'
        retentionPeriodInDays: failedRetentionDays
      }
    ]
  }
}

output schedulerName string = scheduler.name
output schedulerId string = scheduler.id
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
output dashboardUrl string = taskHub.properties.dashboardUrl
