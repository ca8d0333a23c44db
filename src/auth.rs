//! Entra ID bearer tokens, checked in the function itself (defence in depth behind APIM).
//!
//! Signing keys come from the tenant's OpenID configuration (`jwks_uri`) and are cached. Once
//! they are older than a day a request starts a refresh in the background and is checked with
//! the cached keys meanwhile, so an Entra outage never holds requests. Only an unknown `kid`
//! (key rotation) makes a request wait for a refetch, at most once per [`REFETCH_INTERVAL`], so
//! a flood of forged tokens cannot hammer Entra. The algorithm is pinned by the key (RSA keys:
//! RS256 only), so neither `none` nor HS256-with-a-public-key is accepted. Issuer (v1 and v2
//! forms), audience, `exp`/`nbf` (60 s leeway) and the required app role are checked.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::Response;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::config::AuthMode;
use crate::error::AppError;
use crate::routes::AppState;

/// The shortest time between two key fetches triggered by unknown key ids.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(60);
/// Keys older than this are refreshed in the background (the request does not wait).
const KEYS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const LEEWAY_SECS: u64 = 60;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a token was refused. Only `Display` reaches the caller; never the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("a bearer token is required")]
    Missing,
    #[error("the bearer token is not valid")]
    Invalid,
    #[error("the token lacks the required app role")]
    MissingRole,
    #[error("management routes are disabled: AUTH_OPERATOR_ROLE is not set")]
    OperatorRoleUnset,
    #[error("token signing keys are unavailable")]
    KeysUnavailable(String),
}

impl From<AuthError> for AppError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing | AuthError::Invalid => AppError::Unauthorized(e.to_string()),
            AuthError::MissingRole | AuthError::OperatorRoleUnset => {
                AppError::Forbidden(e.to_string())
            }
            AuthError::KeysUnavailable(cause) => {
                AppError::unavailable("token validation is unavailable", cause)
            }
        }
    }
}

pub struct EntraValidator {
    audiences: Vec<String>,
    required_role: Option<String>,
    /// `AUTH_OPERATOR_ROLE`: required (instead of `required_role`) by the management routes.
    operator_role: Option<String>,
    /// Shared with background refreshes.
    source: Arc<KeySource>,
}

/// The tenant's signing keys, cached, and how they are fetched.
struct KeySource {
    http: reqwest::Client,
    config_url: Url,
    tenant_id: String,
    keys: RwLock<Keys>,
    /// Serialises fetches and remembers when the last one started.
    fetching: Mutex<Option<Instant>>,
    /// A background refresh is running (at most one at a time).
    refreshing: AtomicBool,
    refetch_interval: Duration,
    keys_max_age: Duration,
}

#[derive(Default)]
struct Keys {
    by_kid: HashMap<String, DecodingKey>,
    issuers: Vec<String>,
    fetched_at: Option<Instant>,
}

#[derive(Deserialize)]
struct OpenIdConfig {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    roles: Vec<String>,
}

impl EntraValidator {
    /// `None` when auth is off.
    pub fn from_mode(mode: &AuthMode) -> Result<Option<Self>, AuthError> {
        let AuthMode::Entra {
            tenant_id,
            audiences,
            required_role,
            openid_config_url,
            operator_role,
        } = mode
        else {
            return Ok(None);
        };
        crate::tls::ensure_crypto_provider();
        let config_url = match openid_config_url {
            Some(url) => url.clone(),
            None => Url::parse(&format!(
                "https://login.microsoftonline.com/{tenant_id}/v2.0/.well-known/openid-configuration"
            ))
            .map_err(|_| AuthError::KeysUnavailable("AUTH_TENANT_ID makes no URL".into()))?,
        };
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|_| AuthError::KeysUnavailable("HTTP client".into()))?;
        Ok(Some(Self {
            audiences: audiences.clone(),
            required_role: required_role.clone(),
            operator_role: operator_role.clone(),
            source: Arc::new(KeySource {
                http,
                config_url,
                tenant_id: tenant_id.clone(),
                keys: RwLock::new(Keys::default()),
                fetching: Mutex::new(None),
                refreshing: AtomicBool::new(false),
                refetch_interval: REFETCH_INTERVAL,
                keys_max_age: KEYS_MAX_AGE,
            }),
        }))
    }

    /// Overrides the minimum time between key fetches (tests). Call before the first check.
    pub fn with_refetch_interval(mut self, interval: Duration) -> Self {
        if let Some(source) = Arc::get_mut(&mut self.source) {
            source.refetch_interval = interval;
        }
        self
    }

    /// Overrides how old cached keys may get before they are refreshed (tests). Call before
    /// the first check.
    pub fn with_keys_max_age(mut self, age: Duration) -> Self {
        if let Some(source) = Arc::get_mut(&mut self.source) {
            source.keys_max_age = age;
        }
        self
    }

    /// Checks `Authorization: Bearer <token>` for the caller routes (`AUTH_REQUIRED_ROLE`).
    pub async fn check(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        self.check_role(authorization, self.required_role.as_deref())
            .await
    }

    /// Checks a token for the management routes: it must carry `AUTH_OPERATOR_ROLE` (the
    /// caller's role is not enough). Without that setting nobody may use them.
    pub async fn check_operator(&self, authorization: Option<&str>) -> Result<(), AuthError> {
        let Some(role) = self.operator_role.as_deref() else {
            // Validate first: a missing or bad token is still a 401, not a 403.
            self.check_role(authorization, None).await?;
            return Err(AuthError::OperatorRoleUnset);
        };
        self.check_role(authorization, Some(role)).await
    }

    /// A valid token, holding `role` when one is given.
    async fn check_role(
        &self,
        authorization: Option<&str>,
        role: Option<&str>,
    ) -> Result<(), AuthError> {
        let token = authorization
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        // Entra signs with RSA keys: anything else (none, HS256, ES…) is refused outright.
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let (key, issuers) = KeySource::key(&self.source, &kid).await?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_audience(&self.audiences);
        validation.set_issuer(&issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key, &validation)
            .map_err(|_| AuthError::Invalid)?;
        match role {
            Some(role) if !data.claims.roles.iter().any(|r| r == role) => {
                Err(AuthError::MissingRole)
            }
            _ => Ok(()),
        }
    }
}

