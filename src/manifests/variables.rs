//! The variables of a Sync's `spec.postBuild`, read from the cluster in Flux's order: each
//! `substituteFrom` ConfigMap or Secret (of the Sync's namespace) in turn, then `substitute`
//! over them. Errors name the field and the object, never a value.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;
use zeroize::Zeroizing;

use super::substitute::{SubstituteError, Variables};
use crate::api::post_build::{PostBuild, SubstituteKind, SubstituteReference};

/// Why the variables could not be read.
#[derive(Debug, thiserror::Error)]
pub enum VariablesError {
    #[error("{field}: {kind} {namespace}/{name} not found (set optional: true to allow that)")]
    NotFound {
        field: String,
        kind: SubstituteKind,
        namespace: String,
        name: String,
    },
    #[error("{field}: cannot read {kind} {namespace}/{name}: {source}")]
    Read {
        field: String,
        kind: SubstituteKind,
        namespace: String,
        name: String,
        source: Box<kube::Error>,
    },
    #[error("{field}: key {key:?} of {kind} {namespace}/{name} is not UTF-8 text")]
    NotText {
        field: String,
        kind: SubstituteKind,
        namespace: String,
        name: String,
        key: String,
    },
    #[error("{field}: {source}")]
    Name {
        field: String,
        source: SubstituteError,
    },
}

/// The field of `spec.postBuild` holding the inline variables.
const INLINE: &str = "spec.postBuild.substitute";

impl VariablesError {
    /// Only a change of the spec can fix it (an invalid name in `substitute`); a ConfigMap or
    /// Secret may yet appear or change.
    pub fn stalled(&self) -> bool {
        matches!(self, Self::Name { field, .. } if field == INLINE)
    }
}

/// The variables `post_build` defines; empty when there is none (nothing is substituted then).
pub async fn load(
    client: &kube::Client,
    namespace: &str,
    post_build: Option<&PostBuild>,
) -> Result<Variables, VariablesError> {
    let mut vars = Variables::default();
    let Some(post_build) = post_build else {
        return Ok(vars);
    };
    for (index, reference) in post_build.substitute_from.iter().enumerate() {
        let field = format!("spec.postBuild.substituteFrom[{index}]");
        let entries = read(client, namespace, reference, &field).await?;
        vars.extend(entries.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .map_err(|source| VariablesError::Name { field, source })?;
    }
    let inline = post_build.substitute.iter();
    vars.extend(inline.map(|(k, v)| (k.as_str(), v.as_str())))
        .map_err(|source| VariablesError::Name {
            field: INLINE.to_string(),
            source,
        })?;
    Ok(vars)
}

/// The `data` of one `substituteFrom` object (as Flux reads it: a ConfigMap's `binaryData` is
/// not used); empty when it is optional and missing.
async fn read(
    client: &kube::Client,
    namespace: &str,
    reference: &SubstituteReference,
    field: &str,
) -> Result<Vec<(String, Zeroizing<String>)>, VariablesError> {
    let read_failed = |source| VariablesError::Read {
        field: field.to_string(),
        kind: reference.kind,
        namespace: namespace.to_string(),
        name: reference.name.clone(),
        source: Box::new(source),
    };
    let found = match reference.kind {
        SubstituteKind::ConfigMap => Api::<ConfigMap>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(read_failed)?
            .map(|cm| {
                let data = cm.data.unwrap_or_default().into_iter();
                data.map(|(k, v)| (k, Zeroizing::new(v))).collect()
            }),
        SubstituteKind::Secret => Api::<Secret>::namespaced(client.clone(), namespace)
            .get_opt(&reference.name)
            .await
            .map_err(read_failed)?
            .map(|secret| {
                let data = secret.data.unwrap_or_default().into_iter();
                data.map(|(key, value)| {
                    let bytes = Zeroizing::new(value.0);
                    match std::str::from_utf8(&bytes) {
                        Ok(text) => Ok((key, Zeroizing::new(text.to_string()))),
                        Err(_) => Err(VariablesError::NotText {
                            field: field.to_string(),
                            kind: reference.kind,
                            namespace: namespace.to_string(),
                            name: reference.name.clone(),
                            key,
                        }),
                    }
                })
                .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?,
    };
    match found {
        Some(entries) => Ok(entries),
        None if reference.optional => Ok(Vec::new()),
        None => Err(VariablesError::NotFound {
            field: field.to_string(),
            kind: reference.kind,
            namespace: namespace.to_string(),
            name: reference.name.clone(),
        }),
    }
}
