// The web app: Python 3.12 on Linux, https only, started by gunicorn, sessions in Redis.

param name string
param location string
param tags object

@description('Resource id of the App Service plan.')
param planId string

@description('Name of the Azure Cache for Redis, in this resource group.')
param redisName string

@secure()
@description('The sample\'s settings (IDENTITY_*, API_*, SECRET_KEY), as app settings.')
param appSettings object

resource redis 'Microsoft.Cache/redis@2023-08-01' existing = {
  name: redisName
}

// rediss:// on the TLS port; the access key stays inside the deployment, never in an output.
var redisUrl = 'rediss://:${redis.listKeys().primaryKey}@${redis.properties.hostName}:${redis.properties.sslPort}/0'

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'app,linux'
  properties: {
    serverFarmId: planId
    httpsOnly: true
    clientAffinityEnabled: false // sessions are shared through Redis: any instance may answer
    siteConfig: {
      linuxFxVersion: 'PYTHON|3.12'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      alwaysOn: true
      appCommandLine: 'gunicorn --bind=0.0.0.0:8000 --workers 2 --timeout 120 app:app'
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2023-12-01' = {
  parent: site
  name: 'appsettings'
  properties: union(appSettings, {
    SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
    REDIS_URL: redisUrl
    BEHIND_PROXY: 'true'
  })
}

output name string = site.name
output uri string = 'https://${site.properties.defaultHostName}'
