// The web app: Python 3.12 on Linux, https only, TLS 1.2 or later, FTP off, a health
// check, started by gunicorn (sample/gunicorn.conf.py), running as the managed identity.
// Its app settings are set by appsettings.bicep once the app registration exists.

param name string
param location string
param tags object

@description('Resource id of the App Service plan.')
param planId string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('The path App Service pings on each instance (sample/webapp/health.py).')
param healthCheckPath string = '/health'

resource site 'Microsoft.Web/sites@2023-12-01' = {
  name: name
  location: location
  tags: tags
  kind: 'app,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: planId
    httpsOnly: true
    clientAffinityEnabled: false // sessions are shared through Redis: any instance may answer
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      linuxFxVersion: 'PYTHON|3.12'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      alwaysOn: true
      healthCheckPath: healthCheckPath
      // Workers and threads come from gunicorn.conf.py (GUNICORN_WORKERS).
      appCommandLine: 'gunicorn --bind=0.0.0.0:8000 --timeout 120 --config gunicorn.conf.py app:app'
    }
  }
}

// No publishing with a user name and password: deployments sign in with Microsoft Entra.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

// gunicorn's and the app's output, for `az webapp log tail` and the log stream.
resource logs 'Microsoft.Web/sites/config@2023-12-01' = {
  parent: site
  name: 'logs'
  properties: {
    applicationLogs: {
      fileSystem: {
        level: 'Information'
      }
    }
    httpLogs: {
      fileSystem: {
        enabled: true
        retentionInDays: 3
        retentionInMb: 35
      }
    }
  }
}

output name string = site.name
output hostName string = site.properties.defaultHostName
output uri string = 'https://${site.properties.defaultHostName}'
