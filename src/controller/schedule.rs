//! When a reconcile may be skipped. kube's controller reconciles on every change of the object,
//! including the controller's own status writes; the GitSource and Sync controllers only act
//! when their trigger (generation, requested-at annotation, source revision) changed or their
//! interval (or backoff after a failure) has passed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::duration::{self, InvalidDuration};
use crate::controller::backoff::exponential;

/// The shortest interval honoured: `0` would poll in a loop.
const MIN_INTERVAL: Duration = Duration::from_secs(1);

/// `spec.interval` (at least [`MIN_INTERVAL`]), or the default.
pub fn interval(text: Option<&str>, default: Duration) -> Result<Duration, InvalidDuration> {
    match text {
        None => Ok(default),
        Some(text) => Ok(duration::parse(text)?.max(MIN_INTERVAL)),
    }
}

struct Run {
    trigger: String,
    at: Instant,
    failures: u32,
}

/// The last run per object.
#[derive(Default)]
pub struct Schedule {
    runs: Mutex<HashMap<String, Run>>,
}

const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

fn backoff(failures: u32, interval: Duration) -> Duration {
    exponential(FIRST_RETRY, MAX_RETRY, failures).min(interval.max(FIRST_RETRY))
}

impl Schedule {
    /// How long to wait instead of running, when the last run had the same trigger and is recent.
    pub fn skip(&self, key: &str, trigger: &str, interval: Duration) -> Option<Duration> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let run = runs.get(key).filter(|r| r.trigger == trigger)?;
        let due = if run.failures == 0 {
            interval
        } else {
            backoff(run.failures, interval)
        };
        due.checked_sub(run.at.elapsed()).filter(|d| !d.is_zero())
    }

    /// Records a run; returns when the next one is due.
    pub fn record(&self, key: &str, trigger: &str, ok: bool, interval: Duration) -> Duration {
        let mut runs = self.runs.lock().unwrap_or_else(|e| e.into_inner());
        let failures = match runs.get(key) {
            Some(run) if !ok => run.failures + 1,
            None if !ok => 1,
            _ => 0,
        };
        runs.insert(
            key.to_string(),
            Run {
                trigger: trigger.to_string(),
                at: Instant::now(),
                failures,
            },
        );
        if ok {
            interval
        } else {
            backoff(failures, interval)
        }
    }

    /// Forgets an object (deleted).
    pub fn forget(&self, key: &str) {
        self.runs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        let default = Duration::from_secs(60);
        assert_eq!(interval(None, default), Ok(default));
        assert_eq!(interval(Some("5s"), default), Ok(Duration::from_secs(5)));
        assert_eq!(interval(Some("0"), default), Ok(MIN_INTERVAL));
        assert!(interval(Some("soon"), default).is_err());
    }

    #[test]
    fn skips_only_the_same_trigger_within_the_interval() {
        let schedule = Schedule::default();
        let minute = Duration::from_secs(60);
        assert_eq!(schedule.skip("a", "1", minute), None);
        assert_eq!(schedule.record("a", "1", true, minute), minute);
        assert!(schedule.skip("a", "1", minute).is_some());
        assert_eq!(
            schedule.skip("a", "2", minute),
            None,
            "a new trigger runs at once"
        );
        assert_eq!(schedule.skip("a", "1", Duration::ZERO), None);
    }

    #[test]
    fn failures_back_off() {
        let schedule = Schedule::default();
        let hour = Duration::from_secs(3600);
        assert_eq!(
            schedule.record("a", "1", false, hour),
            Duration::from_secs(5)
        );
        assert_eq!(
            schedule.record("a", "1", false, hour),
            Duration::from_secs(10)
        );
        assert_eq!(
            schedule.record("a", "1", false, hour),
            Duration::from_secs(20)
        );
        assert!(schedule.skip("a", "1", hour).is_some());
        assert_eq!(schedule.record("a", "1", true, hour), hour);
        assert_eq!(
            backoff(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
