//! The age identities of `spec.decryption.secretRef`: every `*.agekey` entry of the Secret, as
//! Flux's kustomize-controller reads them, so a Flux user's Secret works as it is.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use super::Keys;
use crate::api::render::Decryption;
use crate::crypto::identity::parse_file;

/// Why the decryption keys could not be had. Never holds a key.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("spec.decryption.provider {0:?}: only sops is supported")]
    Provider(String),
    #[error(
        "spec.decryption.secretRef is required: the Secret whose *.agekey entries hold the age identities"
    )]
    NoSecretRef,
    #[error("spec.decryption.secretRef: Secret {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("spec.decryption.secretRef: cannot read Secret {namespace}/{name}: {source}")]
    Read {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("spec.decryption.secretRef: Secret {namespace}/{name} entry {entry}: {why}")]
    Entry {
        namespace: String,
        name: String,
        entry: String,
        why: crate::crypto::identity::IdentityError,
    },
    #[error(
        "spec.decryption.secretRef: Secret {namespace}/{name} has no *.agekey entry with an age identity"
    )]
    NoIdentities { namespace: String, name: String },
}

/// The keys `decryption` names in `namespace`; None without `spec.decryption`.
pub async fn keys_of(
    client: &kube::Client,
    decryption: Option<&Decryption>,
    namespace: &str,
) -> Result<Option<Keys>, KeysError> {
    let Some(decryption) = decryption else {
        return Ok(None);
    };
    if decryption.provider != "sops" {
        return Err(KeysError::Provider(decryption.provider.clone()));
    }
    let name = decryption
        .secret_ref
        .as_ref()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .ok_or(KeysError::NoSecretRef)?;
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&name)
        .await
        .map_err(|source| KeysError::Read {
            namespace: namespace.to_string(),
            name: name.clone(),
            source,
        })?
        .ok_or_else(|| KeysError::NotFound {
            namespace: namespace.to_string(),
            name: name.clone(),
        })?;
    let mut keys = Keys::default();
    for (entry, value) in secret.data.unwrap_or_default() {
        if !entry.ends_with(".agekey") {
            continue;
        }
        let text = zeroize::Zeroizing::new(String::from_utf8_lossy(&value.0).into_owned());
        let found = parse_file(&text).map_err(|why| KeysError::Entry {
            namespace: namespace.to_string(),
            name: name.clone(),
            entry: entry.clone(),
            why,
        })?;
        keys.extend(Keys::new(found));
    }
    if keys.is_empty() {
        return Err(KeysError::NoIdentities {
            namespace: namespace.to_string(),
            name,
        });
    }
    Ok(Some(keys))
}
