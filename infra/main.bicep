// maxconf: everything one environment needs, in one resource group.
//
//   infra/deploy.sh <rg> -p pexipOAuthPrivateKey=@<key file> eventSinkPassword=<…> functionKey=<…>
// (deploy.sh passes the content share each slot runs from now; see productionContentShare.)
//
// Modules: identity (two user-assigned identities), monitoring (Log Analytics + Application
// Insights), storage (host + queues account, content-share account), keyvault (secrets + roles),
// functionapp (Elastic Premium plan, app, staging slot), apim (gateway, private API with its
// product and key, keyless public and health APIs, policies), alerts (log alert rules),
// workbook (operators' charts).

targetScope = 'resourceGroup'

// ---------------------------------------------------------------- naming and placement
@description('Azure region of every resource.')
param location string = resourceGroup().location

@description('Short prefix of resource names (lowercase letters and digits).')
@minLength(2)
@maxLength(10)
param namePrefix string = 'maxconf'

@description('Environment name, used in tags.')
param environmentName string = 'prod'

param tags object = {}

// ---------------------------------------------------------------- plan
@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@minValue(1)
@maxValue(20)
param minimumInstances int = 1

@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 5

param zoneRedundant bool = false

@description('Storage redundancy of the host + queues account.')
param storageSku string = 'Standard_ZRS'

@description('Content share the production slot runs from now. WEBSITE_CONTENTSHARE is not slot-sticky, so every swap exchanges the two: infra/deploy.sh reads the current values and passes them here; the defaults are for the first deployment only.')
param productionContentShare string = 'content-production'

@description('Content share the staging slot runs from now (see productionContentShare).')
param stagingContentShare string = 'content-staging'

@description('Allow SCM basic-auth publishing (see README, Deploy: publishing).')
param scmBasicAuth bool = false

// ---------------------------------------------------------------- maxconf settings (SPEC.md)
@description('PEXIP_BASE_URL: the Pexip Management Node, https://…')
param pexipBaseUrl string

@description('How maxconf authenticates to Pexip: OAuth2 (ES256 client assertion) or HTTP Basic.')
@allowed([
  'oauth'
  'basic'
])
param pexipAuthMode string = 'oauth'

@description('PEXIP_OAUTH_CLIENT_ID (pexipAuthMode oauth).')
param pexipOAuthClientId string = ''

@description('PEXIP_OAUTH_PRIVATE_KEY, stored in Key Vault. Give it on the first deployment and when rotating; empty keeps the stored secret.')
@secure()
param pexipOAuthPrivateKey string = ''

@description('PEXIP_USERNAME (pexipAuthMode basic).')
param pexipUsername string = ''

@description('PEXIP_PASSWORD, stored in Key Vault (pexipAuthMode basic). Empty keeps the stored secret.')
@secure()
param pexipPassword string = ''

@description('PEXIP_CA_CERT: PEM of a private CA for the Management Node; empty: public roots.')
param pexipCaCert string = ''

@minValue(1)
@maxValue(120)
param pexipTimeoutSecs int = 10

@minValue(1)
@maxValue(100)
param pexipMaxConcurrency int = 5

param poolQueueName string = 'room-creation-queue'
param deletionQueueName string = 'room-deletion-queue'

@minValue(0)
@maxValue(10000)
param poolTargetSize int = 10

@minValue(0)
@maxValue(3600)
param poolWarmupSecs int = 90

@allowed([
  'create'
  'reject'
])
param poolEmptyFallback string = 'create'

@minValue(0)
@maxValue(604800)
param gcGraceSecs int = 600

param roomNamePrefix string = ''

@minValue(4)
@maxValue(20)
param roomPinLength int = 6

@description('ROOM_TEMPLATE: fields merged into every new room (ivr_theme, host_view, call_type, …).')
param roomTemplate object = {}

@minValue(1)
@maxValue(8760)
param roomMaxAgeHours int = 24

param persistentRoomPrefixes string = 'test_,vkiosk_'
param uuiAllowedHosts string = 'id,idtest,iddev'
param tagUrlTemplate string = 'https://{host}.gov.bc.ca/idcheck/protected/video/{video_call_id}'

@description('AUTH_MODE of the function: entra validates the caller\'s token again in the function (defence in depth behind APIM\'s validate-jwt); none leaves it to APIM.')
@allowed([
  'none'
  'entra'
])
param authMode string = 'entra'

@description('AUTH_TENANT_ID: the tenant that issues the callers\' tokens.')
param authTenantId string = tenant().tenantId

@description('Application ID URI of the API app registration (infra/entra/register.sh prints it), e.g. api://<appId>.')
param authAudience string

