//! Kustomize: the real `kustomize build` (or `kubectl kustomize`) of a folder, with root-only
//! loading and no plugins unless the controller allows them. Before it runs, every path the
//! reachable kustomizations name is checked to stay inside the repository: an absolute path, a
//! remote URL or a `..` past the root is refused here with a clear error. A Sync's Flux-style
//! overrides are applied by wrapping the folder in a generated kustomization, never by editing
//! the folder.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::RenderError;
use super::sandbox::{Limits, Sandbox};
use crate::api::render::KustomizePatch;
use crate::api::sync::SyncSpec;
use crate::manifests::source::SourceFile;

/// File names that make a folder a kustomization, in kustomize's order of preference.
pub const KUSTOMIZATION_FILES: [&str; 3] =
    ["kustomization.yaml", "kustomization.yml", "Kustomization"];

/// The kustomize program.
#[derive(Clone, Debug)]
pub enum Kustomize {
    /// A `kustomize` binary: `kustomize build DIR`.
    Standalone(PathBuf),
    /// `kubectl kustomize DIR` (kustomize built into kubectl).
    Kubectl(PathBuf),
}

impl Kustomize {
    /// A named program: `kubectl*` runs as `kubectl kustomize`, anything else as `kustomize build`.
    pub fn named(path: PathBuf) -> Self {
        let is_kubectl = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("kubectl"));
        if is_kubectl {
            Self::Kubectl(path)
        } else {
            Self::Standalone(path)
        }
    }

    fn program(&self) -> &Path {
        match self {
            Self::Standalone(p) | Self::Kubectl(p) => p,
        }
    }

    fn args(&self, dir: &Path, allow_plugins: bool) -> Vec<OsString> {
        let mut args: Vec<OsString> = match self {
            Self::Standalone(_) => vec!["build".into()],
            Self::Kubectl(_) => vec!["kustomize".into()],
        };
        args.push(dir.into());
        args.push("--load-restrictor=LoadRestrictionsRootOnly".into());
        if allow_plugins {
            args.push("--enable-alpha-plugins".into());
            args.push("--enable-exec".into());
        }
        args
    }
}

/// The Flux Kustomization overrides of a Sync, as kustomization fields.
pub fn overrides(spec: &SyncSpec) -> serde_json::Map<String, Value> {
    let mut fields = serde_json::Map::new();
    if let Some(prefix) = spec.name_prefix.as_ref().filter(|p| !p.is_empty()) {
        fields.insert("namePrefix".into(), json!(prefix));
    }
    if let Some(suffix) = spec.name_suffix.as_ref().filter(|s| !s.is_empty()) {
        fields.insert("nameSuffix".into(), json!(suffix));
    }
    if let Some(common) = &spec.common_metadata {
        if !common.labels.is_empty() {
            fields.insert(
                "labels".into(),
                json!([{"pairs": common.labels, "includeSelectors": false}]),
            );
        }
        if !common.annotations.is_empty() {
            fields.insert("commonAnnotations".into(), json!(common.annotations));
        }
    }
    if !spec.patches.is_empty() {
        let patches: Vec<Value> = spec.patches.iter().map(patch_field).collect();
        fields.insert("patches".into(), Value::Array(patches));
    }
    if !spec.images.is_empty() {
        fields.insert("images".into(), json!(spec.images));
    }
    fields
}

fn patch_field(patch: &KustomizePatch) -> Value {
    let mut field = json!({"patch": patch.patch});
    if let Some(target) = &patch.target {
        field["target"] = json!(target);
    }
    field
}

/// Renders `folder` (repository-relative) of the sandboxed tree.
pub async fn render(
    program: &Kustomize,
    sandbox: &Sandbox,
    folder: &str,
    overrides: serde_json::Map<String, Value>,
    components: &[String],
    allow_plugins: bool,
    limits: Limits,
) -> Result<Vec<u8>, RenderError> {
    let repo = sandbox.repo();
    let dir = if overrides.is_empty() && components.is_empty() {
        repo.join(folder)
    } else {
        wrap(sandbox, folder, overrides, components)?
    };
    let args = program.args(&dir, allow_plugins);
    Ok(sandbox.run(program.program(), &args, &repo, limits).await?)
}

