//! Room reads and updates, and the collection routes (`/api/rooms`, bulk create, bulk delete),
//! driven as the Functions host forwards them, against a real Azurite and the Pexip simulator.

mod common;

use std::time::{Duration, Instant};

use common::app::{TestApp, problem};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use reqwest::Method;
use serde_json::{Value, json};

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

fn room(name: &str) -> Value {
    json!({"name": name, "service_type": "conference", "allow_guests": true, "pin": "482913",
           "guest_pin": "120931", "tag": "https://id.gov.bc.ca/idcheck/protected/video/x",
           "description": "maxconf:allocated:2026-01-01T00:00:00Z", "participant_limit": 4,
           "aliases": [{"alias": name}]})
}

async fn get(app: &TestApp, path: &str) -> reqwest::Response {
    app.request(Method::GET, path).send().await.unwrap()
}

async fn patch(app: &TestApp, name: &str, body: &str) -> reqwest::Response {
    app.request(Method::PATCH, &format!("/api/room/{name}"))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
}

/// The keys of a JSON object in the order the text has them.
fn key_order(text: &str, object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object.as_object().unwrap().keys().cloned().collect();
    keys.sort_by_key(|k| text.find(&format!("\"{k}\":")).unwrap());
    keys
}

#[tokio::test]
async fn get_answers_the_constrained_room_with_host_pin_or_the_raw_object() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let id = sim.sim.insert_room(room("MTIzNDU2LDc2NTQzMg")).unwrap();
    let stored = sim.sim.room_by_name("MTIzNDU2LDc2NTQzMg").unwrap();

    for path in [
        "/api/room/MTIzNDU2LDc2NTQzMg",
        "/api/room/MTIzNDU2LDc2NTQzMg?constrained_attributes=true",
        "/api/room/MTIzNDU2LDc2NTQzMg?constrained_attributes=True",
    ] {
        let response = get(&app, path).await;
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let text = response.text().await.unwrap();
        let body: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            key_order(&text, &body),
            [
                "id",
                "name",
                "service_type",
                "allow_guests",
                "pin",
                "guest_pin",
                "tag",
                "aliases"
            ]
        );
        assert_eq!(body["id"], id);
        assert_eq!(body["pin"], "482913", "GET includes the host pin");
        assert_eq!(body["guest_pin"], "120931");
        assert_eq!(body["tag"], stored["tag"]);
        assert_eq!(body["aliases"], stored["aliases"]);
    }

    for path in [
        "/api/room/MTIzNDU2LDc2NTQzMg?constrained_attributes=false",
        "/api/room/MTIzNDU2LDc2NTQzMg?constrained_attributes=False",
    ] {
        let body: Value = get(&app, path).await.json().await.unwrap();
        assert_eq!(body, stored, "the Pexip object as Pexip gave it");
        assert_eq!(body["participant_limit"], 4);
    }
}

#[tokio::test]
async fn get_rejects_bad_input_and_unknown_rooms() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    sim.sim.insert_room(room("room1")).unwrap();
    for query in [
        "constrained_attributes=maybe",
        "constrained_attributes=",
        "constrained_attributes=1",
        "constrained_attributes=true&constrained_attributes=false",
    ] {
        let body = problem(get(&app, &format!("/api/room/room1?{query}")).await, 400).await;
        assert_eq!(
            body["type"], "urn:maxconf:problem:constrained-attributes",
            "{query}"
        );
    }
    for name in ["a%20b", "a%2Fb", &"a".repeat(251)] {
        let body = problem(get(&app, &format!("/api/room/{name}")).await, 400).await;
        assert_eq!(body["type"], "urn:maxconf:problem:room-name");
    }
    assert_eq!(
        sim.sim.stats().requests,
        0,
        "rejected before any Pexip call"
    );
    let body = problem(get(&app, "/api/room/nope").await, 404).await;
    assert_eq!(body["detail"], "room nope does not exist");

    sim.sim.set_down(true);
    let response = get(&app, "/api/room/room1").await;
    assert_eq!(response.headers()["retry-after"], "5");
    problem(response, 503).await;
}

