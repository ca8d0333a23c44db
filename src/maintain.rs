//! The pool maintainer (`function-pool-maintain`, `maxconf reap`, `maxconf pool fill`): it
//! balances the books between Pexip and the pool queue.
//!
//! A run takes Pexip's inventory, looks at the visible pool messages, then:
//! - discards messages that cannot be used (room gone, persistent, unreadable, a second message
//!   for one room) so that a room is never reachable by two messages;
//! - settles rooms a refill left `creating` (killed, or its send failed): one whose message
//!   shows up is marked `pool`; one still without a message once it is older than warm-up plus
//!   a create's lease is an **orphan** and is deleted (no message can still be hidden for it);
//! - deletes **lost** pooled rooms: pooled, yet no message reaches them while no message is
//!   hidden at all (a create killed after deleting its message and before its PATCH landed);
//! - **reaps** leaked rooms: handed out (or pooled) more than `ROOM_MAX_AGE_HOURS` ago and
//!   reachable by no message;
//! - tops the pool up to `POOL_TARGET_SIZE`.
//!
//! Pooled rooms are judged before `ROOM_MAX_AGE_HOURS` only while the queue is quiet (a create
//! may hold their message for a while, hidden from a peek). Nothing is deleted on one look: a room must lack a message in two looks a few seconds apart,
//! and it is read back just before the delete. Persistent rooms and rooms without maxconf's
//! marker are never touched. One room that cannot be handled does not stop the run.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::broker::{ALLOCATED_MARKER, Broker, CREATING_MARKER, POOL_MARKER};
use crate::config::Settings;
use crate::pexip::{Conference, PexipError};
use crate::pool::message::{self, PoolMessage};
use crate::pool::{MAX_BATCH, QueueError, Received};
use crate::run_report::RunReport;

/// Between the two looks at the queue before anything is deleted.
const CONFIRM_DELAY: Duration = Duration::from_secs(3);
/// How long the cleanup pass holds the messages it receives.
const CLEANUP_LEASE: Duration = Duration::from_secs(30);

/// What maxconf knows of a room from Pexip alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    Persistent,
    /// Created by a refill at that time; its message may not have been sent.
    Creating(OffsetDateTime),
    /// Pool-marked and not handed out, since that time.
    Pool(OffsetDateTime),
    /// Handed out at that time.
    Allocated(OffsetDateTime),
    /// Not maxconf's (no marker): never touched.
    Foreign,
}

