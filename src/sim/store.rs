//! The simulator's data: conferences (VMRs) with inline aliases, and running conferences.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::validate::{ALIAS_TAKEN, AliasIn, FieldErrors, NAME_TAKEN, PINS_EQUAL, add, clean};

pub(crate) const CONF_PATH: &str = "/api/admin/configuration/v1/conference/";
pub(crate) const STATUS_PATH: &str = "/api/admin/status/v1/conference/";
pub(crate) const ALIAS_PATH: &str = "/api/admin/configuration/v1/conference_alias/";

pub(crate) fn conf_uri(id: u64) -> String {
    format!("{CONF_PATH}{id}/")
}

#[derive(Debug)]
pub(crate) enum WriteError {
    NotFound,
    Invalid(FieldErrors),
}

#[derive(Debug)]
pub(crate) struct Store {
    rooms: BTreeMap<u64, Map<String, Value>>,
    next_id: u64,
    next_alias_id: u64,
    /// Running conferences (status API), in start order.
    running: Vec<Value>,
}

impl Store {
    pub fn new() -> Self {
        Self {
            rooms: BTreeMap::new(),
            next_id: 1,
            next_alias_id: 1,
            running: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rooms.len()
    }

    pub fn get(&self, id: u64) -> Option<Value> {
        self.rooms.get(&id).cloned().map(Value::Object)
    }

    pub fn all(&self) -> Vec<Value> {
        self.rooms.values().cloned().map(Value::Object).collect()
    }

    pub fn by_name(&self, name: &str) -> Option<&Map<String, Value>> {
        self.rooms.values().find(|r| r["name"] == name)
    }

    /// Creates a room from a POST body; `now` is its creation time.
    pub fn create(&mut self, body: &Map<String, Value>, now: &str) -> Result<u64, FieldErrors> {
        let cleaned = clean(body, true);
        let mut errors = FieldErrors::new();
        if let Some(name) = body.get("name").and_then(Value::as_str)
            && self.name_taken(name, None)
        {
            add(&mut errors, "name", NAME_TAKEN);
        }
        let cleaned = match cleaned {
            Ok(c) => c,
            Err(mut e) => {
                for (field, messages) in errors {
                    e.entry(field).or_default().extend(messages);
                }
                return Err(e);
            }
        };
        let aliases = cleaned.aliases.unwrap_or_default();
        self.check_aliases(&aliases, None, &mut errors);
        let pin = cleaned
            .fields
            .get("pin")
            .and_then(Value::as_str)
            .unwrap_or("");
        let guest_pin = cleaned
            .fields
            .get("guest_pin")
            .and_then(Value::as_str)
            .unwrap_or("");
        check_pins(pin, guest_pin, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }

        let id = self.next_id;
        self.next_id += 1;
        let uri = conf_uri(id);
        let mut room = json!({
            "id": id,
            "resource_uri": uri,
            "service_type": "conference",
            "allow_guests": false,
            "pin": "",
            "guest_pin": "",
            "tag": "",
            "description": "",
            "creation_time": now,
            "participant_limit": null,
        });
        let room_obj = room.as_object_mut().expect("object literal");
        room_obj.extend(cleaned.fields);
        let aliases = self.make_aliases(&aliases, &[], &uri, now);
        room_obj.insert("aliases".into(), Value::Array(aliases));
        self.rooms.insert(id, room_obj.clone());
        Ok(id)
    }

    /// Applies a PATCH body: given fields change, given `aliases` replace the room's.
    pub fn patch(
        &mut self,
        id: u64,
        body: &Map<String, Value>,
        now: &str,
    ) -> Result<(), WriteError> {
        let Some(current) = self.rooms.get(&id) else {
            return Err(WriteError::NotFound);
        };
        let cleaned = clean(body, false).map_err(WriteError::Invalid)?;
        let mut errors = FieldErrors::new();
        if let Some(name) = cleaned.fields.get("name").and_then(Value::as_str)
            && self.name_taken(name, Some(id))
        {
            add(&mut errors, "name", NAME_TAKEN);
        }
        if let Some(aliases) = &cleaned.aliases {
            self.check_aliases(aliases, Some(id), &mut errors);
        }
        let merged = |field: &str| {
            cleaned
                .fields
                .get(field)
                .or_else(|| current.get(field))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        check_pins(&merged("pin"), &merged("guest_pin"), &mut errors);
        if !errors.is_empty() {
            return Err(WriteError::Invalid(errors));
        }

        let old_aliases = current
            .get("aliases")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let new_aliases = cleaned
            .aliases
            .map(|a| self.make_aliases(&a, &old_aliases, &conf_uri(id), now));
        let room = self.rooms.get_mut(&id).expect("checked above");
        room.extend(cleaned.fields);
        if let Some(a) = new_aliases {
            room.insert("aliases".into(), Value::Array(a));
        }
        Ok(())
    }

    pub fn delete(&mut self, id: u64) -> bool {
        self.rooms.remove(&id).is_some()
    }

    /// One alias by its own id (the `conference_alias` resource).
    pub fn alias(&self, alias_id: u64) -> Option<Value> {
        self.rooms.values().find_map(|r| {
            r.get("aliases")?
                .as_array()?
                .iter()
                .find(|a| a["id"] == alias_id)
                .cloned()
        })
    }

    /// PATCH of one alias: only its `description` may change here (at most 250 characters).
    pub fn patch_alias(
        &mut self,
        alias_id: u64,
        body: &Map<String, Value>,
    ) -> Result<(), WriteError> {
        let mut errors = FieldErrors::new();
        for (field, value) in body {
            match (field.as_str(), value.as_str()) {
                ("description", Some(d)) if d.chars().count() <= super::validate::MAX_CHARS => {}
                ("description", _) => add(
                    &mut errors,
                    "description",
                    "Ensure this value has at most 250 characters.",
                ),
                (other, _) => add(&mut errors, other, "This field cannot be changed here."),
            }
        }
        if !errors.is_empty() {
            return Err(WriteError::Invalid(errors));
        }
        let alias = self
            .rooms
            .values_mut()
            .filter_map(|r| r.get_mut("aliases")?.as_array_mut())
            .flatten()
            .find(|a| a["id"] == alias_id)
            .ok_or(WriteError::NotFound)?;
        if let Some(d) = body.get("description") {
            alias["description"] = d.clone();
        }
        Ok(())
    }

    /// Rooms matching list filters, ordered by id.
    pub fn filtered(&self, filters: &[(String, String)]) -> Vec<Value> {
        self.rooms
            .values()
            .filter(|r| filters.iter().all(|(k, v)| matches(r, k, v)))
            .cloned()
            .map(Value::Object)
            .collect()
    }

    /// A collection DELETE: tastypie's delete_list deletes whatever the filters select (all
    /// rooms without filters).
    pub fn delete_filtered(&mut self, filters: &[(String, String)]) -> usize {
        let before = self.rooms.len();
        self.rooms
            .retain(|_, r| !filters.iter().all(|(k, v)| matches(r, k, v)));
        before - self.rooms.len()
    }

    pub fn start_conference(&mut self, name: &str, id: String, now: &str) -> String {
        if let Some(c) = self.running.iter().find(|c| c["name"] == name) {
            return c["id"].as_str().unwrap_or_default().to_owned();
        }
        let room = self.by_name(name);
        let field = |f: &str| room.and_then(|r| r.get(f)).cloned();
        self.running.push(json!({
            "id": id,
            "name": name,
            "service_type": field("service_type").unwrap_or_else(|| json!("conference")),
            "tag": field("tag").unwrap_or_else(|| json!("")),
            "start_time": now,
            "is_locked": false,
            "is_started": true,
            "guests_muted": false,
            "resource_uri": format!("{STATUS_PATH}{id}/"),
        }));
        id
    }

    pub fn end_conference(&mut self, name: &str) -> bool {
        let before = self.running.len();
        self.running.retain(|c| c["name"] != name);
        before != self.running.len()
    }

    pub fn running(&self, filters: &[(String, String)]) -> Vec<Value> {
        self.running
            .iter()
            .filter(|c| {
                filters
                    .iter()
                    .all(|(k, v)| c.as_object().is_some_and(|o| matches(o, k, v)))
            })
            .cloned()
            .collect()
    }

    pub fn running_by_id(&self, id: &str) -> Option<Value> {
        self.running.iter().find(|c| c["id"] == id).cloned()
    }

    fn name_taken(&self, name: &str, except: Option<u64>) -> bool {
        self.rooms
            .iter()
            .any(|(id, r)| Some(*id) != except && r["name"] == name)
    }

    fn check_aliases(&self, aliases: &[AliasIn], except: Option<u64>, errors: &mut FieldErrors) {
        let taken = aliases.iter().any(|a| {
            self.rooms.iter().any(|(id, r)| {
                Some(*id) != except
                    && r.get("aliases")
                        .and_then(Value::as_array)
                        .is_some_and(|list| list.iter().any(|x| x["alias"] == a.alias.as_str()))
            })
        });
        if taken {
            add(errors, "aliases", ALIAS_TAKEN);
        }
    }

    /// Builds alias objects; an alias the room already had keeps its id and creation time.
    fn make_aliases(
        &mut self,
        wanted: &[AliasIn],
        old: &[Value],
        uri: &str,
        now: &str,
    ) -> Vec<Value> {
        wanted
            .iter()
            .map(|a| {
                if let Some(prev) = old.iter().find(|o| o["alias"] == a.alias.as_str()) {
                    let mut prev = prev.clone();
                    prev["description"] = json!(a.description);
                    return prev;
                }
                let id = self.next_alias_id;
                self.next_alias_id += 1;
                json!({
                    "id": id,
                    "alias": a.alias,
                    "conference": uri,
                    "creation_time": now,
                    "description": a.description,
                })
            })
            .collect()
    }
}

fn check_pins(pin: &str, guest_pin: &str, errors: &mut FieldErrors) {
    if !pin.is_empty() && pin == guest_pin {
        add(errors, "guest_pin", PINS_EQUAL);
    }
}

/// Tastypie-style filter `field[__lookup]=value` on a string field. Parameters that are not
/// filters (limit, offset, format, unknown fields) match everything.
pub(crate) fn matches(obj: &Map<String, Value>, key: &str, want: &str) -> bool {
    let (field, lookup) = key.split_once("__").unwrap_or((key, "exact"));
    if !is_filter_field(field) {
        return true;
    }
    let have = match obj.get(field) {
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Null) | None => return false,
        Some(_) => return false,
    };
    let (h, w) = (have.to_lowercase(), want.to_lowercase());
    match lookup {
        "exact" => have == want,
        "iexact" => h == w,
        "contains" => have.contains(want),
        "icontains" => h.contains(&w),
        "startswith" => have.starts_with(want),
        "istartswith" => h.starts_with(&w),
        "endswith" => have.ends_with(want),
        "iendswith" => h.ends_with(&w),
        _ => true,
    }
}

pub(crate) fn is_filter_field(field: &str) -> bool {
    matches!(field, "name" | "tag" | "description" | "service_type")
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2024-03-05T14:31:06.145782";

    fn body(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn create_defaults_and_ids() {
        let mut s = Store::new();
        let a = s
            .create(
                &body(json!({"name": "a", "aliases": [{"alias": "a"}]})),
                NOW,
            )
            .unwrap();
        let b = s
            .create(
                &body(json!({"name": "b", "aliases": [{"alias": "b"}]})),
                NOW,
            )
            .unwrap();
        assert_eq!((a, b), (1, 2));
        let room = s.get(2).unwrap();
        assert_eq!(
            room["resource_uri"],
            "/api/admin/configuration/v1/conference/2/"
        );
        assert_eq!(room["allow_guests"], false);
        assert_eq!(room["pin"], "");
        assert_eq!(room["participant_limit"], Value::Null);
        assert_eq!(room["aliases"][0]["id"], 2);
        assert_eq!(room["aliases"][0]["conference"], room["resource_uri"]);
        assert!(s.delete(2));
        let c = s.create(&body(json!({"name": "b"})), NOW).unwrap();
        assert_eq!(c, 3, "ids are never reused");
    }

    #[test]
    fn uniqueness_and_pin_rules() {
        let mut s = Store::new();
        s.create(
            &body(json!({"name": "a", "aliases": [{"alias": "x"}]})),
            NOW,
        )
        .unwrap();
        let e = s
            .create(
                &body(json!({"name": "a", "aliases": [{"alias": "x"}]})),
                NOW,
            )
            .unwrap_err();
        assert_eq!(e["name"], [NAME_TAKEN]);
        assert_eq!(e["aliases"], [ALIAS_TAKEN]);
        let e = s
            .create(
                &body(json!({"name": "b", "pin": "1234", "guest_pin": "1234"})),
                NOW,
            )
            .unwrap_err();
        assert_eq!(e["guest_pin"], [PINS_EQUAL]);
        // Both field and uniqueness errors are reported together.
        let e = s
            .create(&body(json!({"name": "a", "pin": "1"})), NOW)
            .unwrap_err();
        assert!(e.contains_key("name") && e.contains_key("pin"));
    }

    #[test]
    fn patch_rename_aliases_and_pins() {
        let mut s = Store::new();
        s.create(
            &body(json!({"name": "a", "aliases": [{"alias": "a"}]})),
            NOW,
        )
        .unwrap();
        s.create(
            &body(json!({"name": "b", "pin": "1111", "aliases": [{"alias": "b"}]})),
            NOW,
        )
        .unwrap();
        let invalid = |r| matches!(r, Err(WriteError::Invalid(_)));
        assert!(invalid(s.patch(2, &body(json!({"name": "a"})), NOW)));
        assert!(invalid(s.patch(
            2,
            &body(json!({"aliases": [{"alias": "a"}]})),
            NOW
        )));
        assert!(invalid(s.patch(
            2,
            &body(json!({"guest_pin": "1111"})),
            NOW
        )));
        assert!(matches!(
            s.patch(9, &body(json!({})), NOW),
            Err(WriteError::NotFound)
        ));
        // Renaming to its own name, keeping its own alias, is fine.
        s.patch(
            2,
            &body(json!({"name": "b", "aliases": [{"alias": "b"}, {"alias": "c"}], "tag": "t"})),
            NOW,
        )
        .unwrap();
        let r = s.get(2).unwrap();
        assert_eq!(r["tag"], "t");
        assert_eq!(r["aliases"][0]["id"], 2, "unchanged alias keeps its id");
        assert_eq!(r["aliases"][1]["id"], 3);
    }

    #[test]
    fn filters() {
        let mut s = Store::new();
        for (n, t) in [("Alpha", "x"), ("beta", "y"), ("alphabet", "x")] {
            s.create(&body(json!({"name": n, "tag": t})), NOW).unwrap();
        }
        let names = |f: &[(&str, &str)]| {
            let f: Vec<_> = f
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            s.filtered(&f)
                .iter()
                .map(|r| r["name"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&[("name__icontains", "ALPHA")]),
            ["Alpha", "alphabet"]
        );
        assert_eq!(names(&[("name", "alpha")]), Vec::<String>::new());
        assert_eq!(
            names(&[("tag", "x"), ("name__startswith", "a")]),
            ["alphabet"]
        );
        assert_eq!(names(&[("format", "json")]).len(), 3);
    }
}
