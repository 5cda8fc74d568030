//! `SealedSecret`: age-encrypted values the controller turns into a Secret.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::TemplateMetadata;

/// A Secret whose values are encrypted to the cluster's age recipients. The
/// controller opens them with a key that never leaves the cluster and writes a
/// Secret of the same name and namespace.
// Each printcolumn repeats the same keys, which clippy mistakes for duplicated attributes.
#[expect(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sigil.dev",
    version = "v1alpha1",
    kind = "SealedSecret",
    doc = "SealedSecret holds age-encrypted values that the sigil controller opens in the cluster and writes into a Secret of the same name.",
    namespaced,
    status = "SealedSecretStatus",
    shortname = "sealed",
    category = "sigil",
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
        name = "Key",
        type_ = "string",
        json_path = ".status.keyFingerprint",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretSpec {
    /// The Secret's keys, each value one ASCII-armored age file made by `sigil seal`.
    /// The scope the value may be used in is sealed inside it.
    #[serde(default)]
    pub encrypted_data: BTreeMap<String, String>,
    /// Where the values may be opened: `strict` (this name and namespace), `namespace`
    /// (any name in this namespace) or `cluster` (anywhere). Informational: the scope
    /// sealed inside each value is what the controller enforces.
    #[serde(default)]
    pub scope: Scope,
    /// Type, labels, annotations and immutability of the generated Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<SecretTemplate>,
}

/// Where a sealed value may be opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Only in the namespace and under the name it was sealed for.
    #[default]
    Strict,
    /// Under any name in the namespace it was sealed for.
    Namespace,
    /// Anywhere in the cluster.
    Cluster,
}

/// How the generated Secret looks besides its data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretTemplate {
    /// Secret type, e.g. `kubernetes.io/tls` (default `Opaque`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Labels and annotations of the Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    /// Make the Secret immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutable: Option<bool>,
}

/// What the controller last did with a SealedSecret.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SealedSecretStatus {
    /// `Ready` says whether the Secret is written from the current spec.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Short fingerprint of the sealing key that opened the values; after a key
    /// renewal, objects still on an old key need `sigil reencrypt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_fingerprint: Option<String>,
}
