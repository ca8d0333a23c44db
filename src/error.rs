//! The one error type of the HTTP API, answered as `application/problem+json` (RFC 9457).
//!
//! Bodies name the rule that was broken; 5xx bodies say nothing internal (no upstream body,
//! no URL, no secret). The full error is logged once, inside the request's span.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Seconds a client is asked to wait after a 503.
pub const RETRY_AFTER_SECS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the input broke `rule` (a short slug) as `detail` says.
    #[error("{detail}")]
    BadRequest { rule: &'static str, detail: String },
    /// 401 (with `WWW-Authenticate` when `challenge` is set).
    #[error("{0}")]
    Unauthorized(String),
    /// 403: e.g. a persistent room.
    #[error("{0}")]
    Forbidden(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 405.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 413.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 503 + `Retry-After`: the pool, storage or Pexip cannot serve now. `detail` is public;
    /// `cause` is only logged.
    #[error("{detail}: {cause}")]
    Unavailable { detail: String, cause: String },
    /// 503 + `Retry-After` = `retry_after` seconds: outside service hours Pexip is switched
    /// off; nothing was tried. `detail` says when it opens.
    #[error("{detail}")]
    OutsideServiceHours { detail: String, retry_after: u64 },
    /// 500: a bug or an answer we cannot read. Only logged.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::broker::BrokerError> for AppError {
    fn from(e: crate::broker::BrokerError) -> Self {
        use crate::broker::BrokerError;
        match e {
            BrokerError::Unavailable { what, cause } => Self::unavailable(what, cause),
            BrokerError::Forbidden(detail) => Self::Forbidden(detail),
            BrokerError::NotFound(detail) => Self::NotFound(detail),
        }
    }
}

impl AppError {
    pub fn bad_request(rule: &'static str, detail: impl Into<String>) -> Self {
        Self::BadRequest {
            rule,
            detail: detail.into(),
        }
    }

    pub fn unavailable(detail: impl Into<String>, cause: impl std::fmt::Display) -> Self {
        let detail = detail.into();
        let cause = cause.to_string();
        // Causes often say the same thing first ("Pexip is unavailable: …"): say it once.
        let cause = match cause.strip_prefix(detail.as_str()) {
            Some(rest) => rest.trim_start_matches(':').trim_start().to_owned(),
            None => cause,
        };
        Self::Unavailable { detail, cause }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unavailable { .. } | Self::OutsideServiceHours { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn rule(&self) -> &'static str {
        match self {
            Self::BadRequest { rule, .. } => rule,
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::PayloadTooLarge(_) => "payload-too-large",
            Self::Unavailable { .. } => "unavailable",
            Self::OutsideServiceHours { .. } => "outside-service-hours",
            Self::Internal(_) => "internal",
        }
    }

    fn public_detail(&self) -> String {
        match self {
            Self::Unavailable { detail, .. } => detail.clone(),
            Self::Internal(_) => "an internal error occurred; it has been logged".into(),
            other => other.to_string(),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: String,
    title: &'a str,
    status: u16,
    detail: String,
    /// `urn:uuid:<request id>`, the `invocation_id` of the request's log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = self.status();
        let kind = format!("urn:maxconf:problem:{}", self.rule());
        // `status` and `problem` on every line: the alerts and the workbook (infra/monitoring)
        // count errors by problem type from these lines.
        let code = status.as_u16();
        match &self {
            Self::Internal(_) => {
                tracing::error!(status = code, problem = %kind, error = %self, "request failed")
            }
            Self::Unavailable { .. } => {
                tracing::warn!(status = code, problem = %kind, error = %self, "request failed")
            }
            _ => tracing::info!(status = code, problem = %kind, detail = %self, "request rejected"),
        }
        let body = Problem {
            kind,
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.public_detail(),
            instance: crate::routes::request_id().map(|id| format!("urn:uuid:{id}")),
        };
        let mut response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            serde_json::to_string(&body).expect("problem serialises"),
        )
            .into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            let secs = match &self {
                Self::OutsideServiceHours { retry_after, .. } => *retry_after,
                _ => u64::from(RETRY_AFTER_SECS),
            };
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"maxconf\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_hides_its_cause_and_asks_to_retry() {
        let response =
            AppError::unavailable("Pexip is unavailable", "GET /secret-path answered 500")
                .into_response();
        assert_eq!(response.status(), 503);
        assert_eq!(response.headers()[header::RETRY_AFTER], "5");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 503);
        assert_eq!(json["detail"], "Pexip is unavailable");
        assert!(!String::from_utf8_lossy(&body).contains("secret-path"));
    }

    #[test]
    fn a_cause_that_repeats_the_detail_is_not_doubled() {
        let e = AppError::unavailable(
            "Pexip is unavailable",
            "Pexip is unavailable: connection refused",
        );
        assert_eq!(e.to_string(), "Pexip is unavailable: connection refused");
        let e = AppError::unavailable("the room pool is unavailable", "timed out");
        assert_eq!(e.to_string(), "the room pool is unavailable: timed out");
    }
}