/// Writes the generated kustomization that adds the overrides around `folder`.
fn wrap(
    sandbox: &Sandbox,
    folder: &str,
    mut fields: serde_json::Map<String, Value>,
    components: &[String],
) -> Result<PathBuf, RenderError> {
    let target = sandbox.repo().join(folder);
    fields.insert(
        "apiVersion".into(),
        json!("kustomize.config.k8s.io/v1beta1"),
    );
    fields.insert("kind".into(), json!("Kustomization"));
    fields.insert("resources".into(), json!([target]));
    if !components.is_empty() {
        let mut paths = Vec::new();
        for component in components {
            let joined = join_inside(folder, component).map_err(|why| RenderError::Refused {
                file: "spec.components".to_string(),
                reference: component.clone(),
                why,
            })?;
            paths.push(sandbox.repo().join(joined));
        }
        fields.insert("components".into(), json!(paths));
    }
    let wrapper = sandbox.work().join("wrapper");
    std::fs::create_dir_all(&wrapper).map_err(RenderError::Prepare)?;
    let text = serde_json::to_string(&Value::Object(fields))
        .map_err(|e| RenderError::Prepare(std::io::Error::other(e.to_string())))?;
    std::fs::write(wrapper.join("kustomization.yaml"), text).map_err(RenderError::Prepare)?;
    Ok(wrapper)
}

/// `base/reference` normalized, or why it does not stay inside the repository.
pub(super) fn join_inside(base: &str, reference: &str) -> Result<String, String> {
    if is_remote(reference) {
        return Err("remote bases and resources are not allowed".to_string());
    }
    if reference.starts_with('/') {
        return Err("absolute paths are not allowed".to_string());
    }
    let mut parts: Vec<&str> = base
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    for part in reference.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err("it reaches outside the repository".to_string());
                }
            }
            name => parts.push(name),
        }
    }
    Ok(parts.join("/"))
}

fn is_remote(reference: &str) -> bool {
    let lower = reference.to_ascii_lowercase();
    lower.contains("://")
        || lower.starts_with("git@")
        || lower.contains("?ref=")
        || lower.contains(".git//")
        || ["github.com/", "gitlab.com/", "bitbucket.org/"]
            .iter()
            .any(|host| lower.starts_with(host))
}

/// Checks the kustomizations reachable from `folder` in `files` (repository-relative paths):
/// every path they name must stay inside the repository.
pub fn check_references(files: &[SourceFile], folder: &str) -> Result<(), RenderError> {
    let folders: BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.path.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .collect();
    let mut pending = vec![join_inside("", folder).unwrap_or_default()];
    let mut seen = BTreeSet::new();
    while let Some(dir) = pending.pop() {
        if !seen.insert(dir.clone()) || seen.len() > 512 {
            continue;
        }
        let Some(file) = kustomization_in(files, &dir) else {
            continue;
        };
        let document: Value = crate::yaml::from_str(&String::from_utf8_lossy(&file.content))
            .map_err(|e| RenderError::Invalid {
                file: file.path.clone(),
                message: e.to_string(),
            })?;
        for reference in references(&document) {
            let joined = join_inside(&dir, &reference).map_err(|why| RenderError::Refused {
                file: file.path.clone(),
                reference: reference.clone(),
                why,
            })?;
            if folders.contains(&joined)
                || folders.iter().any(|f| f.starts_with(&format!("{joined}/")))
            {
                pending.push(joined);
            }
        }
    }
    Ok(())
}

fn kustomization_in<'a>(files: &'a [SourceFile], dir: &str) -> Option<&'a SourceFile> {
    KUSTOMIZATION_FILES.iter().find_map(|name| {
        let path = if dir.is_empty() {
            (*name).to_string()
        } else {
            format!("{dir}/{name}")
        };
        files.iter().find(|f| f.path == path)
    })
}

