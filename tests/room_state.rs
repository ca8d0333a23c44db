//! Caller data and room state (SPEC.md): what callers write comes back exactly as written,
//! and no allowed PATCH changes how maxconf classifies a room. Also the rollback promise:
//! rooms and messages of the previous release (state in the description) still work.

mod common;

use std::time::Duration;

use common::app::{SPEC_TAG, SPEC_UUI, TestApp};
use maxconf::conference::Conference;
use maxconf::maintain::{RoomKind, classify};
use maxconf::pool::message::PooledRoom;
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};

const LONG_AGO: &str = "2020-01-01T00:00:00Z";

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

fn room(sim: &SimServer, name: &str) -> Option<Conference> {
    sim.sim
        .room_by_name(name)
        .map(|r| Conference::from_value(r).unwrap())
}

fn kind(app: &TestApp, sim: &SimServer, name: &str) -> RoomKind {
    classify(
        &room(sim, name).expect("room exists"),
        app.state.broker.settings(),
    )
}

async fn patch_description(app: &TestApp, name: &str, description: &str) {
    let response = app
        .request(reqwest::Method::PATCH, &format!("/api/room/{name}"))
        .json(&json!({ "description": description }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "PATCH {description:?}");
}

async fn get_raw(app: &TestApp, name: &str) -> Value {
    let response = app
        .request(
            reqwest::Method::GET,
            &format!("/api/room/{name}?constrained_attributes=false"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn descriptions() -> Vec<String> {
    vec![
        "verification session notes".into(),
        format!("maxconf:pool:{LONG_AGO}"),
        format!("maxconf:allocated:{LONG_AGO}"),
        format!("maxconf:created:{LONG_AGO}"),
        String::new(),
        "é".repeat(250),
    ]
}

#[tokio::test]
async fn a_callers_description_comes_back_as_written_and_never_changes_the_rooms_class() {
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("POOL_TARGET_SIZE", "1"), ("PEXIP_TIMEOUT_SECS", "1")],
    )
    .await;
    app.seed(1).await;
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let held = body["name"].as_str().unwrap().to_owned();
    // maxconf's own marker never shows in the answer.
    assert_eq!(body["aliases"][0]["description"], "");
    // A pool handout writes only its tag: handed out, its time not yet on record.
    assert_eq!(kind(&app, &sim, &held), RoomKind::Unrecorded);
    app.wait_pool_count(1).await;
    let pooled = sim
        .sim
        .rooms()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .find(|n| *n != held)
        .expect("the refill's room");

    for description in descriptions() {
        for name in [&held, &pooled] {
            let before = kind(&app, &sim, name);
            patch_description(&app, name, &description).await;
            assert_eq!(
                get_raw(&app, name).await["description"],
                description.as_str()
            );
            assert_eq!(
                kind(&app, &sim, name),
                before,
                "{name} after {description:?}"
            );
        }
    }
    assert_eq!(kind(&app, &sim, &held), RoomKind::Unrecorded);
    assert!(matches!(
        kind(&app, &sim, &pooled),
        RoomKind::Unallocated(_)
    ));

    // Two maintainer runs: the held room stays, the pooled one keeps its one message.
    for _ in 0..2 {
        let report = maxconf::maintain::run(&app.state.broker, false).await;
        assert!(!report.failed, "{:?}", report.logs);
    }
    assert!(room(&sim, &held).is_some(), "the caller's room was deleted");
    assert!(room(&sim, &pooled).is_some(), "the pooled room was deleted");

    let texts = app.pool_texts().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["name"],
        pooled.as_str()
    );
}

/// A caller clearing the tag of a pool handout not recorded on its alias: the handout goes on
/// the alias first, so the room (old, with no message) never reads as an orphan, which the
/// maintainer deletes. If that record fails, nothing changes.
#[tokio::test]
async fn clearing_the_tag_of_a_pool_handout_records_it_first() {
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("POOL_TARGET_SIZE", "0"), ("PEXIP_TIMEOUT_SECS", "1")],
    )
    .await;
    let ours = |name: &str, tag: &str| common::app::insert_our_room(&sim.sim, name, tag);
    ours("held", SPEC_TAG);
    // What `held` would be without the record first: an orphan.
    ours("orphan", "");
    let held = "held";
    assert_eq!(kind(&app, &sim, held), RoomKind::Unrecorded);

    // A caller clears the held room's tag. Its handout goes on its alias first, so it never
    // looks like a pool room without a message (an orphan). If that record fails, nothing
    // changes.
    let clear_tag = || {
        app.request(reqwest::Method::PATCH, &format!("/api/room/{held}"))
            .json(&json!({"tag": ""}))
            .send()
    };
    let hold = sim
        .sim
        .hold_next("PATCH", "/api/admin/configuration/v1/conference_alias/");
    let refused = tokio::spawn(clear_tag());
    tokio::time::timeout(Duration::from_secs(10), hold.arrived())
        .await
        .expect("the handout is recorded on the alias before the tag is cleared");
    sim.sim.fail_next(10, 500);
    hold.release();
    let refused = refused.await.unwrap().unwrap();
    assert_eq!(refused.status(), 503);
    sim.sim.clear_faults();
    assert_eq!(room(&sim, held).unwrap().tag, SPEC_TAG);
    assert_eq!(kind(&app, &sim, held), RoomKind::Unrecorded);
    assert_eq!(clear_tag().await.unwrap().status(), 202);
    let cleared = room(&sim, held).unwrap();
    assert_eq!(cleared.tag, "");
    assert!(
        cleared.aliases[0]
            .description
            .starts_with("maxconf:allocated:"),
        "{:?}",
        cleared.aliases[0]
    );
    assert!(matches!(kind(&app, &sim, held), RoomKind::Allocated(_)));
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    assert!(!report.failed, "{:?}", report.logs);
    assert!(room(&sim, held).is_some(), "{:?}", report.logs);
    assert!(room(&sim, "orphan").is_none(), "{:?}", report.logs);
}

