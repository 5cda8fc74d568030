//! `sigil diff`: what a Sync would change, a local folder against the live cluster.
//!
//! The folder is read, parsed and validated exactly as a Sync reads its Git path (a plaintext
//! Secret fails here too), then every object is applied with `dryRun=All` so the server says
//! what would result. With `--sync NAME` the Sync's own settings (target namespace,
//! ServiceAccount, ownership labels, `postBuild` variables) are used and its inventory tells what
//! would be pruned.
//! Secret values are never printed.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use kube::api::Api;

use crate::api::sync::ManifestSync;
use crate::api::sync::SyncSpec;
use crate::cli::controller::{ControllerCliError, client};
use crate::git::TreeLimits;
use crate::manifests::apply::{Mode, Outcome};
use crate::manifests::diff::object_diff;
use crate::manifests::object::describe;
use crate::manifests::pipeline::{self, Rendered, RollOut};
use crate::manifests::plan::PlanError;
use crate::manifests::render::inputs::{SyncIdentity, render_inputs};
use crate::manifests::render::{RenderError, RenderOptions, Renderer};
use crate::manifests::sops::{Keys, KeysError, keys_of};
use crate::manifests::source::{SourceError, read_local, read_local_selected};
use crate::manifests::variables;
use crate::manifests::{Owner, PlanOptions, Resolver, Target};

/// Arguments of `sigil diff`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder (or file) of manifests, as a Sync's `spec.path` would hold them.
    #[arg(long)]
    pub path: PathBuf,
    /// Path to a kubeconfig; without it, KUBECONFIG or the in-cluster config is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Sync, and default namespace of the manifests (default: the kubeconfig's).
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Compare as this Sync: its target namespace, ServiceAccount, labels and inventory (prune).
    #[arg(long)]
    pub sync: Option<String>,
    /// Namespace for namespaced objects that name none (overrides the Sync's).
    #[arg(long)]
    pub target_namespace: Option<String>,
    /// An age identity file to open SOPS-encrypted files with (repeatable); without it, the
    /// `spec.decryption` Secret of `--sync` is read from the cluster.
    #[arg(short = 'i', long = "identity", value_name = "FILE")]
    pub identities: Vec<PathBuf>,
    /// Exit with an error when anything would change (like `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
}

