//! The HTTP surface, as the Functions host forwards it (paths keep the `/api` prefix).

mod collection;
pub mod health;
pub mod hours;
pub mod invoke;
pub mod manage;
pub mod pool;
mod public;
mod rooms;

pub use rooms::validate_update;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tracing::Instrument;

use crate::broker::Broker;
use crate::error::AppError;

/// Request bodies above this are refused (no route needs more).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub broker: Arc<Broker>,
    /// Entra ID token validation for the private routes; `None` with `AUTH_MODE=none`.
    pub auth: Option<Arc<crate::auth::EntraValidator>>,
    pub health: Arc<health::HealthCache>,
}

pub fn router(state: AppState) -> Router {
    // Private routes take an Entra ID token and nothing else; the public ones check their own
    // credentials (Genesys token, event-sink Basic) and never accept a bearer token instead.
    // Everything private but /api/pool needs Pexip, which is off outside service hours.
    let needs_pexip =
        rooms::router()
            .merge(collection::router())
            .route_layer(middleware::from_fn_with_state(
                state.clone(),
                hours::require_open,
            ));
    let private = needs_pexip.route("/api/pool", get(pool::pool)).route_layer(
        middleware::from_fn_with_state(state.clone(), crate::auth::require_token),
    );
    // Management routes: the operator role instead of the caller's; those that need Pexip are
    // closed outside service hours like the others.
    let (manage_pexip, manage_always) = manage::routers();
    let manage = manage_pexip
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            hours::require_open,
        ))
        .merge(manage_always)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::auth::require_operator,
        ));
    Router::new()
        // The host polls `/` until it answers before forwarding anything.
        .route("/", get(|| async { StatusCode::NO_CONTENT }))
        .merge(private)
        .merge(manage)
        .merge(public::router(&state))
        .route("/api/health", get(health::health))
        // Timer functions: the host's JSON invocation protocol, on loopback, no token. Only
        // their names are routes: any other one-segment path (`/favicon.ico`, `/api`) is a 404.
        .merge(invoke::router())
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// The router as it is served: a trailing slash is trimmed before routing, so `/api/rooms/`
/// is `/api/rooms` (as the Functions host's own routing treats it).
pub fn service(state: AppState) -> Router {
    let routes = router(state);
    Router::new()
        .fallback_service(tower_http::normalize_path::NormalizePath::trim_trailing_slash(routes))
}

tokio::task_local! {
    /// The id of the request being served: the error body's `instance` and the span's
    /// `invocation_id`.
    static REQUEST_ID: String;
}

/// The id of the request this task serves, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// The request's id: the host's invocation id when it is a GUID (so the id matches the
/// invocation in Application Insights), else a generated one. A header that is there but not a
/// GUID is reported (without its value: headers are never logged), not silently dropped.
fn request_id_of(request: &Request) -> (String, Option<&'static str>) {
    match request.headers().get("x-azure-functions-invocationid") {
        None => (new_guid(), None),
        Some(value) => match value.to_str().ok().filter(|v| is_guid(v)) {
            Some(id) => (id.to_ascii_lowercase(), None),
            None => (
                new_guid(),
                Some("X-Azure-Functions-InvocationId is not a GUID"),
            ),
        },
    }
}

/// `8-4-4-4-12` hex digits, as the host sends invocation ids.
pub fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A random (version 4) GUID.
pub fn new_guid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// One span per request carrying the request's id (see [`request_id_of`]). Headers are never logged: the
/// forwarded request carries the function key and the caller's bearer token.
async fn request_span(request: Request, next: Next) -> Response {
    let (invocation_id, replaced) = request_id_of(&request);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        invocation_id = %invocation_id,
        room = tracing::field::Empty,
    );
    let served = async move {
        if let Some(why) = replaced {
            tracing::warn!("{why}; this request is logged under a generated id instead");
        }
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        );
        response
    }
    .instrument(span);
    REQUEST_ID.scope(invocation_id, served).await
}

/// Turns an axum extractor rejection into the same problem+json as every other error.
pub(crate) fn rejection(rule: &'static str, rejection: impl IntoResponse) -> AppError {
    let status = rejection.into_response().status();
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => AppError::PayloadTooLarge(format!(
            "request body is larger than {MAX_BODY_BYTES} bytes"
        )),
        _ => AppError::bad_request(rule, format!("malformed request ({status})")),
    }
}
