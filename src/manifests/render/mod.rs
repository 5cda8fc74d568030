//! The render stage: a folder of a revision → manifest text. Plain folders pass through;
//! Kustomize overlays and Helm charts are rendered by the real `kustomize` and `helm template`
//! in a [`sandbox`], as Argo CD's repo-server does. Results are cached by (revision, path,
//! inputs), so a resync of an unchanged revision runs no renderer.

pub mod cache;
pub mod helm;
pub mod inputs;
pub mod kustomize;
pub mod metrics;
pub mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

pub use self::cache::RenderCache;
pub use self::helm::HelmInputs;
pub use self::kustomize::Kustomize;
pub use self::metrics::RenderMetrics;
pub use self::sandbox::{Limits, RunError};
use crate::api::render::RendererKind;
use crate::api::sync::SyncSpec;
use crate::manifests::source::SourceFile;

/// The programs and bounds renders use (controller flags).
#[derive(Clone, Debug, Default)]
pub struct RenderOptions {
    /// `kustomize` or `kubectl`; default: `kustomize`, else `kubectl`, found on `PATH`.
    pub kustomize: Option<PathBuf>,
    /// `helm`; default: found on `PATH`.
    pub helm: Option<PathBuf>,
    pub limits: Limits,
    /// Let kustomize run exec and KRM function plugins (off: they are refused).
    pub allow_plugins: bool,
}

impl RenderOptions {
    fn kustomize(&self) -> Option<Kustomize> {
        self.kustomize
            .clone()
            .or_else(|| sandbox::on_path("kustomize"))
            .or_else(|| sandbox::on_path("kubectl"))
            .map(Kustomize::named)
    }

    fn helm(&self) -> Option<PathBuf> {
        self.helm.clone().or_else(|| sandbox::on_path("helm"))
    }
}

/// Why a folder could not be rendered. Never holds a decrypted value: renderers see none.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{file}: {reference:?} is refused: {why}")]
    Refused {
        file: String,
        reference: String,
        why: String,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
    #[error("no {program} program: install it or name it with --{program}-binary")]
    MissingProgram { program: &'static str },
    #[error("{0}")]
    Unsupported(String),
    #[error("cannot prepare the render: {0}")]
    Prepare(std::io::Error),
    #[error(transparent)]
    Run(#[from] RunError),
}

impl RenderError {
    /// A condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Refused { .. } => "RenderRefused",
            _ => "RenderFailed",
        }
    }

    /// Whether only a change in Git or the spec can fix it.
    pub fn stalled(&self) -> bool {
        !matches!(self, Self::Prepare(_) | Self::Run(RunError::Timeout { .. }))
    }
}

/// Which renderer a folder needs, like Argo CD decides: a kustomization → Kustomize, a
/// `Chart.yaml` → Helm, else plain. `names` are the file names at the folder's top.
pub fn detect<'a>(names: impl IntoIterator<Item = &'a str>) -> RendererKind {
    let names: Vec<&str> = names.into_iter().collect();
    if names
        .iter()
        .any(|n| kustomize::KUSTOMIZATION_FILES.contains(n))
    {
        RendererKind::Kustomize
    } else if names.contains(&"Chart.yaml") {
        RendererKind::Helm
    } else {
        RendererKind::Plain
    }
}

/// The names of the files directly in `folder`, among `files` whose paths start with it.
pub fn top_level_names<'a>(files: &'a [SourceFile], folder: &str) -> Vec<&'a str> {
    let folder = folder.trim_matches('/');
    files
        .iter()
        .filter_map(|f| {
            let rest = if folder.is_empty() || folder == "." {
                Some(f.path.as_str())
            } else {
                f.path
                    .strip_prefix(folder)
                    .and_then(|r| r.strip_prefix('/'))
            }?;
            (!rest.contains('/')).then_some(rest)
        })
        .collect()
}

/// Whether the spec has Kustomize overrides (they need the Kustomize renderer).
pub fn has_overrides(spec: &SyncSpec) -> bool {
    !kustomize::overrides(spec).is_empty() || !spec.components.is_empty()
}

/// Everything a render depends on besides the tree.
#[derive(Clone, Debug)]
pub enum RenderInputs {
    Kustomize {
        overrides: serde_json::Map<String, serde_json::Value>,
        components: Vec<String>,
    },
    Helm(HelmInputs),
}

