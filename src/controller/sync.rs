//! The Sync controller: applies a folder of its GitSource's revision and keeps the cluster
//! equal to it.
//!
//! A run reads the folder from the Git cache (fetching the exact commit when missing), parses
//! and validates every manifest before applying any, applies stage by stage with server-side
//! apply (as the Sync's ServiceAccount when it names one), prunes what left Git only after a
//! fully successful apply, and records `lastAppliedRevision`, `lastAttemptedRevision`, the
//! inventory and the `Ready`/`Reconciling`/`Stalled` conditions. With `spec.selfHeal` the
//! applied objects are watched ([`heal`]). Runs happen on a new revision, a spec change, the
//! `sigil.dev/reconcile-requested-at` annotation, and every `spec.interval`.

mod guards;
pub mod heal;
mod health_gate;
mod history;
#[cfg(test)]
mod mocked_api;

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use self::heal::{Healer, Locks, Tracking};
use super::git_source::{self, requested_at};
use super::schedule::{self, Schedule};
use super::status::{StatusError, patch_status, publish};
use super::{Context, runner};
use crate::api::conditions::{self, ConditionUpdate, set_condition};
use crate::api::git_source::GitSource;
use crate::api::sync::{InventoryEntry, ManifestSync};
use crate::git::{Cache, Reference, TreeError, TreeLimits, commit_of_revision};
use crate::manifests::apply::{ApplyOptions, Counts, Mode, apply_plan};
use crate::manifests::object::same_object;
use crate::manifests::parse::parse_files;
use crate::manifests::plan::{PlanError, plan};
use crate::manifests::source::{SourceFile, is_manifest_path};
use crate::manifests::wait::{self, WaitOutcome};
use crate::manifests::{Owner, PlanOptions, Resolver, Target, prune};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "sync";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Objects applied at once within a stage.
const APPLY_CONCURRENCY: usize = 16;
/// A label value (the Sync's name is one) is at most 63 characters.
const MAX_LABEL_VALUE: usize = 63;

const RECONCILING: &str = "Reconciling";
const STALLED: &str = "Stalled";

struct State {
    ctx: Arc<Context>,
    cache: Arc<Cache>,
    resolver: Resolver,
    schedule: Schedule,
    locks: Arc<Locks>,
    healer: Arc<Healer>,
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, cache: Arc<Cache>) {
    let client = ctx.client.clone();
    let locks = Arc::new(Locks::default());
    let state = Arc::new(State {
        ctx: ctx.clone(),
        cache,
        resolver: Resolver::new(client.clone()),
        schedule: Schedule::default(),
        healer: Healer::new(ctx.clone(), locks.clone()),
        locks,
    });
    let controller = Controller::new(ctx.watched::<ManifestSync>(), watcher::Config::default());
    let syncs = controller.store();
    let controller = controller.watches(
        ctx.watched::<GitSource>(),
        watcher::Config::default(),
        move |source| {
            let namespace = source.namespace();
            let name = source.name_any();
            syncs
                .state()
                .into_iter()
                .filter(|s| s.namespace() == namespace && s.spec.source_ref.name == name)
                .map(|s| ObjectRef::from_obj(&*s))
                .collect::<Vec<_>>()
        },
    );
    runner::run_retrying_soon(&ctx, CONTROLLER, controller, reconcile, state).await;
}

/// What one run concluded.
struct RunOutcome {
    ready: bool,
    reason: &'static str,
    message: String,
    /// A failure only a change in Git or in the spec can fix.
    stalled: bool,
    applied_revision: Option<String>,
    inventory: Option<Vec<InventoryEntry>>,
    /// Counts of a successful run: (apply counts, pruned).
    counts: Option<(Counts, usize)>,
    /// The run wrote progress into the status, so the final status must be written even when
    /// it equals the one the run started from.
    progressed: bool,
}

impl RunOutcome {
    fn failed(reason: &'static str, message: impl Into<String>, stalled: bool) -> Self {
        Self {
            ready: false,
            reason,
            message: message.into(),
            stalled,
            applied_revision: None,
            inventory: None,
            counts: None,
            progressed: false,
        }
    }
}

