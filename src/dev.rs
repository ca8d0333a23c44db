//! `maxconf dev`: the whole service on one machine with no Azure and no Pexip — the embedded
//! Pexip simulator, in-memory queues, a seeded pool and auth off — and otherwise as in
//! production: the environment's settings, the timers on their schedules, the public routes
//! (with printed event-sink credentials and a Genesys stand-in), and a control for Pexip faults.

use std::collections::HashMap;
use std::time::Duration;

use crate::app::{self, StartError};
use crate::config::{ConfigError, Settings};
use crate::pool::Queue;
use crate::sim::{SimAuth, SimConfig, Simulator};

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub port: u16,
    /// Rooms seeded into the pool at start (the target is `POOL_TARGET_SIZE`, default 10).
    pub rooms: u32,
    /// Latency the simulator adds to every Management API request.
    pub pexip_latency: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Settings(Vec<ConfigError>),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The event-sink user `maxconf dev` prints (its password is fresh each start).
pub const DEV_EVENT_SINK_USER: &str = "dev-sink";
/// The Genesys division the stand-in gives every agent, and the one allowed.
pub const DEV_DIVISION: &str = "dev-division";
/// How often the dev scheduler fires (the functions' own schedules: maintain and metrics every
/// 5 minutes, GC every 10).
const TIMERS: [(&str, Duration); 3] = [
    ("function-pool-maintain", Duration::from_secs(300)),
    ("function-metrics", Duration::from_secs(300)),
    ("function-room-gc", Duration::from_secs(600)),
];

/// Settings for dev mode: the environment's, over dev defaults; Pexip is always the simulator
/// and storage always in memory.
pub fn settings(
    pexip_base_url: &str,
    extra: &HashMap<&str, String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Settings, Vec<ConfigError>> {
    let forced: HashMap<&str, Option<String>> = [
        (
            "AzureWebJobsStorage",
            Some("UseDevelopmentStorage=true".to_owned()),
        ),
        ("POOL_QUEUE_CONNECTION", None),
        ("PEXIP_BASE_URL", Some(pexip_base_url.to_owned())),
        ("PEXIP_USERNAME", Some("dev".to_owned())),
        ("PEXIP_PASSWORD", Some("dev".to_owned())),
        ("PEXIP_OAUTH_CLIENT_ID", None),
        ("PEXIP_OAUTH_PRIVATE_KEY", None),
        ("PEXIP_CA_CERT", None),
    ]
    .into_iter()
    .collect();
    let defaults: HashMap<&str, &str> = [("AUTH_MODE", "none"), ("POOL_WARMUP_SECS", "0")]
        .into_iter()
        .collect();
    Settings::from_lookup_all(|name| match forced.get(name) {
        Some(value) => value.clone(),
        None => env(name)
            .filter(|v| !v.trim().is_empty())
            .or_else(|| extra.get(name).cloned())
            .or_else(|| defaults.get(name).map(|v| (*v).to_owned())),
    })
}

/// A stand-in for Genesys Cloud's `GET /api/v2/users/me`: `token` is an agent of
/// [`DEV_DIVISION`], anything else is refused.
async fn genesys_stand_in(token: String) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    use axum::http::{HeaderMap, StatusCode};
    let listener = app::bind(0).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = axum::Router::new().route(
        "/api/v2/users/me",
        axum::routing::get(move |headers: HeaderMap| async move {
            let expected = format!("Bearer {token}");
            if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&expected) {
                Ok(axum::Json(serde_json::json!({
                    "id": "dev-agent",
                    "division": {"id": DEV_DIVISION}
                })))
            } else {
                Err(StatusCode::UNAUTHORIZED)
            }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, task))
}

/// Faults for the simulated Pexip, set over a dev-only control port:
/// `POST /faults {"latency_ms":200, "down":true, "fail_next":3, "status":503}`.
async fn fault_control(sim: Simulator) -> std::io::Result<(String, tokio::task::JoinHandle<()>)> {
    #[derive(serde::Deserialize)]
    struct Faults {
        latency_ms: Option<u64>,
        down: Option<bool>,
        fail_next: Option<u32>,
        status: Option<u16>,
    }
    let listener = app::bind(0).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = axum::Router::new().route(
        "/faults",
        axum::routing::post(move |axum::Json(faults): axum::Json<Faults>| async move {
            if let Some(ms) = faults.latency_ms {
                sim.set_latency(Duration::from_millis(ms));
            }
            if let Some(down) = faults.down {
                sim.set_down(down);
            }
            if let Some(n) = faults.fail_next {
                let status = faults.status.unwrap_or(503);
                if !(400..=599).contains(&status) {
                    return Err((
                        axum::http::StatusCode::BAD_REQUEST,
                        "status must be 400-599",
                    ));
                }
                sim.fail_next(n, status);
            }
            Ok(axum::http::StatusCode::NO_CONTENT)
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Ok((url, task))
}

/// Fires each timer function on its schedule, as the host does: `POST /<function>` on the
/// service's own port.
fn schedule_timers(base: String) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::new();
        let mut tasks = Vec::new();
        for (function, every) in TIMERS {
            let http = http.clone();
            let url = format!("{base}/{function}");
            tasks.push(tokio::spawn(async move {
                let mut tick = tokio::time::interval(every);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let sent = http
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(r#"{"Data":{"timer":{}},"Metadata":{}}"#)
                        .send()
                        .await;
                    if let Err(e) = sent {
                        tracing::warn!(function, error = %e, "dev timer could not reach the service");
                    }
                }
            }));
        }
        futures::future::join_all(tasks).await;
    })
}

