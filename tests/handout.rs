//! Creates and the maintainer at the same time, creates whose caller leaves, and creates
//! against a Pexip slower than their deadline. Each interleaving is fixed by holding one
//! simulator request (`Simulator::hold_next`), not by timing.

mod common;

use std::time::{Duration, Instant};

use common::app::{SPEC_UUI, TestApp};
use maxconf::conference::Conference;
use maxconf::pool::message::{PoolMessage, PooledRoom, decode};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};

const LONG_AGO: &str = "2020-01-01T00:00:00Z";
const CONF: &str = "/api/admin/configuration/v1/conference/";

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

/// An app whose create deadline is short: PEXIP_TIMEOUT_SECS=1 gives 7 s, a 13 s lease and a
/// 14 s wait between the maintainer's two looks.
async fn app(sim: &SimServer, extra: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("PEXIP_TIMEOUT_SECS", "1"), ("POOL_TARGET_SIZE", "0")];
    settings.extend_from_slice(extra);
    TestApp::spawn_with(&sim.base_url(), &settings).await
}

/// A pooled room made by this release long ago, with its message unless `enqueue` is false.
async fn pooled_room(app: &TestApp, sim: &SimServer, name: &str, enqueue: bool) -> u64 {
    let id = sim
        .sim
        .insert_room(json!({"name": name, "allow_guests": true, "pin": "123456",
            "guest_pin": "654321",
            "aliases": [{"alias": name, "description": format!("maxconf:created:{LONG_AGO}")}]}))
        .unwrap();
    if enqueue {
        let room = Conference::from_value(sim.sim.room_by_name(name).unwrap()).unwrap();
        app.pool
            .send(&PooledRoom::from_conference(&room).encode(), Duration::ZERO)
            .await
            .unwrap();
    }
    id
}

fn exists(sim: &SimServer, id: u64) -> bool {
    sim.sim.rooms().iter().any(|r| r["id"] == id)
}

fn room(sim: &SimServer, id: u64) -> Value {
    sim.sim
        .rooms()
        .into_iter()
        .find(|r| r["id"] == id)
        .expect("room exists")
}

