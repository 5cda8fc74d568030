//! The stages a Sync (and `sigil diff`) runs on a revision's files: render ([`render`]), parse,
//! substitute `spec.postBuild` variables, decrypt SOPS documents and plan ([`desired`]), then
//! apply and — only after a fully successful apply — prune ([`roll_out`]).
//! Substitution comes before decryption, so a decrypted value is never substituted into.
//! Reading the files and rendering them come before; what a caller does with the result
//! (status, events, a printed diff) comes after.

use std::future::Future;
use std::time::Duration;

use super::apply::{ApplyOptions, ApplyReport, Mode, apply_plan};
use super::client::Target;
use super::discovery::Resolver;
use super::object::{Owner, describe, same_object};
use super::parse::{Manifest, parse_files};
use super::plan::{
    Plan, PlanError, PlanOptions, Problem, ProblemKind, Problems, plan, source_problems,
};
use super::prune::{PruneReport, prune};
use super::render::{self, RenderError, RenderInputs, Renderer};
use super::sops::{self, Keys};
use super::source::SourceFile;
use super::substitute::{Variables, substitute_object};
use crate::api::render::RendererKind;
use crate::api::sync::{InventoryEntry, SyncSpec};

/// Which renderer a folder uses: the spec's, else detected from the folder's files.
pub fn renderer_of(spec: &SyncSpec, files: &[SourceFile], folder: &str) -> RendererKind {
    spec.renderer
        .unwrap_or_else(|| render::detect(render::top_level_names(files, folder)))
}

/// What the render stage gives the next ones.
pub struct Rendered {
    /// The files to parse.
    pub files: Vec<SourceFile>,
    /// The SOPS files the documents among `files` may come from: the folder's own, or for
    /// rendered output the repository's (only read when the output holds a SOPS document).
    pub sops_sources: Vec<SourceFile>,
}

impl Rendered {
    /// A plain folder: its files are parsed, and hold their own SOPS files.
    pub fn plain(files: Vec<SourceFile>) -> Self {
        let sops_sources = sops_files(&files);
        Self {
            files,
            sops_sources,
        }
    }
}

/// The files to parse: the folder's own (plain), or the renderer's output — from the cache
/// when `revision` was rendered with the same inputs before, else by running the renderer on
/// the whole tree `read_tree` gives (repository-relative paths).
pub async fn render<F, Fut, E>(
    renderer: &Renderer,
    inputs: Option<RenderInputs>,
    files: Vec<SourceFile>,
    folder: &str,
    revision: Option<&str>,
    read_tree: F,
) -> Result<Rendered, E>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Vec<SourceFile>, E>>,
    E: From<RenderError>,
{
    let Some(inputs) = inputs else {
        return Ok(Rendered::plain(files));
    };
    let kind = inputs.renderer();
    let key = revision.map(|r| inputs.key(r, folder));
    let shown = format!("{} ({} output)", folder_name(folder), kind.as_str());
    let (output, tree) = match key.as_ref().and_then(|k| renderer.cached(k, kind)) {
        Some(output) => (output, None),
        None => {
            let tree = read_tree().await?;
            let output = renderer.render(&tree, folder, &inputs, key).await?;
            (output, Some(tree))
        }
    };
    let sops_sources = if sops::may_hold_sops(&output) {
        let tree = match tree {
            Some(tree) => tree,
            None => read_tree().await?,
        };
        sops_files(&tree)
    } else {
        Vec::new()
    };
    Ok(Rendered {
        files: vec![SourceFile {
            path: shown,
            content: output.to_vec(),
        }],
        sops_sources,
    })
}

fn sops_files(files: &[SourceFile]) -> Vec<SourceFile> {
    files
        .iter()
        .filter(|f| sops::may_hold_sops(&f.content))
        .cloned()
        .collect()
}

fn folder_name(folder: &str) -> &str {
    match folder.trim_matches('/') {
        "" => ".",
        name => name,
    }
}

/// Parses every file, substitutes `vars` (see [`super::substitute`]), opens the SOPS documents
/// with `keys` and validates every document (all before anything is applied).
pub async fn desired(
    rendered: &Rendered,
    vars: &Variables,
    keys: Option<&Keys>,
    resolver: &Resolver,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let (manifests, parse_errors) = parse_files(&rendered.files);
    let mut problems = source_problems(&manifests, parse_errors, options);
    let (manifests, unsubstituted) = substituted(manifests, vars);
    problems.extend(unsubstituted);
    let (manifests, unopened) = sops::open_manifests(manifests, &rendered.sops_sources, keys);
    problems.extend(unopened.into_iter().map(|u| Problem {
        kind: ProblemKind::Decryption,
        location: u.location,
        message: u.error.to_string(),
    }));
    if problems.iter().any(|p| p.kind == ProblemKind::Decryption) {
        return Err(PlanError::Problems(Problems(problems)));
    }
    plan(manifests, problems, resolver, options).await
}

