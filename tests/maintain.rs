//! The pool maintainer, metrics, health and pool status, driven as the Functions host drives
//! them (the JSON invocation protocol for timers, forwarded HTTP for routes), against a real
//! Azurite and the Pexip simulator.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::app::{SPEC_TAG, SPEC_UUI, TestApp};
use maxconf::pexip::Conference;
use maxconf::pool::message::{PoolMessage, PooledRoom, decode};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};

const LONG_AGO: &str = "2020-01-01T00:00:00Z";

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

/// Invokes a timer function the way the host does; returns the status and the reply.
async fn invoke(app: &TestApp, function: &str) -> (u16, Value) {
    let body = json!({
        "Data": {"timer": {"Schedule": {"AdjustForDST": true}, "ScheduleStatus": null, "IsPastDue": false}},
        "Metadata": {"sys": {"MethodName": function, "UtcNow": "2026-11-28T05:00:00Z", "RandGuid": "0f8fad5b-d9cb-469f-a165-70867728950e"}}
    });
    let response = app
        .http
        .post(format!("{}/{function}", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["Outputs"], json!({}), "{reply}");
    assert_eq!(reply["ReturnValue"], Value::Null);
    assert!(reply["Logs"].is_array());
    (status, reply)
}

fn logs(reply: &Value) -> String {
    reply["Logs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A room as a refill leaves it, without a message unless `enqueue`.
async fn pool_room(app: &TestApp, sim: &SimServer, name: &str, marked: &str, enqueue: bool) -> u64 {
    refill_room(app, sim, name, &format!("maxconf:pool:{marked}"), enqueue).await
}

/// A room as a refill stopped before marking it pooled (killed, or its send failed).
async fn creating_room(
    app: &TestApp,
    sim: &SimServer,
    name: &str,
    marked: &str,
    enqueue: bool,
) -> u64 {
    refill_room(
        app,
        sim,
        name,
        &format!("maxconf:creating:{marked}"),
        enqueue,
    )
    .await
}

async fn refill_room(
    app: &TestApp,
    sim: &SimServer,
    name: &str,
    description: &str,
    enqueue: bool,
) -> u64 {
    let id = sim
        .sim
        .insert_room(
            json!({"name": name, "allow_guests": true, "pin": "123456", "guest_pin": "654321",
            "description": description, "aliases": [{"alias": name}]}),
        )
        .unwrap();
    if enqueue {
        enqueue_room(app, sim, name).await;
    }
    id
}

async fn enqueue_room(app: &TestApp, sim: &SimServer, name: &str) {
    let conference = Conference::from_value(sim.sim.room_by_name(name).unwrap()).unwrap();
    app.pool
        .send(
            &PooledRoom::from_conference(&conference).encode(),
            Duration::ZERO,
        )
        .await
        .unwrap();
}

/// SPEC's invariant: every non-persistent room is handed out (tagged) or reachable by exactly
/// one pool message.
async fn assert_books_balance(app: &TestApp, sim: &SimServer) {
    let mut messages: HashMap<u64, usize> = HashMap::new();
    for text in app.pool_texts().await {
        if let Ok(PoolMessage::Room(room)) = decode(&text) {
            *messages.entry(room.id).or_default() += 1;
        }
    }
    for room in sim.sim.rooms() {
        let name = room["name"].as_str().unwrap();
        if name.starts_with("test_") || name.starts_with("vkiosk_") {
            continue;
        }
        let id = room["id"].as_u64().unwrap();
        let handed_out = !room["tag"].as_str().unwrap_or("").is_empty();
        let count = messages.get(&id).copied().unwrap_or(0);
        assert!(
            (handed_out && count == 0) || (!handed_out && count == 1),
            "room {name} handed_out={handed_out} has {count} messages"
        );
    }
    for id in messages.keys() {
        assert!(
            sim.sim.rooms().iter().any(|r| r["id"] == *id),
            "message for missing room {id}"
        );
    }
}

#[tokio::test]
async fn maintain_tops_the_pool_up_over_the_invocation_protocol() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "4")]).await;
    app.seed(1).await;
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        logs(&reply).contains("pool at 4/4: 3 rooms added, 0 failed"),
        "{reply}"
    );
    assert_eq!(app.pool.approximate_count().await.unwrap(), 4);
    assert_eq!(sim.sim.room_count(), 4);
    assert_books_balance(&app, &sim).await;

    // A second run has nothing to do.
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200);
    assert!(
        logs(&reply).contains("pool at 4/4: 0 rooms added"),
        "{reply}"
    );
    assert_eq!(sim.sim.room_count(), 4);
}

