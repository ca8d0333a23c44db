//! Outside service hours the Pexip VMs are off: the routes that need Pexip answer 503
//! `urn:maxconf:problem:outside-service-hours` at once, with `Retry-After` set to the seconds
//! until the opening, and make no Pexip or queue call.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::broker::Broker;
use crate::error::AppError;
use crate::service_hours::{Status, UNSCHEDULED_RETRY_AFTER_SECS, whole_seconds_until};

/// `Ok` while open; the problem to answer while closed.
pub fn check(broker: &Broker) -> Result<(), AppError> {
    let hours = &broker.settings().service_hours;
    let now = hours.now();
    if hours.is_open_at(now) {
        return Ok(());
    }
    match hours.status_at(now) {
        Status::Open { .. } => Ok(()),
        Status::Closed { opens_at: Some(at) } => Err(AppError::OutsideServiceHours {
            detail: format!("outside service hours; the service opens at {at}"),
            retry_after: whole_seconds_until(now, at),
        }),
        Status::Closed { opens_at: None } => Err(AppError::OutsideServiceHours {
            detail: "outside service hours; no opening is scheduled".into(),
            retry_after: UNSCHEDULED_RETRY_AFTER_SECS,
        }),
    }
}

/// Route layer for the routes that need Pexip (after authentication).
pub async fn require_open(State(state): State<AppState>, request: Request, next: Next) -> Response {
    match check(&state.broker) {
        Ok(()) => next.run(request).await,
        Err(closed) => closed.into_response(),
    }
}
