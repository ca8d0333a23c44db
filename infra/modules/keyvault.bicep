// Key Vault (RBAC mode) with the secrets the app settings reference. A secret is written only
// when its parameter is given: later deployments without it leave the stored (possibly rotated)
// value alone. The content-share connection string is written from the content account's key
// on every deployment.

param location string
param keyVaultName string
param contentAccountName string

@description('Principal id of the Function App identity: Key Vault Secrets User on the vault.')
param appPrincipalId string

@description('Principal id of the API Management identity: Key Vault Secrets User on the function key secret only.')
param apimPrincipalId string

@description('Pexip OAuth2 private key, PKCS#8 PEM text or base64 of it. Empty: keep the stored secret.')
@secure()
param pexipOAuthPrivateKey string = ''

@description('Pexip HTTP Basic password. Empty: keep the stored secret.')
@secure()
param pexipPassword string = ''

@description('Event sink HTTP Basic password. Empty: keep the stored secret.')
@secure()
param eventSinkPassword string = ''

@description('The function host key APIM sends as x-functions-key. Empty: keep the stored secret.')
@secure()
param functionKey string = ''

param tags object = {}

var secretsUser = '4633458b-17de-408a-b874-0445c86b69e6'

// Secret names (also used by main.bicep to build the Key Vault references).
var names = {
  pexipOAuthPrivateKey: 'pexip-oauth-private-key'
  pexipPassword: 'pexip-password'
  eventSinkPassword: 'event-sink-password'
  functionKey: 'function-key'
  contentConnection: 'content-share-connection'
}

resource content 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: contentAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  //checkov:skip=CKV_AZURE_109: no private networking in this deployment; access is Entra ID RBAC only (see README, Deploy)
  //checkov:skip=CKV_AZURE_189: as CKV_AZURE_109
  name: keyVaultName
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource oauthKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(pexipOAuthPrivateKey)) {
  //checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional resource
  //checkov:skip=CKV_AZURE_41: rotated by the operator (README, Deploy: rotating secrets); an expiry date would stop the service when it passes
  parent: vault
  name: names.pexipOAuthPrivateKey
  properties: {
    value: pexipOAuthPrivateKey
    contentType: 'application/x-pem-file'
  }
}

resource basicPassword 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(pexipPassword)) {
  //checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional resource
  //checkov:skip=CKV_AZURE_41: rotated by the operator; an expiry date would stop the service when it passes
  parent: vault
  name: names.pexipPassword
  properties: {
    value: pexipPassword
    contentType: 'text/plain'
  }
}

resource sinkPassword 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(eventSinkPassword)) {
  //checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional resource
  //checkov:skip=CKV_AZURE_41: rotated by the operator together with the Pexip event sink; an expiry date would stop the sink when it passes
  parent: vault
  name: names.eventSinkPassword
  properties: {
    value: eventSinkPassword
    contentType: 'text/plain'
  }
}

resource fnKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(functionKey)) {
  //checkov:skip=CKV_AZURE_114: false positive: contentType is set below; checkov does not read the properties of a conditional resource
  //checkov:skip=CKV_AZURE_41: rotated by the operator together with the host key; an expiry date would cut APIM off when it passes
  parent: vault
  name: names.functionKey
  properties: {
    value: functionKey
    contentType: 'text/plain'
  }
}

resource contentConnection 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  //checkov:skip=CKV_AZURE_41: rewritten from the account key on every deployment; rotate the key, then redeploy
  parent: vault
  name: names.contentConnection
  properties: {
    value: 'DefaultEndpointsProtocol=https;AccountName=${content.name};AccountKey=${content.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
    contentType: 'text/plain'
  }
}

resource appSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, appPrincipalId, secretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

// APIM reads one secret: the function key. The role is scoped to that secret, which must exist
// (first deployment: pass functionKey).
resource functionKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: names.functionKey
}

resource apimSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, apimPrincipalId, secretsUser, names.functionKey)
  scope: functionKeySecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', secretsUser)
    principalId: apimPrincipalId
    principalType: 'ServicePrincipal'
  }
  dependsOn: [
    fnKey
  ]
}

output keyVaultName string = vault.name
output keyVaultUri string = vault.properties.vaultUri
output secretNames object = names
