//! Garbage collection of ended rooms (`function-room-gc`, `maxconf gc`).
//!
//! `conference_ended` queues a room's name on the deletion queue, invisible for
//! `GC_GRACE_SECS`; a message that became visible is due. For each due message: a name that
//! cannot be read or a persistent room is discarded; a room already gone counts as deleted;
//! a room whose conference is still running goes back for another grace period; any other
//! room is deleted in Pexip, then its message. Every step is safe to repeat (a second message
//! for the same room finds it gone), so replays and overlapping runs do no harm.

use std::time::Duration;

use tokio::time::Instant;

use crate::broker::Broker;
use crate::pexip::PexipError;
use crate::pool::message::{self, PoolMessage};
use crate::pool::{MAX_BATCH, QueueError, Received};
use crate::run_report::RunReport;

/// How long a received message stays hidden while this run works on it. If a run dies, its
/// messages come back after this and the next run handles them.
const LEASE: Duration = Duration::from_secs(300);
/// A run stops taking new batches after this (the host's functionTimeout is 5 minutes).
const TIME_BUDGET: Duration = Duration::from_secs(240);

#[derive(Debug, Default)]
struct Counts {
    due: u64,
    deleted: u64,
    gone: u64,
    running: u64,
    persistent: u64,
    invalid: u64,
    failed: u64,
}

/// What became of one message.
enum Outcome {
    Deleted,
    Gone,
    /// Held until the end of the run, then put back for another grace period.
    Running,
    Persistent,
    Invalid,
    /// This room could not be handled now; the message comes back later.
    Failed(String),
    /// Pexip or storage is down or refuses us: stop the run.
    Stop(String),
}

/// One GC run over the due messages. `dry_run` reads only: no room or message is deleted and
/// every message is released as it was.
pub async fn run(broker: &Broker, dry_run: bool) -> RunReport {
    let mut report = RunReport::default();
    let mut counts = Counts::default();
    let started = Instant::now();
    // Messages kept leased until the run ends (so this run does not receive them again), then
    // made visible after the given delay.
    let mut held: Vec<(Received, Duration)> = Vec::new();
    let grace = broker.settings().pool.gc_grace;
    // Dry run: the rooms that would be deleted, by name.
    let mut would_delete: Vec<String> = Vec::new();
    let mut stop: Option<String> = None;
    let mut budget_hit = false;

    'batches: loop {
        if started.elapsed() >= TIME_BUDGET {
            budget_hit = true;
            break;
        }
        let batch = match broker.deletions().receive(MAX_BATCH, LEASE).await {
            Ok(batch) => batch,
            Err(e) => {
                stop = Some(format!("deletion queue unavailable: {e}"));
                break;
            }
        };
        if batch.is_empty() {
            break;
        }
        let mut batch = batch.into_iter();
        while let Some(msg) = batch.next() {
            counts.due += 1;
            let outcome = handle(broker, &msg, dry_run).await;
            match outcome {
                Outcome::Deleted => {
                    counts.deleted += 1;
                    if dry_run {
                        would_delete.push(room_name(&msg.text));
                    }
                }
                Outcome::Gone => counts.gone += 1,
                Outcome::Running => {
                    counts.running += 1;
                    held.push((msg, if dry_run { Duration::ZERO } else { grace }));
                    continue;
                }
                Outcome::Persistent => counts.persistent += 1,
                Outcome::Invalid => counts.invalid += 1,
                Outcome::Failed(line) => {
                    counts.failed += 1;
                    report.fail(line);
                }
                Outcome::Stop(line) => {
                    counts.failed += 1;
                    stop = Some(line);
                    // This one and the rest of the batch are due now: make them visible again.
                    held.push((msg, Duration::ZERO));
                    held.extend(batch.map(|m| (m, Duration::ZERO)));
                    break 'batches;
                }
            }
            if dry_run {
                // Kept hidden until the end of the run so the loop does not see it again.
                held.push((msg, Duration::ZERO));
            }
        }
    }

    for (msg, after) in &held {
        if let Err(e) = broker.deletions().release(msg, *after).await {
            tracing::warn!(message_id = %msg.id, error = %e, "could not release a deletion message; it returns after its lease");
        }
    }

    let prefix = if dry_run {
        "room gc (dry run)"
    } else {
        "room gc"
    };
    let summary = if dry_run {
        let names = if would_delete.is_empty() {
            String::new()
        } else {
            format!(" ({})", would_delete.join(", "))
        };
        format!(
            "{prefix}: {} due, would delete {}{names}, {} already gone, {} still running (would be put back), {} persistent (would be skipped), {} invalid (would be discarded), {} failed",
            counts.due,
            counts.deleted,
            counts.gone,
            counts.running,
            counts.persistent,
            counts.invalid,
            counts.failed
        )
    } else {
        format!(
            "{prefix}: {} due, deleted {}, {} already gone, {} still running (put back), {} persistent skipped, {} invalid discarded, {} failed",
            counts.due,
            counts.deleted,
            counts.gone,
            counts.running,
            counts.persistent,
            counts.invalid,
            counts.failed
        )
    };
    if let Some(reason) = stop {
        report.fail(format!(
            "{prefix} stopped: {reason}; the remaining messages wait for the next run"
        ));
        report.fail(summary);
    } else {
        if budget_hit {
            report.log(format!(
                "{prefix}: time budget used up; the remaining messages wait for the next run"
            ));
        }
        if counts.failed > 0 {
            report.fail(summary);
        } else {
            report.log(summary);
        }
    }
    report
}

