//! Builds the service from settings; used alike by `maxconf serve`, `maxconf dev` and tests.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

use crate::auth::EntraValidator;
use crate::broker::Broker;
use crate::config::{AuthMode, Settings};
use crate::pexip::PexipClient;
use crate::pool::Queue;
use crate::routes::{self, AppState};

/// Storage requests are short; a stuck one must not hold a create for long.
const STORAGE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Pexip(#[from] crate::pexip::PexipError),
    #[error("{0}")]
    Queue(#[from] crate::pool::QueueError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("AUTH_MODE: {0}")]
    Auth(String),
}

/// The two queues, on Azure Storage (or Azurite) as the settings say.
pub fn azure_queues(settings: &Settings) -> Result<(Queue, Queue), StartError> {
    let conn = &settings.pool.connection;
    Ok((
        Queue::azure(conn, &settings.pool.queue_name, STORAGE_TIMEOUT)?,
        Queue::azure(conn, &settings.pool.deletion_queue_name, STORAGE_TIMEOUT)?,
    ))
}

/// The broker over the given queues (operator commands use it directly). Queues are created
/// if missing; a storage outage here is logged, not fatal (the host would only restart us into
/// the same outage).
pub async fn broker(
    settings: Settings,
    pool: Queue,
    deletions: Queue,
) -> Result<Arc<Broker>, StartError> {
    for queue in [&pool, &deletions] {
        if let Err(e) = queue.create_if_missing().await {
            tracing::warn!(queue = queue.name(), error = %e, "could not make sure the queue exists");
        }
    }
    let pexip = PexipClient::new(&settings.pexip)?;
    Ok(Arc::new(Broker::new(
        Arc::new(settings),
        pexip,
        pool,
        deletions,
    )))
}

/// The HTTP service's shared state.
pub async fn state(
    settings: Settings,
    pool: Queue,
    deletions: Queue,
) -> Result<AppState, StartError> {
    if matches!(settings.auth, AuthMode::None) {
        tracing::warn!(
            "AUTH_MODE=none: private routes accept any caller that reaches the function"
        );
    }
    let auth = EntraValidator::from_mode(&settings.auth)
        .map_err(|e| StartError::Auth(e.to_string()))?
        .map(Arc::new);
    Ok(AppState {
        broker: broker(settings, pool, deletions).await?,
        auth,
        health: Default::default(),
    })
}

pub fn router(state: AppState) -> Router {
    routes::service(state)
}

/// Binds `127.0.0.1:<port>` (the host talks to us on loopback; 0 picks a free port).
pub async fn bind(port: u16) -> std::io::Result<TcpListener> {
    TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await
}

/// How long a graceful stop waits for requests in flight, then again for background work
/// (creates whose caller left, refills, operations).
pub const STOP_BOUND: std::time::Duration = std::time::Duration::from_secs(30);

/// Serves until SIGTERM or SIGINT, then stops gracefully: no new connections, requests in
/// flight answered, background work finished, each within [`STOP_BOUND`]. The pool's
/// invariant never depends on this: the Functions host may kill the process instead.
pub async fn serve(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    serve_until(listener, state, stop_signal()).await
}

/// [`serve`] with the stop given by `stop` (tests use a channel).
pub async fn serve_until(
    listener: TcpListener,
    state: AppState,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let broker = Arc::clone(&state.broker);
    // Tops the pool up as soon as Pexip answers at each opening (service hours).
    let timers_enabled = broker.settings().timers_enabled;
    let _opening = crate::opening::spawn(Arc::clone(&broker), timers_enabled);
    let (stopping, stopped) = tokio::sync::oneshot::channel::<()>();
    let signal = async move {
        stop.await;
        tracing::info!("stopping: accepting no new requests, finishing those in flight");
        let _ = stopping.send(());
    };
    let server = axum::serve(listener, router(state)).with_graceful_shutdown(signal);
    let bound = async move {
        if stopped.await.is_ok() {
            tokio::time::sleep(STOP_BOUND).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        served = server => served?,
        () = bound => tracing::warn!("stop bound reached with requests still in flight"),
    }
    if broker.finish_background_work(STOP_BOUND).await {
        tracing::info!("stopped: every request and background task finished");
    } else {
        tracing::warn!(
            "stop bound reached with background work unfinished; the maintainer settles it"
        );
    }
    Ok(())
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(term) => term,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