async fn reconcile(sync: Arc<ManifestSync>, state: Arc<State>) -> Result<Action, StatusError> {
    let ctx = &state.ctx;
    let namespace = sync.namespace().unwrap_or_default();
    let name = sync.name_any();
    let key = format!("{namespace}/{name}");
    if !ctx.options.shard.owns_sync(&sync) || sync.meta().deletion_timestamp.is_some() {
        state.schedule.forget(&key);
        state.healer.untrack(&key);
        return Ok(Action::await_change());
    }
    if sync.spec.suspend {
        state.healer.untrack(&key);
        return Ok(Action::await_change());
    }
    if !sync.spec.self_heal {
        state.healer.untrack(&key);
    }
    let requested = requested_at(&*sync);
    let started = Instant::now();
    let interval = match schedule::interval(sync.spec.interval.as_deref(), DEFAULT_INTERVAL) {
        Ok(interval) => interval,
        Err(err) => {
            let outcome =
                RunOutcome::failed("InvalidInterval", format!("spec.interval: {err}"), true);
            write_status(ctx, &sync, &outcome, None, requested).await?;
            return Ok(Action::await_change());
        }
    };
    if name.len() > MAX_LABEL_VALUE || namespace.len() > MAX_LABEL_VALUE {
        let outcome = RunOutcome::failed(
            "InvalidName",
            format!(
                "the Sync's name and namespace label every object it applies, so each must be at most {MAX_LABEL_VALUE} characters"
            ),
            true,
        );
        write_status(ctx, &sync, &outcome, None, requested).await?;
        return Ok(Action::await_change());
    }
    let source = match source_revision(ctx, &sync, &namespace).await {
        Ok(found) => found,
        Err(outcome) => {
            write_status(ctx, &sync, &outcome, None, requested).await?;
            ctx.metrics
                .reconciled(CONTROLLER, started.elapsed(), Some(outcome.reason));
            return Ok(Action::requeue(
                Duration::from_secs(30).min(interval.max(Duration::from_secs(1))),
            ));
        }
    };
    let (source, revision) = source;
    let trigger = format!(
        "{}|{}|{revision}",
        sync.metadata.generation.unwrap_or(0),
        requested.as_deref().unwrap_or("")
    );
    if let Some(wait) = state.schedule.skip(&key, &trigger, interval) {
        return Ok(Action::requeue(wait));
    }
    let lock = state.locks.get(&key);
    let _guard = lock.lock().await;
    let status = sync.status.clone().unwrap_or_default();
    if status.last_attempted_revision.as_deref() != Some(revision.as_str())
        || status.observed_generation != sync.metadata.generation
    {
        mark_reconciling(ctx, &sync, format!("applying revision {revision}")).await?;
    }
    let outcome = run_revision(&state, &sync, &source, &revision, &key).await;
    if let Some((counts, pruned)) = &outcome.counts {
        for (what, count) in [
            ("created", counts.created),
            ("configured", counts.configured),
            ("unchanged", counts.unchanged),
            ("skipped", counts.skipped),
            ("pruned", *pruned),
        ] {
            ctx.metrics.objects_applied(what, count);
        }
    }
    write_status(
        ctx,
        &sync,
        &outcome,
        Some((&revision, started.elapsed())),
        requested,
    )
    .await?;
    ctx.metrics.reconciled(
        CONTROLLER,
        started.elapsed(),
        (!outcome.ready).then_some(outcome.reason),
    );
    let next = state
        .schedule
        .record(&key, &trigger, outcome.ready, interval);
    Ok(Action::requeue(next))
}

/// The Sync's GitSource and its revision, or why there is none yet.
async fn source_revision(
    ctx: &Context,
    sync: &ManifestSync,
    namespace: &str,
) -> Result<(GitSource, String), RunOutcome> {
    let source_ref = &sync.spec.source_ref;
    if source_ref.kind != "GitSource" {
        return Err(RunOutcome::failed(
            "InvalidSourceRef",
            format!(
                "spec.sourceRef.kind {:?}: only GitSource is supported",
                source_ref.kind
            ),
            true,
        ));
    }
    let source = Api::<GitSource>::namespaced(ctx.client.clone(), namespace)
        .get_opt(&source_ref.name)
        .await
        .map_err(|e| {
            RunOutcome::failed(
                "SourceNotFound",
                format!("GitSource {namespace}/{}: {e}", source_ref.name),
                false,
            )
        })?
        .ok_or_else(|| {
            RunOutcome::failed(
                "SourceNotFound",
                format!("GitSource {namespace}/{} not found", source_ref.name),
                false,
            )
        })?;
    let revision = source
        .status
        .as_ref()
        .and_then(|s| s.artifact.as_ref())
        .map(|a| a.revision.clone());
    match revision {
        Some(revision) => Ok((source, revision)),
        None => {
            let why = source
                .status
                .as_ref()
                .and_then(|s| conditions::find(&s.conditions, conditions::READY))
                .map(|c| format!(": {}", c.message))
                .unwrap_or_default();
            Err(RunOutcome::failed(
                "SourceNotReady",
                format!(
                    "GitSource {namespace}/{} has no revision yet{why}",
                    source_ref.name
                ),
                false,
            ))
        }
    }
}

