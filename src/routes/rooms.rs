//! One room: `POST /api/room/create`, and `GET`, `PATCH`, `DELETE /api/room/{room_name}`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value};

use super::AppState;
use crate::error::AppError;
use crate::maintain::{self, RoomKind};
use crate::pexip::{Conference, PexipError};
use crate::room::{ConstrainedConference, RoomName};
use crate::room_state::RoomState;
use crate::uui::{self, UuiError};

pub fn router() -> Router<AppState> {
    // A room literally named "create" is reached through the static route (matched first)
    // for every method but POST, which is create itself.
    let named_create = || Ok(Path("create".to_owned()));
    Router::new()
        .route(
            "/api/room/create",
            post(create)
                .get(move |state, query| get_room(state, named_create(), query))
                .patch(move |state, body| update_room(state, named_create(), body))
                .delete(move |state| delete_room(state, named_create())),
        )
        .route(
            "/api/room/{room_name}",
            get(get_room).patch(update_room).delete(delete_room),
        )
}

async fn create(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<ConstrainedConference>, AppError> {
    let raw = single_param(query.as_deref().unwrap_or(""), "uuiData")?;
    let tag = uui::tag_from_uui(&raw, &state.broker.settings().uui)
        .map_err(|e| AppError::bad_request(e.rule(), e.to_string()))?;
    // Runs to its end even if this request is dropped; the refill follows in the background.
    let handout = state.broker.create(&tag).await?;
    tracing::Span::current().record("room", handout.room.name.as_str());
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
    let name = room_name(path)?;
    state.broker.delete_room(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/room/{room_name}?constrained_attributes=true|false`.
async fn get_room(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let name = room_name(path)?;
    let constrained = constrained_attributes(query.as_deref())?;
    read_room(&state, &name, constrained).await
}

/// The room as the private and the public GET answer it.
pub(super) async fn read_room(
    state: &AppState,
    name: &RoomName,
    constrained: bool,
) -> Result<Response, AppError> {
    let conference = find(state, name).await?;
    Ok(if constrained {
        Json(ConstrainedConference::from_conference(&conference)).into_response()
    } else {
        Json(conference.raw).into_response()
    })
}

async fn find(state: &AppState, name: &RoomName) -> Result<Conference, AppError> {
    state
        .broker
        .caller_pexip()
        .find_by_name(name.as_str())
        .await
        .map_err(pexip_error)?
        .ok_or_else(|| AppError::NotFound(format!("room {} does not exist", name.as_str())))
}

pub(super) fn pexip_error(e: PexipError) -> AppError {
    match e {
        PexipError::Protocol(_) | PexipError::Config(_) => AppError::Internal(e.to_string()),
        other => AppError::unavailable("Pexip is unavailable", other),
    }
}

/// The validated room name of the path, recorded on the request's span.
pub(super) fn room_name(path: Result<Path<String>, PathRejection>) -> Result<RoomName, AppError> {
    let Path(raw) = path.map_err(|r| super::rejection("room-name", r))?;
    let name =
        RoomName::parse(&raw).map_err(|detail| AppError::bad_request("room-name", detail))?;
    tracing::Span::current().record("room", name.as_str());
    Ok(name)
}

/// `constrained_attributes`: `true` (default) or `false`, in any case (Python callers send
/// `True`/`False`); anything else, or the parameter twice, is a 400.
pub(super) fn constrained_attributes(query: Option<&str>) -> Result<bool, AppError> {
    let mut values = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .filter(|(key, _)| key == "constrained_attributes")
        .map(|(_, value)| value.into_owned());
    let rule = |detail: &str| AppError::bad_request("constrained-attributes", detail);
    let Some(value) = values.next() else {
        return Ok(true);
    };
    if values.next().is_some() {
        return Err(rule("constrained_attributes may be given once"));
    }
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(rule("constrained_attributes must be true or false")),
    }
}

/// Fields a PATCH may change.
const UPDATABLE: [&str; 6] = [
    "tag",
    "description",
    "pin",
    "guest_pin",
    "allow_guests",
    "participant_limit",
];
const MAX_TEXT: usize = 250;

/// `PATCH /api/room/{room_name}`: 202, no body.
async fn update_room(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, AppError> {
    let name = room_name(path)?;
    let body = body.map_err(|r| super::rejection("room-update", r))?;
    let changes = validate_update(&body)?;
    if state.broker.settings().rooms.is_persistent(name.as_str()) {
        return Err(AppError::Forbidden(format!(
            "room {} is persistent and cannot be changed",
            name.as_str()
        )));
    }
    let conference = find(&state, &name).await?;
    if clears_tag(&changes) {
        record_before_untag(&state, &conference).await?;
    }
    match state
        .broker
        .caller_pexip()
        .patch_conference(conference.id, &Value::Object(changes))
        .await
    {
        Ok(()) => {
            tracing::info!(room = name.as_str(), id = conference.id, "room updated");
            Ok(StatusCode::ACCEPTED)
        }
        Err(PexipError::NotFound) => Err(AppError::NotFound(format!(
            "room {} does not exist",
            name.as_str()
        ))),
        Err(PexipError::Rejected(summary)) => {
            // Pexip's own words stay in the log; the caller gets the field names only.
            tracing::info!(room = name.as_str(), %summary, "Pexip rejected a room update");
            let fields: Vec<&str> = summary
                .split("; ")
                .filter_map(|part| part.split_once(": ").map(|(field, _)| field))
                .collect();
            Err(AppError::bad_request(
                "room-update",
                if fields.is_empty() {
                    "Pexip rejected the change".to_owned()
                } else {
                    format!("Pexip rejected the change to: {}", fields.join(", "))
                },
            ))
        }
        Err(e) => Err(pexip_error(e)),
    }
}

fn clears_tag(changes: &Map<String, Value>) -> bool {
    changes.get("tag").and_then(Value::as_str) == Some("")
}

/// A pool handout leaves `created` on the room's alias; its tag alone says it is handed out
/// until the maintainer records it ([`crate::handouts`]). Before a caller clears that tag, the
/// handout goes on the alias, so the room never looks like a pool room no message reaches
/// (which the maintainer deletes). Nothing changes if this fails.
async fn record_before_untag(state: &AppState, room: &Conference) -> Result<(), AppError> {
    let broker = &state.broker;
    if maintain::classify(room, broker.settings()) != RoomKind::Unrecorded {
        return Ok(());
    }
    let allocated = RoomState::allocated_now();
    match maintain::write_state(broker.caller_pexip(), room, allocated).await {
        Ok(recorded) => {
            if recorded {
                tracing::info!(room = %room.name, "handout recorded on the alias before its tag is cleared");
            }
            Ok(())
        }
        Err(PexipError::NotFound) => Err(AppError::NotFound(format!(
            "room {} does not exist",
            room.name
        ))),
        Err(e) => Err(pexip_error(e)),
    }
}

/// The PATCH body: a JSON object of [`UPDATABLE`] fields, each valid as Pexip would have it.
pub fn validate_update(body: &[u8]) -> Result<Map<String, Value>, AppError> {
    let bad = |detail: String| AppError::bad_request("room-update", detail);
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err(bad("the body must be a JSON object".into()));
    };
    if map.is_empty() {
        return Err(bad(format!(
            "the body must change at least one of: {}",
            UPDATABLE.join(", ")
        )));
    }
    for (field, value) in &map {
        let ok = match field.as_str() {
            "tag" | "description" => value
                .as_str()
                .is_some_and(|s| s.chars().count() <= MAX_TEXT),
            "pin" | "guest_pin" => value.as_str().is_some_and(pin_is_valid),
            "allow_guests" => value.is_boolean(),
            "participant_limit" => value.is_null() || value.is_u64(),
            _ => {
                return Err(bad(format!(
                    "field `{}` cannot be changed; allowed: {}",
                    truncated(field),
                    UPDATABLE.join(", ")
                )));
            }
        };
        if !ok {
            let rule = match field.as_str() {
                "tag" | "description" => format!("a string of at most {MAX_TEXT} characters"),
                "pin" | "guest_pin" => {
                    "4 to 20 digits, a terminal # included (as Pexip requires)".to_owned()
                }
                "allow_guests" => "true or false".to_owned(),
                _ => "null or a whole number of at least 0".to_owned(),
            };
            return Err(bad(format!("`{field}` must be {rule}")));
        }
    }
    if let (Some(pin), Some(guest)) = (map.get("pin"), map.get("guest_pin"))
        && pin == guest
    {
        return Err(bad("`pin` and `guest_pin` must be different".into()));
    }
    Ok(map)
}

/// Pexip's PIN rule: 4..=20 characters, digits with an optional terminal `#` (counted).
fn pin_is_valid(pin: &str) -> bool {
    let digits = pin.strip_suffix('#').unwrap_or(pin);
    (4..=20).contains(&pin.len())
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A caller's field name, bounded for the problem detail.
fn truncated(field: &str) -> String {
    field.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constrained_attributes_values() {
        assert!(constrained_attributes(None).unwrap());
        assert!(constrained_attributes(Some("x=1")).unwrap());
        assert!(constrained_attributes(Some("constrained_attributes=True")).unwrap());
        assert!(!constrained_attributes(Some("constrained_attributes=false")).unwrap());
        for bad in [
            "constrained_attributes=",
            "constrained_attributes=1",
            "constrained_attributes=yes",
            "constrained_attributes=true&constrained_attributes=false",
        ] {
            assert!(constrained_attributes(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn pins() {
        for ok in [
            "1234",
            "1234#",
            "12345678901234567890",
            "1234567890123456789#",
        ] {
            assert!(pin_is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "123",
            "12#",
            "123456789012345678901",
            "12a4",
            "#123",
            "12#4",
        ] {
            assert!(!pin_is_valid(bad), "{bad}");
        }
    }
}
