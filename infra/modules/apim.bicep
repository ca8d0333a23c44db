// API Management in front of the Function App, as three APIs, because APIM requires a
// subscription key per API (or product), never per operation:
//  - "maxconf" (private, subscription key required): imported from infra/openapi-private.json
//    (infra/openapi.yaml without the public paths), policy infra/policies/api.xml (validate-jwt
//    401, app role 403, key stripped);
//  - "maxconf-public" (keyless, path "public"): the Genesys lookup and the Pexip event sink,
//    policy infra/policies/public.xml (rate-limit-by-key; the function checks the credentials);
//  - "maxconf-health" (keyless, path "health"): GET /health, policy infra/policies/health.xml.
// Backends add x-functions-key from a Key Vault-backed secret named value.

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
@description('App role the management operations (/manage/...) require instead of requiredRole: the operators\' role.')
param operatorRole string = 'Pool.Operate'

param tags object = {}

var isV2 = endsWith(sku, 'V2')

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
    // TLS 1.2+ only, no legacy ciphers, on both sides: on the classic tiers only. The v2 tiers
    // do not support changing the protocol and cipher configuration (Microsoft: "Manage
    // protocols and ciphers in Azure API Management"); their defaults are TLS 1.2+ already.
    customProperties: isV2 ? {} : {
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

resource operatorRoleValue 'Microsoft.ApiManagement/service/namedValues@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-operator-role'
  properties: {
    displayName: 'maxconf-operator-role'
    value: operatorRole
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

resource publicBackend 'Microsoft.ApiManagement/service/backends@2023-09-01-preview' = {
  parent: apim
  name: 'maxconf-function-public'
  properties: {
    description: 'maxconf Function App (production slot), public routes'
    protocol: 'http'
    url: 'https://${functionHostName}/api/public'
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

// The private operations: a subscription key is required by APIM itself. (With
// subscriptionRequired: false APIM does not resolve a key, context.Subscription stays null, and a
// policy cannot require one per operation.)
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
    subscriptionRequired: true
    subscriptionKeyParameterNames: {
      header: 'Ocp-Apim-Subscription-Key'
      query: 'subscription-key'
    }
    serviceUrl: 'https://${functionHostName}/api'
    format: 'openapi+json'
    value: loadTextContent('../openapi-private.json')
    // Keep required query parameters (uuiData, confirm) as query parameters: translated into
    // template parameters (the default, 'template'), a request without one would miss the
    // operation and get APIM's 404 instead of the function's 400.
    translateRequiredQueryParameters: 'query'
  }
}

// The Genesys lookup and the Pexip event sink: no key (callers cannot send one), rate-limited.
resource publicApi 'Microsoft.ApiManagement/service/apis@2023-09-01-preview' = {
  //checkov:skip=CKV_AZURE_215: HTTPS only: protocols is set to https below
  parent: apim
  name: 'maxconf-public'
  properties: {
    displayName: 'MaxConf public operations (Genesys agent lookup, Pexip event sink)'
    path: empty(apiPath) ? 'public' : '${apiPath}/public'
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    serviceUrl: 'https://${functionHostName}/api/public'
  }
}

resource publicRoomOperation 'Microsoft.ApiManagement/service/apis/operations@2023-09-01-preview' = {
  parent: publicApi
  name: 'getRoomPublic'
  properties: {
    displayName: 'Look a room up (Genesys agent widget)'
    method: 'GET'
    urlTemplate: '/room/{room_name}'
    templateParameters: [
      {
        name: 'room_name'
        type: 'string'
        required: true
      }
    ]
  }
}

resource eventSinkOperation 'Microsoft.ApiManagement/service/apis/operations@2023-09-01-preview' = {
  parent: publicApi
  name: 'pexipEventSink'
  properties: {
    displayName: 'Pexip Management Node event sink'
    method: 'POST'
    urlTemplate: '/event_sink'
  }
}

resource publicPolicy 'Microsoft.ApiManagement/service/apis/policies@2023-09-01-preview' = {
  parent: publicApi
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: loadTextContent('../policies/public.xml')
  }
  dependsOn: [
    publicBackend
  ]
}

// GET /health, anonymous by contract.
resource healthApi 'Microsoft.ApiManagement/service/apis@2023-09-01-preview' = {
  //checkov:skip=CKV_AZURE_215: HTTPS only: protocols is set to https below
  parent: apim
  name: 'maxconf-health'
  properties: {
    displayName: 'MaxConf health'
    path: empty(apiPath) ? 'health' : '${apiPath}/health'
    protocols: [
      'https'
    ]
    subscriptionRequired: false
    serviceUrl: 'https://${functionHostName}/api'
  }
}

resource healthOperation 'Microsoft.ApiManagement/service/apis/operations@2023-09-01-preview' = {
  parent: healthApi
  name: 'health'
  properties: {
    displayName: 'Health'
    method: 'GET'
    urlTemplate: '/'
  }
}

resource healthPolicy 'Microsoft.ApiManagement/service/apis/policies@2023-09-01-preview' = {
  parent: healthApi
  name: 'policy'
  properties: {
    format: 'rawxml'
    value: loadTextContent('../policies/health.xml')
  }
  dependsOn: [
    backend
  ]
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
    operatorRoleValue
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