/// Every path a kustomization names (resources, bases, components, patches, generators...).
fn references(document: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let strings = |value: Option<&Value>, out: &mut Vec<String>| {
        for item in value.and_then(Value::as_array).into_iter().flatten() {
            if let Some(text) = item.as_str() {
                out.push(text.to_string());
            }
        }
    };
    for field in [
        "resources",
        "bases",
        "components",
        "crds",
        "configurations",
        "generators",
        "transformers",
        "validators",
    ] {
        strings(document.get(field), &mut out);
    }
    for item in document
        .get("patchesStrategicMerge")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // An entry is a file, or the patch itself inline.
        if let Some(text) = item.as_str().filter(|t| !t.contains('\n')) {
            out.push(text.to_string());
        }
    }
    for field in ["patches", "patchesJson6902", "replacements"] {
        for item in document
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(path) = item.get("path").and_then(Value::as_str) {
                out.push(path.to_string());
            }
        }
    }
    if let Some(path) = document.pointer("/openapi/path").and_then(Value::as_str) {
        out.push(path.to_string());
    }
    for field in ["configMapGenerator", "secretGenerator"] {
        for generator in document
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let mut files = Vec::new();
            strings(generator.get("files"), &mut files);
            strings(generator.get("envs"), &mut files);
            if let Some(env) = generator.get("env").and_then(Value::as_str) {
                files.push(env.to_string());
            }
            // `key=path` names the key too.
            out.extend(
                files
                    .into_iter()
                    .map(|f| f.split_once('=').map_or(f.clone(), |(_, p)| p.to_string())),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, content: &str) -> SourceFile {
        SourceFile::new(path, content)
    }

    #[test]
    fn references_must_stay_inside_the_repository() {
        let base = file("apps/base/kustomization.yaml", "resources: [deploy.yaml]\n");
        let deploy = file("apps/base/deploy.yaml", "kind: x\n");
        let check = |overlay: &str| {
            let files = vec![
                base.clone(),
                deploy.clone(),
                file("apps/dev/kustomization.yaml", overlay),
            ];
            check_references(&files, "apps/dev").map_err(|e| e.to_string())
        };
        assert_eq!(check("resources: [../base]\n"), Ok(()));
        let refused = [
            (
                "resources: [../../../etc]\n",
                "reaches outside the repository",
            ),
            ("resources: [/etc/passwd]\n", "absolute paths"),
            (
                "resources: [https://github.com/org/repo//deploy?ref=v1]\n",
                "remote",
            ),
            ("resources: [github.com/org/repo/deploy]\n", "remote"),
            (
                "configMapGenerator:\n- name: x\n  files: [key=../../../../secret]\n",
                "reaches outside",
            ),
            ("patches:\n- path: /tmp/patch.yaml\n", "absolute paths"),
        ];
        for (overlay, why) in refused {
            let err = check(overlay).expect_err(overlay);
            assert!(err.contains(why), "{overlay}: {err}");
            assert!(err.contains("apps/dev/kustomization.yaml"), "{err}");
        }
        // A base reached through the overlay is checked too.
        let files = vec![
            file("apps/base/kustomization.yaml", "resources: [../../../x]\n"),
            file("apps/dev/kustomization.yaml", "resources: [../base]\n"),
        ];
        let err = check_references(&files, "apps/dev").expect_err("base escapes");
        assert!(
            err.to_string().contains("apps/base/kustomization.yaml"),
            "{err}"
        );
    }

    #[test]
    fn overrides_become_kustomization_fields() {
        let spec = SyncSpec {
            name_prefix: Some("dev-".to_string()),
            images: vec![crate::api::render::ImageOverride {
                name: "nginx".to_string(),
                new_tag: Some("1.27".to_string()),
                ..Default::default()
            }],
            ..Default::default()
        };
        let fields = overrides(&spec);
        assert_eq!(fields["namePrefix"], json!("dev-"));
        assert_eq!(
            fields["images"],
            json!([{"name": "nginx", "newTag": "1.27"}])
        );
        assert!(overrides(&SyncSpec::default()).is_empty());
    }
}
