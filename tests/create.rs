//! `POST /api/room/create` driven as the Functions host forwards it, against a real Azurite
//! and the Pexip simulator over HTTP.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::app::{SPEC_TAG, SPEC_UUI, TestApp, problem};
use maxconf::pool::message::{PoolMessage, PooledRoom, decode};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

fn uui(text: &str) -> String {
    hex::encode(text)
}

#[tokio::test]
async fn hands_out_a_pool_room_in_the_compatible_shape() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(1).await;
    let pooled = match decode(&app.pool_texts().await[0]).unwrap() {
        PoolMessage::Room(room) => room,
        other => panic!("seeded message is {other:?}"),
    };

    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let text = response.text().await.unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();

    // Key order and set as the original API answered; no host PIN.
    let expected = [
        "id",
        "name",
        "service_type",
        "allow_guests",
        "guest_pin",
        "tag",
        "aliases",
    ];
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_by_key(|k| text.find(&format!("\"{k}\":")).unwrap());
    assert_eq!(keys, expected);
    let stored = sim.sim.room_by_name(&pooled.name).expect("room in Pexip");
    assert_eq!(body["id"], pooled.id);
    assert_eq!(body["name"], pooled.name);
    assert_eq!(body["service_type"], "conference");
    assert_eq!(body["allow_guests"], true);
    assert_eq!(body["guest_pin"], stored["guest_pin"]);
    assert_eq!(body["tag"], SPEC_TAG);
    let alias = &body["aliases"][0];
    assert_eq!(alias["alias"], pooled.name);
    assert_eq!(alias["id"], stored["aliases"][0]["id"]);
    assert_eq!(
        alias["conference"],
        format!("/api/admin/configuration/v1/conference/{}/", pooled.id)
    );
    assert_eq!(
        alias["creation_time"],
        stored["aliases"][0]["creation_time"]
    );
    assert_eq!(alias["description"], "");
    assert!(
        !text.contains(stored["pin"].as_str().unwrap()),
        "host pin leaked: {text}"
    );

    // Pexip holds the tag; the room's description stays the callers'. A pool handout writes
    // nothing else to Pexip: the alias keeps `created` (the maintainer records the handout in
    // storage, tests/maintain.rs).
    assert_eq!(stored["tag"], SPEC_TAG);
    assert_eq!(stored["description"], "");
    assert!(
        app.state
            .broker
            .finish_background_work(std::time::Duration::from_secs(10))
            .await
    );
    let stored = sim.sim.room_by_name(&pooled.name).unwrap();
    let state = stored["aliases"][0]["description"].as_str().unwrap();
    assert!(state.starts_with("maxconf:created:20"), "{stored}");
}

#[tokio::test]
async fn every_uui_rule_is_a_400_before_any_queue_or_pexip_call() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(1).await;
    sim.sim.reset_stats();

    let long_id = "a".repeat(129);
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "uui-missing"),
        (
            format!("{}&uuiData={}", uui("id&a"), uui("id&b")),
            "uui-repeated",
        ),
        ("ab".repeat(600), "uui-too-long"),
        (format!("{};encoding=base64", uui("id&a")), "uui-parameter"),
        (format!("{};foo=bar", uui("id&a")), "uui-parameter"),
        ("xyz1".into(), "uui-not-hex"),
        ("abc".into(), "uui-not-hex"),
        ("fffe".into(), "uui-not-utf8"),
        (uui("idMTIz"), "uui-format"),
        (uui("evil&MTIz"), "uui-host"),
        (uui("id&"), "uui-video-call-id"),
        (uui("id&MT Iz"), "uui-video-call-id"),
        (uui(&format!("id&{long_id}")), "uui-video-call-id"),
        (uui("id&../../admin"), "uui-video-call-id"),
    ];
    for (value, rule) in &cases {
        let path = if value.is_empty() {
            "/api/room/create".to_owned()
        } else {
            format!("/api/room/create?uuiData={value}")
        };
        let response = app
            .request(reqwest::Method::POST, &path)
            .send()
            .await
            .unwrap();
        let body = problem(response, 400).await;
        assert_eq!(
            body["type"],
            format!("urn:maxconf:problem:{rule}"),
            "{value}"
        );
        assert!(
            body["detail"].as_str().unwrap().contains("uuiData") || *rule == "uui-tag-too-long"
        );
    }
    assert_eq!(
        sim.sim.stats().requests,
        0,
        "no Pexip call for invalid input"
    );
    // The seeded room is still there, visible, untouched.
    assert_eq!(app.pool_texts().await.len(), 1);
}

