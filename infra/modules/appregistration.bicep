// The app registration users sign in with, and the sample's web API on it, declared with
// the Microsoft Graph Bicep extension (bicepconfig.json). It has no client secret and no
// certificate: a federated identity credential trusts the web app's managed identity.
extension microsoftGraphV1

@description('Key that makes the deployment idempotent (the application\'s uniqueName).')
param uniqueName string

param displayName string

@allowed(['AzureADMyOrg', 'AzureADMultipleOrgs'])
param signInAudience string

@description('The web app\'s host name: the redirect URI and the sign-out return address are on it.')
param hostName string

@description('The web API\'s Application ID URI, the prefix of its scope Todo.Read.')
param appIdUri string

@description('The issuer of the managed identity\'s tokens: https://login.microsoftonline.com/<tenant id>/v2.0.')
param issuer string

@description('Object (principal) id of the managed identity the credential trusts.')
param managedIdentityPrincipalId string

var graphAppId = '00000003-0000-0000-c000-000000000000'
var graphUserReadId = 'e1fe6dd8-ba31-4d61-89e7-88639da4683d'

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: signInAudience
  identifierUris: [appIdUri]
  web: {
    homePageUrl: 'https://${hostName}/'
    redirectUris: [
      'https://${hostName}/getAToken'
      'https://${hostName}/'
    ]
    implicitGrantSettings: {
      enableIdTokenIssuance: false
      enableAccessTokenIssuance: false
    }
  }
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: guid(uniqueName, 'Todo.Read')
        value: 'Todo.Read'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Read the signed-in user\'s to-dos'
        adminConsentDescription: 'Lets the app read the signed-in user\'s to-dos from the sample\'s web API.'
        userConsentDisplayName: 'Read your to-dos'
        userConsentDescription: 'Lets the app read your to-dos from the sample\'s web API.'
      }
    ]
  }
  appRoles: [
    {
      id: guid(uniqueName, 'Jobs.Run')
      value: 'Jobs.Run'
      allowedMemberTypes: ['Application']
      isEnabled: true
      displayName: 'Run jobs'
      description: 'Lets an application call the sample\'s /api/jobs with no user.'
    }
  ]
  requiredResourceAccess: [
    {
      resourceAppId: graphAppId
      resourceAccess: [
        {
          id: graphUserReadId
          type: 'Scope'
        }
      ]
    }
  ]

  resource managedIdentityCredential 'federatedIdentityCredentials@v1.0' = {
    name: '${app.uniqueName}/app-service-managed-identity'
    description: 'The web app\'s user-assigned managed identity, instead of a client secret.'
    issuer: issuer
    subject: managedIdentityPrincipalId
    audiences: ['api://AzureADTokenExchange']
  }
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
}

output clientId string = app.appId
output appIdUri string = appIdUri
output servicePrincipalId string = servicePrincipal.id
