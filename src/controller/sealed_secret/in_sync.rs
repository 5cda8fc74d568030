//! What each SealedSecret was last found in sync with: its generation, the keyring and the
//! resourceVersion of its Secret. The controller's own writes (the Secret it applied, its status
//! patch) come back as watch events; with this record they end in a lookup instead of opening
//! every value and reading the Secret again. Anything else — a new generation, a new keyring, a
//! Secret changed or deleted by someone else, an old check — still gets the full reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;

use crate::api::sealed_secret::SealedSecret;
use crate::crypto::keyring::Keyring;

struct Entry {
    generation: i64,
    /// Weak, so the record keeps no key material alive, yet the address cannot be reused.
    keyring: Weak<Keyring>,
    secret_version: String,
    checked: Instant,
}

#[derive(Default)]
pub struct InSync {
    entries: Mutex<HashMap<ObjectRef<SealedSecret>, Entry>>,
    /// Size after the last prune: entries of deleted objects are dropped once it doubled.
    pruned_at: Mutex<usize>,
}

/// Below this many entries nothing is pruned.
const PRUNE_FLOOR: usize = 1024;

impl InSync {
    /// Each update is one map write, so a poisoned lock still holds a consistent map.
    fn entries(&self) -> MutexGuard<'_, HashMap<ObjectRef<SealedSecret>, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `object` at `generation`, opened with `keyring`, matches its Secret at `secret_version`.
    pub fn record(
        &self,
        object: &ObjectRef<SealedSecret>,
        generation: Option<i64>,
        keyring: &Arc<Keyring>,
        secret_version: Option<String>,
    ) {
        let (Some(generation), Some(secret_version)) = (generation, secret_version) else {
            self.forget(object);
            return;
        };
        let entry = Entry {
            generation,
            keyring: Arc::downgrade(keyring),
            secret_version,
            checked: Instant::now(),
        };
        self.entries().insert(object.clone(), entry);
    }

    pub fn forget(&self, object: &ObjectRef<SealedSecret>) {
        self.entries().remove(object);
    }

    /// Whether `object` needs a reconcile for this event of its Secret: not when the event
    /// carries the version recorded in sync. Otherwise the record is dropped.
    pub fn secret_changed(
        &self,
        object: &ObjectRef<SealedSecret>,
        secret_version: Option<&str>,
    ) -> bool {
        let mut entries = self.entries();
        let unchanged = entries
            .get(object)
            .is_some_and(|e| Some(e.secret_version.as_str()) == secret_version);
        if !unchanged {
            entries.remove(object);
        }
        !unchanged
    }

    /// Whether `object` is known in sync at `generation` with `keyring`, checked within `max_age`.
    pub fn holds(
        &self,
        object: &ObjectRef<SealedSecret>,
        generation: Option<i64>,
        keyring: &Arc<Keyring>,
        max_age: Duration,
    ) -> bool {
        self.entries().get(object).is_some_and(|e| {
            Some(e.generation) == generation
                && Weak::ptr_eq(&e.keyring, &Arc::downgrade(keyring))
                && e.checked.elapsed() < max_age
        })
    }

    /// Drops the entries `keep` rejects once the map doubled since the last prune.
    pub fn prune(&self, keep: impl Fn(&ObjectRef<SealedSecret>) -> bool) {
        let mut pruned_at = self
            .pruned_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut entries = self.entries();
        if entries.len() >= PRUNE_FLOOR.max(*pruned_at * 2) {
            entries.retain(|object, _| keep(object));
            *pruned_at = entries.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str) -> ObjectRef<SealedSecret> {
        ObjectRef::new(name).within("default")
    }

    fn keyring() -> Arc<Keyring> {
        let identity = age::x25519::Identity::generate();
        let key = crate::crypto::keyring::SealingKey::new(identity, None, "test".into());
        Arc::new(Keyring::new(vec![key]))
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn holds_only_for_the_same_generation_keyring_and_recent_check() {
        let in_sync = InSync::default();
        let keys = keyring();
        let a = object("a");
        assert!(!in_sync.holds(&a, Some(1), &keys, HOUR));
        in_sync.record(&a, Some(1), &keys, Some("10".into()));
        assert!(in_sync.holds(&a, Some(1), &keys, HOUR));
        assert!(!in_sync.holds(&a, Some(2), &keys, HOUR), "a new generation");
        assert!(!in_sync.holds(&a, None, &keys, HOUR), "no generation");
        assert!(
            !in_sync.holds(&a, Some(1), &keyring(), HOUR),
            "another keyring"
        );
        assert!(
            !in_sync.holds(&a, Some(1), &keys, Duration::ZERO),
            "checked too long ago"
        );
        assert!(!in_sync.holds(&object("b"), Some(1), &keys, HOUR));
        in_sync.forget(&a);
        assert!(!in_sync.holds(&a, Some(1), &keys, HOUR));
    }

    #[test]
    fn a_secret_event_with_another_version_needs_a_reconcile_and_drops_the_record() {
        let in_sync = InSync::default();
        let keys = keyring();
        let a = object("a");
        assert!(in_sync.secret_changed(&a, Some("10")), "nothing recorded");
        in_sync.record(&a, Some(1), &keys, Some("10".into()));
        assert!(
            !in_sync.secret_changed(&a, Some("10")),
            "the write recorded"
        );
        assert!(in_sync.holds(&a, Some(1), &keys, HOUR));
        assert!(
            in_sync.secret_changed(&a, Some("11")),
            "someone else's write"
        );
        assert!(!in_sync.holds(&a, Some(1), &keys, HOUR));
        assert!(in_sync.secret_changed(&a, Some("11")));
        in_sync.record(&a, Some(1), &keys, None);
        assert!(
            !in_sync.holds(&a, Some(1), &keys, HOUR),
            "no version, no record"
        );
    }

    #[test]
    fn prune_drops_deleted_objects_once_the_map_doubled() {
        let in_sync = InSync::default();
        let keys = keyring();
        for i in 0..PRUNE_FLOOR {
            in_sync.record(&object(&i.to_string()), Some(1), &keys, Some("1".into()));
        }
        let even = |o: &ObjectRef<SealedSecret>| o.name.parse::<usize>().is_ok_and(|i| i % 2 == 0);
        in_sync.prune(even);
        assert_eq!(in_sync.len(), PRUNE_FLOOR / 2);
        in_sync.prune(|_| false);
        assert_eq!(in_sync.len(), PRUNE_FLOOR / 2, "not doubled yet");
    }
}
