//! The pool maintainer (`function-pool-maintain`, `maxconf reap`, `maxconf pool fill`): it
//! balances the books between Pexip and the pool queue, while creates go on.
//!
//! A run takes Pexip's inventory and looks at every visible pool message (a peek when fewer
//! than 32 are visible; otherwise, and to remove unusable messages, it receives a few at a
//! time and holds each for at most [`HOLD`]: creates always find the rest). Then:
//! - unusable messages go: unreadable, persistent, a second message for one room, a room that
//!   is gone, handed out, or that disagrees with the message (PIN, aliases);
//! - rooms the previous release marked in their description get their state on their alias;
//! - **orphans** are deleted: maxconf's rooms, never handed out, that no message reaches
//!   (a refill killed before its send, or a create killed between its message delete and its
//!   PATCH), once older than warm-up plus a create's lease;
//! - handouts (a tag and no message) are recorded in storage ([`crate::handouts`]), with the
//!   time of the second look (after the handout) and the room's tag;
//! - **leaked** rooms, handed out more than `ROOM_MAX_AGE_HOURS` ago (by their alias, or by the
//!   handout record), are deleted;
//! - the pool is topped up to `POOL_TARGET_SIZE`.
//!
//! Nothing is judged on one look. A room must be missing from two complete looks taken a
//! create's lease apart (so any create that held its message then has handed it out or given
//! it back), and it is read back just before it is changed. A run keeps to [`RUN_BUDGET`] and
//! leaves the rest to the next run; its leases end by themselves if the host cuts it off.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use serde_json::json;
use time::OffsetDateTime;

use crate::broker::Broker;
use crate::conference::Conference;
use crate::config::Settings;
use crate::handouts::{self, Handouts};
use crate::pexip::{PexipClient, PexipError};
use crate::pool::message::{self, PoolMessage, PooledRoom};
use crate::pool::{MAX_BATCH, QueueError};
use crate::room_state::{self, Recorded, RoomState};
use crate::run_report::RunReport;

pub use crate::room_state::RoomKind;

/// How long the maintainer holds a message it received to look at it.
pub const HOLD: Duration = Duration::from_secs(2);
/// Messages held at once.
const HOLD_BATCH: u32 = 5;
/// A run stops starting new work after this; `functionTimeout` is 5 minutes.
pub const RUN_BUDGET: Duration = Duration::from_secs(150);
/// Messages one look reads at most.
const MAX_LOOK: usize = 10_000;

/// The maintainer's classification of one room.
pub fn classify(room: &Conference, settings: &Settings) -> RoomKind {
    room_state::classify(room, |name| settings.rooms.is_persistent(name))
}

/// The maintainer's classification with the handouts it recorded in storage: a tagged room
/// recorded with the tag it carries is handed out since then.
fn kind(room: &Conference, settings: &Settings, handouts: &Handouts) -> RoomKind {
    let kind = classify(room, settings);
    match kind {
        RoomKind::Unrecorded => handouts
            .since(room.id, &room.tag)
            .map_or(kind, RoomKind::Allocated),
        // Recorded as handed out, its tag cleared since without a record on its alias (the
        // previous release clears tags without recording first): still handed out, never an
        // orphan. Recorded afresh if no message reaches it.
        RoomKind::Unallocated(_) if handouts.contains(room.id) => RoomKind::Unrecorded,
        _ => kind,
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Report what would change; change nothing.
    pub dry_run: bool,
    /// Delete orphans and leaked rooms, record handouts, migrate old state.
    pub reap: bool,
    /// Top the pool up to its target.
    pub fill: bool,
}

/// What the maintainer does to a room that no message reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    /// maxconf's, never handed out: deleted.
    Orphan,
    /// Handed out more than ROOM_MAX_AGE_HOURS ago: deleted.
    Leaked,
    /// Tagged but not recorded as handed out: recorded.
    Unrecorded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Orphan => "orphan",
            Self::Leaked => "leaked",
            Self::Unrecorded => "handout not recorded",
        })
    }
}

