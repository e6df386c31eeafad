// Flex Consumption plan (FC1) and the Linux Python 3.11 function app. The app runs as the user-assigned
// identity for everything: it pulls its deployment package from the blob container with it, reaches host
// storage with identity-based AzureWebJobsStorage__* settings, and every setting the code reads
// (docs/internals.md "Settings") is set below. No keys, no connection strings with secrets.
// In front of every request: App Service authentication (Easy Auth v2, authsettingsV2) with Microsoft Entra ID,
// validating bearer tokens (or the session cookie of a browser sign-in) for the app registration of
// appregistration.bicep; only the browser app's static files (/api/ui) are excluded. FTP and SCM basic-auth
// publishing are off (azd deploys to the blob container with Entra ID, not with publishing credentials).

@description('Function app name.')
param name string

@description('Flex Consumption plan name.')
param planName string

@description('Region.')
param location string

@description('Resource tags; must include azd-service-name so azd deploy finds the app.')
param tags object

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity (AZURE_CLIENT_ID, AzureWebJobsStorage__clientId, ...).')
param identityClientId string

@allowed([
  512
  2048
  4096
])
@description('Instance memory size in MB.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Maximum instance count.')
param maximumInstanceCount int = 100

@description('Storage blob endpoint, e.g. https://<account>.blob.core.windows.net/.')
param storageBlobEndpoint string

@description('Storage table endpoint, e.g. https://<account>.table.core.windows.net/; the refund ledger and the approval audit tables live there.')
param storageTableEndpoint string

@description('Blob container that holds the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Durable Task Scheduler endpoint, as the scheduler resource reports it (properties.endpoint).')
param schedulerEndpoint string

@description('Task hub name.')
param taskHubName string

@description('Azure OpenAI endpoint.')
param openAiEndpoint string

@description('Model deployment name.')
param modelDeploymentName string

@description('Azure OpenAI API version.')
param openAiApiVersion string

@description('responses or chat_completions.')
param openAiApi string = 'responses'

@description('Refund ledger table name.')
param refundLedgerTableName string

@description('ISO 8601 duration a pending approval waits.')
param approvalTimeout string = 'P1D'

@description('Refund amount above which a human approves.')
param refundApprovalThreshold string = '100'

@description('Model call attempts before a run fails.')
param modelMaxAttempts string = '6'

@description('Model turns per agent run (AGENT_MAX_TURNS).')
param agentMaxTurns string = '25'

@description('Live agent runs kept in memory per worker process (AGENT_RUN_CACHE_SIZE).')
param agentRunCacheSize string = '64'

@description('Seconds the model client waits for one model call (MODEL_TIMEOUT).')
param modelTimeout string = '300'

@description('Model turns per generation before a run or conversation continues-as-new (AGENT_TURNS_PER_GENERATION).')
param agentTurnsPerGeneration string = '2'

@description('ISO 8601 duration after which an idle conversation closes itself (CONVERSATION_IDLE_TIMEOUT).')
param conversationIdleTimeout string = 'P7D'

@description('Tool results above this many bytes go to the payload container by reference (PAYLOAD_INLINE_MAX_BYTES).')
param payloadInlineMaxBytes string = '65536'

@description('ISO 8601 duration the resolution workflow waits for its plan approval.')
param planApprovalTimeout string = 'P1D'

@description('Judge score a customer message needs (1..10).')
param messagePassingScore string = '8'

@description('Writer/judge rounds of the customer_message workflow.')
param messageMaxRounds string = '3'

@description('Approval audit table name (AUDIT_TABLE_NAME).')
param auditTableName string = 'approvalaudit'

@description('Blob container of agent payloads passed by reference (PAYLOAD_BLOB_CONTAINER), in the storage account of storageBlobEndpoint.')
param payloadContainerName string = 'agentpayloads'

@description('Comma-separated app roles whose members may decide approvals (APPROVER_ROLES).')
param approverRoles string = 'Approver'

@description('Comma-separated app roles whose members may start runs on behalf of any customer (SUPPORT_ROLES).')
param supportRoles string = 'Support'

@description('Comma-separated Entra group object ids whose members may decide approvals (APPROVER_GROUPS); empty: none.')
param approverGroups string = ''

@description('Comma-separated Entra group object ids whose members may act for any customer (SUPPORT_GROUPS); empty: none.')
param supportGroups string = ''

