//! The Pexip Infinity Management API client: conferences (VMRs) only.
//!
//! Every request has a timeout and waits for one of `PEXIP_MAX_CONCURRENCY` slots, creates first
//! ([`gate`]). GET, PATCH
//! and DELETE are retried with backoff and jitter on 5xx, 429 (honouring `Retry-After`) and
//! connection errors; a create that failed that way is looked up by name before it is posted
//! again, because Pexip can create a room and still answer 500. DELETE is only ever sent to
//! `…/conference/<id>/` with a numeric id: on the collection URL it would delete every VMR.
//! Redirects are never followed, so no request leaves the URL the client built.

pub mod auth;
pub mod gate;
pub mod model;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use url::Url;

pub use crate::conference::{Alias, Conference};
use crate::config::{PexipAuth, PexipSettings};
use auth::{Credentials, OAuth};
use gate::Gate;
pub use gate::Priority;

const CONFERENCE_PATH: &str = "/api/admin/configuration/v1/conference/";
const ALIAS_PATH: &str = "/api/admin/configuration/v1/conference_alias/";
const STATUS_CONFERENCE_PATH: &str = "/api/admin/status/v1/conference/";
/// Rooms per page when listing everything.
const LIST_PAGE_SIZE: &str = "500";
/// A list longer than this many pages is taken for a `meta.next` loop.
const MAX_PAGES: usize = 10_000;
/// The longest `Retry-After` we wait for inside one call.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PexipError {
    #[error("Pexip has no such conference")]
    NotFound,
    /// A 400 from Pexip: the body summarised (field names and Pexip's messages).
    #[error("Pexip rejected the request: {0}")]
    Rejected(String),
    /// Unreachable, timing out, or failing after retries.
    #[error("Pexip is unavailable: {0}")]
    Unavailable(String),
    #[error("Pexip refused maxconf's credentials: {0}")]
    Auth(String),
    #[error("Pexip client configuration: {0}")]
    Config(String),
    #[error("unexpected answer from Pexip: {0}")]
    Protocol(String),
}

impl PexipError {
    /// A transport error described without its URL or any header.
    pub(crate) fn from_transport(op: &str, e: &reqwest::Error) -> Self {
        let what = if e.is_timeout() {
            "timed out".to_owned()
        } else if is_tls_error(e) {
            "TLS handshake failed (is the Management Node's CA trusted? see PEXIP_CA_CERT)"
                .to_owned()
        } else if e.is_connect() {
            "connection failed".to_owned()
        } else {
            "request failed".to_owned()
        };
        Self::Unavailable(format!("{op}: {what}"))
    }

    fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

fn is_tls_error(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        let text = err.to_string().to_ascii_lowercase();
        if text.contains("certificate") || text.contains("tls") || text.contains("handshake") {
            return true;
        }
        source = err.source();
    }
    false
}

/// How often and how patiently idempotent requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff with full jitter.
    fn delay(&self, retry: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << retry.min(16))
            .min(self.max_delay);
        let millis = cap.as_millis() as u64;
        Duration::from_millis(rand::random_range(millis / 2..=millis.max(1)))
    }
}

/// A handle on the client; clones share connections, credentials and the concurrency cap.
#[derive(Clone)]
pub struct PexipClient {
    inner: Arc<Inner>,
    /// Whose requests this handle sends, for the order of the cap's slots.
    priority: Priority,
}

struct Inner {
    http: reqwest::Client,
    base: Url,
    creds: Credentials,
    slots: Arc<Gate>,
    timeout: Duration,
    retry: RetryPolicy,
}

/// An answer the retry loop did not swallow.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: bytes::Bytes,
    /// An earlier try failed in a way that may still have taken effect.
    retried: bool,
}

impl PexipClient {
    pub fn new(settings: &PexipSettings) -> Result<Self, PexipError> {
        Self::with_retry(settings, RetryPolicy::default())
    }