#[tokio::test]
async fn a_refill_killed_before_its_enqueue_is_repaired_by_the_next_run() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "2")]).await;
    app.seed(2).await;
    // The kill: the room exists in Pexip, its message was never sent.
    let orphan = creating_room(&app, &sim, "orphan1", LONG_AGO, false).await;
    // Killed after its send: the message exists, so the room is kept.
    creating_room(&app, &sim, "sent1", LONG_AGO, true).await;
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200, "{reply}");
    assert!(logs(&reply).contains("orphan1 (orphan)"), "{reply}");
    assert!(sim.sim.rooms().iter().all(|r| r["id"] != orphan));
    let sent = sim
        .sim
        .room_by_name("sent1")
        .expect("a room with a message is kept");
    // The previous release's marker moved to the alias; the description is left as it was.
    assert!(
        sent["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:created:"),
        "{sent}"
    );
    assert!(app.pool.approximate_count().await.unwrap() >= 2);
    assert_books_balance(&app, &sim).await;
}

#[tokio::test]
async fn never_touches_persistent_fresh_foreign_or_pooled_rooms_and_reaps_leaks() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "0")]).await;
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let insert = |name: &str, tag: &str, description: String| {
        sim.sim
            .insert_room(json!({"name": name, "tag": tag, "description": description}))
            .unwrap()
    };
    insert("test_kiosk", "", format!("maxconf:pool:{LONG_AGO}"));
    insert(
        "vkiosk_1",
        "https://x/1",
        format!("maxconf:allocated:{LONG_AGO}"),
    );
    insert("foreign", "https://x/2", "someone else's room".into());
    insert("fresh", "https://x/3", format!("maxconf:allocated:{now}"));
    insert("young_pool", "", format!("maxconf:pool:{now}"));
    insert("young_creating", "", format!("maxconf:creating:{now}"));
    insert(
        "leaked",
        "https://x/4",
        format!("maxconf:allocated:{LONG_AGO}"),
    );
    // Handed out long ago, yet a message names it: the message is removed (a handed-out
    // room is never handed out again) and the room is reaped as leaked.
    insert(
        "returned",
        "https://x/5",
        format!("maxconf:allocated:{LONG_AGO}"),
    );
    enqueue_room(&app, &sim, "returned").await;
    pool_room(&app, &sim, "old_pooled", LONG_AGO, true).await;

    // A dry run reports and changes nothing.
    let before = sim.sim.room_count();
    let (status, reply) = invoke_reap_dry_run(&app).await;
    assert!(status, "{reply}");
    assert!(
        reply.contains("1 unusable messages would be removed")
            && reply.contains("would settle 2 rooms:")
            && reply.contains("leaked (leaked)")
            && reply.contains("returned (leaked)"),
        "{reply}"
    );
    assert_eq!(sim.sim.room_count(), before);

    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200, "{reply}");
    let names: Vec<String> = sim
        .sim
        .rooms()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    for kept in [
        "test_kiosk",
        "vkiosk_1",
        "foreign",
        "fresh",
        "young_pool",
        "old_pooled",
    ] {
        assert!(
            names.iter().any(|n| n == kept),
            "{kept} was deleted: {reply}"
        );
    }
    assert!(!names.iter().any(|n| n == "leaked"), "{reply}");
    assert!(!names.iter().any(|n| n == "returned"), "{reply}");
    assert_eq!(sim.sim.stats().collection_deletes, 0);
}

async fn invoke_reap_dry_run(app: &TestApp) -> (bool, String) {
    let report = maxconf::maintain::run(&app.state.broker, true).await;
    (!report.failed, report.logs.join("\n"))
}