#[tokio::test]
async fn uui_accepts_upper_case_hex_and_no_suffix() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(2).await;
    let upper = app
        .create("6964264D54497A4E4455324C4463324E54517A4D67;ENCODING=HEX")
        .await;
    assert_eq!(upper.status(), 200);
    let bare = app.create(&uui("idtest&abc_=+/-")).await;
    assert_eq!(bare.status(), 200);
    let body: Value = bare.json().await.unwrap();
    assert_eq!(
        body["tag"],
        "https://idtest.gov.bc.ca/idcheck/protected/video/abc_=+/-"
    );
}

#[tokio::test]
async fn concurrent_creates_never_share_a_room() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    app.seed(12).await;
    // Refills (no warm-up here) may add a few more rooms while the creates run.
    let app = std::sync::Arc::new(app);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            app.create(&uui(&format!("id&call{i}"))).await
        }));
    }
    let mut ids = HashSet::new();
    let mut rejected = 0;
    for task in tasks {
        let response = task.await.unwrap();
        match response.status().as_u16() {
            200 => {
                let body: Value = response.json().await.unwrap();
                assert!(
                    ids.insert(body["id"].as_u64().unwrap()),
                    "room handed out twice: {body}"
                );
            }
            503 => rejected += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    // Refills run concurrently and (with no warm-up) may serve a few late creates.
    assert!(ids.len() >= 12, "only {} rooms handed out", ids.len());
    assert_eq!(ids.len() + rejected, 20);
    // Each handed-out room carries its own caller's tag in Pexip.
    let tags: HashSet<String> = sim
        .sim
        .rooms()
        .iter()
        .filter(|r| ids.contains(&r["id"].as_u64().unwrap()))
        .map(|r| r["tag"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(tags.len(), ids.len());
}

#[tokio::test]
async fn stale_pool_rooms_are_skipped_and_discarded() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    // Two messages whose rooms were deleted behind the pool's back, then a good one.
    app.seed(3).await;
    let texts = app.pool_texts().await;
    let rooms: Vec<PooledRoom> = texts
        .iter()
        .map(|t| match decode(t).unwrap() {
            PoolMessage::Room(r) => r,
            other => panic!("{other:?}"),
        })
        .collect();
    let mut deleted = HashSet::new();
    for room in &rooms[..2] {
        let response = app.delete_room(&room.name).await;
        assert_eq!(response.status(), 204);
        deleted.insert(room.id);
    }

    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let id = body["id"].as_u64().unwrap();
    assert!(!deleted.contains(&id));
    assert!(rooms.iter().any(|r| r.id == id));
    // The stale messages are gone; only the refill's new message remains eventually.
    app.wait_pool_count(1).await;
}

#[tokio::test]
async fn gives_up_after_five_stale_messages() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    for id in 1000..1007u64 {
        let stale = PooledRoom {
            v: 1,
            id,
            name: format!("gone{id}"),
            service_type: "conference".into(),
            allow_guests: true,
            guest_pin: "1234".into(),
            aliases: vec![],
        };
        app.pool
            .send(&stale.encode(), Duration::ZERO)
            .await
            .unwrap();
    }
    let body = problem(app.create(SPEC_UUI).await, 503).await;
    assert_eq!(body["type"], "urn:maxconf:problem:unavailable");
    // Exactly five were looked at (PATCHed) and discarded; two remain.
    assert_eq!(sim.sim.stats().count("PATCH"), 5);
    app.wait_pool_count(2).await;
}

#[tokio::test]
async fn a_failed_patch_puts_the_room_back() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    app.seed(1).await;
    let before = app.pool_texts().await;
    // Every retry of the PATCH fails.
    sim.sim.fail_next(3, 500);
    let response = app.create(SPEC_UUI).await;
    assert!(response.headers().contains_key("retry-after"));
    let body = problem(response, 503).await;
    assert!(
        !body.to_string().contains("500"),
        "upstream status leaked: {body}"
    );
    // The room is back in the pool (same content) and the next create gets it.
    assert_eq!(app.wait_pool_texts(1).await, before);
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let room: Value = response.json().await.unwrap();
    match decode(&before[0]).unwrap() {
        PoolMessage::Room(r) => assert_eq!(room["id"], r.id),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_patch_that_recovers_within_retries_hands_the_room_out() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(1).await;
    sim.sim.fail_next(2, 503);
    assert_eq!(app.create(SPEC_UUI).await.status(), 200);
}

#[tokio::test]
async fn pexip_unreachable_is_503_and_the_message_stays() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(1).await;
    sim.sim.set_down(true);
    problem(app.create(SPEC_UUI).await, 503).await;
    sim.sim.set_down(false);
    app.wait_pool_texts(1).await;
}