impl KeySource {
    /// The key for `kid`. A known one is answered from the cache at once (starting a background
    /// refresh when the keys are old); only an unknown one waits for a refetch.
    async fn key(this: &Arc<Self>, kid: &str) -> Result<(DecodingKey, Vec<String>), AuthError> {
        {
            let keys = this.keys.read().await;
            if let Some(key) = keys.by_kid.get(kid) {
                let stale = keys
                    .fetched_at
                    .is_none_or(|t| t.elapsed() >= this.keys_max_age);
                if stale {
                    Self::refresh_in_background(this);
                }
                return Ok((key.clone(), keys.issuers.clone()));
            }
        }
        this.refetch().await?;
        let keys = this.keys.read().await;
        keys.by_kid
            .get(kid)
            .map(|key| (key.clone(), keys.issuers.clone()))
            .ok_or(AuthError::Invalid)
    }

    /// Starts one refresh unless one is running. It is rate-limited like every fetch, and a
    /// failure is logged and keeps the cached keys.
    fn refresh_in_background(this: &Arc<Self>) {
        if this.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let source = this.clone();
        tokio::spawn(async move {
            let _ = source.refetch().await;
            source.refreshing.store(false, Ordering::Release);
        });
    }

    /// Fetches the keys unless a fetch started less than the refetch interval ago.
    async fn refetch(&self) -> Result<(), AuthError> {
        let mut last = self.fetching.lock().await;
        let have_keys = self.keys.read().await.fetched_at.is_some();
        if have_keys && last.is_some_and(|t| t.elapsed() < self.refetch_interval) {
            return Ok(());
        }
        *last = Some(Instant::now());
        let fetched = self.fetch().await;
        match fetched {
            Ok(keys) => {
                tracing::info!(keys = keys.by_kid.len(), "token signing keys fetched");
                *self.keys.write().await = keys;
                Ok(())
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not fetch token signing keys");
                if have_keys { Ok(()) } else { Err(e) }
            }
        }
    }

    async fn fetch(&self) -> Result<Keys, AuthError> {
        let unavailable = |what: &str| AuthError::KeysUnavailable(what.to_owned());
        let config: OpenIdConfig = self
            .http
            .get(self.config_url.clone())
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| unavailable("OpenID configuration unreachable"))?
            .json()
            .await
            .map_err(|_| unavailable("OpenID configuration unreadable"))?;
        let jwks: JwkSet = self
            .http
            .get(&config.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|_| unavailable("signing keys unreachable"))?
            .json()
            .await
            .map_err(|_| unavailable("signing keys unreadable"))?;
        let mut by_kid = HashMap::new();
        for jwk in &jwks.keys {
            // Only RSA keys: the algorithm (RS256) follows from the key type.
            if let (Some(kid), AlgorithmParameters::RSA(rsa)) = (&jwk.common.key_id, &jwk.algorithm)
                && let Ok(key) = DecodingKey::from_rsa_components(&rsa.n, &rsa.e)
            {
                by_kid.insert(kid.clone(), key);
            }
        }
        let tenant = &self.tenant_id;
        let issuers = vec![
            config.issuer.replace("{tenantid}", tenant),
            format!("https://sts.windows.net/{tenant}/"),
            format!("https://login.microsoftonline.com/{tenant}/v2.0"),
        ];
        Ok(Keys {
            by_kid,
            issuers,
            fetched_at: Some(Instant::now()),
        })
    }
}

/// Middleware for the private routes: only an Entra token opens them (no other credential).
pub async fn require_token(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(validator) = &state.auth {
        validator.check(authorization(&request)).await?;
    }
    Ok(next.run(request).await)
}

/// Middleware for the management routes: an Entra token carrying the operator role
/// (`AUTH_OPERATOR_ROLE`); the caller's role alone is a 403. Off with `AUTH_MODE=none`.
pub async fn require_operator(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if let Some(validator) = &state.auth {
        validator.check_operator(authorization(&request)).await?;
    }
    Ok(next.run(request).await)
}

fn authorization(request: &Request) -> Option<&str> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}