@description('Application (client) id of the API app registration: the audience of v2 tokens.')
param authApiClientId string

@description('App role a caller must hold (AUTH_REQUIRED_ROLE); required: with AUTH_MODE=entra an empty role stops start-up.')
@minLength(1)
param authRequiredRole string = 'Rooms.Manage'

@description('App role operators hold for the management routes and `maxconf … --api` (AUTH_OPERATOR_ROLE); assignable to users and groups (infra/entra/register.sh creates it). Must differ from authRequiredRole.')
@minLength(1)
param authOperatorRole string = 'Pool.Operate'

@description('AUTH_OPENID_CONFIG_URL override (sovereign clouds); empty: Entra\'s, from the tenant.')
param authOpenidConfigUrl string = ''

@description('EVENT_SINK_USERNAME; empty disables the event sink (404).')
param eventSinkUsername string = ''

@description('EVENT_SINK_PASSWORD, stored in Key Vault. Empty keeps the stored secret.')
@secure()
param eventSinkPassword string = ''

param genesysApiBase string = 'https://api.cac1.pure.cloud'

@description('GENESYS_ALLOWED_DIVISIONS (comma list); empty disables the public room lookup (404).')
param genesysAllowedDivisions string = ''

@allowed([
  'text'
  'json'
])
param logFormat string = 'json'

@description('RUST_LOG filter.')
param rustLog string = 'info'

// ---------------------------------------------------------------- alerts
@description('Email address alerts go to; empty: alert rules without notification (portal only).')
param alertEmail string = ''

@description('The pool alert fires when every metrics run in 15 minutes saw fewer available rooms than this share (percent) of poolTargetSize.')
@minValue(1)
@maxValue(100)
param poolLowPercent int = 30

@description('Create 5xx share (percent, outside-service-hours 503 excluded) that fires an alert.')
@minValue(1)
@maxValue(100)
param create5xxPercent int = 5

@description('Create p95 latency (ms) that fires an alert.')
@minValue(100)
param createP95Ms int = 5000
// ---------------------------------------------------------------- service hours
@description('SERVICE_HOURS: weekly opening hours in serviceTimezone, e.g. "Mon-Fri 07:30-17:00; Sat 09:00-12:00"; empty: always open.')
param serviceHours string = ''

@description('SERVICE_TIMEZONE: IANA time zone of serviceHours (daylight saving handled; the data ships in the binary).')
param serviceTimezone string = 'America/Vancouver'

@description('SERVICE_CLOSED_DATES: comma-separated local dates (YYYY-MM-DD) closed all day.')
param serviceClosedDates string = ''

@description('SERVICE_OVERRIDE: empty (follow the schedule), open or closed.')
@allowed([
  ''
  'open'
  'closed'
])
param serviceOverride string = ''

// ---------------------------------------------------------------- APIM
@description('Host key "apim" of the Function App, sent by APIM as x-functions-key; stored in Key Vault. Required on the first deployment (e.g. openssl rand -base64 48); empty keeps the stored key.')
@secure()
param functionKey string = ''

@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
])
param apimSku string = 'StandardV2'

param apimPublisherEmail string
param apimPublisherName string = 'MaxConf'

@description('URL suffix of the API in APIM; empty publishes https://<apim>/room/create as the original did.')
param apimApiPath string = ''

// ---------------------------------------------------------------- names
var suffix = take(uniqueString(subscription().id, resourceGroup().id, namePrefix), 8)
var compactPrefix = take(toLower(replace(namePrefix, '-', '')), 10)
var names = {
  appIdentity: 'id-${namePrefix}-func-${suffix}'
  apimIdentity: 'id-${namePrefix}-apim-${suffix}'
  workspace: 'log-${namePrefix}-${suffix}'
  appInsights: 'appi-${namePrefix}-${suffix}'
  mainStorage: 'st${compactPrefix}${suffix}'
  contentStorage: 'stc${compactPrefix}${suffix}'
  keyVault: 'kv-${take(namePrefix, 10)}-${suffix}'
  plan: 'plan-${namePrefix}-${suffix}'
  // Kept short: the host id is the first 32 characters of the site name, and the staging slot's
  // ("<app>-staging") must differ from production's.
  app: 'func-${namePrefix}-${suffix}'
  apim: 'apim-${namePrefix}-${suffix}'
}
var allTags = union({
  application: 'maxconf'
  environment: environmentName
}, tags)

