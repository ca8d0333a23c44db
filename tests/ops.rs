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
    assert!(stdout(&out).contains("added 1 rooms"), "{out:?}");

    let out = maxconf(&env, &["pool", "status"]).await;
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).trim(),
        format!("queue {pool_name}: 3 rooms (target 3), deletion backlog 0")
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
    assert!(
        stdout(&out).contains("would settle 1 rooms: leak1 (leaked)"),
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
}

#[test]
fn help_describes_every_command() {
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for command in ["serve", "pool", "reap", "dev", "simulate"] {
        assert!(help.contains(command), "{command} in {help}");
    }
    let out = Command::new(BIN).args(["pool", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for action in ["status", "fill", "drain"] {
        assert!(help.contains(action), "{action} in {help}");
    }
}