/// The manifest files of the revision, fetching its commit when the cache lacks it (after a
/// restart, or when the source moved on before this Sync ran).
async fn read_files(
    state: &State,
    source: &GitSource,
    commit: &str,
    path: &str,
) -> Result<Vec<SourceFile>, RunOutcome> {
    let namespace = source.namespace().unwrap_or_default();
    let dir = state
        .cache
        .repo_dir(&namespace, &source.name_any(), &source.spec.url);
    let read = || {
        state.cache.read_folder(
            dir.clone(),
            commit.to_string(),
            path.to_string(),
            is_manifest_path,
            TreeLimits::default(),
        )
    };
    let files = match read().await {
        Err(TreeError::MissingCommit { .. }) => {
            git_source::fetch(
                &state.ctx.client,
                &state.cache,
                source,
                Reference::Commit(commit.to_string()),
            )
            .await
            .map_err(|e| {
                RunOutcome::failed(
                    "ArtifactFailed",
                    format!("cannot fetch commit {commit}: {e}"),
                    false,
                )
            })?;
            read().await
        }
        other => other,
    };
    files
        .map(|files| files.into_iter().map(SourceFile::from).collect())
        .map_err(|err| {
            let (reason, stalled) = match err {
                TreeError::PathNotFound { .. } | TreeError::InvalidPath { .. } => {
                    ("PathNotFound", true)
                }
                TreeError::SymlinkEscapes { .. }
                | TreeError::SymlinkDangling { .. }
                | TreeError::FileTooLarge { .. }
                | TreeError::TreeTooLarge { .. }
                | TreeError::TooManyFiles { .. } => ("ArtifactRefused", true),
                _ => ("ArtifactFailed", false),
            };
            RunOutcome::failed(reason, format!("spec.path: {err}"), stalled)
        })
}

async fn run_revision(
    state: &State,
    sync: &ManifestSync,
    source: &GitSource,
    revision: &str,
    key: &str,
) -> RunOutcome {
    let namespace = sync.namespace().unwrap_or_default();
    let Some(commit) = commit_of_revision(revision) else {
        return RunOutcome::failed(
            "ArtifactFailed",
            format!("revision {revision:?} names no commit"),
            false,
        );
    };
    let path = sync.spec.path.clone().unwrap_or_default();
    let files = match read_files(state, source, commit, &path).await {
        Ok(files) => files,
        Err(outcome) => return outcome,
    };
    let owner = Owner {
        namespace: namespace.clone(),
        name: sync.name_any(),
    };
    let (manifests, parse_errors) = parse_files(&files);
    let options = PlanOptions {
        default_namespace: namespace.clone(),
        target_namespace: sync
            .spec
            .target_namespace
            .clone()
            .filter(|ns| !ns.is_empty()),
        allow_plaintext_secrets: sync.spec.allow_plaintext_secrets,
        owner: Some(owner.clone()),
    };
    let plan = match plan(manifests, parse_errors, &state.resolver, &options).await {
        Ok(plan) => plan,
        Err(PlanError::Problems(problems)) => {
            return RunOutcome::failed(
                problems.reason(),
                format!("revision {revision} not applied, nothing pruned: {problems}"),
                true,
            );
        }
        Err(err @ PlanError::Discovery { .. }) => {
            return RunOutcome::failed("DiscoveryFailed", err.to_string(), false);
        }
    };
    let previous = sync
        .status
        .as_ref()
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    if let Err(refusal) = guards::check(&sync.spec, &plan.entries(), &previous) {
        return RunOutcome::failed(refusal.reason, refusal.message, true);
    }
    let target = Target::as_service_account(
        state.ctx.client.clone(),
        &namespace,
        sync.spec.service_account_name.as_deref(),
    );
    let report = apply_plan(
        &target,
        &state.resolver,
        &plan,
        ApplyOptions {
            owner: Some(&owner),
            mode: Mode::Apply,
            concurrency: APPLY_CONCURRENCY,
            crd_timeout: CRD_TIMEOUT,
        },
    )
    .await;
    let tracking = |objects| Tracking {
        owner: owner.clone(),
        reference: sync.object_ref(&()),
        target: target.clone(),
        objects,
    };
    let applied_objects = || {
        report
            .applied
            .iter()
            .filter_map(|a| {
                plan.objects
                    .iter()
                    .find(|d| d.entry == a.entry)
                    .map(|d| (d.clone(), a.fingerprint))
            })
            .collect::<Vec<_>>()
    };
    if !report.failures.is_empty() {
        let mut inventory = previous.clone();
        for applied in &report.applied {
            if !inventory.iter().any(|e| same_object(e, &applied.entry)) {
                inventory.push(applied.entry.clone());
            }
        }
        if sync.spec.self_heal {
            state.healer.track(key, tracking(applied_objects()), false);
        }
        let user = target
            .user()
            .map(|u| format!(" (applying as {u})"))
            .unwrap_or_default();
        let mut outcome = RunOutcome::failed(
            report.reason(),
            format!(
                "revision {revision}: {} of {} objects failed{user}, nothing pruned: {}",
                report.failures.len(),
                plan.objects.len(),
                report.failure_message()
            ),
            false,
        );
        outcome.inventory = Some(inventory);
        return outcome;
    }
    let mut inventory = plan.entries();
    let mut pruned = 0;
    if sync.spec.prune {
        let result = prune::prune(
            &target,
            &state.resolver,
            &previous,
            &inventory,
            &owner,
            Mode::Apply,
        )
        .await;
        pruned = result.pruned.len();
        if !result.failures.is_empty() {
            let failed: Vec<String> = result
                .failures
                .iter()
                .map(|(e, m)| format!("{}: {m}", crate::manifests::object::describe(e)))
                .collect();
            inventory.extend(result.failures.into_iter().map(|(e, _)| e));
            if sync.spec.self_heal {
                state.healer.track(key, tracking(applied_objects()), true);
            }
            let mut outcome = RunOutcome::failed(
                "PruneFailed",
                format!(
                    "revision {revision} applied, but pruning failed: {}",
                    failed.join("; ")
                ),
                false,
            );
            outcome.inventory = Some(inventory);
            return outcome;
        }
    }
    if sync.spec.self_heal {
        state.healer.track(key, tracking(applied_objects()), true);
    }
    let (unhealthy, progressed) =
        wait_for_health(state, sync, &target, &plan.entries(), revision).await;
    if let Some(failed) = unhealthy {
        let mut outcome = RunOutcome::failed("HealthCheckFailed", failed, false);
        outcome.inventory = Some(inventory);
        outcome.progressed = progressed;
        return outcome;
    }
    let counts = report.counts();
    RunOutcome {
        ready: true,
        reason: "ReconciliationSucceeded",
        message: format!("Applied revision {revision}: {}", summary(&counts, pruned)),
        stalled: false,
        applied_revision: Some(revision.to_string()),
        inventory: Some(inventory),
        counts: Some((counts, pruned)),
        progressed,
    }
}