    pub fn with_retry(settings: &PexipSettings, retry: RetryPolicy) -> Result<Self, PexipError> {
        crate::tls::ensure_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(5)))
            .pool_max_idle_per_host(settings.max_concurrency)
            // Never follow: a 307/308 would resend a DELETE, credentials included, to a path
            // the DELETE guard never checked.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("maxconf/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &settings.ca_cert_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|_| PexipError::Config("PEXIP_CA_CERT is not a PEM certificate".into()))?;
            builder = builder.tls_certs_merge(certs);
        }
        let http = builder
            .build()
            .map_err(|_| PexipError::Config("could not build the HTTP client".into()))?;
        let creds = match &settings.auth {
            PexipAuth::Basic { username, password } => Credentials::basic(username, password)?,
            PexipAuth::OAuth {
                client_id,
                private_key_pem,
            } => Credentials::OAuth(OAuth::new(
                client_id.clone(),
                private_key_pem,
                &settings.base_url,
                settings.timeout,
            )?),
        };
        let mut base = settings.base_url.clone();
        base.set_path("");
        base.set_query(None);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                base,
                creds,
                slots: Gate::new(settings.max_concurrency),
                timeout: settings.timeout,
                retry,
            }),
            priority: Priority::Background,
        })
    }

    /// The same client, sending its requests with `priority` (a new client sends background work).
    pub fn with_priority(&self, priority: Priority) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
            priority,
        }
    }

    /// One conference by id; `None` when Pexip has none.
    pub async fn get_conference(&self, id: u64) -> Result<Option<Conference>, PexipError> {
        let answer = self.execute(Method::GET, self.object_url(id), None).await?;
        match answer.status {
            StatusCode::OK => parse_conference(&answer.body).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            other => Err(status_error(other)),
        }
    }

    /// The conference with exactly this name, if any.
    pub async fn find_by_name(&self, name: &str) -> Result<Option<Conference>, PexipError> {
        let url = self.collection_url(&[("name", name)]);
        let answer = self.execute(Method::GET, url, None).await?;
        expect(&answer, StatusCode::OK)?;
        let page: model::Page = serde_json::from_slice(&answer.body)
            .map_err(|_| PexipError::Protocol("conference list is not JSON".into()))?;
        page.objects
            .into_iter()
            .filter(|o| o.get("name").and_then(Value::as_str) == Some(name))
            .map(Conference::from_value)
            .next()
            .transpose()
            .map_err(|_| PexipError::Protocol("conference object lacks id or name".into()))
    }

    /// Every conference matching `filters`, paged through `meta.next` to the end.
    pub async fn list_conferences(
        &self,
        filters: &[(&str, &str)],
    ) -> Result<Vec<Value>, PexipError> {
        let mut url = self.collection_url(filters);
        // Pexip's default page is about 20 rooms: ask for big pages unless the caller chose.
        if !filters.iter().any(|(key, _)| *key == "limit") {
            url.query_pairs_mut().append_pair("limit", LIST_PAGE_SIZE);
        }
        self.list_all(url).await
    }

    /// One small list request: is the Management Node reachable and accepting our credentials?
    pub async fn probe(&self) -> Result<(), PexipError> {
        let answer = self
            .execute(Method::GET, self.collection_url(&[("limit", "1")]), None)
            .await?;
        expect(&answer, StatusCode::OK)
    }

    /// Conferences running now, by name (the status API).
    pub async fn running_conferences(&self, name: &str) -> Result<Vec<Value>, PexipError> {
        let mut url = self.url(STATUS_CONFERENCE_PATH);
        url.query_pairs_mut().append_pair("name", name);
        self.list_all(url).await
    }

    /// Creates a conference and returns its id (from `Location`). `body["name"]` must be set:
    /// after an ambiguous failure the name tells whether the create took effect.
    pub async fn create_conference(&self, body: &Value) -> Result<u64, PexipError> {
        let name = body
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| PexipError::Config("a new conference needs a name".into()))?;
        let mut last = None;
        for attempt in 0..self.inner.retry.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.inner.retry.delay(attempt)).await;
            }
            match self.try_create(body).await {
                Ok(id) => return Ok(id),
                Err(e) if e.is_retryable() => {
                    // Pexip may have created it and still failed: look before posting again.
                    tracing::warn!(room = name, error = %e, "create failed; checking whether it took effect");
                    if let Some(existing) = self.find_by_name(name).await? {
                        return Ok(existing.id);
                    }
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| PexipError::Unavailable("create was not attempted".into())))
    }

    async fn try_create(&self, body: &Value) -> Result<u64, PexipError> {
        let answer = self
            .send_once(&Method::POST, &self.collection_url(&[]), Some(body))
            .await?;
        match answer.status {
            StatusCode::CREATED => {
                let location = answer
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| PexipError::Protocol("201 without a Location".into()))?;
                id_from_location(location)
            }
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                Err(PexipError::Unavailable(format!("create answered {s}")))
            }
            StatusCode::BAD_REQUEST => Err(PexipError::Rejected(summarise_400(&answer.body))),
            other => Err(status_error(other)),
        }
    }

    /// Partial update. `NotFound` when the conference is gone.
    pub async fn patch_conference(&self, id: u64, body: &Value) -> Result<(), PexipError> {
        let answer = self
            .execute(Method::PATCH, self.object_url(id), Some(body))
            .await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(PexipError::NotFound),
            StatusCode::BAD_REQUEST => Err(PexipError::Rejected(summarise_400(&answer.body))),
            other => Err(status_error(other)),
        }
    }

    /// Deletes one conference. `NotFound` when it did not exist (a 404 after an ambiguous
    /// earlier try counts as deleted: that try did it).
    /// PATCH of one alias (the `conference_alias` resource), where maxconf keeps room state.
    pub async fn patch_alias(&self, alias_id: u64, body: &Value) -> Result<(), PexipError> {
        let url = self.url(&format!("{ALIAS_PATH}{alias_id}/"));
        let answer = self.execute(Method::PATCH, url, Some(body)).await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(PexipError::NotFound),
            StatusCode::BAD_REQUEST => Err(PexipError::Rejected(summarise_400(&answer.body))),
            other => Err(status_error(other)),
        }
    }

    pub async fn delete_conference(&self, id: u64) -> Result<(), PexipError> {
        let answer = self
            .execute(Method::DELETE, self.object_url(id), None)
            .await?;
        match answer.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND if answer.retried => Ok(()),
            StatusCode::NOT_FOUND => Err(PexipError::NotFound),
            other => Err(status_error(other)),
        }
    }

    async fn list_all(&self, first: Url) -> Result<Vec<Value>, PexipError> {
        let mut objects = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(PexipError::Protocol("list paging does not end".into()));
            }
            let answer = self.execute(Method::GET, url, None).await?;
            expect(&answer, StatusCode::OK)?;
            let page: model::Page = serde_json::from_slice(&answer.body)
                .map_err(|_| PexipError::Protocol("list page is not JSON".into()))?;
            objects.extend(page.objects);
            next = match page.meta.next {
                Some(path) if !path.is_empty() => Some(self.same_origin(&path)?),
                _ => None,
            };
        }
        Ok(objects)
    }

    /// `meta.next` resolved against the base URL; it must not lead to another host.
    fn same_origin(&self, next: &str) -> Result<Url, PexipError> {
        let url = self
            .inner
            .base
            .join(next)
            .map_err(|_| PexipError::Protocol("meta.next is not a URL".into()))?;
        if url.origin() != self.inner.base.origin() {
            return Err(PexipError::Protocol(
                "meta.next points to another host".into(),
            ));
        }
        Ok(url)
    }

    fn url(&self, path: &str) -> Url {
        let mut url = self.inner.base.clone();
        url.set_path(path);
        url
    }

    fn collection_url(&self, filters: &[(&str, &str)]) -> Url {
        let mut url = self.url(CONFERENCE_PATH);
        if !filters.is_empty() {
            url.query_pairs_mut().extend_pairs(filters);
        }
        url
    }

    /// The only URL a DELETE can reach: a numeric id cannot be empty or collapse the path.
    fn object_url(&self, id: u64) -> Url {
        self.url(&format!("{CONFERENCE_PATH}{id}/"))
    }

    /// Sends with the retry policy for idempotent methods.
    async fn execute(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> Result<Answer, PexipError> {
        let retry = self.inner.retry;
        let mut retried = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_once(&method, &url, body).await;
            let wait = match &result {
                Ok(a) if a.status == StatusCode::TOO_MANY_REQUESTS => {
                    Some(retry_after(&a.headers).unwrap_or_else(|| retry.delay(attempt)))
                }
                Ok(a) if a.status.is_server_error() => {
                    retried = true;
                    Some(retry.delay(attempt))
                }
                Err(e) if e.is_retryable() => {
                    retried = true;
                    Some(retry.delay(attempt))
                }
                _ => None,
            };
            match (wait, result) {
                (Some(delay), _) if attempt < retry.attempts && delay <= MAX_RETRY_AFTER => {
                    tokio::time::sleep(delay).await;
                }
                (_, Ok(mut answer)) => {
                    if answer.status.is_server_error()
                        || answer.status == StatusCode::TOO_MANY_REQUESTS
                    {
                        return Err(PexipError::Unavailable(format!(
                            "{method} {} answered {} after {attempt} tries",
                            url.path(),
                            answer.status
                        )));
                    }
                    answer.retried = retried;
                    return Ok(answer);
                }
                (_, Err(e)) => return Err(e),
            }
        }
    }

    /// One request (plus one token refresh and resend on a 401), within a concurrency slot.
    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
    ) -> Result<Answer, PexipError> {
        assert!(
            *method != Method::DELETE || is_object_path(url.path()),
            "DELETE may only target a single conference"
        );
        let mut refreshed = false;
        loop {
            let authorization = self.inner.creds.header(&self.inner.http).await?;
            let answer = {
                let _slot = self.inner.slots.acquire(self.priority).await;
                let started = Instant::now();
                // Built only for an error: most requests never need it.
                let op = || format!("{method} {}", url.path());
                let mut response = self
                    .request(method, url, body, &authorization)
                    .send()
                    .await
                    .map_err(|e| PexipError::from_transport(&op(), &e))?;
                let status = response.status();
                // Taken, not cloned: the body read below consumes the response.
                let headers = std::mem::take(response.headers_mut());
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| PexipError::from_transport(&op(), &e))?;
                tracing::debug!(
                    method = %method,
                    path = url.path(),
                    status = status.as_u16(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pexip request"
                );
                Answer {
                    status,
                    headers,
                    body,
                    retried: false,
                }
            };
            if answer.status == StatusCode::UNAUTHORIZED
                && !refreshed
                && self.inner.creds.invalidate(&authorization).await
            {
                refreshed = true;
                continue;
            }
            return Ok(answer);
        }
    }
}

