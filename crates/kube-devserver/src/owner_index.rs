//! The two lookups garbage collection needs without scanning every object, kept in step with
//! the store: an object by its uid, and the dependents naming a uid in their ownerReferences
//! (whether or not that owner exists — a dependent of a missing owner is what GC looks for).

use std::collections::{BTreeSet, HashMap};

use serde_json::Value;

use super::object;
use super::registry::StorageKey;

/// Where an object is stored: its resource, namespace and name.
pub type ObjectKey = (StorageKey, String, String);

#[derive(Default)]
pub struct OwnerIndex {
    by_uid: HashMap<String, ObjectKey>,
    dependents: HashMap<String, BTreeSet<ObjectKey>>,
}

impl OwnerIndex {
    pub fn insert(&mut self, key: &ObjectKey, obj: &Value) {
        let uid = object::uid(obj);
        if !uid.is_empty() {
            self.by_uid.insert(uid.to_string(), key.clone());
        }
        for owner in owner_uids(obj) {
            self.dependents
                .entry(owner.to_string())
                .or_default()
                .insert(key.clone());
        }
    }

    pub fn remove(&mut self, key: &ObjectKey, obj: &Value) {
        let uid = object::uid(obj);
        if self.by_uid.get(uid) == Some(key) {
            self.by_uid.remove(uid);
        }
        for owner in owner_uids(obj) {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(key);
                if set.is_empty() {
                    self.dependents.remove(owner);
                }
            }
        }
    }

    pub fn by_uid(&self, uid: &str) -> Option<&ObjectKey> {
        self.by_uid.get(uid)
    }

    pub fn dependents_of(&self, uid: &str) -> impl Iterator<Item = &ObjectKey> {
        self.dependents.get(uid).into_iter().flatten()
    }
}

/// The uids an object's ownerReferences name.
pub fn owner_uids(obj: &Value) -> impl Iterator<Item = &str> {
    object::meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(name: &str) -> ObjectKey {
        (
            (String::new(), "configmaps".into()),
            "default".into(),
            name.into(),
        )
    }

    fn owned(name: &str, uid: &str, owners: &[&str]) -> Value {
        let refs: Vec<Value> = owners.iter().map(|o| json!({"uid": o})).collect();
        json!({"metadata": {"name": name, "uid": uid, "ownerReferences": refs}})
    }

    #[test]
    fn follows_inserts_and_removals() {
        let mut index = OwnerIndex::default();
        index.insert(&key("a"), &owned("a", "ua", &[]));
        index.insert(&key("b"), &owned("b", "ub", &["ua", "gone"]));
        assert_eq!(index.by_uid("ub"), Some(&key("b")));
        assert_eq!(index.dependents_of("gone").collect::<Vec<_>>(), [&key("b")]);
        assert_eq!(index.dependents_of("ua").count(), 1);

        // An update is a removal of the old state and an insert of the new.
        index.remove(&key("b"), &owned("b", "ub", &["ua", "gone"]));
        index.insert(&key("b"), &owned("b", "ub", &["ua"]));
        assert_eq!(index.dependents_of("gone").count(), 0);

        index.remove(&key("b"), &owned("b", "ub", &["ua"]));
        assert_eq!(index.by_uid("ub"), None);
        assert_eq!(index.dependents_of("ua").count(), 0);
        assert!(index.dependents.is_empty());
    }
}
