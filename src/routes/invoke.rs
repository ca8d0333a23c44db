//! Non-HTTP functions, called by the Functions host as `POST /<function name>` with
//! `{"Data":{…},"Metadata":{…}}` and answered `{"Outputs":{},"Logs":[…],"ReturnValue":null}`.
//! `Logs` lands in the invocation's own telemetry; a non-2xx answer fails the invocation.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::Value;

use super::AppState;
use crate::error::AppError;

pub use crate::run_report::{RunReport, printed};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct InvocationReply {
    outputs: serde_json::Map<String, Value>,
    logs: Vec<String>,
    return_value: Value,
}

/// The timer functions the host may invoke, each `POST /<function name>`.
pub const TIMER_FUNCTIONS: [&str; 3] = [
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

/// `POST /<function name>` for each of [`TIMER_FUNCTIONS`], and nothing else.
pub fn router() -> Router<AppState> {
    TIMER_FUNCTIONS
        .into_iter()
        .fold(Router::new(), |router, function| {
            router.route(
                &format!("/{function}"),
                post(move |State(state): State<AppState>| invoke(state, function)),
            )
        })
}

/// The host's JSON invocation of a timer function.
async fn invoke(state: AppState, function: &'static str) -> Result<Response, AppError> {
    if let Some(report) = timers_disabled(&state, function) {
        return Ok(reply(report));
    }
    let broker = &state.broker;
    if let Some(report) = outside_service_hours(broker, function) {
        return Ok(reply(report));
    }
    let report = match function {
        "function-pool-maintain" => {
            let report = crate::maintain::run(broker, false).await;
            crate::runs::record(broker, "maintain", &report).await;
            report
        }
        "function-metrics" => crate::metrics::run(broker).await,
        "function-room-gc" => {
            let report = crate::gc::run(broker, false).await;
            crate::runs::record(broker, "gc", &report).await;
            report
        }
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
