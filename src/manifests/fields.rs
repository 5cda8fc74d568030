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

/// Leaves of a `fieldsV1` set that `strip_owned` must never take out of a body: what
/// identifies the object, and the Sync's ownership labels.
fn protected(path: &[String]) -> bool {
    is_identity(path)
        || matches!(
            path.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
            ["metadata", "labels", label]
                if *label == super::SYNC_NAME_LABEL || *label == super::SYNC_NAMESPACE_LABEL
        )
}

/// Takes the leaves `fields` owns out of `body`: map fields by name, list elements by their
/// keys (`k:`, never the element itself nor its key fields) and set members by value (`v:`).
fn strip_owned(body: &mut Value, fields: &Value, keys: &[String], path: &mut Path) {
    let Some(map) = fields.as_object() else {
        return;
    };
    for (key, owned) in map {
        if let Some(name) = key.strip_prefix("f:") {
            let Some(object) = body.as_object_mut() else {
                continue;
            };
            path.push(name.to_string());
            let leaf = owned.as_object().is_none_or(|m| m.is_empty());
            if leaf {
                if !protected(path) && !keys.iter().any(|k| k == name) {
                    object.remove(name);
                }
            } else if let Some(child) = object.get_mut(name) {
                strip_owned(child, owned, &[], path);
            }
            path.pop();
        } else if let Some(element) = key.strip_prefix("k:") {
            let (Ok(Value::Object(wanted)), Some(items)) =
                (serde_json::from_str::<Value>(element), body.as_array_mut())
            else {
                continue;
            };
            let names: Vec<String> = wanted.keys().cloned().collect();
            if let Some(item) = items
                .iter_mut()
                .find(|item| wanted.iter().all(|(k, v)| item.get(k) == Some(v)))
            {
                strip_owned(item, owned, &names, path);
            }
        } else if let Some(member) = key.strip_prefix("v:")
            && let (Ok(member), Some(items)) =
                (serde_json::from_str::<Value>(member), body.as_array_mut())
        {
            items.retain(|item| *item != member);
        }
    }
}

/// `body` without the fields other managers own on `live` (`sigil.dev/ssa: Merge`): applying
/// it as `manager` never takes a field over from anyone.
pub fn without_others_fields(body: &mut Value, live: &Value, manager: &str) {
    let entries = live
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|entry| {
            entry["manager"] != manager
                && entry
                    .get("subresource")
                    .is_none_or(|s| s.as_str().is_none_or(str::is_empty))
        });
    for entry in entries {
        if let Some(fields) = entry.get("fieldsV1") {
            strip_owned(body, fields, &[], &mut Vec::new());
        }
    }
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

    #[test]
    fn merge_leaves_out_what_others_own() {
        let live = json!({"metadata": {"managedFields": [
            {"manager": "sigil", "operation": "Apply", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "hpa", "operation": "Update", "fieldsV1": {"f:spec": {"f:replicas": {}}}},
            {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {
                "f:metadata": {"f:labels": {"f:sigil.dev/sync-name": {}, "f:team": {}}},
                "f:spec": {"f:template": {"f:spec": {"f:containers": {
                    "k:{\"name\":\"web\"}": {".": {}, "f:name": {}, "f:image": {}}}}}}}},
            {"manager": "finalizer", "operation": "Update", "fieldsV1": {"f:metadata": {"f:finalizers": {"v:\"a\"": {}}}}},
            {"manager": "status", "operation": "Update", "subresource": "status", "fieldsV1": {"f:spec": {"f:paused": {}}}}
        ]}});
        let mut body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"sigil.dev/sync-name": "s", "team": "a", "app": "web"},
                         "finalizers": ["a", "b"]},
            "spec": {"replicas": 2, "paused": false, "template": {"spec": {"containers": [
                {"name": "web", "image": "git", "args": ["x"]}, {"name": "side", "image": "git"}]}}}});
        without_others_fields(&mut body, &live, "sigil");
        assert_eq!(
            body,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"sigil.dev/sync-name": "s", "app": "web"},
                             "finalizers": ["b"]},
                "spec": {"paused": false, "template": {"spec": {"containers": [
                    {"name": "web", "args": ["x"]}, {"name": "side", "image": "git"}]}}}})
        );
    }
}