async fn handle(broker: &Broker, msg: &Received, dry_run: bool) -> Outcome {
    let name = match message::decode(&msg.text) {
        Ok(PoolMessage::LegacyName(name)) => name,
        Ok(PoolMessage::Room(room)) => room.name,
        Err(_) => {
            tracing::warn!(message_id = %msg.id, "undecodable deletion message discarded");
            return discard(broker, msg, dry_run, Outcome::Invalid).await;
        }
    };
    if broker.settings().rooms.is_persistent(&name) {
        tracing::info!(room = %name, "persistent room is never deleted; message discarded");
        return discard(broker, msg, dry_run, Outcome::Persistent).await;
    }
    let pexip = broker.pexip();
    let conference = match pexip.find_by_name(&name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            tracing::info!(room = %name, "room already gone; message discarded");
            return discard(broker, msg, dry_run, Outcome::Gone).await;
        }
        Err(e) => return pexip_failure(&name, "look up", e),
    };
    match pexip.running_conferences(&name).await {
        Ok(running) if !running.is_empty() => {
            tracing::info!(room = %name, "conference still running; put back for another grace period");
            return Outcome::Running;
        }
        Ok(_) => {}
        Err(e) => return pexip_failure(&name, "check running conferences of", e),
    }
    if dry_run {
        return Outcome::Deleted;
    }
    match pexip.delete_conference(conference.id).await {
        Ok(()) => {
            tracing::info!(room = %name, id = conference.id, "room deleted by gc");
            discard(broker, msg, false, Outcome::Deleted).await
        }
        Err(PexipError::NotFound) => discard(broker, msg, false, Outcome::Gone).await,
        Err(e) => pexip_failure(&name, "delete", e),
    }
}

/// The room a deletion message names, for reports.
fn room_name(text: &str) -> String {
    match message::decode(text) {
        Ok(PoolMessage::LegacyName(name)) => name,
        Ok(PoolMessage::Room(room)) => room.name,
        Err(_) => "an unreadable message".to_owned(),
    }
}

fn pexip_failure(name: &str, what: &str, e: PexipError) -> Outcome {
    match e {
        PexipError::Unavailable(_) | PexipError::Auth(_) | PexipError::Config(_) => {
            Outcome::Stop(format!("Pexip: could not {what} room {name}: {e}"))
        }
        other => Outcome::Failed(format!("could not {what} room {name}: {other}")),
    }
}

/// Deletes the message (unless dry run) and reports `outcome`.
async fn discard(broker: &Broker, msg: &Received, dry_run: bool, outcome: Outcome) -> Outcome {
    if dry_run {
        return outcome;
    }
    match broker.deletions().delete(msg).await {
        // NotFound: the lease lapsed and another run holds it; that run finishes the job.
        Ok(()) | Err(QueueError::NotFound) => outcome,
        Err(e @ QueueError::Unavailable(_)) => Outcome::Stop(format!(
            "deletion queue unavailable while discarding message {}: {e}",
            msg.id
        )),
        Err(e) => Outcome::Failed(format!("could not delete deletion message {}: {e}", msg.id)),
    }
}

/// `maxconf gc [--dry-run]`: one run, its report on `out`; true when it succeeded.
pub async fn command(broker: &Broker, dry_run: bool, out: &dyn crate::ops::Out) -> bool {
    let report = crate::routes::invoke::printed(run(broker, dry_run)).await;
    crate::ops::print_report(&report, out)
}
