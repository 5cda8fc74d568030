//! Retry delays of failing reconciles, and the per-object failure tracker every controller uses.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// `first` after the first failure, doubling with each consecutive one up to `cap`.
pub fn exponential(first: Duration, cap: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(cap)
}

/// Consecutive failures per object and the retry delay they give: `first` after the first,
/// doubling up to `cap`, forever, until the object succeeds or is forgotten.
pub struct Failures<K> {
    first: Duration,
    cap: Duration,
    counts: Mutex<HashMap<K, u32>>,
}

impl<K: Eq + Hash + Clone> Failures<K> {
    pub fn new(first: Duration, cap: Duration) -> Self {
        Self {
            first,
            cap,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// The counts stay consistent even if a holder panicked (each update is one map write), so a
    /// poisoned lock is taken over instead of losing the backoff.
    fn counts(&self) -> MutexGuard<'_, HashMap<K, u32>> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records one more failure of `key`; returns how many happened in a row.
    pub fn failed(&self, key: &K) -> u32 {
        let mut counts = self.counts();
        let count = counts.entry(key.clone()).or_default();
        *count = count.saturating_add(1);
        *count
    }

    /// Records one more failure of `key`; returns how long to wait before retrying it.
    pub fn retry_after(&self, key: &K) -> Duration {
        self.delay(self.failed(key))
    }

    /// The retry delay after `failures` consecutive failures.
    pub fn delay(&self, failures: u32) -> Duration {
        exponential(self.first, self.cap, failures)
    }

    /// Consecutive failures of `key` so far.
    pub fn count(&self, key: &K) -> u32 {
        self.counts().get(key).copied().unwrap_or(0)
    }

    /// `key` succeeded (or was deleted): its next failure starts from `first` again.
    pub fn succeeded(&self, key: &K) {
        self.counts().remove(key);
    }

    /// Keeps only the objects `keep` accepts, once more than `limit` are tracked (entries of
    /// objects deleted while failing would otherwise stay forever).
    pub fn prune(&self, limit: usize, keep: impl Fn(&K) -> bool) {
        let mut counts = self.counts();
        if counts.len() >= limit {
            counts.retain(|key, _| keep(key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_a_cap() {
        let second = Duration::from_secs(1);
        let cap = Duration::from_secs(300);
        assert_eq!(exponential(second, cap, 0), second);
        assert_eq!(exponential(second, cap, 1), second);
        assert_eq!(exponential(second, cap, 2), Duration::from_secs(2));
        assert_eq!(exponential(second, cap, 6), Duration::from_secs(32));
        assert_eq!(exponential(second, cap, 10), cap);
        assert_eq!(exponential(second, cap, u32::MAX), cap);
    }

    #[test]
    fn failures_back_off_per_object_until_success() {
        let failures = Failures::new(Duration::from_secs(1), Duration::from_secs(8));
        assert_eq!(failures.retry_after(&"a"), Duration::from_secs(1));
        assert_eq!(failures.retry_after(&"a"), Duration::from_secs(2));
        assert_eq!(failures.retry_after(&"b"), Duration::from_secs(1));
        for _ in 0..10 {
            failures.failed(&"a");
        }
        assert_eq!(failures.retry_after(&"a"), Duration::from_secs(8));
        assert_eq!(failures.count(&"a"), 13);
        failures.succeeded(&"a");
        assert_eq!(failures.count(&"a"), 0);
        assert_eq!(failures.retry_after(&"a"), Duration::from_secs(1));
    }

    #[test]
    fn prune_drops_what_is_not_kept_past_the_limit() {
        let failures = Failures::new(Duration::from_secs(1), Duration::from_secs(8));
        failures.failed(&1);
        failures.failed(&2);
        failures.prune(3, |k| *k == 1);
        assert_eq!(failures.count(&2), 1, "below the limit nothing is dropped");
        failures.failed(&3);
        failures.prune(3, |k| *k == 1);
        assert_eq!(
            (failures.count(&1), failures.count(&2), failures.count(&3)),
            (1, 0, 0)
        );
    }

    #[test]
    fn a_poisoned_lock_keeps_the_counts() {
        let failures = std::sync::Arc::new(Failures::new(
            Duration::from_secs(1),
            Duration::from_secs(8),
        ));
        failures.failed(&"a");
        let holder = failures.clone();
        let _ = std::thread::spawn(move || {
            let _guard = holder.counts();
            panic!("poison the lock");
        })
        .join();
        assert_eq!(failures.retry_after(&"a"), Duration::from_secs(2));
    }
}
