//! `VaultDynamicSecret`: a generator of short-lived credentials from a Vault
//! secrets engine (`database/creds/ROLE`, `aws/creds/ROLE`, ...), in External
//! Secrets Operator's shape. An ExternalSecret names it in
//! `spec.dataFrom[].sourceRef.generatorRef`; sigil keeps the lease Vault
//! grants with the credentials in the ExternalSecret's status, renews it,
//! rotates to new credentials before its max TTL and revokes it when done.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::secret_store::VaultProvider;

/// How new credentials are requested from Vault.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sigil.dev",
    version = "v1alpha1",
    kind = "VaultDynamicSecret",
    doc = "VaultDynamicSecret generates credentials from a Vault secrets engine (for example database/creds/ROLE) for ExternalSecrets of its namespace, which keep, renew, rotate and revoke their leases.",
    namespaced,
    shortname = "vds",
    category = "sigil",
    category = "sigil-generators",
    printcolumn(name = "Path", type_ = "string", json_path = ".spec.path"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VaultDynamicSecretSpec {
    /// The Vault server and how to log in: the same block as a SecretStore's
    /// `spec.provider.vault` (its `path` and `version`, which name a KV mount,
    /// are not used). Credential Secrets are read from this object's namespace.
    pub provider: VaultProvider,
    /// The Vault path issuing credentials, e.g. `database/creds/app`.
    pub path: String,
    /// `GET` (the default) or `POST` (with `parameters` as the JSON body).
    #[serde(default)]
    pub method: VaultDynamicMethod,
    /// The request body of a `POST`; query parameters are not sent with a `GET`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "super::render::free_form_object")]
    pub parameters: Option<serde_json::Value>,
    /// Which part of Vault's answer becomes the values: `Data` (the default, the
    /// answer's `data`) or `Auth` (its `auth` block, for paths that issue tokens).
    #[serde(default)]
    pub result_type: VaultDynamicResultType,
    /// How long before a lease's end (its max TTL, or its TTL when it cannot be
    /// renewed) sigil switches to new credentials, e.g. `10m`. Default: a third
    /// of the lease's duration as first granted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^0$"))]
    pub rotate_before: Option<String>,
}

/// The HTTP method of the credentials request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum VaultDynamicMethod {
    #[default]
    Get,
    Post,
}

/// Which part of Vault's answer a generator returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum VaultDynamicResultType {
    #[default]
    Data,
    Auth,
}
