// Step 2 of the API's app registration (step 1: appregistration.bicep). Runs after the function app exists and
// upserts the same application (same uniqueName) with what step 1 cannot know:
//   identifierUris   api://<appId>: the Application ID URI clients request tokens for (api://<appId>/.default or
//                    api://<appId>/user_impersonation); an application cannot reference its own appId at creation
//   web              the Easy Auth callback https://<host>/.auth/login/aad/callback and ID token issuance, used when
//                    a browser signs in through /.auth/login/aad (the federated credential replaces the secret)
//   preAuthorized    client apps that may request user_impersonation without a consent prompt: by default the
//                    Azure CLI (so `az account get-access-token --scope api://<appId>/user_impersonation` works) and
//                    Visual Studio Code, the MCP client that signs in through the protected resource metadata of
//                    functionapp.bicep and shows no consent prompt of its own (app-service/configure-authentication-mcp,
//                    "Entra ID consent authoring"; its client id from azure-functions/functions-mcp-tutorial,
//                    "Preauthorize Visual Studio Code as client"). Only the user_impersonation scope is granted.
// Everything step 1 set is passed back in and restated, so the upsert keeps it whatever its update semantics.
// Reference: https://learn.microsoft.com/entra/identity-platform/identifier-uri-restrictions (api://<appId> is the
// default secure pattern).
extension microsoftGraphV1

@description('uniqueName of the registration created by appregistration.bicep.')
param uniqueName string

@description('Display name (unchanged from step 1).')
param displayName string

@description('appId (client id) of the registration.')
param clientId string

@description('App roles as step 1 created them (its appRoles output).')
param appRoles array

@description('Delegated scopes as step 1 created them (its oauth2PermissionScopes output).')
param oauth2PermissionScopes array

@description('Id of the user_impersonation scope (step 1 output userImpersonationScopeId).')
param userImpersonationScopeId string

@description('Default host name of the function app, e.g. func-api-x.azurewebsites.net (no scheme).')
param appHostName string

@description('Client application ids pre-authorized for user_impersonation (no consent prompt). Default: Azure CLI and Visual Studio Code (MCP client).')
param preAuthorizedClientIds array = [
  // Azure CLI
  '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
  // Visual Studio Code (GitHub Copilot's MCP client; README "MCP clients")
  'aebc6443-996d-45c2-90f0-388ff96faa56'
]

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  groupMembershipClaims: 'SecurityGroup'
  identifierUris: [
    'api://${clientId}'
  ]
  appRoles: appRoles
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: oauth2PermissionScopes
    preAuthorizedApplications: [for preAuthorizedClientId in preAuthorizedClientIds: {
      appId: preAuthorizedClientId
      delegatedPermissionIds: [
        userImpersonationScopeId
      ]
    }]
  }
  web: {
    redirectUris: [
      'https://${appHostName}/.auth/login/aad/callback'
    ]
    implicitGrantSettings: {
      enableIdTokenIssuance: true
    }
  }
}

output identifierUri string = 'api://${application.appId}'