#[tokio::test]
async fn storage_unreachable_is_503_without_pexip_calls() {
    let sim = sim().await;
    let env = common::app::unreachable_storage_env(&sim.base_url());
    let app = TestApp::spawn_env(env).await;
    sim.sim.reset_stats();
    let body = problem(app.create(SPEC_UUI).await, 503).await;
    assert_eq!(body["detail"], "the room pool is unavailable");
    assert_eq!(sim.sim.stats().requests, 0);
}

#[tokio::test]
async fn empty_pool_creates_on_demand_by_default() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("pin").is_none());
    assert_eq!(body["tag"], SPEC_TAG);
    let stored = sim
        .sim
        .room_by_name(body["name"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored["tag"], SPEC_TAG);
    assert_eq!(stored["allow_guests"], true);
    assert_eq!(stored["guest_pin"], body["guest_pin"]);
    assert!(
        stored["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:allocated:")
    );
    // The empty pool is topped up by one room in the background.
    app.wait_pool_count(1).await;
}

#[tokio::test]
async fn empty_pool_rejects_when_configured() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.headers()["retry-after"], "5");
    let body = problem(response, 503).await;
    assert_eq!(body["detail"], "the room pool is empty; try again");
    assert_eq!(sim.sim.stats().requests, 0);
}

#[tokio::test]
async fn refill_enqueues_base64_json_with_ttl_forever_and_warm_up() {
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[
            ("POOL_WARMUP_SECS", "2"),
            ("ROOM_NAME_PREFIX", "mc_"),
            ("ROOM_PIN_LENGTH", "8"),
            (
                "ROOM_TEMPLATE",
                r#"{"host_view":"one_main_zero_pips","call_type":"video"}"#,
            ),
        ],
    )
    .await;
    let name = app.state.broker.refill_one().await.unwrap();
    assert!(name.starts_with("mc_") && name.len() == 19, "{name}");

    // Warm-up: counted, but not receivable yet.
    assert_eq!(app.pool.approximate_count().await.unwrap(), 1);
    assert!(
        app.pool
            .receive(1, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty()
    );
    let msg = loop {
        let got = app.pool.receive(1, Duration::from_secs(5)).await.unwrap();
        if let Some(m) = got.into_iter().next() {
            break m;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let expires = msg.expires_at.expect("expiry reported");
    assert!(
        expires.year() >= 9999,
        "TTL -1 means never expires: {expires}"
    );

    let json: Value = serde_json::from_slice(&STANDARD.decode(&msg.text).unwrap()).unwrap();
    let stored = sim.sim.room_by_name(&name).unwrap();
    assert_eq!(
        json,
        json!({"v": 1, "id": stored["id"], "name": name, "service_type": "conference",
               "allow_guests": true, "guest_pin": stored["guest_pin"], "aliases": stored["aliases"]})
    );
    // The room in Pexip as SPEC.md builds it.
    assert_eq!(stored["pin"].as_str().unwrap().len(), 8);
    assert_eq!(stored["guest_pin"].as_str().unwrap().len(), 8);
    assert_ne!(stored["pin"], stored["guest_pin"]);
    assert_eq!(stored["aliases"][0]["alias"], name);
    assert_eq!(stored["host_view"], "one_main_zero_pips");
    assert_eq!(stored["call_type"], "video");
    assert_eq!(stored["tag"], "");
    assert_eq!(stored["description"], "");
    assert!(
        stored["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:created:")
    );
}

#[tokio::test]
async fn each_handout_is_replaced_after_the_response() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(3).await;
    for _ in 0..3 {
        assert_eq!(app.create(SPEC_UUI).await.status(), 200);
    }
    app.wait_pool_count(3).await;
    assert_eq!(sim.sim.room_count(), 6);
}

#[tokio::test]
async fn legacy_name_messages_are_read_from_pexip() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let id = sim
        .sim
        .insert_room(json!({"name": "MTIzNDU2LDc2NTQzMg", "allow_guests": true,
            "pin": "111111", "guest_pin": "222222", "aliases": [{"alias": "MTIzNDU2LDc2NTQzMg"}]}))
        .unwrap();
    // As the original system wrote it: the bare name, base64-encoded.
    app.pool
        .send(&STANDARD.encode("MTIzNDU2LDc2NTQzMg"), Duration::ZERO)
        .await
        .unwrap();
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], id);
    assert_eq!(body["guest_pin"], "222222");
    assert!(body.get("pin").is_none());
}

