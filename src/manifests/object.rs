//! Small facts about objects: identity, ownership labels, annotations, and the comparisons
//! that decide whether a write is needed.

use std::fmt;

use kube::api::DynamicObject;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{PRUNE_ANNOTATION, RECONCILE_ANNOTATION, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL};
use crate::api::sync::InventoryEntry;

/// The Sync that owns applied objects (through two labels).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl Owner {
    /// The label selector matching this owner's objects.
    pub fn selector(&self) -> String {
        format!(
            "{SYNC_NAME_LABEL}={},{SYNC_NAMESPACE_LABEL}={}",
            self.name, self.namespace
        )
    }

    /// The owner an object's labels name, if any.
    pub fn of(object: &Value) -> Option<Owner> {
        let labels = object.pointer("/metadata/labels")?;
        Some(Owner {
            name: labels.get(SYNC_NAME_LABEL)?.as_str()?.to_string(),
            namespace: labels
                .get(SYNC_NAMESPACE_LABEL)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// Adds the ownership labels to an object.
    pub fn label(&self, object: &mut Value) {
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        let labels = metadata
            .entry("labels")
            .or_insert_with(|| Value::Object(Default::default()));
        if !labels.is_object() {
            *labels = Value::Object(Default::default());
        }
        if let Some(labels) = labels.as_object_mut() {
            labels.insert(SYNC_NAME_LABEL.into(), Value::String(self.name.clone()));
            labels.insert(
                SYNC_NAMESPACE_LABEL.into(),
                Value::String(self.namespace.clone()),
            );
        }
    }
}

/// The API group of an `apiVersion` (`""` for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

/// Whether two inventory entries name the same object (the version may differ).
pub fn same_object(a: &InventoryEntry, b: &InventoryEntry) -> bool {
    group_of(&a.api_version) == group_of(&b.api_version)
        && a.kind == b.kind
        && a.namespace == b.namespace
        && a.name == b.name
}

/// `Kind namespace/name` or `Kind name`.
pub fn describe(entry: &InventoryEntry) -> String {
    if entry.namespace.is_empty() {
        format!("{} {}", entry.kind, entry.name)
    } else {
        format!("{} {}/{}", entry.kind, entry.namespace, entry.name)
    }
}

/// The value of an annotation.
pub(crate) fn annotation<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// `sigil.dev/reconcile: disabled`.
pub fn reconcile_disabled(object: &Value) -> bool {
    annotation(object, RECONCILE_ANNOTATION).is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
}

/// The `sigil.dev/prune` annotation: Some(true) for `"true"`, Some(false) for `"false"` or
/// `"disabled"`.
pub fn prune_annotation(object: &Value) -> Option<bool> {
    match annotation(object, PRUNE_ANNOTATION)?
        .to_ascii_lowercase()
        .as_str()
    {
        "true" | "enabled" => Some(true),
        "false" | "disabled" => Some(false),
        _ => None,
    }
}

/// The object without what every write changes by itself (resourceVersion, managedFields,
/// generation): two objects equal under this have the same content.
pub fn comparable(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
        metadata.remove("managedFields");
        metadata.remove("generation");
    }
    out
}

/// A digest of what a person could have changed: the object without its type, status, write
/// bookkeeping and the `ignored` fields (JSON pointers, see [`super::ignore`]). The self-heal
/// watch compares it to the one recorded after the last apply.
pub fn fingerprint(object: &Value, ignored: &[String]) -> [u8; 32] {
    match serde_json::from_value::<DynamicObject>(object.clone()) {
        Ok(object) => fingerprint_dynamic(&object, ignored),
        Err(_) => {
            let mut object = object.clone();
            super::pointer::remove_all(&mut object, ignored);
            Sha256::digest(serde_json::to_vec(&object).unwrap_or_default()).into()
        }
    }
}

/// [`fingerprint`] of a typed object (watch events arrive typed; both go through the same
/// serialization, so a response and an event of the same object hash alike).
pub fn fingerprint_dynamic(object: &DynamicObject, ignored: &[String]) -> [u8; 32] {
    let mut object = object.clone();
    object.types = None;
    object.metadata.managed_fields = None;
    object.metadata.resource_version = None;
    object.metadata.generation = None;
    if let Some(data) = object.data.as_object_mut() {
        data.remove("status");
    }
    if ignored.is_empty() {
        return Sha256::digest(serde_json::to_vec(&object).unwrap_or_default()).into();
    }
    let mut value = serde_json::to_value(&object).unwrap_or_default();
    super::pointer::remove_all(&mut value, ignored);
    Sha256::digest(serde_json::to_vec(&value).unwrap_or_default()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ownership_round_trips_through_labels() {
        let owner = Owner {
            namespace: "flux".into(),
            name: "apps".into(),
        };
        let mut object = json!({"metadata": {"name": "x"}});
        owner.label(&mut object);
        assert_eq!(Owner::of(&object), Some(owner.clone()));
        assert_eq!(
            owner.selector(),
            "sigil.dev/sync-name=apps,sigil.dev/sync-namespace=flux"
        );
    }

    #[test]
    fn comparisons_ignore_bookkeeping() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "1", "managedFields": []}, "data": {"k": "v"}, "status": {"a": 1}});
        let b = json!({"metadata": {"name": "x", "resourceVersion": "2"}, "data": {"k": "v"}, "status": {"a": 2}});
        assert_ne!(comparable(&a), comparable(&b));
        assert_eq!(fingerprint(&a, &[]), fingerprint(&b, &[]));
        let c = json!({"metadata": {"name": "x"}, "data": {"k": "edited"}});
        assert_ne!(fingerprint(&a, &[]), fingerprint(&c, &[]));
        let ignored = ["/data/k".to_string()];
        assert_eq!(fingerprint(&a, &ignored), fingerprint(&c, &ignored));
        let typed: DynamicObject = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "resourceVersion": "3", "creationTimestamp": "2025-01-02T03:04:05Z"}, "data": {"k": "v"}}))
            .expect("typed");
        let untyped = json!({"metadata": {"name": "x", "creationTimestamp": "2025-01-02T03:04:05Z"}, "data": {"k": "v"}});
        assert_eq!(fingerprint_dynamic(&typed, &[]), fingerprint(&untyped, &[]));
    }

    #[test]
    fn entries_match_across_versions() {
        let a = InventoryEntry {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: "n".into(),
            name: "d".into(),
        };
        let mut b = a.clone();
        b.api_version = "apps/v1beta2".into();
        assert!(same_object(&a, &b));
        assert_eq!(describe(&a), "Deployment n/d");
        assert_eq!(group_of("v1"), "");
    }

    #[test]
    fn annotations() {
        let o = json!({"metadata": {"annotations": {"sigil.dev/reconcile": "Disabled", "sigil.dev/prune": "true"}}});
        assert!(reconcile_disabled(&o));
        assert_eq!(prune_annotation(&o), Some(true));
        assert_eq!(prune_annotation(&json!({})), None);
    }
}
