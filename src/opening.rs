//! The opening: the pool is topped up as soon as Pexip answers, not at the next 5-minute
//! maintainer run. One long-lived task per instance (started by [`crate::app::serve`]) watches
//! the clock; from `POOL_WARMUP_SECS` + 2 minutes before each opening it probes Pexip every
//! 2 seconds, and when Pexip answers it calls [`crate::maintain::top_up`] with the target, so
//! rooms created before the opening are warm (dialable) at the opening.
//!
//! Several instances (or both slots) watching at once: `top_up` re-reads the pool size before
//! every batch of `PEXIP_MAX_CONCURRENCY - 1` creates, and each instance first waits a random
//! 0-2 s, so the later ones usually see the earlier ones' rooms. The worst case is one batch
//! too many per extra instance; the staging slot does not take part (`TIMERS_ENABLED=false`),
//! and the extra rooms are not lost: they are handed out like the others.

use std::sync::Arc;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::service_hours::{ServiceHours, Status};

const PROBE_EVERY: Duration = Duration::from_secs(2);
/// Wait after a top-up that left the pool short (a create failed), before trying again.
const RETRY_SHORT_EVERY: Duration = Duration::from_secs(10);
/// Top-ups tried for one opening before leaving the rest to the maintainer.
const TOP_UP_ATTEMPTS: u32 = 3;
/// The clock is read again at least this often while waiting.
const MAX_SLEEP: Duration = Duration::from_secs(600);
/// Margin on top of the warm-up: time to create the missing rooms.
const TOP_UP_MARGIN: Duration = Duration::from_secs(120);
const STAGGER_MS: u64 = 2_000;

/// Aborts the watcher when dropped (when the server stops).
pub struct Watcher(Option<JoinHandle<()>>);

impl Drop for Watcher {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// Starts the watcher unless there is nothing to watch: no schedule, an override, or
/// `timers_enabled` false (the staging slot: `TIMERS_ENABLED`, wired by the caller).
pub fn spawn(broker: Arc<Broker>, timers_enabled: bool) -> Watcher {
    let hours = &broker.settings().service_hours;
    if !hours.changes() {
        return Watcher(None);
    }
    if !timers_enabled {
        tracing::info!("timers are disabled: the pool is not topped up at the opening");
        return Watcher(None);
    }
    Watcher(Some(tokio::spawn(run(broker))))
}

/// How long before an opening Pexip is watched.
pub fn lead(broker: &Broker) -> Duration {
    broker.settings().pool.warmup + TOP_UP_MARGIN
}

async fn run(broker: Arc<Broker>) {
    let hours = &broker.settings().service_hours;
    let lead = SignedDuration::try_from(lead(&broker)).unwrap_or(SignedDuration::ZERO);
    // The opening already served; an instance that starts during open hours leaves the
    // current one to the maintainer.
    let mut served: Option<Timestamp> = None;
    loop {
        let now = hours.now();
        match hours.status_at(now) {
            Status::Open { closes_at } => sleep_until(hours, closes_at).await,
            Status::Closed { opens_at: None } => return,
            Status::Closed { opens_at: Some(at) } if served == Some(at) => {
                sleep_until(hours, Some(at)).await
            }
            Status::Closed { opens_at: Some(at) } => {
                let watch_from = at.checked_sub(lead).unwrap_or(at);
                if now < watch_from {
                    sleep_until(hours, Some(watch_from)).await;
                    continue;
                }
                serve(&broker, at).await;
                served = Some(at);
            }
        }
    }
}

/// Probes Pexip until it answers, then tops the pool up; gives up when the service closes
/// again after `opening`.
async fn serve(broker: &Broker, opening: Timestamp) {
    let hours = &broker.settings().service_hours;
    let target = u64::from(broker.settings().pool.target_size);
    let over = || {
        let now = hours.now();
        now >= opening && !hours.status_at(now).is_open()
    };
    tracing::info!(%opening, "service opening: topping the pool up as soon as Pexip answers");
    for _ in 0..TOP_UP_ATTEMPTS {
        while broker.pexip().probe().await.is_err() {
            if over() {
                tracing::warn!(%opening, "Pexip did not answer before the service closed again");
                return;
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        tokio::time::sleep(Duration::from_millis(rand::random_range(0..STAGGER_MS))).await;
        match crate::maintain::top_up(broker, target).await {
            Ok(fill) => {
                tracing::info!(
                    created = fill.created,
                    failed = fill.failed,
                    size = fill.size,
                    target,
                    "pool topped up for the opening"
                );
                if fill.size >= target {
                    return;
                }
            }
            Err(e) => tracing::warn!(error = %e, "top-up for the opening failed"),
        }
        if over() {
            return;
        }
        tokio::time::sleep(RETRY_SHORT_EVERY).await;
    }
    tracing::warn!(%opening, "the pool is still short after the opening's top-ups; the maintainer carries on");
}

/// Sleeps until just past `at` on the service-hours clock (at most [`MAX_SLEEP`]).
async fn sleep_until(hours: &ServiceHours, at: Option<Timestamp>) {
    let wait = at
        .map(|at| hours.now().duration_until(at))
        .and_then(|d| Duration::try_from(d).ok())
        .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP));
    tokio::time::sleep(wait + Duration::from_millis(10)).await;
}
