//! `GET /api/health` (anonymous): up or down per dependency, nothing more.

use std::time::{Duration, Instant};

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
/// The route is anonymous: results are reused this long, so a flood of health calls costs
/// one storage and one Pexip request every few seconds, not one each.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// The last checks and when they ran; the lock also makes concurrent calls share one check.
#[derive(Default)]
pub struct HealthCache(tokio::sync::Mutex<Option<(Instant, bool, bool)>>);

pub async fn health(State(state): State<AppState>) -> Response {
    let (storage_ok, pexip_ok) = {
        let mut cached = state.health.0.lock().await;
        match *cached {
            Some((at, storage, pexip)) if at.elapsed() < CACHE_FOR => (storage, pexip),
            _ => {
                let broker = &state.broker;
                let (storage, pexip) = tokio::join!(
                    tokio::time::timeout(CHECK_TIMEOUT, broker.pool().approximate_count()),
                    tokio::time::timeout(CHECK_TIMEOUT, broker.pexip().probe()),
                );
                let result = (matches!(storage, Ok(Ok(_))), matches!(pexip, Ok(Ok(()))));
                *cached = Some((Instant::now(), result.0, result.1));
                result
            }
        }
    };
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
    let mut response = (status, Json(body)).into_response();
    if !healthy {
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
        );
    }
    response
}
