//! A conference (VMR) as maxconf reads it from Pexip: the fields the domain uses, and the
//! object exactly as Pexip gave it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An alias as Pexip returns it inside a conference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alias {
    #[serde(default)]
    pub id: u64,
    pub alias: String,
    #[serde(default)]
    pub conference: String,
    #[serde(default)]
    pub creation_time: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    pub description: String,
}

/// A conference (VMR). `raw` keeps the object exactly as Pexip gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Conference {
    pub id: u64,
    pub name: String,
    pub service_type: String,
    pub allow_guests: bool,
    pub pin: String,
    pub guest_pin: String,
    pub tag: String,
    pub description: String,
    pub aliases: Vec<Alias>,
    pub raw: Value,
}

#[derive(Deserialize)]
struct Fields {
    id: u64,
    name: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    service_type: String,
    #[serde(default)]
    allow_guests: bool,
    #[serde(default, deserialize_with = "null_as_empty")]
    pin: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    guest_pin: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    tag: String,
    #[serde(default, deserialize_with = "null_as_empty")]
    description: String,
    #[serde(default)]
    aliases: Vec<Alias>,
}

impl Conference {
    pub fn from_value(raw: Value) -> Result<Self, serde_json::Error> {
        let f = Fields::deserialize(&raw)?;
        Ok(Self {
            id: f.id,
            name: f.name,
            service_type: f.service_type,
            allow_guests: f.allow_guests,
            pin: f.pin,
            guest_pin: f.guest_pin,
            tag: f.tag,
            description: f.description,
            aliases: f.aliases,
            raw,
        })
    }
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_a_pexip_object_and_keeps_it_raw() {
        let raw = json!({"id": 90, "name": "r", "service_type": "conference", "allow_guests": true,
            "pin": "1234", "guest_pin": "5678", "tag": null, "description": "", "ivr_theme": null,
            "aliases": [{"id": 85, "alias": "r", "conference": "/api/admin/configuration/v1/conference/90/",
                         "creation_time": "2024-03-05T14:31:06.145782", "description": null}]});
        let c = Conference::from_value(raw.clone()).unwrap();
        assert_eq!(c.id, 90);
        assert_eq!(c.tag, "");
        assert_eq!(c.aliases[0].id, 85);
        assert_eq!(c.aliases[0].description, "");
        assert_eq!(c.raw, raw);
    }
}
