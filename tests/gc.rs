//! Garbage collection (`function-room-gc`), driven through the Functions host's JSON
//! invocation protocol, fed by the event sink, against a real Azurite and the simulator.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::app::{TestApp, test_env};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};

const SINK_USER: &str = "pexip-events";
const SINK_PASSWORD: &str = "sink-password-xyz";

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

async fn gc_app(sim: &SimServer, grace_secs: &str) -> TestApp {
    TestApp::spawn_with(
        &sim.base_url(),
        &[
            ("GC_GRACE_SECS", grace_secs),
            ("EVENT_SINK_USERNAME", SINK_USER),
            ("EVENT_SINK_PASSWORD", SINK_PASSWORD),
        ],
    )
    .await
}

/// The timer invocation exactly as the host sends it; returns the status and the reply.
async fn invoke_gc(app: &TestApp) -> (u16, Value) {
    let response = app
        .http
        .post(format!("{}/function-room-gc", app.base))
        .json(&json!({"Data": {"timer": {}}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["Outputs"], json!({}), "{reply}");
    assert_eq!(reply["ReturnValue"], Value::Null);
    (status, reply)
}

fn logs(reply: &Value) -> String {
    reply["Logs"]
        .as_array()
        .expect("Logs is a list")
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn room(sim: &SimServer, name: &str) {
    sim.sim
        .insert_room(json!({"name": name, "pin": "482913", "guest_pin": "120931",
                            "aliases": [{"alias": name}]}))
        .unwrap();
}

async fn conference_ended(app: &TestApp, name: &str) {
    let response = app
        .http
        .post(format!("{}/api/public/event_sink", app.base))
        .basic_auth(SINK_USER, Some(SINK_PASSWORD))
        .json(&json!({"event": "conference_ended", "data": {"name": name}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A due message with this exact text (as another writer, e.g. the original system, left it).
async fn enqueue_due(app: &TestApp, text: &str) {
    app.deletions.send(text, Duration::ZERO).await.unwrap();
}

#[tokio::test]
async fn deletes_due_rooms_and_counts_gone_ones_as_deleted() {
    let sim = sim().await;
    let app = gc_app(&sim, "0").await;
    for name in ["room1", "room2", "room3", "keep-me"] {
        room(&sim, name);
    }
    conference_ended(&app, "room1").await;
    conference_ended(&app, "room2").await;
    // As the original system wrote them: a plain name.
    enqueue_due(&app, "room3").await;
    // A room somebody already deleted.
    enqueue_due(&app, &STANDARD.encode("already-gone")).await;

    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200, "{reply}");
    let text = logs(&reply);
    assert!(
        text.contains("room gc: 4 due, deleted 3, 1 already gone, 0 still running"),
        "{text}"
    );
    for name in ["room1", "room2", "room3"] {
        assert!(sim.sim.room_by_name(name).is_none(), "{name} deleted");
    }
    assert!(sim.sim.room_by_name("keep-me").is_some());
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 0);
    assert_eq!(sim.sim.stats().collection_deletes, 0);

    // Nothing left: a second run is a no-op and succeeds.
    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200);
    assert!(logs(&reply).contains("room gc: 0 due"), "{reply}");
}

#[tokio::test]
async fn a_replayed_conference_ended_deletes_the_room_once() {
    let sim = sim().await;
    let app = gc_app(&sim, "0").await;
    room(&sim, "room1");
    conference_ended(&app, "room1").await;
    conference_ended(&app, "room1").await;
    sim.sim.reset_stats();

    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        logs(&reply).contains("2 due, deleted 1, 1 already gone"),
        "{reply}"
    );
    assert!(sim.sim.room_by_name("room1").is_none());
    assert_eq!(sim.sim.stats().count("DELETE"), 1);
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 0);
}

#[tokio::test]
async fn rooms_wait_for_their_grace_period() {
    let sim = sim().await;
    let app = gc_app(&sim, "600").await;
    room(&sim, "room1");
    conference_ended(&app, "room1").await;
    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200);
    assert!(logs(&reply).contains("room gc: 0 due"), "{reply}");
    assert!(sim.sim.room_by_name("room1").is_some());
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 1);
}

#[tokio::test]
async fn a_running_conference_is_put_back_for_another_grace_period() {
    let sim = sim().await;
    let app = gc_app(&sim, "2").await;
    room(&sim, "room1");
    room(&sim, "room2");
    sim.sim.start_conference("room1");
    enqueue_due(&app, &STANDARD.encode("room1")).await;
    enqueue_due(&app, &STANDARD.encode("room2")).await;

    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        logs(&reply).contains("2 due, deleted 1, 0 already gone, 1 still running (put back)"),
        "{reply}"
    );
    assert!(sim.sim.room_by_name("room1").is_some(), "still in use");
    assert!(sim.sim.room_by_name("room2").is_none());
    // Back on the queue, invisible for GC_GRACE_SECS.
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 1);
    assert!(app.deletions.peek(32).await.unwrap().is_empty());

    // Once the conference ends and the grace period passes, a later run deletes it.
    assert!(sim.sim.end_conference("room1"));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, reply) = invoke_gc(&app).await;
        assert_eq!(status, 200, "{reply}");
        if sim.sim.room_by_name("room1").is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "room1 never collected: {reply}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 0);
}