#[tokio::test]
async fn duplicate_stale_and_unreadable_messages_are_removed() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "1")]).await;
    pool_room(&app, &sim, "twice", LONG_AGO, true).await;
    enqueue_room(&app, &sim, "twice").await;
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
    app.pool.send("%%%", Duration::ZERO).await.unwrap();
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        logs(&reply).contains("queue: 3 unusable messages removed"),
        "{reply}"
    );
    assert_eq!(app.pool.approximate_count().await.unwrap(), 1);
    assert_books_balance(&app, &sim).await;
}

#[tokio::test]
async fn pexip_down_fails_fast_and_the_next_run_restores_the_pool() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "3")]).await;
    sim.sim.set_down(true);
    let started = std::time::Instant::now();
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 500, "{reply}");
    assert!(
        logs(&reply).contains("Pexip inventory failed, nothing changed"),
        "{reply}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(app.pool.approximate_count().await.unwrap(), 0);

    sim.sim.set_down(false);
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(app.pool.approximate_count().await.unwrap(), 3);
    assert_books_balance(&app, &sim).await;
}

#[tokio::test]
async fn two_runs_at_once_stay_near_the_target() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "8")]).await;
    let (a, b) = tokio::join!(
        invoke(&app, "function-pool-maintain"),
        invoke(&app, "function-pool-maintain")
    );
    assert_eq!((a.0, b.0), (200, 200), "{a:?} {b:?}");
    let size = app.pool.approximate_count().await.unwrap();
    // Each run re-reads the size between batches of at most PEXIP_MAX_CONCURRENCY-1 (4).
    assert!((8..=12).contains(&size), "pool size {size}");
    assert_eq!(sim.sim.room_count() as u64, size);
    assert_books_balance(&app, &sim).await;
}

#[tokio::test]
async fn books_balance_after_creates_deletes_and_failures() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "5")]).await;
    assert_eq!(invoke(&app, "function-pool-maintain").await.0, 200);
    for i in 0..6 {
        if i % 3 == 0 {
            sim.sim.fail_next(3, 500);
        }
        let response = app.create(SPEC_UUI).await;
        assert!(matches!(response.status().as_u16(), 200 | 503));
    }
    // Let the background refills land, then break a refill by hand: a room with no message.
    wait_refills_settled(&app, &sim).await;
    creating_room(&app, &sim, "killed_refill", LONG_AGO, false).await;
    let (status, reply) = invoke(&app, "function-pool-maintain").await;
    assert_eq!(status, 200, "{reply}");
    assert_books_balance(&app, &sim).await;
    assert!(app.pool.approximate_count().await.unwrap() >= 5);
}

/// Waits until every room not handed out has its message (background refills done).
async fn wait_refills_settled(app: &TestApp, sim: &SimServer) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let unhanded = sim
            .sim
            .rooms()
            .iter()
            .filter(|r| r["tag"].as_str().unwrap_or("").is_empty())
            .count() as u64;
        if app.pool.approximate_count().await.unwrap() == unhanded {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refills did not settle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_are_reported_in_the_invocation_logs() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    app.seed(2).await;
    assert_eq!(app.create(SPEC_UUI).await.status(), 200);
    app.wait_pool_count(2).await;
    app.deletions
        .send("someroom", Duration::from_secs(600))
        .await
        .unwrap();
    sim.sim.insert_room(json!({"name": "test_lobby"})).unwrap();
    let (status, reply) = invoke(&app, "function-metrics").await;
    assert_eq!(status, 200, "{reply}");
    let text = logs(&reply);
    for line in [
        "metric maxconf_pool_available=2",
        "metric maxconf_deletion_backlog=1",
        "metric maxconf_pexip_rooms=4",
        "metric maxconf_allocated_rooms=1",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
}

#[tokio::test]
async fn unknown_functions_are_404() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let (status, _) = {
        let response = app
            .http
            .post(format!("{}/function-nope", app.base))
            .json(&json!({"Data": {}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), ())
    };
    assert_eq!(status, 404);
}

#[tokio::test]
async fn health_names_what_failed() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    // Anonymous: no function key, no token.
    let response = app
        .http
        .get(format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "alive");
    assert_eq!(body["checks"], json!({"storage": "ok", "pexip": "ok"}));
    assert!(body["timestamp"].as_str().unwrap().ends_with('Z'));

    // A flood of health calls reuses the last checks (anonymous route, shared Pexip slots).
    sim.sim.reset_stats();
    for _ in 0..20 {
        let response = app
            .http
            .get(format!("{}/api/health", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sim.sim.stats().requests, 0);

    // Checks are cached per process for a few seconds: a fresh one sees Pexip down at once.
    sim.sim.set_down(true);
    let app = TestApp::spawn(&sim.base_url()).await;
    let response = app
        .http
        .get(format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"], json!({"storage": "ok", "pexip": "failed"}));
    assert!(
        !body.to_string().contains("503"),
        "no upstream detail: {body}"
    );
}

#[tokio::test]
async fn pool_status_reports_size_target_and_backlog() {
    let sim = sim().await;
    let app = TestApp::spawn_with(&sim.base_url(), &[("POOL_TARGET_SIZE", "7")]).await;
    app.seed(3).await;
    app.deletions
        .send("r1", Duration::from_secs(600))
        .await
        .unwrap();
    let response = app
        .request(reqwest::Method::GET, "/api/pool")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"queue": app.pool.name(), "available": 3, "target": 7, "deletion_backlog": 1})
    );
}

