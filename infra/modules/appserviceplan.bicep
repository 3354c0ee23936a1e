// A Linux App Service plan.

param name string
param location string
param tags object

@description('Plan size, e.g. B1 or P0v3.')
param sku string

@description('Number of instances.')
param capacity int

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'linux'
  sku: {
    name: sku
    capacity: capacity
  }
  properties: {
    reserved: true // Linux
  }
}

output id string = plan.id
