//! Where a run's files come from: the Sync's GitSource, its revision, and the files of that
//! revision's folder (fetching the commit when the cache lacks it).

use kube::ResourceExt;
use kube::api::Api;

use super::RunOutcome;
use crate::api::conditions;
use crate::api::git_source::GitSource;
use crate::api::sync::ManifestSync;
use crate::controller::Context;
use crate::controller::git_source;
use crate::git::{Cache, Reference, TreeError, TreeLimits};
use crate::manifests::source::{SourceFile, is_manifest_path};

/// The Sync's GitSource and its revision, or why there is none yet.
pub(super) async fn source_revision(
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
pub(super) async fn read_files(
    ctx: &Context,
    cache: &Cache,
    source: &GitSource,
    commit: &str,
    path: &str,
) -> Result<Vec<SourceFile>, RunOutcome> {
    read(ctx, cache, source, commit, path, is_folder_file).await
}

/// Manifests, and kustomize's extensionless `Kustomization`.
fn is_folder_file(path: &str) -> bool {
    is_manifest_path(path) || path == "Kustomization" || path.ends_with("/Kustomization")
}

/// Every file of the revision (hidden folders aside), for a renderer: an overlay reaches its
/// bases elsewhere in the repository.
pub(super) async fn read_tree(
    ctx: &Context,
    cache: &Cache,
    source: &GitSource,
    commit: &str,
) -> Result<Vec<SourceFile>, RunOutcome> {
    read(ctx, cache, source, commit, "", |_| true).await
}

async fn read(
    ctx: &Context,
    cache: &Cache,
    source: &GitSource,
    commit: &str,
    path: &str,
    select: fn(&str) -> bool,
) -> Result<Vec<SourceFile>, RunOutcome> {
    let namespace = source.namespace().unwrap_or_default();
    let dir = cache.repo_dir(&namespace, &source.name_any(), &source.spec.url);
    let read = || {
        cache.read_folder(
            dir.clone(),
            commit.to_string(),
            path.to_string(),
            select,
            TreeLimits::default(),
        )
    };
    let files = match read().await {
        Err(TreeError::MissingCommit { .. }) => {
            git_source::fetch(
                &ctx.client,
                cache,
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