pub fn classify(room: &Conference, settings: &Settings) -> RoomKind {
    if settings.rooms.is_persistent(&room.name) {
        return RoomKind::Persistent;
    }
    let marked = |marker: &str| {
        room.description
            .strip_prefix(marker)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    };
    let Some((kind, t)) = [CREATING_MARKER, POOL_MARKER, ALLOCATED_MARKER]
        .into_iter()
        .find_map(|marker| marked(marker).map(|t| (marker, t)))
    else {
        return RoomKind::Foreign;
    };
    // A tag means handed out, whatever the marker says (a create may beat a refill's promote).
    if !room.tag.is_empty() || kind == ALLOCATED_MARKER {
        RoomKind::Allocated(t)
    } else if kind == CREATING_MARKER {
        RoomKind::Creating(t)
    } else {
        RoomKind::Pool(t)
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Report what would change; change nothing.
    pub dry_run: bool,
    /// Delete orphans and leaked rooms.
    pub reap: bool,
    /// Top the pool up to its target.
    pub fill: bool,
}

/// The visible pool messages, seen without leasing them (creates are not held up).
#[derive(Default)]
struct Look {
    ids: HashSet<u64>,
    names: HashSet<String>,
    /// Messages that should go: unreadable, persistent, a room that is gone, a duplicate.
    unusable: usize,
    /// Peek shows at most 32 messages; with more, the look is partial and nothing is deleted.
    complete: bool,
    /// No message is hidden: the queue's count, taken before and after the peek, equals what
    /// the peek saw. A pooled room that no message reaches in such a look has no message at
    /// all (a create killed between deleting its message and its PATCH leaves one).
    quiet: bool,
}

async fn look(broker: &Broker, inventory: &HashMap<u64, Conference>) -> Result<Look, QueueError> {
    let before = broker.pool().approximate_count().await?;
    let texts = broker.pool().peek(MAX_BATCH).await?;
    let after = broker.pool().approximate_count().await?;
    let seen = texts.len() as u64;
    let mut look = Look {
        complete: (texts.len() as u32) < MAX_BATCH,
        quiet: (texts.len() as u32) < MAX_BATCH && before == seen && after == seen,
        ..Look::default()
    };
    let names: HashMap<&str, u64> = inventory
        .values()
        .map(|c| (c.name.as_str(), c.id))
        .collect();
    for text in texts {
        match message::decode(&text) {
            Ok(PoolMessage::Room(room)) if !broker.settings().rooms.is_persistent(&room.name) => {
                if !look.ids.insert(room.id) {
                    look.unusable += 1;
                }
            }
            Ok(PoolMessage::LegacyName(name)) if !broker.settings().rooms.is_persistent(&name) => {
                match names.get(name.as_str()) {
                    Some(id) if !look.ids.insert(*id) => look.unusable += 1,
                    _ => {}
                }
                look.names.insert(name);
            }
            _ => look.unusable += 1,
        }
    }
    Ok(look)
}

/// Receives the visible messages, deletes the unusable ones, releases the rest at once.
async fn clean_queue(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
) -> Result<usize, QueueError> {
    let started = std::time::Instant::now();
    let mut held: Vec<Received> = Vec::new();
    // Stop well inside the lease: a message whose lease lapsed could come back as a second copy
    // and be taken for a duplicate.
    while started.elapsed() < CLEANUP_LEASE / 3 && held.len() < 10_000 {
        let batch = broker.pool().receive(MAX_BATCH, CLEANUP_LEASE).await?;
        if batch.is_empty() {
            break;
        }
        held.extend(batch);
    }
    let mut seen = HashSet::new();
    let mut removed = 0;
    for msg in &held {
        let keep = match message::decode(&msg.text) {
            Ok(PoolMessage::Room(room)) => {
                !broker.settings().rooms.is_persistent(&room.name)
                    && seen.insert(room.id)
                    && room_exists(broker, inventory, room.id).await
            }
            Ok(PoolMessage::LegacyName(name)) => {
                !broker.settings().rooms.is_persistent(&name)
                    && legacy_room_exists(broker, &mut seen, inventory, &name).await
            }
            Err(_) => false,
        };
        let result = if keep {
            broker.pool().release(msg, Duration::ZERO).await
        } else {
            removed += 1;
            broker.pool().delete(msg).await
        };
        if let Err(e) = result {
            tracing::warn!(message_id = %msg.id, error = %e, "queue cleanup step failed");
        }
    }
    Ok(removed)
}

async fn room_exists(broker: &Broker, inventory: &HashMap<u64, Conference>, id: u64) -> bool {
    // A room created after the inventory was taken is not in it: ask Pexip before judging
    // (and keep the message when Pexip cannot say).
    inventory.contains_key(&id) || !matches!(broker.pexip().get_conference(id).await, Ok(None))
}

/// A name-only message is kept when its room exists (asking Pexip about rooms created after
/// the inventory) and no earlier message named it.
async fn legacy_room_exists(
    broker: &Broker,
    seen: &mut HashSet<u64>,
    inventory: &HashMap<u64, Conference>,
    name: &str,
) -> bool {
    let id = match inventory.values().find(|c| c.name == name) {
        Some(c) => Some(c.id),
        None => match broker.pexip().find_by_name(name).await {
            Ok(found) => found.map(|c| c.id),
            // Cannot tell: keep it.
            Err(_) => return true,
        },
    };
    id.is_some_and(|id| seen.insert(id))
}

/// A room that no message reaches and that may be deleted, with why.
struct Candidate {
    id: u64,
    name: String,
    why: &'static str,
}

fn candidates(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
    look: &Look,
    now: OffsetDateTime,
) -> Vec<Candidate> {
    let settings = broker.settings();
    let orphan_age = settings.pool.warmup + broker.lease() + Duration::from_secs(60);
    let older_than = |t: OffsetDateTime, age: Duration| now - t > age;
    inventory
        .values()
        .filter(|c| !look.ids.contains(&c.id) && !look.names.contains(&c.name))
        .filter_map(|c| {
            let why = match classify(c, settings) {
                // Only judged on a complete look: beyond 32 visible messages one may be hidden.
                RoomKind::Creating(t) if look.complete && older_than(t, orphan_age) => "orphan",
                RoomKind::Pool(t) if look.complete && older_than(t, settings.rooms.max_age) => {
                    "stale"
                }
                // Its message is not hidden by a create either: there is none.
                RoomKind::Pool(t) if look.quiet && older_than(t, orphan_age) => "lost",
                // A room handed out a day ago is not in a live create: judged on any look.
                RoomKind::Allocated(t) if older_than(t, settings.rooms.max_age) => "leaked",
                _ => return None,
            };
            Some(Candidate {
                id: c.id,
                name: c.name.clone(),
                why,
            })
        })
        .collect()
}

/// `creating` rooms whose message is visible: the refill stopped after its send.
async fn promote(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
    look: &Look,
    dry_run: bool,
) -> usize {
    let mut promoted = 0;
    for room in inventory.values() {
        let RoomKind::Creating(t) = classify(room, broker.settings()) else {
            continue;
        };
        if !(look.ids.contains(&room.id) || look.names.contains(&room.name)) {
            continue;
        }
        let created = t.format(&Rfc3339).unwrap_or_default();
        let patch = serde_json::json!({"description": format!("{POOL_MARKER}{created}")});
        if dry_run
            || broker
                .pexip()
                .patch_conference(room.id, &patch)
                .await
                .is_ok()
        {
            promoted += 1;
        }
    }
    promoted
}

/// One maintainer run. The report's summary goes to the invocation's `Logs`.
pub async fn run(broker: &Broker, dry_run: bool) -> RunReport {
    run_plan(
        broker,
        Plan {
            dry_run,
            reap: true,
            fill: !dry_run,
        },
    )
    .await
}

pub async fn run_plan(broker: &Broker, plan: Plan) -> RunReport {
    let mut report = RunReport::default();
    let mode = if plan.dry_run { " (dry run)" } else { "" };
    let inventory = match inventory(broker).await {
        Ok(inventory) => inventory,
        Err(e) => {
            report.fail(format!(
                "pool maintain{mode}: Pexip inventory failed, nothing changed: {e}"
            ));
            return report;
        }
    };
    let counts = Counts::of(&inventory, broker.settings());
    report.log(format!(
        "pool maintain{mode}: Pexip has {} rooms ({} pool, {} allocated, {} persistent, {} other)",
        inventory.len(),
        counts.pool,
        counts.allocated,
        counts.persistent,
        counts.foreign
    ));

    if plan.reap {
        match repair(broker, &inventory, plan.dry_run).await {
            Ok(line) => report.log(line),
            Err(e) => report.fail(format!("repair stopped: {e}")),
        }
    }
    // The top-up runs even when some repair failed: a drained pool hurts callers at once.
    if plan.fill {
        let target = u64::from(broker.settings().pool.target_size);
        match top_up(broker, target).await {
            Ok(fill) => {
                let line = format!(
                    "pool at {}/{target}: {} rooms added, {} failed",
                    fill.size, fill.created, fill.failed
                );
                if fill.failed > 0 {
                    report.fail(line);
                } else {
                    report.log(line);
                }
            }
            Err(e) => report.fail(format!("top-up stopped: {e}")),
        }
    }
    report
}

async fn inventory(broker: &Broker) -> Result<HashMap<u64, Conference>, PexipError> {
    let rooms = broker.pexip().list_conferences(&[]).await?;
    let total = rooms.len();
    let inventory: HashMap<u64, Conference> = rooms
        .into_iter()
        .filter_map(|raw| Conference::from_value(raw).ok())
        .map(|c| (c.id, c))
        .collect();
    if inventory.len() < total {
        tracing::warn!(
            skipped = total - inventory.len(),
            "conferences without id or name ignored"
        );
    }
    Ok(inventory)
}

#[derive(Default)]
struct Counts {
    pool: usize,
    allocated: usize,
    persistent: usize,
    foreign: usize,
}

impl Counts {
    fn of(inventory: &HashMap<u64, Conference>, settings: &Settings) -> Self {
        let mut counts = Self::default();
        for room in inventory.values() {
            match classify(room, settings) {
                RoomKind::Pool(_) | RoomKind::Creating(_) => counts.pool += 1,
                RoomKind::Allocated(_) => counts.allocated += 1,
                RoomKind::Persistent => counts.persistent += 1,
                RoomKind::Foreign => counts.foreign += 1,
            }
        }
        counts
    }
}

#[derive(Debug, thiserror::Error)]
enum RepairError {
    #[error("{0}")]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Pexip(#[from] PexipError),
}

async fn repair(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
    dry_run: bool,
) -> Result<String, RepairError> {
    let first = look(broker, inventory).await?;
    let mut removed = 0;
    if first.unusable > 0 && !dry_run {
        removed = clean_queue(broker, inventory).await?;
    }
    let promoted = promote(broker, inventory, &first, dry_run).await;
    let partial = if first.complete {
        ""
    } else {
        " (more than 32 visible messages: only leaked rooms judged)"
    };
    let suspects = candidates(broker, inventory, &first, OffsetDateTime::now_utc());
    if suspects.is_empty() {
        return Ok(format!(
            "queue: {removed} unusable messages removed, {promoted} rooms marked pooled; \
             no orphaned or leaked rooms{partial}"
        ));
    }
    // A second look, a little later and at a jittered moment so two maintainers do not look
    // in step: a message held by a create or another look reappears by then.
    let jitter = Duration::from_millis(rand::random_range(0..2_000));
    tokio::time::sleep(CONFIRM_DELAY + jitter).await;
    let second = look(broker, inventory).await?;
    let mut done = Vec::new();
    let mut failed = 0;
    for suspect in suspects {
        if second.ids.contains(&suspect.id) || second.names.contains(&suspect.name) {
            continue;
        }
        if suspect.why == "lost" && !second.quiet {
            continue;
        }
        match judge_and_delete(broker, &suspect, dry_run).await {
            Ok(true) => done.push(format!("{} ({})", suspect.name, suspect.why)),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(room = %suspect.name, error = %e, "maintainer could not delete a room");
                failed += 1;
            }
        }
    }
    let verb = if dry_run { "would delete" } else { "deleted" };
    let line = format!(
        "queue: {removed} unusable messages removed, {promoted} rooms marked pooled; \
         {verb} {} rooms: {}{partial}",
        done.len(),
        done.join(", ")
    );
    if failed > 0 && !broker_reachable(broker).await {
        return Err(RepairError::Pexip(PexipError::Unavailable(format!(
            "{line}; {failed} deletes failed"
        ))));
    }
    Ok(if failed > 0 {
        format!("{line}; {failed} could not be deleted (retried next run)")
    } else {
        line
    })
}

