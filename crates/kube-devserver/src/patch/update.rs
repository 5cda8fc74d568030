//! Field ownership for create, update and non-apply patches: the manager
//! takes the fields it changed, others lose them (kube-apiserver's field
//! manager `Update` path).

use serde_json::{Value, json};

use super::ListSemantics;
use super::fieldset::{FieldSet, PathElement};
use super::managed::{
    Entry, Managed, ManagerId, Operation, is_reset, strip_managed_fields, strip_meta,
};
use super::typed::Typed;

/// Which part of the object a request may own: the status subresource owns
/// only `.status`; the main resource owns everything but `.status` when
/// status is a subresource (kube-apiserver's reset fields).
#[derive(Clone, Copy)]
pub struct Scope {
    status_only: bool,
    ignore_status: bool,
}

fn status() -> PathElement {
    PathElement::Field("status".to_string())
}

impl Scope {
    pub fn new(subresource: Option<&str>, lists: &dyn ListSemantics) -> Self {
        match subresource {
            Some("status") => Scope {
                status_only: true,
                ignore_status: false,
            },
            _ => Scope {
                status_only: false,
                ignore_status: lists.status_is_subresource(),
            },
        }
    }

    /// The part of `set` this request may own.
    pub fn filter(&self, set: &FieldSet) -> FieldSet {
        if self.status_only {
            set.restricted_to(&status())
        } else if self.ignore_status {
            let mut ignored = FieldSet::new();
            ignored.insert(&[status()]);
            set.recursive_difference(&ignored)
        } else {
            set.clone()
        }
    }

    /// Undoes what this request may not change, as the storage strategies
    /// do: a status write keeps everything but `.status`, a main-resource
    /// write keeps `.status`.
    pub fn reset(&self, live: &Value, new: Value) -> Value {
        if self.status_only {
            let mut out = live.clone();
            set_field(&mut out, "status", new.get("status").cloned());
            out
        } else if self.ignore_status {
            let mut out = new;
            set_field(&mut out, "status", live.get("status").cloned());
            out
        } else {
            new
        }
    }
}

fn set_field(obj: &mut Value, field: &str, value: Option<Value>) {
    if let Value::Object(m) = obj {
        match value {
            Some(v) => {
                m.insert(field.to_string(), v);
            }
            None => {
                m.remove(field);
            }
        }
    }
}

/// An object with nothing but its type, the "live" side of a create.
pub fn empty_object(like: &Value) -> Value {
    json!({
        "apiVersion": like.get("apiVersion").cloned().unwrap_or(Value::Null),
        "kind": like.get("kind").cloned().unwrap_or(Value::Null),
    })
}

pub fn api_version_of(obj: &Value) -> String {
    obj.get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// Gives `id` the fields that changed from `live` to `new` and takes them
/// from every other owner (an update never conflicts).
pub fn record_update(
    typed: &Typed<'_>,
    scope: Scope,
    live: &Value,
    new: &Value,
    managed: &mut Managed,
    id: ManagerId,
    now: &str,
) {
    let filter = |s: &FieldSet| scope.filter(s);
    let cmp = typed.compare(live, new).exclude(&filter);
    let changed = cmp.modified_or_added();
    for entry in managed.entries.values_mut() {
        entry.set = entry.set.difference(&changed).difference(&cmp.removed);
    }
    managed.drop_empty();
    let current = strip_meta(&changed.difference(&cmp.removed));
    if !current.is_empty() {
        let previous = managed
            .entries
            .remove(&id)
            .map(|e| e.set)
            .unwrap_or_default();
        managed.entries.insert(
            id,
            Entry {
                set: current.union(&previous),
                api_version: api_version_of(new),
                time: Some(now.to_string()),
            },
        );
    }
    managed.cap_update_managers();
}

pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
    lists: &dyn ListSemantics,
) {
    let live_managed = old
        .and_then(|o| Managed::decode(o).ok())
        .unwrap_or_default();
    let mut managed = if subresource.is_some() {
        // A subresource write cannot change ownership directly.
        live_managed
    } else if is_reset(new) {
        Managed::default()
    } else {
        match Managed::decode(new) {
            Ok(m) if !m.is_empty() => m,
            _ => live_managed,
        }
    };
    strip_managed_fields(new);
    if managed.is_empty() && old.is_some() {
        // An object without managedFields stays untracked until the next apply.
        return;
    }
    let mut live = old.cloned().unwrap_or_else(|| empty_object(new));
    strip_managed_fields(&mut live);
    let typed = Typed::new(lists);
    let scope = Scope::new(subresource, lists);
    let id = ManagerId::new(
        manager,
        Operation::Update,
        &api_version_of(new),
        subresource,
    );
    record_update(&typed, scope, &live, new, &mut managed, id, now);
    managed.write_to(new);
}

#[cfg(test)]
mod tests {
    use super::super::{builtin_list_semantics, track_update as track};
    use super::*;

    const T1: &str = "2024-05-01T10:00:00Z";
    const T2: &str = "2024-05-01T11:00:00Z";

