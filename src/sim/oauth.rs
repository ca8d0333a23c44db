//! `/oauth/token/` (client credentials with a JWT assertion) and the `/api/…` auth check.

use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde_json::{Value, json};
use std::sync::atomic::Ordering;

use super::{SimAuth, Simulator, lock};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Clock skew allowed on the assertion's `exp`.
const LEEWAY_SECS: i64 = 30;

/// Checks an `/api/…` request's credentials against the configured auth; the error is the
/// `WWW-Authenticate` challenge of the 401.
pub(crate) fn check(sim: &Simulator, headers: &HeaderMap) -> Result<(), &'static str> {
    let given = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    let scheme_value = given.and_then(|v| v.split_once(' '));
    match &sim.inner.auth {
        SimAuth::Open => Ok(()),
        SimAuth::Basic { username, password } => {
            let ok = scheme_value
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
                .and_then(|(_, b64)| STANDARD.decode(b64.trim()).ok())
                .and_then(|raw| String::from_utf8(raw).ok())
                .is_some_and(|pair| {
                    pair.split_once(':')
                        .is_some_and(|(u, p)| u == username && p == password)
                });
            ok.then_some(()).ok_or("Basic realm=\"Pexip Infinity\"")
        }
        SimAuth::OAuth { .. } => {
            let token = scheme_value
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                .map(|(_, t)| t.trim());
            let now = Instant::now();
            let ok = token.is_some_and(|t| {
                lock(&sim.inner.tokens)
                    .get(t)
                    .is_some_and(|expires| *expires > now)
            });
            ok.then_some(()).ok_or("Bearer error=\"invalid_token\"")
        }
    }
}

fn oauth_error(code: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        [(CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": code, "error_description": description})),
    )
        .into_response()
}

pub(crate) async fn token(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.bump(|s| s.token_requests += 1);
    let form_encoded = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| {
            ct.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return oauth_error("invalid_request", "the body must be form-encoded");
    }
    let params: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (Some(grant_type), Some(assertion_type), Some(assertion)) = (
        param("grant_type"),
        param("client_assertion_type"),
        param("client_assertion"),
    ) else {
        return oauth_error(
            "invalid_request",
            "grant_type, client_assertion_type and client_assertion are required",
        );
    };
    if grant_type != "client_credentials" {
        return oauth_error(
            "unsupported_grant_type",
            "only client_credentials is supported",
        );
    }
    if assertion_type != ASSERTION_TYPE {
        return oauth_error("invalid_client", "unsupported client_assertion_type");
    }
    let expected_client = match &sim.inner.auth {
        SimAuth::OAuth { client_id } => Some(client_id.as_str()),
        SimAuth::Open => None,
        SimAuth::Basic { .. } => {
            return oauth_error("invalid_client", "no OAuth2 client is configured");
        }
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    if let Err(why) = check_assertion(assertion, expected_client, host) {
        return oauth_error("invalid_client", why);
    }

    let access_token: String = rand::rng()
        .sample_iter(&Alphanumeric)
        .take(30)
        .map(char::from)
        .collect();
    let lifetime = sim.inner.token_lifetime_secs.load(Ordering::Relaxed);
    let expires = Instant::now() + Duration::from_secs(lifetime);
    {
        let mut tokens = lock(&sim.inner.tokens);
        let now = Instant::now();
        tokens.retain(|_, exp| *exp > now);
        tokens.insert(access_token.clone(), expires);
    }
    sim.bump(|s| s.tokens_issued += 1);
    (
        [(CACHE_CONTROL, "no-store")],
        axum::Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": lifetime,
        })),
    )
        .into_response()
}

/// Checks the JWT's shape and claims; the ES256 signature itself is not verified, but it
/// must be the 64-byte raw (r‖s) form a JWS uses (a DER signature is a classic bug).
fn check_assertion(
    jwt: &str,
    expected_client: Option<&str>,
    host: &str,
) -> Result<(), &'static str> {
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else {
        return Err("client_assertion is not a JWT");
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).ok();
    let json = |part: &str| decode(part).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let header = json(header).ok_or("the JWT header is not base64url JSON")?;
    let claims = json(payload).ok_or("the JWT payload is not base64url JSON")?;
    let signature = decode(signature).ok_or("the JWT signature is not base64url")?;
    if header["alg"] != "ES256" {
        return Err("the JWT must be signed with ES256");
    }
    if signature.len() != 64 {
        return Err("the ES256 signature must be 64 bytes");
    }
    let iss = claims["iss"].as_str().ok_or("iss is required")?;
    if claims["sub"].as_str() != Some(iss) {
        return Err("sub must equal iss");
    }
    if expected_client.is_some_and(|c| c != iss) {
        return Err("unknown client");
    }
    let token_urls = [
        format!("http://{host}/oauth/token/"),
        format!("https://{host}/oauth/token/"),
    ];
    let aud_ok = match &claims["aud"] {
        Value::String(a) => token_urls.contains(a),
        Value::Array(list) => list.iter().any(|a| {
            a.as_str()
                .is_some_and(|a| token_urls.iter().any(|u| u == a))
        }),
        _ => false,
    };
    if !aud_ok {
        return Err("aud must be the token URL");
    }
    let exp = claims["exp"].as_i64().ok_or("exp is required")?;
    if exp + LEEWAY_SECS < time::OffsetDateTime::now_utc().unix_timestamp() {
        return Err("the assertion has expired");
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An assertion shaped like an ES256 one (the signature is not checked).
    pub(crate) fn assertion(iss: &str, sub: &str, aud: &str, exp_in: i64) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#);
        let claims = json!({"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": now + exp_in, "jti": "j1"});
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let sig = URL_SAFE_NO_PAD.encode([7u8; 64]);
        format!("{header}.{claims}.{sig}")
    }

    #[test]
    fn assertion_rules() {
        let aud = "http://h:1/oauth/token/";
        assert!(check_assertion(&assertion("c", "c", aud, 60), Some("c"), "h:1").is_ok());
        assert!(
            check_assertion(
                &assertion("c", "c", "https://h:1/oauth/token/", 60),
                None,
                "h:1"
            )
            .is_ok()
        );
        assert_eq!(
            check_assertion(&assertion("d", "d", aud, 60), Some("c"), "h:1"),
            Err("unknown client")
        );
        assert_eq!(
            check_assertion(&assertion("c", "x", aud, 60), Some("c"), "h:1"),
            Err("sub must equal iss")
        );
        assert_eq!(
            check_assertion(
                &assertion("c", "c", "http://h:1/oauth/token", 60),
                Some("c"),
                "h:1"
            ),
            Err("aud must be the token URL")
        );
        assert_eq!(
            check_assertion(&assertion("c", "c", aud, -120), Some("c"), "h:1"),
            Err("the assertion has expired")
        );
        assert!(check_assertion("a.b", Some("c"), "h:1").is_err());
        let hs256 = assertion("c", "c", aud, 60).replacen(
            &URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#),
            &URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
            1,
        );
        assert_eq!(
            check_assertion(&hs256, Some("c"), "h:1"),
            Err("the JWT must be signed with ES256")
        );
    }
}