pub async fn run(options: DevOptions) -> Result<(), DevError> {
    crate::tls::ensure_crypto_provider();
    let sim = Simulator::spawn(SimConfig {
        latency: options.pexip_latency,
        ..SimConfig::default()
    })
    .await?;
    let sink_password = crate::routes::new_guid();
    let agent_token = crate::routes::new_guid();
    let (genesys_url, _genesys) = genesys_stand_in(agent_token.clone()).await?;
    let (control_url, _control) = fault_control(sim.sim.clone()).await?;
    let extra: HashMap<&str, String> = [
        ("EVENT_SINK_USERNAME", DEV_EVENT_SINK_USER.to_owned()),
        ("EVENT_SINK_PASSWORD", sink_password.clone()),
        ("GENESYS_API_BASE", genesys_url),
        ("GENESYS_ALLOWED_DIVISIONS", DEV_DIVISION.to_owned()),
    ]
    .into_iter()
    .collect();
    let settings = settings(&sim.base_url(), &extra, |name| std::env::var(name).ok())
        .map_err(DevError::Settings)?;
    crate::telemetry::init(settings.log_format);
    crate::runs::QUEUE.use_memory(&settings);
    crate::operations::QUEUE.use_memory(&settings);
    crate::handouts::QUEUE.use_memory(&settings);
    let pool = Queue::memory(&settings.pool.queue_name);
    let deletions = Queue::memory(&settings.pool.deletion_queue_name);
    let sink = settings.event_sink.clone();
    let target = settings.pool.target_size;
    let state = app::state(settings, pool, deletions).await?;
    for _ in 0..options.rooms {
        if let Err(e) = state.broker.refill_one().await {
            tracing::warn!(error = %e, "could not seed a room");
        }
    }
    let listener = app::bind(options.port).await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let _timers = schedule_timers(base.clone());
    println!(
        "maxconf dev: serving on {base} (Pexip simulator at {}; auth off)",
        sim.base_url()
    );
    println!(
        "  pool seeded with {} rooms (target {target}; maintain tops it up every 5 minutes)",
        options.rooms
    );
    println!(
        "  create: curl -s -X POST '{base}/api/room/create?uuiData=6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex'"
    );
    println!("  delete: curl -s -i -X DELETE '{base}/api/room/<name from create>'");
    println!(
        "  timers now: curl -s -X POST {base}/function-pool-maintain (also function-room-gc, function-metrics)"
    );
    println!(
        "  operator commands: maxconf status --api {base}/api (also pool fill|drain, reap, gc, maintain)"
    );
    if let Some(sink) = &sink {
        println!(
            "  event sink: Basic {} / {} ; maxconf trigger conference_ended <room> --url {base}",
            sink.username,
            sink.password.expose()
        );
        println!(
            "    export EVENT_SINK_USERNAME={} EVENT_SINK_PASSWORD={}",
            sink.username,
            sink.password.expose()
        );
    }
    println!(
        "  agent lookup: curl -s -H 'x-auth-token: {agent_token}' '{base}/api/public/room/<name>'"
    );
    println!(
        "  Pexip faults: curl -s -X POST {control_url}/faults -d '{{\"latency_ms\":500,\"down\":false,\"fail_next\":2,\"status\":503}}' -H 'content-type: application/json'"
    );
    app::serve(listener, state).await?;
    drop(sim);
    Ok(())
}

/// Serves only the simulator on `127.0.0.1:<port>`, with the credentials local.settings.json uses.
pub async fn simulate(port: u16, latency: Duration) -> Result<(), DevError> {
    let sim = Simulator::new(SimConfig {
        auth: SimAuth::Basic {
            username: "dev".into(),
            password: "dev".into(),
        },
        latency,
        ..SimConfig::default()
    });
    let listener = app::bind(port).await?;
    println!(
        "Pexip Management API simulator on http://{} (HTTP Basic dev/dev)",
        listener.local_addr()?
    );
    sim.serve(listener).await?;
    Ok(())
}
