// The sample on Azure App Service, with no secret anywhere: `azd up` creates the app
// registration (Microsoft Graph Bicep extension), a user-assigned managed identity the
// registration trusts through a federated identity credential, Azure Cache for Redis
// signed in to with that identity (access keys disabled), and a Key Vault key that
// Flask's SECRET_KEY is derived from. See azure.yaml and docs/deploying.md.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; names the resource group and tags every resource.')
param environmentName string

@minLength(1)
@description('Azure region of every resource.')
param location string

@description('The API the sample calls for the signed-in user.')
param apiEndpoint string = 'https://graph.microsoft.com/v1.0/me'

@description('Scopes of the access token for that API, separated by spaces.')
param apiScopes string = 'User.Read'

@allowed(['B1', 'B2', 'B3', 'S1', 'S2', 'S3', 'P0v3', 'P1v3', 'P2v3', 'P3v3'])
@description('App Service plan size; gunicorn runs two workers per core, plus one.')
param appServiceSku string = 'B1'

@minValue(1)
@maxValue(10)
@description('How many instances run the app; sessions are in Redis, so any number works.')
param instanceCount int = 2

@allowed(['AzureADMyOrg', 'AzureADMultipleOrgs'])
@description('Who may sign in: accounts of this tenant only, or of any Microsoft Entra tenant.')
param signInAudience string = 'AzureADMyOrg'

var tags = { 'azd-env-name': environmentName }
var token = toLower(uniqueString(subscription().id, environmentName, location))
var tenantId = tenant().tenantId

// Cores of each plan size, for gunicorn's worker count (2 x cores + 1).
var coresBySku = {
  B1: 1
  B2: 2
  B3: 4
  S1: 1
  S2: 2
  S3: 4
  P0v3: 1
  P1v3: 2
  P2v3: 4
  P3v3: 8
}
var gunicornWorkers = 2 * coresBySku[appServiceSku] + 1

resource rg 'Microsoft.Resources/resourceGroups@2022-09-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${token}'
    location: location
    tags: tags
  }
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
    principalId: identity.outputs.principalId
    principalName: identity.outputs.name
  }
}

module vault 'modules/keyvault.bicep' = {
  name: 'vault'
  scope: rg
  params: {
    name: 'kv-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
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
    identityId: identity.outputs.id
  }
}

module registration 'modules/appregistration.bicep' = {
  name: 'registration'
  scope: rg // Microsoft Graph objects belong to the tenant, wherever they are deployed from
  params: {
    uniqueName: 'identity-flask-sample-${token}'
    displayName: 'identity_flask sample (${environmentName})'
    signInAudience: signInAudience
    hostName: web.outputs.hostName
    appIdUri: 'api://${tenantId}/identity-flask-sample-${token}'
    issuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'
    managedIdentityPrincipalId: identity.outputs.principalId
  }
}

module settings 'modules/appsettings.bicep' = {
  name: 'appsettings'
  scope: rg
  params: {
    siteName: web.outputs.name
    settings: {
      IDENTITY_CLIENT_ID: registration.outputs.clientId
      IDENTITY_AUTHORITY: '${environment().authentication.loginEndpoint}${tenantId}'
      IDENTITY_MANAGED_IDENTITY: identity.outputs.clientId
      IDENTITY_REDIRECT_URI: '/getAToken'
      IDENTITY_APP_ID_URI: registration.outputs.appIdUri
      API_ENDPOINT: apiEndpoint
      API_SCOPES: apiScopes
      REDIS_URL: 'rediss://${redis.outputs.hostName}:${redis.outputs.sslPort}/0'
      REDIS_ENTRA_AUTH: 'true'
      AZURE_CLIENT_ID: identity.outputs.clientId
      SECRET_KEY_VAULT_KEY: vault.outputs.keyUri
      TRUSTED_HOSTS: web.outputs.hostName
      BEHIND_PROXY: 'true'
      GUNICORN_WORKERS: string(gunicornWorkers)
      SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
    }
  }
}

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output WEB_APP_NAME string = web.outputs.name
output WEB_URI string = web.outputs.uri
output IDENTITY_CLIENT_ID string = registration.outputs.clientId
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
@description('Registered on the app registration by the deployment.')
output REDIRECT_URI string = '${web.outputs.uri}/getAToken'
