// The sample on Azure App Service (Linux, Python 3.12), with its sessions in Azure Cache for Redis.
// Deployed by `azd up` (see azure.yaml and docs/deploying.md).
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region of every resource.')
param location string

@description('Application (client) ID of the app registration.')
param identityClientId string

@secure()
@description('Client secret of the app registration (or a Key Vault reference: @Microsoft.KeyVault(SecretUri=...)).')
param identityClientCredential string

@description('Sign-in authority, e.g. https://login.microsoftonline.com/<tenant-id>.')
param identityAuthority string

@description('The API the sample calls for the signed-in user.')
param apiEndpoint string = 'https://graph.microsoft.com/v1.0/me'

@description('Scopes of the access token for that API, separated by spaces.')
param apiScopes string = 'User.Read'

@allowed(['B1', 'B2', 'B3', 'S1', 'S2', 'S3', 'P0v3', 'P1v3', 'P2v3'])
@description('App Service plan size.')
param appServiceSku string = 'B1'

@minValue(1)
@maxValue(10)
@description('How many instances run the app; sessions are in Redis, so any number works.')
param instanceCount int = 2

@secure()
@description('Flask\'s SECRET_KEY, shared by every instance.')
param secretKey string = newGuid()

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module plan 'modules/appserviceplan.bicep' = {
  name: 'plan'
  scope: rg
  params: {
    name: 'plan-${token}'
    location: location
    tags: tags
    sku: appServiceSku
    capacity: instanceCount
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  scope: rg
  params: {
    name: 'redis-${token}'
    location: location
    tags: tags
  }
}

module web 'modules/web.bicep' = {
  name: 'web'
  scope: rg
  params: {
    name: 'app-${token}'
    location: location
    tags: union(tags, { 'azd-service-name': 'web' })
    planId: plan.outputs.id
    redisName: redis.outputs.name
    appSettings: {
      IDENTITY_CLIENT_ID: identityClientId
      IDENTITY_CLIENT_CREDENTIAL: identityClientCredential
      IDENTITY_AUTHORITY: identityAuthority
      IDENTITY_REDIRECT_URI: '/getAToken'
      API_ENDPOINT: apiEndpoint
      API_SCOPES: apiScopes
      SECRET_KEY: secretKey
    }
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output WEB_APP_NAME string = web.outputs.name
output WEB_URI string = web.outputs.uri
@description('Register this as a Web redirect URI of the app registration.')
output REDIRECT_URI string = '${web.outputs.uri}/getAToken'