#[tokio::test]
async fn a_room_named_create_can_be_read_patched_and_deleted() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    problem(get(&app, "/api/room/create").await, 404).await;
    problem(patch(&app, "create", r#"{"tag": "t"}"#).await, 404).await;

    sim.sim.insert_room(room("create")).unwrap();
    let body: Value = get(&app, "/api/room/create").await.json().await.unwrap();
    assert_eq!(body["name"], "create");
    assert_eq!(
        patch(&app, "create", r#"{"tag": "t2"}"#).await.status(),
        202
    );
    assert_eq!(sim.sim.room_by_name("create").unwrap()["tag"], "t2");
    assert_eq!(app.delete_room("create").await.status(), 204);

    // Other methods on the static route stay 405; unknown paths 404, both problem+json.
    problem(
        app.request(Method::PUT, "/api/room/create")
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    problem(
        app.request(Method::POST, "/api/room/room1")
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    problem(get(&app, "/api/room/a/b").await, 404).await;
    problem(get(&app, "/api/roomz").await, 404).await;
}

#[tokio::test]
async fn patch_changes_the_allowed_fields_with_202_and_no_body() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let id = sim.sim.insert_room(room("room1")).unwrap();
    sim.sim.clear_request_log();

    let response = patch(
        &app,
        "room1",
        r#"{"tag": "new-tag", "description": "d", "pin": "1234#", "guest_pin": "98765432",
            "allow_guests": false, "participant_limit": null}"#,
    )
    .await;
    assert_eq!(response.status(), 202);
    assert!(response.text().await.unwrap().is_empty());
    let stored = sim.sim.room_by_name("room1").unwrap();
    assert_eq!(stored["tag"], "new-tag");
    assert_eq!(stored["description"], "d");
    assert_eq!(stored["pin"], "1234#");
    assert_eq!(stored["guest_pin"], "98765432");
    assert_eq!(stored["allow_guests"], false);
    assert_eq!(stored["participant_limit"], Value::Null);
    let log: Vec<(String, String)> = sim
        .sim
        .request_log()
        .into_iter()
        .map(|r| (r.method, r.path_and_query))
        .collect();
    assert_eq!(
        log,
        [
            (
                "GET".to_owned(),
                "/api/admin/configuration/v1/conference/?name=room1".to_owned()
            ),
            (
                "PATCH".to_owned(),
                format!("/api/admin/configuration/v1/conference/{id}/")
            ),
        ]
    );

    // Limits are inclusive.
    let max = json!({"tag": "t".repeat(250), "description": "d".repeat(250),
                     "pin": "1".repeat(20), "participant_limit": 0});
    assert_eq!(patch(&app, "room1", &max.to_string()).await.status(), 202);
}

#[tokio::test]
async fn patch_validation_table() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    sim.sim.insert_room(room("room1")).unwrap();
    let before = sim.sim.room_by_name("room1").unwrap();
    sim.sim.reset_stats();

    let long = "x".repeat(251);
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "JSON object"),
        ("not json".into(), "JSON object"),
        ("[1]".into(), "JSON object"),
        (r#""tag""#.into(), "JSON object"),
        ("{}".into(), "at least one"),
        (r#"{"name": "other"}"#.into(), "`name`"),
        (r#"{"aliases": []}"#.into(), "`aliases`"),
        (r#"{"service_type": "lecture"}"#.into(), "`service_type`"),
        (r#"{"tag": "ok", "ivr_theme": null}"#.into(), "`ivr_theme`"),
        (json!({"tag": long}).to_string(), "`tag`"),
        (json!({"description": long}).to_string(), "`description`"),
        (r#"{"tag": null}"#.into(), "`tag`"),
        (r#"{"tag": 5}"#.into(), "`tag`"),
        (r#"{"pin": "123"}"#.into(), "`pin`"),
        (r#"{"pin": "123456789012345678901"}"#.into(), "`pin`"),
        (r#"{"pin": "12a4"}"#.into(), "`pin`"),
        (r#"{"pin": "12#4"}"#.into(), "`pin`"),
        (r#"{"pin": ""}"#.into(), "`pin`"),
        (r#"{"pin": 1234}"#.into(), "`pin`"),
        (r#"{"guest_pin": "abcd"}"#.into(), "`guest_pin`"),
        (r#"{"guest_pin": null}"#.into(), "`guest_pin`"),
        (
            r#"{"pin": "4444", "guest_pin": "4444"}"#.into(),
            "different",
        ),
        (r#"{"allow_guests": "yes"}"#.into(), "`allow_guests`"),
        (r#"{"allow_guests": 1}"#.into(), "`allow_guests`"),
        (r#"{"participant_limit": -1}"#.into(), "`participant_limit`"),
        (
            r#"{"participant_limit": 1.5}"#.into(),
            "`participant_limit`",
        ),
        (
            r#"{"participant_limit": "5"}"#.into(),
            "`participant_limit`",
        ),
    ];
    for (body, needle) in &cases {
        let problem = problem(patch(&app, "room1", body).await, 400).await;
        assert_eq!(problem["type"], "urn:maxconf:problem:room-update", "{body}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(needle), "{body}: {detail}");
    }
    assert_eq!(
        sim.sim.stats().requests,
        0,
        "no Pexip call for invalid input"
    );
    assert_eq!(sim.sim.room_by_name("room1").unwrap(), before);

    // A too-large body is 413, still problem+json.
    let huge = json!({"tag": "x".repeat(70_000)}).to_string();
    problem(patch(&app, "room1", &huge).await, 413).await;
}

#[tokio::test]
async fn patch_refuses_persistent_and_unknown_rooms_and_reports_pexip_refusals() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    for name in ["test_lobby", "vkiosk_7"] {
        sim.sim.insert_room(room(name)).unwrap();
        let body = problem(patch(&app, name, r#"{"tag": "x"}"#).await, 403).await;
        assert!(body["detail"].as_str().unwrap().contains("persistent"));
    }
    assert_eq!(
        sim.sim.stats().requests,
        0,
        "persistent refused before any Pexip call"
    );
    problem(patch(&app, "nope", r#"{"tag": "x"}"#).await, 404).await;

    // Pexip's own cross-field rule (host PIN equal to the stored guest PIN): 400 naming the
    // field, without Pexip's body.
    sim.sim.insert_room(room("room1")).unwrap();
    let body = problem(patch(&app, "room1", r#"{"pin": "120931"}"#).await, 400).await;
    let detail = body["detail"].as_str().unwrap();
    assert!(detail.contains("guest_pin"), "{detail}");
    assert!(!detail.contains("must be different"), "{detail}");
    assert_eq!(sim.sim.room_by_name("room1").unwrap()["pin"], "482913");
}

#[tokio::test]
async fn list_pages_through_pexip_in_both_shapes() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    for i in 0..45 {
        sim.sim.insert_room(room(&format!("room{i:02}"))).unwrap();
    }
    sim.sim.reset_stats();
    let response = get(&app, "/api/rooms").await;
    assert_eq!(response.status(), 200);
    let body: Vec<Value> = response.json().await.unwrap();
    assert_eq!(body.len(), 45);
    // Pages of 500 (paging through meta.next itself: tests/pexip_client.rs).
    assert_eq!(sim.sim.stats().count("GET"), 1, "one page of up to 500");
    let mut names: Vec<&str> = body.iter().map(|r| r["name"].as_str().unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 45);
    for r in &body {
        assert_eq!(r["pin"], "482913");
        assert!(r.get("description").is_none(), "constrained shape: {r}");
    }

    let raw: Vec<Value> = get(&app, "/api/rooms?constrained_attributes=false")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(raw, sim.sim.rooms());

    problem(get(&app, "/api/rooms?constrained_attributes=no").await, 400).await;
    sim.sim.set_down(true);
    problem(get(&app, "/api/rooms").await, 503).await;
}

#[tokio::test]
async fn list_of_no_rooms_is_an_empty_array() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let body: Value = get(&app, "/api/rooms").await.json().await.unwrap();
    assert_eq!(body, json!([]));
}

#[tokio::test]
async fn bulk_answers_202_then_fills_the_pool_within_the_concurrency_cap() {
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("PEXIP_MAX_CONCURRENCY", "3"), ("POOL_WARMUP_SECS", "60")],
    )
    .await;
    // Each room takes three Pexip round trips and at most two are made at once: with this
    // latency the 12 rooms take seconds, so an answer that waited for them would be caught.
    sim.sim.set_latency(Duration::from_millis(100));
    let response = app
        .request(Method::POST, "/api/rooms/bulk")
        .json(&json!({"count": 12}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert!(
        sim.sim.room_count() < 12,
        "answered before the rooms were made"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"accepted": 12}));

    app.wait_pool_count(12).await;
    assert_eq!(sim.sim.room_count(), 12);
    assert!(sim.sim.stats().max_in_flight <= 3, "{:?}", sim.sim.stats());
    // Enqueued with the warm-up: none is visible yet.
    assert!(app.pool.peek(32).await.unwrap().is_empty());
    // Each carries its state on its alias from its POST, and leaves the description to callers.
    for room in sim.sim.rooms() {
        assert_eq!(room["description"], "");
        assert!(
            room["aliases"][0]["description"]
                .as_str()
                .unwrap()
                .starts_with("maxconf:created:"),
            "{room}"
        );
    }
}

#[tokio::test]
async fn bulk_rejects_counts_outside_1_to_500() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    for body in [
        r#"{"count": 0}"#,
        r#"{"count": 501}"#,
        r#"{"count": -1}"#,
        r#"{"count": 1.5}"#,
        r#"{"count": "3"}"#,
        r#"{"count": null}"#,
        r#"{}"#,
        r#"[3]"#,
        "3",
        "nope",
        "",
    ] {
        let response = app
            .request(Method::POST, "/api/rooms/bulk")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = problem(response, 400).await;
        assert_eq!(problem["type"], "urn:maxconf:problem:bulk-count", "{body}");
    }
    let response = app
        .request(Method::POST, "/api/rooms/bulk")
        .json(&json!({"count": 500}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(sim.sim.stats().collection_deletes, 0);
}

#[tokio::test]
async fn bulk_delete_needs_confirm_and_spares_persistent_rooms() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(3).await;
    for name in ["test_lobby", "vkiosk_1", "handed-out-1", "handed-out-2"] {
        sim.sim.insert_room(room(name)).unwrap();
    }
    sim.sim.reset_stats();

    for path in [
        "/api/rooms",
        "/api/rooms?confirm=false",
        "/api/rooms?confirm=yes",
        "/api/rooms?confirm=True",
        "/api/rooms?confirmed=true",
    ] {
        let response = app.request(Method::DELETE, path).send().await.unwrap();
        let body = problem(response, 400).await;
        assert_eq!(body["type"], "urn:maxconf:problem:confirm", "{path}");
    }
    assert_eq!(sim.sim.stats().requests, 0);
    assert_eq!(app.pool.approximate_count().await.unwrap(), 3);
    assert_eq!(sim.sim.room_count(), 7);

    let response = app
        .request(Method::DELETE, "/api/rooms?confirm=true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"deleted": 5, "failed": 0}));
    let mut left: Vec<String> = sim
        .sim
        .rooms()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["test_lobby", "vkiosk_1"]);
    assert_eq!(app.pool.approximate_count().await.unwrap(), 0);
    assert_eq!(sim.sim.stats().collection_deletes, 0, "one DELETE per room");
    assert_eq!(sim.sim.stats().count("DELETE"), 5);

    // With the pool cleared, a create cannot hand out a deleted room.
    let create = app
        .create(common::app::SPEC_UUI)
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert!(
        sim.sim
            .room_by_name(create["name"].as_str().unwrap())
            .is_some()
    );
}

#[tokio::test]
async fn bulk_delete_stops_starting_deletes_once_pexip_is_down() {
    let sim = sim().await;
    // One delete at a time (all Pexip slots but one).
    let app = TestApp::spawn_with(&sim.base_url(), &[("PEXIP_MAX_CONCURRENCY", "2")]).await;
    for i in 0..6 {
        sim.sim.insert_room(room(&format!("room{i}"))).unwrap();
    }
    sim.sim.set_latency(Duration::from_millis(200));
    let request = tokio::spawn({
        let request = app.request(Method::DELETE, "/api/rooms?confirm=true");
        async move { request.send().await.unwrap() }
    });
    // The simulator does the work before its latency: once the first DELETE arrived, it
    // succeeds; everything after it finds Pexip down.
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.sim.stats().count("DELETE") == 0 {
        assert!(Instant::now() < deadline, "no DELETE arrived");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sim.sim.set_down(true);
    let response = request.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"deleted": 1, "failed": 5}));
    assert_eq!(sim.sim.room_count(), 5);
    // The second delete with its retries, then nothing more.
    assert!(
        sim.sim.stats().count("DELETE") <= 4,
        "{:?}",
        sim.sim.stats()
    );
    assert_eq!(sim.sim.stats().collection_deletes, 0);
}
