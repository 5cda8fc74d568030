//! Server-side apply of a [`Plan`], stage by stage, writing nothing that would not change.
//!
//! For each object: the live object (from one LIST per resource and namespace, or a GET), an
//! ownership check (an object labelled for another Sync is a conflict, never
//! overwritten), then a dry-run apply. Only when the dry-run result differs from the live
//! object is the real apply sent. What is applied to an existing object follows the manifest's
//! [`ssa`] policy and ignored fields; `sigil.dev/force: enabled` recreates an object whose
//! immutable field changed. After the CRD stage, the CRDs are awaited until
//! `Established` and discovery is refreshed.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::ApiResource;
use serde_json::Value;

use super::client::{ApiError, Target};
use super::discovery::Resolver;
use super::fields::apply_is_noop;
use super::object::{Owner, comparable, fingerprint, reconcile_disabled};
use super::plan::{Desired, Plan, Stage};
use super::ssa::{self, Policy};
use crate::api::sync::InventoryEntry;

/// Really apply, or only ask the server what would happen (`sigil diff`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Apply,
    DryRun,
}

/// What happened to one object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    /// `sigil.dev/reconcile: disabled` on the object in Git or live.
    Skipped,
}

/// One object handled.
#[derive(Clone, Debug)]
pub struct Applied {
    pub entry: InventoryEntry,
    pub resource: ApiResource,
    pub outcome: Outcome,
    /// Of the object as it is now live (None when skipped without a live object, or in a dry run
    /// of a new object).
    pub fingerprint: Option<[u8; 32]>,
    /// In [`Mode::DryRun`]: the live object before, and the dry-run result.
    pub live: Option<Value>,
    pub result: Option<Value>,
    /// Whether the server was asked with a dry run (false when `managedFields` settled it).
    pub dry_run: bool,
}

/// Why an object failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    /// Labelled for another Sync, or a write conflict.
    Conflict,
    /// The identity applying (maybe an impersonated ServiceAccount) lacks the right.
    Forbidden,
    /// Refused by validation on the server.
    Invalid,
    Other,
}

#[derive(Clone, Debug)]
pub struct Failure {
    pub entry: InventoryEntry,
    pub location: String,
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    /// A failure of the object `desired` (named in the message by its file and line).
    fn of(desired: &Desired, kind: FailureKind, message: String) -> Self {
        Failure {
            entry: desired.entry.clone(),
            location: format!("{}:{}", desired.file, desired.line),
            kind,
            message,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            super::object::describe(&self.entry),
            self.location,
            self.message
        )
    }
}

/// The outcome of applying a plan.
#[derive(Clone, Debug, Default)]
pub struct ApplyReport {
    pub applied: Vec<Applied>,
    pub failures: Vec<Failure>,
}

/// Counts per outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub configured: usize,
    pub unchanged: usize,
    pub skipped: usize,
    /// Dry-run calls made (objects `managedFields` could not settle).
    pub dry_runs: usize,
}

impl Counts {
    /// Objects written.
    pub fn writes(&self) -> usize {
        self.created + self.configured
    }
}

impl ApplyReport {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for applied in &self.applied {
            counts.dry_runs += usize::from(applied.dry_run);
            match applied.outcome {
                Outcome::Created => counts.created += 1,
                Outcome::Configured => counts.configured += 1,
                Outcome::Unchanged => counts.unchanged += 1,
                Outcome::Skipped => counts.skipped += 1,
            }
        }
        counts
    }

    /// The condition reason of a failed apply.
    pub fn reason(&self) -> &'static str {
        match self
            .failures
            .iter()
            .map(|f| f.kind)
            .min_by_key(|k| *k as u8)
        {
            Some(FailureKind::Conflict) => "OwnershipConflict",
            Some(FailureKind::Forbidden) => "Forbidden",
            Some(FailureKind::Invalid) => "ApplyRejected",
            _ => "ApplyFailed",
        }
    }

    /// A message naming the failed objects (at most five).
    pub fn failure_message(&self) -> String {
        let mut shown: Vec<String> = self
            .failures
            .iter()
            .take(5)
            .map(ToString::to_string)
            .collect();
        if self.failures.len() > 5 {
            shown.push(format!("and {} more", self.failures.len() - 5));
        }
        shown.join("; ")
    }
}

