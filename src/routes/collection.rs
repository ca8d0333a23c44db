//! Every room: `GET /api/rooms`, `POST /api/rooms/bulk`, `DELETE /api/rooms?confirm=true`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::AppState;
use super::rooms::{constrained_attributes, pexip_error};
use crate::broker::Broker;
use crate::error::AppError;
use crate::pexip::{Conference, PexipError};
use crate::room::ConstrainedConference;

/// Rooms one bulk request may create.
pub const MAX_BULK: u64 = 500;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/rooms", get(list_rooms).delete(delete_all))
        .route("/api/rooms/bulk", post(bulk_create))
}

/// `GET /api/rooms?constrained_attributes=true|false`: every room, paged through Pexip.
async fn list_rooms(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let constrained = constrained_attributes(query.as_deref())?;
    let objects = state
        .broker
        .pexip()
        .list_conferences(&[])
        .await
        .map_err(pexip_error)?;
    if !constrained {
        return Ok(axum::Json(objects).into_response());
    }
    let rooms: Vec<ConstrainedConference> = objects
        .into_iter()
        .filter_map(|raw| match Conference::from_value(raw) {
            Ok(c) => Some(ConstrainedConference::from_conference(&c)),
            Err(_) => {
                tracing::warn!("skipped a Pexip conference object without id or name");
                None
            }
        })
        .collect();
    Ok(axum::Json(rooms).into_response())
}

/// `POST /api/rooms/bulk` `{"count": N}`: 202 at once; the rooms are created in the
/// background through the refill path (warm-up, TTL -1, never a repeated send), within the
/// broker's refill slots.
async fn bulk_create(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AppError> {
    let body = body.map_err(|r| super::rejection("bulk-count", r))?;
    let bad = || {
        AppError::bad_request(
            "bulk-count",
            format!("the body must be {{\"count\": N}} with N a whole number from 1 to {MAX_BULK}"),
        )
    };
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&body) else {
        return Err(bad());
    };
    let count = map
        .get("count")
        .and_then(Value::as_u64)
        .filter(|n| (1..=MAX_BULK).contains(n))
        .ok_or_else(bad)?;
    spawn_bulk(Arc::clone(&state.broker), count);
    Ok((StatusCode::ACCEPTED, axum::Json(json!({"accepted": count}))).into_response())
}

fn spawn_bulk(broker: Arc<Broker>, count: u64) {
    tracing::info!(count, "bulk room creation started");
    tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        for _ in 0..count {
            let broker = Arc::clone(&broker);
            // refill_one waits for a refill slot: at most PEXIP_MAX_CONCURRENCY - 1 at once.
            tasks.spawn(async move { broker.refill_one().await });
        }
        let (mut created, mut failed) = (0u64, 0u64);
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(Ok(_)) => created += 1,
                Ok(Err(e)) => {
                    failed += 1;
                    tracing::warn!(error = %e, "bulk room creation: one room failed");
                }
                Err(_) => failed += 1,
            }
        }
        tracing::info!(
            created,
            failed,
            "bulk room creation done (the pool maintainer tops up what failed)"
        );
    });
}

/// `DELETE /api/rooms?confirm=true`: clears the pool first (nothing about to be deleted can
/// be handed out), then deletes every non-persistent room. `{"deleted": N, "failed": M}`.
async fn delete_all(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let confirmed = url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
        .any(|(key, value)| key == "confirm" && value == "true");
    if !confirmed {
        return Err(AppError::bad_request(
            "confirm",
            "deleting every room needs confirm=true",
        ));
    }
    let broker = &state.broker;
    broker
        .pool()
        .clear()
        .await
        .map_err(|e| AppError::unavailable("the room pool is unavailable", e))?;
    tracing::warn!("bulk delete: pool cleared");
    let objects = broker
        .pexip()
        .list_conferences(&[])
        .await
        .map_err(pexip_error)?;
    let rooms: Vec<Conference> = objects
        .into_iter()
        .filter_map(|raw| Conference::from_value(raw).ok())
        .filter(|c| !broker.settings().rooms.is_persistent(&c.name))
        .collect();
    let (deleted, failed) = delete_rooms(broker, rooms).await;
    tracing::warn!(deleted, failed, "bulk delete done");
    Ok(axum::Json(json!({"deleted": deleted, "failed": failed})).into_response())
}

/// Deletes `rooms`, leaving one Pexip slot to the critical path. Once Pexip is unavailable no
/// further delete is started; the rest count as failed.
async fn delete_rooms(broker: &Arc<Broker>, rooms: Vec<Conference>) -> (u64, u64) {
    let slots = Arc::new(Semaphore::new(
        broker
            .settings()
            .pexip
            .max_concurrency
            .saturating_sub(1)
            .max(1),
    ));
    let total = rooms.len() as u64;
    let mut tasks = JoinSet::new();
    let mut started = 0u64;
    let (mut deleted, mut failed) = (0u64, 0u64);
    let mut down = false;
    let mut rooms = rooms.into_iter();
    loop {
        // Start deletes while slots are free and Pexip is up; otherwise collect an answer.
        if !down
            && let Ok(permit) = Arc::clone(&slots).try_acquire_owned()
            && let Some(room) = rooms.next()
        {
            let pexip = broker.pexip().clone();
            started += 1;
            tasks.spawn(async move {
                let _permit = permit;
                let result = pexip.delete_conference(room.id).await;
                (room.name, result)
            });
            continue;
        }
        let Some(joined) = tasks.join_next().await else {
            break;
        };
        match joined {
            Ok((_, Ok(()) | Err(PexipError::NotFound))) => deleted += 1,
            Ok((name, Err(e))) => {
                failed += 1;
                tracing::warn!(room = %name, error = %e, "bulk delete: room not deleted");
                down |= matches!(e, PexipError::Unavailable(_) | PexipError::Auth(_));
            }
            Err(_) => failed += 1,
        }
    }
    (deleted, failed + (total - started))
}