// ---------------------------------------------------------------- modules
module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    location: location
    appIdentityName: names.appIdentity
    apimIdentityName: names.apimIdentity
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    workspaceName: names.workspace
    appInsightsName: names.appInsights
    appPrincipalId: identity.outputs.appPrincipalId
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    mainAccountName: names.mainStorage
    contentAccountName: names.contentStorage
    poolQueueName: poolQueueName
    deletionQueueName: deletionQueueName
    contentShareNames: [
      productionContentShare
      stagingContentShare
    ]
    appPrincipalId: identity.outputs.appPrincipalId
    skuName: storageSku
    tags: allTags
  }
}

module keyvault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    location: location
    keyVaultName: names.keyVault
    contentAccountName: storage.outputs.contentAccountName
    appPrincipalId: identity.outputs.appPrincipalId
    apimPrincipalId: identity.outputs.apimPrincipalId
    pexipOAuthPrivateKey: pexipOAuthPrivateKey
    pexipPassword: pexipPassword
    eventSinkPassword: eventSinkPassword
    functionKey: functionKey
    tags: allTags
  }
}

// Versionless references: the app picks up a rotated secret on restart (or within 24 hours).
var kvUri = keyvault.outputs.keyVaultUri
var secretNames = keyvault.outputs.secretNames
var contentConnectionReference = '@Microsoft.KeyVault(SecretUri=${kvUri}secrets/${secretNames.contentConnection})'
var oauthKeyReference = '@Microsoft.KeyVault(SecretUri=${kvUri}secrets/${secretNames.pexipOAuthPrivateKey})'
var pexipPasswordReference = '@Microsoft.KeyVault(SecretUri=${kvUri}secrets/${secretNames.pexipPassword})'
var eventSinkPasswordReference = '@Microsoft.KeyVault(SecretUri=${kvUri}secrets/${secretNames.eventSinkPassword})'

// Every setting of SPEC.md. maxconf treats an empty value as unset.
var maxconfSettings = [
  {
    name: 'POOL_QUEUE_CONNECTION'
    value: 'AzureWebJobsStorage'
  }
  {
    name: 'POOL_QUEUE_NAME'
    value: poolQueueName
  }
  {
    name: 'DELETION_QUEUE_NAME'
    value: deletionQueueName
  }
  {
    name: 'POOL_TARGET_SIZE'
    value: string(poolTargetSize)
  }
  {
    name: 'POOL_WARMUP_SECS'
    value: string(poolWarmupSecs)
  }
  {
    name: 'POOL_EMPTY_FALLBACK'
    value: poolEmptyFallback
  }
  {
    name: 'GC_GRACE_SECS'
    value: string(gcGraceSecs)
  }
  {
    name: 'PEXIP_BASE_URL'
    value: pexipBaseUrl
  }
  {
    name: 'PEXIP_OAUTH_CLIENT_ID'
    value: pexipAuthMode == 'oauth' ? pexipOAuthClientId : ''
  }
  {
    name: 'PEXIP_OAUTH_PRIVATE_KEY'
    value: pexipAuthMode == 'oauth' ? oauthKeyReference : ''
  }
  {
    name: 'PEXIP_USERNAME'
    value: pexipAuthMode == 'basic' ? pexipUsername : ''
  }
  {
    name: 'PEXIP_PASSWORD'
    value: pexipAuthMode == 'basic' ? pexipPasswordReference : ''
  }
  {
    name: 'PEXIP_CA_CERT'
    value: pexipCaCert
  }
  {
    name: 'PEXIP_TIMEOUT_SECS'
    value: string(pexipTimeoutSecs)
  }
  {
    name: 'PEXIP_MAX_CONCURRENCY'
    value: string(pexipMaxConcurrency)
  }
  {
    name: 'ROOM_NAME_PREFIX'
    value: roomNamePrefix
  }
  {
    name: 'ROOM_PIN_LENGTH'
    value: string(roomPinLength)
  }
  {
    name: 'ROOM_TEMPLATE'
    value: string(roomTemplate)
  }
  {
    name: 'ROOM_MAX_AGE_HOURS'
    value: string(roomMaxAgeHours)
  }
  {
    name: 'PERSISTENT_ROOM_PREFIXES'
    value: persistentRoomPrefixes
  }
  {
    name: 'UUI_ALLOWED_HOSTS'
    value: uuiAllowedHosts
  }
  {
    name: 'TAG_URL_TEMPLATE'
    value: tagUrlTemplate
  }
  {
    name: 'AUTH_MODE'
    value: authMode
  }
  {
    name: 'AUTH_TENANT_ID'
    value: authTenantId
  }
  {
    name: 'AUTH_AUDIENCE'
    value: '${authAudience},${authApiClientId}'
  }
  {
    name: 'AUTH_REQUIRED_ROLE'
    value: authRequiredRole
  }
  {
    name: 'AUTH_OPERATOR_ROLE'
    value: authOperatorRole
  }
  {
    name: 'AUTH_OPENID_CONFIG_URL'
    value: authOpenidConfigUrl
  }
  {
    name: 'EVENT_SINK_USERNAME'
    value: eventSinkUsername
  }
  {
    name: 'EVENT_SINK_PASSWORD'
    value: empty(eventSinkUsername) ? '' : eventSinkPasswordReference
  }
  {
    name: 'GENESYS_API_BASE'
    value: genesysApiBase
  }
  {
    name: 'GENESYS_ALLOWED_DIVISIONS'
    value: genesysAllowedDivisions
  }
  {
    name: 'LOG_FORMAT'
    value: logFormat
  }
  {
    name: 'RUST_LOG'
    value: rustLog
  }
  {
    name: 'SERVICE_HOURS'
    value: serviceHours
  }
  {
    name: 'SERVICE_TIMEZONE'
    value: serviceTimezone
  }
  {
    name: 'SERVICE_CLOSED_DATES'
    value: serviceClosedDates
  }
  {
    name: 'SERVICE_OVERRIDE'
    value: serviceOverride
  }
]

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    location: location
    planName: names.plan
    appName: names.app
    planSku: planSku
    minimumInstances: minimumInstances
    maximumElasticWorkerCount: maximumElasticWorkerCount
    zoneRedundant: zoneRedundant
    identityId: identity.outputs.appIdentityId
    identityClientId: identity.outputs.appClientId
    storageAccountName: storage.outputs.mainAccountName
    contentConnectionReference: contentConnectionReference
    productionContentShare: productionContentShare
    stagingContentShare: stagingContentShare
    appInsightsConnectionString: monitoring.outputs.connectionString
    logAnalyticsWorkspaceId: monitoring.outputs.workspaceId
    maxconfSettings: maxconfSettings
    functionKey: functionKey
    scmBasicAuth: scmBasicAuth
    tags: allTags
  }
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  params: {
    location: location
    namePrefix: namePrefix
    appInsightsId: monitoring.outputs.appInsightsId
    poolTargetSize: poolTargetSize
    poolLowPercent: poolLowPercent
    create5xxPercent: create5xxPercent
    createP95Ms: createP95Ms
    alertEmail: alertEmail
    tags: allTags
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'workbook'
  params: {
    location: location
    appInsightsId: monitoring.outputs.appInsightsId
    tags: allTags
  }
}

