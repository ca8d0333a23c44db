//! The pool maintainer (`function-pool-maintain`, `maxconf reap`, `maxconf pool fill`): it
//! balances the books between Pexip and the pool queue.
//!
//! A run takes Pexip's inventory, looks at the visible pool messages, then:
//! - discards messages that cannot be used (room gone, persistent, unreadable, a second message
//!   for one room) so that a room is never reachable by two messages;
//! - deletes **orphans**: pool rooms that no message reaches (a refill killed between creating
//!   the room and enqueueing it) once they are older than warm-up plus a create's lease;
//! - **reaps** leaked rooms: handed out more than `ROOM_MAX_AGE_HOURS` ago with no message;
//! - tops the pool up to `POOL_TARGET_SIZE`.
//!
//! Nothing is deleted on one look: a room must lack a message in two looks a few seconds apart
//! (a create or another maintainer may hold its message for a moment), and it is read back just
//! before the delete. Persistent rooms and rooms without maxconf's marker are never touched.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::broker::{ALLOCATED_MARKER, Broker, POOL_MARKER};
use crate::config::Settings;
use crate::pexip::{Conference, PexipError};
use crate::pool::message::{self, PoolMessage};
use crate::pool::{MAX_BATCH, QueueError, Received};
use crate::routes::invoke::RunReport;

/// Between the two looks at the queue before anything is deleted.
const CONFIRM_DELAY: Duration = Duration::from_secs(3);
/// How long the cleanup pass holds the messages it receives.
const CLEANUP_LEASE: Duration = Duration::from_secs(30);

/// What maxconf knows of a room from Pexip alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    Persistent,
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
    match (marked(POOL_MARKER), marked(ALLOCATED_MARKER)) {
        (Some(t), _) if room.tag.is_empty() => RoomKind::Pool(t),
        (Some(t), _) | (_, Some(t)) => RoomKind::Allocated(t),
        _ => RoomKind::Foreign,
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
}

