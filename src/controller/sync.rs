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

mod deletion;
mod dependencies;
mod guards;
pub mod heal;
mod health_gate;
mod history;
#[cfg(test)]
mod mocked_api;
mod read;
mod report;

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use self::heal::{Healer, Locks, Tracking};
use self::report::{mark_reconciling, summary, write_status};
use super::git_source::requested_at;
use super::schedule::{self, Schedule};
use super::status::StatusError;
use super::{Context, runner};
use crate::api::git_source::GitSource;
use crate::api::sync::{InventoryEntry, ManifestSync};
use crate::git::{Cache, commit_of_revision};
use crate::manifests::apply::{Counts, Mode, Outcome};
use crate::manifests::health_expr::HealthExprs;
use crate::manifests::ignore;
use crate::manifests::pipeline::{self, Rendered, RollOut, RollOutReport};
use crate::manifests::plan::PlanError;
use crate::manifests::render::inputs::{SyncIdentity, render_inputs};
use crate::manifests::render::{RenderError, RenderMetrics, Renderer};
use crate::manifests::sops::{KeysError, keys_of};
use crate::manifests::variables;
use crate::manifests::wait::{self, WaitOutcome};
use crate::manifests::{Desired, Owner, Plan, PlanOptions, Resolver, Target};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "sync";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(600);
const CRD_TIMEOUT: Duration = Duration::from_secs(60);
/// Objects applied at once within a stage.
const APPLY_CONCURRENCY: usize = 16;
/// A label value (the Sync's name is one) is at most 63 characters.
const MAX_LABEL_VALUE: usize = 63;

/// How soon a Sync waiting for a dependency looks again (besides the watch of Syncs).
const DEPENDENCY_RETRY: Duration = Duration::from_secs(10);

const RECONCILING: &str = "Reconciling";
const STALLED: &str = "Stalled";

struct State {
    ctx: Arc<Context>,
    cache: Arc<Cache>,
    resolver: Resolver,
    schedule: Schedule,
    locks: Arc<Locks>,
    healer: Arc<Healer>,
    renderer: Renderer,
    /// The controller's cache of every Sync (dependency cycles are found in it).
    syncs: Store<ManifestSync>,
}