/// With `spec.wait` or `spec.healthChecks`: polls the objects until they are healthy, keeping
/// `Reconciling` up to date. Returns why they are not (naming the object) within the timeout,
/// and whether progress was written into the status.
async fn wait_for_health(
    state: &State,
    sync: &ManifestSync,
    target: &Target,
    applied: &[InventoryEntry],
    revision: &str,
) -> (Option<String>, bool) {
    let namespace = sync.namespace().unwrap_or_default();
    let objects = health_gate::checked_objects(&sync.spec, &namespace, applied);
    if objects.is_empty() {
        return (None, false);
    }
    let interval = schedule::interval(sync.spec.interval.as_deref(), DEFAULT_INTERVAL)
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = match health_gate::timeout(&sync.spec, interval) {
        Ok(timeout) => timeout,
        Err(message) => return (Some(message), false),
    };
    let mut progressed = false;
    let outcome = wait::wait_healthy(
        target,
        &state.resolver,
        &objects,
        timeout,
        wait::POLL,
        |message: String| {
            progressed = true;
            let ctx = state.ctx.clone();
            let sync = sync.clone();
            let message = format!("revision {revision} applied, {message}");
            async move {
                if let Err(err) = mark_reconciling(&ctx, &sync, message).await {
                    tracing::debug!(controller = CONTROLLER, error = %err, "progress status");
                }
            }
        },
    )
    .await;
    let unhealthy = match outcome {
        WaitOutcome::Healthy => None,
        failed => Some(format!(
            "revision {revision} applied, health check failed: {}",
            failed.message()
        )),
    };
    (unhealthy, progressed)
}

fn summary(counts: &Counts, pruned: usize) -> String {
    let mut text = format!(
        "{} created, {} configured, {} unchanged, {} pruned",
        counts.created, counts.configured, counts.unchanged, pruned
    );
    if counts.skipped > 0 {
        text.push_str(&format!(
            ", {} skipped ({}: disabled)",
            counts.skipped,
            crate::manifests::RECONCILE_ANNOTATION
        ));
    }
    text
}

fn remove_condition(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// `Reconciling=True` while a new revision or spec is being applied (kstatus "in progress").
async fn mark_reconciling(
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
async fn write_status(
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
    let event = match (&outcome.applied_revision, outcome.counts) {
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
    };
    if status != old || outcome.progressed {
        patch_status(&ctx.client, sync, &status).await?;
    }
    if let Some(event) = event {
        publish(ctx, event, &sync.object_ref(&())).await;
    }
    Ok(())
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
            "1 created, 2 configured, 3 unchanged, 4 pruned, 1 skipped (sigil.dev/reconcile: disabled)"
        );
    }
}
