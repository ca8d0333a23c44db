//! Credentials for the Management API: HTTP Basic, or OAuth2 client credentials with an
//! ES256 JWT assertion, the token cached and refreshed before it expires, one refresh at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::HeaderValue;
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;
use url::Url;

use super::PexipError;
use crate::secret::Secret;

/// Refresh this long before expiry (pexshell does the same), or at half-life for short tokens.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How maxconf signs in. The `Authorization` value is built once (per token for OAuth) and
/// marked sensitive: its `Debug` prints `Sensitive`, and HTTP/2 never indexes it.
pub(crate) enum Credentials {
    Basic(HeaderValue),
    OAuth(OAuth),
}

impl Credentials {
    pub(crate) fn basic(username: &str, password: &Secret) -> Result<Self, PexipError> {
        let encoded = STANDARD.encode(format!("{username}:{}", password.expose()));
        Ok(Self::Basic(sensitive(&format!("Basic {encoded}"))?))
    }

    /// The `Authorization` header value for the next request.
    pub(crate) async fn header(&self, http: &reqwest::Client) -> Result<HeaderValue, PexipError> {
        match self {
            Self::Basic(header) => Ok(header.clone()),
            Self::OAuth(oauth) => oauth.token(http).await,
        }
    }

    /// After a 401: forget the token that was refused so the next header fetches a new one.
    /// Returns false when there is nothing to refresh (Basic), so the 401 stands.
    pub(crate) async fn invalidate(&self, refused: &HeaderValue) -> bool {
        match self {
            Self::Basic(_) => false,
            Self::OAuth(oauth) => {
                let mut state = oauth.lock();
                if state.cached.as_ref().is_some_and(|t| t.header == *refused) {
                    state.cached = None;
                }
                true
            }
        }
    }
}

/// A header value that is never printed nor indexed. The error names no part of the value.
fn sensitive(value: &str) -> Result<HeaderValue, PexipError> {
    let mut header = HeaderValue::from_str(value)
        .map_err(|_| PexipError::Protocol("a credential is not a valid header value".into()))?;
    header.set_sensitive(true);
    Ok(header)
}

pub(crate) struct OAuth {
    client_id: String,
    key: EncodingKey,
    token_url: Url,
    timeout: Duration,
    state: std::sync::Mutex<TokenState>,
}

/// The outcome of one token request, shared by everyone who waited for it.
type Refresh = Result<CachedToken, PexipError>;

#[derive(Default)]
struct TokenState {
    cached: Option<CachedToken>,
    /// The refresh running now. Callers that need a token meanwhile wait for this one and
    /// share its outcome, failure included, so a failing token endpoint costs one request per
    /// refresh, not one per waiting request.
    refresh: Option<Arc<OnceCell<Refresh>>>,
}

#[derive(Clone)]
struct CachedToken {
    header: HeaderValue,
    refresh_at: Instant,
}

#[derive(Serialize)]
struct Assertion<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
    jti: String,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default = "default_expires_in")]
    expires_in: u64,
}

fn default_expires_in() -> u64 {
    3600
}

impl OAuth {
    pub(crate) fn new(
        client_id: String,
        key_pem: &Secret,
        base_url: &Url,
        timeout: Duration,
    ) -> Result<Self, PexipError> {
        let key = EncodingKey::from_ec_pem(key_pem.expose().as_bytes())
            .map_err(|_| PexipError::Config("PEXIP_OAUTH_PRIVATE_KEY is not usable".into()))?;
        let token_url = base_url
            .join("/oauth/token/")
            .map_err(|_| PexipError::Config("PEXIP_BASE_URL cannot hold /oauth/token/".into()))?;
        Ok(Self {
            client_id,
            key,
            token_url,
            timeout,
            state: Default::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TokenState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn token(&self, http: &reqwest::Client) -> Result<HeaderValue, PexipError> {
        let refresh = {
            let mut state = self.lock();
            if let Some(token) = &state.cached
                && Instant::now() < token.refresh_at
            {
                return Ok(token.header.clone());
            }
            state.refresh.get_or_insert_with(Default::default).clone()
        };
        // One caller runs the request; if it goes away (its client hung up), a waiter takes over.
        let outcome = refresh.get_or_init(|| self.fetch(http)).await.clone();
        let mut state = self.lock();
        if state
            .refresh
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &refresh))
        {
            state.refresh = None;
            if let Ok(token) = &outcome {
                state.cached = Some(token.clone());
            }
        }
        outcome.map(|token| token.header)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<CachedToken, PexipError> {
        let started = Instant::now();
        let assertion = self.assertion()?;
        let form = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        let response = http
            .post(self.token_url.clone())
            .timeout(self.timeout)
            .form(&form)
            .send()
            .await
            .map_err(|e| PexipError::from_transport("POST /oauth/token/", &e))?;
        let status = response.status();
        tracing::debug!(
            method = "POST",
            path = "/oauth/token/",
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "pexip token request"
        );
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(PexipError::Unavailable(format!(
                "token endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(PexipError::Auth(format!(
                "token endpoint refused the client credentials ({status})"
            )));
        }
        let body: TokenResponse = response.json().await.map_err(|_| {
            PexipError::Unavailable("token endpoint sent an unreadable answer".into())
        })?;
        // Bounded: a huge `expires_in` must not overflow the clock (nor keep a token for ever).
        let lifetime = Duration::from_secs(body.expires_in.clamp(1, 24 * 3600));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(CachedToken {
            header: sensitive(&format!("Bearer {}", body.access_token))?,
            refresh_at: started + lifetime - margin,
        })
    }

    fn assertion(&self) -> Result<String, PexipError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let claims = Assertion {
            iss: &self.client_id,
            sub: &self.client_id,
            aud: self.token_url.as_str(),
            iat: now,
            exp: now + 60,
            jti: crate::room::new_room_name(""),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &self.key)
            .map_err(|_| PexipError::Config("could not sign the OAuth2 client assertion".into()))
    }
}
