// The web app's settings, set once everything they name exists. None is a secret:
// the app signs in with its managed identity, to Microsoft Entra ID, Redis and Key Vault.

@description('Name of the web app, in this resource group.')
param siteName string

@description('The sample\'s settings (IDENTITY_*, API_*, REDIS_*, ...), as app settings.')
param settings object

resource site 'Microsoft.Web/sites@2023-12-01' existing = {
  name: siteName
}

resource appSettings 'Microsoft.Web/sites/config@2023-12-01' = {
  parent: site
  name: 'appsettings'
  properties: settings
}
