// The Linux Function App running maxconf as a custom handler, on an Elastic Premium plan, with a
// `staging` slot for swap releases. Both slots get the same app settings except their content
// share and TIMERS_ENABLED (sticky: false on staging).

param location string
param planName string
param appName string

@allowed([
  'EP1'
  'EP2'
  'EP3'
])
param planSku string = 'EP1'

@description('Always-ready (pre-warmed) instances of the plan.')
@minValue(1)
@maxValue(20)
param minimumInstances int = 1

@description('Most instances the plan scales out to.')
@minValue(1)
@maxValue(100)
param maximumElasticWorkerCount int = 5

@description('Spread the plan over availability zones (needs at least 2 instances... and a region that supports it).')
param zoneRedundant bool = false

@description('Resource id of the Function App user-assigned identity.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Main storage account (AzureWebJobsStorage and maxconf queues), reached with the identity.')
param storageAccountName string

@description('Key Vault reference for the content share connection string (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING).')
param contentConnectionReference string

@description('Content share each slot runs from now (not slot-sticky: a swap exchanges them; infra/deploy.sh reads them back).')
param productionContentShare string
param stagingContentShare string

param appInsightsConnectionString string
param logAnalyticsWorkspaceId string

@description('maxconf settings (name/value pairs), the same on both slots.')
param maxconfSettings array

@description('Host key APIM sends as x-functions-key (named "apim"). Empty: leave the key as it is.')
@secure()
param functionKey string = ''

@description('Allow SCM (Kudu) basic-auth publishing credentials. Off unless your Core Tools version needs them.')
param scmBasicAuth bool = false

param tags object = {}

var hostSettings = [
  {
    name: 'FUNCTIONS_EXTENSION_VERSION'
    value: '~4'
  }
  {
    name: 'FUNCTIONS_WORKER_RUNTIME'
    value: 'custom'
  }
  {
    name: 'AzureWebJobsStorage__accountName'
    value: storageAccountName
  }
  {
    name: 'AzureWebJobsStorage__credential'
    value: 'managedidentity'
  }
  {
    name: 'AzureWebJobsStorage__clientId'
    value: identityClientId
  }
  {
    name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
    value: appInsightsConnectionString
  }
  {
    name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
    value: 'Authorization=AAD;ClientId=${identityClientId}'
  }
  {
    name: 'WEBSITE_CONTENTAZUREFILECONNECTIONSTRING'
    value: contentConnectionReference
  }
  {
    // Required when the content connection string is a Key Vault reference; the shares are
    // created by storage.bicep.
    name: 'WEBSITE_SKIP_CONTENTSHARE_VALIDATION'
    value: '1'
  }
  {
    // Kept here so that redeploying the template does not undo what `func ... publish` set.
    name: 'WEBSITE_RUN_FROM_PACKAGE'
    value: '1'
  }
]

// Per slot. WEBSITE_CONTENTSHARE is NOT slot-sticky (Microsoft: "Don't make WEBSITE_CONTENTSHARE
// a slot setting"): it travels with the code on a swap, so each slot's value is whatever the
// last swap left there. main.bicep's caller (infra/deploy.sh) reads the current values and passes
// them back, so redeploying never points production at the other slot's share.
// TIMERS_ENABLED is slot-sticky: the staging slot shares production's queues and Pexip, so its
// timer runs are logged no-ops. (Not AzureWebJobs.<function>.Disabled: the function names have
// hyphens, which App Service on Linux does not take in a setting name.)
var productionSettings = concat(hostSettings, maxconfSettings, [
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: productionContentShare
  }
  {
    name: 'TIMERS_ENABLED'
    value: 'true'
  }
])

var stagingSettings = concat(hostSettings, maxconfSettings, [
  {
    name: 'WEBSITE_CONTENTSHARE'
    value: stagingContentShare
  }
  {
    name: 'TIMERS_ENABLED'
    value: 'false'
  }
])

resource plan 'Microsoft.Web/serverfarms@2023-12-01' = {
  //checkov:skip=CKV_AZURE_225: zone redundancy is a parameter (zoneRedundant), off by default: the pool survives a zone loss in storage and Pexip, and EP zone redundancy needs 2+ instances
  name: planName
  location: location
  tags: tags
  kind: 'elastic'
  sku: {
    name: planSku
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: maximumElasticWorkerCount
    zoneRedundant: zoneRedundant
  }
}

