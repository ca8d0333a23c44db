// User-assigned managed identities: one for the Function App (storage, Key Vault references,
// telemetry), one for API Management (reads the function key secret only).

@description('Azure region.')
param location string

@description('Name of the Function App identity.')
param appIdentityName string

@description('Name of the API Management identity.')
param apimIdentityName string

param tags object = {}

resource app 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: appIdentityName
  location: location
  tags: tags
}

resource apim 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: apimIdentityName
  location: location
  tags: tags
}

output appIdentityId string = app.id
output appClientId string = app.properties.clientId
output appPrincipalId string = app.properties.principalId
output apimIdentityId string = apim.id
output apimClientId string = apim.properties.clientId
output apimPrincipalId string = apim.properties.principalId
