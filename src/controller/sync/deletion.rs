//! Deleting a Sync: a finalizer holds it until `spec.deletionPolicy` is carried out.
//!
//! `MirrorPrune` (the default) deletes the inventory when `spec.prune` is true, unless the Sync
//! is suspended or its last revision failed to apply; `Delete` always deletes it and
//! `WaitForTermination` also waits until the objects are gone; `Orphan` leaves everything.
//! Deleting is pruning with an empty plan: the same owner-label checks and annotations decide
//! what may go. A deletion that cannot finish (a refused delete, an object that never goes) is
//! retried until `spec.timeout`, then the finalizer is removed anyway, with a Warning Event
//! naming the objects left.

use std::time::Duration;

use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::{CONTROLLER, DEFAULT_INTERVAL, State, health_gate};
use crate::api::sync::{DeletionPolicy, InventoryEntry, ManifestSync, SyncStatus};
use crate::controller::schedule;
use crate::controller::status::publish;
use crate::manifests::apply::Mode;
use crate::manifests::object::describe;
use crate::manifests::prune::prune;
use crate::manifests::{Owner, Target};

/// The finalizer every Sync carries until its deletion policy is carried out.
pub const FINALIZER: &str = "sigil.dev/sync-cleanup";

/// How soon an unfinished deletion is looked at again.
const RETRY: Duration = Duration::from_secs(2);

/// What removing the Sync does to its objects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Cleanup {
    /// Leave them, with why.
    Keep(&'static str),
    /// Delete the inventory; with `wait`, until every deleted object is gone.
    Delete { wait: bool },
}

/// Whether the revision last tried did not apply (an apply, plan, render or guard failure);
/// a revision applied but not yet healthy counts as applied.
fn last_revision_failed(status: &SyncStatus) -> bool {
    let unhealthy = status
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.reason == "HealthCheckFailed");
    status.last_attempted_revision.is_some()
        && status.last_attempted_revision != status.last_applied_revision
        && !unhealthy
}

pub(super) fn cleanup_of(sync: &ManifestSync) -> Cleanup {
    let spec = &sync.spec;
    let status = sync.status.clone().unwrap_or_default();
    match spec.deletion_policy.unwrap_or_default() {
        DeletionPolicy::Orphan => Cleanup::Keep("deletionPolicy is Orphan"),
        DeletionPolicy::Delete => Cleanup::Delete { wait: false },
        DeletionPolicy::WaitForTermination => Cleanup::Delete { wait: true },
        DeletionPolicy::MirrorPrune if !spec.prune => Cleanup::Keep("spec.prune is false"),
        DeletionPolicy::MirrorPrune if spec.suspend => Cleanup::Keep("the Sync is suspended"),
        DeletionPolicy::MirrorPrune if last_revision_failed(&status) => {
            Cleanup::Keep("its last revision failed to apply")
        }
        DeletionPolicy::MirrorPrune => Cleanup::Delete { wait: false },
    }
}

pub(super) fn has_finalizer(sync: &ManifestSync) -> bool {
    sync.finalizers().iter().any(|f| f == FINALIZER)
}

