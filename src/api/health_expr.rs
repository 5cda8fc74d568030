//! A Sync's `spec.healthCheckExprs[]`: Flux Kustomization's CEL health checks for custom kinds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How the health of every object of one kind is judged, by CEL expressions over the object
/// (`metadata`, `spec`, `status`, ... are variables), instead of the kstatus rules. While
/// `status.observedGeneration` differs from `metadata.generation` the object is in progress;
/// otherwise `inProgress`, `failed` and `current` are evaluated in that order and the first that
/// is true decides; when none is, the object is in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheckExpr {
    /// `group/version` of the kind (any version of the group matches).
    pub api_version: String,
    /// The kind.
    pub kind: String,
    /// True while the object is still being reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<String>,
    /// True when the object failed (the Sync reports `HealthCheckFailed` at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// True when the object is healthy, e.g.
    /// `status.conditions.filter(e, e.type == 'Ready').all(e, e.status == 'True')`.
    pub current: String,
}
