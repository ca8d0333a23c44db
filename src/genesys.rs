//! Genesys Cloud token check for the agent widget's public room lookup.
//!
//! A token is valid when `GET {GENESYS_API_BASE}/api/v2/users/me` accepts it; the user's
//! `division.id` must then be one of `GENESYS_ALLOWED_DIVISIONS`.
//!
//! A flood of widget requests never becomes a flood of Genesys calls:
//! - answers are cached under the SHA-256 of the token (the token itself is never stored or
//!   logged): a user for [`CACHE_TTL`], a refusal for [`REFUSAL_TTL`], each in its own bounded
//!   map, so a flood of refusals can never evict valid tokens;
//! - concurrent lookups of one token share a single Genesys call;
//! - at most [`MAX_CONCURRENT_LOOKUPS`] Genesys calls run at once. A lookup that finds no slot
//!   within [`SLOT_WAIT`] is [`GenesysError::Unavailable`] (503 + `Retry-After`), never 401:
//!   nobody has said the token is bad. Cached tokens never wait for a slot.
//!
//! Fail closed: Genesys slow (over [`LOOKUP_TIMEOUT`]), down or answering garbage gives
//! [`GenesysError::Unavailable`] (503 + `Retry-After`: the token may be fine, so the widget is
//! told to retry rather than to sign in again); nothing is disclosed either way.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use reqwest::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::{OnceCell, Semaphore};
use tokio::time::Instant;
use url::Url;

use crate::config::GenesysSettings;
use crate::error::AppError;

/// How long a successful lookup is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(60);
/// The whole Genesys call, connect included: the widget waits on it.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a token Genesys refused is refused again without asking (tokens do not come back
/// to life; short so a cache of refusals stays small).
pub const REFUSAL_TTL: Duration = Duration::from_secs(30);
/// Genesys calls running at once, at most.
pub const MAX_CONCURRENT_LOOKUPS: usize = 8;
/// How long a lookup waits for one of those slots before it is answered 503.
pub const SLOT_WAIT: Duration = Duration::from_secs(1);
/// Cached tokens kept at most; beyond that expired ones are dropped, then everything.
const MAX_CACHED: usize = 10_000;
/// Longer `x-auth-token` values are refused without a call (Genesys tokens are far shorter).
const MAX_TOKEN_LEN: usize = 4096;

type TokenHash = [u8; 32];

/// Why a lookup was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesysError {
    #[error("x-auth-token is missing")]
    Missing,
    #[error("x-auth-token was not accepted")]
    Invalid,
    #[error("the agent's division is not allowed to look rooms up")]
    WrongDivision,
    /// Genesys could not answer in time or at all; `0` is only logged.
    #[error("Genesys Cloud is unavailable: {0}")]
    Unavailable(String),
}

impl From<GenesysError> for AppError {
    fn from(e: GenesysError) -> Self {
        match e {
            GenesysError::Missing | GenesysError::Invalid => AppError::Unauthorized(e.to_string()),
            GenesysError::WrongDivision => AppError::Forbidden(e.to_string()),
            GenesysError::Unavailable(cause) => {
                AppError::unavailable("the agent token cannot be checked now; try again", cause)
            }
        }
    }
}

/// What a valid token told us: the user's division (None when Genesys gave none).
type Lookup = Result<Option<String>, GenesysError>;

struct Cached {
    division: Option<String>,
    until: Instant,
}

#[derive(Default)]
struct State {
    cache: HashMap<TokenHash, Cached>,
    /// Tokens Genesys refused, until when they are refused without a call.
    refused: HashMap<TokenHash, Instant>,
    in_flight: HashMap<TokenHash, Arc<OnceCell<Lookup>>>,
}

/// The token checker; cheap to clone, clones share the cache.
#[derive(Clone)]
pub struct Genesys {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    users_me: Url,
    allowed: Vec<String>,
    state: Mutex<State>,
    slots: Semaphore,
}

#[derive(Deserialize)]
struct User {
    division: Option<Division>,
}

#[derive(Deserialize)]
struct Division {
    id: Option<String>,
}

impl Genesys {
    /// `None` when the lookup is disabled (no allowed divisions) or no client could be built.
    pub fn new(settings: &GenesysSettings) -> Option<Self> {
        if settings.allowed_divisions.is_empty() {
            return None;
        }
        crate::tls::ensure_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(LOOKUP_TIMEOUT)
            .connect_timeout(LOOKUP_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("maxconf/", env!("CARGO_PKG_VERSION")))
            .build()
            .inspect_err(|_| tracing::error!("could not build the Genesys HTTP client"))
            .ok()?;
        let mut users_me = settings.api_base.clone();
        let path = format!(
            "{}/api/v2/users/me",
            settings.api_base.path().trim_end_matches('/')
        );
        users_me.set_path(&path);
        users_me.set_query(None);
        Some(Self {
            inner: Arc::new(Inner {
                http,
                users_me,
                allowed: settings.allowed_divisions.clone(),
                state: Mutex::new(State::default()),
                slots: Semaphore::new(MAX_CONCURRENT_LOOKUPS),
            }),
        })
    }

