//! Helm: the real `helm template` of a chart in the repository (v3 and v4 take the same
//! flags). Its dependencies must be vendored under `charts/`: nothing is fetched. What sigil
//! does with the parts of a chart that need a live release:
//! * hooks (`helm.sh/hook`) are not rendered (`--no-hooks`): sigil has no install/upgrade
//!   phases to run them in, and a hook Job applied like any object would run on every change;
//! * `crds/` is applied (`--include-crds`), before everything else, like every CRD a Sync applies;
//! * `lookup` finds nothing (`helm template` never talks to the cluster), as in Argo CD;
//! * `.Capabilities` is the cluster's: `--kube-version` and `--api-versions` come from discovery.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::RenderError;
use super::sandbox::{Limits, Sandbox};

/// What `helm template` is given, besides the chart.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct HelmInputs {
    pub release_name: String,
    pub namespace: String,
    /// Relative to the chart folder.
    pub values_files: Vec<String>,
    /// `valuesFrom` and inline `values`, merged.
    pub values: Value,
    /// The cluster's version, `v1.35.0`.
    pub kube_version: Option<String>,
    /// Every served group/version.
    pub api_versions: Vec<String>,
}

/// Renders the chart in `folder` (repository-relative) of the sandboxed tree.
pub async fn render(
    helm: &Path,
    sandbox: &Sandbox,
    folder: &str,
    inputs: &HelmInputs,
    limits: Limits,
) -> Result<Vec<u8>, RenderError> {
    let chart = sandbox.repo().join(folder);
    let mut args: Vec<OsString> = vec![
        "template".into(),
        inputs.release_name.clone().into(),
        chart.clone().into(),
        "--namespace".into(),
        inputs.namespace.clone().into(),
        "--no-hooks".into(),
        "--include-crds".into(),
    ];
    for file in &inputs.values_files {
        let joined =
            super::kustomize::join_inside(folder, file).map_err(|why| RenderError::Refused {
                file: "spec.helm.valuesFiles".to_string(),
                reference: file.clone(),
                why,
            })?;
        args.push("--values".into());
        args.push(sandbox.repo().join(joined).into());
    }
    if inputs.values.as_object().is_some_and(|v| !v.is_empty()) {
        args.push("--values".into());
        args.push(values_file(sandbox, &inputs.values)?.into());
    }
    if let Some(version) = &inputs.kube_version {
        args.push(format!("--kube-version={version}").into());
    }
    for api_version in &inputs.api_versions {
        args.push(format!("--api-versions={api_version}").into());
    }
    Ok(sandbox.run(helm, &args, &chart, limits).await?)
}

fn values_file(sandbox: &Sandbox, values: &Value) -> Result<PathBuf, RenderError> {
    let path = sandbox.work().join("values.json");
    let text = serde_json::to_vec(values)
        .map_err(|e| RenderError::Prepare(std::io::Error::other(e.to_string())))?;
    std::fs::write(&path, text).map_err(RenderError::Prepare)?;
    Ok(path)
}

/// Merges `overlay` into `base` as Helm merges values: maps key by key, anything else replaced.
pub fn merge_values(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_object() && value.is_object() => {
                        merge_values(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// `{a: {b: text}}` for the target path `a.b`.
pub fn at_path(path: &str, text: String) -> Value {
    path.rsplit('.')
        .filter(|p| !p.is_empty())
        .fold(Value::String(text), |inner, key| {
            let mut map = serde_json::Map::new();
            map.insert(key.to_string(), inner);
            Value::Object(map)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_merge_like_helm() {
        let mut base = json!({"image": {"tag": "1", "name": "app"}, "replicas": 1});
        merge_values(&mut base, json!({"image": {"tag": "2"}, "replicas": 3}));
        merge_values(&mut base, at_path("config.mode", "fast".to_string()));
        assert_eq!(
            base,
            json!({"image": {"tag": "2", "name": "app"}, "replicas": 3, "config": {"mode": "fast"}})
        );
    }
}