struct Candidate {
    id: u64,
    name: String,
    /// The room's tag in the inventory: a handout is recorded with it.
    tag: String,
    reason: Reason,
}

/// Every visible pool message, as far as one look could tell.
#[derive(Default)]
struct Look {
    /// Rooms (by id) and legacy names a usable message reaches.
    ids: HashSet<u64>,
    names: HashSet<String>,
    /// Every visible message was seen.
    complete: bool,
    /// Messages removed (or, in a dry run, that would be).
    removed: usize,
    /// Rooms messages name that the inventory lacks: checked before their messages go.
    unknown: HashSet<u64>,
}

impl Look {
    fn reaches(&self, room: &Conference) -> bool {
        self.ids.contains(&room.id) || self.names.contains(&room.name)
    }
}

/// Why a message cannot stay in the pool, if it cannot.
fn unusable(
    text: &str,
    seen: &mut HashSet<u64>,
    inventory: &HashMap<u64, Conference>,
    gone: &HashSet<u64>,
    settings: &Settings,
) -> Result<Option<&'static str>, PoolMessage> {
    let msg = match message::decode(text) {
        Ok(msg) => msg,
        Err(_) => return Ok(Some("unreadable")),
    };
    match &msg {
        PoolMessage::Room(room) => {
            if settings.rooms.is_persistent(&room.name) {
                return Ok(Some("persistent room"));
            }
            if !seen.insert(room.id) {
                return Ok(Some("second message for one room"));
            }
            if gone.contains(&room.id) {
                return Ok(Some("room gone"));
            }
            if let Some(now) = inventory.get(&room.id)
                && let Some(why) = disagrees(room, now, settings)
            {
                return Ok(Some(why));
            }
        }
        PoolMessage::LegacyName(name) => {
            if settings.rooms.is_persistent(name) {
                return Ok(Some("persistent room"));
            }
            if let Some(room) = inventory.values().find(|c| &c.name == name)
                && !seen.insert(room.id)
            {
                return Ok(Some("second message for one room"));
            }
        }
    }
    Err(msg)
}

/// Whoever can write to the queue chooses what create answers: a message must match Pexip's
/// room (name, guest PIN, aliases) and the room must not be handed out.
fn disagrees(msg: &PooledRoom, room: &Conference, settings: &Settings) -> Option<&'static str> {
    if msg.name != room.name || msg.guest_pin != room.guest_pin {
        return Some("message disagrees with Pexip (name or guest PIN)");
    }
    let aliases = |a: &[crate::conference::Alias]| {
        let mut v: Vec<(u64, String)> = a.iter().map(|a| (a.id, a.alias.clone())).collect();
        v.sort();
        v
    };
    if aliases(&msg.aliases) != aliases(&room.aliases) {
        return Some("message disagrees with Pexip (aliases)");
    }
    match classify(room, settings) {
        RoomKind::Allocated(_) | RoomKind::Unrecorded => Some("room is handed out"),
        _ => None,
    }
}

