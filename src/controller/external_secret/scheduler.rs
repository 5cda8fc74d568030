//! When each ExternalSecret is synced next.
//!
//! Two lanes: the **fast lane** holds new and changed objects (and manual
//! refreshes) and is always served first; the **timed queue** holds periodic
//! refreshes by due time. An object is never worked on twice at once: events
//! arriving while it is in flight are remembered and served right after.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

/// An ExternalSecret by namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EsKey {
    pub namespace: String,
    pub name: String,
}

impl EsKey {
    pub fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for EsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// Which lane a piece of work came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    Fast,
    Periodic,
}

/// One ExternalSecret to sync now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    pub key: EsKey,
    pub lane: Lane,
    /// Read from the backend even if this round already has a fresh value (manual refresh).
    pub force_fresh: bool,
}

#[derive(Default)]
pub struct Scheduler {
    timed: BTreeSet<(Instant, EsKey)>,
    due_at: HashMap<EsKey, Instant>,
    fast: VecDeque<EsKey>,
    fast_force: HashMap<EsKey, bool>,
    in_flight: HashSet<EsKey>,
    /// Fast-lane requests that arrived while the object was in flight.
    after_flight: HashMap<EsKey, bool>,
}

impl Scheduler {
    /// Puts an object in the fast lane (merging `force_fresh` with a pending request).
    pub fn fast(&mut self, key: EsKey, force_fresh: bool) {
        if self.in_flight.contains(&key) {
            let pending = self.after_flight.entry(key).or_default();
            *pending |= force_fresh;
            return;
        }
        match self.fast_force.get_mut(&key) {
            Some(pending) => *pending |= force_fresh,
            None => {
                self.fast_force.insert(key.clone(), force_fresh);
                self.fast.push_back(key);
            }
        }
    }

    /// Schedules a periodic refresh, replacing any earlier one.
    pub fn at(&mut self, key: EsKey, when: Instant) {
        if let Some(previous) = self.due_at.insert(key.clone(), when) {
            self.timed.remove(&(previous, key.clone()));
        }
        self.timed.insert((when, key));
    }

    /// Forgets an object (deleted, or no longer ours).
    pub fn remove(&mut self, key: &EsKey) {
        if let Some(previous) = self.due_at.remove(key) {
            self.timed.remove(&(previous, key.clone()));
        }
        if self.fast_force.remove(key).is_some() {
            self.fast.retain(|k| k != key);
        }
        self.after_flight.remove(key);
    }

    /// When the loop should look again: now when the fast lane has work.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        if !self.fast.is_empty() {
            return Some(now);
        }
        self.timed
            .iter()
            .find(|(_, key)| !self.in_flight.contains(key))
            .map(|(when, _)| *when)
    }

    pub fn has_fast_work(&self) -> bool {
        !self.fast.is_empty()
    }

    /// Takes up to `limit` objects: the fast lane first, then what is due by `now`.
    pub fn take(&mut self, now: Instant, limit: usize) -> Vec<Work> {
        let mut work = Vec::new();
        while work.len() < limit {
            let Some(key) = self.fast.pop_front() else {
                break;
            };
            let force_fresh = self.fast_force.remove(&key).unwrap_or(false);
            if let Some(previous) = self.due_at.remove(&key) {
                self.timed.remove(&(previous, key.clone()));
            }
            self.in_flight.insert(key.clone());
            work.push(Work {
                key,
                lane: Lane::Fast,
                force_fresh,
            });
        }
        while work.len() < limit {
            let Some((when, key)) = self
                .timed
                .iter()
                .find(|(_, key)| !self.in_flight.contains(key))
                .cloned()
            else {
                break;
            };
            if when > now {
                break;
            }
            self.timed.remove(&(when, key.clone()));
            self.due_at.remove(&key);
            self.in_flight.insert(key.clone());
            work.push(Work {
                key,
                lane: Lane::Periodic,
                force_fresh: false,
            });
        }
        work
    }

    /// Objects due after `now` but within `horizon`, with their due times.
    pub fn upcoming(&self, now: Instant, horizon: Duration) -> Vec<(EsKey, Instant)> {
        self.timed
            .range((now, EsKey::new("", ""))..)
            .take_while(|(when, _)| *when <= now + horizon)
            .filter(|(_, key)| !self.in_flight.contains(key))
            .map(|(when, key)| (key.clone(), *when))
            .collect()
    }

    /// Marks work finished; `next` is its next periodic refresh (if any).
    pub fn done(&mut self, key: EsKey, next: Option<Instant>) {
        self.in_flight.remove(&key);
        if let Some(force_fresh) = self.after_flight.remove(&key) {
            self.fast(key, force_fresh);
            return;
        }
        if let Some(when) = next {
            self.at(key, when);
        }
    }

    /// Objects tracked (scheduled, queued or in flight).
    pub fn len(&self) -> usize {
        let mut keys: HashSet<&EsKey> = self.due_at.keys().collect();
        keys.extend(self.fast_force.keys());
        keys.extend(self.in_flight.iter());
        keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> EsKey {
        EsKey::new("ns", name)
    }

    #[test]
    fn fast_lane_goes_before_due_periodic_work() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.at(key("old"), now - Duration::from_secs(1));
        s.fast(key("new"), false);
        let work = s.take(now, 10);
        assert_eq!(work[0].key, key("new"));
        assert_eq!(work[0].lane, Lane::Fast);
        assert_eq!(work[1].key, key("old"));
        assert_eq!(work[1].lane, Lane::Periodic);
    }

    #[test]
    fn nothing_runs_before_it_is_due() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.at(key("later"), now + Duration::from_secs(5));
        assert!(s.take(now, 10).is_empty());
        assert_eq!(s.next_wake(now), Some(now + Duration::from_secs(5)));
        assert_eq!(s.take(now + Duration::from_secs(5), 10).len(), 1);
    }

    #[test]
    fn events_during_flight_run_right_after() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.fast(key("a"), false);
        assert_eq!(s.take(now, 10).len(), 1);
        s.fast(key("a"), true);
        assert!(s.take(now, 10).is_empty(), "never twice at once");
        s.done(key("a"), Some(now + Duration::from_secs(60)));
        let work = s.take(now, 10);
        assert_eq!(work.len(), 1);
        assert!(work[0].force_fresh);
    }

    #[test]
    fn duplicates_merge_and_removal_forgets() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.fast(key("a"), false);
        s.fast(key("a"), true);
        s.at(key("b"), now);
        s.at(key("b"), now + Duration::from_secs(10));
        assert_eq!(s.len(), 2);
        let work = s.take(now, 10);
        assert_eq!(work.len(), 1, "b moved to later");
        assert!(work[0].force_fresh);
        s.remove(&key("b"));
        s.done(key("a"), None);
        assert!(s.is_empty());
    }

    #[test]
    fn upcoming_lists_what_is_due_soon() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        s.at(key("soon"), now + Duration::from_millis(300));
        s.at(key("late"), now + Duration::from_secs(30));
        let soon: Vec<EsKey> = s
            .upcoming(now, Duration::from_secs(1))
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(soon, [key("soon")]);
    }

    #[test]
    fn take_respects_the_limit() {
        let now = Instant::now();
        let mut s = Scheduler::default();
        for i in 0..5 {
            s.fast(key(&i.to_string()), false);
        }
        assert_eq!(s.take(now, 3).len(), 3);
        assert_eq!(s.take(now, 3).len(), 2);
    }
}