    /// Checks `token` (the `x-auth-token` value): `Ok` when its user is in an allowed division.
    pub async fn authorize(&self, token: Option<&str>) -> Result<(), GenesysError> {
        let token = token.map(str::trim).unwrap_or_default();
        if token.is_empty() {
            return Err(GenesysError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(GenesysError::Invalid);
        }
        let division = self.division(token).await?;
        match division {
            Some(d) if self.inner.allowed.contains(&d) => Ok(()),
            _ => Err(GenesysError::WrongDivision),
        }
    }

    /// The token's division: from the cache, from a lookup already running, or from Genesys.
    async fn division(&self, token: &str) -> Lookup {
        let key: TokenHash = Sha256::digest(token.as_bytes()).into();
        let cell = {
            let mut state = self.lock();
            if let Some(hit) = state.cache.get(&key) {
                if hit.until > Instant::now() {
                    return Ok(hit.division.clone());
                }
                state.cache.remove(&key);
            }
            if let Some(until) = state.refused.get(&key) {
                if *until > Instant::now() {
                    return Err(GenesysError::Invalid);
                }
                state.refused.remove(&key);
            }
            // Lookups whose callers all hung up leave an entry only the map holds: drop those
            // before the map can grow without bound.
            if state.in_flight.len() >= MAX_CACHED {
                state
                    .in_flight
                    .retain(|_, cell| Arc::strong_count(cell) > 1);
            }
            state.in_flight.entry(key).or_default().clone()
        };
        // One caller runs the call; the others wait for its answer. If that caller goes away
        // (client hung up), a waiting one takes over.
        let result = cell.get_or_init(|| self.fetch(token)).await.clone();
        let mut state = self.lock();
        if state
            .in_flight
            .get(&key)
            .is_some_and(|c| Arc::ptr_eq(c, &cell))
        {
            state.in_flight.remove(&key);
            let now = Instant::now();
            match &result {
                Ok(division) => {
                    if state.cache.len() >= MAX_CACHED {
                        state.cache.retain(|_, c| c.until > now);
                        if state.cache.len() >= MAX_CACHED {
                            state.cache.clear();
                        }
                    }
                    state.cache.insert(
                        key,
                        Cached {
                            division: division.clone(),
                            until: now + CACHE_TTL,
                        },
                    );
                }
                Err(GenesysError::Invalid) => {
                    if state.refused.len() >= MAX_CACHED {
                        state.refused.retain(|_, until| *until > now);
                        if state.refused.len() >= MAX_CACHED {
                            state.refused.clear();
                        }
                    }
                    state.refused.insert(key, now + REFUSAL_TTL);
                }
                // Genesys did not answer: nothing is known about the token.
                Err(_) => {}
            }
        }
        result
    }

    /// One Genesys call, within a slot.
    async fn fetch(&self, token: &str) -> Lookup {
        let _slot = tokio::time::timeout(SLOT_WAIT, self.inner.slots.acquire())
            .await
            .map_err(|_| GenesysError::Unavailable("all users/me slots busy".into()))?
            .map_err(|_| GenesysError::Unavailable("lookups closed".into()))?;
        let response = self
            .inner
            .http
            .get(self.inner.users_me.clone())
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| {
                // Described without the URL (reqwest's Display carries it).
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "connection failed"
                } else {
                    "request failed"
                };
                GenesysError::Unavailable(format!("users/me {what}"))
            })?;
        let status = response.status();
        match status {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                tracing::info!(status = status.as_u16(), "Genesys refused an agent token");
                return Err(GenesysError::Invalid);
            }
            other => {
                return Err(GenesysError::Unavailable(format!(
                    "users/me answered {other}"
                )));
            }
        }
        let body = response
            .bytes()
            .await
            .map_err(|_| GenesysError::Unavailable("users/me body could not be read".into()))?;
        let user: User = serde_json::from_slice(&body)
            .map_err(|_| GenesysError::Unavailable("users/me answered a non-user body".into()))?;
        Ok(user.division.and_then(|d| d.id))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(divisions: &[&str]) -> GenesysSettings {
        GenesysSettings {
            api_base: Url::parse("https://api.example.test/base/").unwrap(),
            allowed_divisions: divisions.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    #[test]
    fn disabled_without_divisions() {
        assert!(Genesys::new(&settings(&[])).is_none());
        let g = Genesys::new(&settings(&["d1"])).unwrap();
        assert_eq!(
            g.inner.users_me.as_str(),
            "https://api.example.test/base/api/v2/users/me"
        );
    }

    #[tokio::test]
    async fn malformed_tokens_are_refused_without_a_call() {
        let g = Genesys::new(&settings(&["d1"])).unwrap();
        assert_eq!(g.authorize(None).await, Err(GenesysError::Missing));
        assert_eq!(g.authorize(Some("  ")).await, Err(GenesysError::Missing));
        assert_eq!(g.authorize(Some("a b")).await, Err(GenesysError::Invalid));
        let long = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(g.authorize(Some(&long)).await, Err(GenesysError::Invalid));
    }

    #[test]
    fn errors_map_to_statuses() {
        let status = |e: GenesysError| AppError::from(e).status().as_u16();
        assert_eq!(status(GenesysError::Missing), 401);
        assert_eq!(status(GenesysError::Invalid), 401);
        assert_eq!(status(GenesysError::WrongDivision), 403);
        assert_eq!(status(GenesysError::Unavailable("x".into())), 503);
    }
}
