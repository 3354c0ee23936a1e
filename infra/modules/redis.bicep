// Azure Cache for Redis, TLS only: the store every instance keeps sessions in.

param name string
param location string
param tags object

@allowed(['Basic', 'Standard'])
@description('Basic has no replica and no SLA; choose Standard for production.')
param skuName string = 'Basic'

resource redis 'Microsoft.Cache/redis@2023-08-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    sku: {
      name: skuName
      family: 'C'
      capacity: 0
    }
    enableNonSslPort: false
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

output name string = redis.name