/// A staging slot (`TIMERS_ENABLED=false`) shares production's queues and Pexip: every timer
/// run must succeed without touching either, and say why in the invocation's log.
#[tokio::test]
async fn timers_disabled_are_logged_no_ops() {
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("TIMERS_ENABLED", "false"), ("POOL_TARGET_SIZE", "3")],
    )
    .await;
    sim.sim.clear_request_log();
    for function in [
        "function-pool-maintain",
        "function-room-gc",
        "function-metrics",
    ] {
        let (status, reply) = invoke(&app, function).await;
        assert_eq!(status, 200, "{function}: {reply}");
        let text = logs(&reply);
        assert!(
            text.contains("timer run skipped: TIMERS_ENABLED=false"),
            "{function}: {text}"
        );
        assert!(!text.contains("metric "), "{function}: {text}");
    }
    assert!(
        sim.sim.request_log().is_empty(),
        "no Pexip call: {:?}",
        sim.sim.request_log()
    );
    assert_eq!(sim.sim.room_count(), 0, "the maintainer did not top up");
    assert!(app.pool_texts().await.is_empty(), "nothing enqueued");
    // Unknown names stay 404 whatever the setting.
    let response = app
        .http
        .post(format!("{}/function-nope", app.base))
        .json(&json!({"Data": {}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

/// A pool handout writes only its tag. The maintainer records it in storage, not in Pexip, at
/// a time not before the handout; the reaper counts from that time, and the record keeps only
/// rooms still handed out. A dry run leaves the record as it was.
#[tokio::test]
async fn handouts_are_recorded_in_storage_and_reaped_from_then() {
    use maxconf::handouts::{self, Handouts};
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("POOL_TARGET_SIZE", "1"), ("PEXIP_TIMEOUT_SECS", "1")],
    )
    .await;
    let settings = app.state.broker.settings();
    app.seed(1).await;
    let response = app.create(SPEC_UUI).await;
    assert_eq!(response.status(), 200);
    let answered = time::OffsetDateTime::now_utc();
    let body: Value = response.json().await.unwrap();
    let held = body["name"].as_str().unwrap().to_owned();
    let id = body["id"].as_u64().unwrap();
    assert!(
        app.state
            .broker
            .finish_background_work(Duration::from_secs(10))
            .await
    );

    // A dry run reports the handout and records nothing.
    let (ok, reply) = invoke_reap_dry_run(&app).await;
    assert!(ok, "{reply}");
    assert!(
        reply.contains(&format!("{held} (handout not recorded)")),
        "{reply}"
    );
    assert!(!matches!(handouts::load(settings, false).await, Ok(h) if !h.is_empty()));

    sim.sim.clear_request_log();
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(!report.failed, "{logs}");
    assert!(
        logs.contains(&format!("{held} (handout not recorded)")),
        "{logs}"
    );
    let writes: Vec<_> = sim
        .sim
        .request_log()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "the record went to Pexip: {writes:?}");
    let record = handouts::load(settings, false).await.unwrap();
    let since = record
        .since(id, SPEC_TAG)
        .expect("the handout is on record");
    assert!(
        since >= answered,
        "recorded before the answer: {since} < {answered}"
    );
    assert!(since <= time::OffsetDateTime::now_utc() + time::Duration::seconds(1));
    let stored = sim.sim.room_by_name(&held).unwrap();
    assert!(
        stored["aliases"][0]["description"]
            .as_str()
            .unwrap()
            .starts_with("maxconf:created:"),
        "{stored}"
    );

    // The next run finds it on record: nothing to confirm, the room stays.
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(
        logs.contains("no orphaned, unrecorded or leaked rooms"),
        "{logs}"
    );
    assert!(sim.sim.room_by_name(&held).is_some());
    assert_eq!(handouts::load(settings, false).await.unwrap(), record);

    // On record as handed out long ago with the tag it carries: reaped as leaked, then
    // dropped from the record.
    let mut old = Handouts::default();
    assert!(old.record(
        id,
        SPEC_TAG,
        time::macros::datetime!(2020-01-01 00:00:00 UTC)
    ));
    handouts::save(settings, &old).await.unwrap();
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(logs.contains(&format!("{held} (leaked)")), "{logs}");
    assert!(sim.sim.room_by_name(&held).is_none(), "{logs}");
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    assert!(!report.failed, "{:?}", report.logs);
    assert!(handouts::load(settings, false).await.unwrap().is_empty());
    assert_books_balance(&app, &sim).await;
}