/// Writes `finalizers` as the Sync's list, only if the Sync is still at the version read (a
/// merge patch carrying `resourceVersion` is refused with a conflict otherwise).
async fn set_finalizers(
    client: &kube::Client,
    sync: &ManifestSync,
    finalizers: Vec<String>,
) -> Result<(), kube::Error> {
    let patch = json!({"metadata": {
        "resourceVersion": sync.resource_version(),
        "finalizers": finalizers,
    }});
    Api::<ManifestSync>::namespaced(client.clone(), &sync.namespace().unwrap_or_default())
        .patch(
            &sync.name_any(),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
        .map(|_| ())
}

/// Adds the finalizer to a Sync that lacks it.
pub(super) async fn add_finalizer(
    client: &kube::Client,
    sync: &ManifestSync,
) -> Result<(), kube::Error> {
    let mut finalizers = sync.finalizers().to_vec();
    finalizers.push(FINALIZER.to_string());
    set_finalizers(client, sync, finalizers).await
}

async fn remove_finalizer(client: &kube::Client, sync: &ManifestSync) -> Result<(), kube::Error> {
    let finalizers = sync
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    set_finalizers(client, sync, finalizers).await
}

/// How long the deletion has been going on.
fn deleting_for(sync: &ManifestSync) -> Duration {
    sync.meta()
        .deletion_timestamp
        .as_ref()
        .and_then(|t| jiff::Timestamp::now().duration_since(t.0).try_into().ok())
        .unwrap_or_default()
}

/// The deleted objects still there (terminating, held by a finalizer).
async fn still_present(
    state: &State,
    target: &Target,
    deleted: &[InventoryEntry],
) -> Vec<(InventoryEntry, String)> {
    let mut left = Vec::new();
    for entry in deleted {
        let Ok(Some(kind)) = state
            .resolver
            .resolve(&entry.api_version, &entry.kind)
            .await
        else {
            continue;
        };
        let namespace = (!entry.namespace.is_empty()).then_some(entry.namespace.as_str());
        match target.get(&kind.resource, namespace, &entry.name).await {
            Ok(None) => {}
            Ok(Some(_)) => left.push((entry.clone(), "still terminating".to_string())),
            Err(err) => left.push((entry.clone(), err.message)),
        }
    }
    left
}

fn named(objects: &[(InventoryEntry, String)]) -> String {
    objects
        .iter()
        .map(|(entry, why)| format!("{} ({why})", describe(entry)))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn event(state: &State, sync: &ManifestSync, type_: EventType, reason: &str, note: String) {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: "Delete".to_string(),
        secondary: None,
    };
    publish(&state.ctx, event, &sync.object_ref(&())).await;
}

/// Carries out the deletion policy of a Sync being deleted, then removes the finalizer.
pub(super) async fn finalize(state: &State, sync: &ManifestSync, key: &str) -> Action {
    if !has_finalizer(sync) {
        return Action::await_change();
    }
    let lock = state.locks.get(key);
    let _guard = lock.lock().await;
    let inventory = sync
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    let cleanup = cleanup_of(sync);
    let mut deleted = 0;
    if let (Cleanup::Delete { wait }, false) = (cleanup, inventory.is_empty()) {
        let namespace = sync.namespace().unwrap_or_default();
        let owner = Owner {
            namespace: namespace.clone(),
            name: sync.name_any(),
        };
        let target = Target::as_service_account(
            state.ctx.client.clone(),
            &namespace,
            sync.spec.service_account_name.as_deref(),
        );
        let report = prune(
            &target,
            &state.resolver,
            &inventory,
            &[],
            &owner,
            Mode::Apply,
        )
        .await;
        deleted = report.pruned.len();
        let mut left = report.failures;
        if wait {
            left.extend(still_present(state, &target, &report.pruned).await);
        }
        if !left.is_empty() {
            let interval = schedule::interval(sync.spec.interval.as_deref(), DEFAULT_INTERVAL)
                .unwrap_or(DEFAULT_INTERVAL);
            let timeout = health_gate::timeout(&sync.spec, interval).unwrap_or(interval);
            if deleting_for(sync) < timeout {
                tracing::debug!(controller = CONTROLLER, sync = %key, left = %named(&left), "deletion not finished");
                return Action::requeue(RETRY);
            }
            let note = format!(
                "deletion not finished within {}s, finalizer removed; left: {}",
                timeout.as_secs(),
                named(&left)
            );
            tracing::warn!(controller = CONTROLLER, sync = %key, "{note}");
            event(state, sync, EventType::Warning, "DeletionTimedOut", note).await;
        }
    }
    match cleanup {
        Cleanup::Keep(why) if !inventory.is_empty() => {
            let note = format!("{} object(s) left in place: {why}", inventory.len());
            tracing::info!(controller = CONTROLLER, sync = %key, "{note}");
            event(state, sync, EventType::Normal, "Orphaned", note).await;
        }
        Cleanup::Delete { .. } if deleted > 0 => {
            let note = format!("{deleted} object(s) deleted");
            tracing::info!(controller = CONTROLLER, sync = %key, "{note}");
            event(state, sync, EventType::Normal, "Deleted", note).await;
        }
        _ => {}
    }
    if let Err(err) = remove_finalizer(&state.ctx.client, sync).await {
        tracing::debug!(controller = CONTROLLER, sync = %key, error = %err, "removing the finalizer");
        return Action::requeue(RETRY);
    }
    Action::await_change()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sync::SyncSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn sync(spec: SyncSpec, status: SyncStatus) -> ManifestSync {
        let mut sync = ManifestSync::new("apps", spec);
        sync.status = Some(status);
        sync
    }

    fn applied(revision: &str, attempted: &str, reason: &str) -> SyncStatus {
        SyncStatus {
            last_applied_revision: Some(revision.into()),
            last_attempted_revision: Some(attempted.into()),
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: reason.into(),
                message: String::new(),
                last_transition_time: crate::api::conditions::now(),
                observed_generation: None,
            }],
            ..SyncStatus::default()
        }
    }

    #[test]
    fn the_policy_decides_with_prune_suspend_and_the_last_revision() {
        let spec = |policy: Option<DeletionPolicy>, prune: bool, suspend: bool| SyncSpec {
            deletion_policy: policy,
            prune,
            suspend,
            ..SyncSpec::default()
        };
        let good = applied("a", "a", "ReconciliationSucceeded");
        let failed = applied("a", "b", "ApplyFailed");
        let unhealthy = applied("a", "b", "HealthCheckFailed");
        let delete = Cleanup::Delete { wait: false };
        let cases = [
            (spec(None, true, false), &good, delete),
            (
                spec(None, false, false),
                &good,
                Cleanup::Keep("spec.prune is false"),
            ),
            (
                spec(None, true, true),
                &good,
                Cleanup::Keep("the Sync is suspended"),
            ),
            (
                spec(None, true, false),
                &failed,
                Cleanup::Keep("its last revision failed to apply"),
            ),
            (spec(None, true, false), &unhealthy, delete),
            (
                spec(Some(DeletionPolicy::Delete), false, true),
                &failed,
                delete,
            ),
            (
                spec(Some(DeletionPolicy::WaitForTermination), false, true),
                &failed,
                Cleanup::Delete { wait: true },
            ),
            (
                spec(Some(DeletionPolicy::Orphan), true, false),
                &good,
                Cleanup::Keep("deletionPolicy is Orphan"),
            ),
        ];
        for (spec, status, want) in cases {
            let what = format!("{spec:?}");
            assert_eq!(cleanup_of(&sync(spec, status.clone())), want, "{what}");
        }
    }
}
