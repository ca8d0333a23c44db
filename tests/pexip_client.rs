//! The Management API client against exact requests (wiremock) and the simulator.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::app::{PEXIP_PASSWORD, PEXIP_USER, SPEC_TAG, SPEC_UUI, TestApp};
use maxconf::config::{PexipAuth, PexipSettings};
use maxconf::pexip::{PexipClient, PexipError, Priority, RetryPolicy};
use maxconf::secret::Secret;
use maxconf::sim::{SimAuth, SimConfig, Simulator};
use serde_json::{Value, json};
use wiremock::matchers::{body_json, body_string_contains, header, method, path, query_param};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const CONF: &str = "/api/admin/configuration/v1/conference/";
const TEST_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgjlz8epwBTei4uK3T
XdG/bW5cWhrd8v9AuOyMnBcBZ0ahRANCAAShh54imYu0t7Xyg+WHquB3h/dppQIg
mxIBVzSdiMjjKlERWdsxVOswWB7XES1QyIB9JYiN5db4pV2pfpy6wgQa
-----END PRIVATE KEY-----";
const TEST_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEoYeeIpmLtLe18oPlh6rgd4f3aaUC
IJsSAVc0nYjI4ypREVnbMVTrMFge1xEtUMiAfSWIjeXW+KVdqX6cusIEGg==
-----END PUBLIC KEY-----";

fn settings(base: &str, auth: PexipAuth) -> PexipSettings {
    PexipSettings {
        base_url: base.parse().unwrap(),
        auth,
        ca_cert_pem: None,
        timeout: Duration::from_secs(1),
        max_concurrency: 5,
    }
}

fn basic() -> PexipAuth {
    PexipAuth::Basic {
        username: PEXIP_USER.into(),
        password: Secret::new(PEXIP_PASSWORD),
    }
}

fn oauth() -> PexipAuth {
    PexipAuth::OAuth {
        client_id: "maxconf-client".into(),
        private_key_pem: Secret::new(TEST_KEY),
    }
}

fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(50),
    }
}

fn client(base: &str, auth: PexipAuth) -> PexipClient {
    maxconf::tls::ensure_crypto_provider();
    PexipClient::with_retry(&settings(base, auth), fast_retry()).unwrap()
}

fn conference(id: u64, name: &str) -> Value {
    json!({"id": id, "name": name, "service_type": "conference", "allow_guests": true,
           "pin": "111111", "guest_pin": "222222", "tag": "", "description": "",
           "resource_uri": format!("{CONF}{id}/"),
           "aliases": [{"id": id + 1000, "alias": name, "conference": format!("{CONF}{id}/"),
                        "creation_time": "2024-03-05T14:31:06.145782", "description": ""}]})
}

fn basic_header() -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{PEXIP_USER}:{PEXIP_PASSWORD}"))
    )
}

#[tokio::test]
async fn create_sends_the_exact_patch_with_basic_auth() {
    let pexip = MockServer::start().await;
    let app = TestApp::spawn_with(&pexip.uri(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    let room = maxconf::pool::message::PooledRoom::from_conference(
        &maxconf::pexip::Conference::from_value(conference(90, "MTIzNDU2LDc2NTQzMg")).unwrap(),
    );
    app.pool.send(&room.encode(), Duration::ZERO).await.unwrap();

    Mock::given(method("PATCH"))
        .and(path(format!("{CONF}90/")))
        .and(header("authorization", basic_header().as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "tag": SPEC_TAG })))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&pexip)
        .await;
    // The refill after the answer: create, then read back.
    Mock::given(method("POST"))
        .and(path(CONF))
        .respond_with(
            ResponseTemplate::new(201)
                .insert_header("location", format!("{}{CONF}91/", pexip.uri()).as_str()),
        )
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{CONF}91/")))
        .respond_with(ResponseTemplate::new(200).set_body_json(conference(91, "newroom")))
        .mount(&pexip)
        .await;
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 90);
    assert_eq!(body["tag"], SPEC_TAG);
    app.wait_pool_count(1).await;
    assert!(
        app.state
            .broker
            .finish_background_work(Duration::from_secs(10))
            .await
    );

    let requests = pexip.received_requests().await.unwrap();
    let post = requests
        .iter()
        .find(|r| r.method.as_str() == "POST")
        .unwrap();
    let sent: Value = serde_json::from_slice(&post.body).unwrap();
    let name = sent["name"].as_str().unwrap();
    assert_eq!(sent["service_type"], "conference");
    assert_eq!(sent["allow_guests"], true);
    assert_eq!(sent["aliases"][0]["alias"], name);
    assert!(
        sent["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:created:")
    );
    assert_eq!(sent["tag"], "");
    assert_eq!(sent["description"], "");
    // Three Pexip calls per room handed out and replaced: the tag, then the refill's POST
    // and GET. No handout record, no pooled mark.
    let calls: Vec<String> = requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect();
    assert_eq!(
        calls,
        [
            format!("PATCH {CONF}90/"),
            format!("POST {CONF}"),
            format!("GET {CONF}91/")
        ]
    );
    assert_eq!(sent["pin"].as_str().unwrap().len(), 6);
    assert_ne!(sent["pin"], sent["guest_pin"]);
    for r in &requests {
        assert!(r.url.path().ends_with('/'), "trailing slash: {}", r.url);
    }
}

