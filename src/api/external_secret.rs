//! `ExternalSecret`: a Secret whose values come from a secret store
//! (AWS Secrets Manager or Parameter Store, Vault). Same shape as External Secrets Operator's, so
//! migrating is a change of `apiVersion`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::TemplateMetadata;

/// Values fetched from a SecretStore or ClusterSecretStore into a Secret, kept
/// current as the backend rotates them.
// Each printcolumn repeats the same keys, which clippy mistakes for duplicated attributes.
#[expect(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sigil.dev",
    version = "v1alpha1",
    kind = "ExternalSecret",
    doc = "ExternalSecret fetches values from a SecretStore or ClusterSecretStore (AWS Secrets Manager, Vault) into a Secret and keeps it current.",
    namespaced,
    status = "ExternalSecretStatus",
    shortname = "es",
    category = "sigil",
    printcolumn(
        name = "Store",
        type_ = "string",
        json_path = ".spec.secretStoreRef.name"
    ),
    printcolumn(
        name = "Refresh",
        type_ = "string",
        json_path = ".spec.refreshInterval"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretSpec {
    /// The store to read from (not needed when the values come from a generator,
    /// `dataFrom[].sourceRef.generatorRef`).
    #[serde(default)]
    pub secret_store_ref: SecretStoreRef,
    /// How often to read the values again (`1h` by default; `0` reads only when the
    /// ExternalSecret changes or a refresh is requested with the annotation
    /// `sigil.dev/refresh-requested-at`). Not used with a generator: its lease
    /// decides when credentials are renewed and replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^0$"))]
    pub refresh_interval: Option<String>,
    /// The Secret to write.
    #[serde(default)]
    pub target: ExternalSecretTarget,
    /// Single values, each into one key of the Secret.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<ExternalSecretData>,
    /// Whole remote secrets expanded into keys: `extract` a JSON object, or `find`
    /// secrets by name or tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub data_from: Vec<ExternalSecretDataFrom>,
}

/// Which store an ExternalSecret reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretStoreRef {
    /// Name of the store.
    pub name: String,
    /// `SecretStore` (same namespace, the default) or `ClusterSecretStore`.
    #[serde(default)]
    pub kind: StoreKind,
}

/// The kind of store referenced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StoreKind {
    #[default]
    SecretStore,
    ClusterSecretStore,
}

/// The Secret an ExternalSecret writes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretTarget {
    /// Name of the Secret (default: the ExternalSecret's name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Owner` (create it, owned by the ExternalSecret; the default), `Merge` (write
    /// our keys into an existing Secret) or `Orphan` (create it without an owner).
    #[serde(default)]
    pub creation_policy: CreationPolicy,
    /// What happens to the Secret when every remote value is gone: `Retain` (keep
    /// it; the default) or `Delete`.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Shape of the Secret: type, labels, annotations and templated data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<ExternalSecretTemplate>,
}

/// How the Secret comes to exist and who owns it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CreationPolicy {
    #[default]
    Owner,
    Merge,
    Orphan,
}

/// What happens to the Secret when the remote values disappear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

/// The generated Secret's type, metadata and templated keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalSecretTemplate {
    /// Secret type (default `Opaque`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Labels and annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Keys whose values are templates over the fetched values, e.g.
    /// `url: "postgres://{{ .user }}:{{ .password }}@db"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

/// One remote value into one key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretData {
    /// Key in the Secret.
    pub secret_key: String,
    /// The remote value.
    pub remote_ref: RemoteRef,
}

/// A value in the store.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct RemoteRef {
    /// Name or path of the remote secret.
    pub key: String,
    /// A property of a JSON value, dotted for nesting (`db.password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// A version: Secrets Manager version id or stage (`AWSCURRENT`, `AWSPREVIOUS`, `uuid:…`), a
    /// Parameter Store version number or label, or a Vault KV v2 version number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `Fetch` reads the secret's custom metadata (Vault KV v2) instead of its data,
    /// so metadata can feed keys and templates; `None` (the default) reads the data.
    #[serde(
        default,
        rename = "metadataPolicy",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_policy: Option<MetadataPolicy>,
}

/// What a remote ref reads: the data, or the metadata (External Secrets Operator's names).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub enum MetadataPolicy {
    None,
    Fetch,
}

/// Remote secrets expanded into several keys.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExternalSecretDataFrom {
    /// Every top-level property of one JSON secret becomes a key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<RemoteRef>,
    /// Every secret matching becomes a key named after the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub find: Option<FindRef>,
    /// Values from somewhere other than `secretStoreRef`: a generator.
    #[serde(default, rename = "sourceRef", skip_serializing_if = "Option::is_none")]
    pub source_ref: Option<DataFromSourceRef>,
}

/// Where a `dataFrom` entry's values come from, in External Secrets Operator's shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataFromSourceRef {
    /// A generator issuing new credentials (`VaultDynamicSecret`); every key of
    /// its answer becomes a key of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator_ref: Option<GeneratorRef>,
}

/// A generator in the ExternalSecret's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorRef {
    /// `sigil.dev/v1alpha1`.
    pub api_version: String,
    /// `VaultDynamicSecret`.
    pub kind: String,
    /// Name of the generator.
    pub name: String,
}

impl ExternalSecretSpec {
    /// The generators `dataFrom` names, in order.
    pub fn generator_refs(&self) -> impl Iterator<Item = &GeneratorRef> {
        self.data_from
            .iter()
            .filter_map(|d| d.source_ref.as_ref()?.generator_ref.as_ref())
    }
}

/// Secrets to find in the store.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FindRef {
    /// Only secrets below this path: Parameter Store reads the whole tree with
    /// `GetParametersByPath`, Vault lists the folder recursively; Secrets Manager
    /// lists names starting with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Secrets whose name matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<FindName>,
    /// Secrets carrying all of these tags.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

/// A name filter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FindName {
    /// A regular expression the name must match.
    pub regexp: String,
}

/// What the controller last did with an ExternalSecret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSecretStatus {
    /// `Ready` says whether the Secret holds the current remote values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the values were last read from the store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_time: Option<Time>,
    /// resourceVersion of the Secret as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub synced_resource_version: Option<String>,
    /// The lease of the credentials a generator issued for the Secret: kept here
    /// so a restarted controller renews the same lease instead of asking for new
    /// credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
    /// Leases replaced by newer credentials and not yet revoked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retiring_leases: Vec<RetiringLease>,
}

/// A Vault lease held for an ExternalSecret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LeaseStatus {
    /// The generator that issued it, `VaultDynamicSecret/NAME`.
    pub generator: String,
    /// Vault's lease id (not a credential: it names the lease, to renew or revoke
    /// it); empty when Vault's answer carried no lease.
    pub id: String,
    /// When the credentials were issued.
    pub issue_time: Time,
    /// When the lease ends unless renewed.
    pub expire_time: Time,
    /// When the lease was last renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_renewal_time: Option<Time>,
    /// The lease's duration as first granted, in seconds.
    pub duration_seconds: i64,
    /// Whether Vault allows renewing it.
    pub renewable: bool,
    /// The end no renewal can move (the max TTL), once Vault showed it: the
    /// lease is not renewable, or a renewal granted less than asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_expire_time: Option<Time>,
    /// Keyed fingerprint of the Secret data written from these credentials.
    pub data_hmac: String,
    /// The ExternalSecret's generation the Secret was written for.
    #[serde(default)]
    pub generation: i64,
}

/// A lease waiting to be revoked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetiringLease {
    /// The generator that issued it.
    pub generator: String,
    /// Vault's lease id.
    pub id: String,
}
