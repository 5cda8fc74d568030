//! What a run tells: the Sync's status conditions, revisions and inventory, and its Events.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

use super::{RECONCILING, RunOutcome, STALLED, history};
use crate::api::conditions::{self, ConditionUpdate, set_condition};
use crate::api::sync::{ManifestSync, SyncStatus};
use crate::controller::Context;
use crate::controller::status::{StatusError, patch_status, publish};
use crate::manifests::apply::Counts;

fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// `Reconciling=True` while a new revision or spec is being applied (kstatus "in progress").
pub(super) async fn mark_reconciling(
    ctx: &Context,
    sync: &ManifestSync,
    message: String,
) -> Result<(), StatusError> {
    let mut status = sync.status.clone().unwrap_or_default();
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: RECONCILING,
            status: true,
            reason: "Progressing",
            message,
        },
        sync.metadata.generation,
        conditions::now(),
    );
    patch_status(&ctx.client, sync, &status).await
}

/// Writes the outcome into the status (only when it changed) and publishes the Event: one per
/// applied revision (or run that wrote something), one per new failure.
pub(super) async fn write_status(
    ctx: &Context,
    sync: &ManifestSync,
    outcome: &RunOutcome,
    run: Option<(&str, Duration)>,
    requested: Option<String>,
) -> Result<(), StatusError> {
    let old = sync.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let generation = sync.metadata.generation;
    let ready = if outcome.ready {
        ConditionUpdate::ready(outcome.reason, outcome.message.clone())
    } else {
        ConditionUpdate::not_ready(outcome.reason, outcome.message.clone())
    };
    let changed = set_condition(&mut status.conditions, ready, generation, conditions::now());
    if outcome.ready {
        remove_condition(&mut status.conditions, RECONCILING);
        remove_condition(&mut status.conditions, STALLED);
    } else if outcome.stalled {
        remove_condition(&mut status.conditions, RECONCILING);
        set_condition(
            &mut status.conditions,
            ConditionUpdate {
                type_: STALLED,
                status: true,
                reason: outcome.reason,
                message: outcome.message.clone(),
            },
            generation,
            conditions::now(),
        );
    } else {
        remove_condition(&mut status.conditions, STALLED);
        set_condition(
            &mut status.conditions,
            ConditionUpdate {
                type_: RECONCILING,
                status: true,
                reason: "ProgressingWithRetry",
                message: format!("retrying: {}", outcome.reason),
            },
            generation,
            conditions::now(),
        );
    }
    if let Some((revision, took)) = run {
        status.last_attempted_revision = Some(revision.to_string());
        history::record(
            &mut status.history,
            revision,
            outcome.reason,
            took,
            conditions::now(),
        );
    }
    if let Some(applied) = &outcome.applied_revision {
        status.last_applied_revision = Some(applied.clone());
    }
    if let Some(inventory) = &outcome.inventory {
        let mut inventory = inventory.clone();
        inventory.sort();
        status.inventory = inventory;
    }
    status.observed_generation = generation;
    if requested.is_some() {
        status.last_handled_reconcile_at = requested;
    }
    let event = event_of(sync, outcome, &old, changed);
    if status != old || outcome.progressed {
        patch_status(&ctx.client, sync, &status).await?;
    }
    if let Some(event) = event {
        publish(ctx, event, &sync.object_ref(&())).await;
    }
    Ok(())
}

/// The Event of a run: one per applied revision (or run that wrote something), one per new
/// failure.
fn event_of(
    sync: &ManifestSync,
    outcome: &RunOutcome,
    old: &SyncStatus,
    changed: bool,
) -> Option<Event> {
    match (&outcome.applied_revision, outcome.counts) {
        (Some(applied), Some((counts, pruned)))
            if old.last_applied_revision.as_deref() != Some(applied.as_str())
                || counts.writes() + pruned > 0 =>
        {
            tracing::info!(sync = %format!("{}/{}", sync.namespace().unwrap_or_default(), sync.name_any()), revision = %applied, "{}", summary(&counts, pruned));
            Some(Event {
                type_: EventType::Normal,
                reason: "Applied".to_string(),
                note: Some(format!("revision {applied}: {}", summary(&counts, pruned))),
                action: "Apply".to_string(),
                secondary: None,
            })
        }
        _ if !outcome.ready && changed => Some(Event {
            type_: EventType::Warning,
            reason: outcome.reason.to_string(),
            note: Some(outcome.message.clone()),
            action: "Apply".to_string(),
            secondary: None,
        }),
        _ => None,
    }
}

/// `1 created, 2 configured, ...` for a condition, an Event and the log.
pub(super) fn summary(counts: &Counts, pruned: usize) -> String {
    let mut text = format!(
        "{} created, {} configured, {} unchanged, {} pruned",
        counts.created, counts.configured, counts.unchanged, pruned
    );
    if counts.skipped > 0 {
        text.push_str(&format!(
            ", {} skipped ({}: disabled, or {}: IfNotPresent or Ignore)",
            counts.skipped,
            crate::manifests::RECONCILE_ANNOTATION,
            crate::manifests::SSA_ANNOTATION
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries_count_everything() {
        let counts = Counts {
            created: 1,
            configured: 2,
            unchanged: 3,
            skipped: 1,
            dry_runs: 0,
        };
        assert_eq!(
            summary(&counts, 4),
            "1 created, 2 configured, 3 unchanged, 4 pruned, 1 skipped (sigil.dev/reconcile: disabled, or sigil.dev/ssa: IfNotPresent or Ignore)"
        );
    }
}