#[tokio::test]
async fn oauth_token_is_requested_once_with_an_es256_assertion() {
    let pexip = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token/"))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .and(body_string_contains("grant_type=client_credentials"))
        .and(body_string_contains(
            "client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer",
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            json!({"access_token": "tok-A", "token_type": "Bearer", "expires_in": 3600}),
        ))
        .expect(1)
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{CONF}5/")))
        .and(header("authorization", "Bearer tok-A"))
        .respond_with(ResponseTemplate::new(200).set_body_json(conference(5, "r5")))
        .expect(3)
        .mount(&pexip)
        .await;

    let pexip_client = client(&pexip.uri(), oauth());
    for _ in 0..3 {
        assert_eq!(pexip_client.get_conference(5).await.unwrap().unwrap().id, 5);
    }

    // The assertion: ES256, iss = sub = client id, aud = the token URL, short-lived.
    let requests = pexip.received_requests().await.unwrap();
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    let assertion = &form
        .iter()
        .find(|(k, _)| k == "client_assertion")
        .unwrap()
        .1;
    let key = jsonwebtoken::DecodingKey::from_ec_pem(TEST_PUBLIC_KEY.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&[format!("{}/oauth/token/", pexip.uri())]);
    validation.set_issuer(&["maxconf-client"]);
    let claims = jsonwebtoken::decode::<Value>(assertion, &key, &validation)
        .expect("a valid ES256 assertion")
        .claims;
    assert_eq!(claims["sub"], "maxconf-client");
    let lifetime = claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap();
    assert!(lifetime <= 300, "{lifetime}");
    assert!(claims["jti"].is_string());
}

#[tokio::test]
async fn a_401_refreshes_the_token_once_and_retries() {
    let pexip = MockServer::start().await;
    let tokens = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counter = tokens.clone();
    Mock::given(method("POST"))
        .and(path("/oauth/token/"))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": format!("tok-{n}"), "expires_in": 3600}))
        })
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .and(header("authorization", "Bearer tok-0"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{CONF}5/")))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(conference(5, "r5")))
        .mount(&pexip)
        .await;
    let pexip_client = client(&pexip.uri(), oauth());
    assert!(pexip_client.get_conference(5).await.unwrap().is_some());
    assert_eq!(tokens.load(std::sync::atomic::Ordering::SeqCst), 2);

    // A second 401 in a row is not retried forever: it is an auth failure.
    let refusing = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token/"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "x"})))
        .mount(&refusing)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401))
        .expect(2)
        .mount(&refusing)
        .await;
    let err = client(&refusing.uri(), oauth())
        .get_conference(5)
        .await
        .unwrap_err();
    assert!(matches!(err, PexipError::Auth(_)), "{err:?}");
}

