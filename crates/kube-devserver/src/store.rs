//! The object store: objects by resource and (namespace, name), one global
//! resourceVersion counter (like etcd's revision), a bounded history of changes
//! for watches and consistent paged lists, and a broadcast channel for watchers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use super::object;
use super::owner_index::{ObjectKey, OwnerIndex};
use super::registry::StorageKey;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

/// One committed change.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub kind: EventType,
    pub storage: StorageKey,
    pub namespace: String,
    pub name: String,
    /// The object after the change (for deletes: its last state, with the deletion's resourceVersion).
    pub object: Arc<Value>,
    /// The object before the change (modifications and deletes).
    pub old: Option<Arc<Value>>,
}

/// The resourceVersion asked for is older than the history kept.
#[derive(Debug, Clone, Copy)]
pub struct Compacted {
    pub oldest: u64,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

pub struct Store {
    rv: u64,
    objects: BTreeMap<StorageKey, Objects>,
    history: VecDeque<Arc<Change>>,
    history_cap: usize,
    /// Every change with rv <= compacted may be missing from `history`.
    compacted: u64,
    tx: broadcast::Sender<Arc<Change>>,
    owners: OwnerIndex,
}

impl Store {
    pub fn new(history_cap: usize, broadcast_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(broadcast_cap.max(16));
        Self {
            rv: 1,
            objects: BTreeMap::new(),
            history: VecDeque::new(),
            history_cap: history_cap.max(1),
            compacted: 1,
            tx,
            owners: OwnerIndex::default(),
        }
    }

    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, storage: &StorageKey, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(storage)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a resource, in (namespace, name) order; `namespace` narrows to one namespace.
    pub fn list(&self, storage: &StorageKey, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(objs) = self.objects.get(storage) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) => objs
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => objs.values().cloned().collect(),
        }
    }

    /// Every stored object with its resource, borrowed.
    pub fn iter(&self) -> impl Iterator<Item = (&StorageKey, &Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(k, objs)| objs.values().map(move |v| (k, v)))
    }

    /// The object with this uid, if one is stored.
    pub fn by_uid(&self, uid: &str) -> Option<(StorageKey, Arc<Value>)> {
        let (storage, namespace, name) = self.owners.by_uid(uid)?;
        let obj = self.get(storage, namespace, name)?;
        Some((storage.clone(), obj))
    }

    /// The stored objects naming `uid` in their ownerReferences.
    pub fn dependents_of(&self, uid: &str) -> Vec<(StorageKey, Arc<Value>)> {
        self.owners
            .dependents_of(uid)
            .filter_map(|(storage, namespace, name)| {
                Some((storage.clone(), self.get(storage, namespace, name)?))
            })
            .collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.tx.subscribe()
    }

    /// Changes after `rv`, or `Compacted` when some may be missing.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, Compacted> {
        if rv < self.compacted {
            return Err(Compacted {
                oldest: self.compacted,
            });
        }
        // The history is in resourceVersion order.
        let first = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(first..).cloned().collect())
    }

    /// The objects of a resource as they were at `rv`, rebuilt by undoing later changes.
    pub fn snapshot_at(&self, storage: &StorageKey, rv: u64) -> Result<Objects, Compacted> {
        let mut objs = self.objects.get(storage).cloned().unwrap_or_default();
        if rv >= self.rv {
            return Ok(objs);
        }
        let changes = self.changes_since(rv)?;
        for change in changes.iter().rev().filter(|c| &c.storage == storage) {
            let key = (change.namespace.clone(), change.name.clone());
            match (&change.kind, &change.old) {
                (EventType::Added, _) => {
                    objs.remove(&key);
                }
                (_, Some(old)) => {
                    objs.insert(key, old.clone());
                }
                (_, None) => {}
            }
        }
        Ok(objs)
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_cap {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        // No receivers is fine; lagging receivers find out on their next recv.
        let _ = self.tx.send(change);
    }

    /// Stores a new object, stamping its resourceVersion. The caller checked it does not exist.
    pub fn create(&mut self, storage: &StorageKey, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        object::meta_mut(&mut obj).insert("resourceVersion".into(), rv.to_string().into());
        let ns = object::namespace(&obj).to_string();
        let name = object::name(&obj).to_string();
        let obj = Arc::new(obj);
        self.owners
            .insert(&(storage.clone(), ns.clone(), name.clone()), &obj);
        self.objects
            .entry(storage.clone())
            .or_default()
            .insert((ns.clone(), name.clone()), obj.clone());
        self.record(Change {
            rv,
            kind: EventType::Added,
            storage: storage.clone(),
            namespace: ns,
            name,
            object: obj.clone(),
            old: None,
        });
        obj
    }

    /// Replaces an existing object, stamping a new resourceVersion.
    pub fn update(&mut self, storage: &StorageKey, mut obj: Value) -> Arc<Value> {
        let rv = self.next_rv();
        object::meta_mut(&mut obj).insert("resourceVersion".into(), rv.to_string().into());
        let ns = object::namespace(&obj).to_string();
        let name = object::name(&obj).to_string();
        let obj = Arc::new(obj);
        let old = self
            .objects
            .entry(storage.clone())
            .or_default()
            .insert((ns.clone(), name.clone()), obj.clone());
        let key: ObjectKey = (storage.clone(), ns.clone(), name.clone());
        if let Some(old) = &old {
            self.owners.remove(&key, old);
        }
        self.owners.insert(&key, &obj);
        self.record(Change {
            rv,
            kind: EventType::Modified,
            storage: storage.clone(),
            namespace: ns,
            name,
            object: obj.clone(),
            old,
        });
        obj
    }

    /// Removes an object; the returned last state carries the deletion's resourceVersion.
    pub fn remove(
        &mut self,
        storage: &StorageKey,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<Value>> {
        let old = self
            .objects
            .get_mut(storage)?
            .remove(&(namespace.to_string(), name.to_string()))?;
        self.owners.remove(
            &(storage.clone(), namespace.to_string(), name.to_string()),
            &old,
        );
        let rv = self.next_rv();
        let mut last = (*old).clone();
        object::meta_mut(&mut last).insert("resourceVersion".into(), rv.to_string().into());
        let last = Arc::new(last);
        self.record(Change {
            rv,
            kind: EventType::Deleted,
            storage: storage.clone(),
            namespace: namespace.to_string(),
            name: name.to_string(),
            object: last.clone(),
            old: Some(old),
        });
        Some(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> StorageKey {
        (String::new(), "configmaps".into())
    }

    fn cm(name: &str, v: &str) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")}, "data": {"v": v}})
    }

    #[test]
    fn snapshots_undo_later_changes() {
        let mut s = Store::new(100, 16);
        s.create(&key(), cm("a", "1"));
        let rv = s.current_rv();
        s.update(&key(), cm("a", "2"));
        s.create(&key(), cm("b", "1"));
        s.remove(&key(), "default", "a");
        let snap = s.snapshot_at(&key(), rv).expect("in history");
        assert_eq!(snap.len(), 1);
        let a = snap
            .get(&("default".into(), "a".into()))
            .expect("a existed");
        assert_eq!(a["data"]["v"], "1");
        assert_eq!(s.list(&key(), Some("default")).len(), 1);
    }

    #[test]
    fn history_is_bounded() {
        let mut s = Store::new(2, 16);
        for i in 0..5 {
            s.create(&key(), cm(&format!("c{i}"), "x"));
        }
        assert!(s.changes_since(2).is_err());
        assert_eq!(s.changes_since(s.current_rv() - 2).expect("kept").len(), 2);
    }
}
