//! `Sync` (Rust type [`ManifestSync`], so it does not shadow `std::marker::Sync`): applies a folder of a GitSource to the cluster and keeps it there.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::health_expr::HealthCheckExpr;
use super::post_build::PostBuild;
use super::render::{
    CommonMetadata, Decryption, HelmSpec, ImageOverride, KustomizePatch, PatchTarget, RendererKind,
};

/// Applies the manifests under `path` of a source with server-side apply,
/// prunes what left Git, and corrects drift.
// Each printcolumn repeats the same keys, which clippy mistakes for duplicated attributes.
#[expect(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "sigil.dev",
    version = "v1alpha1",
    kind = "Sync",
    root = "ManifestSync",
    doc = "Sync applies a folder of a GitSource to the cluster with server-side apply, prunes what left Git and corrects drift.",
    namespaced,
    status = "SyncStatus",
    shortname = "gsync",
    category = "sigil",
    printcolumn(
        name = "Revision",
        type_ = "string",
        json_path = ".status.lastAppliedRevision"
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
pub struct SyncSpec {
    /// The source to apply from.
    pub source_ref: SourceRef,
    /// Folder inside the source (default: the root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// How often to re-apply even without a new revision (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^0$"))]
    pub interval: Option<String>,
    /// Delete objects that were applied before and are no longer in the source.
    #[serde(default)]
    pub prune: bool,
    /// Watch applied objects and re-apply within seconds when someone changes or deletes them.
    #[serde(default)]
    pub self_heal: bool,
    /// Namespace for namespaced objects that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_namespace: Option<String>,
    /// Apply as this ServiceAccount (of the Sync's namespace), so a tenant's Sync has only its rights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Allow `kind: Secret` with plaintext `data`/`stringData` in the source (refused by default).
    #[serde(default)]
    pub allow_plaintext_secrets: bool,
    /// Stop applying.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
    /// Ready only once every applied object is healthy (kstatus rules); overrides `healthChecks`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub wait: bool,
    /// Ready only once these objects are healthy (kstatus rules).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_checks: Vec<HealthCheckRef>,
    /// CEL expressions judging the health of custom kinds (Flux's `healthCheckExprs`); they
    /// take precedence over the kstatus rules for the kinds they name, for the objects
    /// `wait` or `healthChecks` select.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub health_check_exprs: Vec<HealthCheckExpr>,
    /// How long applying and health checks may take (default: `spec.interval`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$|^0$"))]
    pub timeout: Option<String>,
    /// Apply a revision that has no object at all even though the inventory is not empty
    /// (which prunes everything); refused by default, as an emptied folder is more often a
    /// mistake than an intent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_empty: bool,
    /// Refuse a revision that would prune more than this many objects at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prune: Option<i32>,
    /// What renders the folder (default: detected — a `kustomization.yaml`, `.yml` or
    /// `Kustomization` → kustomize; a `Chart.yaml` → helm; else plain).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renderer: Option<RendererKind>,
    /// Kustomize: prefix added to every object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_prefix: Option<String>,
    /// Kustomize: suffix added to every object's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_suffix: Option<String>,
    /// Kustomize: labels and annotations added to every object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub common_metadata: Option<CommonMetadata>,
    /// Kustomize: patches applied to the folder's objects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<KustomizePatch>,
    /// Kustomize: image overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<ImageOverride>,
    /// Kustomize: components (folders relative to `path`) added to the folder's kustomization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub components: Vec<String>,
    /// Helm: release name and values of the chart in the folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub helm: Option<HelmSpec>,
    /// Decrypt SOPS-encrypted files with the age identities of a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decryption: Option<Decryption>,
    /// Variables substituted into every object after rendering (Flux's `postBuild`): `${var}`,
    /// `${var:=default}`; an unset variable without a default becomes empty. Objects annotated
    /// or labelled `sigil.dev/substitute: disabled` (or Flux's
    /// `kustomize.toolkit.fluxcd.io/substitute`), SealedSecrets and SOPS-encrypted documents
    /// are never substituted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_build: Option<PostBuild>,
    /// Syncs that must be Ready at their source's latest revision (and so healthy, when they
    /// wait) before this one applies; a cycle is reported, never waited on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependencyRef>,
    // Living with deletion and with other controllers (issue 11, points 3 and 5).
    /// What deleting the Sync does to its objects (Flux Kustomization's values; default
    /// `MirrorPrune`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// Fields sigil never changes on existing objects, nor counts as drift (Flux HelmRelease's
    /// `driftDetection.ignore`): what another controller (an HPA, a mutating webhook) writes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<IgnoreRule>,
}

/// What deleting a Sync does to the objects of its inventory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    /// Delete them when `spec.prune` is true, unless the Sync is suspended or its last
    /// revision failed to apply.
    #[default]
    MirrorPrune,
    /// Delete them (the same owner-label checks as pruning), whatever `spec.prune` says.
    Delete,
    /// Delete them and keep the Sync until they are gone (at most `spec.timeout`).
    WaitForTermination,
    /// Leave them all.
    Orphan,
}

/// Fields left to others: JSON pointers, on the objects `target` selects (all when absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IgnoreRule {
    /// JSON pointers (RFC 6901), e.g. `/spec/replicas`.
    pub paths: Vec<String>,
    /// Which objects the paths apply to (kustomize's selector: group, version, kind, name and
    /// namespace as anchored regular expressions for the last two, label and annotation
    /// selectors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<PatchTarget>,
}

/// A Sync another one waits for (Flux's `dependsOn[]` entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub struct DependencyRef {
    /// Name of the Sync.
    pub name: String,
    /// Namespace of the Sync (default: the depending Sync's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// An object whose health a Sync waits for (Flux's `healthChecks[]` entry).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckRef {
    /// `group/version` or `version` of the object.
    pub api_version: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// Namespace of the object (default: the Sync's; empty for cluster-scoped objects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// The source a Sync applies.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SourceRef {
    /// Kind of the source; only `GitSource`.
    #[serde(default = "git_source_kind")]
    pub kind: String,
    /// Name of the source, in the Sync's namespace.
    pub name: String,
}

fn git_source_kind() -> String {
    "GitSource".to_string()
}

/// What a Sync applied last.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    /// `Ready`, `Reconciling` and `Stalled`, in kstatus shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The revision whose manifests were all applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_revision: Option<String>,
    /// The revision last tried, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempted_revision: Option<String>,
    /// The objects applied from `lastAppliedRevision`; pruning compares against it. Always
    /// written, even empty: status is merge-patched, and a missing list would keep the old one.
    #[serde(default)]
    pub inventory: Vec<InventoryEntry>,
    /// The value of the `sigil.dev/reconcile-requested-at` annotation last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_reconcile_at: Option<String>,
    /// The last runs that changed the outcome, newest first (at most 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<HistoryEntry>,
}

/// One run of a Sync in `status.history`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    /// The revision tried.
    pub revision: String,
    /// The Ready reason it ended with (`ReconciliationSucceeded`, `HealthCheckFailed`, ...).
    pub result: String,
    /// How long the run took, Go-style (`1.5s`).
    pub duration: String,
    /// When it ended.
    pub time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// One applied object.
#[derive(
    Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct InventoryEntry {
    /// `group/version` or `version` for the core group.
    pub api_version: String,
    /// Kind.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl InventoryEntry {
    /// The entry of one object; `namespace` is empty for cluster-scoped objects.
    pub fn new(api_version: &str, kind: &str, namespace: &str, name: &str) -> Self {
        Self {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}
