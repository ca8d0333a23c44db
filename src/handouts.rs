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
//! A record that is lost or unreadable loses nothing but time: its rooms are recorded again,
//! later. Beyond [`MAX_ROOMS`] (a queue message holds 64 KiB), rooms are recorded on their
//! alias in Pexip instead.

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

/// Rooms one record holds: at most about 36 bytes each (a group of its own), well inside a
/// 64 KiB message.
pub const MAX_ROOMS: usize = 1_000;

/// Handed-out rooms (by Pexip id) and when the maintainer first confirmed each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handouts {
    since: BTreeMap<u64, i64>,
}

/// The stored form: rooms grouped by the second they were recorded (one group per run).
#[derive(Serialize, Deserialize)]
struct Record {
    v: u32,
    /// When the record was written (Unix milliseconds): the newest record wins.
    written: i128,
    /// `[unix seconds, [room ids]]`.
    since: Vec<(i64, Vec<u64>)>,
}

impl Handouts {
    /// When room `id` was recorded as handed out, if it was.
    pub fn since(&self, id: u64) -> Option<OffsetDateTime> {
        let at = *self.since.get(&id)?;
        OffsetDateTime::from_unix_timestamp(at).ok()
    }

    /// Records room `id` as handed out at `at` unless it is recorded already (the earlier
    /// time stands: it was confirmed then). False when the record is full.
    pub fn record(&mut self, id: u64, at: OffsetDateTime) -> bool {
        if self.since.contains_key(&id) {
            return true;
        }
        if self.since.len() >= MAX_ROOMS {
            return false;
        }
        // Whole seconds, rounded up: the stored time is never before `at`.
        let secs = at.unix_timestamp() + i64::from(at.nanosecond() > 0);
        self.since.insert(id, secs);
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
        let mut groups: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
        for (&id, &at) in &self.since {
            groups.entry(at).or_default().push(id);
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
            .flat_map(|(at, ids)| ids.into_iter().map(move |id| (id, at)))
            .collect();
        Some((record.written, Self { since }))
    }
}

fn queue(settings: &Settings) -> Result<Queue, QueueError> {
    QUEUE.queue(settings, TIMEOUT)
}

/// The newest record (empty when none was written yet).
pub async fn load(settings: &Settings) -> Result<Handouts, QueueError> {
    let queue = queue(settings)?;
    queue.create_if_missing().await?;
    let newest = queue
        .peek(crate::pool::MAX_BATCH)
        .await?
        .iter()
        .filter_map(|text| Handouts::from_text(text))
        .max_by_key(|(written, _)| *written);
    Ok(newest.map(|(_, handouts)| handouts).unwrap_or_default())
}

/// Replaces the record: the new one is stored first, then older ones go (a newer one, from a
/// run that overlapped this one, stays).
pub async fn save(settings: &Settings, handouts: &Handouts) -> Result<(), QueueError> {
    let queue = queue(settings)?;
    let now = OffsetDateTime::now_utc();
    let text = handouts.to_text(now);
    let mine = now.unix_timestamp_nanos() / 1_000_000;
    queue.send(&text, Duration::ZERO).await?;
    for msg in queue.receive(crate::pool::MAX_BATCH, TIMEOUT).await? {
        match Handouts::from_text(&msg.text) {
            Some((written, _)) if msg.text == text || written > mine => {
                queue.release(&msg, Duration::ZERO).await?
            }
            _ => queue.delete(&msg).await?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn round_trips_grouped_by_time() {
        let mut h = Handouts::default();
        let t1 = datetime!(2026-12-01 10:00:00 UTC);
        let t2 = datetime!(2026-12-01 10:05:00 UTC);
        assert!(h.record(7, t1));
        assert!(h.record(9, t2));
        assert!(h.record(8, t1));
        // A room recorded already keeps its earlier time.
        assert!(h.record(7, t2));
        // A time within a second is rounded up, never down.
        assert!(h.record(10, t1 + time::Duration::milliseconds(1)));
        assert_eq!(h.since(10), Some(t1 + time::Duration::seconds(1)));
        h.retain(|id| id != 10);
        let text = h.to_text(t2);
        assert!(
            text.contains("[[1796119200,[7,8]],[1796119500,[9]]]"),
            "{text}"
        );
        let (written, back) = Handouts::from_text(&text).unwrap();
        assert_eq!(written, 1_796_119_500_000);
        assert_eq!(back, h);
        assert_eq!(back.since(7), Some(t1));
        assert_eq!(back.since(9), Some(t2));
        assert_eq!(back.since(1), None);
    }

    #[test]
    fn a_full_record_refuses_new_rooms_and_fits_a_message() {
        let mut h = Handouts::default();
        let at = datetime!(2026-12-01 10:00:00 UTC);
        for i in 0..MAX_ROOMS as u64 {
            // Largest ids and one group per room: the longest text the record can have.
            assert!(h.record(u64::MAX - i, at + time::Duration::seconds(i as i64)));
        }
        assert!(!h.record(1, at));
        assert!(h.record(u64::MAX, at), "a recorded room is still recorded");
        assert!(h.to_text(at).len() < 64 * 1024 * 3 / 4);
    }

    #[test]
    fn unknown_versions_and_garbage_are_not_records() {
        assert!(Handouts::from_text("nonsense").is_none());
        assert!(Handouts::from_text(r#"{"v":2,"written":1,"since":[]}"#).is_none());
    }
}
