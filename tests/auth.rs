//! Entra ID token checks on the private routes, against a mock tenant (wiremock serving the
//! OpenID configuration and signing keys) and tokens signed with throwaway keys.

mod common;

use std::time::Duration;

use common::app::{SPEC_UUI, TestApp, problem, test_env};
use common::entra::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use maxconf::auth::{AuthError, EntraValidator};
use maxconf::config::AuthMode;
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default()).await.unwrap()
}

async fn app(sim: &SimServer, tenant: &MockServer) -> TestApp {
    let mut env = test_env(&sim.base_url());
    for (k, v) in [
        ("AUTH_MODE", "entra".to_owned()),
        ("AUTH_TENANT_ID", TENANT.to_owned()),
        (
            "AUTH_AUDIENCE",
            format!("{AUDIENCE},00000000-1111-2222-3333-444444444444"),
        ),
        ("AUTH_REQUIRED_ROLE", ROLE.to_owned()),
        ("AUTH_OPENID_CONFIG_URL", config_url(tenant)),
        ("EVENT_SINK_USERNAME", "pexip".to_owned()),
        ("EVENT_SINK_PASSWORD", "sink-secret".to_owned()),
    ] {
        env.insert(k.into(), v);
    }
    TestApp::spawn_env(env).await
}

async fn delete_with(app: &TestApp, authorization: Option<String>) -> reqwest::Response {
    let mut request = app.request(reqwest::Method::DELETE, "/api/room/no-such-room");
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn private_routes_need_a_valid_token_with_the_role() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let app = app(&sim, &tenant).await;
    let bearer = |claims: &Value| Some(format!("Bearer {}", sign("k1", KEY_1, claims)));

    // A valid token passes (the room does not exist: 404 from the route itself).
    let body = problem(delete_with(&app, bearer(&claims())).await, 404).await;
    assert_eq!(body["detail"], "room no-such-room does not exist");
    // v1 issuer and the app-id audience are accepted too.
    let mut v1 = claims();
    v1["iss"] = json!(format!("https://sts.windows.net/{TENANT}/"));
    v1["aud"] = json!("00000000-1111-2222-3333-444444444444");
    problem(delete_with(&app, bearer(&v1)).await, 404).await;

    // Missing → 401 with a Bearer challenge, before any input check or upstream call.
    sim.sim.reset_stats();
    let response = app
        .request(reqwest::Method::POST, "/api/room/create?uuiData=zz")
        .send()
        .await
        .unwrap();
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    problem(response, 401).await;
    assert_eq!(sim.sim.stats().requests, 0);

    let mut cases: Vec<(&str, Value)> = Vec::new();
    let mut c = claims();
    c["aud"] = json!("api://someone-else");
    cases.push(("wrong audience", c));
    let mut c = claims();
    c["iss"] = json!("https://login.microsoftonline.com/other-tenant/v2.0");
    cases.push(("wrong issuer", c));
    let mut c = claims();
    c["exp"] = json!(now() - 600);
    cases.push(("expired", c));
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    cases.push(("not yet valid", c));
    for (what, c) in cases {
        problem(delete_with(&app, bearer(&c)).await, 401).await;
        let _ = what;
    }
    // Signed by a key the tenant does not publish.
    let forged = Some(format!("Bearer {}", sign("k1", KEY_2, &claims())));
    problem(delete_with(&app, forged).await, 401).await;
    // Garbage and other schemes.
    problem(
        delete_with(&app, Some("Bearer not.a.jwt".into())).await,
        401,
    )
    .await;
    problem(
        delete_with(&app, Some("Basic cGV4aXA6c2luay1zZWNyZXQ=".into())).await,
        401,
    )
    .await;

    // A valid token without the role → 403.
    let mut c = claims();
    c["roles"] = json!(["Something.Else"]);
    problem(delete_with(&app, bearer(&c)).await, 403).await;
    assert_eq!(sim.sim.stats().count("DELETE"), 0);

    // The pool status route is private too.
    let response = app
        .request(reqwest::Method::GET, "/api/pool")
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

#[tokio::test]
async fn none_and_hs256_tokens_are_refused() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let app = app(&sim, &tenant).await;
    use base64::Engine;
    let b64 = |v: &Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "k1"})),
        b64(&claims())
    );
    problem(delete_with(&app, Some(format!("Bearer {none}"))).await, 401).await;
    // HS256 keyed with the public modulus: the classic key-confusion forgery.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(N_1.as_bytes()),
    )
    .unwrap();
    problem(delete_with(&app, Some(format!("Bearer {hs}"))).await, 401).await;
}