resource site 'Microsoft.Web/sites@2023-12-01' = {
  //checkov:skip=CKV_AZURE_56: App Service Authentication is not used: APIM validates Entra ID tokens and every private function needs the function key
  //checkov:skip=CKV_AZURE_17: client certificates are not used: APIM authenticates with the function key
  //checkov:skip=CKV_AZURE_221: no private networking in this deployment (see README, Deploy)
  //checkov:skip=CKV_AZURE_213: no platform health check on purpose (see siteConfig)
  //checkov:skip=CKV_AZURE_212: Elastic Premium scales by minimumElasticInstanceCount (a parameter) and load, not numberOfWorkers, which this check reads
  //checkov:skip=CKV_AZURE_222: public network access is needed: APIM (no VNet) calls the app over the internet with the function key
  name: appName
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
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // Custom handler: no language stack image.
      linuxFxVersion: ''
      use32BitWorkerProcess: false
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      minimumElasticInstanceCount: minimumInstances
      functionAppScaleLimit: maximumElasticWorkerCount
      // No healthCheckPath, on purpose: GET /api/health reports storage and Pexip, which every
      // instance shares; a Pexip or storage outage would fail it on all instances at once and
      // the platform would recycle them all, fixing nothing. The host already restarts a
      // handler process that dies, and an instance fault shows as 5xx in the alerts.
      cors: {
        allowedOrigins: []
      }
      appSettings: productionSettings
    }
  }
}

resource staging 'Microsoft.Web/sites/slots@2023-12-01' = {
  //checkov:skip=CKV_AZURE_56: as the production slot
  //checkov:skip=CKV_AZURE_17: as the production slot
  //checkov:skip=CKV_AZURE_221: as the production slot
  //checkov:skip=CKV_AZURE_213: as the production slot
  //checkov:skip=CKV_AZURE_222: as the production slot
  //checkov:skip=CKV_AZURE_212: as the production slot
  parent: site
  name: 'staging'
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
    reserved: true
    httpsOnly: true
    clientCertEnabled: false
    publicNetworkAccess: 'Enabled'
    keyVaultReferenceIdentity: identityId
    siteConfig: {
      // Custom handler: no language stack image.
      linuxFxVersion: ''
      use32BitWorkerProcess: false
      ftpsState: 'Disabled'
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      http20Enabled: true
      minimumElasticInstanceCount: minimumInstances
      functionAppScaleLimit: maximumElasticWorkerCount
      // No healthCheckPath, on purpose: GET /api/health reports storage and Pexip, which every
      // instance shares; a Pexip or storage outage would fail it on all instances at once and
      // the platform would recycle them all, fixing nothing. The host already restarts a
      // handler process that dies, and an instance fault shows as 5xx in the alerts.
      cors: {
        allowedOrigins: []
      }
      appSettings: stagingSettings
    }
  }
}

// Settings that stay with their slot when the slots are swapped.
resource sticky 'Microsoft.Web/sites/config@2023-12-01' = {
  //checkov:skip=CKV_AZURE_13: not a web app: this resource only lists slot-sticky setting names
  //checkov:skip=CKV_AZURE_222: as CKV_AZURE_13
  //checkov:skip=CKV_AZURE_63: as CKV_AZURE_13
  //checkov:skip=CKV_AZURE_65: as CKV_AZURE_13
  //checkov:skip=CKV_AZURE_66: as CKV_AZURE_13
  //checkov:skip=CKV_AZURE_80: as CKV_AZURE_13
  //checkov:skip=CKV_AZURE_88: as CKV_AZURE_13
  parent: site
  name: 'slotConfigNames'
  properties: {
    appSettingNames: [
      'TIMERS_ENABLED'
    ]
  }
}

resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: scmBasicAuth
  }
}

resource stagingFtpPolicy 'Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: staging
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource stagingScmPolicy 'Microsoft.Web/sites/slots/basicPublishingCredentialsPolicies@2023-12-01' = {
  parent: staging
  name: 'scm'
  properties: {
    allow: scmBasicAuth
  }
}

// The host key APIM uses (production slot: APIM calls production only).
resource apimKey 'Microsoft.Web/sites/host/functionKeys@2023-12-01' = if (!empty(functionKey)) {
  name: '${site.name}/default/apim'
  properties: {
    name: 'apim'
    value: functionKey
  }
  dependsOn: [
    site
  ]
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'to-log-analytics'
  scope: site
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'FunctionAppLogs'
        enabled: true
      }
    ]
    metrics: [
      {
        category: 'AllMetrics'
        enabled: true
      }
    ]
  }
}

output appName string = site.name
output defaultHostName string = site.properties.defaultHostName
output stagingHostName string = staging.properties.defaultHostName
output planName string = plan.name
