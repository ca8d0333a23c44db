//! Routes, the latency/fault/auth middleware and the resource handlers.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, Request, State};
use axum::http::header::{
    AUTHORIZATION, CONTENT_TYPE, HOST, LOCATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::Rng;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::store::{ALIAS_PATH, CONF_PATH, STATUS_PATH, WriteError, conf_uri};
use super::validate::FieldErrors;
use super::{ConnHandle, Fault, Simulator, lock, oauth};

pub(crate) fn router(sim: Simulator) -> Router {
    Router::new()
        .route(CONF_PATH, get(list).post(create).delete(delete_collection))
        .route(
            "/api/admin/configuration/v1/conference/{id}/",
            get(get_one).patch(patch_one).delete(delete_one),
        )
        .route(
            &format!("{ALIAS_PATH}{{id}}/"),
            get(get_alias).patch(patch_alias),
        )
        .route(STATUS_PATH, get(status_list))
        .route("/api/admin/status/v1/conference/{id}/", get(status_one))
        .route("/oauth/token/", post(oauth::token))
        // Pexip's paths end in '/': anything else, including a missing slash, is 404.
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(sim.clone(), around))
        .with_state(sim)
}

/// Logs every request; for `/api/…` applies faults, auth, then the latency before answering.
async fn around(State(sim): State<Simulator>, req: Request, next: Next) -> Response {
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    sim.record(
        req.method().as_str(),
        &path_and_query,
        req.headers().contains_key(AUTHORIZATION),
    );
    if !req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let _in_flight = sim.enter();
    // A held request waits here, before it changes anything, until the test releases it.
    if let Some(held) = sim.take_hold(req.method().as_str(), req.uri().path()) {
        held.wait().await;
    }
    // The work happens before the delay, so a client that times out may still have changed
    // state (as with a slow real server).
    let response = match sim.take_fault() {
        Some(Fault::Drop) => {
            delay(&sim).await;
            sim.bump(|s| s.dropped += 1);
            return match req.extensions().get::<ConnectInfo<ConnHandle>>() {
                Some(ConnectInfo(conn)) => {
                    conn.kill();
                    // Never written: the killed connection fails the write and closes.
                    StatusCode::INTERNAL_SERVER_ERROR.into_response()
                }
                None => (StatusCode::BAD_GATEWAY, "connection dropped (simulated)").into_response(),
            };
        }
        Some(Fault::Status(status)) => {
            sim.bump(|s| s.injected_faults += 1);
            fault_response(status)
        }
        None => match oauth::check(&sim, req.headers()) {
            Ok(()) => next.run(req).await,
            Err(challenge) => {
                sim.bump(|s| s.unauthorized += 1);
                (StatusCode::UNAUTHORIZED, [(WWW_AUTHENTICATE, challenge)]).into_response()
            }
        },
    };
    delay(&sim).await;
    response
}

/// Sleeps without holding any lock, so concurrent requests overlap.
async fn delay(sim: &Simulator) {
    let latency = sim.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

pub(crate) fn fault_response(status: u16) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, format!("simulated {status}")).into_response();
    if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(RETRY_AFTER, axum::http::HeaderValue::from_static("1"));
    }
    resp
}

async fn not_found() -> StatusCode {
    StatusCode::NOT_FOUND
}

// ---- conference resource ----

async fn list(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = parse_query(query.as_deref());
    let rooms = lock(&sim.inner.store).filtered(&params);
    page(rooms, CONF_PATH, &params, sim.inner.page_size)
}

async fn create(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match json_object(&headers, &body) {
        Ok(b) => b,
        Err(message) => return error(message),
    };
    let created = lock(&sim.inner.store).create(&body, &now_naive());
    let id = match created {
        Ok(id) => id,
        Err(errors) => return invalid(errors),
    };
    sim.bump(|s| s.creates += 1);
    if sim.take_create_failure() {
        sim.bump(|s| s.injected_faults += 1);
        return fault_response(500);
    }
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let location = format!("http://{host}{}", conf_uri(id));
    (StatusCode::CREATED, [(LOCATION, location)]).into_response()
}

async fn get_one(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    let room = parse_id(&id).and_then(|id| lock(&sim.inner.store).get(id));
    match room {
        Some(room) => axum::Json(room).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn patch_one(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch_with(&id, &headers, &body, "conference", |id, body| {
        lock(&sim.inner.store).patch(id, body, &now_naive())
    })
}

/// A PATCH of one object: its id from the path, a JSON object body, then `apply`; 202, 404, or
/// 400 with Pexip's field errors under `resource`.
fn patch_with(
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
    resource: &str,
    apply: impl FnOnce(u64, &Map<String, Value>) -> Result<(), WriteError>,
) -> Response {
    let Some(id) = parse_id(id) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = match json_object(headers, body) {
        Ok(b) => b,
        Err(message) => return error(message),
    };
    match apply(id, &body) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(WriteError::NotFound) => StatusCode::NOT_FOUND.into_response(),
        Err(WriteError::Invalid(errors)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ resource: errors })),
        )
            .into_response(),
    }
}