/// The documents with `vars` substituted; a document that fails is left out, with its problem.
fn substituted(manifests: Vec<Manifest>, vars: &Variables) -> (Vec<Manifest>, Vec<Problem>) {
    let mut problems = Vec::new();
    let manifests = manifests
        .into_iter()
        .filter_map(
            |mut manifest| match substitute_object(&manifest.object, vars) {
                Ok(None) => Some(manifest),
                Ok(Some(object)) => {
                    manifest.object = object;
                    Some(manifest)
                }
                Err(err) => {
                    problems.push(Problem {
                        kind: ProblemKind::Substitution,
                        location: manifest.location(),
                        message: format!("{} {}: {err}", manifest.kind(), manifest.name()),
                    });
                    None
                }
            },
        )
        .collect();
    (manifests, problems)
}

/// How a plan is rolled out.
#[derive(Clone, Copy)]
pub struct RollOut<'a> {
    pub target: &'a Target,
    pub resolver: &'a Resolver,
    pub owner: Option<&'a Owner>,
    pub mode: Mode,
    /// Objects applied at once within a stage.
    pub concurrency: usize,
    /// How long to wait for new CRDs to be Established.
    pub crd_timeout: Duration,
    /// Delete (or list, in a dry run) what the previous inventory has and the plan has not.
    pub prune: bool,
}

/// What a roll-out did.
pub struct RollOutReport {
    pub apply: ApplyReport,
    /// None when prune was off, had no owner, or the apply failed (nothing is pruned then).
    pub prune: Option<PruneReport>,
}

impl RollOutReport {
    /// The inventory after the roll-out: after a failed apply the previous one plus what was
    /// applied; otherwise the plan's objects plus those whose deletion failed.
    pub fn inventory(&self, plan: &Plan, previous: &[InventoryEntry]) -> Vec<InventoryEntry> {
        if !self.apply.failures.is_empty() {
            let mut inventory = previous.to_vec();
            for applied in &self.apply.applied {
                if !inventory.iter().any(|e| same_object(e, &applied.entry)) {
                    inventory.push(applied.entry.clone());
                }
            }
            return inventory;
        }
        let mut inventory = plan.entries();
        if let Some(pruned) = &self.prune {
            inventory.extend(pruned.failures.iter().map(|(e, _)| e.clone()));
        }
        inventory
    }

    /// How many objects were pruned.
    pub fn pruned(&self) -> usize {
        self.prune.as_ref().map_or(0, |p| p.pruned.len())
    }

    /// The failed deletions, one `Kind/name: why` each, joined; None when there were none.
    pub fn prune_failures(&self) -> Option<String> {
        let failures = &self.prune.as_ref()?.failures;
        (!failures.is_empty()).then(|| {
            failures
                .iter()
                .map(|(e, m)| format!("{}: {m}", describe(e)))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// Applies the plan stage by stage, then prunes what left it when everything applied.
pub async fn roll_out(how: RollOut<'_>, plan: &Plan, previous: &[InventoryEntry]) -> RollOutReport {
    let apply = apply_plan(
        how.target,
        how.resolver,
        plan,
        ApplyOptions {
            owner: how.owner,
            mode: how.mode,
            concurrency: how.concurrency,
            crd_timeout: how.crd_timeout,
        },
    )
    .await;
    let prune = match how.owner {
        Some(owner) if how.prune && apply.failures.is_empty() => Some(
            prune(
                how.target,
                how.resolver,
                previous,
                &plan.entries(),
                owner,
                how.mode,
            )
            .await,
        ),
        _ => None,
    };
    RollOutReport { apply, prune }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(line: usize, object: serde_json::Value) -> Manifest {
        Manifest {
            file: "apps/settings.yaml".into(),
            line,
            object,
        }
    }

    #[test]
    fn substitution_keeps_good_documents_and_names_the_bad_one_without_its_value() {
        let mut vars = Variables::default();
        vars.extend([("env", "prod"), ("secret", "[s3cret")])
            .expect("names");
        let good = manifest(
            1,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "a"}, "data": {"env": "${env}"}}),
        );
        let untouched = manifest(
            8,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}),
        );
        let bad = manifest(
            12,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c"}, "data": {"x": "${secret}"}}),
        );
        let (kept, problems) = substituted(vec![good, untouched.clone(), bad], &vars);
        assert_eq!(kept.len(), 2);
        assert_eq!(kept[0].object.pointer("/data/env"), Some(&json!("prod")));
        assert_eq!(kept[1], untouched);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let problem = &problems[0];
        assert_eq!(problem.kind, ProblemKind::Substitution);
        assert_eq!(problem.location, "apps/settings.yaml:12");
        assert!(problem.message.starts_with("ConfigMap c: "), "{problem}");
        assert!(!problem.message.contains("s3cret"), "{problem}");
        assert_eq!(
            Problems(problems).reason(),
            "SubstitutionFailed",
            "the condition reason"
        );
    }
}
