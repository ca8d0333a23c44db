//! The `maxconf` binary as a process: start-up settings errors, the Functions host's start-up
//! and forwarded requests, and `maxconf dev`.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{SPEC_UUI, test_env};
use maxconf::sim::{SimConfig, Simulator};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `/` as the host does until the process answers.
async fn wait_until_up(port: u16, child: &mut Killed) {
    let child = &mut child.0;
    maxconf::tls::ensure_crypto_provider();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = reqwest::get(format!("http://127.0.0.1:{port}/")).await {
            assert!(response.status().is_success());
            return;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("maxconf exited early: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "maxconf did not answer on port {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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
