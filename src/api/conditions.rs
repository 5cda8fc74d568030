//! Standard Kubernetes conditions (`status.conditions`) shared by every kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition every sigil kind reports.
pub const READY: &str = "Ready";

/// What a reconcile concluded, turned into a condition by [`set_condition`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConditionUpdate<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

impl<'a> ConditionUpdate<'a> {
    /// `Ready=True` with a reason.
    pub fn ready(reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_: READY,
            status: true,
            reason,
            message: message.into(),
        }
    }

    /// `Ready=False` with a reason.
    pub fn not_ready(reason: &'a str, message: impl Into<String>) -> Self {
        Self {
            type_: READY,
            status: false,
            reason,
            message: message.into(),
        }
    }
}

fn status_str(status: bool) -> &'static str {
    if status { "True" } else { "False" }
}

/// The current time, as conditions record it.
pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

/// Sets a condition, keeping `lastTransitionTime` unless the status flips.
/// Returns true when anything visible changed (status, reason, message or generation),
/// which is when an Event is worth emitting.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate<'_>,
    generation: Option<i64>,
    now: Time,
) -> bool {
    let status = status_str(update.status);
    if let Some(existing) = conditions.iter_mut().find(|c| c.type_ == update.type_) {
        let changed = existing.status != status
            || existing.reason != update.reason
            || existing.message != update.message
            || existing.observed_generation != generation;
        if existing.status != status {
            existing.last_transition_time = now;
        }
        existing.status = status.to_string();
        existing.reason = update.reason.to_string();
        existing.message = update.message;
        existing.observed_generation = generation;
        return changed;
    }
    conditions.push(Condition {
        type_: update.type_.to_string(),
        status: status.to_string(),
        reason: update.reason.to_string(),
        message: update.message,
        observed_generation: generation,
        last_transition_time: now,
    });
    true
}

/// The condition of a type, if present.
pub fn find<'c>(conditions: &'c [Condition], type_: &str) -> Option<&'c Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether the condition of this type is `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == "True")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(jiff::Timestamp::from_second(seconds).expect("valid time"))
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            ConditionUpdate::ready("Unsealed", "ok"),
            Some(1),
            at(10)
        ));
        assert!(!set_condition(
            &mut conditions,
            ConditionUpdate::ready("Unsealed", "ok"),
            Some(1),
            at(20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert!(set_condition(
            &mut conditions,
            ConditionUpdate::ready("Unsealed", "ok"),
            Some(2),
            at(30)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert!(set_condition(
            &mut conditions,
            ConditionUpdate::not_ready("DecryptFailed", "bad"),
            Some(2),
            at(40)
        ));
        assert_eq!(conditions[0].last_transition_time, at(40));
        assert_eq!(conditions[0].status, "False");
        assert_eq!(conditions.len(), 1);
        assert!(!is_true(&conditions, READY));
    }
}