/// An old time on record for a room that went back to the pool never ages its next handout:
/// the time counts only with the tag it was recorded with, and a message seen for the room
/// drops it. A record this release cannot read is not saved over.
#[tokio::test]
async fn an_old_record_never_reaps_a_room_handed_out_again() {
    use maxconf::handouts::{self, Handouts};
    let sim = sim().await;
    let app = TestApp::spawn_with(
        &sim.base_url(),
        &[("POOL_TARGET_SIZE", "0"), ("PEXIP_TIMEOUT_SECS", "1")],
    )
    .await;
    let settings = app.state.broker.settings();
    let long_ago = time::macros::datetime!(2020-01-01 00:00:00 UTC);
    let ours = |name: &str, tag: &str| common::app::insert_our_room(&sim.sim, name, tag);
    // Handed out (a new session's tag, no message), on record from an earlier session.
    let again = ours("again", SPEC_TAG);
    // In the pool (a message reaches it), on record from an earlier handout.
    let pooled = ours("pooled", "");
    enqueue_room(&app, &sim, "pooled").await;
    let mut old = Handouts::default();
    assert!(old.record(
        again,
        "https://id.gov.bc.ca/idcheck/protected/video/earlier",
        long_ago
    ));
    assert!(old.record(
        pooled,
        "https://id.gov.bc.ca/idcheck/protected/video/earlier",
        long_ago
    ));
    handouts::save(settings, &old).await.unwrap();

    let report = maxconf::maintain::run(&app.state.broker, false).await;
    let logs = report.logs.join("\n");
    assert!(!report.failed, "{logs}");
    assert!(
        sim.sim.room_by_name("again").is_some(),
        "reaped from an old record: {logs}"
    );
    assert!(sim.sim.room_by_name("pooled").is_some(), "{logs}");
    let record = handouts::load(settings, false).await.unwrap();
    // Recorded afresh with its own tag; the pooled room's entry is gone.
    let since = record.since(again, SPEC_TAG).expect("recorded afresh");
    assert!(since > long_ago);
    assert!(!record.contains(pooled), "{record:?}");

    // A record this release cannot read: the run records nothing and leaves it in place.
    let queue = maxconf::handouts::QUEUE
        .queue(settings, Duration::from_secs(5))
        .unwrap();
    queue.clear().await.unwrap();
    queue.send(r#"{"v":2}"#, Duration::ZERO).await.unwrap();
    let report = maxconf::maintain::run(&app.state.broker, false).await;
    assert!(!report.failed, "{:?}", report.logs);
    assert_eq!(queue.peek(32).await.unwrap(), [r#"{"v":2}"#]);
    assert!(handouts::load(settings, false).await.is_err());
    assert!(sim.sim.room_by_name("again").is_some());
}