async fn look(broker: &Broker, inventory: &HashMap<u64, Conference>) -> Result<Look, QueueError> {
    let texts = broker.pool().peek(MAX_BATCH).await?;
    let mut look = Look {
        complete: (texts.len() as u32) < MAX_BATCH,
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
    let mut held: Vec<Received> = Vec::new();
    loop {
        let batch = broker.pool().receive(MAX_BATCH, CLEANUP_LEASE).await?;
        if batch.is_empty() || held.len() > 10_000 {
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
                    && seen_name(&mut seen, inventory, &name)
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
    // A room created after the inventory was taken is not in it: ask Pexip before judging.
    inventory.contains_key(&id) || !matches!(broker.pexip().get_conference(id).await, Ok(None))
}

fn seen_name(seen: &mut HashSet<u64>, inventory: &HashMap<u64, Conference>, name: &str) -> bool {
    match inventory.values().find(|c| c.name == name) {
        Some(c) => seen.insert(c.id),
        None => false,
    }
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
                RoomKind::Pool(t) if older_than(t, orphan_age) => "orphan",
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
    if plan.fill && !report.failed {
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
    broker
        .pexip()
        .list_conferences(&[])
        .await?
        .into_iter()
        .map(|raw| {
            Conference::from_value(raw)
                .map(|c| (c.id, c))
                .map_err(|_| PexipError::Protocol("conference without id or name".into()))
        })
        .collect()
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
                RoomKind::Pool(_) => counts.pool += 1,
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
    if !first.complete {
        return Ok(format!(
            "queue: {removed} unusable messages removed; more than {MAX_BATCH} visible messages, \
             so orphans and leaks are not judged this run"
        ));
    }
    let suspects = candidates(broker, inventory, &first, OffsetDateTime::now_utc());
    if suspects.is_empty() {
        return Ok(format!(
            "queue: {removed} unusable messages removed; no orphaned or leaked rooms"
        ));
    }
    // A second look, a little later and at a jittered moment so two maintainers do not look
    // in step: a message held by a create or another look reappears by then.
    let jitter = Duration::from_millis(rand::random_range(0..2_000));
    tokio::time::sleep(CONFIRM_DELAY + jitter).await;
    let second = look(broker, inventory).await?;
    let mut deleted = Vec::new();
    let mut would = Vec::new();
    for suspect in suspects {
        if second.ids.contains(&suspect.id) || second.names.contains(&suspect.name) {
            continue;
        }
        // Read it back: a create may have handed it out since the inventory.
        let Some(now) = broker.pexip().get_conference(suspect.id).await? else {
            continue;
        };
        let still = match classify(&now, broker.settings()) {
            RoomKind::Pool(_) => suspect.why == "orphan",
            RoomKind::Allocated(t) => {
                suspect.why == "leaked"
                    && OffsetDateTime::now_utc() - t > broker.settings().rooms.max_age
            }
            _ => false,
        };
        if !still {
            continue;
        }
        if dry_run {
            would.push(format!("{} ({})", suspect.name, suspect.why));
            continue;
        }
        match broker.pexip().delete_conference(suspect.id).await {
            Ok(()) | Err(PexipError::NotFound) => {
                tracing::info!(room = %suspect.name, reason = suspect.why, "room deleted by the maintainer");
                deleted.push(format!("{} ({})", suspect.name, suspect.why));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(if dry_run {
        format!("would delete {} rooms: {}", would.len(), would.join(", "))
    } else {
        format!(
            "queue: {removed} unusable messages removed; deleted {} rooms: {}",
            deleted.len(),
            deleted.join(", ")
        )
    })
}

pub struct Fill {
    pub size: u64,
    pub created: u32,
    pub failed: u32,
}

/// Adds rooms until the pool (visible and warming up) holds `target`, a few at a time and
/// re-reading the size between batches, so two maintainers overshoot by one batch at most.
pub async fn top_up(broker: &Broker, target: u64) -> Result<Fill, QueueError> {
    let batch = broker
        .settings()
        .pexip
        .max_concurrency
        .saturating_sub(1)
        .max(1) as u64;
    let mut fill = Fill {
        size: 0,
        created: 0,
        failed: 0,
    };
    loop {
        fill.size = broker.pool().approximate_count().await?;
        if fill.size >= target {
            return Ok(fill);
        }
        let n = (target - fill.size).min(batch);
        let results = futures::future::join_all((0..n).map(|_| broker.refill_one())).await;
        let ok = results.iter().filter(|r| r.is_ok()).count() as u32;
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            tracing::warn!(error = %e, "maintainer refill failed");
        }
        fill.created += ok;
        fill.failed += n as u32 - ok;
        if ok == 0 {
            // Pexip or storage is down: stop now, the next run tries again.
            fill.size = broker.pool().approximate_count().await.unwrap_or(fill.size);
            return Ok(fill);
        }
    }
}

/// Adds exactly `count` rooms (operators' `pool fill --count`), reporting each as it lands.
pub async fn add_rooms(broker: &Broker, count: u64, on_each: impl Fn(bool)) -> Fill {
    let batch = broker
        .settings()
        .pexip
        .max_concurrency
        .saturating_sub(1)
        .max(1) as u64;
    let mut fill = Fill {
        size: 0,
        created: 0,
        failed: 0,
    };
    let mut left = count;
    while left > 0 {
        let n = left.min(batch);
        for result in futures::future::join_all((0..n).map(|_| broker.refill_one())).await {
            on_each(result.is_ok());
            match result {
                Ok(_) => fill.created += 1,
                Err(e) => {
                    tracing::warn!(error = %e, "refill failed");
                    fill.failed += 1;
                }
            }
        }
        left -= n;
    }
    fill.size = broker.pool().approximate_count().await.unwrap_or(0);
    fill
}
