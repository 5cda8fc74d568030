//! An ExternalSecret's status and Events.
//!
//! The status is written only when something in it changes. `refreshTime`
//! alone is refreshed at most every [`REFRESH_TIME_PERIOD`] (or the refresh
//! interval, if longer), so short intervals do not turn every refresh into an
//! API write. One Event per change: when the Secret is written, or when the
//! `Ready` condition changes.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::runtime::events::{Event, EventType};

use super::super::Context;
use crate::api::conditions::{self, ConditionUpdate};
use crate::api::external_secret::{ExternalSecret, ExternalSecretStatus};
use crate::controller::status::{patch_status, publish as publish_event};

/// `Ready` reasons.
pub const SECRET_SYNCED: &str = "SecretSynced";
pub const SECRET_SYNC_ERROR: &str = "SecretSyncError";
pub const SECRET_DELETED: &str = "SecretDeleted";
pub const SECRET_CONFLICT: &str = "SecretConflict";
pub const STORE_NOT_FOUND: &str = "StoreNotFound";
pub const STORE_NOT_READY: &str = "StoreNotReady";
pub const STORE_NOT_ALLOWED: &str = "StoreNotAllowed";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const GENERATOR_NOT_FOUND: &str = "GeneratorNotFound";

/// Least time between two writes of `refreshTime` alone.
pub const REFRESH_TIME_PERIOD: Duration = Duration::from_secs(60);

/// What happened to the Secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
    Deleted,
}

/// The outcome of one sync, as the status and Events show it.
#[derive(Clone, Debug)]
pub struct Verdict {
    pub ready: bool,
    pub reason: &'static str,
    pub message: String,
    /// Values were read from the store.
    pub refreshed: bool,
    /// resourceVersion of the Secret as it now is.
    pub synced_resource_version: Option<String>,
    /// The Secret was written; the note of its Event.
    pub written: Option<(Written, String)>,
}

impl Verdict {
    pub fn ready(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ready: true,
            reason,
            message: message.into(),
            refreshed: true,
            synced_resource_version: None,
            written: None,
        }
    }

    pub fn failed(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            ready: false,
            reason,
            message: message.into(),
            refreshed: false,
            synced_resource_version: None,
            written: None,
        }
    }
}

/// The status a verdict leads to.
pub fn next_status(
    es: &ExternalSecret,
    verdict: &Verdict,
    interval: Duration,
    now: jiff::Timestamp,
) -> (ExternalSecretStatus, bool) {
    let mut status = es.status.clone().unwrap_or_default();
    let generation = es.meta().generation;
    let update = if verdict.ready {
        ConditionUpdate::ready(verdict.reason, verdict.message.clone())
    } else {
        ConditionUpdate::not_ready(verdict.reason, verdict.message.clone())
    };
    let condition_changed =
        conditions::set_condition(&mut status.conditions, update, generation, Time(now));
    status.observed_generation = generation;
    if let Some(rv) = &verdict.synced_resource_version {
        status.synced_resource_version = Some(rv.clone());
    }
    if verdict.refreshed {
        let period = interval.max(REFRESH_TIME_PERIOD);
        let stale = status
            .refresh_time
            .as_ref()
            .is_none_or(|t| now.duration_since(t.0).unsigned_abs() >= period);
        if condition_changed || verdict.written.is_some() || stale {
            status.refresh_time = Some(Time(now));
        }
    }
    (status, condition_changed)
}

/// Writes the status when it changed and emits at most one Event.
pub async fn publish(ctx: &Context, es: &ExternalSecret, verdict: &Verdict, interval: Duration) {
    publish_with(ctx, es, verdict, interval, |_| {}).await;
}

/// [`publish`] with `edit` applied to the new status first (the lease fields).
pub async fn publish_with(
    ctx: &Context,
    es: &ExternalSecret,
    verdict: &Verdict,
    interval: Duration,
    edit: impl FnOnce(&mut ExternalSecretStatus),
) {
    let (mut status, condition_changed) =
        next_status(es, verdict, interval, jiff::Timestamp::now());
    edit(&mut status);
    if es.status.as_ref() != Some(&status)
        && let Err(error) = patch_status(&ctx.client, es, &clearing_leases(&status)).await
    {
        tracing::warn!(%error, "cannot write status");
    }
    let event = match (&verdict.written, condition_changed, verdict.ready) {
        (Some((written, note)), _, _) => Some(Event {
            type_: EventType::Normal,
            reason: match written {
                Written::Created => "Created",
                Written::Updated => "Updated",
                Written::Deleted => "Deleted",
            }
            .to_string(),
            note: Some(note.clone()),
            action: "SyncSecret".to_string(),
            secondary: None,
        }),
        (None, true, ready) => Some(Event {
            type_: if ready {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: verdict.reason.to_string(),
            note: Some(verdict.message.clone()),
            action: "SyncSecret".to_string(),
            secondary: None,
        }),
        (None, false, _) => None,
    };
    if let Some(event) = event {
        publish_event(ctx, event, &es.object_ref(&())).await;
    }
}

/// The status as a merge patch that also clears lease fields left empty
/// (skipped fields would otherwise keep their old values).
pub fn clearing_leases(status: &ExternalSecretStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.entry("lease").or_insert(serde_json::Value::Null);
        map.entry("retiringLeases")
            .or_insert(serde_json::Value::Null);
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::external_secret::ExternalSecretSpec;

    fn es() -> ExternalSecret {
        let mut es = ExternalSecret::new("db", ExternalSecretSpec::default());
        es.metadata.generation = Some(3);
        es
    }

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_700_000_000 + seconds).expect("valid")
    }

    #[test]
    fn refresh_time_alone_is_written_at_most_once_a_period() {
        let mut es = es();
        let synced = Verdict::ready(SECRET_SYNCED, "in sync");
        let (first, changed) = next_status(&es, &synced, Duration::from_secs(2), at(0));
        assert!(changed);
        assert_eq!(first.observed_generation, Some(3));
        assert_eq!(first.refresh_time, Some(Time(at(0))));
        es.status = Some(first.clone());
        let (second, changed) = next_status(&es, &synced, Duration::from_secs(2), at(10));
        assert!(!changed);
        assert_eq!(second, first, "nothing to write 10s later");
        let (third, _) = next_status(&es, &synced, Duration::from_secs(2), at(61));
        assert_eq!(third.refresh_time, Some(Time(at(61))));
    }

    #[test]
    fn failures_keep_the_synced_version_and_change_the_condition() {
        let mut es = es();
        let mut synced = Verdict::ready(SECRET_SYNCED, "in sync");
        synced.synced_resource_version = Some("42".into());
        es.status = Some(next_status(&es, &synced, Duration::from_secs(60), at(0)).0);
        let failed = Verdict::failed(SECRET_SYNC_ERROR, "backend down");
        let (status, changed) = next_status(&es, &failed, Duration::from_secs(60), at(5));
        assert!(changed);
        assert_eq!(status.synced_resource_version.as_deref(), Some("42"));
        assert_eq!(
            status.refresh_time,
            Some(Time(at(0))),
            "no refresh happened"
        );
        assert!(!conditions::is_true(&status.conditions, conditions::READY));
    }
}