/// One look at the queue. A peek when it shows everything and nothing needs removing;
/// otherwise receives of a few messages at a time, each held for [`HOLD`] and left to come
/// back by itself (or deleted at once when unusable).
async fn look(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
    gone: &HashSet<u64>,
    dry_run: bool,
    until: Instant,
) -> Result<Look, QueueError> {
    let settings = broker.settings();
    let texts = broker.pool().peek(MAX_BATCH).await?;
    let mut look = Look::default();
    let mut seen = HashSet::new();
    let mut needs_receive = texts.len() as u32 >= MAX_BATCH;
    for text in &texts {
        match unusable(text, &mut seen, inventory, gone, settings) {
            Ok(Some(_)) => needs_receive = true,
            Ok(None) => {}
            Err(msg) => note(&mut look, msg, inventory),
        }
    }
    if !needs_receive || (dry_run && texts.len() < MAX_BATCH as usize) {
        look.complete = true;
        if dry_run {
            look.removed = texts.len() - count_usable(&texts, inventory, gone, settings);
        }
        return Ok(look);
    }
    let mut look = Look::default();
    let mut seen = HashSet::new();
    let mut ids_seen = HashSet::new();
    loop {
        if Instant::now() > until || ids_seen.len() >= MAX_LOOK {
            return Ok(look);
        }
        let batch = broker.pool().receive(HOLD_BATCH, HOLD).await?;
        // Seen before: the look has gone round the queue (it is given back below).
        let (fresh, mut keep): (Vec<_>, Vec<_>) = batch
            .into_iter()
            .partition(|m| ids_seen.insert(m.id.clone()));
        let round = fresh.is_empty();
        for msg in fresh {
            match unusable(&msg.text, &mut seen, inventory, gone, settings) {
                Ok(Some(why)) if !dry_run => {
                    look.removed += 1;
                    tracing::warn!(message_id = %msg.id, reason = why, "pool message removed");
                    if let Err(e) = broker.pool().delete(&msg).await {
                        tracing::warn!(message_id = %msg.id, error = %e, "could not remove a pool message; next run");
                    }
                }
                Ok(Some(_)) => {
                    look.removed += 1;
                    keep.push(msg);
                }
                Ok(None) => keep.push(msg),
                Err(decoded) => {
                    note(&mut look, decoded, inventory);
                    keep.push(msg);
                }
            }
        }
        // Given back at once (behind the messages not seen yet): creates find them again
        // without waiting for the hold to end. A release that fails ends with the hold.
        let releases = keep
            .iter()
            .map(|msg| broker.pool().release(msg, Duration::ZERO));
        for (msg, released) in keep.iter().zip(futures::future::join_all(releases).await) {
            if let Err(e) = released {
                tracing::debug!(message_id = %msg.id, error = %e, "held message not released; it reappears by itself");
            }
        }
        if round {
            look.complete = true;
            return Ok(look);
        }
    }
}

fn count_usable(
    texts: &[String],
    inventory: &HashMap<u64, Conference>,
    gone: &HashSet<u64>,
    settings: &Settings,
) -> usize {
    let mut seen = HashSet::new();
    texts
        .iter()
        .filter(|t| unusable(t, &mut seen, inventory, gone, settings).is_err())
        .count()
}

fn note(look: &mut Look, msg: PoolMessage, inventory: &HashMap<u64, Conference>) {
    match msg {
        PoolMessage::Room(room) => {
            if !inventory.contains_key(&room.id) {
                look.unknown.insert(room.id);
            }
            look.ids.insert(room.id);
        }
        PoolMessage::LegacyName(name) => {
            look.names.insert(name);
        }
    }
}

fn candidates(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
    handouts: &Handouts,
    look: &Look,
    now: OffsetDateTime,
) -> Vec<Candidate> {
    let settings = broker.settings();
    let orphan_age = orphan_age(broker);
    let older_than = |t: OffsetDateTime, age: Duration| now - t > age;
    inventory
        .values()
        .filter(|c| !look.reaches(c))
        .filter_map(|c| {
            let reason = match kind(c, settings, handouts) {
                // Beyond the warm-up and a create's lease, a message of its own would be
                // visible unless a create holds it: the second look settles that.
                RoomKind::Unallocated(t) if look.complete && older_than(t, orphan_age) => {
                    Reason::Orphan
                }
                RoomKind::Unrecorded if look.complete => Reason::Unrecorded,
                RoomKind::Allocated(t) if older_than(t, settings.rooms.max_age) => Reason::Leaked,
                _ => return None,
            };
            Some(Candidate {
                id: c.id,
                name: c.name.clone(),
                tag: c.tag.clone(),
                reason,
            })
        })
        .collect()
}