async fn get_alias(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match parse_id(&id).and_then(|id| lock(&sim.inner.store).alias(id)) {
        Some(alias) => axum::Json(alias).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn patch_alias(
    State(sim): State<Simulator>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch_with(&id, &headers, &body, "conference_alias", |id, body| {
        lock(&sim.inner.store).patch_alias(id, body)
    })
}

async fn delete_one(State(sim): State<Simulator>, Path(id): Path<String>) -> StatusCode {
    let deleted = parse_id(&id).is_some_and(|id| lock(&sim.inner.store).delete(id));
    if deleted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}

/// The bulk delete the real API performs on the collection URL (of every room the filters
/// select, all of them without filters).
async fn delete_collection(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> StatusCode {
    sim.bump(|s| s.collection_deletes += 1);
    let params = parse_query(query.as_deref());
    let deleted = lock(&sim.inner.store).delete_filtered(&params);
    tracing::warn!(
        deleted,
        "pexip simulator: DELETE on the conference collection"
    );
    StatusCode::NO_CONTENT
}

// ---- status API ----

async fn status_list(State(sim): State<Simulator>, RawQuery(query): RawQuery) -> Response {
    let params = parse_query(query.as_deref());
    let running = lock(&sim.inner.store).running(&params);
    page(running, STATUS_PATH, &params, sim.inner.page_size)
}

async fn status_one(State(sim): State<Simulator>, Path(id): Path<String>) -> Response {
    match lock(&sim.inner.store).running_by_id(&id) {
        Some(c) => axum::Json(c).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---- helpers ----

fn parse_id(id: &str) -> Option<u64> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

pub(crate) fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn error(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

fn invalid(errors: FieldErrors) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "conference": errors })),
    )
        .into_response()
}

/// The body as a JSON object. Like tastypie, a missing Content-Type is read as JSON.
fn json_object(headers: &HeaderMap, body: &[u8]) -> Result<Map<String, Value>, String> {
    if let Some(ct) = headers.get(CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
        if !ct.starts_with("application/json") {
            return Err(format!(
                "The format indicated '{ct}' had no available deserialization method."
            ));
        }
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("The request body must be a JSON object.".into()),
        Err(e) => Err(format!("Request is not valid JSON: {e}")),
    }
}

/// The `meta`/`objects` envelope, paged like tastypie's Paginator.
fn page(
    objects: Vec<Value>,
    path: &str,
    params: &[(String, String)],
    default_limit: usize,
) -> Response {
    let number = |key: &str, default: usize| -> Result<usize, String> {
        match params.iter().rev().find(|(k, _)| k == key) {
            None => Ok(default),
            Some((_, v)) => v.parse().map_err(|_| {
                format!("Invalid {key} '{v}' provided. Please provide a positive integer.")
            }),
        }
    };
    let (limit, offset) = match (number("limit", default_limit), number("offset", 0)) {
        (Ok(limit), Ok(offset)) => (limit, offset),
        (Err(message), _) | (_, Err(message)) => return error(message),
    };
    let total = objects.len();
    let start = offset.min(total);
    let end = if limit == 0 {
        total
    } else {
        offset.saturating_add(limit).min(total)
    };
    let link = |offset: usize| {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        s.append_pair("limit", &limit.to_string());
        s.append_pair("offset", &offset.to_string());
        for (k, v) in params.iter().filter(|(k, _)| k != "limit" && k != "offset") {
            s.append_pair(k, v);
        }
        Value::String(format!("{path}?{}", s.finish()))
    };
    let next = if limit > 0 && offset.saturating_add(limit) < total {
        link(offset + limit)
    } else {
        Value::Null
    };
    let previous = if limit > 0 && offset >= limit {
        link(offset - limit)
    } else {
        Value::Null
    };
    let objects: Vec<Value> = objects
        .into_iter()
        .skip(start)
        .take(end.saturating_sub(start))
        .collect();
    axum::Json(json!({
        "meta": {
            "limit": limit,
            "next": next,
            "offset": offset,
            "previous": previous,
            "total_count": total,
        },
        "objects": objects,
    }))
    .into_response()
}

/// Naive UTC with microseconds and no zone, as Pexip writes `creation_time`.
pub(crate) fn now_naive() -> String {
    let format =
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]");
    OffsetDateTime::now_utc()
        .format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000".into())
}

/// A random id shaped like a UUID, as the status API uses.
pub(crate) fn uuid_like() -> String {
    let h = format!("{:032x}", rand::rng().random::<u128>());
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