/// A room as the previous release left it: state in the description, a bare alias.
fn legacy_room(sim: &SimServer, name: &str, description: &str, tag: &str) -> u64 {
    sim.sim
        .insert_room(json!({"name": name, "allow_guests": true, "pin": "123456",
            "guest_pin": "654321", "tag": tag, "description": description,
            "aliases": [{"alias": name}]}))
        .unwrap()
}

#[tokio::test]
async fn rooms_and_messages_of_the_previous_release_are_served_and_settled() {
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("POOL_TARGET_SIZE", "0"), ("PEXIP_TIMEOUT_SECS", "1")],
    )
    .await;
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    legacy_room(&sim, "old_pooled", &format!("maxconf:pool:{LONG_AGO}"), "");
    let pooled = room(&sim, "old_pooled").unwrap();
    app.pool
        .send(
            &PooledRoom::from_conference(&pooled).encode(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    // The original system's message: a bare room name.
    legacy_room(&sim, "old_named", &format!("maxconf:pool:{LONG_AGO}"), "");
    app.pool.send("old_named", Duration::ZERO).await.unwrap();
    legacy_room(
        &sim,
        "old_orphan",
        &format!("maxconf:creating:{LONG_AGO}"),
        "",
    );
    legacy_room(
        &sim,
        "old_leaked",
        &format!("maxconf:allocated:{LONG_AGO}"),
        "https://id.gov.bc.ca/x",
    );
    legacy_room(
        &sim,
        "old_held",
        &format!("maxconf:allocated:{now}"),
        "https://id.gov.bc.ca/y",
    );

    let report = maxconf::maintain::run(&app.state.broker, false).await;
    assert!(!report.failed, "{:?}", report.logs);
    let logs = report.logs.join("\n");
    assert!(room(&sim, "old_orphan").is_none(), "{logs}");
    assert!(room(&sim, "old_leaked").is_none(), "{logs}");
    for kept in ["old_pooled", "old_named", "old_held"] {
        let r = room(&sim, kept).unwrap_or_else(|| panic!("{kept} deleted: {logs}"));
        // State moved to the alias; the description stays for the previous release.
        assert!(
            r.aliases[0].description.starts_with("maxconf:"),
            "{kept}: {:?}",
            r.aliases[0]
        );
        assert!(r.description.starts_with("maxconf:"), "{kept}");
    }
    assert!(matches!(
        kind(&app, &sim, "old_held"),
        RoomKind::Allocated(_)
    ));

    // Both kinds of old message are handed out.
    let mut handed = Vec::new();
    for _ in 0..2 {
        let response = app.create(SPEC_UUI).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        handed.push(body["name"].as_str().unwrap().to_owned());
    }
    handed.sort();
    assert_eq!(handed, ["old_named", "old_pooled"]);

    // Rooms this release makes leave the description to callers: the previous release reads
    // them as rooms that are not its own, and leaves them alone.
    app.seed(1).await;
    let fresh = sim
        .sim
        .rooms()
        .into_iter()
        .find(|r| !r["name"].as_str().unwrap().starts_with("old_"))
        .unwrap();
    assert_eq!(fresh["description"], "");
    assert!(
        fresh["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:created:")
    );
}
