// The Microsoft Entra ID app registration that App Service authentication (Easy Auth, functionapp.bicep
// authsettingsV2) validates tokens against, created with the Microsoft Graph Bicep extension
// (bicepconfig.json: extensions.microsoftGraphV1). Step 1 of 2:
//   this file           the application with its app roles and delegated scope, its service principal (the
//                       "enterprise application" users and apps are assigned roles on), and a federated identity
//                       credential that trusts the app's user-assigned managed identity instead of a client secret
//   appregistrationuris step 2, after the function app exists: identifierUris api://<appId> (an application cannot
//                       name its own appId when it is created) and the Easy Auth sign-in redirect URI
//                       https://<site defaultHostName>/.auth/login/aad/callback with ID token issuance (the browser
//                       sign-in of the inbox at /api/ui, README "The inbox (browser)")
// Why the redirect URI is not set here: this step runs before the site exists, and its host name is only predictable
// (<name>.azurewebsites.net) while the site does not use secure unique default hostnames (then it is
// <name>-<hash>.<region>.azurewebsites.net); step 2 reads the site's defaultHostName instead, which is right either
// way. Graph upserts by uniqueName with PATCH, so a redeployment of this step leaves step 2's web settings in place.
// Graph Bicep resources are upserts keyed by uniqueName, so a redeployment updates the same registration.
// The deploying identity needs permission to create applications (users have it unless an admin turned it off;
// otherwise the Application Developer role). No Graph permission is granted to anything here.
// Reference: https://learn.microsoft.com/graph/templates/bicep/reference/applications
//            https://learn.microsoft.com/azure/app-service/configure-authentication-provider-aad
//            (section "Use a managed identity instead of a secret")
extension microsoftGraphV1

@description('Immutable key of the registration in Graph Bicep (unique in the tenant).')
param uniqueName string

@description('Display name shown in App registrations / Enterprise applications.')
param displayName string

@description('principalId (object id) of the app\'s user-assigned managed identity: the subject of the federated credential.')
param identityPrincipalId string

@description('Value of the app role that may decide approvals (the roles claim the app checks, APPROVER_ROLES).')
param approverRole string = 'Approver'

@description('Value of the app role that may start runs on behalf of any customer (SUPPORT_ROLES).')
param supportRole string = 'Support'

// Tokens of a managed identity used as a federated credential: issued by the tenant's v2.0 endpoint, subject =
// the identity's object id, audience api://AzureADTokenExchange (public cloud; the Graph extension deploys there only).
var issuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
var tokenExchangeAudience = 'api://AzureADTokenExchange'

// Ids are stable per registration (guid of uniqueName + value): redeployments keep existing role assignments.
var approverRoleId = guid(uniqueName, 'appRole', approverRole)
var supportRoleId = guid(uniqueName, 'appRole', supportRole)
var userImpersonationScopeId = guid(uniqueName, 'oauth2PermissionScope', 'user_impersonation')

resource application 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  signInAudience: 'AzureADMyOrg'
  // Security group object ids in the groups claim (APPROVER_GROUPS / SUPPORT_GROUPS). A user in more groups than
  // a token can carry gets no groups claim at all, so a group check then fails closed; app roles have no such limit.
  groupMembershipClaims: 'SecurityGroup'
  appRoles: [
    {
      id: approverRoleId
      value: approverRole
      displayName: 'Approver'
      description: 'May decide pending approvals: approve or reject a refund or a workflow plan.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
    {
      id: supportRoleId
      value: supportRole
      displayName: 'Support'
      description: 'May start runs on behalf of any customer.'
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
  api: {
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: userImpersonationScopeId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Call the durable agents API'
        adminConsentDescription: 'Call the durable agents API as the signed-in user.'
        userConsentDisplayName: 'Call the durable agents API'
        userConsentDescription: 'Call the durable agents API as you.'
      }
    ]
  }
}

// Declared at top level (not nested in `application`) so that tests/infra can read it with pycep.
resource managedIdentityCredential 'Microsoft.Graph/applications/federatedIdentityCredentials@v1.0' = {
  name: '${application.uniqueName}/function-app-managed-identity'
  description: 'The function app\'s user-assigned managed identity, in place of a client secret (Easy Auth sign-in).'
  audiences: [
    tokenExchangeAudience
  ]
  issuer: issuer
  subject: identityPrincipalId
}

// Any user of the tenant may get a token (no assignment required): a caller without a role acts only for
// itself; Approver and Support are granted per user or per application (README "Security in Azure").
resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: application.appId
  appRoleAssignmentRequired: false
}

output clientId string = application.appId
output uniqueName string = application.uniqueName
output displayName string = application.displayName
output servicePrincipalId string = servicePrincipal.id
output appRoles array = application.appRoles
output oauth2PermissionScopes array = application.api.oauth2PermissionScopes
output approverRoleId string = approverRoleId
output supportRoleId string = supportRoleId
output userImpersonationScopeId string = userImpersonationScopeId
