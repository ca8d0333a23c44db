//! The `maxconf` binary as a process: start-up settings errors, the Functions host's start-up
//! and forwarded requests, and `maxconf dev`.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{SPEC_UUI, test_env};
use common::process::{Killed, free_port, wait_until_up};
use maxconf::sim::{SimConfig, Simulator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");

fn run_with_env(env: &[(&str, &str)]) -> (i32, String) {
    let output = Command::new(BIN)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_bad_setting_stops_start_up_with_one_line_naming_it() {
    let good = [
        ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
        ("PEXIP_BASE_URL", "https://pexip.example.org"),
        ("PEXIP_USERNAME", "admin"),
        ("PEXIP_PASSWORD", "very-secret-password"),
        ("AUTH_MODE", "none"),
    ];
    let cases: &[(&str, Option<&str>)] = &[
        ("AUTH_MODE", None),
        ("PEXIP_BASE_URL", Some("pexip.example.org")),
        ("POOL_TARGET_SIZE", Some("many")),
        ("ROOM_PIN_LENGTH", Some("2")),
        ("POOL_EMPTY_FALLBACK", Some("maybe")),
        ("AzureWebJobsStorage", Some("AccountName=x")),
    ];
    for (setting, value) in cases {
        let env: Vec<(&str, &str)> = good
            .iter()
            .copied()
            .filter(|(k, _)| k != setting)
            .chain(value.map(|v| (*setting, v)))
            .collect();
        let (code, stderr) = run_with_env(&env);
        assert_eq!(code, 2, "{setting}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(setting), "{setting} named in: {stderr}");
        assert!(!stderr.contains("very-secret-password"));
    }
}

#[tokio::test]
async fn serves_as_the_functions_host_starts_it() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let port = free_port();
    let env = test_env(&sim.base_url());
    let child = Command::new(BIN)
        .env_clear()
        .envs(&env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("FUNCTIONS_CUSTOMHANDLER_WORKER_ID", "worker-1")
        .env("FUNCTIONS_APP_ROOT_PATH", env!("CARGO_MANIFEST_DIR"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Guarded from the start: a failing test must not leave the process running.
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    let mut stdout = guard.0.stdout.take().unwrap();

    let http = reqwest::Client::new();
    let response = http
        .post(format!(
            "http://127.0.0.1:{port}/api/room/create?uuiData={SPEC_UUI}"
        ))
        .header("x-functions-key", "k")
        .header(
            "X-Azure-Functions-InvocationId",
            "0b5e1e8e-0000-4000-8000-000000000001",
        )
        .send()
        .await
        .unwrap();
    // Empty pool, default fallback: a room is created on demand.
    assert_eq!(response.status(), 200);
    let room: Value = response.json().await.unwrap();
    let name = room["name"].as_str().unwrap();
    let response = http
        .delete(format!("http://127.0.0.1:{port}/api/room/{name}"))
        .header("x-functions-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert!(sim.sim.room_by_name(name).is_none());

    // Logs are JSON lines; a request's events carry its invocation id and room name.
    let _ = guard.0.kill();
    let _ = guard.0.wait();
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut logs).unwrap();
    let done = logs
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object per line"))
        .find(|event| {
            event["message"] == "request done" && event["span"]["path"] == "/api/room/create"
        })
        .expect("a request done event for create");
    assert_eq!(
        done["span"]["invocation_id"],
        "0b5e1e8e-0000-4000-8000-000000000001"
    );
    assert_eq!(done["span"]["room"], name);
}

#[tokio::test]
async fn dev_mode_serves_create_and_delete_with_nothing_else_running() {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["dev", "--port", &port.to_string(), "--rooms", "3"])
        .env_clear()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;

    let http = reqwest::Client::new();
    let mut names = Vec::new();
    for _ in 0..3 {
        let response = http
            .post(format!(
                "http://127.0.0.1:{port}/api/room/create?uuiData={SPEC_UUI}"
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let room: Value = response.json().await.unwrap();
        assert!(room.get("pin").is_none());
        assert_eq!(room["guest_pin"].as_str().unwrap().len(), 6);
        names.push(room["name"].as_str().unwrap().to_owned());
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 3, "three different rooms");
    for name in &names {
        let response = http
            .delete(format!("http://127.0.0.1:{port}/api/room/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let again = http
        .delete(format!("http://127.0.0.1:{port}/api/room/{}", names[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

/// Runs `maxconf` with JSON logs on a free port, then stops it and returns its log events.
async fn serve_and_log<F, Fut>(
    env: std::collections::HashMap<String, String>,
    drive: F,
) -> Vec<Value>
where
    F: FnOnce(u16) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let port = free_port();
    let child = Command::new(BIN)
        .env_clear()
        .envs(&env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    let mut stdout = guard.0.stdout.take().unwrap();
    drive(port).await;
    let _ = guard.0.kill();
    let _ = guard.0.wait();
    let mut logs = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut logs).unwrap();
    logs.lines()
        .map(|line| serde_json::from_str::<Value>(line).expect("one JSON object per line"))
        .collect()
}

#[tokio::test]
async fn a_problems_instance_is_the_invocation_id_of_its_log_lines() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let instances = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let events = serve_and_log(test_env(&sim.base_url()), |port| {
        let instances = instances.clone();
        let sim = &sim;
        async move {
            let http = reqwest::Client::new();
            sim.sim.set_down(true);
            for id in ["0b5e1e8e-0000-4000-8000-00000000000a", "not a guid"] {
                let response = http
                    .post(format!(
                        "http://127.0.0.1:{port}/api/room/create?uuiData={SPEC_UUI}"
                    ))
                    .header("X-Azure-Functions-InvocationId", id)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), 503);
                let body: Value = response.json().await.unwrap();
                instances
                    .lock()
                    .unwrap()
                    .push(body["instance"].as_str().unwrap().to_owned());
            }
        }
    })
    .await;
    let instances = instances.lock().unwrap().clone();
    assert_eq!(
        instances[0],
        "urn:uuid:0b5e1e8e-0000-4000-8000-00000000000a"
    );
    for instance in &instances {
        let id = instance.strip_prefix("urn:uuid:").unwrap();
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["span"]["invocation_id"] == id)
            .collect();
        let failed = mine
            .iter()
            .find(|e| e["message"] == "request failed")
            .unwrap_or_else(|| panic!("a request failed line for {id}: {events:#?}"));
        let error = failed["error"].as_str().unwrap();
        assert!(error.starts_with("Pexip is unavailable: "), "{error}");
        assert_eq!(error.matches("Pexip is unavailable").count(), 1, "{error}");
        assert!(mine.iter().any(|e| e["message"] == "request done"));
    }
    // The header that was not a GUID is reported as replaced, under the generated id.
    let generated = instances[1].strip_prefix("urn:uuid:").unwrap();
    let replaced = events
        .iter()
        .find(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("X-Azure-Functions-InvocationId is not a GUID"))
        })
        .expect("the replaced id is logged");
    assert_eq!(replaced["span"]["invocation_id"], generated);
    assert_eq!(replaced["level"], "WARN");
    assert!(
        !replaced.to_string().contains("not a guid"),
        "header value not logged"
    );
}

#[tokio::test]
async fn unreachable_storage_is_logged_once_per_request_not_once_per_sdk_call() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let env = common::app::unreachable_storage_env(&sim.base_url());
    let events = serve_and_log(env, |port| async move {
        let response = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{port}/api/pool"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
    })
    .await;
    let sdk_lines = events
        .iter()
        .filter(|e| e.to_string().contains("Failed response"))
        .count();
    assert_eq!(sdk_lines, 0, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "request failed" && e["span"]["path"] == "/api/pool"),
        "{events:#?}"
    );
}

#[tokio::test]
async fn dev_mode_behaves_like_production() {
    let port = free_port();
    let child = Command::new(BIN)
        .args(["dev", "--port", &port.to_string(), "--rooms", "0"])
        .env_clear()
        .env("POOL_TARGET_SIZE", "2")
        .env("ROOM_NAME_PREFIX", "devx-")
        .env("POOL_EMPTY_FALLBACK", "reject")
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    let stdout = guard.0.stdout.take().unwrap();
    // The start-up lines, read as they come (JSON log lines are mixed in).
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    wait_until_up(port, &mut guard).await;
    let mut banner = Vec::new();
    while !banner.iter().any(|l: &String| l.contains("Pexip faults")) {
        banner.push(
            rx.recv_timeout(Duration::from_secs(10))
                .expect("start-up lines"),
        );
    }
    let banner = banner.join("\n");
    let after = |marker: &str| -> String {
        let rest = &banner[banner
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} in {banner}"))
            + marker.len()..];
        rest.split(|c: char| c.is_whitespace() || c == '\'' || c == '/')
            .find(|s| !s.is_empty())
            .unwrap()
            .to_owned()
    };
    let sink_password = after("EVENT_SINK_PASSWORD=");
    let sink_user = after("EVENT_SINK_USERNAME=");
    let agent_token = after("x-auth-token: ");
    let control = format!("http://{}", after("Pexip faults: curl -s -X POST http://"));
    assert!(banner.contains("target 2"), "{banner}");
    // LOG_FORMAT=json is honoured.
    assert!(banner.lines().any(|l| l.starts_with('{')), "{banner}");

    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let create = || {
        http.post(format!("{base}/api/room/create?uuiData={SPEC_UUI}"))
            .send()
    };
    // POOL_EMPTY_FALLBACK=reject is honoured (--rooms 0 seeded nothing, whatever the target).
    assert_eq!(create().await.unwrap().status(), 503);

    // The timers run on demand, as the host calls them: the pool is topped up to its target.
    let maintain = http
        .post(format!("{base}/function-pool-maintain"))
        .header("content-type", "application/json")
        .body(r#"{"Data":{"timer":{}},"Metadata":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(maintain.status(), 200);
    let body: Value = maintain.json().await.unwrap();
    assert!(body["Logs"].to_string().contains("/2"), "{body}");
    // ROOM_NAME_PREFIX is honoured.
    let response = create().await.unwrap();
    assert_eq!(response.status(), 200);
    let room: Value = response.json().await.unwrap();
    let name = room["name"].as_str().unwrap().to_owned();
    assert!(name.starts_with("devx-"), "{name}");

    // The public routes: the agent lookup with the printed token, the event sink via trigger.
    let lookup = |token: &str| {
        http.get(format!("{base}/api/public/room/{name}"))
            .header("x-auth-token", token)
            .send()
    };
    assert_eq!(lookup(&agent_token).await.unwrap().status(), 200);
    assert_eq!(lookup("not-the-token").await.unwrap().status(), 401);
    let trigger = |password: &str| {
        Command::new(BIN)
            .args(["trigger", "conference_ended", &name, "--url", &base])
            .env_clear()
            .env("EVENT_SINK_USERNAME", &sink_user)
            .env("EVENT_SINK_PASSWORD", password)
            .output()
            .unwrap()
    };
    let (sink_password2, wrong) = (sink_password.clone(), trigger("wrong"));
    assert_eq!(wrong.status.code(), Some(1), "{wrong:?}");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["trigger", "conference_ended", "devx-any", "--url"])
            .arg(format!("http://127.0.0.1:{port}"))
            .env_clear()
            .env("EVENT_SINK_USERNAME", "dev-sink")
            .env("EVENT_SINK_PASSWORD", sink_password2)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("200"),
        "{out:?}"
    );

    // Pexip faults: down, then a developer sees the 503.
    let fault = http
        .post(format!("{control}/faults"))
        .json(&serde_json::json!({"down": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(fault.status(), 204);
    let response = http
        .get(format!("{base}/api/room/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    http.post(format!("{control}/faults"))
        // Three failures outlast the client's three tries.
        .json(&serde_json::json!({"down": false, "fail_next": 3, "status": 500}))
        .send()
        .await
        .unwrap();
    let response = http
        .get(format!("{base}/api/room/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    let response = http
        .get(format!("{base}/api/room/{name}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// SIGTERM with a create in flight: no new connections, the create answered, its refill done,
/// exit 0.
#[tokio::test]
async fn sigterm_finishes_creates_in_flight_then_exits_zero() {
    let sim = Simulator::spawn(SimConfig::default()).await.unwrap();
    let port = free_port();
    let mut env = test_env(&sim.base_url());
    env.insert("POOL_TARGET_SIZE".into(), "2".into());
    let child = Command::new(BIN)
        .env_clear()
        .envs(&env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut guard = Killed(child);
    wait_until_up(port, &mut guard).await;
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let filled = http
        .post(format!("{base}/function-pool-maintain"))
        .json(&serde_json::json!({"Data": {}, "Metadata": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(filled.status(), 200);
    assert_eq!(sim.sim.room_count(), 2);

    let hold = sim
        .sim
        .hold_next("PATCH", "/api/admin/configuration/v1/conference/");
    let create = tokio::spawn({
        let (http, base) = (http.clone(), base.clone());
        async move {
            http.post(format!("{base}/api/room/create?uuiData={SPEC_UUI}"))
                .send()
                .await
        }
    });
    hold.arrived().await;
    let pid = guard.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    // Stopping: new connections are refused while the create waits on Pexip.
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < deadline, "still accepting after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hold.release();
    let answer = create
        .await
        .unwrap()
        .expect("the create in flight is answered");
    assert_eq!(answer.status(), 200);
    let room: Value = answer.json().await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "maxconf did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    // The background work finished before the exit: the handout stands, the refill made its
    // room.
    let stored = sim
        .sim
        .room_by_name(room["name"].as_str().unwrap())
        .unwrap();
    assert_eq!(stored["tag"], room["tag"], "{stored}");
    assert_eq!(sim.sim.room_count(), 3);
}
