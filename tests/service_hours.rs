//! Service hours, with the `maxconf` binary as a process, its queues on Azurite and Pexip
//! simulated: closed (503 `outside-service-hours`, health `closed`, quiet timers, no Pexip
//! call), open (as usual), and the opening (the pool topped up as soon as Pexip answers).
//!
//! The clock seam is the hidden `MAXCONF_TEST_CLOCK_START` setting: the process's service-hours
//! clock starts at that instant and runs at real speed.

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::app::{SPEC_UUI, problem, test_env};
use common::process::free_port;
use maxconf::pool::Queue;
use maxconf::sim::{SimConfig, SimServer, Simulator};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const BIN: &str = env!("CARGO_BIN_EXE_maxconf");
const HOURS: &str = "Mon-Fri 07:30-17:00";
const SINK_USER: &str = "pexip-sink";
const SINK_PASSWORD: &str = "sink-password-123";

/// The child process, killed when the test ends however it ends.
struct Maxconf {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Maxconf {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sim() -> SimServer {
    maxconf::tls::ensure_crypto_provider();
    Simulator::spawn(SimConfig::default())
        .await
        .expect("simulator")
}

/// Settings for a process whose service-hours clock starts at `clock_start`.
fn env(sim: &SimServer, clock_start: &str) -> HashMap<String, String> {
    let mut env = test_env(&sim.base_url());
    for (k, v) in [
        ("SERVICE_HOURS", HOURS),
        ("MAXCONF_TEST_CLOCK_START", clock_start),
        ("POOL_TARGET_SIZE", "3"),
        ("EVENT_SINK_USERNAME", SINK_USER),
        ("EVENT_SINK_PASSWORD", SINK_PASSWORD),
    ] {
        env.insert(k.into(), v.into());
    }
    env
}

async fn start(env: &HashMap<String, String>) -> Maxconf {
    let port = free_port();
    let child = Command::new(BIN)
        .env_clear()
        .envs(env)
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut app = Maxconf {
        child,
        base: format!("http://127.0.0.1:{port}"),
        http: reqwest::Client::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(response) = app.http.get(format!("{}/", app.base)).send().await {
            assert!(response.status().is_success());
            return app;
        }
        if let Some(status) = app.child.try_wait().unwrap() {
            panic!("maxconf exited early: {status}");
        }
        assert!(Instant::now() < deadline, "maxconf did not answer");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Maxconf {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-functions-key", "k")
    }

    async fn create(&self) -> reqwest::Response {
        self.request(
            reqwest::Method::POST,
            &format!("/api/room/create?uuiData={SPEC_UUI}"),
        )
        .send()
        .await
        .unwrap()
    }

    async fn health(&self) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::GET, "/api/health")
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// A timer invocation as the host sends it: status and `Logs`.
    async fn invoke(&self, function: &str) -> (u16, Vec<String>) {
        let response = self
            .request(reqwest::Method::POST, &format!("/{function}"))
            .json(&json!({"Data": {}, "Metadata": {}}))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        let logs = body["Logs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        (status, logs)
    }
}

/// The same pool queue the process uses.
fn pool_queue(env: &HashMap<String, String>) -> Queue {
    let settings = maxconf::config::Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
    maxconf::app::azure_queues(&settings).unwrap().0
}

fn deletion_queue(env: &HashMap<String, String>) -> Queue {
    let settings = maxconf::config::Settings::from_lookup(|k| env.get(k).cloned()).unwrap();
    maxconf::app::azure_queues(&settings).unwrap().1
}

/// Asserts a 503 `outside-service-hours` whose `Retry-After` is the seconds to the opening,
/// `to_opening` counted from the process's start (`elapsed` ago).
async fn assert_closed(response: reqwest::Response, to_opening: u64, elapsed: Duration) {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in whole seconds");
    let body = problem(response, 503).await;
    assert_eq!(body["type"], "urn:maxconf:problem:outside-service-hours");
    let low = to_opening - elapsed.as_secs() - 2;
    assert!(
        (low..=to_opening).contains(&retry_after),
        "Retry-After {retry_after}, expected {low}..={to_opening}"
    );
}

#[tokio::test]
async fn closed_hours_refuse_pexip_routes_answer_health_closed_and_keep_timers_quiet() {
    let sim = sim().await;
    let genesys = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/api/v2/users/me"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "u1", "division": {"id": "div-a"}})),
        )
        .mount(&genesys)
        .await;
    // Tuesday 03:00 in Vancouver (UTC-7): 4 h 30 min, 16 200 s, before the opening.
    let mut env = env(&sim, "2026-06-02T03:00:00-07:00");
    env.insert("GENESYS_API_BASE".into(), genesys.uri());
    env.insert("GENESYS_ALLOWED_DIVISIONS".into(), "div-a".into());
    let started = Instant::now();
    let app = start(&env).await;
    sim.sim.clear_request_log();

    assert_closed(app.create().await, 16_200, started.elapsed()).await;
    use reqwest::Method;
    for (method, route) in [
        (Method::GET, "/api/room/room-1"),
        (Method::PATCH, "/api/room/room-1"),
        (Method::DELETE, "/api/room/room-1"),
        (Method::GET, "/api/rooms"),
        (Method::POST, "/api/rooms/bulk"),
        (Method::DELETE, "/api/rooms?confirm=true"),
    ] {
        let response = app
            .request(method.clone(), route)
            .body(r#"{"count": 1}"#)
            .send()
            .await
            .unwrap();
        assert_closed(response, 16_200, started.elapsed()).await;
    }
    let public = app
        .http
        .get(format!("{}/api/public/room/room-1", app.base))
        .header("x-auth-token", "agent-token")
        .send()
        .await
        .unwrap();
    assert_closed(public, 16_200, started.elapsed()).await;

    // What needs only the queues still works.
    let pool = app.request(Method::GET, "/api/pool").send().await.unwrap();
    assert_eq!(pool.status(), 200);
    let sink = app
        .http
        .post(format!("{}/api/public/event_sink", app.base))
        .basic_auth(SINK_USER, Some(SINK_PASSWORD))
        .json(&json!({"event": "conference_ended", "data": {"name": "room-9"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(sink.status(), 200);
    assert_eq!(deletion_queue(&env).approximate_count().await.unwrap(), 1);

    let (status, health) = app.health().await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "closed");
    assert_eq!(health["opens_at"], "2026-06-02T14:30:00Z");
    assert_eq!(health["checks"]["storage"], "ok");
    assert!(health["timestamp"].is_string());

    for function in ["function-pool-maintain", "function-room-gc"] {
        let (status, logs) = app.invoke(function).await;
        assert_eq!(status, 200, "{function}: {logs:?}");
        assert!(
            logs.iter().any(|l| l.contains("outside service hours")),
            "{function} says why nothing ran: {logs:?}"
        );
    }
    let (status, logs) = app.invoke("function-metrics").await;
    assert_eq!(status, 200, "{logs:?}");
    for line in [
        "metric maxconf_pool_available=0",
        "metric maxconf_deletion_backlog=1",
        "metric maxconf_service_open=0",
    ] {
        assert!(logs.iter().any(|l| l == line), "{line} in {logs:?}");
    }
    let next: Vec<u64> = logs
        .iter()
        .filter_map(|l| l.strip_prefix("metric maxconf_service_next_change_secs="))
        .map(|v| v.parse().unwrap())
        .collect();
    assert!(
        matches!(next[..], [s] if s <= 16_200 && s > 16_100),
        "{logs:?}"
    );

    // The operator's view says the same (and asks Pexip nothing either).
    let mut command = Command::new(BIN);
    command.env_clear().envs(&env).args(["pool", "status"]);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("service: closed until 2026-06-02T14:30:00Z (America/Vancouver)"),
        "{stdout}"
    );

    assert_eq!(sim.sim.request_log(), [], "no Pexip call while closed");
    assert_eq!(pool_queue(&env).approximate_count().await.unwrap(), 0);
}

#[tokio::test]
async fn open_hours_serve_as_usual() {
    let sim = sim().await;
    // Tuesday 10:00 in Vancouver.
    let env = env(&sim, "2026-06-02T10:00:00-07:00");
    let app = start(&env).await;

    let response = app.create().await;
    assert_eq!(response.status(), 200);
    let (status, health) = app.health().await;
    assert_eq!(
        (status, &health["status"]),
        (200, &json!("alive")),
        "{health}"
    );
    assert!(health.get("opens_at").is_none());

    let (status, logs) = app.invoke("function-pool-maintain").await;
    assert_eq!(status, 200, "{logs:?}");
    assert_eq!(pool_queue(&env).approximate_count().await.unwrap(), 3);
    let (status, logs) = app.invoke("function-metrics").await;
    assert_eq!(status, 200, "{logs:?}");
    assert!(
        logs.iter().any(|l| l == "metric maxconf_service_open=1"),
        "{logs:?}"
    );
    assert!(
        logs.iter()
            .any(|l| l.starts_with("metric maxconf_pexip_rooms=")),
        "{logs:?}"
    );
}

#[tokio::test]
async fn at_the_opening_the_pool_is_topped_up_as_soon_as_pexip_answers() {
    let sim = sim().await;
    // The VMs are still starting: Pexip answers 503 across the opening.
    sim.sim.set_down(true);
    // Tuesday 07:29:56: the service opens 4 s after the process starts.
    let env = env(&sim, "2026-06-02T07:29:56-07:00");
    let started = Instant::now();
    let app = start(&env).await;
    assert_closed(app.create().await, 4, started.elapsed()).await;

    // Past the opening: the routes are open (Pexip itself still refuses).
    let opened = started + Duration::from_secs(5);
    tokio::time::sleep_until(opened.into()).await;
    let (_, health) = app.health().await;
    assert_ne!(health["status"], "closed", "{health}");
    let pool = pool_queue(&env);
    assert_eq!(pool.approximate_count().await.unwrap(), 0);

    // Pexip answers: no timer runs, yet the pool reaches its target within seconds.
    sim.sim.set_down(false);
    let up = Instant::now();
    loop {
        let count = pool.approximate_count().await.unwrap();
        if count >= 3 {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(10),
            "pool has {count} rooms {:?} after Pexip answered",
            up.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Topped up to the target, not past it.
    assert_eq!(pool.approximate_count().await.unwrap(), 3);
    assert_eq!(sim.sim.stats().creates, 3);
}

#[test]
fn a_bad_service_hours_setting_stops_start_up_with_one_line_naming_it() {
    for (setting, value) in [
        ("SERVICE_HOURS", "Mon-Fri 7:30-17:00"),
        ("SERVICE_TIMEZONE", "Pacific Time"),
        ("SERVICE_CLOSED_DATES", "2026-12-25,Boxing Day"),
        ("SERVICE_OVERRIDE", "shut"),
    ] {
        let output = Command::new(BIN)
            .env_clear()
            .envs([
                ("AzureWebJobsStorage", "UseDevelopmentStorage=true"),
                ("PEXIP_BASE_URL", "https://pexip.example.org"),
                ("PEXIP_USERNAME", "admin"),
                ("PEXIP_PASSWORD", "very-secret-password"),
                ("AUTH_MODE", "none"),
                (setting, value),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{setting}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains(setting), "{setting} named in: {stderr}");
    }
}
