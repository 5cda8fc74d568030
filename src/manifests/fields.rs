//! Deciding locally, from the live object's `managedFields`, that applying again would change
//! nothing — so a resync of unchanged objects needs no dry-run call at all.
//!
//! Server-side apply of `desired` by manager M changes the object only when (a) a field M
//! applies has another value live, or (b) M owned a field it no longer applies (it is
//! removed). So when M's Apply entry owns no field that `desired` lacks, and every field of
//! `desired` already has its value live, the apply is a no-op (at most ownership of equal
//! values moves, which is not a change of the object). Anything this cannot tell for sure —
//! no entry for M, a field owned but no longer applied, any value that differs — answers
//! false, and the caller asks the server with a dry run.
//!
//! Lists are compared whole: a list field is one leaf whose live value must equal the desired
//! one exactly, and ownership inside it (`k:`, `v:`, `i:` keys) is not inspected.

use std::collections::BTreeSet;

use serde_json::Value;

type Path = Vec<String>;

/// Fields that identify the object and are never tracked as owned.
fn is_identity(path: &[String]) -> bool {
    matches!(
        path.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .as_slice(),
        ["apiVersion"]
            | ["kind"]
            | ["status", ..]
            | ["metadata", "name"]
            | ["metadata", "namespace"]
    )
}

/// The leaf paths of a `fieldsV1` set (lists are leaves).
fn owned_paths(fields: &Value, prefix: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(map) = fields.as_object() else {
        return;
    };
    let mut children = false;
    for (key, value) in map {
        if let Some(name) = key.strip_prefix("f:") {
            children = true;
            prefix.push(name.to_string());
            owned_paths(value, prefix, out);
            prefix.pop();
        } else if key.starts_with("k:") || key.starts_with("v:") || key.starts_with("i:") {
            // Inside a list: the list itself is the leaf.
            children = false;
            break;
        }
    }
    if !children && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
}

/// The leaf paths of a desired object with their values (lists, scalars and empty maps are
/// leaves).
fn desired_leaves<'a>(value: &'a Value, prefix: &mut Path, out: &mut Vec<(Path, &'a Value)>) {
    match value.as_object() {
        Some(map) if !map.is_empty() => {
            for (key, child) in map {
                prefix.push(key.clone());
                desired_leaves(child, prefix, out);
                prefix.pop();
            }
        }
        _ if !prefix.is_empty() => out.push((prefix.clone(), value)),
        _ => {}
    }
}

fn at<'a>(object: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(object, |v, key| v.get(key))
}

/// The `fieldsV1` of `manager`'s Apply entry on the main resource.
fn applied_fields<'a>(live: &'a Value, manager: &str) -> Option<&'a Value> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|entry| {
            entry["manager"] == manager
                && entry["operation"] == "Apply"
                && entry
                    .get("subresource")
                    .is_none_or(|s| s.as_str().is_none_or(str::is_empty))
        })?
        .get("fieldsV1")
}

/// True when applying `desired` as `manager` to `live` would certainly change nothing.
pub fn apply_is_noop(desired: &Value, live: &Value, manager: &str) -> bool {
    let Some(fields) = applied_fields(live, manager) else {
        return false;
    };
    let mut owned = BTreeSet::new();
    owned_paths(fields, &mut Vec::new(), &mut owned);
    let mut leaves = Vec::new();
    desired_leaves(desired, &mut Vec::new(), &mut leaves);
    leaves.retain(|(path, _)| !is_identity(path));
    let applied: BTreeSet<&Path> = leaves.iter().map(|(p, _)| p).collect();
    let removes_something = owned
        .iter()
        .filter(|p| !is_identity(p))
        .any(|p| !applied.contains(p));
    !removes_something
        && leaves
            .iter()
            .all(|(path, value)| at(live, path) == Some(*value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn live(data: Value, fields: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "n", "resourceVersion": "7",
                         "labels": {"sigil.dev/sync-name": "s"},
                         "managedFields": [
                            {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:data": {"f:other": {}}}},
                            {"manager": "sigil", "operation": "Apply", "fieldsV1": fields}
                         ]},
            "data": data
        })
    }

    fn desired(data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "namespace": "n", "labels": {"sigil.dev/sync-name": "s"}},
               "data": data})
    }

    fn owned() -> Value {
        json!({"f:data": {".": {}, "f:mode": {}}, "f:metadata": {"f:labels": {".": {}, "f:sigil.dev/sync-name": {}}}})
    }

    #[test]
    fn an_identical_apply_is_a_noop() {
        let live = live(json!({"mode": "fast", "other": "kept"}), owned());
        assert!(apply_is_noop(
            &desired(json!({"mode": "fast"})),
            &live,
            "sigil"
        ));
    }

    #[test]
    fn a_changed_value_is_not() {
        let live = live(json!({"mode": "slow"}), owned());
        assert!(!apply_is_noop(
            &desired(json!({"mode": "fast"})),
            &live,
            "sigil"
        ));
    }

    #[test]
    fn a_field_no_longer_applied_would_be_removed() {
        let fields = json!({"f:data": {"f:mode": {}, "f:gone": {}}});
        let live = live(json!({"mode": "fast", "gone": "x"}), fields);
        assert!(!apply_is_noop(
            &desired(json!({"mode": "fast"})),
            &live,
            "sigil"
        ));
    }

    #[test]
    fn without_an_apply_entry_the_server_decides() {
        let mut live = live(json!({"mode": "fast"}), owned());
        live["metadata"]["managedFields"][1]["manager"] = json!("someone-else");
        assert!(!apply_is_noop(
            &desired(json!({"mode": "fast"})),
            &live,
            "sigil"
        ));
    }

    #[test]
    fn lists_are_compared_whole() {
        let fields = json!({"f:spec": {"f:ports": {"k:{\"port\":80}": {".": {}, "f:port": {}}}}});
        let object = |ports: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s",
                   "managedFields": [{"manager": "sigil", "operation": "Apply", "fieldsV1": fields}]},
                   "spec": {"ports": ports}})
        };
        let want = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                          "spec": {"ports": [{"port": 80}]}});
        assert!(apply_is_noop(
            &want,
            &object(json!([{"port": 80}])),
            "sigil"
        ));
        assert!(!apply_is_noop(
            &want,
            &object(json!([{"port": 80, "protocol": "TCP"}])),
            "sigil"
        ));
    }
}