#[tokio::test]
async fn oauth_against_the_simulator_survives_revoked_tokens() {
    let sim = Simulator::spawn(SimConfig {
        auth: SimAuth::OAuth {
            client_id: "maxconf-client".into(),
        },
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let id = sim.sim.insert_room(json!({"name": "r1"})).unwrap();
    let pexip_client = client(&sim.base_url(), oauth());
    assert!(pexip_client.get_conference(id).await.unwrap().is_some());
    sim.sim.revoke_tokens();
    assert!(pexip_client.get_conference(id).await.unwrap().is_some());
    assert_eq!(sim.sim.stats().tokens_issued, 2);
}

#[tokio::test]
async fn idempotent_requests_retry_on_5xx_and_429() {
    let pexip = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("{CONF}5/")))
        .respond_with(ResponseTemplate::new(200).set_body_json(conference(5, "r5")))
        .mount(&pexip)
        .await;
    assert!(
        client(&pexip.uri(), basic())
            .get_conference(5)
            .await
            .unwrap()
            .is_some()
    );

    // Retry-After is honoured: the retry waits at least that long.
    let limited = MockServer::start().await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "1"))
        .up_to_n_times(1)
        .mount(&limited)
        .await;
    Mock::given(method("PATCH"))
        .respond_with(ResponseTemplate::new(202))
        .mount(&limited)
        .await;
    let started = Instant::now();
    client(&limited.uri(), basic())
        .patch_conference(5, &json!({"tag": "x"}))
        .await
        .unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1));

    // Persistent failure ends as Unavailable after the configured tries.
    let down = MockServer::start().await;
    Mock::given(method("DELETE"))
        .respond_with(ResponseTemplate::new(500))
        .expect(3)
        .mount(&down)
        .await;
    let err = client(&down.uri(), basic())
        .delete_conference(5)
        .await
        .unwrap_err();
    assert!(matches!(err, PexipError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_create_that_failed_is_looked_up_before_posting_again() {
    let pexip = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(CONF))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .and(path(CONF))
        .and(query_param("name", "room-x"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "meta": {"limit": 20, "next": null, "offset": 0, "previous": null, "total_count": 1},
            "objects": [conference(77, "room-x")]})))
        .expect(1)
        .mount(&pexip)
        .await;
    let id = client(&pexip.uri(), basic())
        .create_conference(&json!({"name": "room-x"}))
        .await
        .unwrap();
    assert_eq!(id, 77);

    // With the simulator: a create that "failed" but took effect yields one room, not two.
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    sim.sim.create_then_fail(1);
    let c = client(&sim.base_url(), basic());
    let id = c
        .create_conference(&json!({"name": "hazard"}))
        .await
        .unwrap();
    assert_eq!(sim.sim.room_count(), 1);
    assert_eq!(sim.sim.room_by_name("hazard").unwrap()["id"], id);
    // And one that failed without effect is posted again.
    sim.sim.fail_next(1, 500);
    c.create_conference(&json!({"name": "second"}))
        .await
        .unwrap();
    assert_eq!(sim.sim.room_count(), 2);
    // A 400 is not retried.
    let err = c
        .create_conference(&json!({"name": "second"}))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        PexipError::Rejected("name: Virtual Meeting Room with this Name already exists.".into())
    );
}

