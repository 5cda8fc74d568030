//! The object store: objects by resource and (namespace, name), one global
//! resourceVersion counter (like etcd's revision), a bounded history of changes
//! for watches and consistent paged lists, and a broadcast channel for watchers.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
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

type Key = (String, String);
type Objects = BTreeMap<Key, Arc<Value>>;

/// A resource's objects at an earlier resourceVersion (see `Store::snapshot_at`).
pub struct Snapshot<'a> {
    current: Option<&'a Objects>,
    /// What differs at the snapshot's resourceVersion: the object then, or `None` if it did not exist.
    undo: BTreeMap<Key, Option<Arc<Value>>>,
}

impl Snapshot<'_> {
    /// The objects in (namespace, name) order, from `lower` on.
    pub fn range<'s>(
        &'s self,
        lower: Bound<&Key>,
    ) -> impl Iterator<Item = (&'s Key, &'s Arc<Value>)> + 's {
        let mut current = self
            .current
            .map(|objs| objs.range::<Key, _>((lower, Bound::Unbounded)))
            .into_iter()
            .flatten()
            .peekable();
        let mut undo = self
            .undo
            .range::<Key, _>((lower, Bound::Unbounded))
            .peekable();
        std::iter::from_fn(move || {
            loop {
                let undo_first = match (current.peek(), undo.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((c, _)), Some((u, _))) => u <= c,
                };
                if !undo_first {
                    return current.next();
                }
                let (key, then) = undo.next()?;
                if current.peek().is_some_and(|(c, _)| *c == key) {
                    current.next();
                }
                if let Some(obj) = then {
                    return Some((key, obj));
                }
            }
        })
    }
}

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

    /// The objects of a resource as they were at `rv`: the current objects with the later
    /// changes undone, as a view that costs the changes since `rv`, not the objects stored.
    pub fn snapshot_at(&self, storage: &StorageKey, rv: u64) -> Result<Snapshot<'_>, Compacted> {
        let mut undo = BTreeMap::new();
        if rv < self.rv {
            // Newest first, so the earliest change after `rv` (whose `old` is the state at `rv`) wins.
            for change in self.changes_since(rv)?.iter().rev() {
                if &change.storage != storage {
                    continue;
                }
                let before = match change.kind {
                    EventType::Added => None,
                    EventType::Modified | EventType::Deleted => change.old.clone(),
                };
                undo.insert((change.namespace.clone(), change.name.clone()), before);
            }
        }
        Ok(Snapshot {
            current: self.objects.get(storage),
            undo,
        })
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
        let then: Vec<_> = snap.range(Bound::Unbounded).collect();
        assert_eq!(then.len(), 1);
        assert_eq!(then[0].0.1, "a");
        assert_eq!(then[0].1["data"]["v"], "1");
        assert_eq!(s.list(&key(), Some("default")).len(), 1);
    }

    #[test]
    fn snapshots_equal_the_objects_as_they_were() {
        let mut s = Store::new(1000, 16);
        let names = ["a", "b", "c", "d", "e"];
        let mut states = Vec::new();
        for step in 0..60usize {
            let name = names[(step * 7 + step / 5) % names.len()];
            let exists = s.get(&key(), "default", name).is_some();
            match (exists, step % 3) {
                (false, _) => {
                    s.create(&key(), cm(name, &step.to_string()));
                }
                (true, 0) => {
                    s.remove(&key(), "default", name);
                }
                (true, _) => {
                    s.update(&key(), cm(name, &step.to_string()));
                }
            }
            let now: Vec<(String, Value)> = s
                .list(&key(), None)
                .iter()
                .map(|o| (object::name(o).to_string(), o["data"]["v"].clone()))
                .collect();
            states.push((s.current_rv(), now));
        }
        for (rv, then) in &states {
            let snap = s.snapshot_at(&key(), *rv).expect("in history");
            let seen: Vec<(String, Value)> = snap
                .range(Bound::Unbounded)
                .map(|(k, o)| (k.1.clone(), o["data"]["v"].clone()))
                .collect();
            assert_eq!(&seen, then, "at resourceVersion {rv}");
            let after = ("default".to_string(), "b".to_string());
            let rest: Vec<&str> = snap
                .range(Bound::Excluded(&after))
                .map(|(k, _)| k.1.as_str())
                .collect();
            let want: Vec<&str> = then
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| *n > "b")
                .collect();
            assert_eq!(rest, want, "after b at resourceVersion {rv}");
        }
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
