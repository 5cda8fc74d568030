//! `status.history`: the last runs whose revision or result differed from the one before,
//! newest first, at most [`MAX_HISTORY`].

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::api::sync::HistoryEntry;

/// How many runs `status.history` keeps.
pub const MAX_HISTORY: usize = 5;

/// Records a run; a run equal in revision and result to the newest entry changes nothing, so
/// a steady Sync writes no status.
pub fn record(
    history: &mut Vec<HistoryEntry>,
    revision: &str,
    result: &str,
    took: Duration,
    now: Time,
) {
    if history
        .first()
        .is_some_and(|h| h.revision == revision && h.result == result)
    {
        return;
    }
    history.insert(
        0,
        HistoryEntry {
            revision: revision.to_string(),
            result: result.to_string(),
            duration: format!("{:.1}s", took.as_secs_f64()),
            time: now,
        },
    );
    history.truncate(MAX_HISTORY);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(second: i64) -> Time {
        Time(jiff::Timestamp::from_second(second).expect("time"))
    }

    #[test]
    fn keeps_the_last_five_changes_newest_first() {
        let mut history = Vec::new();
        record(
            &mut history,
            "r1",
            "ReconciliationSucceeded",
            Duration::from_millis(1500),
            at(1),
        );
        record(
            &mut history,
            "r1",
            "ReconciliationSucceeded",
            Duration::from_secs(9),
            at(2),
        );
        assert_eq!(history.len(), 1, "an unchanged run is not recorded");
        assert_eq!(history[0].duration, "1.5s");
        record(
            &mut history,
            "r2",
            "HealthCheckFailed",
            Duration::from_secs(3),
            at(3),
        );
        assert_eq!(history[0].revision, "r2");
        for i in 0..10 {
            record(
                &mut history,
                &format!("r{}", i + 3),
                "ReconciliationSucceeded",
                Duration::ZERO,
                at(4 + i),
            );
        }
        assert_eq!(history.len(), MAX_HISTORY);
        assert_eq!(history[0].revision, "r12");
        assert_eq!(history[4].revision, "r8");
    }
}
