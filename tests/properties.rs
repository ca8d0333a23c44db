//! Property tests over the decoders and validators that see caller or queue input: they never
//! panic, refuse what is invalid, and round-trip what is valid.

use maxconf::config::{DEFAULT_TAG_URL_TEMPLATE, UuiSettings};
use maxconf::pexip::Alias;
use maxconf::pool::message::{PoolMessage, PooledRoom, decode};
use maxconf::room::RoomName;
use maxconf::routes::validate_update;
use maxconf::uui::tag_from_uui;
use proptest::prelude::*;
use serde_json::{Value, json};

fn uui_settings() -> UuiSettings {
    UuiSettings {
        allowed_hosts: vec!["id".into(), "idtest".into(), "iddev".into()],
        tag_template: DEFAULT_TAG_URL_TEMPLATE.into(),
    }
}

const VIDEO_CALL_ID: &str = "[A-Za-z0-9_=+/-]{1,128}";
const ROOM_NAME: &str = "[A-Za-z0-9._~=+-]{1,250}";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn uui_never_panics(raw in any::<String>()) {
        let _ = tag_from_uui(&raw, &uui_settings());
    }

    #[test]
    fn uui_hex_of_anything_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = tag_from_uui(&hex::encode(bytes), &uui_settings());
    }

    #[test]
    fn valid_uui_round_trips(
        host in prop::sample::select(vec!["id", "idtest", "iddev"]),
        id in VIDEO_CALL_ID,
        upper in any::<bool>(),
        suffix in prop::sample::select(vec!["", ";encoding=hex", ";ENCODING=HEX", ";Encoding=Hex"]),
    ) {
        let mut hex = hex::encode(format!("{host}&{id}"));
        if upper {
            hex = hex.to_uppercase();
        }
        let tag = tag_from_uui(&format!("{hex}{suffix}"), &uui_settings()).unwrap();
        prop_assert_eq!(tag, format!("https://{host}.gov.bc.ca/idcheck/protected/video/{id}"));
    }

    #[test]
    fn uui_with_a_foreign_host_or_id_is_refused(host in "[a-z]{1,10}", id in ".{0,140}") {
        let valid_host = ["id", "idtest", "iddev"].contains(&host.as_str());
        let valid_id = regex_like_video_call_id(&id);
        let result = tag_from_uui(&hex::encode(format!("{host}&{id}")), &uui_settings());
        prop_assert_eq!(result.is_ok(), valid_host && valid_id);
    }

    #[test]
    fn pool_messages_never_panic(raw in any::<String>()) {
        let _ = decode(&raw);
    }

    #[test]
    fn pool_messages_round_trip(
        id in any::<u64>(),
        name in ROOM_NAME,
        guest_pin in "[0-9]{4,20}",
        alias_id in any::<u64>(),
        allow_guests in any::<bool>(),
    ) {
        let room = PooledRoom {
            v: 1,
            id,
            name: name.clone(),
            service_type: "conference".into(),
            allow_guests,
            guest_pin,
            aliases: vec![Alias {
                id: alias_id,
                alias: name,
                conference: format!("/api/admin/configuration/v1/conference/{id}/"),
                creation_time: "2024-03-05T14:31:06.145782".into(),
                description: String::new(),
            }],
        };
        prop_assert_eq!(decode(&room.encode()), Ok(PoolMessage::Room(room)));
    }

    #[test]
    fn room_names_are_exactly_the_allowed_set(raw in any::<String>()) {
        let allowed = !raw.is_empty()
            && raw.len() <= 250
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || "._~=+-".contains(c));
        match RoomName::parse(&raw) {
            Ok(name) => {
                prop_assert!(allowed);
                prop_assert_eq!(name.as_str(), raw.as_str());
            }
            Err(_) => prop_assert!(!allowed),
        }
    }

    #[test]
    fn valid_room_names_round_trip(name in ROOM_NAME) {
        let parsed = RoomName::parse(&name).unwrap();
        prop_assert_eq!(parsed.as_str(), name.as_str());
    }

    #[test]
    fn patch_bodies_never_panic(raw in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = validate_update(&raw);
    }

    #[test]
    fn patch_filter_keeps_only_allowed_fields(
        key in "[a-z_]{1,20}",
        value in prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            ".{0,300}".prop_map(Value::from),
        ],
    ) {
        let body = serde_json::to_vec(&json!({ key.clone(): value })).unwrap();
        if let Ok(filtered) = validate_update(&body) {
            let allowed = ["tag", "description", "pin", "guest_pin", "allow_guests", "participant_limit"];
            prop_assert!(filtered.keys().all(|k| allowed.contains(&k.as_str())));
        } else {
            // Refused: fine. Accepted bodies are checked above.
        }
    }

    #[test]
    fn valid_patch_bodies_round_trip(
        tag in "[ -~]{0,250}",
        pin in "[0-9]{4,19}#?",
        allow_guests in any::<bool>(),
        limit in proptest::option::of(0u32..10_000),
    ) {
        let body = json!({"tag": tag, "pin": pin, "allow_guests": allow_guests, "participant_limit": limit});
        let filtered = validate_update(&serde_json::to_vec(&body).unwrap()).unwrap();
        prop_assert_eq!(Value::Object(filtered), body);
    }
}

fn regex_like_video_call_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_=+/-".contains(&b))
}
