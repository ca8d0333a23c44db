//! Field validation of conference bodies, with Pexip's (Django's) messages.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// Field name → messages, serialized under `{"conference": …}` in a 400.
pub(crate) type FieldErrors = BTreeMap<String, Vec<String>>;

pub(crate) const SERVICE_TYPES: [&str; 5] = [
    "conference",
    "lecture",
    "two_stage_dialing",
    "test_call",
    "media_playback",
];

pub(crate) const MAX_CHARS: usize = 250;

/// Server-managed fields: ignored in bodies, as tastypie ignores read-only fields.
const READ_ONLY: [&str; 3] = ["id", "resource_uri", "creation_time"];

pub(crate) const NAME_TAKEN: &str = "Virtual Meeting Room with this Name already exists.";
pub(crate) const ALIAS_TAKEN: &str = "Alias with this Alias already exists.";
pub(crate) const PINS_EQUAL: &str = "The Host PIN and Guest PIN must be different.";
const PIN_RULE: &str = "PIN must be 4 to 20 digits long, including any terminal #.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AliasIn {
    pub alias: String,
    pub description: String,
}

/// A body that passed field validation: scalar fields to set (known and extra) and,
/// when given, the aliases that replace the room's.
#[derive(Debug, Default)]
pub(crate) struct Cleaned {
    pub fields: Map<String, Value>,
    pub aliases: Option<Vec<AliasIn>>,
}

pub(crate) fn add(errors: &mut FieldErrors, field: &str, message: impl Into<String>) {
    errors
        .entry(field.to_owned())
        .or_default()
        .push(message.into());
}

