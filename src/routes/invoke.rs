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

/// What a timer run reports: its summary lines, and whether it succeeded.
#[derive(Debug, Default)]
pub struct RunReport {
    pub logs: Vec<String>,
    pub failed: bool,
}

impl RunReport {
    pub fn log(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::info!("{line}");
        self.logs.push(line);
    }

    pub fn fail(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::warn!("{line}");
        self.logs.push(line);
        self.failed = true;
    }
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InvocationReply {
    outputs: serde_json::Map<String, Value>,
    logs: Vec<String>,
    return_value: Value,
}

/// `POST /{function}`: the host's JSON invocation of a timer function.
pub async fn invoke(
    State(state): State<AppState>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Response, AppError> {
    let Path(function) = path.map_err(|_| AppError::NotFound("no such function".into()))?;
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
