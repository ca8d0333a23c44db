//! A room's state, kept where no caller can write it, parsed and displayed in one place.
//!
//! maxconf records its state in the `description` of the room's **own alias** (the alias equal
//! to the room's name), which it sets when it creates the room. Callers can change a room's
//! `tag`, `description`, PINs, `allow_guests` and `participant_limit`, never its aliases: so
//! they can neither erase nor forge maxconf's state, and the room's `description` is theirs,
//! stored and returned exactly as written.
//!
//! - `maxconf:created:<time>`: made by a refill (or on demand) at that time and not handed out;
//!   it is pooled while a pool message reaches it, and an orphan once old enough without one.
//! - `maxconf:allocated:<time>`: handed out at that time: a room made on demand (in its POST),
//!   or one the maintainer records here when its storage record is full, or before a caller
//!   clears the tag. A pool handout writes only the tag; the maintainer records its time in
//!   storage ([`crate::handouts`]).
//!
//! The previous release kept `maxconf:creating|pool|allocated:<time>` in the room's own
//! `description`. Those rooms are still read (and migrated by the maintainer), so that either
//! release can run in front of rooms the other one wrote.

use std::fmt;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::conference::{Alias, Conference};

const PREFIX: &str = "maxconf:";

/// What maxconf recorded about one of its rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomState {
    /// Created at that time and not handed out.
    Created(OffsetDateTime),
    /// Handed out at that time.
    Allocated(OffsetDateTime),
}

impl RoomState {
    /// The state now, to the second.
    pub fn created_now() -> Self {
        Self::Created(now())
    }

    pub fn allocated_now() -> Self {
        Self::Allocated(now())
    }

    /// Reads a marker: this release's, or the previous release's description markers
    /// (`creating` and `pool` both mean not handed out).
    pub fn parse(text: &str) -> Option<Self> {
        let (state, at) = text.strip_prefix(PREFIX)?.split_once(':')?;
        let at = OffsetDateTime::parse(at, &Rfc3339).ok()?;
        match state {
            "created" | "creating" | "pool" => Some(Self::Created(at)),
            "allocated" => Some(Self::Allocated(at)),
            _ => None,
        }
    }

    pub fn at(self) -> OffsetDateTime {
        match self {
            Self::Created(t) | Self::Allocated(t) => t,
        }
    }
}

impl fmt::Display for RoomState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (state, at) = match self {
            Self::Created(t) => ("created", t),
            Self::Allocated(t) => ("allocated", t),
        };
        let at = at.format(&Rfc3339).map_err(|_| fmt::Error)?;
        write!(f, "{PREFIX}{state}:{at}")
    }
}

/// Where a room's state was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// This release's place: the room's own alias.
    Alias,
    /// The previous release's place: the room's description (migrated by the maintainer).
    LegacyDescription,
}

/// The alias maxconf made with the room: the one equal to its name.
pub fn own_alias(room: &Conference) -> Option<&Alias> {
    room.aliases.iter().find(|a| a.alias == room.name)
}

/// The room's recorded state and where it was found. A state on the alias wins; the room's
/// description is read only for rooms without one (written by the previous release).
pub fn recorded(room: &Conference) -> Option<(RoomState, Recorded)> {
    if let Some(state) = own_alias(room).and_then(|a| RoomState::parse(&a.description)) {
        return Some((state, Recorded::Alias));
    }
    RoomState::parse(&room.description).map(|s| (s, Recorded::LegacyDescription))
}

/// How maxconf classifies a room, from Pexip's data alone (pool messages are the maintainer's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomKind {
    /// Named with a persistent prefix: never handed out, never deleted.
    Persistent,
    /// Not maxconf's (no state): never touched.
    Foreign,
    /// maxconf's, not handed out, since that time: pooled if a message reaches it.
    Unallocated(OffsetDateTime),
    /// Handed out at that time.
    Allocated(OffsetDateTime),
    /// Carries a tag and no handout on its alias: a pool handout (its time, if the maintainer
    /// has recorded it, is in [`crate::handouts`]), or one made by the previous release.
    /// Treated as handed out when no message reaches it.
    Unrecorded,
}

pub fn classify(room: &Conference, is_persistent: impl Fn(&str) -> bool) -> RoomKind {
    if is_persistent(&room.name) {
        return RoomKind::Persistent;
    }
    match recorded(room) {
        None => RoomKind::Foreign,
        Some((RoomState::Allocated(t), _)) => RoomKind::Allocated(t),
        Some((RoomState::Created(_), _)) if !room.tag.is_empty() => RoomKind::Unrecorded,
        Some((RoomState::Created(t), _)) => RoomKind::Unallocated(t),
    }
}

/// An alias description as callers see it: maxconf's own marker reads as empty (as the
/// rooms of the system maxconf replaces had it).
pub fn caller_view(alias_description: &str) -> &str {
    if RoomState::parse(alias_description).is_some() {
        ""
    } else {
        alias_description
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .expect("zero is a valid nanosecond")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use time::macros::datetime;

    fn room(description: &str, alias_description: &str, tag: &str) -> Conference {
        Conference::from_value(
            json!({"id": 1, "name": "r1", "tag": tag, "description": description,
            "aliases": [{"id": 2, "alias": "r1", "description": alias_description}]}),
        )
        .unwrap()
    }

    #[test]
    fn displays_and_parses_both_formats() {
        let t = datetime!(2026-12-01 04:00:00 UTC);
        assert_eq!(
            RoomState::Created(t).to_string(),
            "maxconf:created:2026-12-01T04:00:00Z"
        );
        for s in [RoomState::Created(t), RoomState::Allocated(t)] {
            assert_eq!(RoomState::parse(&s.to_string()), Some(s));
        }
        assert_eq!(
            RoomState::parse("maxconf:pool:2026-12-01T04:00:00Z"),
            Some(RoomState::Created(t))
        );
        assert_eq!(
            RoomState::parse("maxconf:creating:2026-12-01T04:00:00Z"),
            Some(RoomState::Created(t))
        );
        for bad in [
            "",
            "maxconf:",
            "maxconf:pool:",
            "maxconf:gone:2026-12-01T04:00:00Z",
            "x",
        ] {
            assert_eq!(RoomState::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_alias_wins_and_descriptions_are_the_callers() {
        let no = |_: &str| false;
        let created = "maxconf:created:2026-12-01T04:00:00Z";
        let forged = "maxconf:allocated:2020-01-01T00:00:00Z";
        assert!(matches!(
            classify(&room("", created, ""), no),
            RoomKind::Unallocated(_)
        ));
        // A caller's description, marker-like or not, changes nothing.
        for d in [forged, "", "hello", &"x".repeat(250)] {
            assert!(matches!(
                classify(&room(d, created, ""), no),
                RoomKind::Unallocated(_)
            ));
        }
        // A room without maxconf's alias state is not maxconf's unless it was the previous
        // release's (description marker and an alias without a state).
        assert_eq!(classify(&room("hello", "", ""), no), RoomKind::Foreign);
        assert!(matches!(
            classify(&room("maxconf:pool:2026-12-01T04:00:00Z", "", ""), no),
            RoomKind::Unallocated(_)
        ));
        assert_eq!(classify(&room("", created, "t"), no), RoomKind::Unrecorded);
        assert_eq!(
            classify(&room("", created, ""), |_| true),
            RoomKind::Persistent
        );
        assert_eq!(caller_view(created), "");
        assert_eq!(caller_view("theirs"), "theirs");
    }
}
