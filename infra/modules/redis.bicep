// Azure Cache for Redis, TLS only, with Microsoft Entra authentication and access keys
// disabled: the only way in is a token of the managed identity given an access policy.

param name string
param location string
param tags object

@description('Object id of the managed identity that keeps sessions here.')
param principalId string

@description('A readable name for that identity in the access policy assignment.')
param principalName string

@allowed(['Basic', 'Standard'])
@description('Basic has no replica and no SLA; choose Standard for production.')
param skuName string = 'Basic'

resource redis 'Microsoft.Cache/redis@2024-11-01' = {
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
    disableAccessKeyAuthentication: true
    redisConfiguration: {
      'aad-enabled': 'true'
    }
  }
}

// Read, write and expire keys; no administrative or dangerous command.
resource sessions 'Microsoft.Cache/redis/accessPolicyAssignments@2024-11-01' = {
  parent: redis
  name: 'app-sessions'
  properties: {
    accessPolicyName: 'Data Contributor'
    objectId: principalId
    objectIdAlias: principalName
  }
}

output name string = redis.name
output hostName string = redis.properties.hostName
output sslPort int = redis.properties.sslPort