impl State {
    fn new(
        ctx: Arc<Context>,
        cache: Arc<Cache>,
        render_metrics: Arc<RenderMetrics>,
        syncs: Store<ManifestSync>,
    ) -> Self {
        let locks = Arc::new(Locks::default());
        Self {
            renderer: Renderer::new(ctx.options.render.clone(), render_metrics),
            resolver: Resolver::new(ctx.client.clone()),
            cache,
            schedule: Schedule::default(),
            healer: Healer::new(ctx.clone(), locks.clone()),
            locks,
            ctx,
            syncs,
        }
    }
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, cache: Arc<Cache>) {
    let render_metrics = Arc::new(RenderMetrics::default());
    ctx.metrics
        .register(|registry| render_metrics.register(registry));
    let controller = Controller::new(ctx.watched::<ManifestSync>(), watcher::Config::default());
    let syncs = controller.store();
    let state = Arc::new(State::new(
        ctx.clone(),
        cache,
        render_metrics,
        syncs.clone(),
    ));
    let sources = syncs.clone();
    let controller = controller
        .watches(
            ctx.watched::<GitSource>(),
            watcher::Config::default(),
            move |source| {
                let namespace = source.namespace();
                let name = source.name_any();
                sources
                    .state()
                    .into_iter()
                    .filter(|s| s.namespace() == namespace && s.spec.source_ref.name == name)
                    .map(|s| ObjectRef::from_obj(&*s))
                    .collect::<Vec<_>>()
            },
        )
        // A change of a Sync (its Ready condition, its revision) wakes the Syncs depending on it.
        .watches(
            ctx.watched::<ManifestSync>(),
            watcher::Config::default(),
            move |changed| {
                let key = format!(
                    "{}/{}",
                    changed.namespace().unwrap_or_default(),
                    changed.name_any()
                );
                syncs
                    .state()
                    .into_iter()
                    .filter(|s| dependencies::dependencies_of(s).contains(&key))
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

/// `spec.interval`, or why the Sync cannot run until its spec changes.
fn checked_interval(sync: &ManifestSync) -> Result<Duration, Box<RunOutcome>> {
    let interval =
        schedule::interval(sync.spec.interval.as_deref(), DEFAULT_INTERVAL).map_err(|err| {
            RunOutcome::failed("InvalidInterval", format!("spec.interval: {err}"), true)
        })?;
    let too_long = |s: Option<String>| s.unwrap_or_default().len() > MAX_LABEL_VALUE;
    if too_long(Some(sync.name_any())) || too_long(sync.namespace()) {
        return Err(Box::new(RunOutcome::failed(
            "InvalidName",
            format!(
                "the Sync's name and namespace label every object it applies, so each must be at most {MAX_LABEL_VALUE} characters"
            ),
            true,
        )));
    }
    Ok(interval)
}

fn count_objects(ctx: &Context, outcome: &RunOutcome) {
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
}

async fn reconcile(sync: Arc<ManifestSync>, state: Arc<State>) -> Result<Action, StatusError> {
    let ctx = &state.ctx;
    let namespace = sync.namespace().unwrap_or_default();
    let name = sync.name_any();
    let key = format!("{namespace}/{name}");
    if !ctx.options.shard.owns_sync(&sync) {
        state.schedule.forget(&key);
        state.healer.untrack(&key);
        return Ok(Action::await_change());
    }
    if sync.meta().deletion_timestamp.is_some() {
        state.schedule.forget(&key);
        state.healer.untrack(&key);
        return Ok(deletion::finalize(&state, &sync, &key).await);
    }
    if !deletion::has_finalizer(&sync)
        && let Err(err) = deletion::add_finalizer(&ctx.client, &sync).await
    {
        tracing::debug!(controller = CONTROLLER, sync = %key, error = %err, "adding the finalizer");
        return Ok(Action::requeue(Duration::from_secs(1)));
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
    let interval = match checked_interval(&sync) {
        Ok(interval) => interval,
        Err(outcome) => {
            write_status(ctx, &sync, &outcome, None, requested).await?;
            return Ok(Action::await_change());
        }
    };
    let source = match read::source_revision(ctx, &sync, &namespace).await {
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
    if let Err(blocked) = dependencies::check(&ctx.client, &state.syncs, &sync).await {
        let stalled = matches!(blocked, dependencies::Blocked::Cycle(_));
        let outcome = RunOutcome::failed(blocked.reason(), blocked.message(), stalled);
        write_status(ctx, &sync, &outcome, None, requested).await?;
        ctx.metrics
            .reconciled(CONTROLLER, started.elapsed(), Some(outcome.reason));
        return Ok(if stalled {
            Action::await_change()
        } else {
            Action::requeue(DEPENDENCY_RETRY.min(interval))
        });
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
    count_objects(ctx, &outcome);
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
    let exprs = match health_gate::expressions(&sync.spec) {
        Ok(exprs) => exprs,
        Err(err) => {
            let message = format!("Sync {namespace}/{}: {err}", sync.name_any());
            return RunOutcome::failed("InvalidHealthCheckExprs", message, true);
        }
    };
    let path = sync.spec.path.clone().unwrap_or_default();
    let files = match files_to_apply(state, sync, source, commit, revision, &path).await {
        Ok(files) => files,
        Err(outcome) => return *outcome,
    };
    let owner = Owner {
        namespace: namespace.clone(),
        name: sync.name_any(),
    };
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
    let keys = match keys_of(&state.ctx.client, sync.spec.decryption.as_ref(), &namespace).await {
        Ok(keys) => keys,
        Err(err) => {
            let stalled = matches!(err, KeysError::Provider(_) | KeysError::NoSecretRef);
            let name = sync.name_any();
            return RunOutcome::failed(
                "DecryptionFailed",
                format!("Sync {namespace}/{name}: {err}"),
                stalled,
            );
        }
    };
    let post_build = sync.spec.post_build.as_ref();
    let vars = match variables::load(&state.ctx.client, &namespace, post_build).await {
        Ok(vars) => vars,
        Err(err) => {
            let message = format!("Sync {namespace}/{}: {err}", sync.name_any());
            return RunOutcome::failed("SubstitutionFailed", message, err.stalled());
        }
    };
    let mut plan =
        match pipeline::desired(&files, &vars, keys.as_ref(), &state.resolver, &options).await {
            Ok(plan) => plan,
            Err(err) => return plan_failed(err, revision),
        };
    if let Err(message) = ignore::resolve(&sync.spec.ignore, &mut plan) {
        return RunOutcome::failed("InvalidIgnoreRule", message, true);
    }
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
    let how = RollOut {
        target: &target,
        resolver: &state.resolver,
        owner: Some(&owner),
        mode: Mode::Apply,
        concurrency: APPLY_CONCURRENCY,
        crd_timeout: CRD_TIMEOUT,
        prune: sync.spec.prune,
    };
    let report = pipeline::roll_out(how, &plan, &previous).await;
    if sync.spec.self_heal {
        let tracking = Tracking {
            owner: owner.clone(),
            reference: sync.object_ref(&()),
            target: target.clone(),
            objects: applied_objects(&plan, &report),
        };
        let complete = report.apply.failures.is_empty();
        state.healer.track(key, tracking, complete);
    }
    let outcome = outcome_of(&report, &plan, &previous, &target, revision);
    if !outcome.ready {
        return outcome;
    }
    let (unhealthy, progressed) = wait_for_health(
        state,
        sync,
        &target,
        &present_objects(&report),
        &exprs,
        revision,
    )
    .await;
    match unhealthy {
        Some(failed) => RunOutcome {
            inventory: outcome.inventory,
            progressed,
            ..RunOutcome::failed("HealthCheckFailed", failed, false)
        },
        None => RunOutcome {
            progressed,
            ..outcome
        },
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
    exprs: &HealthExprs,
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
        exprs,
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

/// A failed read of the tree, or a failed render.
enum RenderFailure {
    Read(RunOutcome),
    Render(RenderError),
}

impl From<RenderError> for RenderFailure {
    fn from(err: RenderError) -> Self {
        Self::Render(err)
    }
}

/// The folder's files, rendered when the folder is a kustomization or a chart.
async fn files_to_apply(
    state: &State,
    sync: &ManifestSync,
    source: &GitSource,
    commit: &str,
    revision: &str,
    path: &str,
) -> Result<Rendered, Box<RunOutcome>> {
    let (ctx, cache) = (&state.ctx, &state.cache);
    let files = read::read_files(ctx, cache, source, commit, path).await?;
    let kind = pipeline::renderer_of(&sync.spec, &files, path);
    let namespace = sync.namespace().unwrap_or_default();
    let name = sync.name_any();
    let failed = |err: RenderError| {
        Box::new(RunOutcome::failed(
            err.reason(),
            format!(
                "Sync {namespace}/{name}: path {path:?} ({}): {err}",
                kind.as_str()
            ),
            err.stalled(),
        ))
    };
    let identity = SyncIdentity {
        namespace: &namespace,
        name: &name,
    };
    let inputs = render_inputs(&ctx.client, &sync.spec, identity, kind)
        .await
        .map_err(failed)?;
    let read_tree = || async {
        read::read_tree(ctx, cache, source, commit)
            .await
            .map_err(RenderFailure::Read)
    };
    pipeline::render(
        &state.renderer,
        inputs,
        files,
        path,
        Some(revision),
        read_tree,
    )
    .await
    .map_err(|failure| match failure {
        RenderFailure::Read(outcome) => Box::new(outcome),
        RenderFailure::Render(err) => failed(err),
    })
}

fn plan_failed(err: PlanError, revision: &str) -> RunOutcome {
    match err {
        PlanError::Problems(problems) => RunOutcome::failed(
            problems.reason(),
            format!("revision {revision} not applied, nothing pruned: {problems}"),
            true,
        ),
        err @ PlanError::Discovery { .. } => {
            RunOutcome::failed("DiscoveryFailed", err.to_string(), false)
        }
    }
}

/// The applied objects that exist: all but those skipped while absent (`sigil.dev/ssa: Ignore`,
/// `sigil.dev/reconcile: disabled`), whose health nobody can wait for.
fn present_objects(report: &RollOutReport) -> Vec<InventoryEntry> {
    report
        .apply
        .applied
        .iter()
        .filter(|a| a.outcome != Outcome::Skipped || a.fingerprint.is_some())
        .map(|a| a.entry.clone())
        .collect()
}

/// The planned objects that were applied, with the fingerprint self-heal compares against.
fn applied_objects(plan: &Plan, report: &RollOutReport) -> Vec<(Desired, Option<[u8; 32]>)> {
    report
        .apply
        .applied
        .iter()
        .filter_map(|a| {
            plan.objects
                .iter()
                .find(|d| d.entry == a.entry)
                .map(|d| (d.clone(), a.fingerprint))
        })
        .collect()
}

fn outcome_of(
    report: &RollOutReport,
    plan: &Plan,
    previous: &[InventoryEntry],
    target: &Target,
    revision: &str,
) -> RunOutcome {
    let inventory = report.inventory(plan, previous);
    if !report.apply.failures.is_empty() {
        let user = target
            .user()
            .map(|u| format!(" (applying as {u})"))
            .unwrap_or_default();
        let mut outcome = RunOutcome::failed(
            report.apply.reason(),
            format!(
                "revision {revision}: {} of {} objects failed{user}, nothing pruned: {}",
                report.apply.failures.len(),
                plan.objects.len(),
                report.apply.failure_message()
            ),
            false,
        );
        outcome.inventory = Some(inventory);
        return outcome;
    }
    if let Some(failed) = report.prune_failures() {
        let mut outcome = RunOutcome::failed(
            "PruneFailed",
            format!("revision {revision} applied, but pruning failed: {failed}"),
            false,
        );
        outcome.inventory = Some(inventory);
        return outcome;
    }
    let counts = report.apply.counts();
    let pruned = report.pruned();
    RunOutcome {
        ready: true,
        reason: "ReconciliationSucceeded",
        message: format!("Applied revision {revision}: {}", summary(&counts, pruned)),
        stalled: false,
        applied_revision: Some(revision.to_string()),
        inventory: Some(inventory),
        counts: Some((counts, pruned)),
        progressed: false,
    }
}
