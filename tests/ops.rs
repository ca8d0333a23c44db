//! Operator commands run as processes, on the same settings as the service.

mod common;

use std::process::{Command, Output};

use common::app::{TestApp, test_env};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

/// Runs `maxconf <args>` with the app's settings (same queues, same Pexip).
async fn maxconf(env: &std::collections::HashMap<String, String>, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.env_clear().envs(env).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn app_with_env(
    sim: &SimServer,
    target: &str,
) -> (TestApp, std::collections::HashMap<String, String>) {
    let mut env = test_env(&sim.base_url());
    env.insert("POOL_TARGET_SIZE".into(), target.into());
    (TestApp::spawn_env(env.clone()).await, env)
}

#[tokio::test]
async fn status_fill_and_drain_a_pool() {
    let sim = sim().await;
    let (app, env) = app_with_env(&sim, "3").await;
    let pool_name = app.pool.name().to_owned();

    let out = maxconf(&env, &["pool", "fill", "--count", "2"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("added 2 rooms, 0 failed; the pool now holds 2"),
        "{out:?}"
    );
    // Not a terminal: one plain line per room instead of a progress bar.
    assert_eq!(stdout(&out).matches("room added").count(), 2);

    // Without --count: up to the target.
    let out = maxconf(&env, &["pool", "fill"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("added 1 room, 0 failed"), "{out:?}");

    let out = maxconf(&env, &["pool", "status"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains(&format!(
            "pool {pool_name}: 3 ready of target 3 (minimum 1)"
        )),
        "{out:?}"
    );

    // Drain needs --yes.
    let out = maxconf(&env, &["pool", "drain"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(app.pool.approximate_count().await.unwrap(), 3);

    sim.sim.insert_room(json!({"name": "test_keep"})).unwrap();
    app.pool
        .send("test_keep", std::time::Duration::ZERO)
        .await
        .unwrap();
    let out = maxconf(&env, &["pool", "drain", "--yes"]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout(&out).contains("drained 4 rooms, 0 failed"),
        "{out:?}"
    );
    assert_eq!(app.pool.approximate_count().await.unwrap(), 0);
    let names: Vec<String> = sim
        .sim
        .rooms()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["test_keep"], "only the persistent room is left");
}

#[tokio::test]
async fn reap_dry_run_lists_and_reap_deletes() {
    let sim = sim().await;
    let (_app, env) = app_with_env(&sim, "0").await;
    sim.sim
        .insert_room(json!({"name": "leak1", "tag": "https://x/1",
            "description": "maxconf:allocated:2020-01-01T00:00:00Z"}))
        .unwrap();
    let out = maxconf(&env, &["reap", "--dry-run"]).await;
    assert!(out.status.success(), "{out:?}");
    // The few seconds of the second look are announced, not silent.
    assert!(
        stderr(&out).contains("a second look a few seconds later"),
        "{out:?}"
    );
    assert!(
        stdout(&out).contains("would settle 1 room: leak1 (leaked)"),
        "{out:?}"
    );
    assert_eq!(sim.sim.room_count(), 1);

    let out = maxconf(&env, &["reap"]).await;
    assert!(out.status.success(), "{out:?}");
    assert_eq!(sim.sim.room_count(), 0);
}

#[tokio::test]
async fn partial_failure_is_a_non_zero_exit() {
    let sim = sim().await;
    let (_app, env) = app_with_env(&sim, "3").await;
    sim.sim.set_down(true);
    let out = maxconf(&env, &["pool", "fill", "--count", "1"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("added 0 rooms, 1 failed"), "{out:?}");
    let out = maxconf(&env, &["reap"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    // Printed once: on stdout, not as a WARN line on stderr too.
    assert!(stdout(&out).contains("Pexip inventory failed"), "{out:?}");
    assert!(!stderr(&out).contains("Pexip inventory failed"), "{out:?}");

    // A failed drain names the room it could not delete.
    sim.sim.set_down(false);
    let out = maxconf(&env, &["pool", "fill", "--count", "1"]).await;
    assert!(out.status.success(), "{out:?}");
    let name = sim.sim.rooms()[0]["name"].as_str().unwrap().to_owned();
    sim.sim.set_down(true);
    let out = maxconf(&env, &["pool", "drain", "--yes"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout(&out).contains(&format!("could not delete {name}: Pexip is unavailable")),
        "{out:?}"
    );
}

#[test]
fn help_describes_every_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "serve", "status", "doctor", "pool", "reap", "gc", "maintain", "dev", "simulate", "--api",
    ] {
        assert!(help.contains(command), "{command} in {help}");
    }
    let out = Command::new(BIN).args(["pool", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for action in ["status", "fill", "drain"] {
        assert!(help.contains(action), "{action} in {help}");
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A web server that answers 404 to everything: a PEXIP_BASE_URL that is not Pexip's.
async fn not_pexip() -> (String, tokio::task::JoinHandle<()>) {
    let listener = maxconf::app::bind(0).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, axum::Router::new()).await.unwrap();
    });
    (url, server)
}

#[tokio::test]
async fn doctor_reports_every_bad_setting_then_probes() {
    let sim = sim().await;
    let (_app, mut env) = app_with_env(&sim, "2").await;

    let out = maxconf(&env, &["doctor"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("settings: ok"), "{text}");
    assert!(text.contains("ok   storage"), "{text}");
    assert!(text.contains("ok   pexip"), "{text}");

    // Two broken settings and a Pexip URL that is some other web server: all in one run.
    let (wrong, _server) = not_pexip().await;
    env.insert("POOL_TARGET_SIZE".into(), "ten".into());
    env.insert("ROOM_PIN_LENGTH".into(), "2".into());
    env.insert("PEXIP_BASE_URL".into(), wrong.clone());
    let started = std::time::Instant::now();
    let out = maxconf(&env, &["doctor"]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("settings: 2 problems"), "{text}");
    assert!(text.contains("POOL_TARGET_SIZE: must be"), "{text}");
    assert!(text.contains("ROOM_PIN_LENGTH: must be"), "{text}");
    assert!(text.contains("ok   storage"), "{text}");
    let pexip = text.lines().find(|l| l.contains("pexip")).unwrap();
    assert!(pexip.starts_with("FAIL"), "{text}");
    assert!(pexip.contains(&wrong), "names the endpoint: {pexip}");
    assert!(pexip.contains("Management Node's address"), "{pexip}");
    assert!(!pexip.contains("no such conference"), "{pexip}");
    assert!(!text.contains(common::app::PEXIP_PASSWORD));

    // Storage that nothing listens on is named, within seconds.
    let mut env = common::app::unreachable_storage_env(&sim.base_url());
    env.insert("AUTH_MODE".into(), "entra".into());
    env.insert("AUTH_TENANT_ID".into(), "t".into());
    env.insert("AUTH_AUDIENCE".into(), "a".into());
    env.insert("AUTH_REQUIRED_ROLE".into(), "Rooms.Manage".into());
    env.insert("AUTH_OPENID_CONFIG_URL".into(), format!("{wrong}/openid"));
    let out = maxconf(&env, &["doctor"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let storage = text.lines().find(|l| l.contains("storage")).unwrap();
    assert!(
        storage.starts_with("FAIL") && storage.contains("127.0.0.1"),
        "{text}"
    );
    let entra = text.lines().find(|l| l.contains("entra")).unwrap();
    assert!(entra.starts_with("FAIL") && entra.contains("404"), "{text}");
}

#[tokio::test]
async fn commands_that_serve_nothing_need_no_serving_settings_and_fail_fast() {
    let sim = sim().await;
    let (_app, mut env) = app_with_env(&sim, "0").await;
    env.remove("AUTH_MODE");
    env.insert("EVENT_SINK_USERNAME".into(), "half-set".into());
    let out = maxconf(&env, &["pool", "status"]).await;
    assert!(out.status.success(), "{out:?}");

    // Every bad setting on its own line, in one run.
    env.insert("POOL_TARGET_SIZE".into(), "ten".into());
    env.insert("LOG_FORMAT".into(), "xml".into());
    let out = maxconf(&env, &["pool", "status"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("POOL_TARGET_SIZE") && err.contains("LOG_FORMAT"),
        "{err}"
    );

    let env = common::app::unreachable_storage_env(&sim.base_url());
    let started = std::time::Instant::now();
    let out = maxconf(&env, &["gc"]).await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = stderr(&out);
    assert!(err.contains("storage at http://127.0.0.1:"), "{err}");
    assert!(err.contains("AzureWebJobsStorage"), "{err}");
}

/// The timer invocation as the host sends it.
async fn invoke_timer(app: &TestApp, function: &str) {
    let response = app
        .request(reqwest::Method::POST, &format!("/{function}"))
        .header("content-type", "application/json")
        .body(r#"{"Data":{"timer":{}},"Metadata":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{function}");
}

#[tokio::test]
async fn status_shows_the_pool_pexip_the_backlog_and_the_last_runs() {
    let sim = sim().await;
    let (app, env) = app_with_env(&sim, "4").await;
    sim.sim.insert_room(json!({"name": "test_keep"})).unwrap();
    sim.sim
        .insert_room(json!({"name": "someone-elses"}))
        .unwrap();

    // Nothing has run yet, and the pool is empty: below the default minimum (half of 4).
    let out = maxconf(&env, &["status"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("last maintain: no run recorded"), "{text}");
    assert!(
        text.contains("0 ready rooms, below the minimum of 2"),
        "{text}"
    );

    invoke_timer(&app, "function-room-gc").await;
    invoke_timer(&app, "function-pool-maintain").await;
    app.deletions
        .send("some-room", std::time::Duration::from_secs(600))
        .await
        .unwrap();
    // A room still warming up (invisible).
    app.pool
        .send("warming", std::time::Duration::from_secs(600))
        .await
        .unwrap();

    let out = maxconf(&env, &["status", "--json"]).await;
    assert!(out.status.success(), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pool"]["ready"], 4, "{status:#}");
    assert_eq!(status["pool"]["warming_or_held"], 1);
    assert_eq!(status["pool"]["target"], 4);
    assert_eq!(status["pool"]["min_ready"], 2);
    assert_eq!(status["pexip_rooms"]["not handed out"], 4);
    assert_eq!(status["pexip_rooms"]["persistent"], 1);
    assert_eq!(status["pexip_rooms"]["foreign"], 1);
    assert_eq!(status["deletion_backlog"], 1);
    let runs = status["last_runs"].as_array().unwrap();
    let jobs: Vec<&str> = runs.iter().map(|r| r["job"].as_str().unwrap()).collect();
    assert_eq!(jobs, ["gc", "maintain"], "{status:#}");
    assert!(runs.iter().all(|r| r["ok"] == true));
    assert!(
        runs[1]["summary"].as_str().unwrap().contains("4"),
        "{status:#}"
    );
    assert_eq!(status["problems"], json!([]));

    // A second maintainer run replaces the first record rather than adding one.
    invoke_timer(&app, "function-pool-maintain").await;
    let out = maxconf(&env, &["pool", "status", "--json"]).await;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        status["last_runs"].as_array().unwrap().len(),
        2,
        "{status:#}"
    );

    let out = maxconf(&env, &["status", "--min-ready", "5"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stdout(&out).contains("4 ready rooms, below the minimum of 5"));

    // Pexip down: named, and a failure.
    sim.sim.set_down(true);
    let out = maxconf(&env, &["status"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = stdout(&out);
    let pexip = text.lines().find(|l| l.contains(" pexip ")).unwrap();
    assert!(
        pexip.starts_with("FAIL") && pexip.contains(&sim.base_url()),
        "{text}"
    );
    assert!(text.contains("pexip rooms: unknown"), "{text}");
    sim.sim.set_down(false);

    // Storage down: named within seconds, and Pexip still reported.
    let mut env = common::app::unreachable_storage_env(&sim.base_url());
    env.insert("POOL_TARGET_SIZE".into(), "4".into());
    let started = std::time::Instant::now();
    let out = maxconf(&env, &["status", "--json"]).await;
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["reachability"][0]["ok"], false, "{status:#}");
    assert!(
        status["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("storage is down (http://127.0.0.1:"),
        "{status:#}"
    );
    assert_eq!(status["reachability"][1]["ok"], true, "{status:#}");
    assert_eq!(status["pexip_rooms"]["not handed out"], 4);
}