impl RenderInputs {
    pub fn renderer(&self) -> RendererKind {
        match self {
            Self::Kustomize { .. } => RendererKind::Kustomize,
            Self::Helm(_) => RendererKind::Helm,
        }
    }

    /// The cache key of these inputs for `folder` of `revision`.
    pub fn key(&self, revision: &str, folder: &str) -> [u8; 32] {
        let inputs = match self {
            Self::Kustomize {
                overrides,
                components,
            } => serde_json::json!({"kustomize": overrides, "components": components}),
            Self::Helm(inputs) => serde_json::json!({"helm": inputs}),
        };
        let mut hash = Sha256::new();
        for part in [revision, "\0", folder, "\0", &inputs.to_string()] {
            hash.update(part.as_bytes());
        }
        hash.finalize().into()
    }
}

/// Renders with the configured programs, counting runs and caching results.
pub struct Renderer {
    options: RenderOptions,
    cache: RenderCache,
    metrics: Arc<RenderMetrics>,
}

impl Renderer {
    pub fn new(options: RenderOptions, metrics: Arc<RenderMetrics>) -> Self {
        Self {
            options,
            cache: RenderCache::default(),
            metrics,
        }
    }

    /// The cached output of a render, counting the hit.
    pub fn cached(&self, key: &[u8; 32], renderer: RendererKind) -> Option<Arc<Vec<u8>>> {
        let hit = self.cache.get(key);
        if hit.is_some() {
            self.metrics.cache_hit(renderer);
        }
        hit
    }

    /// Renders `folder` of `tree` (repository-relative paths) and caches the output under `key`.
    pub async fn render(
        &self,
        tree: &[SourceFile],
        folder: &str,
        inputs: &RenderInputs,
        key: Option<[u8; 32]>,
    ) -> Result<Arc<Vec<u8>>, RenderError> {
        let renderer = inputs.renderer();
        let started = Instant::now();
        let result = self.run(tree, folder, inputs).await;
        self.metrics.rendered(
            renderer,
            started.elapsed(),
            result.as_ref().err().map(RenderError::reason),
        );
        let output = Arc::new(result?);
        if let Some(key) = key {
            self.cache.put(key, output.clone());
        }
        Ok(output)
    }

    async fn run(
        &self,
        tree: &[SourceFile],
        folder: &str,
        inputs: &RenderInputs,
    ) -> Result<Vec<u8>, RenderError> {
        let limits = self.options.limits;
        match inputs {
            RenderInputs::Kustomize {
                overrides,
                components,
            } => {
                let program = self
                    .options
                    .kustomize()
                    .ok_or(RenderError::MissingProgram {
                        program: "kustomize",
                    })?;
                kustomize::check_references(tree, folder)?;
                let sandbox = sandbox::Sandbox::with_tree(tree)?;
                kustomize::render(
                    &program,
                    &sandbox,
                    folder,
                    overrides.clone(),
                    components,
                    self.options.allow_plugins,
                    limits,
                )
                .await
            }
            RenderInputs::Helm(helm_inputs) => {
                let program = self
                    .options
                    .helm()
                    .ok_or(RenderError::MissingProgram { program: "helm" })?;
                let sandbox = sandbox::Sandbox::with_tree(tree)?;
                helm::render(&program, &sandbox, folder, helm_inputs, limits).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renderers_are_detected_like_argo_cd() {
        assert_eq!(
            detect(["kustomization.yaml", "a.yaml"]),
            RendererKind::Kustomize
        );
        assert_eq!(detect(["Kustomization"]), RendererKind::Kustomize);
        assert_eq!(
            detect(["kustomization.yml", "Chart.yaml"]),
            RendererKind::Kustomize
        );
        assert_eq!(detect(["Chart.yaml", "values.yaml"]), RendererKind::Helm);
        assert_eq!(detect(["deploy.yaml"]), RendererKind::Plain);
        let files = vec![
            SourceFile {
                path: "apps/dev/kustomization.yaml".into(),
                content: vec![],
            },
            SourceFile {
                path: "apps/dev/sub/Chart.yaml".into(),
                content: vec![],
            },
        ];
        assert_eq!(top_level_names(&files, "apps/dev/"), ["kustomization.yaml"]);
        assert_eq!(top_level_names(&files, ""), Vec::<&str>::new());
    }
}
