// Two storage accounts:
//  - the main account: the Functions host's storage (AzureWebJobsStorage, identity-based) and
//    maxconf's two queues. Shared-key access is OFF: everything reaches it with Entra ID.
//  - the content account: only the Azure Files shares an Elastic Premium plan runs the app's
//    code from. Azure Files for the content share has no identity-based option, so this account
//    keeps shared keys; it holds no queue, no blob the host uses, and no data of maxconf's.

param location string
param mainAccountName string
param contentAccountName string

@description('Queue maxconf hands rooms out from (POOL_QUEUE_NAME).')
param poolQueueName string = 'room-creation-queue'

@description('Queue of rooms waiting for garbage collection (DELETION_QUEUE_NAME).')
param deletionQueueName string = 'room-deletion-queue'

@description('Content share names, one per slot (WEBSITE_CONTENTSHARE).')
param contentShareNames array

@description('Principal id of the Function App identity.')
param appPrincipalId string

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
param skuName string = 'Standard_ZRS'

param tags object = {}

// Roles the Functions host needs for identity-based AzureWebJobsStorage (keys, timer leases:
// blobs; diagnostic events: tables) and maxconf needs for its queues.
var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource main 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35: no private networking in this deployment (the Functions plan is not VNet-integrated); every request is authorized with Entra ID RBAC, shared keys are off
  //checkov:skip=CKV_AZURE_59: as CKV_AZURE_35: public endpoint, Entra ID only
  //checkov:skip=CKV_AZURE_43: the name is built in main.bicep ('st' + prefix + 8 characters of uniqueString: 3-24 lowercase letters and digits); checkov cannot evaluate a parameter
  //checkov:skip=CKV_AZURE_206: replication is a parameter (skuName), zone-redundant by default; checkov cannot evaluate a parameter
  name: mainAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: main
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: main
  name: 'default'
}

resource poolQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: poolQueueName
}

resource deletionQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: queueService
  name: deletionQueueName
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(main.id, appPrincipalId, roles.blobDataOwner)
  scope: main
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(main.id, appPrincipalId, roles.queueDataContributor)
  scope: main
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.queueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(main.id, appPrincipalId, roles.tableDataContributor)
  scope: main
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource content 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  //checkov:skip=CKV_AZURE_35: no private networking in this deployment; the account holds only the app's code (content shares)
  //checkov:skip=CKV_AZURE_59: as CKV_AZURE_35
  //checkov:skip=CKV_AZURE_43: the name is built in main.bicep ('stc' + prefix + 8 characters of uniqueString); checkov cannot evaluate a parameter
  //checkov:skip=CKV_AZURE_206: the content share holds the deployed package only, re-published from CI: LRS is enough
  name: contentAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: true
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        file: {
          enabled: true
        }
      }
    }
  }
}

resource fileService 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = {
  parent: content
  name: 'default'
  properties: {
    shareDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource shares 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = [for share in contentShareNames: {
  parent: fileService
  name: share
  properties: {
    shareQuota: 5
    enabledProtocols: 'SMB'
  }
}]

output mainAccountName string = main.name
output mainAccountId string = main.id
output queueEndpoint string = main.properties.primaryEndpoints.queue
output contentAccountName string = content.name
