//! Non-HTTP functions, called by the Functions host as `POST /<function name>` with
//! `{"Data":{…},"Metadata":{…}}` and answered `{"Outputs":{},"Logs":[…],"ReturnValue":null}`.
//! `Logs` lands in the invocation's own telemetry; a non-2xx answer fails the invocation.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use crate::error::AppError;

pub use crate::run_report::RunReport;

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InvocationReply {
    outputs: serde_json::Map<String, Value>,
    logs: Vec<String>,
    return_value: Value,
}

/// The timer functions this handler answers (the function folders with a `timerTrigger`).
pub const TIMER_FUNCTIONS: &[&str] = &[
    "function-pool-maintain",
    "function-metrics",
    "function-room-gc",
];

/// `TIMERS_ENABLED=false` (a staging slot): the run succeeds without touching the queues or
/// Pexip, and says so in the invocation's log. `None` when timers are enabled.
pub fn timers_disabled(state: &AppState, function: &str) -> Option<RunReport> {
    if state.broker.settings().timers_enabled {
        return None;
    }
    let mut report = RunReport::default();
    report.log(format!(
        "timer run skipped: TIMERS_ENABLED=false ({function}, no queue or Pexip call)"
    ));
    Some(report)
}

/// `POST /{function}`: the host's JSON invocation of a timer function.
pub async fn invoke(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, AppError> {
    let Path(function) = path.map_err(|_| AppError::NotFound("no such function".into()))?;
    if !TIMER_FUNCTIONS.contains(&function.as_str()) {
        return Err(AppError::NotFound(format!("no function named {function}")));
    }
    if let Some(report) = timers_disabled(&state, &function) {
        return Ok(reply(report));
    }
    let broker = &state.broker;
    if let Some(report) = outside_service_hours(broker, &function) {
        return Ok(reply(report));
    }
    let report = match function.as_str() {
        "function-pool-maintain" => crate::maintain::run(broker, false).await,
        "function-metrics" => crate::metrics::run(broker).await,
        "function-room-gc" => crate::gc::run(broker, false).await,
        _ => return Err(AppError::NotFound(format!("no function named {function}"))),
    };
    Ok(reply(report))
}

/// Outside service hours Pexip is off: the maintainer and GC succeed without running, saying
/// why, so the night records no failed invocation. (The metrics timer still runs: it reports
/// the queues and `maxconf_service_open` itself.)
fn outside_service_hours(broker: &crate::broker::Broker, function: &str) -> Option<RunReport> {
    if !matches!(function, "function-pool-maintain" | "function-room-gc") {
        return None;
    }
    let hours = &broker.settings().service_hours;
    let crate::service_hours::Status::Closed { opens_at } = hours.status() else {
        return None;
    };
    let mut report = RunReport::default();
    report.log(match opens_at {
        Some(at) => format!("{function}: outside service hours, nothing to do; opens at {at}"),
        None => format!("{function}: outside service hours (no opening scheduled), nothing to do"),
    });
    Some(report)
}

fn reply(report: RunReport) -> Response {
    let status = if report.failed {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let body = InvocationReply {
        outputs: serde_json::Map::new(),
        logs: report.logs,
        return_value: Value::Null,
    };
    (status, Json(body)).into_response()
}