impl PexipClient {
    fn request(
        &self,
        method: &Method,
        url: &Url,
        body: Option<&Value>,
        authorization: &HeaderValue,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .timeout(self.inner.timeout)
            .header(reqwest::header::AUTHORIZATION, authorization.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }
}

fn is_object_path(path: &str) -> bool {
    path.strip_prefix(CONFERENCE_PATH)
        .and_then(|rest| rest.strip_suffix('/'))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The id from `Location: …/conference/<id>/` (absolute or relative).
fn id_from_location(location: &str) -> Result<u64, PexipError> {
    let path = match Url::parse(location) {
        Ok(url) => url.path().to_owned(),
        Err(_) => location.split('?').next().unwrap_or_default().to_owned(),
    };
    if !is_object_path(&path) {
        return Err(PexipError::Protocol(
            "Location is not a conference URL".into(),
        ));
    }
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| PexipError::Protocol("Location has no numeric id".into()))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

fn parse_conference(body: &[u8]) -> Result<Conference, PexipError> {
    serde_json::from_slice(body)
        .ok()
        .and_then(|v| Conference::from_value(v).ok())
        .ok_or_else(|| PexipError::Protocol("conference object is not readable".into()))
}

fn expect(answer: &Answer, status: StatusCode) -> Result<(), PexipError> {
    if answer.status == status {
        Ok(())
    } else {
        Err(status_error(answer.status))
    }
}

fn status_error(status: StatusCode) -> PexipError {
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            PexipError::Auth(format!("answered {status}"))
        }
        StatusCode::NOT_FOUND => PexipError::NotFound,
        other => unexpected(other),
    }
}

