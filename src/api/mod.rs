//! sigil's API (`sigil.dev/v1alpha1`): one file per kind. The Rust types are the
//! source of truth; `sigil crds` prints the CRDs generated from them.

pub mod common;
pub mod conditions;
pub mod duration;
pub mod external_secret;
pub mod git_source;
pub mod health_expr;
pub mod post_build;
pub mod render;
pub mod sealed_secret;
pub mod secret_store;
pub mod sync;
pub mod vault_dynamic_secret;

pub use external_secret::{ExternalSecret, ExternalSecretSpec, ExternalSecretStatus};
pub use git_source::{GitSource, GitSourceSpec, GitSourceStatus};
pub use sealed_secret::{SealedSecret, SealedSecretSpec, SealedSecretStatus};
pub use secret_store::{
    ClusterSecretStore, ClusterSecretStoreSpec, SecretStore, SecretStoreSpec, SecretStoreStatus,
};
pub use sync::{ManifestSync, SyncSpec, SyncStatus};
pub use vault_dynamic_secret::{VaultDynamicSecret, VaultDynamicSecretSpec};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every sigil kind.
pub const GROUP: &str = "sigil.dev";
/// The served version.
pub const VERSION: &str = "v1alpha1";
/// Field manager for every write the controllers make.
pub const FIELD_MANAGER: &str = "sigil";

/// Every CRD, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![
        SealedSecret::crd(),
        ExternalSecret::crd(),
        SecretStore::crd(),
        ClusterSecretStore::crd(),
        GitSource::crd(),
        ManifestSync::crd(),
        VaultDynamicSecret::crd(),
    ]
}

/// One CRD rendered as a YAML document (starting with `---`), with the file
/// name it has under `crds/`.
pub struct RenderedCrd {
    pub file_name: String,
    pub yaml: String,
}

/// Every CRD as YAML, the exact bytes of `sigil crds` and of the files in `crds/`.
pub fn rendered_crds() -> Result<Vec<RenderedCrd>, crate::yaml::YamlError> {
    crds()
        .iter()
        .map(|crd| {
            Ok(RenderedCrd {
                file_name: format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or_default()),
                yaml: crate::yaml::to_multi_string(std::slice::from_ref(crd))?,
            })
        })
        .collect()
}