/// Why the diff could not be made, or (with `--exit-code`) that there are changes.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Client(#[from] ControllerCliError),
    #[error(transparent)]
    Read(#[from] SourceError),
    #[error("the manifests would be refused: {0}")]
    Refused(String),
    #[error("{path}: {source}")]
    Render { path: String, source: RenderError },
    #[error("Sync {namespace}/{name}: {source}")]
    Sync {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Identity(#[from] crate::cli::common::CliError),
    #[error("the server refused the dry run: {0}")]
    Apply(String),
    #[error("cannot write the diff: {0}")]
    Write(#[from] std::io::Error),
    #[error("{0} object(s) would change")]
    Changes(usize),
}

/// What the diff found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub create: usize,
    pub change: usize,
    pub unchanged: usize,
    pub prune: usize,
    pub skipped: usize,
}

impl From<RenderError> for DiffError {
    fn from(source: RenderError) -> Self {
        Self::Render {
            path: String::new(),
            source,
        }
    }
}

impl Summary {
    pub fn changes(&self) -> usize {
        self.create + self.change + self.prune
    }
}

/// Runs the diff against `client`, writing it to `out`.
pub async fn diff(
    client: kube::Client,
    args: &Args,
    out: &mut dyn Write,
) -> Result<Summary, DiffError> {
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    let sync = match &args.sync {
        Some(name) => Some(
            Api::<ManifestSync>::namespaced(client.clone(), &namespace)
                .get(name)
                .await
                .map_err(|source| DiffError::Sync {
                    namespace: namespace.clone(),
                    name: name.clone(),
                    source,
                })?,
        ),
        None => None,
    };
    let owner = args.sync.as_ref().map(|name| Owner {
        namespace: namespace.clone(),
        name: name.clone(),
    });
    let spec = sync.as_ref().map(|s| s.spec.clone()).unwrap_or_default();
    let files = rendered_files(&client, &spec, &namespace, args).await?;
    let resolver = Resolver::new(client.clone());
    let options = PlanOptions {
        default_namespace: namespace.clone(),
        target_namespace: args
            .target_namespace
            .clone()
            .or(spec.target_namespace.clone())
            .filter(|ns| !ns.is_empty()),
        allow_plaintext_secrets: spec.allow_plaintext_secrets,
        owner: owner.clone(),
    };
    let keys = decryption_keys(&client, args, &spec, &namespace).await?;
    let vars = variables::load(&client, &namespace, spec.post_build.as_ref())
        .await
        .map_err(|e| DiffError::Refused(e.to_string()))?;
    let mut plan = pipeline::desired(&files, &vars, keys.as_ref(), &resolver, &options)
        .await
        .map_err(|e| match e {
            PlanError::Problems(problems) => DiffError::Refused(problems.to_string()),
            other => DiffError::Apply(other.to_string()),
        })?;
    crate::manifests::ignore::resolve(&spec.ignore, &mut plan).map_err(DiffError::Refused)?;
    let target = Target::as_service_account(
        client.clone(),
        &namespace,
        spec.service_account_name.as_deref(),
    );
    let previous = sync
        .as_ref()
        .and_then(|s| s.status.as_ref())
        .map(|s| s.inventory.clone())
        .unwrap_or_default();
    let how = RollOut {
        target: &target,
        resolver: &resolver,
        owner: owner.as_ref(),
        mode: Mode::DryRun,
        concurrency: 8,
        crd_timeout: Duration::from_secs(30),
        prune: spec.prune,
    };
    let report = pipeline::roll_out(how, &plan, &previous).await;
    if !report.apply.failures.is_empty() {
        return Err(DiffError::Apply(report.apply.failure_message()));
    }
    let mut summary = Summary::default();
    let mut applied = report.apply.applied;
    applied.sort_by_key(|a| plan.objects.iter().position(|d| d.entry == a.entry));
    for object in &applied {
        let location = plan
            .objects
            .iter()
            .find(|d| d.entry == object.entry)
            .map(|d| format!("{}:{}", d.file, d.line))
            .unwrap_or_default();
        let name = describe(&object.entry);
        match object.outcome {
            Outcome::Unchanged => summary.unchanged += 1,
            Outcome::Skipped => {
                summary.skipped += 1;
                writeln!(
                    out,
                    "= {name} ({location}): skipped, sigil.dev/reconcile: disabled"
                )?;
            }
            Outcome::Created => {
                summary.create += 1;
                writeln!(out, "+ {name} ({location}): would be created")?;
                if let Some(result) = &object.result {
                    out.write_all(object_diff(None, result).as_bytes())?;
                }
            }
            Outcome::Configured => {
                summary.change += 1;
                writeln!(out, "~ {name} ({location}): would be changed")?;
                if let Some(result) = &object.result {
                    out.write_all(object_diff(object.live.as_ref(), result).as_bytes())?;
                }
            }
        }
    }
    if let Some(pruned) = &report.prune {
        for entry in &pruned.pruned {
            summary.prune += 1;
            writeln!(out, "- {}: would be pruned", describe(entry))?;
        }
        for (entry, reason) in &pruned.kept {
            writeln!(out, "= {}: left in place ({reason})", describe(entry))?;
        }
    }
    writeln!(
        out,
        "{} to create, {} to change, {} unchanged, {} to prune",
        summary.create, summary.change, summary.unchanged, summary.prune
    )?;
    Ok(summary)
}

/// The folder's files, rendered as the Sync would render them (Kustomize overlays reach the
/// rest of the repository: the nearest folder above with a `.git` is its root).
async fn rendered_files(
    client: &kube::Client,
    spec: &SyncSpec,
    namespace: &str,
    args: &Args,
) -> Result<Rendered, DiffError> {
    let files = read_local(&args.path, TreeLimits::default())?;
    let shown = args.path.display().to_string();
    let kind = pipeline::renderer_of(spec, &files, &shown);
    let render_error = |source| DiffError::Render {
        path: shown.clone(),
        source,
    };
    let identity = SyncIdentity {
        namespace,
        name: args.sync.as_deref().unwrap_or("diff"),
    };
    let inputs = render_inputs(client, spec, identity, kind)
        .await
        .map_err(render_error)?;
    if inputs.is_none() {
        return Ok(Rendered::plain(files));
    }
    let folder = std::fs::canonicalize(&args.path).map_err(|e| SourceError::Io {
        path: shown.clone(),
        source: e,
    })?;
    let root = folder
        .ancestors()
        .find(|dir| dir.join(".git").exists())
        .unwrap_or(&folder)
        .to_path_buf();
    let relative = folder
        .strip_prefix(&root)
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let read_tree = || async {
        let prefix = format!("{}/", root.display());
        let mut tree = read_local_selected(&root, TreeLimits::default(), |_| true)?;
        for file in &mut tree {
            file.path = file
                .path
                .strip_prefix(&prefix)
                .unwrap_or(&file.path)
                .to_string();
        }
        Ok::<_, DiffError>(tree)
    };
    let renderer = Renderer::new(RenderOptions::default(), Default::default());
    pipeline::render(&renderer, inputs, files, &relative, None, read_tree)
        .await
        .map_err(|e| match e {
            DiffError::Render { source, .. } => render_error(source),
            other => other,
        })
}

/// The identities to open SOPS files with: `--identity` files, else the Sync's Secret.
async fn decryption_keys(
    client: &kube::Client,
    args: &Args,
    spec: &SyncSpec,
    namespace: &str,
) -> Result<Option<Keys>, DiffError> {
    if args.identities.is_empty() {
        return Ok(keys_of(client, spec.decryption.as_ref(), namespace).await?);
    }
    let identities = crate::cli::common::read_identities(&args.identities)?;
    Ok(Some(Keys::new(identities)))
}

/// Runs `sigil diff`.
pub async fn run(args: Args) -> Result<(), DiffError> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let summary = diff(client, &args, &mut std::io::stdout()).await?;
    if args.exit_code && summary.changes() > 0 {
        return Err(DiffError::Changes(summary.changes()));
    }
    Ok(())
}