fn unexpected(status: StatusCode) -> PexipError {
    PexipError::Protocol(format!("answered {status}"))
}

/// Pexip's 400 body `{"conference":{"name":["…"]}}` as `name: …`, bounded in length.
fn summarise_400(body: &[u8]) -> String {
    let mut parts = Vec::new();
    if let Ok(Value::Object(outer)) = serde_json::from_slice::<Value>(body) {
        for inner in outer.values() {
            if let Value::Object(fields) = inner {
                for (field, messages) in fields {
                    let text = match messages {
                        Value::Array(list) => list
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(" "),
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    parts.push(format!("{field}: {text}"));
                }
            }
        }
    }
    if parts.is_empty() {
        return "invalid request".to_owned();
    }
    // Bounded in characters (never split inside one: the body may be any UTF-8).
    parts.join("; ").chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delete_targets_are_single_conferences_only() {
        assert!(is_object_path("/api/admin/configuration/v1/conference/12/"));
        for bad in [
            "/api/admin/configuration/v1/conference/",
            "/api/admin/configuration/v1/conference//",
            "/api/admin/configuration/v1/conference/12",
            "/api/admin/configuration/v1/conference/1a/",
            "/api/admin/configuration/v1/conference/12/x/",
        ] {
            assert!(!is_object_path(bad), "{bad}");
        }
    }

    #[test]
    fn ids_come_from_location() {
        assert_eq!(
            id_from_location("https://m.example/api/admin/configuration/v1/conference/42/")
                .unwrap(),
            42
        );
        assert_eq!(
            id_from_location("/api/admin/configuration/v1/conference/7/").unwrap(),
            7
        );
        for bad in [
            "https://m.example/api/admin/configuration/v1/conference/",
            "https://m.example/api/admin/configuration/v1/conference/x/",
            "",
        ] {
            assert!(id_from_location(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn summarises_pexip_400_bodies() {
        let body =
            br#"{"conference":{"name":["Virtual Meeting Room with this Name already exists."]}}"#;
        assert_eq!(
            summarise_400(body),
            "name: Virtual Meeting Room with this Name already exists."
        );
        assert_eq!(summarise_400(b"<html>"), "invalid request");
        let long = format!(r#"{{"conference":{{"name":["{}"]}}}}"#, "é".repeat(400));
        assert_eq!(summarise_400(long.as_bytes()).chars().count(), 300);
    }

    /// The credential never shows in `Debug` of the request or its headers (what a stray
    /// `?request` in a log line would print), and HTTP/2 would not index it.
    #[tokio::test]
    async fn authorization_is_sensitive_and_never_printed() {
        use crate::config::{PexipAuth, PexipSettings};
        use base64::Engine as _;
        let client = PexipClient::new(&PexipSettings {
            base_url: "https://pexip.example".parse().unwrap(),
            auth: PexipAuth::Basic {
                username: "admin".into(),
                password: crate::secret::Secret::new("pw-for-the-leak-test"),
            },
            ca_cert_pem: None,
            timeout: Duration::from_secs(1),
            max_concurrency: 1,
        })
        .unwrap();
        let encoded =
            base64::engine::general_purpose::STANDARD.encode("admin:pw-for-the-leak-test");
        let authorization = client.inner.creds.header(&client.inner.http).await.unwrap();
        let request = client
            .request(&Method::DELETE, &client.object_url(5), None, &authorization)
            .build()
            .unwrap();
        let header = &request.headers()[reqwest::header::AUTHORIZATION];
        assert!(header.is_sensitive());
        let printed = format!("{request:?} {:?} {header:?}", request.headers());
        assert!(!printed.contains(&encoded), "{printed}");
        assert!(!printed.contains("pw-for-the-leak-test"));
    }

    #[test]
    fn backoff_is_bounded_and_jittered() {
        let p = RetryPolicy::default();
        for retry in 0..20 {
            let d = p.delay(retry);
            assert!(d <= p.max_delay, "{d:?}");
        }
    }
}