#[tokio::test]
async fn token_free_routes_stay_token_free_and_groups_do_not_share_credentials() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let app = app(&sim, &tenant).await;
    let token = format!("Bearer {}", sign("k1", KEY_1, &claims()));

    let health = app
        .http
        .get(format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let timer = app
        .http
        .post(format!("{}/function-metrics", app.base))
        .json(&json!({"Data": {}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(timer.status(), 200);

    // The event sink takes its Basic credentials only, not an Entra token.
    let event = json!({"event": "conference_ended", "data": {"name": "room1"}});
    let response = app
        .request(reqwest::Method::POST, "/api/public/event_sink")
        .header("authorization", &token)
        .json(&event)
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
    let response = app
        .request(reqwest::Method::POST, "/api/public/event_sink")
        .basic_auth("pexip", Some("sink-secret"))
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // And the private routes do not take the event sink's Basic credentials.
    let response = app
        .request(
            reqwest::Method::POST,
            &format!("/api/room/create?uuiData={SPEC_UUI}"),
        )
        .basic_auth("pexip", Some("sink-secret"))
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

fn validator(config_url: String, refetch: Duration) -> EntraValidator {
    let mode = AuthMode::Entra {
        tenant_id: TENANT.into(),
        audiences: vec![AUDIENCE.into()],
        required_role: Some(ROLE.into()),
        openid_config_url: Some(config_url.parse().unwrap()),
        operator_role: None,
    };
    EntraValidator::from_mode(&mode)
        .unwrap()
        .unwrap()
        .with_refetch_interval(refetch)
}

#[tokio::test]
async fn rotated_keys_are_fetched_and_unknown_kids_cannot_hammer_the_tenant() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            "jwks_uri": format!("{}/keys", server.uri()),
        })))
        .mount(&server)
        .await;
    // First only k1 is published; after rotation k2 as well.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk("k1", N_1)]})))
        .up_to_n_times(1)
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"keys": [jwk("k1", N_1), jwk("k2", N_2)]})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let interval = Duration::from_secs(2);
    let v = validator(config_url(&server), interval);
    let header = |kid: &str, key: &str| format!("Bearer {}", sign(kid, key, &claims()));
    // Signed up front so the flood below fits well inside one interval.
    let forged: Vec<String> = (0..50)
        .map(|i| header(&format!("forged{i}"), KEY_2))
        .collect();

    v.check(Some(&header("k1", KEY_1))).await.unwrap();
    let flood_started = std::time::Instant::now();
    // A flood of tokens with unknown kids: at most one refetch per interval.
    for token in &forged {
        let err = v.check(Some(token)).await.unwrap_err();
        assert!(matches!(err, AuthError::Invalid), "{err:?}");
    }
    assert!(
        flood_started.elapsed() < interval,
        "the flood outlasted the interval"
    );
    // After the interval the rotated key is picked up by one fetch.
    tokio::time::sleep(interval + Duration::from_millis(100)).await;
    v.check(Some(&header("k2", KEY_2))).await.unwrap();
    v.check(Some(&header("k1", KEY_1))).await.unwrap();
    // Mock expectations (one fetch each) are verified when `server` drops.
}

#[tokio::test]
async fn an_unreachable_tenant_is_503_not_401() {
    let sim = sim().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let server = MockServer::start().await;
    let mut env = test_env(&sim.base_url());
    for (k, v) in [
        ("AUTH_MODE", "entra".to_owned()),
        ("AUTH_TENANT_ID", TENANT.to_owned()),
        ("AUTH_AUDIENCE", AUDIENCE.to_owned()),
        ("AUTH_REQUIRED_ROLE", ROLE.to_owned()),
        (
            "AUTH_OPENID_CONFIG_URL",
            format!("http://127.0.0.1:{port}/{TENANT}/v2.0/.well-known/openid-configuration"),
        ),
    ] {
        env.insert(k.into(), v);
    }
    drop(server);
    let app = TestApp::spawn_env(env).await;
    let token = format!("Bearer {}", sign("k1", KEY_1, &claims()));
    let response = delete_with(&app, Some(token)).await;
    assert!(response.headers().contains_key("retry-after"));
    problem(response, 503).await;
}

/// Keys past their age are refreshed in the background: a token whose `kid` is known is
/// checked at once with the cached key, even while Entra is slow or failing.
#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!(
            "/{TENANT}/v2.0/.well-known/openid-configuration"
        )))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
            "jwks_uri": format!("{}/keys", server.uri()),
        })))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"keys": [jwk("k1", N_1)]})))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    // Then Entra struggles: every key fetch takes 3 s and fails.
    Mock::given(method("GET"))
        .and(path("/keys"))
        .respond_with(ResponseTemplate::new(503).set_delay(Duration::from_secs(3)))
        .mount(&server)
        .await;
    let v = std::sync::Arc::new(
        validator(config_url(&server), Duration::ZERO).with_keys_max_age(Duration::ZERO),
    );
    let token = format!("Bearer {}", sign("k1", KEY_1, &claims()));
    v.check(Some(&token)).await.unwrap();

    // The keys are now past their age: requests do not wait for the refresh.
    for _ in 0..3 {
        let started = std::time::Instant::now();
        v.check(Some(&token)).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "a request waited {:?} for a key refresh",
            started.elapsed()
        );
    }
    // The refresh did start, in the background.
    let key_fetches = || async {
        server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/keys")
            .count()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while key_fetches().await < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background refresh"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
