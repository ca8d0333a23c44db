//! The public routes: the Genesys agent widget's room lookup (Genesys Cloud played by
//! wiremock) and Pexip's event sink, against a real Azurite and the Pexip simulator.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::app::{TestApp, problem};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use reqwest::Method;
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const USERS_ME: &str = "/api/v2/users/me";
const SINK_USER: &str = "pexip-events";
const SINK_PASSWORD: &str = "sink-password-xyz";

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

fn user(division: &str) -> Value {
    json!({"id": "u1", "name": "Agent", "division": {"id": division, "name": "Home",
           "selfUri": format!("/api/v2/authorization/divisions/{division}")}})
}

/// Genesys answers `token` with a user in `division`, at most `calls` times.
async fn genesys_user(genesys: &MockServer, token: &str, division: &str, calls: u64) {
    Mock::given(method("GET"))
        .and(path(USERS_ME))
        .and(header("authorization", format!("Bearer {token}").as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(user(division)))
        .expect(calls)
        .mount(genesys)
        .await;
}

async fn genesys_app(sim: &SimServer, genesys_base: &str) -> TestApp {
    TestApp::spawn_with(
        &sim.base_url(),
        &[
            ("GENESYS_API_BASE", genesys_base),
            ("GENESYS_ALLOWED_DIVISIONS", "div-a, div-b"),
        ],
    )
    .await
}

async fn lookup(app: &TestApp, name: &str, token: Option<&str>) -> reqwest::Response {
    // Public: no function key, as the host forwards an anonymous route.
    let mut request = app.http.get(format!("{}/api/public/room/{name}", app.base));
    if let Some(token) = token {
        request = request.header("x-auth-token", token);
    }
    request.send().await.unwrap()
}

fn seed_room(sim: &SimServer, name: &str) {
    sim.sim
        .insert_room(json!({"name": name, "pin": "482913", "guest_pin": "120931",
                            "tag": "https://id.gov.bc.ca/idcheck/protected/video/x",
                            "aliases": [{"alias": name}]}))
        .unwrap();
}

#[tokio::test]
async fn an_allowed_agent_gets_the_same_body_as_the_private_get() {
    let sim = sim().await;
    let genesys = MockServer::start().await;
    genesys_user(&genesys, "agent-token-1", "div-b", 1).await;
    let app = genesys_app(&sim, &genesys.uri()).await;
    seed_room(&sim, "room1");

    let public = lookup(&app, "room1", Some("agent-token-1")).await;
    assert_eq!(public.status(), 200);
    let public = public.text().await.unwrap();
    let private = app
        .request(Method::GET, "/api/room/room1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(public, private);
    let body: Value = serde_json::from_str(&public).unwrap();
    assert_eq!(body["pin"], "482913");

    let raw: Value = app
        .http
        .get(format!(
            "{}/api/public/room/room1?constrained_attributes=false",
            app.base
        ))
        .header("x-auth-token", "agent-token-1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(raw, sim.sim.room_by_name("room1").unwrap());

    // With a valid token: unknown rooms are 404, malformed names 400.
    problem(lookup(&app, "nope", Some("agent-token-1")).await, 404).await;
    problem(lookup(&app, "a%20b", Some("agent-token-1")).await, 400).await;
    // Four lookups, one Genesys call: the cache.
    genesys.verify().await;
}

#[tokio::test]
async fn concurrent_lookups_of_one_token_make_one_genesys_call() {
    let sim = sim().await;
    let genesys = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USERS_ME))
        .and(header("authorization", "Bearer flood-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(user("div-a"))
                .set_delay(Duration::from_millis(300)),
        )
        .expect(1)
        .mount(&genesys)
        .await;
    let app = Arc::new(genesys_app(&sim, &genesys.uri()).await);
    seed_room(&sim, "room1");

    let mut tasks = Vec::new();
    for _ in 0..25 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            lookup(&app, "room1", Some("flood-token")).await.status()
        }));
    }
    for task in tasks {
        assert_eq!(task.await.unwrap(), 200);
    }
    genesys.verify().await;
}

