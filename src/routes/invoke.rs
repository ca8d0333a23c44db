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

/// What a timer run reports: its summary lines, and whether it succeeded.
#[derive(Debug, Default)]
pub struct RunReport {
    pub logs: Vec<String>,
    pub failed: bool,
}

tokio::task_local! {
    /// Set while an operator command runs a job: it prints the report itself, so the lines are
    /// not logged as well (they were shown twice: a WARN line on stderr and stdout).
    static PRINTED: ();
}

/// Runs `job` with its report lines printed by the caller rather than logged.
pub async fn printed<F: std::future::Future>(job: F) -> F::Output {
    PRINTED.scope((), job).await
}

fn logged() -> bool {
    PRINTED.try_with(|_| ()).is_err()
}

impl RunReport {
    pub fn log(&mut self, line: impl Into<String>) {
        let line = line.into();
        if logged() {
            tracing::info!("{line}");
        }
        self.logs.push(line);
    }

    pub fn fail(&mut self, line: impl Into<String>) {
        let line = line.into();
        if logged() {
            tracing::warn!("{line}");
        }
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

/// The timer functions the host may invoke, each `POST /<function name>`.
pub const TIMER_FUNCTIONS: [&str; 3] = [
    "function-pool-maintain",
    "function-metrics",
    "function-room-gc",
];

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
    let broker = &state.broker;
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
