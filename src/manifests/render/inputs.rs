//! The inputs of a render that come from the Sync and the cluster: Kustomize overrides, and
//! Helm's release, values (`valuesFrom` ConfigMaps and Secrets of the Sync's namespace, then
//! inline `values`) and the cluster's version and API versions for `.Capabilities`.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use serde_json::Value;

use super::helm::{HelmInputs, at_path, merge_values};
use super::{RenderError, RenderInputs, kustomize};
use crate::api::render::{RendererKind, ValuesReference};
use crate::api::sync::SyncSpec;

/// Where the Sync is: its namespace and name.
pub struct SyncIdentity<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The inputs for `renderer`, or None for plain folders.
pub async fn render_inputs(
    client: &kube::Client,
    spec: &SyncSpec,
    sync: SyncIdentity<'_>,
    renderer: RendererKind,
) -> Result<Option<RenderInputs>, RenderError> {
    if renderer != RendererKind::Kustomize && super::has_overrides(spec) {
        return Err(RenderError::Unsupported(format!(
            "namePrefix, nameSuffix, commonMetadata, patches, images and components apply to Kustomize folders; this one is rendered as {}",
            renderer.as_str()
        )));
    }
    match renderer {
        RendererKind::Plain => Ok(None),
        RendererKind::Kustomize => Ok(Some(RenderInputs::Kustomize {
            overrides: kustomize::overrides(spec),
            components: spec.components.clone(),
        })),
        RendererKind::Helm => {
            let helm = spec.helm.clone().unwrap_or_default();
            let mut values = Value::Object(Default::default());
            for reference in &helm.values_from {
                if let Some(found) = values_from(client, sync.namespace, reference).await? {
                    merge_values(&mut values, found);
                }
            }
            if let Some(inline) = helm.values.clone() {
                merge_values(&mut values, inline);
            }
            let (kube_version, api_versions) = capabilities(client).await?;
            Ok(Some(RenderInputs::Helm(HelmInputs {
                release_name: helm.release_name.unwrap_or_else(|| sync.name.to_string()),
                namespace: spec
                    .target_namespace
                    .clone()
                    .filter(|ns| !ns.is_empty())
                    .unwrap_or_else(|| sync.namespace.to_string()),
                values_files: helm.values_files,
                values,
                kube_version,
                api_versions,
            })))
        }
    }
}

/// The values one `valuesFrom` entry holds; None when it is optional and missing.
async fn values_from(
    client: &kube::Client,
    namespace: &str,
    reference: &ValuesReference,
) -> Result<Option<Value>, RenderError> {
    let key = reference.values_key.as_deref().unwrap_or("values.yaml");
    let shown = format!(
        "spec.helm.valuesFrom {} {namespace}/{} key {key:?}",
        reference.kind, reference.name
    );
    let invalid = |message: String| RenderError::Invalid {
        file: shown.clone(),
        message,
    };
    let text = match reference.kind.as_str() {
        "ConfigMap" => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(|e| invalid(e.to_string()))?
            .and_then(|cm| cm.data?.remove(key)),
        "Secret" => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(|e| invalid(e.to_string()))?
            .and_then(|s| s.data?.remove(key))
            .map(|bytes| String::from_utf8_lossy(&bytes.0).into_owned()),
        other => {
            return Err(invalid(format!(
                "kind {other:?}: only ConfigMap and Secret are supported"
            )));
        }
    };
    let Some(text) = text else {
        return if reference.optional {
            Ok(None)
        } else {
            Err(invalid("not found".to_string()))
        };
    };
    if let Some(path) = reference.target_path.as_deref().filter(|p| !p.is_empty()) {
        return Ok(Some(at_path(path, text)));
    }
    // The parser's message could quote the text, and a Secret's text is secret.
    let parsed: Value = crate::yaml::from_str(&text)
        .map_err(|_| invalid("is not a YAML map of values".to_string()))?;
    match parsed {
        Value::Object(_) => Ok(Some(parsed)),
        Value::Null => Ok(None),
        _ => Err(invalid("is not a YAML map of values".to_string())),
    }
}

/// The cluster's version and every served group/version, for `helm template`'s `.Capabilities`.
async fn capabilities(client: &kube::Client) -> Result<(Option<String>, Vec<String>), RenderError> {
    let failed = |e: kube::Error| RenderError::Invalid {
        file: "discovery".to_string(),
        message: e.to_string(),
    };
    let version = client
        .apiserver_version()
        .await
        .ok()
        .map(|info| info.git_version)
        .filter(|v| !v.is_empty());
    let mut api_versions: Vec<String> = client
        .list_core_api_versions()
        .await
        .map_err(failed)?
        .versions;
    for group in client.list_api_groups().await.map_err(failed)?.groups {
        api_versions.extend(group.versions.into_iter().map(|v| v.group_version));
    }
    api_versions.sort();
    api_versions.dedup();
    Ok((version, api_versions))
}
