//! `GET /api/health` (anonymous): up or down per dependency, nothing more.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;

/// Health answers fast even when a dependency hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);

pub async fn health(State(state): State<AppState>) -> Response {
    let broker = &state.broker;
    let (storage, pexip) = tokio::join!(
        tokio::time::timeout(CHECK_TIMEOUT, broker.pool().approximate_count()),
        tokio::time::timeout(CHECK_TIMEOUT, broker.pexip().probe()),
    );
    let storage_ok = matches!(storage, Ok(Ok(_)));
    let pexip_ok = matches!(pexip, Ok(Ok(())));
    let word = |ok: bool| if ok { "ok" } else { "failed" };
    let healthy = storage_ok && pexip_ok;
    if !healthy {
        tracing::warn!(
            storage = word(storage_ok),
            pexip = word(pexip_ok),
            "health check degraded"
        );
    }
    let body = json!({
        "status": if healthy { "alive" } else { "degraded" },
        "timestamp": OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default(),
        "checks": {"storage": word(storage_ok), "pexip": word(pexip_ok)},
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}
