//! The HTTP surface, as the Functions host forwards it (paths keep the `/api` prefix).

mod collection;
pub mod health;
pub mod hours;
pub mod invoke;
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
    Router::new()
        // The host polls `/` until it answers before forwarding anything.
        .route("/", get(|| async { StatusCode::NO_CONTENT }))
        .merge(private)
        .merge(public::router(&state))
        .route("/api/health", get(health::health))
        // Timer functions: the host's JSON invocation protocol, on loopback, no token.
        .route("/{function}", axum::routing::post(invoke::invoke))
        .fallback(|| async { AppError::NotFound("no such route".into()) })
        .method_not_allowed_fallback(|| async { AppError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(request_span))
        .with_state(state)
}

/// One span per request carrying the Functions invocation id. Headers are never logged: the
/// forwarded request carries the function key and the caller's bearer token.
async fn request_span(request: Request, next: Next) -> Response {
    let invocation_id = request
        .headers()
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'))
        .unwrap_or("")
        .to_owned();
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = request.uri().path(),
        invocation_id = %invocation_id,
        room = tracing::field::Empty,
    );
    async move {
        let started = Instant::now();
        let response = next.run(request).await;
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request done"
        );
        response
    }
    .instrument(span)
    .await
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
