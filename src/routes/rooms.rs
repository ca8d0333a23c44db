//! `POST /api/room/create` and `DELETE /api/room/{room_name}`.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use axum::{Json, Router};

use super::AppState;
use crate::error::AppError;
use crate::room::{ConstrainedConference, RoomName};
use crate::uui::{self, UuiError};

pub fn router() -> Router<AppState> {
    Router::new()
        // A DELETE of a room literally named "create" reaches the static route first.
        .route(
            "/api/room/create",
            post(create).delete(|state| delete_room(state, Ok(Path("create".to_owned())))),
        )
        .route("/api/room/{room_name}", delete(delete_room))
}

async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ConstrainedConference>, AppError> {
    let raw = single_param(query.as_deref().unwrap_or(""), "uuiData")?;
    let tag = uui::tag_from_uui(&raw, &state.broker.settings().uui)
        .map_err(|e| AppError::bad_request(e.rule(), e.to_string()))?;
    let handout = state.broker.create(&tag).await?;
    state.broker.spawn_refill(&handout);
    Ok(Json(handout.room))
}

/// The one value of `name` in the query; missing or repeated is a uuiData rule.
fn single_param(query: &str, name: &str) -> Result<String, AppError> {
    let mut values = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned());
    let uui_error = |e: UuiError| AppError::bad_request(e.rule(), e.to_string());
    let first = values.next().ok_or_else(|| uui_error(UuiError::Missing))?;
    if values.next().is_some() {
        return Err(uui_error(UuiError::Repeated));
    }
    Ok(first)
}

async fn delete_room(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<StatusCode, AppError> {
    let Path(raw) = path.map_err(|r| super::rejection("room-name", r))?;
    let name =
        RoomName::parse(&raw).map_err(|detail| AppError::bad_request("room-name", detail))?;
    state.broker.delete_room(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}
