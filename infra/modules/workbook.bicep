// The operators' workbook on Application Insights: pool size and deletion backlog, creates per
// minute, create latency percentiles, errors by problem type, timer run results. The KQL is in
// infra/monitoring/workbook-*.kql (checked against the binary's real output by
// `cargo test --test deployment`).

param location string

@description('Resource id of the Application Insights component the workbook reads.')
param appInsightsId string

param displayName string = 'maxconf operations'

param tags object = {}

var charts = [
  {
    title: 'Pool size and deletion backlog (traces: function-metrics)'
    query: loadTextContent('../monitoring/workbook-pool.kql')
    visualization: 'timechart'
  }
  {
    title: 'Creates per minute (requests)'
    query: loadTextContent('../monitoring/workbook-creates.kql')
    visualization: 'timechart'
  }
  {
    title: 'Create latency percentiles, ms (requests)'
    query: loadTextContent('../monitoring/workbook-create-latency.kql')
    visualization: 'timechart'
  }
  {
    title: 'Errors by problem type (traces)'
    query: loadTextContent('../monitoring/workbook-errors.kql')
    visualization: 'barchart'
  }
  {
    title: 'Timer runs (requests)'
    query: loadTextContent('../monitoring/workbook-timers.kql')
    visualization: 'table'
  }
]

var workbookContent = {
  version: 'Notebook/1.0'
  items: [for (chart, i) in charts: {
    type: 3
    name: 'query-${i}'
    content: {
      version: 'KqlItem/1.0'
      query: chart.query
      size: 0
      title: chart.title
      timeContext: {
        durationMs: 86400000
      }
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: chart.visualization
    }
  }]
  isLocked: false
  fallbackResourceIds: [
    appInsightsId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(resourceGroup().id, appInsightsId, 'maxconf-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(workbookContent)
  }
}

output workbookId string = workbook.id
