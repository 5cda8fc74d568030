//! Conversion between the version a client uses and the stored form.
//!
//! Custom resources (conversion strategy `None`) only change `apiVersion`;
//! `events.k8s.io/v1` Events are stored as `core/v1` Events, as in the real server.

use serde_json::{Map, Value};

use super::registry::{Builtin, ResourceType};

/// (core/v1 field, events.k8s.io/v1 field)
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("related", "related"),
    ("message", "note"),
    ("reason", "reason"),
    ("type", "type"),
    ("action", "action"),
    ("eventTime", "eventTime"),
    ("series", "series"),
    ("reportingComponent", "reportingController"),
    ("reportingInstance", "reportingInstance"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &Value, from_core: bool) -> Value {
    let Some(src) = obj.as_object() else {
        return obj.clone();
    };
    let mut out = Map::new();
    if let Some(m) = src.get("metadata") {
        out.insert("metadata".into(), m.clone());
    }
    for (core, v1) in EVENT_FIELDS {
        let (from, to) = if from_core { (core, v1) } else { (v1, core) };
        if let Some(value) = src.get(*from) {
            out.insert((*to).into(), value.clone());
        }
    }
    Value::Object(out)
}

fn set_type_meta(obj: &mut Value, api_version: &str, kind: &str) {
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), api_version.into());
        m.insert("kind".into(), kind.into());
    }
}

/// The stored form of an object a client sent through `rt`.
pub fn to_storage(rt: &ResourceType, obj: Value) -> Value {
    match rt.builtin() {
        Some(Builtin::EventsV1) => {
            let mut out = rename(&obj, false);
            set_type_meta(&mut out, "v1", "Event");
            out
        }
        _ => {
            let mut out = obj;
            set_type_meta(&mut out, &rt.api_version(), &rt.kind);
            out
        }
    }
}

/// Whether `rt` serves its objects with other field names than they are stored under.
pub fn renames_fields(rt: &ResourceType) -> bool {
    matches!(rt.builtin(), Some(Builtin::EventsV1))
}

/// A stored object as a client of `rt` sees it.
pub fn from_storage(rt: &ResourceType, obj: &Value) -> Value {
    let mut out = if renames_fields(rt) {
        rename(obj, true)
    } else {
        obj.clone()
    };
    set_type_meta(&mut out, &rt.api_version(), &rt.kind);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn events_round_trip_between_apis() {
        let r = Registry::with_builtins();
        let v1 = r.lookup("events.k8s.io", "v1", "events").expect("served");
        let sent = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Started",
            "reportingController": "sigil", "reportingInstance": "sigil-1", "eventTime": "2024-01-01T00:00:00.000000Z", "action": "Start", "type": "Normal"});
        let stored = to_storage(&v1, sent.clone());
        assert_eq!(stored["message"], "hello");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(from_storage(&v1, &stored), sent);
    }
}
