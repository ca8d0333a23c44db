//! When each pool room was handed out, as far as the reaper needs to know, kept in storage
//! rather than in Pexip.
//!
//! A create makes one Pexip call (its PATCH of the tag) and writes nothing to Pexip after its
//! answer: every call per room counts against the Management Node's cap. A room handed out
//! from the pool keeps `created` on its alias and carries a tag. The maintainer, once two looks
//! a create's lease apart find no message for such a room, records the time of the second
//! look here. That time is on or after the real handout (any create that held the room's
//! message at the first look has finished by the second), so the reaper, which counts
//! `ROOM_MAX_AGE_HOURS` from it, may be one run late and is not early (short of creates failing
//! on the same room at both looks; README, "Room state").
//!
//! One record on `<pool queue>-handouts`, replaced by each maintainer run that changes it.
//! A record that cannot be read is never saved over (that run records nothing); one that is
//! lost costs time: its rooms are recorded again, later. Beyond [`MAX_ROOMS`] (a queue message
//! holds 64 KiB), rooms are recorded on their alias in Pexip instead.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Settings;
use crate::pool::side::SideQueue;
use crate::pool::{Queue, QueueError};

/// `<pool queue>-handouts`.
pub static QUEUE: SideQueue = SideQueue::new("-handouts");

/// Storage requests for the record are short; a slow one must not hold a maintainer run.
const TIMEOUT: Duration = Duration::from_secs(5);

/// Rooms one record holds: at most about 50 bytes each (a group of its own, the largest ids),
/// well inside a 64 KiB message.
pub const MAX_ROOMS: usize = 900;

/// Handed-out rooms (by Pexip id): when the maintainer confirmed each, and a fingerprint of the
/// tag it had then. A time counts only while the room carries that tag: a room given back to
/// the pool and handed out again (a new session, a new tag) is confirmed afresh, never aged
/// from its earlier handout.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handouts {
    since: BTreeMap<u64, (i64, u32)>,
}

/// The stored form: rooms grouped by the second they were recorded (one group per run).
#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    /// When the record was written (Unix milliseconds): the newest record wins.
    written: i128,
    /// `[unix seconds, [[room id, tag fingerprint], …]]`.
    since: Vec<(i64, Vec<(u64, u32)>)>,
}

/// FNV-1a, 32 bits: stable across releases and machines (unlike std's hasher).
fn fingerprint(tag: &str) -> u32 {
    tag.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl Handouts {
    /// When room `id`, carrying `tag` now, was recorded as handed out with that tag.
    pub fn since(&self, id: u64, tag: &str) -> Option<OffsetDateTime> {
        let &(at, print) = self.since.get(&id)?;
        if print != fingerprint(tag) {
            return None;
        }
        OffsetDateTime::from_unix_timestamp(at).ok()
    }

    /// Whether room `id` was recorded as handed out, whatever its tag now.
    pub fn contains(&self, id: u64) -> bool {
        self.since.contains_key(&id)
    }

    /// Records room `id`, handed out with `tag`, at `at` (rounded up to the second, so never
    /// before it). A room recorded with the same tag keeps its earlier time; one recorded with
    /// another tag was handed out again and takes the new time. False when the record is full.
    pub fn record(&mut self, id: u64, tag: &str, at: OffsetDateTime) -> bool {
        let print = fingerprint(tag);
        match self.since.get(&id) {
            Some(&(_, known)) if known == print => return true,
            Some(_) => {}
            None if self.since.len() >= MAX_ROOMS => return false,
            None => {}
        }
        let secs = at.unix_timestamp() + i64::from(at.nanosecond() > 0);
        self.since.insert(id, (secs, print));
        true
    }

    /// Keeps only the rooms `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        self.since.retain(|&id, _| keep(id));
    }

    pub fn len(&self) -> usize {
        self.since.len()
    }

    pub fn is_empty(&self) -> bool {
        self.since.is_empty()
    }

    fn to_text(&self, written: OffsetDateTime) -> String {
        let mut groups: BTreeMap<i64, Vec<(u64, u32)>> = BTreeMap::new();
        for (&id, &(at, print)) in &self.since {
            groups.entry(at).or_default().push((id, print));
        }
        let record = Record {
            v: 1,
            written: written.unix_timestamp_nanos() / 1_000_000,
            since: groups.into_iter().collect(),
        };
        serde_json::to_string(&record).expect("a record serialises")
    }

    fn from_text(text: &str) -> Option<(i128, Self)> {
        let record: Record = serde_json::from_str(text).ok()?;
        if record.v != 1 {
            return None;
        }
        let since = record
            .since
            .into_iter()
            .flat_map(|(at, rooms)| rooms.into_iter().map(move |(id, print)| (id, (at, print))))
            .collect();
        Some((record.written, Self { since }))
    }
}

fn queue(settings: &Settings) -> Result<Queue, QueueError> {
    QUEUE.queue(settings, TIMEOUT)
}