/// Message counts by room id, over every message (received briefly, then released).
async fn messages_by_room(app: &TestApp) -> std::collections::HashMap<u64, usize> {
    let mut counts = std::collections::HashMap::new();
    let mut held = Vec::new();
    loop {
        // Hidden until the end of this count, so each is counted once.
        let batch = app.pool.receive(32, Duration::from_secs(30)).await.unwrap();
        if batch.is_empty() {
            break;
        }
        for msg in &batch {
            if let Ok(PoolMessage::Room(room)) = decode(&msg.text) {
                *counts.entry(room.id).or_default() += 1;
            }
        }
        held.extend(batch);
    }
    for msg in &held {
        app.pool.release(msg, Duration::ZERO).await.unwrap();
    }
    counts
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The room id in a held PATCH's path, once it arrived.
fn patched_room(sim: &SimServer) -> u64 {
    let log = sim.sim.request_log();
    let patch = log
        .iter()
        .rev()
        .find(|r| r.method == "PATCH" && r.path_and_query.starts_with(CONF))
        .expect("a PATCH arrived");
    patch.path_and_query[CONF.len()..]
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

// ---- the maintainer during traffic ----

#[tokio::test]
async fn orphans_are_repaired_whatever_the_pools_size() {
    let sim = sim().await;
    let app = app(&sim, &[]).await;
    let mut pooled = Vec::new();
    for i in 0..40 {
        pooled.push(pooled_room(&app, &sim, &format!("pooled{i:02}"), true).await);
    }
    // A refill killed before its send, and a create killed between its message delete and
    // its PATCH: neither has a message.
    let orphan = pooled_room(&app, &sim, "orphan", false).await;
    let lost = pooled_room(&app, &sim, "lost", false).await;

    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(!report.failed, "{logs}");
    assert!(!exists(&sim, orphan), "{logs}");
    assert!(!exists(&sim, lost), "{logs}");
    for id in &pooled {
        assert!(exists(&sim, *id), "pooled room {id} deleted: {logs}");
    }
    let counts = messages_by_room(&app).await;
    assert_eq!(counts.len(), 40, "{counts:?}");
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}

#[tokio::test]
async fn a_room_being_handed_out_is_never_deleted_by_the_maintainer() {
    let sim = sim().await;
    let app = app(&sim, &[]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(pooled_room(&app, &sim, &format!("old{i}"), true).await);
    }
    // The create's PATCH lands only after the maintainer's first look: the create holds the
    // room, its message is deleted, and the room is still untagged.
    let hold = sim.sim.hold_next("PATCH", CONF);
    let create = tokio::spawn({
        let http = app.http.clone();
        let url = format!("{}/api/room/create?uuiData={SPEC_UUI}", app.base);
        async move { http.post(url).send().await.unwrap() }
    });
    hold.arrived().await;
    let taken = patched_room(&sim);
    let maintainer = tokio::spawn({
        let broker = app.state.broker.clone();
        async move { maxconf::maintain::run(&broker, false).await }
    });
    // Its inventory and first look see the taken room untagged and without a message.
    wait_until("the maintainer's inventory", || {
        sim.sim
            .request_log()
            .iter()
            .any(|r| r.method == "GET" && r.path_and_query.starts_with(&format!("{CONF}?")))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let released_at = time::OffsetDateTime::now_utc();
    hold.release();
    let response = create.await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], taken);

    let report = maintainer.await.unwrap();
    let logs = report.logs.join("\n");
    assert!(
        exists(&sim, taken),
        "the handed-out room was deleted: {logs}"
    );
    for id in ids {
        assert!(exists(&sim, id), "{logs}");
    }
    assert!(!room(&sim, taken)["tag"].as_str().unwrap().is_empty());

    // The next run records the handout (in storage), at a time after it happened: the
    // reaper's clock never starts early.
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(logs.contains("(handout not recorded)"), "{logs}");
    let since = maxconf::handouts::load(app.state.broker.settings(), false)
        .await
        .unwrap()
        .since(taken, common::app::SPEC_TAG)
        .expect("recorded");
    assert!(since >= released_at, "{since} < {released_at}");
    assert!(exists(&sim, taken));
}

/// The interleaving found in production: the maintainer reads the room back, then the
/// create's PATCH lands, then the maintainer's DELETE. Here the DELETE, if it ever comes, is
/// held until the PATCH has landed.
#[tokio::test]
async fn a_patch_landing_between_read_back_and_delete_never_loses_the_callers_room() {
    let sim = sim().await;
    let app = app(&sim, &[]).await;
    for i in 0..5 {
        pooled_room(&app, &sim, &format!("old{i}"), true).await;
    }
    let patch = sim.sim.hold_next("PATCH", CONF);
    let create = tokio::spawn({
        let http = app.http.clone();
        let url = format!("{}/api/room/create?uuiData={SPEC_UUI}", app.base);
        async move { http.post(url).send().await.unwrap() }
    });
    patch.arrived().await;
    let taken = patched_room(&sim);
    let delete = sim.sim.hold_next("DELETE", &format!("{CONF}{taken}/"));
    let watcher = tokio::spawn({
        let (patch, delete) = (patch.clone(), delete.clone());
        async move {
            delete.arrived().await;
            patch.release();
            tokio::time::sleep(Duration::from_millis(500)).await;
            delete.release();
        }
    });
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let response = create.await.unwrap();
    let logs = report.logs.join("\n");
    watcher.abort();
    patch.release();
    assert!(exists(&sim, taken), "room {taken} deleted: {logs}");
    if response.status() == 200 {
        assert!(!room(&sim, taken)["tag"].as_str().unwrap().is_empty());
    } else {
        // The create gave up at its deadline and returned the room.
        assert_eq!(response.status(), 503);
        assert_eq!(room(&sim, taken)["tag"], "");
        assert_eq!(messages_by_room(&app).await.get(&taken), Some(&1));
    }
}

#[tokio::test]
async fn a_create_against_a_pexip_slower_than_its_deadline_answers_in_time_and_returns_the_room() {
    let sim = sim().await;
    // A per-request timeout longer than create's deadline (25 s): the deadline decides.
    let app = app(&sim, &[("PEXIP_TIMEOUT_SECS", "40")]).await;
    assert_eq!(app.state.broker.deadline(), Duration::from_secs(25));
    let id = pooled_room(&app, &sim, "slow", true).await;
    let hold = sim.sim.hold_next("PATCH", CONF);
    let started = Instant::now();
    let response = app.create(SPEC_UUI).await;
    let waited = started.elapsed();
    assert_eq!(response.status(), 503);
    assert!(
        waited < Duration::from_secs(30),
        "answered after {waited:?}"
    );
    assert!(response.headers().contains_key("retry-after"));
    // The unfinished handout is settled after the answer: untagged, one message again.
    let deadline = Instant::now() + Duration::from_secs(10);
    while messages_by_room(&app).await.get(&id) != Some(&1) {
        assert!(Instant::now() < deadline, "room never returned");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(room(&sim, id)["tag"], "");
    hold.release();
}

#[tokio::test]
async fn the_maintainer_never_hides_the_pool_from_creates() {
    let sim = sim().await;
    let app = app(&sim, &[("POOL_EMPTY_FALLBACK", "reject")]).await;
    let mut pooled = Vec::new();
    for i in 0..12 {
        pooled.push(pooled_room(&app, &sim, &format!("p{i:02}"), true).await);
    }
    // One duplicate, and one message for a room Pexip is slow to report missing.
    let dup = Conference::from_value(sim.sim.room_by_name("p00").unwrap()).unwrap();
    app.pool
        .send(&PooledRoom::from_conference(&dup).encode(), Duration::ZERO)
        .await
        .unwrap();
    let gone = PooledRoom {
        v: 1,
        id: 4242,
        name: "gone".into(),
        service_type: "conference".into(),
        allow_guests: true,
        guest_pin: "1234".into(),
        aliases: vec![],
    };
    app.pool.send(&gone.encode(), Duration::ZERO).await.unwrap();
    let slow = sim.sim.hold_next("GET", &format!("{CONF}4242/"));
    let maintainer = tokio::spawn({
        let broker = app.state.broker.clone();
        async move { maxconf::maintain::run(&broker, false).await }
    });
    slow.arrived().await;
    // While the maintainer waits on Pexip, every create finds a pooled room.
    for _ in 0..6 {
        let response = app.create(SPEC_UUI).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    slow.release();
    let report = maintainer.await.unwrap();
    assert!(!report.failed, "{:?}", report.logs);
}

// ---- creates whose caller leaves ----

async fn create_and_leave(app: &TestApp) {
    let quick = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let gave_up = quick
        .post(format!("{}/api/room/create?uuiData={SPEC_UUI}", app.base))
        .send()
        .await;
    assert!(gave_up.is_err(), "the caller should have given up");
}

#[tokio::test]
async fn a_create_whose_caller_left_mid_patch_still_hands_its_room_out() {
    let sim = sim().await;
    let app = app(&sim, &[("POOL_TARGET_SIZE", "1")]).await;
    let id = pooled_room(&app, &sim, "left", true).await;
    let hold = sim.sim.hold_next("PATCH", CONF);
    create_and_leave(&app).await;
    hold.release();
    // Handed out (tagged) and replaced, although nobody waited for the answer.
    assert!(
        app.state
            .broker
            .finish_background_work(Duration::from_secs(10))
            .await
    );
    assert_eq!(room(&sim, id)["tag"], common::app::SPEC_TAG);
    app.wait_pool_count(1).await;
    let counts = messages_by_room(&app).await;
    assert_eq!(counts.get(&id), None, "the handed-out room has no message");
}

#[tokio::test]
async fn a_create_whose_caller_left_and_whose_patch_failed_returns_its_room() {
    let sim = sim().await;
    let app = app(&sim, &[]).await;
    let id = pooled_room(&app, &sim, "back", true).await;
    let hold = sim.sim.hold_next("PATCH", CONF);
    create_and_leave(&app).await;
    sim.sim.set_down(true);
    hold.release();
    // The message was deleted with the handout; the room gets a new one.
    let deadline = Instant::now() + Duration::from_secs(20);
    while messages_by_room(&app).await.get(&id) != Some(&1) {
        assert!(Instant::now() < deadline, "room never returned");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    sim.sim.set_down(false);
    assert_eq!(room(&sim, id)["tag"], "");
}

#[tokio::test]
async fn a_create_whose_caller_left_while_it_read_an_old_message_still_hands_out() {
    let sim = sim().await;
    let app = app(&sim, &[]).await;
    let id = pooled_room(&app, &sim, "named", false).await;
    app.pool.send("named", Duration::ZERO).await.unwrap();
    let hold = sim.sim.hold_next("GET", CONF);
    create_and_leave(&app).await;
    hold.release();
    wait_until("the handout", || {
        !room(&sim, id)["tag"].as_str().unwrap().is_empty()
    })
    .await;
    // Its message is gone (the refill may have added another room's by now).
    assert!(!app.pool_texts().await.iter().any(|t| t == "named"));
    assert_eq!(messages_by_room(&app).await.get(&id), None);
}

/// Whoever can write to the queue chooses what create answers: the maintainer discards a
/// message that disagrees with Pexip's room, or that names a room already handed out.
#[tokio::test]
async fn messages_that_disagree_with_pexip_are_discarded() {
    let sim = sim().await;
    let app = app(&sim, &[]).await;
    let good = pooled_room(&app, &sim, "good", true).await;
    let forged = pooled_room(&app, &sim, "forged", false).await;
    let mut wrong = PooledRoom::from_conference(
        &Conference::from_value(sim.sim.room_by_name("forged").unwrap()).unwrap(),
    );
    wrong.guest_pin = "999999".into();
    app.pool
        .send(&wrong.encode(), Duration::ZERO)
        .await
        .unwrap();
    // A copy of the message of a room that was handed out since.
    let held = pooled_room(&app, &sim, "held", false).await;
    let copy = PooledRoom::from_conference(
        &Conference::from_value(sim.sim.room_by_name("held").unwrap()).unwrap(),
    );
    app.pool.send(&copy.encode(), Duration::ZERO).await.unwrap();
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let alias_id = room(&sim, held)["aliases"][0]["id"].as_u64().unwrap();
    let http = reqwest::Client::new();
    for (url, body) in [
        (
            format!("{}{CONF}{held}/", sim.base_url()),
            json!({"tag": "https://id.gov.bc.ca/x"}),
        ),
        (
            format!(
                "{}/api/admin/configuration/v1/conference_alias/{alias_id}/",
                sim.base_url()
            ),
            json!({"description": format!("maxconf:allocated:{now}")}),
        ),
    ] {
        assert!(
            http.patch(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .is_success()
        );
    }

    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(logs.contains("2 unusable messages removed"), "{logs}");
    let counts = messages_by_room(&app).await;
    assert_eq!(counts.get(&good), Some(&1), "{logs}");
    assert_eq!(counts.get(&forged), None, "{logs}");
    assert_eq!(counts.get(&held), None, "{logs}");
    // The handed-out room stays; the room whose only message was forged is an orphan now.
    assert!(exists(&sim, held), "{logs}");
    assert!(!exists(&sim, forged), "{logs}");
}