/// Validates each field on its own; uniqueness and cross-field rules need the store.
pub(crate) fn clean(body: &Map<String, Value>, creating: bool) -> Result<Cleaned, FieldErrors> {
    let mut errors = FieldErrors::new();
    let mut out = Cleaned::default();

    if creating && !body.contains_key("name") {
        add(&mut errors, "name", "This field is required.");
    }
    for (key, value) in body {
        let key = key.as_str();
        if READ_ONLY.contains(&key) {
            continue;
        }
        let ok = match key {
            "name" => text(&mut errors, key, value, false),
            "tag" | "description" => text(&mut errors, key, value, true),
            "service_type" => service_type(&mut errors, value),
            "pin" | "guest_pin" => pin(&mut errors, key, value),
            "allow_guests" => boolean(&mut errors, key, value),
            "participant_limit" => participant_limit(&mut errors, value),
            "aliases" => {
                out.aliases = aliases(&mut errors, value);
                false
            }
            _ => true,
        };
        if ok {
            out.fields.insert(key.to_owned(), value.clone());
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn text(errors: &mut FieldErrors, field: &str, value: &Value, blank_ok: bool) -> bool {
    match value {
        Value::Null => add(errors, field, "This field cannot be null."),
        Value::String(s) if s.is_empty() && !blank_ok => {
            add(errors, field, "This field cannot be blank.")
        }
        Value::String(s) => {
            let n = s.chars().count();
            if n <= MAX_CHARS {
                return true;
            }
            add(
                errors,
                field,
                format!("Ensure this value has at most {MAX_CHARS} characters (it has {n})."),
            );
        }
        _ => add(errors, field, "This field must be a string."),
    }
    false
}

fn service_type(errors: &mut FieldErrors, value: &Value) -> bool {
    match value.as_str() {
        Some(s) if SERVICE_TYPES.contains(&s) => true,
        _ => {
            add(
                errors,
                "service_type",
                format!("Value {value} is not a valid choice."),
            );
            false
        }
    }
}

/// Empty, or 4..=20 characters of digits with an optional terminal `#` (counted).
pub(crate) fn pin_is_valid(pin: &str) -> bool {
    let digits = pin.strip_suffix('#').unwrap_or(pin);
    (4..=20).contains(&pin.len())
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
}

fn pin(errors: &mut FieldErrors, field: &str, value: &Value) -> bool {
    match value {
        Value::Null => add(errors, field, "This field cannot be null."),
        Value::String(s) if s.is_empty() || pin_is_valid(s) => return true,
        _ => add(errors, field, PIN_RULE),
    }
    false
}

fn boolean(errors: &mut FieldErrors, field: &str, value: &Value) -> bool {
    if value.is_boolean() {
        return true;
    }
    add(
        errors,
        field,
        format!("{value} value must be either True or False."),
    );
    false
}

fn participant_limit(errors: &mut FieldErrors, value: &Value) -> bool {
    match value {
        Value::Null => return true,
        Value::Number(n) if n.is_u64() => return true,
        Value::Number(n) if n.is_i64() => add(
            errors,
            "participant_limit",
            "Ensure this value is greater than or equal to 0.",
        ),
        _ => add(errors, "participant_limit", "Enter a whole number."),
    }
    false
}

fn aliases(errors: &mut FieldErrors, value: &Value) -> Option<Vec<AliasIn>> {
    let Some(items) = value.as_array() else {
        add(errors, "aliases", "Expected a list of alias objects.");
        return None;
    };
    let before = errors.get("aliases").map_or(0, Vec::len);
    let mut out: Vec<AliasIn> = Vec::with_capacity(items.len());
    for item in items {
        let Some(obj) = item.as_object() else {
            add(
                errors,
                "aliases",
                "Each alias must be an object like {\"alias\": \"…\"}.",
            );
            continue;
        };
        let alias = match obj.get("alias") {
            None => {
                add(errors, "aliases", "alias: This field is required.");
                continue;
            }
            Some(Value::String(s)) if s.is_empty() => {
                add(errors, "aliases", "alias: This field cannot be blank.");
                continue;
            }
            Some(Value::String(s)) if s.chars().count() > MAX_CHARS => {
                add(
                    errors,
                    "aliases",
                    format!("alias: Ensure this value has at most {MAX_CHARS} characters."),
                );
                continue;
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                add(errors, "aliases", "alias: This field must be a string.");
                continue;
            }
        };
        let description = match obj.get("description") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) if s.chars().count() <= MAX_CHARS => s.clone(),
            Some(_) => {
                add(
                    errors,
                    "aliases",
                    format!("description: must be a string of at most {MAX_CHARS} characters."),
                );
                continue;
            }
        };
        if out.iter().any(|a| a.alias == alias) {
            add(errors, "aliases", ALIAS_TAKEN);
            continue;
        }
        out.push(AliasIn { alias, description });
    }
    (errors.get("aliases").map_or(0, Vec::len) == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn errs(body: Value, creating: bool) -> FieldErrors {
        clean(body.as_object().unwrap(), creating).unwrap_err()
    }

    #[test]
    fn pins() {
        for ok in [
            "1234",
            "1234#",
            "123#",
            "12345678901234567890",
            "1234567890123456789#",
        ] {
            assert!(pin_is_valid(ok), "{ok}");
        }
        for bad in [
            "123",
            "12#",
            "123456789012345678901",
            "12a4",
            "#1234",
            "12#34",
            "####",
            "",
        ] {
            assert!(!pin_is_valid(bad), "{bad}");
        }
    }

    #[test]
    fn create_requires_name_patch_does_not() {
        assert_eq!(errs(json!({}), true)["name"], ["This field is required."]);
        assert!(clean(json!({}).as_object().unwrap(), false).is_ok());
        assert_eq!(
            errs(json!({"name": ""}), true)["name"],
            ["This field cannot be blank."]
        );
        assert_eq!(
            errs(json!({"name": null}), false)["name"],
            ["This field cannot be null."]
        );
    }

    #[test]
    fn collects_every_field_error() {
        let e = errs(
            json!({"name": "x".repeat(251), "service_type": "webinar", "pin": "12",
                   "allow_guests": "yes", "tag": "t".repeat(251), "participant_limit": -1}),
            true,
        );
        assert_eq!(
            e.keys().collect::<Vec<_>>(),
            [
                "allow_guests",
                "name",
                "participant_limit",
                "pin",
                "service_type",
                "tag"
            ]
        );
        assert_eq!(
            e["name"],
            ["Ensure this value has at most 250 characters (it has 251)."]
        );
    }

    #[test]
    fn extras_and_read_only() {
        let c = clean(
            json!({"name": "a", "id": 7, "resource_uri": "x", "ivr_theme": "/t/1/", "host_view": "one_main_zero_pips"})
                .as_object()
                .unwrap(),
            true,
        )
        .unwrap();
        assert!(!c.fields.contains_key("id") && !c.fields.contains_key("resource_uri"));
        assert_eq!(c.fields["ivr_theme"], "/t/1/");
        assert_eq!(c.fields["host_view"], "one_main_zero_pips");
        assert!(c.aliases.is_none());
    }

    #[test]
    fn alias_rules() {
        let c = clean(
            json!({"name": "a", "aliases": [{"alias": "a"}, {"alias": "b", "description": "d"}]})
                .as_object()
                .unwrap(),
            true,
        )
        .unwrap();
        assert_eq!(c.aliases.unwrap()[1].description, "d");
        assert_eq!(
            errs(
                json!({"name": "a", "aliases": [{"alias": "a"}, {"alias": "a"}]}),
                true
            )["aliases"],
            [ALIAS_TAKEN]
        );
        assert!(errs(json!({"aliases": [{}]}), false).contains_key("aliases"));
        assert!(errs(json!({"aliases": "a"}), false).contains_key("aliases"));
    }
}