@description('true: whoever started a run may not decide its approvals (SEPARATION_OF_DUTIES).')
param separationOfDuties string = 'true'

@description('Comma-separated host names customer messages may link to (STORE_LINK_HOSTS); empty: no links.')
param storeLinkHosts string = ''

@description('Client id (appId) of the API\'s Entra ID app registration that Easy Auth validates tokens for.')
param authClientId string

@description('Subnet for VNet integration; empty means none.')
param virtualNetworkSubnetId string = ''

// Issuer of the tenant's v2.0 tokens; the Microsoft Entra provider validates iss against it.
var authOpenIdIssuer = '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
// App Service authentication reads the managed identity client id from this setting and signs in with a
// federated credential assertion instead of a client secret (configure-authentication-provider-aad,
// "Use a managed identity instead of a secret").
var managedIdentityAssertionSetting = 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'

resource plan 'Microsoft.Web/serverfarms@2024-11-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-11-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Flex Consumption manages FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION and the package location
// itself (functionAppConfig above); they must not appear here.
resource appSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  parent: site
  name: 'appsettings'
  properties: {
    // Host storage over the managed identity (no AccountKey). Blob only: the host keeps its keys and leases in
    // blobs; this app has no queue or blob triggers and Durable state lives in the Durable Task Scheduler, so no
    // queue URI; without a table URI the host's optional diagnostic-events table is off (the app identity holds
    // table roles on the ledger and audit tables only, see rbac.bicep).
    AzureWebJobsStorage__blobServiceUri: storageBlobEndpoint
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    // Telemetry with Entra ID (the component has local auth disabled).
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    // DefaultAzureCredential picks the user-assigned identity.
    AZURE_CLIENT_ID: identityClientId
    // Durable Task Scheduler (host.json: connectionStringName and hubName %TASKHUB_NAME%).
    DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${schedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
    TASKHUB_NAME: taskHubName
    // Model.
    AGENT_MODEL: modelDeploymentName
    AZURE_OPENAI_ENDPOINT: openAiEndpoint
    AZURE_OPENAI_API_VERSION: openAiApiVersion
    OPENAI_API: openAiApi
    MODEL_MAX_ATTEMPTS: modelMaxAttempts
    AGENT_MAX_TURNS: agentMaxTurns
    AGENT_RUN_CACHE_SIZE: agentRunCacheSize
    MODEL_TIMEOUT: modelTimeout
    AGENT_TURNS_PER_GENERATION: agentTurnsPerGeneration
    // Conversations and payloads by reference (blobs in PAYLOAD_BLOB_CONTAINER).
    CONVERSATION_IDLE_TIMEOUT: conversationIdleTimeout
    PAYLOAD_INLINE_MAX_BYTES: payloadInlineMaxBytes
    // Approvals and the refund ledger (Azure Table over the managed identity).
    APPROVAL_TIMEOUT: approvalTimeout
    REFUND_APPROVAL_THRESHOLD: refundApprovalThreshold
    // Workflows (agents/resolution.py, agents/writer_judge.py).
    PLAN_APPROVAL_TIMEOUT: planApprovalTimeout
    MESSAGE_PASSING_SCORE: messagePassingScore
    MESSAGE_MAX_ROUNDS: messageMaxRounds
    STORE_LINK_HOSTS: storeLinkHosts
    REFUND_LEDGER_TABLE_ENDPOINT: storageTableEndpoint
    REFUND_LEDGER_TABLE_NAME: refundLedgerTableName
    // Approval audit (append-only by the code's contract; it outlives orchestration purge) and who may do what.
    AUDIT_TABLE_ENDPOINT: storageTableEndpoint
    AUDIT_TABLE_NAME: auditTableName
    // Large payloads passed by reference (Azure Blob over the managed identity; storage.bicep, rbac.bicep).
    PAYLOAD_BLOB_ENDPOINT: storageBlobEndpoint
    PAYLOAD_BLOB_CONTAINER: payloadContainerName
    APPROVER_ROLES: approverRoles
    SUPPORT_ROLES: supportRoles
    APPROVER_GROUPS: approverGroups
    SUPPORT_GROUPS: supportGroups
    SEPARATION_OF_DUTIES: separationOfDuties
    // Easy Auth's client credential: the managed identity's client id (a federated credential, not a secret).
    OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID: identityClientId
    // The MCP server (/runtime/webhooks/mcp, README "MCP clients") behind the same App Service authentication:
    // with this setting the platform publishes OAuth protected resource metadata (RFC 9728) at
    // /.well-known/oauth-protected-resource and points its 401 at it, so an MCP client (VS Code) finds the tenant's
    // sign-in and the scope to ask for (app-service/configure-authentication-mcp, "Configure protected resource
    // metadata (preview)"; a comma-separated scope list). The scope is the registration's user_impersonation
    // (appregistration.bicep) under its Application ID URI api://<appId> (appregistrationuris.bicep); the clients
    // that may ask for it without a consent prompt are pre-authorized there. host.json sets the MCP webhook's
    // key requirement off (extensions.mcp.system.webhookAuthorizationLevel Anonymous), so this sign-in is its gate.
    WEBSITE_AUTH_PRM_DEFAULT_WITH_SCOPES: 'api://${authClientId}/user_impersonation'
  }
}

