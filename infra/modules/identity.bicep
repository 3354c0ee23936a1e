// The web app's user-assigned managed identity: what the app registration trusts
// (federated identity credential), what Redis and Key Vault let in.

param name string
param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
@description('Client id: the app names the identity by it (IDENTITY_MANAGED_IDENTITY, AZURE_CLIENT_ID).')
output clientId string = identity.properties.clientId
@description('Object (principal) id: the subject of the federated credential, the Redis user.')
output principalId string = identity.properties.principalId