/// How applies run.
#[derive(Clone, Copy, Debug)]
pub struct ApplyOptions<'a> {
    pub owner: Option<&'a Owner>,
    pub mode: Mode,
    /// Objects in flight at once within a stage.
    pub concurrency: usize,
    /// How long to wait for new CRDs to be Established.
    pub crd_timeout: Duration,
}

/// Applies the plan stage by stage; stops before the next stage when one fails.
pub async fn apply_plan(
    target: &Target,
    resolver: &Resolver,
    plan: &Plan,
    options: ApplyOptions<'_>,
) -> ApplyReport {
    let mut report = ApplyReport::default();
    for stage in [
        Stage::CustomResourceDefinitions,
        Stage::Namespaces,
        Stage::Objects,
    ] {
        let objects: Vec<&Desired> = plan.stage(stage).collect();
        if objects.is_empty() {
            continue;
        }
        let live = list_live(target, &objects).await;
        let mut pending = Vec::with_capacity(objects.len());
        for desired in objects.iter().copied() {
            let hint = live.get(&key(desired)).cloned();
            pending.push(apply_one(
                target,
                desired,
                options.owner,
                options.mode,
                hint,
            ));
        }
        let results: Vec<Result<Applied, Failure>> = futures::stream::iter(pending)
            .buffer_unordered(options.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            match result {
                Ok(applied) => report.applied.push(applied),
                Err(failure) => report.failures.push(failure),
            }
        }
        if !report.failures.is_empty() {
            return report;
        }
        if stage == Stage::CustomResourceDefinitions && options.mode == Mode::Apply {
            let changed: Vec<&Desired> = objects
                .iter()
                .copied()
                .filter(|d| {
                    report.applied.iter().any(|a| {
                        a.entry == d.entry
                            && matches!(a.outcome, Outcome::Created | Outcome::Configured)
                    })
                })
                .collect();
            if let Err(failure) = await_established(target, &changed, options.crd_timeout).await {
                report.failures.push(failure);
                return report;
            }
            for crd in &objects {
                for version in crd.object["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let (Some(group), Some(v)) = (
                        crd.object["spec"]["group"].as_str(),
                        version["name"].as_str(),
                    ) {
                        resolver.forget(&format!("{group}/{v}"));
                    }
                }
            }
        }
    }
    report
}

fn key(desired: &Desired) -> (String, String, String) {
    (
        desired.entry.api_version.clone(),
        desired.entry.kind.clone(),
        format!("{}/{}", desired.entry.namespace, desired.entry.name),
    )
}

/// The live state of the stage's objects by one LIST per resource and namespace: `Some(None)`
/// for an object the LIST shows absent. A failed LIST (for example forbidden to an impersonated
/// account that may only get and patch) leaves its objects out, to be read with a GET each.
async fn list_live(
    target: &Target,
    objects: &[&Desired],
) -> HashMap<(String, String, String), Option<Value>> {
    let mut groups: HashMap<(String, String, String), (&ApiResource, Option<&str>)> =
        HashMap::new();
    for d in objects {
        groups
            .entry((
                d.entry.api_version.clone(),
                d.entry.kind.clone(),
                d.entry.namespace.clone(),
            ))
            .or_insert((&d.kind.resource, d.namespace()));
    }
    let mut out = HashMap::new();
    for ((api_version, kind, namespace), (resource, ns)) in groups {
        let Ok(items) = target.list(resource, ns, "").await else {
            continue;
        };
        let mut found: HashMap<String, Value> = items
            .into_iter()
            .filter_map(|item| {
                let name = item.pointer("/metadata/name")?.as_str()?.to_string();
                Some((name, item))
            })
            .collect();
        for d in objects.iter().filter(|d| {
            d.entry.api_version == api_version
                && d.entry.kind == kind
                && d.entry.namespace == namespace
        }) {
            out.insert(key(d), found.remove(&d.entry.name));
        }
    }
    out
}

