// API Management in front of the Function App: the API imported from infra/openapi.yaml (paths
// without the Functions /api prefix), a backend that adds x-functions-key from a Key Vault-backed
// secret named value, and the API policy in infra/policies/api.xml (subscription key + validate-jwt
// on private operations; public operations passed through to the function's own checks).

param location string
param apimName string

@allowed([
  'Developer'
  'Basic'
  'Standard'
  'Premium'
  'BasicV2'
  'StandardV2'
])
param sku string = 'StandardV2'

@minValue(1)
param capacity int = 1

param publisherEmail string
param publisherName string

@description('Resource id and client id of the APIM user-assigned identity (reads the function key secret).')
param identityId string
param identityClientId string

@description('Key Vault secret URI (versionless) of the function key.')
param functionKeySecretUri string

@description('Function App default host name (production slot).')
param functionHostName string

@description('URL suffix the API is published under; empty keeps the original paths (https://<apim>/room/create).')
param apiPath string = ''

param tenantId string
param audience string
param apiClientId string
param requiredRole string = 'Rooms.Manage'

param tags object = {}

resource apim 'Microsoft.ApiManagement/service@2023-09-01-preview' = {
  //checkov:skip=CKV_AZURE_107: no virtual network: the gateway is the public entry point for IDIM, Genesys and Pexip's event sink
  //checkov:skip=CKV_AZURE_174: as CKV_AZURE_107: public access is the purpose of this gateway
  name: apimName
  location: location
  tags: tags
  sku: {
    name: sku
    capacity: capacity
  }
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    publisherEmail: publisherEmail
    publisherName: publisherName
    // TLS 1.2+ only, no legacy ciphers, on both sides.
    customProperties: {
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Protocols.Ssl30': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls10': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Tls11': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Backend.Protocols.Ssl30': 'false'
      'Microsoft.WindowsAzure.ApiManagement.Gateway.Security.Ciphers.TripleDes168': 'false'
    }
  }
}

resource functionKey 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-function-key'
  properties: {
    displayName: 'maxconf-function-key'
    secret: true
    keyVault: {
      secretIdentifier: functionKeySecretUri
      identityClientId: identityClientId
    }
  }
}

resource tenantValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-tenant-id'
  properties: {
    displayName: 'maxconf-tenant-id'
    value: tenantId
    secret: false
  }
}

resource audienceValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-audience'
  properties: {
    displayName: 'maxconf-audience'
    value: audience
    secret: false
  }
}

resource clientIdValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-api-client-id'
  properties: {
    displayName: 'maxconf-api-client-id'
    value: apiClientId
    secret: false
  }
}

resource roleValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-required-role'
  properties: {
    displayName: 'maxconf-required-role'
    value: requiredRole
    secret: false
  }
}

resource backend 'Microsoft.ApiManagement/service/backends@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-function'
  properties: {
    description: 'maxconf Function App (production slot)'
    protocol: 'http'
    url: 'https://${functionHostName}/api'
    credentials: {
      header: {
        'x-functions-key': [
          '{{maxconf-function-key}}'
        ]
      }
    }
    tls: {
      validateCertificateChain: true
      validateCertificateName: true
    }
  }
  dependsOn: [
    functionKey
  ]
}

// Subscription keys are enforced by the API policy for private operations only (APIM can only
// require them per API or product), so the API itself does not require one.
resource api 'Microsoft.ApiManagement/service/apis@2023-09-01-preview' = {
  //checkov:skip=CKV_AZURE_215: HTTPS only: protocols is set to https below; checkov's check does not read the imported API
  parent: apim
  name: 'maxconf'
  properties: {
    displayName: 'MaxConf Virtual Conferencing API'
    path: apiPath
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    subscriptionKeyParameterNames: {
      header: 'Ocp-Apim-Subscription-Key'
      query: 'subscription-key'
    }
    serviceUrl: 'https://${functionHostName}/api'
    format: 'openapi'
    value: loadTextContent('../openapi.yaml')
  }
}

resource apiPolicy 'Microsoft.ApiManagement/service/apis/policies@2023-09-01-preview' = {
  parent: api
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: loadTextContent('../policies/api.xml')
  }
  dependsOn: [
    backend
    tenantValue
    audienceValue
    clientIdValue
    roleValue
  ]
}

// The product IDIM subscribes to; its subscription key is what the policy checks.
resource product 'Microsoft.ApiManagement/service/products@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf'
  properties: {
    displayName: 'MaxConf'
    description: 'Room management for the IDIM Video API'
    subscriptionRequired: true
    approvalRequired: true
    subscriptionsLimit: 5
    state: 'published'
  }
}

resource productApi 'Microsoft.ApiManagement/service/products/apis@2023-09-01-preview' = {
  parent: product
  name: api.name
}

resource idimSubscription 'Microsoft.ApiManagement/service/subscriptions@2023-09-01-preview' = {
  parent: apim
  name: 'idim-video-api'
  properties: {
    displayName: 'IDIM Video API'
    scope: product.id
    state: 'active'
    allowTracing: false
  }
}

output gatewayUrl string = apim.properties.gatewayUrl
output apimName string = apim.name
output subscriptionName string = idimSubscription.name