// App Service authentication (Easy Auth v2). Every request needs a Microsoft Entra ID bearer token (or an Easy
// Auth session cookie from /.auth/login/aad) for this registration; without one the platform answers 401 before
// the function runs, never a 302 to a sign-in page (API clients must see 401). The app then reads the caller from
// X-MS-CLIENT-PRINCIPAL (roles claim: Approver, Support).
// Browser sign-in (README "The inbox (browser)"): the browser app under /api/ui is static HTML/JS/CSS with no data
// (durable_agents/_http/ui.py), so its paths are excluded and a browser without a session can load it; when the
// JSON API answers 401 the page links to /.auth/login/aad?post_login_redirect_uri=/api/ui/ (a relative target, so
// login.allowedExternalRedirectUrls stays unset). That server-directed sign-in uses the hybrid flow with the
// federated credential below as client assertion (configure-authentication-provider-aad: without a client
// credential the implicit flow would be used) and returns to https://<defaultHostName>/.auth/login/aad/callback,
// the redirect URI appregistrationuris.bicep registers once the site exists. The result is the AppServiceAuthSession
// cookie, which the page's same-origin fetch calls send; it does not need the token store (the store only keeps
// provider tokens for /.auth/me and /.auth/refresh, overview-authentication-authorization "Token store").
// Reference: https://learn.microsoft.com/azure/templates/microsoft.web/sites/config-authsettingsv2
resource authSettings 'Microsoft.Web/sites/config@2024-11-01' = {
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      // Only the browser app's files (route ui/{*path}; host.json routePrefix api). An entry is one path; a
      // trailing /* also matches everything below it (the documented wildcard form, MicrosoftDocs/azure-docs#86514).
      // /api/ui (308 to /api/ui/) and /api/ui/ (the page) are listed on their own so they do not depend on whether
      // /* matches an empty remainder. No /api/* data route is excluded, and the UI route never reads the caller.
      excludedPaths: [
        '/api/ui'
        '/api/ui/'
        '/api/ui/*'
      ]
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: authClientId
          clientSecretSettingName: managedIdentityAssertionSetting
          openIdIssuer: authOpenIdIssuer
        }
        validation: {
          // v2.0 access tokens carry the client id as aud; v1.0 tokens carry the Application ID URI.
          allowedAudiences: [
            'api://${authClientId}'
            authClientId
          ]
        }
      }
    }
    login: {
      // Off: the app reads the caller from the injected headers only. Consequences for the browser: /.auth/me and
      // /.auth/refresh do not work, so the page detects "signed out" from the API's 401, and a user signs in again
      // when the session cookie expires.
      tokenStore: {
        enabled: false
      }
      // Stated, not changed: the session lasts the documented 8 hours (configure-authentication-oauth-tokens), then
      // the API answers 401 and the page offers the sign-in link again.
      cookieExpiration: {
        convention: 'FixedTime'
        timeToExpiration: '08:00:00'
      }
      // The sign-in's nonce is checked (replayed callbacks are refused); the interval keeps the platform default.
      nonce: {
        validateNonce: true
      }
    }
  }
  // The assertion setting must exist before authentication refers to it.
  dependsOn: [
    appSettings
  ]
}

// No FTP or SCM (Kudu) basic-auth publishing credentials.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-11-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output uri string = 'https://${site.properties.defaultHostName}'
output hostName string = site.properties.defaultHostName