#[tokio::test]
async fn lists_are_paged_through_meta_next() {
    let sim = Simulator::spawn(SimConfig {
        page_size: 3,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    for i in 0..8 {
        sim.sim
            .insert_room(json!({"name": format!("room{i}")}))
            .unwrap();
    }
    let all = client(&sim.base_url(), basic())
        .list_conferences(&[("limit", "3")])
        .await
        .unwrap();
    let names: Vec<&str> = all.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 8);
    assert_eq!(names[7], "room7");
    assert_eq!(sim.sim.stats().count("GET"), 3);

    // Without a chosen limit, lists ask for big pages (Pexip's default is about 20).
    sim.sim.clear_request_log();
    let all = client(&sim.base_url(), basic())
        .list_conferences(&[])
        .await
        .unwrap();
    assert_eq!(all.len(), 8);
    let log = sim.sim.request_log();
    assert_eq!(log.len(), 1);
    assert!(log[0].path_and_query.contains("limit=500"), "{log:?}");
}

#[tokio::test]
async fn every_request_times_out() {
    let pexip = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&pexip)
        .await;
    let started = Instant::now();
    let err = client(&pexip.uri(), basic())
        .get_conference(1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, PexipError::Unavailable(ref m) if m.contains("timed out")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Background work alone never holds the last slot; with creates the total is the cap, never more.
#[tokio::test]
async fn concurrency_is_capped_and_one_slot_is_kept_for_creates() {
    let sim = Simulator::spawn(SimConfig {
        latency: Duration::from_millis(50),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let id = sim.sim.insert_room(json!({"name": "r"})).unwrap();
    let background = client(&sim.base_url(), basic());
    let creates = background.with_priority(Priority::Create);
    let run = |clients: Vec<PexipClient>| async move {
        let handles: Vec<_> = clients
            .into_iter()
            .map(|c| tokio::spawn(async move { c.get_conference(id).await }))
            .collect();
        for handle in handles {
            assert!(handle.await.unwrap().unwrap().is_some());
        }
    };
    run(vec![background.clone(); 20]).await;
    assert_eq!(
        sim.sim.stats().max_in_flight,
        4,
        "background alone: all slots but one"
    );
    let mut mixed = vec![background.clone(); 20];
    mixed.extend(vec![creates.clone(); 20]);
    run(mixed).await;
    assert_eq!(
        sim.sim.stats().max_in_flight,
        5,
        "never more than PEXIP_MAX_CONCURRENCY"
    );
}

#[tokio::test]
async fn an_untrusted_certificate_fails_cleanly() {
    // A TLS listener whose certificate no store trusts: the error names PEXIP_CA_CERT.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        // Speak garbage instead of TLS: the handshake fails.
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await;
        }
    });
    let err = client(&format!("https://127.0.0.1:{port}"), basic())
        .get_conference(1)
        .await
        .unwrap_err();
    assert!(matches!(err, PexipError::Unavailable(_)), "{err:?}");
}

/// A 307/308 is never followed: following would resend the DELETE, `Authorization` included, to
/// a path the DELETE guard never checked (here another room).
#[tokio::test]
async fn redirects_are_never_followed() {
    let pexip = MockServer::start().await;
    for (status, id) in [(307, 5), (308, 6)] {
        Mock::given(method("DELETE"))
            .and(path(format!("{CONF}{id}/")))
            .respond_with(
                ResponseTemplate::new(status)
                    .insert_header("location", format!("{}{CONF}99/", pexip.uri())),
            )
            .expect(1)
            .mount(&pexip)
            .await;
    }
    Mock::given(method("GET"))
        .and(path(format!("{CONF}7/")))
        .respond_with(ResponseTemplate::new(308).insert_header("location", format!("{CONF}99/")))
        .expect(1)
        .mount(&pexip)
        .await;
    // The other room: nothing may reach it.
    Mock::given(path(format!("{CONF}99/")))
        .respond_with(ResponseTemplate::new(204))
        .expect(0)
        .mount(&pexip)
        .await;
    let pexip_client = client(&pexip.uri(), basic());
    for id in [5, 6] {
        let err = pexip_client.delete_conference(id).await.unwrap_err();
        assert!(matches!(err, PexipError::Protocol(_)), "{err:?}");
    }
    let err = pexip_client.get_conference(7).await.unwrap_err();
    assert!(matches!(err, PexipError::Protocol(_)), "{err:?}");
}

/// A failing token refresh is shared: N requests waiting on it cost one token request, and
/// all of them get its failure (not N refreshes one after the other, N × the timeout).
#[tokio::test]
async fn a_failed_token_refresh_is_shared_by_its_waiters() {
    const WAITERS: usize = 12;
    let pexip = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token/"))
        .respond_with(ResponseTemplate::new(500).set_delay(Duration::from_millis(300)))
        .mount(&pexip)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(conference(5, "r5")))
        .expect(0)
        .mount(&pexip)
        .await;
    maxconf::tls::ensure_crypto_provider();
    // No retries, so each caller asks for a token exactly once.
    let once = RetryPolicy {
        attempts: 1,
        ..fast_retry()
    };
    let pexip_client = PexipClient::with_retry(&settings(&pexip.uri(), oauth()), once).unwrap();
    let started = Instant::now();
    let results = futures::future::join_all((0..WAITERS).map(|_| {
        let c = pexip_client.clone();
        async move { c.get_conference(5).await }
    }))
    .await;
    for result in results {
        assert!(
            matches!(result, Err(PexipError::Unavailable(_))),
            "{result:?}"
        );
    }
    let token_requests = pexip
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.url.path() == "/oauth/token/")
        .count();
    assert_eq!(token_requests, 1);
    assert!(
        started.elapsed() < Duration::from_millis(300 * 3),
        "{:?}",
        started.elapsed()
    );

    // The failure is not remembered: the next request tries again.
    assert!(pexip_client.get_conference(5).await.is_err());
    let token_requests = pexip.received_requests().await.unwrap().len();
    assert_eq!(token_requests, 2);
}
