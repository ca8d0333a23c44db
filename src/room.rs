//! Rooms as callers see them: names, PINs, the create body of a new room and the
//! `ConstrainedConference` shape.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::{Rng, RngCore};

use serde::Serialize;
use serde_json::{Value, json};

use crate::conference::{Alias, Conference};
use crate::config::RoomSettings;
use crate::room_state::{self, RoomState};

const MAX_ROOM_NAME: usize = 250;

/// Characters a room name may contain in a path: `[A-Za-z0-9._~=+-]`.
pub fn is_room_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._~=+-".contains(c)
}

/// A room name from a path, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > MAX_ROOM_NAME || !raw.chars().all(is_room_name_char) {
            return Err(format!(
                "room_name must be 1 to {MAX_ROOM_NAME} characters of [A-Za-z0-9._~=+-]"
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `prefix` + 16 characters of unpadded base64url from the OS CSPRNG (96 bits).
pub fn new_room_name(prefix: &str) -> String {
    // rand's thread RNG is a CSPRNG (ChaCha12) seeded from the OS.
    let mut bytes = [0u8; 12];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// A host PIN and a guest PIN of `len` digits each, never equal.
pub fn new_pins(len: usize) -> (String, String) {
    let mut rng = rand::rng();
    let mut pin = || -> String {
        (0..len)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    };
    let host = pin();
    loop {
        let guest = pin();
        if guest != host {
            return (host, guest);
        }
    }
}

/// The create body of a new room: the template first, then the fields maxconf owns. The
/// room's state goes on its alias; its `description` is left to callers.
pub fn new_room_body(settings: &RoomSettings, name: &str, tag: &str, state: RoomState) -> Value {
    let (pin, guest_pin) = new_pins(settings.pin_length);
    let mut body = settings.template.clone();
    let own = json!({
        "name": name,
        "service_type": "conference",
        "allow_guests": true,
        "pin": pin,
        "guest_pin": guest_pin,
        "aliases": [{"alias": name, "description": state.to_string()}],
        "tag": tag,
        "description": "",
    });
    if let Value::Object(own) = own {
        body.extend(own);
    }
    Value::Object(body)
}

/// The room shape callers depend on (compatible with the original API, key order included).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConstrainedConference {
    pub id: u64,
    pub name: String,
    pub service_type: String,
    pub allow_guests: bool,
    /// The host PIN: left out of the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    pub guest_pin: String,
    pub tag: String,
    pub aliases: Vec<Alias>,
}

impl ConstrainedConference {
    /// The shape of a room read from Pexip, host PIN included.
    pub fn from_conference(c: &Conference) -> Self {
        Self {
            id: c.id,
            name: c.name.clone(),
            service_type: c.service_type.clone(),
            allow_guests: c.allow_guests,
            pin: Some(c.pin.clone()),
            guest_pin: c.guest_pin.clone(),
            tag: c.tag.clone(),
            aliases: callers_aliases(&c.aliases),
        }
    }
}

/// Aliases as callers see them: maxconf's state marker reads as an empty description.
pub fn callers_aliases(aliases: &[Alias]) -> Vec<Alias> {
    aliases
        .iter()
        .map(|a| Alias {
            description: room_state::caller_view(&a.description).to_owned(),
            ..a.clone()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use std::time::Duration;

    #[test]
    fn names_are_prefix_plus_16_base64url() {
        let name = new_room_name("mc_");
        assert_eq!(name.len(), 19);
        assert!(name.starts_with("mc_"));
        assert!(
            name[3..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(new_room_name(""), new_room_name(""));
        assert!(RoomName::parse(&new_room_name("")).is_ok());
    }

    #[test]
    fn room_name_rules() {
        for ok in ["a", "MTIzNDU2LDc2NTQzMg", "x.y~z=1+2-3_4", &"a".repeat(250)] {
            assert!(RoomName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/b", "..%2f", "a b", "ä", "a?b", &"a".repeat(251)] {
            assert!(RoomName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pins_have_the_length_and_differ() {
        for len in [4, 6, 20] {
            for _ in 0..200 {
                let (host, guest) = new_pins(len);
                assert_eq!(host.len(), len);
                assert_eq!(guest.len(), len);
                assert!(
                    host.bytes()
                        .chain(guest.bytes())
                        .all(|b| b.is_ascii_digit())
                );
                assert_ne!(host, guest);
            }
        }
    }

    #[test]
    fn body_merges_template_under_own_fields() {
        let mut template = Map::new();
        template.insert(
            "ivr_theme".into(),
            json!("/api/admin/configuration/v1/ivr_theme/2/"),
        );
        template.insert("host_view".into(), json!("one_main_zero_pips"));
        let settings = RoomSettings {
            name_prefix: String::new(),
            pin_length: 8,
            template,
            max_age: Duration::from_secs(3600),
            persistent_prefixes: vec![],
        };
        let state = RoomState::created_now();
        let body = new_room_body(&settings, "room1", "", state);
        assert_eq!(body["name"], "room1");
        assert_eq!(body["service_type"], "conference");
        assert_eq!(body["allow_guests"], true);
        assert_eq!(
            body["aliases"],
            json!([{"alias": "room1", "description": state.to_string()}])
        );
        assert_eq!(body["description"], "");
        assert_eq!(body["pin"].as_str().unwrap().len(), 8);
        assert_eq!(body["host_view"], "one_main_zero_pips");
        assert_eq!(
            body["ivr_theme"],
            "/api/admin/configuration/v1/ivr_theme/2/"
        );
    }
}