fn failure(desired: &Desired, err: ApiError) -> Failure {
    let kind = match err.code {
        403 => FailureKind::Forbidden,
        409 => FailureKind::Conflict,
        400 | 422 => FailureKind::Invalid,
        _ => FailureKind::Other,
    };
    Failure::of(desired, kind, err.message)
}

/// Applies one object; `live` is the live object (`Some(None)`: known to be absent) when already
/// known, None to GET it. The manifest's `sigil.dev/ssa` policy and ignored fields decide what is
/// applied ([`ssa`]).
pub async fn apply_one(
    target: &Target,
    desired: &Desired,
    owner: Option<&Owner>,
    mode: Mode,
    live: Option<Option<Value>>,
) -> Result<Applied, Failure> {
    let resource = &desired.kind.resource;
    let namespace = desired.namespace();
    let live = match live {
        Some(live) => live,
        None => target
            .get(resource, namespace, &desired.entry.name)
            .await
            .map_err(|e| failure(desired, e))?,
    };
    let ignored = desired.ignored.as_slice();
    let policy = ssa::policy(&desired.object);
    let done = |outcome, fingerprint, live: Option<Value>, result: Option<Value>| Applied {
        entry: desired.entry.clone(),
        resource: resource.clone(),
        outcome,
        fingerprint,
        dry_run: result.is_some() && outcome != Outcome::Created,
        live: if mode == Mode::DryRun { live } else { None },
        result: if mode == Mode::DryRun { result } else { None },
    };
    let Some(live) = live else {
        if reconcile_disabled(&desired.object) || policy == Policy::Ignore {
            return Ok(done(Outcome::Skipped, None, None, None));
        }
        let result = match target
            .apply(resource, namespace, &desired.object, mode == Mode::DryRun)
            .await
        {
            Ok(result) => result,
            // A dry run of an object whose CRD is only in the source: the kind is not served yet.
            Err(err) if mode == Mode::DryRun && err.is_not_found() => desired.object.clone(),
            Err(err) => return Err(failure(desired, err)),
        };
        let print = (mode == Mode::Apply).then(|| fingerprint(&result, ignored));
        return Ok(done(Outcome::Created, print, None, Some(result)));
    };
    if matches!(policy, Policy::Ignore | Policy::IfNotPresent) {
        let print = fingerprint(&live, ignored);
        return Ok(done(Outcome::Skipped, Some(print), Some(live), None));
    }
    if let (Some(owner), Some(other)) = (owner, Owner::of(&live))
        && other != *owner
    {
        return Err(Failure::of(
            desired,
            FailureKind::Conflict,
            format!(
                "already managed by Sync {other} (labels {}); not applied",
                super::SYNC_NAME_LABEL
            ),
        ));
    }
    if reconcile_disabled(&live) || reconcile_disabled(&desired.object) {
        let print = fingerprint(&live, ignored);
        return Ok(done(Outcome::Skipped, Some(print), Some(live), None));
    }
    let body = ssa::body_for_existing(desired, &live);
    if apply_is_noop(&body, &live, crate::api::FIELD_MANAGER) {
        let print = fingerprint(&live, ignored);
        return Ok(done(Outcome::Unchanged, Some(print), Some(live), None));
    }
    let dry = match target.apply(resource, namespace, &body, true).await {
        Ok(dry) => dry,
        Err(err) if ssa::force(&desired.object) && ssa::is_immutable_error(&err) => {
            if mode == Mode::DryRun {
                let recreated = Some(desired.object.clone());
                return Ok(done(Outcome::Configured, None, Some(live), recreated));
            }
            let result = recreate(target, desired, &err).await?;
            let mut applied = done(
                Outcome::Configured,
                Some(fingerprint(&result, ignored)),
                None,
                None,
            );
            applied.dry_run = true;
            return Ok(applied);
        }
        Err(err) => return Err(failure(desired, err)),
    };
    if comparable(&dry) == comparable(&live) {
        let print = fingerprint(&live, ignored);
        return Ok(done(Outcome::Unchanged, Some(print), Some(live), Some(dry)));
    }
    if mode == Mode::DryRun {
        return Ok(done(Outcome::Configured, None, Some(live), Some(dry)));
    }
    let result = target
        .apply(resource, namespace, &body, false)
        .await
        .map_err(|e| failure(desired, e))?;
    let print = fingerprint(&result, ignored);
    let mut applied = done(Outcome::Configured, Some(print), None, None);
    applied.dry_run = true;
    Ok(applied)
}

