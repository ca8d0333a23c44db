// Log alerts on Application Insights. The KQL lives in infra/monitoring/*.kql (checked by
// `cargo test --test deployment` against the lines the binary prints); thresholds are filled in
// here. Every rule fires into one action group, created when alertEmail is given.

param location string
param namePrefix string

@description('Resource id of the Application Insights component the rules query.')
param appInsightsId string

@description('POOL_TARGET_SIZE: the pool alert fires below poolLowPercent of it.')
param poolTargetSize int

@minValue(1)
@maxValue(100)
param poolLowPercent int = 30

@description('Create 5xx share (percent) that fires the alert; the planned outside-service-hours 503 is not counted.')
@minValue(1)
@maxValue(100)
param create5xxPercent int = 5

@description('Create p95 (ms) that fires the alert.')
param createP95Ms int = 5000

@description('Email address the alerts go to; empty: rules without an action group (visible in the portal only).')
param alertEmail string = ''

param tags object = {}

var poolLowThreshold = max(1, (poolTargetSize * poolLowPercent) / 100)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${namePrefix}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: take('maxconf', 12)
    enabled: true
    emailReceivers: [
      {
        name: 'operators'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actionGroups = empty(alertEmail) ? [] : [
  actionGroup.id
]

var rules = [
  {
    name: 'pool-low'
    displayName: 'maxconf: pool below ${poolLowPercent}% of its target'
    description: 'Every function-metrics run of the last 15 minutes saw fewer than ${poolLowThreshold} available rooms (target ${poolTargetSize}). Creates fall back to on-demand rooms (slow) or 503.'
    severity: 2
    frequency: 'PT5M'
    window: 'PT15M'
    query: replace(replace(loadTextContent('../monitoring/pool-low.kql'), '{threshold}', string(poolLowThreshold)), '{percent}', string(poolLowPercent))
  }
  {
    name: 'timer-failures'
    displayName: 'maxconf: maintainer or GC runs failing'
    description: 'function-pool-maintain or function-room-gc reported a failed run twice in 30 minutes: the pool is not refilled or rooms are not deleted.'
    severity: 2
    frequency: 'PT10M'
    window: 'PT30M'
    query: loadTextContent('../monitoring/timer-failures.kql')
  }
  {
    name: 'create-5xx'
    displayName: 'maxconf: create 5xx rate above ${create5xxPercent}%'
    description: 'More than ${create5xxPercent}% of creates in 15 minutes answered 5xx (outside-service-hours 503 excluded): Pexip or storage is failing.'
    severity: 1
    frequency: 'PT5M'
    window: 'PT15M'
    query: replace(replace(loadTextContent('../monitoring/create-5xx-rate.kql'), '{percent}', string(create5xxPercent)), '{minimum}', '20')
  }
  {
    name: 'create-p95'
    displayName: 'maxconf: create p95 above ${createP95Ms} ms'
    description: 'Creates are slow: the pool may be empty (on-demand rooms) or Pexip slow.'
    severity: 3
    frequency: 'PT5M'
    window: 'PT15M'
    query: replace(loadTextContent('../monitoring/create-p95.kql'), '{thresholdMs}', string(createP95Ms))
  }
]

resource alerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [for rule in rules: {
  name: 'alert-${namePrefix}-${rule.name}'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: rule.displayName
    description: rule.description
    severity: rule.severity
    enabled: true
    evaluationFrequency: rule.frequency
    windowSize: rule.window
    scopes: [
      appInsightsId
    ]
    criteria: {
      allOf: [
        {
          query: rule.query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          // Each query returns rows only when its condition holds.
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: actionGroups
    }
  }
}]

output alertNames array = [for (rule, i) in rules: alerts[i].name]
