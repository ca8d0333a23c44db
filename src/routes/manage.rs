//! The management routes, for operators (the operator app role, not the caller's): what the
//! operator commands do, so that `maxconf … --api <url>` works from a laptop.
//!
//! - `GET  /api/manage/status?min_ready=N`: the report `maxconf status` prints (answers in
//!   seconds: every probe has a short timeout).
//! - `POST /api/manage/fill?count=N`, `POST /api/manage/drain?confirm=true`,
//!   `POST /api/manage/reap?dry_run=true|false`, `POST /api/manage/gc?dry_run=…`,
//!   `POST /api/manage/maintain?dry_run=…`: 202 with the operation (`crate::operations`) and
//!   `Location` of
//! - `GET  /api/manage/operations/{id}`: the operation, its state and what it printed so far.

use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::AppState;
use crate::error::AppError;
use crate::operations::{self, Work};

/// Rooms one fill may add (as one bulk create).
pub const MAX_FILL: u64 = 500;

/// The routes that need Pexip (gated by service hours), then the ones that do not.
pub fn routers() -> (Router<AppState>, Router<AppState>) {
    let needs_pexip = Router::new()
        .route("/api/manage/fill", post(fill))
        .route("/api/manage/drain", post(drain))
        .route("/api/manage/reap", post(reap))
        .route("/api/manage/gc", post(gc))
        .route("/api/manage/maintain", post(maintain));
    let always = Router::new()
        .route("/api/manage/status", get(status))
        .route("/api/manage/operations/{id}", get(operation));
    (needs_pexip, always)
}

/// The query's parameters, refusing any other than `allowed` and any given twice.
fn params(
    query: Option<&str>,
    allowed: &[&'static str],
) -> Result<Vec<(String, String)>, AppError> {
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    for (i, (key, _)) in pairs.iter().enumerate() {
        if !allowed.contains(&key.as_str()) {
            let allowed = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(AppError::bad_request(
                "manage-query",
                format!("unknown query parameter `{key}` (allowed: {allowed})"),
            ));
        }
        if pairs[..i].iter().any(|(k, _)| k == key) {
            return Err(AppError::bad_request(
                "manage-query",
                format!("`{key}` may be given once"),
            ));
        }
    }
    Ok(pairs)
}

fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// `dry_run=true|false` (default false), spelled exactly as the OpenAPI enum says: a
/// `True` is refused rather than guessed at, since it picks between changing and not.
fn dry_run(query: Option<&str>) -> Result<bool, AppError> {
    let pairs = params(query, &["dry_run"])?;
    match param(&pairs, "dry_run") {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(AppError::bad_request(
            "dry-run",
            "dry_run must be true or false",
        )),
    }
}

async fn status(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let pairs = params(query.as_deref(), &["min_ready"])?;
    let min_ready =
        match param(&pairs, "min_ready") {
            None => None,
            Some(text) => Some(text.parse::<u64>().map_err(|_| {
                AppError::bad_request("min-ready", "min_ready must be a whole number")
            })?),
        };
    let report = crate::status::collect(&state.broker, min_ready).await;
    Ok(Json(report).into_response())
}

/// Starts `work` as an operation: 202, the operation, and `Location` of its GET route (a
/// relative reference, right however a gateway publishes the paths).
async fn accepted(state: &AppState, command: String, work: Work) -> Response {
    let op = operations::start(&state.broker, command, work).await;
    let location = format!("operations/{}", op.id);
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(op),
    )
        .into_response()
}

async fn fill(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let pairs = params(query.as_deref(), &["count"])?;
    let count = match param(&pairs, "count") {
        None => None,
        Some(text) => Some(
            text.parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_FILL).contains(n))
                .ok_or_else(|| {
                    AppError::bad_request(
                        "fill-count",
                        format!("count must be a whole number from 1 to {MAX_FILL}"),
                    )
                })?,
        ),
    };
    let command = match count {
        Some(n) => format!("pool fill --count {n}"),
        None => "pool fill".to_owned(),
    };
    let work: Work =
        Box::new(move |broker, out| Box::pin(crate::ops::pool_fill(broker, count, out)));
    Ok(accepted(&state, command, work).await)
}

async fn drain(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let pairs = params(query.as_deref(), &["confirm"])?;
    if param(&pairs, "confirm") != Some("true") {
        return Err(AppError::bad_request(
            "confirm",
            "draining the pool needs confirm=true (no room can be handed out until it is filled again)",
        ));
    }
    let work: Work = Box::new(|broker, out| Box::pin(crate::ops::pool_drain(broker, out)));
    Ok(accepted(&state, "pool drain --yes".into(), work).await)
}

fn with_dry_run(command: &str, dry_run: bool) -> String {
    if dry_run {
        format!("{command} --dry-run")
    } else {
        command.to_owned()
    }
}

async fn reap(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let dry_run = dry_run(query.as_deref())?;
    let work: Work = Box::new(move |broker, out| Box::pin(crate::ops::reap(broker, dry_run, out)));
    Ok(accepted(&state, with_dry_run("reap", dry_run), work).await)
}

async fn gc(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let dry_run = dry_run(query.as_deref())?;
    let work: Work =
        Box::new(move |broker, out| Box::pin(crate::gc::command(broker, dry_run, out)));
    Ok(accepted(&state, with_dry_run("gc", dry_run), work).await)
}

async fn maintain(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    let dry_run = dry_run(query.as_deref())?;
    let work: Work =
        Box::new(move |broker, out| Box::pin(crate::ops::maintain(broker, dry_run, out)));
    Ok(accepted(&state, with_dry_run("maintain", dry_run), work).await)
}

async fn operation(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, AppError> {
    params(query.as_deref(), &[])?;
    if !super::is_guid(&id) {
        return Err(AppError::bad_request(
            "operation-id",
            "an operation id is a GUID, as the 202 answer gave it",
        ));
    }
    let id = id.to_ascii_lowercase();
    match operations::get(state.broker.settings(), &id).await {
        Ok(Some(op)) => Ok(Json(op).into_response()),
        Ok(None) => Err(AppError::NotFound(format!(
            "no operation {id} (operations are kept for the latest 20)"
        ))),
        Err(e) => Err(AppError::unavailable("queue storage is unavailable", e)),
    }
}