/// How long a forced recreation waits for the old object to be gone.
const RECREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// `sigil.dev/force: enabled` and an immutable field changed: deletes the object, waits until
/// it is gone, and creates it from the manifest.
async fn recreate(
    target: &Target,
    desired: &Desired,
    refused: &ApiError,
) -> Result<Value, Failure> {
    let resource = &desired.kind.resource;
    let namespace = desired.namespace();
    let name = &desired.entry.name;
    tracing::info!(object = %desired.describe(), reason = %refused.message, "immutable field changed; deleting and recreating ({} enabled)", super::FORCE_ANNOTATION);
    target
        .delete(resource, namespace, name)
        .await
        .map_err(|e| failure(desired, e))?;
    let deadline = Instant::now() + RECREATE_TIMEOUT;
    while target
        .get(resource, namespace, name)
        .await
        .map_err(|e| failure(desired, e))?
        .is_some()
    {
        if Instant::now() > deadline {
            return Err(Failure::of(
                desired,
                FailureKind::Other,
                format!(
                    "deleted to be recreated ({}), but still there after {}s",
                    refused.message,
                    RECREATE_TIMEOUT.as_secs()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    target
        .apply(resource, namespace, &desired.object, false)
        .await
        .map_err(|e| failure(desired, e))
}

fn established(crd: &Value) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

/// Waits until every CRD reports `Established=True`.
async fn await_established(
    target: &Target,
    crds: &[&Desired],
    timeout: Duration,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    for crd in crds {
        loop {
            let live = target
                .get(&crd.kind.resource, None, &crd.entry.name)
                .await
                .map_err(|e| failure(crd, e))?;
            if live.as_ref().is_some_and(established) {
                break;
            }
            if Instant::now() > deadline {
                return Err(Failure::of(
                    crd,
                    FailureKind::Other,
                    format!("not Established within {}s", timeout.as_secs()),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(outcome: Outcome) -> Applied {
        Applied {
            entry: InventoryEntry::default(),
            resource: ApiResource {
                group: String::new(),
                version: "v1".into(),
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                plural: "configmaps".into(),
            },
            outcome,
            fingerprint: None,
            live: None,
            result: None,
            dry_run: false,
        }
    }

    #[test]
    fn counts_and_reasons() {
        let mut report = ApplyReport {
            applied: vec![
                applied(Outcome::Created),
                applied(Outcome::Unchanged),
                applied(Outcome::Unchanged),
                applied(Outcome::Configured),
            ],
            failures: Vec::new(),
        };
        let counts = report.counts();
        assert_eq!(
            (counts.created, counts.configured, counts.unchanged),
            (1, 1, 2)
        );
        assert_eq!(counts.writes(), 2);
        report.failures.push(Failure {
            entry: InventoryEntry::default(),
            location: "a.yaml:1".into(),
            kind: FailureKind::Forbidden,
            message: "no".into(),
        });
        assert_eq!(report.reason(), "Forbidden");
        report.failures.push(Failure {
            entry: InventoryEntry::default(),
            location: "a.yaml:2".into(),
            kind: FailureKind::Conflict,
            message: "mine".into(),
        });
        assert_eq!(report.reason(), "OwnershipConflict");
    }
}
