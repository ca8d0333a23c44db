//! Remote mode: the operator commands as processes, run with `--api` against `maxconf dev`
//! and against `maxconf serve` with `AUTH_MODE=entra` and a fake tenant; the management routes
//! with the operator role, the caller role and no token.

mod common;

use std::collections::HashMap;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::app::{TestApp, problem, test_env};
use common::entra::*;
use common::process::{Killed, free_port, wait_until_up};
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

/// Runs `maxconf <args>` with only `env` (no inherited MAXCONF_API or Azure login).
async fn maxconf(env: &HashMap<String, String>, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command.env_clear().envs(env).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `maxconf dev` on a free port; its API base for `--api`.
async fn dev(rooms: u32, env: &[(&str, &str)]) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--rooms",
            &rooms.to_string(),
        ])
        .env_clear()
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    (guard, format!("http://127.0.0.1:{port}/api"))
}

#[tokio::test]
async fn every_operator_command_runs_remotely_against_dev_without_credentials() {
    let (_dev, api) = dev(2, &[("POOL_TARGET_SIZE", "4")]).await;
    // No settings at all but the URL: no storage, no Pexip, no token.
    let env: HashMap<String, String> = [("MAXCONF_API".to_owned(), api.clone())].into();
    let run = |args: &'static [&'static str]| {
        let env = env.clone();
        async move { maxconf(&env, args).await }
    };

    let out = run(&["status"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("pool room-creation-queue: 2 ready of target 4 (minimum 2)"),
        "{text}"
    );
    assert!(text.contains("pexip rooms: 2 not handed out"), "{text}");
    assert!(text.contains("ok   storage  memory"), "{text}");
    assert!(text.contains("status: ok"), "{text}");

    // Below --min-ready: exit 1, as locally; --json is the same report.
    let out = run(&["status", "--json", "--min-ready", "3"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pool"]["ready"], 2);
    assert_eq!(
        status["problems"],
        json!(["2 ready rooms, below the minimum of 3"])
    );

    let out = run(&["pool", "fill", "--count", "1"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        "room added\nadded 1 room, 0 failed; the pool now holds 3\n"
    );
    let out = run(&["pool", "fill"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("added 1 room, 0 failed; the pool now holds 4"),
        "{out:?}"
    );
    let out = run(&["pool", "fill"]).await;
    assert_eq!(stdout(&out), "pool is at its target; nothing to add\n");

    let out = run(&["pool", "status"]).await;
    assert!(stdout(&out).contains("4 ready of target 4"), "{out:?}");

    let out = run(&["reap", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stderr(&out).contains("a second look a few seconds later"),
        "{out:?}"
    );
    assert!(
        stdout(&out).contains("reap (dry run): Pexip has 4 rooms"),
        "{out:?}"
    );
    let out = run(&["reap"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("reap: Pexip has 4 rooms"), "{out:?}");

    let out = run(&["gc", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).starts_with("room gc (dry run): 0 due"),
        "{out:?}"
    );
    let out = run(&["gc"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with("room gc: 0 due"), "{out:?}");

    let out = run(&["maintain"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).contains("pool maintain"), "{out:?}");
    // The operator's maintainer run is the last one status reports.
    let out = run(&["status"]).await;
    assert!(stdout(&out).contains("last maintain: "), "{out:?}");
    assert!(!stdout(&out).contains("last maintain: no run"), "{out:?}");

    // Drain still needs --yes (refused before anything is sent).
    let out = run(&["pool", "drain"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = run(&["pool", "drain", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert_eq!(text.matches("deleted ").count(), 4, "{text}");
    assert!(text.ends_with("drained 4 rooms, 0 failed\n"), "{text}");
    let out = run(&["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pool"]["ready"], 0, "{status:#}");

    // --api wins over nothing else: an unreachable service is a failure naming it.
    let mut env = env.clone();
    env.insert(
        "MAXCONF_API".into(),
        format!("http://127.0.0.1:{}/api", free_port()),
    );
    let out = maxconf(&env, &["gc"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("did not answer"), "{out:?}");
    // A token is never sent in clear to a remote host.
    env.insert(
        "MAXCONF_API".into(),
        "http://maxconf.example.org/api".into(),
    );
    env.insert("MAXCONF_API_TOKEN".into(), "t".into());
    let out = maxconf(&env, &["status"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("https"), "{out:?}");

    // Without MAXCONF_API_TOKEN a remote service needs the audience for the operator's own
    // token, from the Azure CLI (none here: the failure names what to do, and nothing is sent).
    env.remove("MAXCONF_API_TOKEN");
    env.insert(
        "MAXCONF_API".into(),
        "https://maxconf.example.invalid".into(),
    );
    let out = maxconf(&env, &["gc"]).await;
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(stderr(&out).contains("MAXCONF_API_AUDIENCE"), "{out:?}");
    let out = maxconf(&env, &["gc", "--audience", "api://maxconf-test"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr(&out).contains("could not get a token for api://maxconf-test/.default"),
        "{out:?}"
    );
    assert!(stderr(&out).contains("az login"), "{out:?}");
}

/// `maxconf serve` as the host starts it, with Entra token checks against `tenant`; its env.
async fn entra_service(
    sim: &SimServer,
    tenant: &wiremock::MockServer,
) -> (Killed, String, HashMap<String, String>) {
    let mut env = test_env(&sim.base_url());
    for (k, v) in entra_env(tenant) {
        env.insert(k.to_owned(), v);
    }
    env.insert("POOL_TARGET_SIZE".into(), "2".into());
    let (service, api) = serve(&env).await;
    (service, api, env)
}

/// One more `maxconf serve` process with `env`: an instance of the same app.
async fn serve(env: &HashMap<String, String>) -> (Killed, String) {
    let port = free_port();
    let child = Command::new(BIN)
        .env_clear()
        .envs(env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    (guard, format!("http://127.0.0.1:{port}/api"))
}

/// Waits for an operation to finish; its last state.
async fn finished(http: &reqwest::Client, api: &str, token: &str, id: &str) -> Value {
    for _ in 0..300 {
        let op: Value = http
            .get(format!("{api}/manage/operations/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if op["state"] != "running" {
            return op;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("operation {id} did not finish");
}

#[tokio::test]
async fn management_routes_take_the_operator_role_and_refuse_the_callers() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let (_service, api, _env) = entra_service(&sim, &tenant).await;
    let http = reqwest::Client::new();
    let operator = token_with_roles(&[OPERATOR_ROLE]);
    let caller = token_with_roles(&[ROLE]);

    let routes: [(reqwest::Method, &str); 7] = [
        (reqwest::Method::GET, "manage/status"),
        (reqwest::Method::POST, "manage/fill?count=1"),
        (reqwest::Method::POST, "manage/drain?confirm=true"),
        (reqwest::Method::POST, "manage/reap?dry_run=true"),
        (reqwest::Method::POST, "manage/gc?dry_run=true"),
        (reqwest::Method::POST, "manage/maintain?dry_run=true"),
        (
            reqwest::Method::GET,
            "manage/operations/0b5e1e8e-0000-4000-8000-000000000001",
        ),
    ];
    sim.sim.reset_stats();
    for (method, route) in &routes {
        let url = format!("{api}/{route}");
        let none = http.request(method.clone(), &url).send().await.unwrap();
        assert!(none.headers().contains_key("www-authenticate"), "{route}");
        problem(none, 401).await;
        // The caller's role opens the caller's routes only.
        let response = http
            .request(method.clone(), &url)
            .bearer_auth(&caller)
            .send()
            .await
            .unwrap();
        let body = problem(response, 403).await;
        assert_eq!(
            body["detail"], "the token lacks the required app role",
            "{route}"
        );
    }
    assert_eq!(sim.sim.stats().requests, 0, "nothing reached Pexip");
    // And the operator's role alone does not open the caller's routes.
    let response = http
        .get(format!("{api}/pool"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    problem(response, 403).await;

    for (method, route) in &routes {
        let response = http
            .request(method.clone(), format!("{api}/{route}"))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap();
        match (method.as_str(), *route) {
            ("GET", "manage/status") => {
                assert_eq!(response.status(), 200, "{route}");
                let status: Value = response.json().await.unwrap();
                assert_eq!(status["pool"]["target"], 2);
            }
            ("GET", _) => {
                let body = problem(response, 404).await;
                assert!(body["detail"].as_str().unwrap().starts_with("no operation"));
            }
            _ => {
                assert_eq!(response.status(), 202, "{route}");
                let location = response.headers()["location"].to_str().unwrap().to_owned();
                let op: Value = response.json().await.unwrap();
                let id = op["id"].as_str().unwrap();
                assert_eq!(location, format!("operations/{id}"));
                assert_eq!(op["state"], "running");
                let done = finished(&http, &api, &operator, id).await;
                assert_eq!(done["state"], "succeeded", "{route}: {done:#}");
                assert!(
                    done["entries"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["kind"] == "line"),
                    "{route}: {done:#}"
                );
            }
        }
    }
}

#[tokio::test]
async fn remote_commands_print_what_local_ones_print_and_exit_alike() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let (_service, api, local) = entra_service(&sim, &tenant).await;
    let remote_as = |token: String| -> HashMap<String, String> {
        [
            ("MAXCONF_API".to_owned(), api.clone()),
            ("MAXCONF_API_TOKEN".to_owned(), token),
        ]
        .into()
    };
    let remote = remote_as(token_with_roles(&[OPERATOR_ROLE]));

    // A caller's token: refused, exit 1, the reason named.
    let out = maxconf(&remote_as(token_with_roles(&[ROLE])), &["status"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("403"), "{out:?}");
    assert!(stderr(&out).contains("operator app role"), "{out:?}");
    assert!(stdout(&out).is_empty());
    // No token at all against a service that requires one.
    let mut no_token = remote.clone();
    no_token.remove("MAXCONF_API_TOKEN");
    let out = maxconf(&no_token, &["gc"]).await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(stderr(&out).contains("401"), "{out:?}");

    let same = |args: &'static [&'static str], code: i32| {
        let (local, remote) = (local.clone(), remote.clone());
        async move {
            let here = maxconf(&local, args).await;
            let there = maxconf(&remote, args).await;
            assert_eq!(here.status.code(), Some(code), "{args:?} local: {here:?}");
            assert_eq!(
                there.status.code(),
                Some(code),
                "{args:?} remote: {there:?}"
            );
            assert_eq!(stdout(&here), stdout(&there), "{args:?}");
            stdout(&there)
        }
    };
    // Empty pool, below the minimum of 1: the same report, exit 1.
    let text = same(&["status"], 1).await;
    assert!(text.contains("0 ready of target 2"), "{text}");
    same(&["gc", "--dry-run"], 0).await;
    same(&["reap", "--dry-run"], 0).await;
    same(&["maintain", "--dry-run"], 0).await;
    // Pexip failing: the same failure lines and exit 1 either way.
    sim.sim.set_down(true);
    let text = same(&["pool", "fill", "--count", "1"], 1).await;
    assert!(text.contains("added 0 rooms, 1 failed"), "{text}");
    same(&["reap"], 1).await;
    sim.sim.set_down(false);

    let out = maxconf(&remote, &["pool", "fill", "--count", "2"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stdout(&out).matches("room added").count(), 2, "{out:?}");
    let text = same(&["status"], 0).await;
    assert!(text.contains("2 ready of target 2"), "{text}");
    let out = maxconf(&remote, &["maintain", "--dry-run"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = maxconf(&remote, &["pool", "drain", "--yes"]).await;
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        stdout(&out).contains("drained 2 rooms, 0 failed"),
        "{out:?}"
    );
    assert_eq!(sim.sim.room_count(), 0);
}

#[tokio::test]
async fn management_routes_refuse_bad_input_with_problems_and_change_nothing() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    sim.sim.reset_stats();
    for (method, path, rule) in [
        (
            reqwest::Method::POST,
            "/api/manage/fill?count=0",
            "fill-count",
        ),
        (
            reqwest::Method::POST,
            "/api/manage/fill?count=501",
            "fill-count",
        ),
        (
            reqwest::Method::POST,
            "/api/manage/fill?count=1&count=2",
            "manage-query",
        ),
        (reqwest::Method::POST, "/api/manage/drain", "confirm"),
        (
            reqwest::Method::POST,
            "/api/manage/drain?confirm=yes",
            "confirm",
        ),
        (
            reqwest::Method::POST,
            "/api/manage/drain?confirm=TRUE",
            "confirm",
        ),
        (
            reqwest::Method::POST,
            "/api/manage/reap?dry_run=maybe",
            "dry-run",
        ),
        // The OpenAPI enum is exact: a `True` is not guessed to mean a dry run.
        (
            reqwest::Method::POST,
            "/api/manage/gc?dry_run=True",
            "dry-run",
        ),
        (
            reqwest::Method::POST,
            "/api/manage/gc?dryrun=true",
            "manage-query",
        ),
        (
            reqwest::Method::GET,
            "/api/manage/status?min_ready=-1",
            "min-ready",
        ),
        (
            reqwest::Method::GET,
            "/api/manage/operations/not-a-guid",
            "operation-id",
        ),
    ] {
        let response = app.request(method, path).send().await.unwrap();
        let body = problem(response, 400).await;
        assert_eq!(
            body["type"],
            format!("urn:maxconf:problem:{rule}"),
            "{path}"
        );
    }
    // An unknown operation, before any was ever recorded on this account: 404, not 503.
    let response = app
        .request(
            reqwest::Method::GET,
            "/api/manage/operations/0b5e1e8e-0000-4000-8000-00000000000f",
        )
        .send()
        .await
        .unwrap();
    problem(response, 404).await;
    let response = app
        .request(reqwest::Method::DELETE, "/api/manage/fill")
        .send()
        .await
        .unwrap();
    problem(response, 405).await;
    assert_eq!(sim.sim.stats().requests, 0);
    assert_eq!(app.pool.approximate_count().await.unwrap(), 0);
}

#[tokio::test]
async fn without_an_operator_role_setting_the_management_routes_are_closed() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let mut env = test_env(&sim.base_url());
    for (k, v) in entra_env(&tenant) {
        env.insert(k.to_owned(), v);
    }
    env.remove("AUTH_OPERATOR_ROLE");
    let app = TestApp::spawn_env(env).await;
    let response = app
        .request(reqwest::Method::GET, "/api/manage/status")
        .bearer_auth(token_with_roles(&[OPERATOR_ROLE, ROLE]))
        .send()
        .await
        .unwrap();
    let body = problem(response, 403).await;
    assert_eq!(
        body["detail"],
        "management routes are disabled: AUTH_OPERATOR_ROLE is not set"
    );
    // A bad token is still a 401.
    let response = app
        .request(reqwest::Method::GET, "/api/manage/status")
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    problem(response, 401).await;
}

#[tokio::test]
async fn an_operation_started_on_one_instance_is_followed_from_another() {
    let sim = sim().await;
    let tenant = tenant(vec![jwk("k1", N_1)]).await;
    let (_first, first, env) = entra_service(&sim, &tenant).await;
    let (_second, second) = serve(&env).await;
    let http = reqwest::Client::new();
    let operator = token_with_roles(&[OPERATOR_ROLE]);
    let response = http
        .post(format!("{first}/manage/fill?count=1"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let op: Value = response.json().await.unwrap();
    let id = op["id"].as_str().unwrap();
    // The other instance never ran it: it answers from the operation's record in storage.
    let done = finished(&http, &second, &operator, id).await;
    assert_eq!(done["state"], "succeeded", "{done:#}");
    assert_eq!(done["command"], "pool fill --count 1");
    let lines: Vec<&str> = done["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "line")
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(lines, ["added 1 room, 0 failed; the pool now holds 1"]);
    // And the remote command, pointed at the second instance, prints it like a local run.
    let env: HashMap<String, String> = [
        ("MAXCONF_API".to_owned(), second.clone()),
        ("MAXCONF_API_TOKEN".to_owned(), operator.clone()),
    ]
    .into();
    let out = maxconf(&env, &["status", "--json"]).await;
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["pool"]["total"], 1, "{status:#}");
}

/// Another instance replacing the records hides them for a moment (it receives them to prune
/// the old ones). A look-up then waits for the record instead of answering 404, which would
/// end an operator's remote command in the middle of an operation.
#[tokio::test]
async fn an_operation_whose_record_is_briefly_hidden_is_still_found() {
    let sim = sim().await;
    let app = TestApp::spawn(&sim.base_url()).await;
    let settings = app.state.broker.settings();
    let id = "0b5e1e8e-0000-4000-8000-0000000000aa";
    let record = json!({"id": id, "command": "gc --dry-run", "state": "succeeded",
        "started_at": "2026-12-01T00:00:00Z", "finished_at": "2026-12-01T00:00:01Z",
        "entries": []});
    let queue = maxconf::operations::QUEUE
        .queue(settings, Duration::from_secs(5))
        .unwrap();
    queue.create_if_missing().await.unwrap();
    queue
        .send(&record.to_string(), Duration::ZERO)
        .await
        .unwrap();
    let held = queue.receive(32, Duration::from_secs(1)).await.unwrap();
    assert_eq!(held.len(), 1);
    let found = maxconf::operations::get(settings, id)
        .await
        .unwrap()
        .expect("found once the other instance lets go");
    assert_eq!(found.state, maxconf::operations::State::Succeeded);
    // An operation no record names is still not found.
    let missing = "0b5e1e8e-0000-4000-8000-0000000000ab";
    assert!(
        maxconf::operations::get(settings, missing)
            .await
            .unwrap()
            .is_none()
    );
}
