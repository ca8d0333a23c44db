//! `GET /api/pool`: the pool's size against its target, and the deletion backlog.

use axum::Json;
use axum::extract::State;

use super::AppState;
use crate::error::AppError;

pub use crate::pool::status::{PoolStatus, status};

pub async fn pool(State(state): State<AppState>) -> Result<Json<PoolStatus>, AppError> {
    status(&state.broker)
        .await
        .map(Json)
        .map_err(|e| AppError::unavailable("queue storage is unavailable", e))
}