#[tokio::test]
async fn missing_or_refused_tokens_are_401_and_wrong_divisions_403() {
    let sim = sim().await;
    let genesys = MockServer::start().await;
    genesys_user(&genesys, "other-division", "div-z", 1).await;
    genesys_user(&genesys, "no-division-token", "", 1).await;
    Mock::given(method("GET"))
        .and(path(USERS_ME))
        .and(header("authorization", "Bearer expired-token"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(
                json!({"message": "secret upstream detail", "code": "bad.credentials"}),
            ),
        )
        // A refusal is cached briefly: the second lookup does not ask Genesys again.
        .expect(1)
        .mount(&genesys)
        .await;
    let app = genesys_app(&sim, &genesys.uri()).await;
    seed_room(&sim, "room1");

    let body = problem(lookup(&app, "room1", None).await, 401).await;
    assert!(body["detail"].as_str().unwrap().contains("x-auth-token"));
    problem(lookup(&app, "room1", Some("")).await, 401).await;

    for _ in 0..2 {
        let response = lookup(&app, "room1", Some("expired-token")).await;
        let text = format!("{:?}", response.headers());
        let body = problem(response, 401).await;
        assert!(!body.to_string().contains("expired-token"), "{body}");
        assert!(!body.to_string().contains("secret upstream"), "{body}");
        assert!(!text.contains("expired-token"));
    }
    for _ in 0..2 {
        let body = problem(lookup(&app, "room1", Some("other-division")).await, 403).await;
        assert!(body["detail"].as_str().unwrap().contains("division"));
    }
    problem(lookup(&app, "room1", Some("no-division-token")).await, 403).await;
    // Auth comes before the name: an unauthenticated caller learns nothing about it.
    problem(lookup(&app, "a%20b", None).await, 401).await;
    genesys.verify().await;
    assert_eq!(
        sim.sim.stats().requests,
        0,
        "no Pexip call without a valid agent"
    );
}

#[tokio::test]
async fn genesys_slow_failing_or_down_fails_closed_with_503() {
    let sim = sim().await;
    let genesys = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(USERS_ME))
        .and(header("authorization", "Bearer slow-token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(user("div-a"))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&genesys)
        .await;
    Mock::given(method("GET"))
        .and(path(USERS_ME))
        .and(header("authorization", "Bearer error-token"))
        .respond_with(ResponseTemplate::new(503))
        .mount(&genesys)
        .await;
    Mock::given(method("GET"))
        .and(path(USERS_ME))
        .and(header("authorization", "Bearer garbage-token"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>"))
        .mount(&genesys)
        .await;
    let app = genesys_app(&sim, &genesys.uri()).await;
    seed_room(&sim, "room1");

    let started = Instant::now();
    let response = lookup(&app, "room1", Some("slow-token")).await;
    let elapsed = started.elapsed();
    assert_eq!(response.headers()["retry-after"], "5");
    problem(response, 503).await;
    assert!(
        elapsed >= Duration::from_secs(2) && elapsed < Duration::from_secs(5),
        "gave up after the 3 s lookup timeout, took {elapsed:?}"
    );
    problem(lookup(&app, "room1", Some("error-token")).await, 503).await;
    problem(lookup(&app, "room1", Some("garbage-token")).await, 503).await;

    // Genesys gone entirely: a port nobody listens on.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let down = genesys_app(&sim, &closed).await;
    let body = problem(lookup(&down, "room1", Some("any-token")).await, 503).await;
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    assert_eq!(
        sim.sim.stats().requests,
        0,
        "no room data without a verdict"
    );
}

#[tokio::test]
async fn the_lookup_is_disabled_without_allowed_divisions() {
    let sim = sim().await;
    let genesys = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(user("div-a")))
        .expect(0)
        .mount(&genesys)
        .await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("GENESYS_API_BASE", &genesys.uri())]).await;
    seed_room(&sim, "room1");
    problem(lookup(&app, "room1", Some("agent-token")).await, 404).await;
    genesys.verify().await;
}

// ---- event sink ----

async fn sink_app(sim: &SimServer, extra: &[(&str, &str)]) -> TestApp {
    let mut env = vec![
        ("EVENT_SINK_USERNAME", SINK_USER),
        ("EVENT_SINK_PASSWORD", SINK_PASSWORD),
    ];
    env.extend_from_slice(extra);
    TestApp::spawn_with(&sim.base_url(), &env).await
}

async fn post_event(app: &TestApp, auth: Option<(&str, &str)>, body: &str) -> reqwest::Response {
    let mut request = app
        .http
        .post(format!("{}/api/public/event_sink", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some((user, password)) = auth {
        request = request.basic_auth(user, Some(password));
    }
    request.send().await.unwrap()
}

fn ended(name: &str) -> String {
    json!({"event": "conference_ended", "node": "10.0.0.5", "seq": 42, "version": 1,
           "time": 1_700_000_000.5, "data": {"name": name, "service_type": "conference",
           "start_time": 1_699_999_000.0, "end_time": 1_700_000_000.0}})
    .to_string()
}

/// Every message on the deletion queue, visible or not, decoded to its room name.
async fn queued_names(app: &TestApp) -> Vec<String> {
    let got = app
        .deletions
        .receive(32, Duration::from_secs(5))
        .await
        .unwrap();
    let mut names = Vec::new();
    for msg in &got {
        app.deletions.release(msg, Duration::ZERO).await.unwrap();
        let bytes = STANDARD.decode(&msg.text).expect("base64");
        names.push(String::from_utf8(bytes).unwrap());
    }
    names.sort();
    names
}

#[tokio::test]
async fn conference_ended_queues_the_room_for_after_the_grace_period() {
    let sim = sim().await;
    let app = sink_app(&sim, &[]).await;
    let response = post_event(&app, Some((SINK_USER, SINK_PASSWORD)), &ended("room1")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 1);
    // Invisible for GC_GRACE_SECS (default 600): not due yet.
    assert!(app.deletions.peek(32).await.unwrap().is_empty());
    assert_eq!(sim.sim.stats().requests, 0, "the sink never calls Pexip");
}

#[tokio::test]
async fn only_conference_ended_acts_and_every_event_is_acknowledged() {
    let sim = sim().await;
    let app = sink_app(&sim, &[("GC_GRACE_SECS", "0")]).await;
    let auth = Some((SINK_USER, SINK_PASSWORD));
    let events = [
        json!({"event": "participant_connected", "data": {"conference": "room9"}}),
        json!({"event": "conference_started", "data": {"name": "room9"}}),
        json!({"event": "eventsink_started", "data": {}}),
        json!({"event": "conference_ended", "data": {"name": "test_lobby"}}),
        json!({"event": "conference_ended", "data": {"name": "vkiosk_3"}}),
        json!({"event": "conference_ended", "data": {"name": "../../etc"}}),
        json!({"event": "conference_ended", "data": {"name": ""}}),
        json!({"event": "conference_ended", "data": {}}),
        json!({"event": "conference_ended"}),
        json!({"data": {"name": "room9"}}),
        json!({"event": "conference_ended", "data": {"conference": "room-from-conference"}}),
        json!({"event": "conference_ended", "data": {"name": "room-by-name", "conference": "other"}}),
    ];
    for event in &events {
        let response = post_event(&app, auth, &event.to_string()).await;
        assert_eq!(response.status(), 200, "{event}");
    }
    // Pexip's bulk mode: a list of events.
    let list = json!([
        {"event": "participant_disconnected", "data": {"conference": "x"}},
        {"event": "conference_ended", "data": {"name": "room-in-list"}},
    ]);
    assert_eq!(
        post_event(&app, auth, &list.to_string()).await.status(),
        200
    );
    assert_eq!(
        queued_names(&app).await,
        ["room-by-name", "room-from-conference", "room-in-list"]
    );

    for bad in ["not json", "", "42", r#""conference_ended""#] {
        let body = problem(post_event(&app, auth, bad).await, 400).await;
        assert_eq!(body["type"], "urn:maxconf:problem:event", "{bad}");
    }
}

#[tokio::test]
async fn a_replayed_event_is_acknowledged_twice() {
    let sim = sim().await;
    let app = sink_app(&sim, &[("GC_GRACE_SECS", "0")]).await;
    for _ in 0..2 {
        let response = post_event(&app, Some((SINK_USER, SINK_PASSWORD)), &ended("room1")).await;
        assert_eq!(response.status(), 200);
    }
    // Two messages for one room; GC deletes it once and counts the second as gone (tests/gc.rs).
    assert_eq!(queued_names(&app).await, ["room1", "room1"]);
}

#[tokio::test]
async fn wrong_or_missing_basic_credentials_are_401_and_queue_nothing() {
    let sim = sim().await;
    let app = sink_app(&sim, &[("GC_GRACE_SECS", "0")]).await;
    let cases: [Option<(&str, &str)>; 5] = [
        None,
        Some((SINK_USER, "wrong")),
        Some(("someone", SINK_PASSWORD)),
        Some((SINK_USER, "")),
        Some((SINK_USER, &SINK_PASSWORD[..SINK_PASSWORD.len() - 1])),
    ];
    for auth in cases {
        let response = post_event(&app, auth, &ended("room1")).await;
        assert_eq!(
            response.headers()["www-authenticate"],
            "Basic realm=\"maxconf event sink\""
        );
        let body = problem(response, 401).await;
        assert!(!body.to_string().contains(SINK_PASSWORD));
    }
    let bearer = app
        .http
        .post(format!("{}/api/public/event_sink", app.base))
        .bearer_auth(SINK_PASSWORD)
        .body(ended("room1"))
        .send()
        .await
        .unwrap();
    problem(bearer, 401).await;
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 0);
}

#[tokio::test]
async fn the_sink_is_disabled_without_credentials() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let response = post_event(&app, Some((SINK_USER, SINK_PASSWORD)), &ended("room1")).await;
    problem(response, 404).await;
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 0);
    // Wrong methods on public routes are 405s like everywhere else.
    let app = sink_app(&sim, &[]).await;
    let get = app
        .http
        .get(format!("{}/api/public/event_sink", app.base))
        .send()
        .await
        .unwrap();
    problem(get, 405).await;
}
