//! `GET /api/health` (anonymous): up or down per dependency, nothing more. Outside service
//! hours Pexip is off by design: health answers 200 `closed` with the next opening and checks
//! storage only, so App Service's health checks never recycle an instance for the night.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::AppState;
use crate::service_hours::Status;

/// Health answers fast even when a dependency hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(3);
/// The route is anonymous: results are reused this long, so a flood of health calls costs
/// one storage and one Pexip request every few seconds, not one each.
const CACHE_FOR: Duration = Duration::from_secs(5);

/// The last checks and when they ran (Pexip `None`: not checked, closed); the lock also makes
/// concurrent calls share one check.
#[derive(Default)]
pub struct HealthCache(tokio::sync::Mutex<Option<(Instant, bool, Option<bool>)>>);

pub async fn health(State(state): State<AppState>) -> Response {
    let service = state.broker.settings().service_hours.status();
    let (storage_ok, pexip_ok) = {
        let mut cached = state.health.0.lock().await;
        match *cached {
            Some((at, storage, pexip))
                if at.elapsed() < CACHE_FOR && (pexip.is_some() || !service.is_open()) =>
            {
                (storage, pexip)
            }
            _ => {
                let broker = &state.broker;
                let storage =
                    tokio::time::timeout(CHECK_TIMEOUT, broker.pool().approximate_count());
                let result = if service.is_open() {
                    let pexip = tokio::time::timeout(CHECK_TIMEOUT, broker.caller_pexip().probe());
                    let (storage, pexip) = tokio::join!(storage, pexip);
                    (
                        matches!(storage, Ok(Ok(_))),
                        Some(matches!(pexip, Ok(Ok(())))),
                    )
                } else {
                    (matches!(storage.await, Ok(Ok(_))), None)
                };
                *cached = Some((Instant::now(), result.0, result.1));
                result
            }
        }
    };
    let word = |ok: bool| if ok { "ok" } else { "failed" };
    // Closed: Pexip is not asked (it is off), so only storage can make it unhealthy.
    let healthy = storage_ok && pexip_ok.unwrap_or(true);
    let pexip_word = pexip_ok.map_or("closed", word);
    if !healthy {
        tracing::warn!(
            storage = word(storage_ok),
            pexip = pexip_word,
            "health check degraded"
        );
    }
    let timestamp = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    let checks = json!({"storage": word(storage_ok), "pexip": pexip_word});
    let body = match service {
        Status::Closed { opens_at } if healthy => json!({
            "status": "closed",
            "timestamp": timestamp,
            "opens_at": opens_at.map(|at| at.to_string()),
            "checks": checks,
        }),
        _ => json!({
            "status": if healthy { "alive" } else { "degraded" },
            "timestamp": timestamp,
            "checks": checks,
        }),
    };
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
