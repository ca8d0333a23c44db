//! Pool messages: base64-encoded JSON carrying what create must answer without reading the
//! room back from Pexip. A bare room name (plain or base64, as the original system wrote) is
//! accepted too; the room is then read from Pexip by name.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::conference::{Alias, Conference};
use crate::room::{ConstrainedConference, RoomName};

/// The longest message text decoded; a real one is well under 2 KiB.
const MAX_MESSAGE_LEN: usize = 16 * 1024;

/// A pool room as the v1 message carries it (no host PIN).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PooledRoom {
    pub v: u32,
    pub id: u64,
    pub name: String,
    pub service_type: String,
    pub allow_guests: bool,
    pub guest_pin: String,
    pub aliases: Vec<Alias>,
}

impl PooledRoom {
    pub fn from_conference(c: &Conference) -> Self {
        Self {
            v: 1,
            id: c.id,
            name: c.name.clone(),
            service_type: c.service_type.clone(),
            allow_guests: c.allow_guests,
            guest_pin: c.guest_pin.clone(),
            aliases: c.aliases.clone(),
        }
    }

    /// The message text: base64 of the JSON, as Functions queue bindings expect.
    pub fn encode(&self) -> String {
        STANDARD.encode(serde_json::to_vec(self).expect("a pooled room serialises"))
    }

    /// The create response: the room with its new tag and without the host PIN.
    pub fn handed_out(&self, tag: &str) -> ConstrainedConference {
        ConstrainedConference {
            id: self.id,
            name: self.name.clone(),
            service_type: self.service_type.clone(),
            allow_guests: self.allow_guests,
            pin: None,
            guest_pin: self.guest_pin.clone(),
            tag: tag.to_owned(),
            aliases: crate::room::callers_aliases(&self.aliases),
        }
    }
}

/// What a pool message says.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolMessage {
    Room(PooledRoom),
    /// A legacy message: only the room's name.
    LegacyName(String),
}

/// Why a message could not be read; such a message is discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pool message is neither a v1 room nor a room name")]
pub struct Undecodable;

pub fn decode(text: &str) -> Result<PoolMessage, Undecodable> {
    let text = text.trim();
    if text.is_empty() || text.len() > MAX_MESSAGE_LEN {
        return Err(Undecodable);
    }
    if let Ok(bytes) = STANDARD.decode(text) {
        if let Ok(room) = serde_json::from_slice::<PooledRoom>(&bytes) {
            return if room.v == 1 && RoomName::parse(&room.name).is_ok() {
                Ok(PoolMessage::Room(room))
            } else {
                Err(Undecodable)
            };
        }
        if let Ok(name) = std::str::from_utf8(&bytes)
            && RoomName::parse(name.trim()).is_ok()
        {
            return Ok(PoolMessage::LegacyName(name.trim().to_owned()));
        }
    }
    match RoomName::parse(text) {
        Ok(name) => Ok(PoolMessage::LegacyName(name.as_str().to_owned())),
        Err(_) => Err(Undecodable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> PooledRoom {
        PooledRoom {
            v: 1,
            id: 90,
            name: "MTIzNDU2LDc2NTQzMg".into(),
            service_type: "conference".into(),
            allow_guests: true,
            guest_pin: "120931".into(),
            aliases: vec![Alias {
                id: 85,
                alias: "MTIzNDU2LDc2NTQzMg".into(),
                conference: "/api/admin/configuration/v1/conference/90/".into(),
                creation_time: "2024-03-05T14:31:06.145782".into(),
                description: String::new(),
            }],
        }
    }

    #[test]
    fn round_trips_as_base64_json_without_host_pin() {
        let text = room().encode();
        let json: serde_json::Value =
            serde_json::from_slice(&STANDARD.decode(&text).unwrap()).unwrap();
        assert_eq!(json["v"], 1);
        assert_eq!(json["id"], 90);
        assert!(json.get("pin").is_none());
        assert_eq!(decode(&text), Ok(PoolMessage::Room(room())));
    }

    #[test]
    fn accepts_legacy_names_plain_and_base64() {
        assert_eq!(
            decode("abc_DEF-123"),
            Ok(PoolMessage::LegacyName("abc_DEF-123".into()))
        );
        assert_eq!(
            decode(&STANDARD.encode("legacy.room")),
            Ok(PoolMessage::LegacyName("legacy.room".into()))
        );
    }

    #[test]
    fn rejects_garbage() {
        for bad in ["", "a b c", "{\"v\":1}", "../etc", &"a".repeat(20_000)] {
            assert_eq!(decode(bad), Err(Undecodable), "{bad}");
        }
        let mut wrong_version = room();
        wrong_version.v = 2;
        assert_eq!(decode(&wrong_version.encode()), Err(Undecodable));
    }
}