#[tokio::test]
async fn persistent_and_undecodable_messages_are_never_handed_out() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    sim.sim
        .insert_room(json!({"name": "test_kiosk", "aliases": [{"alias": "test_kiosk"}]}))
        .unwrap();
    app.pool.send("test_kiosk", Duration::ZERO).await.unwrap();
    app.pool
        .send("not a room !!", Duration::ZERO)
        .await
        .unwrap();
    problem(app.create(SPEC_UUI).await, 503).await;
    let kiosk = sim.sim.room_by_name("test_kiosk").unwrap();
    assert_eq!(kiosk["tag"], "", "persistent room untouched");
    assert_eq!(
        app.pool.approximate_count().await.unwrap(),
        0,
        "both discarded"
    );
}

#[tokio::test]
async fn the_critical_path_is_one_patch_and_a_room_costs_three_calls() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(1).await;
    let pooled = match decode(&app.pool_texts().await[0]).unwrap() {
        PoolMessage::Room(room) => room,
        other => panic!("{other:?}"),
    };
    sim.sim.clear_request_log();
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    // The first Pexip request is the PATCH of the pooled room (no lookup before it); the
    // refill's POST and GET come after the answer.
    let log = sim.sim.request_log();
    let room_path = format!("/api/admin/configuration/v1/conference/{}/", pooled.id);
    assert_eq!(log[0].method, "PATCH", "{log:?}");
    assert_eq!(log[0].path_and_query, room_path);
    assert!(log[0].has_authorization);
    let patches = log
        .iter()
        .filter(|r| r.method == "PATCH" && r.path_and_query == room_path)
        .count();
    assert_eq!(patches, 1);
    // With its replacement, three Pexip calls per room: the PATCH, then the refill's POST and
    // GET (for the new alias's id and creation time). No handout record in Pexip.
    assert!(
        app.state
            .broker
            .finish_background_work(std::time::Duration::from_secs(10))
            .await
    );
    let calls: Vec<(String, String)> = sim
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.path_and_query.starts_with("/api/"))
        .map(|r| (r.method, r.path_and_query))
        .collect();
    let new_room = app.pool_texts().await;
    let new_id = match decode(&new_room[0]).unwrap() {
        PoolMessage::Room(room) => room.id,
        other => panic!("{other:?}"),
    };
    let collection = "/api/admin/configuration/v1/conference/".to_owned();
    assert_eq!(
        calls,
        [
            ("PATCH".to_owned(), room_path),
            ("POST".to_owned(), collection.clone()),
            ("GET".to_owned(), format!("{collection}{new_id}/")),
        ]
    );
}

#[tokio::test]
async fn a_refill_whose_send_fails_leaves_its_room_for_the_maintainer() {
    // Hazard: a send that "failed" may still have stored its message, so the room is neither
    // deleted (a create could be handing it out) nor re-sent (two messages): it stays
    // `creating`, which the maintainer settles (see tests/maintain.rs).
    let sim = sim().await;
    let env = common::app::unreachable_storage_env(&sim.base_url());
    let app = TestApp::spawn_env(env).await;
    let err = app.state.broker.refill_one().await.unwrap_err();
    assert!(
        matches!(err, maxconf::broker::RefillError::EnqueueFailed { .. }),
        "{err}"
    );
    assert_eq!(sim.sim.stats().count("DELETE"), 0);
    let rooms = sim.sim.rooms();
    assert_eq!(rooms.len(), 1);
    assert!(
        rooms[0]["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:created:")
    );
}

#[tokio::test]
async fn a_legacy_message_for_a_handed_out_room_is_discarded() {
    // The original system's queue may hold two name-only messages for one room.
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    sim.sim
        .insert_room(
            json!({"name": "legacy1", "tag": "https://id.gov.bc.ca/idcheck/protected/video/x",
            "aliases": [{"alias": "legacy1"}]}),
        )
        .unwrap();
    app.pool.send("legacy1", Duration::ZERO).await.unwrap();
    problem(app.create(SPEC_UUI).await, 503).await;
    assert_eq!(
        sim.sim.room_by_name("legacy1").unwrap()["tag"],
        "https://id.gov.bc.ca/idcheck/protected/video/x",
        "the handed-out room keeps its caller's tag"
    );
    assert_eq!(app.pool.approximate_count().await.unwrap(), 0);
}
