// A Key Vault holding one RSA key that Flask's SECRET_KEY is derived from (see
// sample/webapp/vault.py). Key Vault makes the key and never lets it out; the managed
// identity may only sign with it. Deploying again keeps the key: for keys, Azure
// Resource Manager creates the first version and leaves an existing key as it is.

param name string
param location string
param tags object

@description('Object id of the managed identity that signs with the key.')
param principalId string

// Key Vault Crypto User: cryptographic operations with keys, no key management.
var cryptoUserRoleId = '12338af0-0e69-4776-bea7-57ae8d297424'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
    publicNetworkAccess: 'Enabled'
  }
}

resource derivationKey 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: 'flask-secret-key'
  properties: {
    kty: 'RSA'
    keySize: 2048
    keyOps: ['sign']
  }
}

resource signer 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: derivationKey
  name: guid(derivationKey.id, principalId, cryptoUserRoleId)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', cryptoUserRoleId)
  }
}

output name string = vault.name
@description('The key\'s address (not the key): the app setting SECRET_KEY_VAULT_KEY.')
output keyUri string = derivationKey.properties.keyUri