/// The newest record; empty only when the queue holds no message at all. Messages that are
/// there but cannot be read (held for a moment by a concurrent save, or not a record this
/// release understands) are an error: a run must not take them for an empty record and save
/// over them. `create` makes the queue on first use (not in a dry run).
pub async fn load(settings: &Settings, create: bool) -> Result<Handouts, QueueError> {
    let queue = queue(settings)?;
    if create {
        queue.create_if_missing().await?;
    }
    let texts = queue.peek(crate::pool::MAX_BATCH).await?;
    let newest = texts
        .iter()
        .filter_map(|text| Handouts::from_text(text))
        .max_by_key(|(written, _)| *written);
    match newest {
        Some((_, handouts)) => Ok(handouts),
        None if texts.is_empty() && queue.approximate_count().await? == 0 => {
            Ok(Handouts::default())
        }
        None => Err(QueueError::Other(
            "the handout record is held by another run or unreadable".into(),
        )),
    }
}

/// Replaces the record: the new one is stored first, then older ones go (a newer one, from a
/// run that overlapped this one, stays). Others are hidden for a second at most meanwhile.
pub async fn save(settings: &Settings, handouts: &Handouts) -> Result<(), QueueError> {
    let queue = queue(settings)?;
    queue.create_if_missing().await?;
    let now = OffsetDateTime::now_utc();
    let text = handouts.to_text(now);
    let mine = now.unix_timestamp_nanos() / 1_000_000;
    queue.send(&text, Duration::ZERO).await?;
    for msg in queue
        .receive(crate::pool::MAX_BATCH, Duration::from_secs(1))
        .await?
    {
        match Handouts::from_text(&msg.text) {
            Some((written, _)) if msg.text == text || written > mine => {
                queue.release(&msg, Duration::ZERO).await?
            }
            // Older records go; so does anything this release cannot read, once a record it
            // can read is stored.
            _ => queue.delete(&msg).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const TAG: &str = "https://id.gov.bc.ca/idcheck/protected/video/MTIzNDU2LDc2NTQzMg";

    #[test]
    fn round_trips_grouped_by_time() {
        let mut h = Handouts::default();
        let t1 = datetime!(2026-12-01 10:00:00 UTC);
        let t2 = datetime!(2026-12-01 10:05:00 UTC);
        assert!(h.record(7, TAG, t1));
        assert!(h.record(9, TAG, t2));
        assert!(h.record(8, "other", t1));
        // Recorded already with this tag: the earlier time stands.
        assert!(h.record(7, TAG, t2));
        let text = h.to_text(t2);
        let (written, back) = Handouts::from_text(&text).unwrap();
        assert_eq!(written, 1_796_119_500_000);
        assert_eq!(back, h);
        assert_eq!(back.since(7, TAG), Some(t1));
        assert_eq!(back.since(8, "other"), Some(t1));
        assert_eq!(back.since(9, TAG), Some(t2));
        assert_eq!(back.since(1, TAG), None);
        assert!(
            text.starts_with(r#"{"v":1,"written":1796119500000,"since":[[1796119200,[[7,"#),
            "{text}"
        );
    }

    #[test]
    fn a_time_counts_only_while_the_room_carries_its_tag() {
        let mut h = Handouts::default();
        let t1 = datetime!(2026-12-01 10:00:00 UTC);
        let t2 = datetime!(2026-12-01 11:00:00 UTC);
        assert!(h.record(7, TAG, t1));
        // Given back to the pool and handed out to another session: not aged from t1.
        assert_eq!(
            h.since(7, "https://id.gov.bc.ca/idcheck/protected/video/other"),
            None
        );
        assert_eq!(h.since(7, ""), None);
        assert!(h.contains(7));
        // Recorded again with its new tag: the new time.
        assert!(h.record(7, "new", t2));
        assert_eq!(h.since(7, "new"), Some(t2));
        assert_eq!(h.since(7, TAG), None);
    }

    #[test]
    fn times_round_up_never_down() {
        let mut h = Handouts::default();
        let t = datetime!(2026-12-01 10:00:00 UTC);
        assert!(h.record(10, TAG, t + time::Duration::milliseconds(1)));
        assert_eq!(h.since(10, TAG), Some(t + time::Duration::seconds(1)));
    }

    #[test]
    fn a_full_record_refuses_new_rooms_and_fits_a_message() {
        let mut h = Handouts::default();
        let at = datetime!(2026-12-01 10:00:00 UTC);
        for i in 0..MAX_ROOMS as u64 {
            // Largest ids and one group per room: the longest text the record can have.
            assert!(h.record(u64::MAX - i, TAG, at + time::Duration::seconds(i as i64)));
        }
        assert!(!h.record(1, TAG, at));
        assert!(
            h.record(u64::MAX, TAG, at),
            "a recorded room is still recorded"
        );
        assert!(h.to_text(at).len() < 48 * 1024, "{}", h.to_text(at).len());
    }

    #[test]
    fn unknown_versions_and_garbage_are_not_records() {
        assert!(Handouts::from_text("nonsense").is_none());
        assert!(Handouts::from_text(r#"{"v":2,"written":1,"since":[]}"#).is_none());
    }
}
