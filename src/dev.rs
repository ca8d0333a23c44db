//! `maxconf dev`: the whole service on one machine with no Azure and no Pexip — the embedded
//! Pexip simulator, in-memory queues, a seeded pool and auth off.

use std::collections::HashMap;
use std::time::Duration;

use crate::app::{self, StartError};
use crate::config::{ConfigError, Settings};
use crate::pool::Queue;
use crate::sim::{SimAuth, SimConfig, Simulator};

#[derive(Debug, Clone)]
pub struct DevOptions {
    pub port: u16,
    /// Rooms seeded into the pool at start.
    pub rooms: u32,
    /// Latency the simulator adds to every Management API request.
    pub pexip_latency: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Start(#[from] StartError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Settings for dev mode: the simulator's URL and nothing from the real environment.
pub fn settings(pexip_base_url: &str, rooms: u32) -> Result<Settings, ConfigError> {
    let vars: HashMap<&str, String> = [
        (
            "AzureWebJobsStorage",
            "UseDevelopmentStorage=true".to_owned(),
        ),
        ("PEXIP_BASE_URL", pexip_base_url.to_owned()),
        ("PEXIP_USERNAME", "dev".to_owned()),
        ("PEXIP_PASSWORD", "dev".to_owned()),
        ("AUTH_MODE", "none".to_owned()),
        ("POOL_WARMUP_SECS", "0".to_owned()),
        ("POOL_TARGET_SIZE", rooms.to_string()),
    ]
    .into_iter()
    .collect();
    Settings::from_lookup(|name| vars.get(name).cloned())
}

pub async fn run(options: DevOptions) -> Result<(), DevError> {
    let sim = Simulator::spawn(SimConfig {
        latency: options.pexip_latency,
        ..SimConfig::default()
    })
    .await?;
    let settings = settings(&sim.base_url(), options.rooms)?;
    let pool = Queue::memory(&settings.pool.queue_name);
    let deletions = Queue::memory(&settings.pool.deletion_queue_name);
    let state = app::state(settings, pool, deletions).await?;
    for _ in 0..options.rooms {
        if let Err(e) = state.broker.refill_one().await {
            tracing::warn!(error = %e, "could not seed a room");
        }
    }
    let listener = app::bind(options.port).await?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    println!(
        "maxconf dev: serving on {base} (Pexip simulator at {}; auth off)",
        sim.base_url()
    );
    println!("  pool seeded with {} rooms", options.rooms);
    println!(
        "  create: curl -s -X POST '{base}/api/room/create?uuiData=6964264d54497a4e4455324c4463324e54517a4d67;encoding=hex'"
    );
    println!("  delete: curl -s -i -X DELETE '{base}/api/room/<name from create>'");
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