    fn entries(obj: &Value) -> Vec<Value> {
        obj["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
        obj["metadata"]["managedFields"]
            .as_array()?
            .iter()
            .find(|e| e["manager"] == manager)
    }

    fn created(manager: &str) -> Value {
        let mut cm = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "default", "uid": "u1", "labels": {"app": "x"}},
            "data": {"a": "1", "b": "2"}
        });
        track(None, &mut cm, manager, None, T1);
        cm
    }

    #[test]
    fn create_gives_the_creator_every_field_it_set() {
        let cm = created("kubectl-create");
        let e = entry(&cm, "kubectl-create").expect("entry for the creator");
        assert_eq!(e["operation"], "Update");
        assert_eq!(e["apiVersion"], "v1");
        assert_eq!(e["time"], T1);
        assert_eq!(e["fieldsType"], "FieldsV1");
        assert_eq!(
            e["fieldsV1"],
            json!({
                "f:data": {".": {}, "f:a": {}, "f:b": {}},
                "f:metadata": {"f:labels": {".": {}, "f:app": {}}}
            })
        );
        assert!(e.get("subresource").is_none());
    }

    #[test]
    fn update_moves_changed_fields_to_the_updater_and_merges_its_entries() {
        let old = created("creator");
        let mut new = old.clone();
        new["data"]["a"] = json!("changed");
        track(Some(&old), &mut new, "editor", None, T2);
        let creator = entry(&new, "creator").expect("creator keeps the rest");
        assert_eq!(
            creator["fieldsV1"],
            json!({"f:data": {".": {}, "f:b": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
        );
        assert_eq!(
            entry(&new, "editor").expect("editor")["fieldsV1"],
            json!({"f:data": {"f:a": {}}})
        );

        let mut third = new.clone();
        third["data"]["b"] = json!("changed too");
        track(Some(&new), &mut third, "editor", None, T2);
        assert_eq!(
            entries(&third).len(),
            2,
            "one entry per manager and operation"
        );
        assert_eq!(
            entry(&third, "editor").expect("editor")["fieldsV1"],
            json!({"f:data": {"f:a": {}, "f:b": {}}})
        );
    }

    #[test]
    fn removed_fields_leave_every_owner_and_empty_entries_are_dropped() {
        let old = created("creator");
        let mut new = old.clone();
        new["metadata"]
            .as_object_mut()
            .expect("metadata")
            .remove("labels");
        new.as_object_mut().expect("object").remove("data");
        track(Some(&old), &mut new, "cleaner", None, T2);
        assert!(entries(&new).is_empty(), "{new}");
        assert!(new["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn unchanged_update_keeps_ownership_and_time() {
        let old = created("creator");
        let mut new = old.clone();
        track(Some(&old), &mut new, "noop", None, T2);
        assert_eq!(entries(&new), entries(&old));
    }

    #[test]
    fn client_garbage_in_managed_fields_is_replaced_by_the_stored_list() {
        let old = created("creator");
        let mut new = old.clone();
        new["metadata"]["managedFields"] = json!([{"manager": "evil", "operation": "Steal"}]);
        track(Some(&old), &mut new, "editor", None, T2);
        assert_eq!(entries(&new), entries(&old));
    }

    #[test]
    fn empty_managed_fields_resets_and_later_updates_stay_untracked() {
        let old = created("creator");
        let mut new = old.clone();
        new["metadata"]["managedFields"] = json!([]);
        track(Some(&old), &mut new, "resetter", None, T2);
        assert!(new["metadata"].get("managedFields").is_none(), "{new}");

        let mut next = new.clone();
        next["data"]["a"] = json!("x");
        track(Some(&new), &mut next, "editor", None, T2);
        assert!(next["metadata"].get("managedFields").is_none());

        let mut single_empty = old.clone();
        single_empty["metadata"]["managedFields"] = json!([{}]);
        track(Some(&old), &mut single_empty, "resetter", None, T2);
        assert!(single_empty["metadata"].get("managedFields").is_none());
    }

    #[test]
    fn status_writes_are_recorded_with_the_subresource_and_only_cover_status() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 1}
        });
        track(None, &mut d, "kubectl", None, T1);
        let mut with_status = d.clone();
        with_status["status"] = json!({"readyReplicas": 1});
        with_status["spec"]["replicas"] = json!(5);
        track(Some(&d), &mut with_status, "controller", Some("status"), T2);
        let e = entry(&with_status, "controller").expect("controller entry");
        assert_eq!(e["subresource"], "status");
        assert_eq!(
            e["fieldsV1"],
            json!({"f:status": {".": {}, "f:readyReplicas": {}}})
        );
        let kubectl = entry(&with_status, "kubectl").expect("kubectl keeps spec");
        assert_eq!(
            kubectl["fieldsV1"],
            json!({"f:spec": {".": {}, "f:replicas": {}}})
        );
    }

    #[test]
    fn main_resource_updates_never_own_status() {
        let lists = builtin_list_semantics("apps", "Deployment");
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 1}, "status": {"replicas": 1}
        });
        track_update(None, &mut d, "creator", None, T1, lists.as_ref());
        assert_eq!(
            entry(&d, "creator").expect("creator")["fieldsV1"],
            json!({"f:spec": {".": {}, "f:replicas": {}}})
        );
    }
}