module apim 'modules/apim.bicep' = {
  name: 'apim'
  params: {
    location: location
    apimName: names.apim
    sku: apimSku
    publisherEmail: apimPublisherEmail
    publisherName: apimPublisherName
    identityId: identity.outputs.apimIdentityId
    identityClientId: identity.outputs.apimClientId
    functionKeySecretUri: '${kvUri}secrets/${secretNames.functionKey}'
    functionHostName: functionApp.outputs.defaultHostName
    apiPath: apimApiPath
    tenantId: authTenantId
    audience: authAudience
    apiClientId: authApiClientId
    requiredRole: authRequiredRole
    operatorRole: authOperatorRole
    tags: allTags
  }
}

// ---------------------------------------------------------------- what ops need
output functionAppName string = functionApp.outputs.appName
output functionAppHostName string = functionApp.outputs.defaultHostName
output stagingSlotHostName string = functionApp.outputs.stagingHostName
output apimName string = apim.outputs.apimName
output apimGatewayUrl string = apim.outputs.gatewayUrl
output apimSubscriptionName string = apim.outputs.subscriptionName
@description('MAXCONF_API for operators: `maxconf status --api <this>` from a laptop.')
output operatorApiUrl string = '${apim.outputs.gatewayUrl}${empty(apimApiPath) ? '' : '/${apimApiPath}'}'
output publicRoomUrlPrefix string = '${apim.outputs.gatewayUrl}/${empty(apimApiPath) ? '' : '${apimApiPath}/'}public/room/'
output eventSinkUrl string = '${apim.outputs.gatewayUrl}/${empty(apimApiPath) ? '' : '${apimApiPath}/'}public/event_sink'
output keyVaultName string = keyvault.outputs.keyVaultName
output storageAccountName string = storage.outputs.mainAccountName
output contentStorageAccountName string = storage.outputs.contentAccountName
output queueEndpoint string = storage.outputs.queueEndpoint
output appIdentityClientId string = identity.outputs.appClientId
output appInsightsName string = monitoring.outputs.appInsightsName
