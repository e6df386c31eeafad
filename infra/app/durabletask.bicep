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

output schedulerName string = scheduler.name
output schedulerId string = scheduler.id
output endpoint string = scheduler.properties.endpoint
output taskHubName string = taskHub.name
output dashboardUrl string = taskHub.properties.dashboardUrl