#[tokio::test]
async fn persistent_rooms_and_unreadable_messages_are_discarded_never_deleted() {
    let sim = sim().await;
    let app = gc_app(&sim, "0").await;
    room(&sim, "test_lobby");
    room(&sim, "vkiosk_2");
    enqueue_due(&app, &STANDARD.encode("test_lobby")).await;
    enqueue_due(&app, "vkiosk_2").await;
    enqueue_due(&app, "not a room name!").await;
    enqueue_due(&app, "../../admin").await;
    sim.sim.reset_stats();

    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200, "{reply}");
    assert!(
        logs(&reply).contains("4 due, deleted 0, 0 already gone, 0 still running (put back), 2 persistent skipped, 2 invalid discarded, 0 failed"),
        "{reply}"
    );
    assert!(sim.sim.room_by_name("test_lobby").is_some());
    assert!(sim.sim.room_by_name("vkiosk_2").is_some());
    assert_eq!(sim.sim.stats().requests, 0, "no Pexip call for any of them");
    assert_eq!(app.deletions.approximate_count().await.unwrap(), 0);
}

#[tokio::test]
async fn pexip_down_fails_the_run_and_keeps_the_messages() {
    let sim = sim().await;
    let app = gc_app(&sim, "0").await;
    room(&sim, "room1");
    room(&sim, "room2");
    conference_ended(&app, "room1").await;
    conference_ended(&app, "room2").await;
    sim.sim.set_down(true);

    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 500, "a failed run is a non-2xx: {reply}");
    let logs = logs(&reply);
    assert!(logs.contains("room gc stopped: Pexip"), "{logs}");
    assert!(logs.contains("1 failed"), "{logs}");
    assert!(!logs.contains("sink-password"), "{logs}");
    // Both messages are due again for the next run.
    assert_eq!(app.deletions.peek(32).await.unwrap().len(), 2);

    sim.sim.set_down(false);
    let (status, reply) = invoke_gc(&app).await;
    assert_eq!(status, 200, "{reply}");
    assert!(sim.sim.room_count() == 0, "{reply}");
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let sim = sim().await;
    let app = gc_app(&sim, "0").await;
    room(&sim, "room1");
    room(&sim, "room2");
    sim.sim.start_conference("room2");
    conference_ended(&app, "room1").await;
    conference_ended(&app, "room2").await;
    enqueue_due(&app, "test_x").await;
    enqueue_due(&app, "!!").await;

    let report = maxconf::gc::run(&app.state.broker, true).await;
    assert!(!report.failed, "{:?}", report.logs);
    let text = report.logs.join("\n");
    assert!(
        text.contains(
            "room gc (dry run): 4 due, would delete 1 (room1), 0 already gone, \
             1 still running (would be put back), 1 persistent (would be skipped), \
             1 invalid (would be discarded), 0 failed"
        ),
        "{text}"
    );
    assert_eq!(sim.sim.room_count(), 2);
    assert_eq!(sim.sim.stats().count("DELETE"), 0);
    // Every message is back and due, exactly as before.
    assert_eq!(app.deletions.peek(32).await.unwrap().len(), 4);
}

#[tokio::test]
async fn unknown_functions_are_404() {
    let sim = sim().await;
    let app = gc_app(&sim, "0").await;
    let response = app
        .http
        .post(format!("{}/function-room-gc-nope", app.base))
        .json(&json!({"Data": {}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// `maxconf gc [--dry-run]` as an operator runs it, on the app's settings.
async fn maxconf_gc(
    env: &std::collections::HashMap<String, String>,
    args: &[&str],
) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_maxconf"));
    command.env_clear().envs(env).arg("gc").args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn the_gc_command_does_the_timer_s_work_with_an_exit_status() {
    let sim = sim().await;
    let mut env = test_env(&sim.base_url());
    env.insert("GC_GRACE_SECS".into(), "0".into());
    let app = TestApp::spawn_env(env.clone()).await;
    room(&sim, "room1");
    enqueue_due(&app, &STANDARD.encode("room1")).await;

    let out = maxconf_gc(&env, &["--dry-run"]).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        stdout.contains("room gc (dry run): 1 due, would delete 1 (room1),"),
        "{stdout}"
    );
    assert!(sim.sim.room_by_name("room1").is_some());

    sim.sim.set_down(true);
    let out = maxconf_gc(&env, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(sim.sim.room_by_name("room1").is_some());
    // The summary is printed once, on stdout, not logged to stderr as well.
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stdout.contains("room gc stopped"), "{stdout}");
    assert!(!stderr.contains("room gc"), "{stderr}");

    sim.sim.set_down(false);
    let out = maxconf_gc(&env, &[]).await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("room gc: 1 due, deleted 1"), "{stdout}");
    assert!(sim.sim.room_by_name("room1").is_none());
    assert!(!stdout.contains(common::app::PEXIP_PASSWORD));
}