/// Reads the room back and deletes it if it is still what made it a candidate.
async fn judge_and_delete(
    broker: &Broker,
    suspect: &Candidate,
    dry_run: bool,
) -> Result<bool, PexipError> {
    // A create may have handed it out since the inventory.
    let Some(now) = broker.pexip().get_conference(suspect.id).await? else {
        return Ok(false);
    };
    let max_age = broker.settings().rooms.max_age;
    let old = |t: OffsetDateTime| OffsetDateTime::now_utc() - t > max_age;
    let still = match classify(&now, broker.settings()) {
        RoomKind::Creating(_) => suspect.why == "orphan",
        RoomKind::Pool(t) => (suspect.why == "stale" && old(t)) || suspect.why == "lost",
        RoomKind::Allocated(t) => suspect.why == "leaked" && old(t),
        _ => false,
    };
    if !still {
        return Ok(false);
    }
    if dry_run {
        return Ok(true);
    }
    match broker.pexip().delete_conference(suspect.id).await {
        Ok(()) | Err(PexipError::NotFound) => {
            tracing::info!(room = %suspect.name, reason = suspect.why, "room deleted by the maintainer");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

async fn broker_reachable(broker: &Broker) -> bool {
    broker.pexip().probe().await.is_ok()
}

#[derive(Default)]
pub struct Fill {
    pub size: u64,
    pub created: u32,
    pub failed: u32,
}

/// Refills run a batch at a time, leaving one Pexip slot to the critical path.
fn batch_size(broker: &Broker) -> u64 {
    broker
        .settings()
        .pexip
        .max_concurrency
        .saturating_sub(1)
        .max(1) as u64
}

/// Runs `n` refills together; returns how many succeeded, reporting each as it lands.
async fn refill_batch(broker: &Broker, n: u64, fill: &mut Fill, on_each: &impl Fn(bool)) -> u32 {
    let mut ok = 0;
    for result in futures::future::join_all((0..n).map(|_| broker.refill_one())).await {
        on_each(result.is_ok());
        match result {
            Ok(_) => ok += 1,
            Err(e) => tracing::warn!(error = %e, "refill failed"),
        }
    }
    fill.created += ok;
    fill.failed += n as u32 - ok;
    ok
}

/// Adds rooms until the pool (visible and warming up) holds `target`, a batch at a time and
/// re-reading the size between batches, so two maintainers overshoot by one batch at most.
pub async fn top_up(broker: &Broker, target: u64) -> Result<Fill, QueueError> {
    let mut fill = Fill::default();
    loop {
        fill.size = broker.pool().approximate_count().await?;
        if fill.size >= target {
            return Ok(fill);
        }
        let n = (target - fill.size).min(batch_size(broker));
        if refill_batch(broker, n, &mut fill, &|_| {}).await == 0 {
            // Pexip or storage is down: stop now, the next run tries again.
            fill.size = broker.pool().approximate_count().await.unwrap_or(fill.size);
            return Ok(fill);
        }
    }
}

/// Adds exactly `count` rooms (operators' `pool fill --count`), reporting each as it lands.
pub async fn add_rooms(broker: &Broker, count: u64, on_each: impl Fn(bool)) -> Fill {
    let mut fill = Fill::default();
    let mut left = count;
    while left > 0 {
        let n = left.min(batch_size(broker));
        refill_batch(broker, n, &mut fill, &on_each).await;
        left -= n;
    }
    fill.size = broker.pool().approximate_count().await.unwrap_or(0);
    fill
}
