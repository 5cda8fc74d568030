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

enum Record {
    InSync(Entry),
    /// An event showed the Secret at another version (`None`: deleted or unknown); `at` orders it
    /// against the reconciles running meanwhile.
    Changed {
        at: u64,
        version: Option<String>,
    },
}

#[derive(Default)]
struct Records {
    by_object: HashMap<ObjectRef<SealedSecret>, Record>,
    /// Ticks at every reconcile start and every change seen.
    clock: u64,
    /// Size after the last prune: entries of deleted objects are dropped once it doubled.
    pruned_at: usize,
}

#[derive(Default)]
pub struct InSync {
    records: Mutex<Records>,
}

/// When a reconcile started, so that what it saw is not recorded over a change seen since.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// Below this many entries nothing is pruned.
const PRUNE_FLOOR: usize = 1024;

impl InSync {
    /// Each update is one map write, so a poisoned lock still holds a consistent map.
    fn records(&self) -> MutexGuard<'_, Records> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Taken before a reconcile reads anything.
    pub fn ticket(&self) -> Ticket {
        let mut records = self.records();
        records.clock += 1;
        Ticket(records.clock)
    }

    /// `object` at `generation`, opened with `keyring`, matched its Secret at `secret_version`
    /// when the reconcile of `ticket` looked — unless the Secret was seen at another version since.
    pub fn record(
        &self,
        ticket: Ticket,
        object: &ObjectRef<SealedSecret>,
        generation: Option<i64>,
        keyring: &Arc<Keyring>,
        secret_version: Option<String>,
    ) {
        let mut records = self.records();
        let (Some(generation), Some(secret_version)) = (generation, secret_version) else {
            records.by_object.remove(object);
            return;
        };
        if let Some(Record::Changed { at, version }) = records.by_object.get(object)
            && *at > ticket.0
            && version.as_deref() != Some(secret_version.as_str())
        {
            return;
        }
        let entry = Entry {
            generation,
            keyring: Arc::downgrade(keyring),
            secret_version,
            checked: Instant::now(),
        };
        records
            .by_object
            .insert(object.clone(), Record::InSync(entry));
    }

    pub fn forget(&self, object: &ObjectRef<SealedSecret>) {
        self.records().by_object.remove(object);
    }

    /// Whether `object` needs a reconcile for this event of its Secret: not when the event
    /// carries the version recorded in sync.
    pub fn secret_changed(
        &self,
        object: &ObjectRef<SealedSecret>,
        secret_version: Option<&str>,
    ) -> bool {
        let mut records = self.records();
        if let Some(Record::InSync(e)) = records.by_object.get(object)
            && Some(e.secret_version.as_str()) == secret_version
        {
            return false;
        }
        records.clock += 1;
        let changed = Record::Changed {
            at: records.clock,
            version: secret_version.map(str::to_string),
        };
        records.by_object.insert(object.clone(), changed);
        true
    }

    /// Whether `object` is known in sync at `generation` with `keyring`, checked within `max_age`.
    pub fn holds(
        &self,
        object: &ObjectRef<SealedSecret>,
        generation: Option<i64>,
        keyring: &Arc<Keyring>,
        max_age: Duration,
    ) -> bool {
        match self.records().by_object.get(object) {
            Some(Record::InSync(e)) => {
                Some(e.generation) == generation
                    && Weak::ptr_eq(&e.keyring, &Arc::downgrade(keyring))
                    && e.checked.elapsed() < max_age
            }
            _ => false,
        }
    }

    /// Drops the entries `keep` rejects once the map doubled since the last prune.
    pub fn prune(&self, keep: impl Fn(&ObjectRef<SealedSecret>) -> bool) {
        let mut records = self.records();
        if records.by_object.len() >= PRUNE_FLOOR.max(records.pruned_at * 2) {
            records.by_object.retain(|object, _| keep(object));
            records.pruned_at = records.by_object.len();
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.records().by_object.len()
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
        in_sync.record(in_sync.ticket(), &a, Some(1), &keys, Some("10".into()));
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
        in_sync.record(in_sync.ticket(), &a, Some(1), &keys, Some("10".into()));
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
        in_sync.record(in_sync.ticket(), &a, Some(1), &keys, None);
        assert!(
            !in_sync.holds(&a, Some(1), &keys, HOUR),
            "no version, no record"
        );
    }

    #[test]
    fn a_change_seen_during_a_reconcile_is_not_recorded_over() {
        let in_sync = InSync::default();
        let keys = keyring();
        let a = object("a");
        // Someone edits the Secret (version 11) after the reconcile read version 10.
        let ticket = in_sync.ticket();
        assert!(in_sync.secret_changed(&a, Some("11")));
        in_sync.record(ticket, &a, Some(1), &keys, Some("10".into()));
        assert!(
            !in_sync.holds(&a, Some(1), &keys, HOUR),
            "the edit must be reconciled"
        );
        // The event of the reconcile's own write may arrive before its answer: still recorded.
        let ticket = in_sync.ticket();
        assert!(in_sync.secret_changed(&a, Some("12")));
        in_sync.record(ticket, &a, Some(1), &keys, Some("12".into()));
        assert!(in_sync.holds(&a, Some(1), &keys, HOUR));
        // A change seen before the reconcile started is what it read: recorded.
        assert!(in_sync.secret_changed(&a, Some("13")));
        in_sync.record(in_sync.ticket(), &a, Some(1), &keys, Some("13".into()));
        assert!(in_sync.holds(&a, Some(1), &keys, HOUR));
    }

    #[test]
    fn prune_drops_deleted_objects_once_the_map_doubled() {
        let in_sync = InSync::default();
        let keys = keyring();
        for i in 0..PRUNE_FLOOR {
            in_sync.record(
                in_sync.ticket(),
                &object(&i.to_string()),
                Some(1),
                &keys,
                Some("1".into()),
            );
        }
        let even = |o: &ObjectRef<SealedSecret>| o.name.parse::<usize>().is_ok_and(|i| i % 2 == 0);
        in_sync.prune(even);
        assert_eq!(in_sync.len(), PRUNE_FLOOR / 2);
        in_sync.prune(|_| false);
        assert_eq!(in_sync.len(), PRUNE_FLOOR / 2, "not doubled yet");
    }
}
