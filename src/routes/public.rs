//! The public routes (no function key; APIM in front): the Genesys agent widget's room lookup
//! and Pexip's event sink. Each is disabled (404, as an unknown route) until configured.

use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::AppState;
use super::rooms::{constrained_attributes, read_room, room_name};
use crate::config::EventSinkCredentials;
use crate::error::AppError;
use crate::genesys::Genesys;
use crate::room::RoomName;

/// Events one sink request may carry (Pexip's bulk mode sends a list).
const MAX_EVENTS: usize = 1000;

#[derive(Clone)]
struct Public {
    genesys: Option<Genesys>,
    sink: Option<EventSinkCredentials>,
}

pub fn router(state: &AppState) -> Router<AppState> {
    let settings = state.broker.settings();
    let public = Public {
        genesys: Genesys::new(&settings.genesys),
        sink: settings.event_sink.clone(),
    };
    Router::new()
        .route("/api/public/room/{room_name}", get(public_room))
        .route("/api/public/event_sink", post(event_sink))
        .layer(Extension(public))
}

fn disabled() -> AppError {
    AppError::NotFound("no such route".into())
}

/// `GET /api/public/room/{room_name}`: the private GET's answer, for an agent whose
/// `x-auth-token` Genesys accepts and whose division is allowed. Auth comes first: an
/// unauthenticated caller learns nothing, not even whether a name is well formed.
async fn public_room(
    State(state): State<AppState>,
    Extension(public): Extension<Public>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let genesys = public.genesys.as_ref().ok_or_else(disabled)?;
    let token = headers.get("x-auth-token").and_then(|v| v.to_str().ok());
    genesys.authorize(token).await?;
    super::hours::check(&state.broker)?;
    let name = room_name(path)?;
    let constrained = constrained_attributes(query.as_deref())?;
    read_room(&state, &name, constrained).await
}

/// `POST /api/public/event_sink`: Pexip's events, HTTP Basic. Every event is acknowledged
/// with 200; `conference_ended` queues the room for garbage collection after the grace
/// period. A replay queues it again, which is harmless: GC counts a room already gone as
/// deleted.
async fn event_sink(
    State(state): State<AppState>,
    Extension(public): Extension<Public>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> Result<Response, Response> {
    let creds = public
        .sink
        .as_ref()
        .ok_or_else(|| disabled().into_response())?;
    if !basic_auth_matches(&headers, creds) {
        let mut response =
            AppError::Unauthorized("event sink credentials are missing or wrong".into())
                .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"maxconf event sink\""),
        );
        return Err(response);
    }
    let body = body.map_err(|r| super::rejection("event", r).into_response())?;
    let events = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(list)) if list.len() <= MAX_EVENTS => list,
        Ok(event @ Value::Object(_)) => vec![event],
        _ => {
            return Err(AppError::bad_request(
                "event",
                format!("the body must be a Pexip event (a JSON object) or a list of at most {MAX_EVENTS}"),
            )
            .into_response());
        }
    };
    for event in &events {
        handle_event(&state, event)
            .await
            .map_err(IntoResponse::into_response)?;
    }
    Ok(StatusCode::OK.into_response())
}

async fn handle_event(state: &AppState, event: &Value) -> Result<(), AppError> {
    let kind = event.get("event").and_then(Value::as_str).unwrap_or("");
    if kind != "conference_ended" {
        tracing::debug!(event = kind.get(..64).unwrap_or(kind), "event acknowledged");
        return Ok(());
    }
    let data = event.get("data");
    let raw = data
        .and_then(|d| d.get("name"))
        .and_then(Value::as_str)
        .or_else(|| {
            data.and_then(|d| d.get("conference"))
                .and_then(Value::as_str)
        })
        .unwrap_or("");
    let Ok(name) = RoomName::parse(raw) else {
        tracing::warn!(
            name_len = raw.len(),
            "conference_ended names no valid room; acknowledged, not queued"
        );
        return Ok(());
    };
    let broker = &state.broker;
    if broker.settings().rooms.is_persistent(name.as_str()) {
        tracing::info!(
            room = name.as_str(),
            "conference_ended for a persistent room; ignored"
        );
        return Ok(());
    }
    // Base64 of the name: it can never be read as anything but this name.
    broker
        .deletions()
        .send(
            &STANDARD.encode(name.as_str()),
            broker.settings().pool.gc_grace,
        )
        .await
        // Not acknowledged: Pexip may send it again, and a replay is harmless.
        .map_err(|e| AppError::unavailable("the deletion queue is unavailable", e))?;
    tracing::info!(
        room = name.as_str(),
        "conference ended; room queued for garbage collection"
    );
    Ok(())
}

/// `Authorization: Basic …` against the configured pair, compared in constant time (over
/// SHA-256 digests, so the lengths leak nothing either).
fn basic_auth_matches(headers: &HeaderMap, creds: &EventSinkCredentials) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
        })
    else {
        return false;
    };
    let Ok(decoded) = STANDARD.decode(encoded) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, pass) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = digests_equal(user, creds.username.as_bytes());
    let pass_ok = digests_equal(pass, creds.password.expose().as_bytes());
    user_ok & pass_ok
}

fn digests_equal(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (Sha256::digest(a), Sha256::digest(b));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn creds() -> EventSinkCredentials {
        EventSinkCredentials {
            username: "pexip".into(),
            password: Secret::new("s3cret"),
        }
    }

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_auth() {
        let good = format!("Basic {}", STANDARD.encode("pexip:s3cret"));
        assert!(basic_auth_matches(&with_auth(&good), &creds()));
        let lower = format!("basic {}", STANDARD.encode("pexip:s3cret"));
        assert!(basic_auth_matches(&with_auth(&lower), &creds()));
        for bad in [
            format!("Basic {}", STANDARD.encode("pexip:s3cre")),
            format!("Basic {}", STANDARD.encode("pexi:s3cret")),
            format!("Basic {}", STANDARD.encode("pexips3cret")),
            format!("Bearer {}", STANDARD.encode("pexip:s3cret")),
            "Basic !!!".to_owned(),
            "Basic".to_owned(),
        ] {
            assert!(!basic_auth_matches(&with_auth(&bad), &creds()), "{bad}");
        }
        assert!(!basic_auth_matches(&HeaderMap::new(), &creds()));
    }
}
