//! The service as the Functions host runs it: a real listener on a free port, its queues on
//! the shared Azurite (unique names per test), Pexip at a URL the test chooses.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use maxconf::app;
use maxconf::config::Settings;
use maxconf::pool::Queue;
use maxconf::routes::AppState;

use super::azurite::{azurite, unique_queue_name};

pub const FUNCTION_KEY: &str = "test-function-key-0123456789";
pub const PEXIP_USER: &str = "maxconf-admin";
pub const PEXIP_PASSWORD: &str = "pexip-password-abc";

/// `id&MTIzNDU2LDc2NTQzMg` as the IDIM Video API sends it.
pub const SPEC_UUI: &str = "6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex";
pub const SPEC_TAG: &str = "https://id.gov.bc.ca/idcheck/protected/video/MTIzNDU2LDc2NTQzMg";

/// Inserts a room as this release makes it (`created` long ago on its own alias) carrying
/// `tag`: with a tag, a pool handout as it stands after the create; without, a pool room.
pub fn insert_our_room(sim: &maxconf::sim::Simulator, name: &str, tag: &str) -> u64 {
    sim.insert_room(
        serde_json::json!({"name": name, "tag": tag, "allow_guests": true,
        "pin": "123456", "guest_pin": "654321",
        "aliases": [{"alias": name, "description": "maxconf:created:2020-01-01T00:00:00Z"}]}),
    )
    .unwrap()
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub state: AppState,
    pub pool: Queue,
    pub deletions: Queue,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Settings for a test: Azurite, fresh queues, Basic auth to `pexip_url`, no warm-up.
pub fn test_env(pexip_url: &str) -> HashMap<String, String> {
    [
        ("AzureWebJobsStorage", azurite().connection_string()),
        ("POOL_QUEUE_NAME", unique_queue_name("pool")),
        ("DELETION_QUEUE_NAME", unique_queue_name("del")),
        ("PEXIP_BASE_URL", pexip_url.to_owned()),
        ("PEXIP_USERNAME", PEXIP_USER.to_owned()),
        ("PEXIP_PASSWORD", PEXIP_PASSWORD.to_owned()),
        ("PEXIP_TIMEOUT_SECS", "2".to_owned()),
        ("AUTH_MODE", "none".to_owned()),
        ("POOL_WARMUP_SECS", "0".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// Like [`test_env`], with storage pointing at a port nothing listens on.
pub fn unreachable_storage_env(pexip_url: &str) -> HashMap<String, String> {
    let mut env = test_env(pexip_url);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    env.insert(
        "AzureWebJobsStorage".into(),
        format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={};\
             QueueEndpoint=http://127.0.0.1:{port}/devstoreaccount1;",
            maxconf::pool::connection::DEV_ACCOUNT_KEY
        ),
    );
    env
}

impl TestApp {
    pub async fn spawn(pexip_url: &str) -> Self {
        Self::spawn_with(pexip_url, &[]).await
    }

    pub async fn spawn_with(pexip_url: &str, overrides: &[(&str, &str)]) -> Self {
        let mut env = test_env(pexip_url);
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        Self::spawn_env(env).await
    }

    pub async fn spawn_env(env: HashMap<String, String>) -> Self {
        let settings = Settings::from_lookup(|k| env.get(k).cloned()).expect("test settings");
        let (pool, deletions) = app::azure_queues(&settings).expect("queues");
        let state = app::state(settings, pool.clone(), deletions.clone())
            .await
            .expect("state");
        let listener = app::bind(0).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn({
            let state = state.clone();
            async move {
                app::serve(listener, state).await.expect("serve");
            }
        });
        maxconf::tls::ensure_crypto_provider();
        Self {
            base,
            http: reqwest::Client::new(),
            state,
            pool,
            deletions,
            server,
        }
    }

    /// A request as the Functions host forwards it: `/api/…`, function key, invocation id.
    pub fn request(
        &self,
        method: reqwest::Method,
        path_and_query: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path_and_query}", self.base))
            .header("x-functions-key", FUNCTION_KEY)
            .header(
                "X-Azure-Functions-InvocationId",
                "8f0c6f2e-1d3a-4c55-9d2b-6f1f3b1c2a90",
            )
            .header("X-Azure-Functions-HostVersion", "4.1040.300.0")
    }

    pub async fn create(&self, uui: &str) -> reqwest::Response {
        self.request(
            reqwest::Method::POST,
            &format!("/api/room/create?uuiData={uui}"),
        )
        .send()
        .await
        .expect("create request")
    }

    pub async fn delete_room(&self, name: &str) -> reqwest::Response {
        self.request(reqwest::Method::DELETE, &format!("/api/room/{name}"))
            .send()
            .await
            .expect("delete request")
    }

    /// Adds `n` rooms through the real refill path.
    pub async fn seed(&self, n: usize) {
        for _ in 0..n {
            self.state.broker.refill_one().await.expect("seed a room");
        }
    }

    /// Every message in the pool (received under a short lease, then released).
    pub async fn pool_texts(&self) -> Vec<String> {
        let got = self
            .pool
            .receive(32, Duration::from_secs(5))
            .await
            .expect("receive");
        for msg in &got {
            self.pool
                .release(msg, Duration::ZERO)
                .await
                .expect("release");
        }
        got.into_iter().map(|m| m.text).collect()
    }

    /// Polls until `n` messages are visible, and returns their texts: a create that did not
    /// hand its room out returns it after its answer.
    pub async fn wait_pool_texts(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let texts = self.pool_texts().await;
            if texts.len() == n {
                return texts;
            }
            assert!(
                Instant::now() < deadline,
                "{} visible messages, expected {n}",
                texts.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls until the pool holds `n` messages (the count includes invisible ones).
    pub async fn wait_pool_count(&self, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let count = self.pool.approximate_count().await.expect("count");
            if count == n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pool has {count} messages, expected {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Reads a problem+json answer and checks its envelope.
pub async fn problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "problem content type"
    );
    let body: serde_json::Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    for key in ["type", "title", "detail"] {
        assert!(body[key].is_string(), "problem has {key}: {body}");
    }
    body
}