/// How old a never-handed-out room must be before a missing message makes it an orphan.
fn orphan_age(broker: &Broker) -> Duration {
    broker.settings().pool.warmup + broker.lease() + Duration::from_secs(60)
}

/// How long apart the two looks are: longer than any create holds a message.
pub fn confirm_delay(broker: &Broker) -> Duration {
    broker.lease() + Duration::from_secs(1)
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
    let started = Instant::now();
    let until = started + RUN_BUDGET;
    let mut report = RunReport::default();
    let mode = if plan.dry_run { " (dry run)" } else { "" };
    let job = if plan.fill { "pool maintain" } else { "reap" };
    let inventory = match inventory(broker).await {
        Ok(inventory) => inventory,
        Err(e) => {
            report.fail(format!(
                "{job}{mode}: Pexip inventory failed, nothing changed: {e}"
            ));
            return report;
        }
    };
    let counts = Counts::of(&inventory, broker.settings());
    report.log(format!(
        "{job}{mode}: Pexip has {} rooms ({} not handed out, {} handed out, {} persistent, {} other)",
        inventory.len(),
        counts.unallocated,
        counts.allocated,
        counts.persistent,
        counts.foreign
    ));

    if plan.reap {
        match repair(broker, &inventory, plan.dry_run, until).await {
            Ok(line) => report.log(line),
            Err(e) => report.fail(format!("repair stopped: {e}")),
        }
    }
    // The top-up runs even when some repair failed: a drained pool hurts callers at once.
    if plan.fill {
        let target = u64::from(broker.settings().pool.target_size);
        match top_up_until(broker, target, until).await {
            Ok(fill) => {
                let line = format!(
                    "pool at {}/{target}: {} added, {} failed{}",
                    fill.size,
                    rooms(fill.created as usize),
                    fill.failed,
                    if fill.out_of_time {
                        "; run budget spent, the next run goes on"
                    } else {
                        ""
                    }
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

fn rooms(n: usize) -> String {
    if n == 1 {
        "1 room".into()
    } else {
        format!("{n} rooms")
    }
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
    unallocated: usize,
    allocated: usize,
    persistent: usize,
    foreign: usize,
}

impl Counts {
    fn of(inventory: &HashMap<u64, Conference>, settings: &Settings) -> Self {
        let mut counts = Self::default();
        for room in inventory.values() {
            match classify(room, settings) {
                RoomKind::Unallocated(_) => counts.unallocated += 1,
                RoomKind::Allocated(_) | RoomKind::Unrecorded => counts.allocated += 1,
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
    until: Instant,
) -> Result<String, RepairError> {
    let settings = broker.settings();
    // Unreadable: no handout is recorded this run (such rooms stay handed out, unrecorded),
    // and nothing is saved over a record this run could not read.
    let mut handouts = match handouts::load(settings, !dry_run).await {
        Ok(handouts) => Some(handouts),
        Err(e) => {
            tracing::warn!(error = %e, "handout record unreadable; handouts are recorded next run");
            None
        }
    };
    let before = handouts.clone();
    let mut seen = HashSet::new();
    let result = repair_rooms(broker, inventory, &mut handouts, &mut seen, dry_run, until).await;
    let Some(handouts) = handouts.as_mut().filter(|_| !dry_run) else {
        return result;
    };
    // Kept: rooms still in Pexip, with no state on their alias, and no message seen for them
    // in this run (a room back in the pool is confirmed afresh when handed out again).
    handouts.retain(|id| {
        !seen.contains(&id)
            && inventory.get(&id).is_some_and(|room| {
                matches!(
                    classify(room, settings),
                    RoomKind::Unrecorded | RoomKind::Unallocated(_)
                )
            })
    });
    if before.as_ref() == Some(handouts) {
        return result;
    }
    // Saved even when the repair failed: recording needs neither Pexip nor the pool.
    match (handouts::save(settings, handouts).await, result) {
        (Ok(()), result) => result,
        (Err(e), Ok(line)) => {
            tracing::warn!(error = %e, "could not save the handout record");
            Ok(format!("{line}; handout record not saved ({e}): next run"))
        }
        (Err(e), Err(failed)) => {
            tracing::warn!(error = %e, "could not save the handout record");
            Err(failed)
        }
    }
}

/// Settles the rooms no message reaches. `seen` collects the rooms any look found a message
/// for.
async fn repair_rooms(
    broker: &Broker,
    inventory: &HashMap<u64, Conference>,
    handouts: &mut Option<Handouts>,
    seen: &mut HashSet<u64>,
    dry_run: bool,
    until: Instant,
) -> Result<String, RepairError> {
    let settled = if dry_run { "would settle" } else { "settled" };
    let migrated = migrate(broker, inventory, dry_run).await;
    let first = look(broker, inventory, &HashSet::new(), dry_run, until).await?;
    seen.extend(&first.ids);
    let known = handouts.clone().unwrap_or_default();
    let suspects = candidates(broker, inventory, &known, &first, OffsetDateTime::now_utc());
    let partial = if first.complete {
        ""
    } else {
        " (the queue could not be read to the end: orphans are judged next run)"
    };
    let removed = |n: usize| {
        if dry_run {
            format!("{n} unusable messages would be removed")
        } else {
            format!("{n} unusable messages removed")
        }
    };
    let gone = confirm_gone(broker, &first.unknown).await;
    if suspects.is_empty() && gone.is_empty() {
        let line = format!(
            "queue: {}; {migrated} rooms' state moved to their alias; no orphaned, unrecorded or leaked rooms{partial}",
            removed(first.removed)
        );
        return Ok(line);
    }
    // The second look comes once every create that held a message at the first has handed
    // its room out or given the message back.
    let wait = confirm_delay(broker);
    if Instant::now() + wait > until {
        let line = format!(
            "queue: {}; {} rooms to confirm next run (run budget)",
            removed(first.removed),
            suspects.len()
        );
        return Ok(line);
    }
    tokio::time::sleep(wait).await;
    let second = look(broker, inventory, &gone, dry_run, until).await?;
    seen.extend(&second.ids);
    let mut done = Vec::new();
    let mut failed = 0;
    for suspect in suspects {
        if !second.complete
            || second.ids.contains(&suspect.id)
            || second.names.contains(&suspect.name)
        {
            continue;
        }
        if Instant::now() > until {
            break;
        }
        match settle(broker, &suspect, handouts, dry_run).await {
            Ok(true) => done.push(format!("{} ({})", suspect.name, suspect.reason)),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(room = %suspect.name, error = %e, "maintainer could not settle a room");
                failed += 1;
            }
        }
    }
    let line = format!(
        "queue: {}; {migrated} rooms' state moved to their alias; {settled} {}: {}{partial}",
        // A dry run removes nothing, so both looks count the same messages.
        removed(if dry_run {
            first.removed.max(second.removed)
        } else {
            first.removed + second.removed
        }),
        rooms(done.len()),
        done.join(", ")
    );
    if failed > 0 && broker.pexip().probe().await.is_err() {
        return Err(RepairError::Pexip(PexipError::Unavailable(format!(
            "{line}; {failed} rooms could not be settled"
        ))));
    }
    Ok(if failed > 0 {
        format!("{line}; {failed} could not be settled (retried next run)")
    } else {
        line
    })
}

/// Rooms that messages name but the inventory lacks: gone for sure only if Pexip says so now.
async fn confirm_gone(broker: &Broker, unknown: &HashSet<u64>) -> HashSet<u64> {
    let mut gone = HashSet::new();
    for &id in unknown {
        if let Ok(None) = broker.pexip().get_conference(id).await {
            gone.insert(id);
        }
    }
    gone
}

/// Moves the previous release's description markers to the room's alias, where callers
/// cannot change them. The description is left as it was (the previous release reads it).
async fn migrate(broker: &Broker, inventory: &HashMap<u64, Conference>, dry_run: bool) -> usize {
    let mut migrated = 0;
    for room in inventory.values() {
        let Some((state, Recorded::LegacyDescription)) = room_state::recorded(room) else {
            continue;
        };
        if broker.settings().rooms.is_persistent(&room.name) {
            continue;
        }
        if room_state::own_alias(room).is_none() {
            continue;
        }
        if dry_run {
            migrated += 1;
            continue;
        }
        match write_state(broker.pexip(), room, state).await {
            Ok(_) => migrated += 1,
            Err(e) => {
                tracing::warn!(room = %room.name, error = %e, "could not move the room's state to its alias")
            }
        }
    }
    migrated
}

/// Writes `state` on the room's own alias (where callers cannot change it); false when the
/// room has none.
pub(crate) async fn write_state(
    pexip: &PexipClient,
    room: &Conference,
    state: RoomState,
) -> Result<bool, PexipError> {
    let Some(alias) = room_state::own_alias(room) else {
        return Ok(false);
    };
    let body = json!({"description": state.to_string()});
    pexip.patch_alias(alias.id, &body).await?;
    Ok(true)
}

/// Records a handout (in storage, or on the alias when the record is full; not at all this run
/// when it is unreadable), or reads the room back and deletes it if it is still what made it a
/// candidate.
async fn settle(
    broker: &Broker,
    suspect: &Candidate,
    handouts: &mut Option<Handouts>,
    dry_run: bool,
) -> Result<bool, PexipError> {
    let now_utc = OffsetDateTime::now_utc();
    if suspect.reason == Reason::Unrecorded {
        if dry_run {
            return Ok(true);
        }
        // Unreadable record: next run (the room stays handed out meanwhile).
        let Some(handouts) = handouts.as_mut() else {
            return Ok(false);
        };
        if handouts.record(suspect.id, &suspect.tag, now_utc) {
            tracing::info!(room = %suspect.name, "handout recorded by the maintainer");
            return Ok(true);
        }
        // The record is full: on the room's alias, in Pexip, below.
    }
    let Some(now) = broker.pexip().get_conference(suspect.id).await? else {
        return Ok(false);
    };
    let max_age = broker.settings().rooms.max_age;
    let old = |t: OffsetDateTime| now_utc - t > max_age;
    let known = handouts.clone().unwrap_or_default();
    let still = match (kind(&now, broker.settings(), &known), suspect.reason) {
        (RoomKind::Unallocated(_), Reason::Orphan) => true,
        (RoomKind::Allocated(t), Reason::Leaked) => old(t),
        (RoomKind::Unrecorded, Reason::Unrecorded) => true,
        _ => false,
    };
    if !still || dry_run {
        return Ok(still);
    }
    if suspect.reason == Reason::Unrecorded {
        if !write_state(broker.pexip(), &now, RoomState::allocated_now()).await? {
            return Ok(false);
        }
        tracing::info!(room = %suspect.name, "handout recorded on the room's alias by the maintainer");
        return Ok(true);
    }
    match broker.pexip().delete_conference(suspect.id).await {
        Ok(()) | Err(PexipError::NotFound) => {
            tracing::info!(room = %suspect.name, reason = %suspect.reason, "room deleted by the maintainer");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

#[derive(Default)]
pub struct Fill {
    pub size: u64,
    pub created: u32,
    pub failed: u32,
    /// The run's budget ended the top-up early.
    pub out_of_time: bool,
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
    top_up_until(broker, target, Instant::now() + RUN_BUDGET).await
}

async fn top_up_until(broker: &Broker, target: u64, until: Instant) -> Result<Fill, QueueError> {
    let mut fill = Fill::default();
    loop {
        fill.size = broker.pool().approximate_count().await?;
        if fill.size >= target {
            return Ok(fill);
        }
        if Instant::now() > until {
            fill.out_of_time = true;
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
