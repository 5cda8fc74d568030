//! When a reconcile runs: [`Schedule`] says when one may be skipped, [`sleep_until`] waits for
//! the next due time.
//!
//! kube's controller reconciles on every change of the object,
//! including the controller's own status writes; the GitSource and Sync controllers only act
//! when their trigger (generation, requested-at annotation, source revision) changed or their
//! interval (or backoff after a failure) has passed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::api::duration::{self, InvalidDuration};
use crate::controller::backoff::Failures;

/// Sleeps until `deadline`, or forever when there is none (a `select!` arm that never fires).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

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
}

const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// The last run per object, and its failures in a row.
pub struct Schedule {
    runs: Mutex<HashMap<String, Run>>,
    failures: Failures<String>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self {
            runs: Mutex::new(HashMap::new()),
            failures: Failures::new(FIRST_RETRY, MAX_RETRY),
        }
    }
}

impl Schedule {
    fn runs(&self) -> MutexGuard<'_, HashMap<String, Run>> {
        self.runs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The retry delay after `failures` in a row: never longer than the interval itself.
    fn backoff(&self, failures: u32, interval: Duration) -> Duration {
        self.failures.delay(failures).min(interval.max(FIRST_RETRY))
    }

    /// How long to wait instead of running, when the last run had the same trigger and is recent.
    pub fn skip(&self, key: &str, trigger: &str, interval: Duration) -> Option<Duration> {
        let runs = self.runs();
        let run = runs.get(key).filter(|r| r.trigger == trigger)?;
        let due = match self.failures.count(&key.to_string()) {
            0 => interval,
            failures => self.backoff(failures, interval),
        };
        due.checked_sub(run.at.elapsed()).filter(|d| !d.is_zero())
    }

    /// Records a run; returns when the next one is due.
    pub fn record(&self, key: &str, trigger: &str, ok: bool, interval: Duration) -> Duration {
        self.runs().insert(
            key.to_string(),
            Run {
                trigger: trigger.to_string(),
                at: Instant::now(),
            },
        );
        let key = key.to_string();
        if ok {
            self.failures.succeeded(&key);
            interval
        } else {
            self.backoff(self.failures.failed(&key), interval)
        }
    }

    /// Forgets an object (deleted).
    pub fn forget(&self, key: &str) {
        self.runs().remove(key);
        self.failures.succeeded(&key.to_string());
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
            schedule.backoff(30, Duration::from_secs(60)),
            Duration::from_secs(60)
        );
    }
}
