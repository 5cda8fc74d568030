//! Which applied objects must be healthy before a Sync is Ready (`spec.wait`: all of them;
//! otherwise `spec.healthChecks[]`), how they are judged (kstatus, or `spec.healthCheckExprs`
//! for the kinds those name) and how long they may take (`spec.timeout`, default the
//! interval).

use std::time::Duration;

use crate::api::duration;
use crate::api::sync::{InventoryEntry, SyncSpec};
use crate::manifests::health_expr::{ExprError, HealthExprs};

/// The objects to wait for; empty when the Sync does not wait.
pub fn checked_objects(
    spec: &SyncSpec,
    namespace: &str,
    applied: &[InventoryEntry],
) -> Vec<InventoryEntry> {
    if spec.wait {
        return applied.to_vec();
    }
    spec.health_checks
        .iter()
        .map(|check| InventoryEntry {
            api_version: check.api_version.clone(),
            kind: check.kind.clone(),
            namespace: check
                .namespace
                .clone()
                .unwrap_or_else(|| namespace.to_string()),
            name: check.name.clone(),
        })
        .map(|entry| {
            // A cluster-scoped object named in healthChecks takes no namespace; the inventory
            // knows which applied objects are cluster-scoped.
            let cluster_scoped = applied.iter().any(|a| {
                a.namespace.is_empty()
                    && a.kind == entry.kind
                    && a.name == entry.name
                    && crate::manifests::object::group_of(&a.api_version)
                        == crate::manifests::object::group_of(&entry.api_version)
            });
            if cluster_scoped {
                InventoryEntry {
                    namespace: String::new(),
                    ..entry
                }
            } else {
                entry
            }
        })
        .collect()
}

/// `spec.healthCheckExprs`, compiled (before anything is applied: an invalid expression names
/// its field and only a spec change fixes it).
pub fn expressions(spec: &SyncSpec) -> Result<HealthExprs, ExprError> {
    HealthExprs::compile(&spec.health_check_exprs)
}

/// `spec.timeout`, or the interval.
pub fn timeout(spec: &SyncSpec, interval: Duration) -> Result<Duration, String> {
    match spec.timeout.as_deref() {
        None => Ok(interval),
        Some(text) => duration::parse(text).map_err(|e| format!("spec.timeout: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sync::HealthCheckRef;

    #[test]
    fn wait_checks_everything_and_health_checks_only_what_they_name() {
        let applied = vec![
            InventoryEntry::new("apps/v1", "Deployment", "apps", "web"),
            InventoryEntry::new(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "",
                "widgets.example.com",
            ),
        ];
        let waiting = SyncSpec {
            wait: true,
            ..Default::default()
        };
        assert_eq!(checked_objects(&waiting, "gitops", &applied), applied);
        assert!(checked_objects(&SyncSpec::default(), "gitops", &applied).is_empty());
        let listed = SyncSpec {
            health_checks: vec![
                HealthCheckRef {
                    api_version: "apps/v1".into(),
                    kind: "Deployment".into(),
                    name: "web".into(),
                    namespace: None,
                },
                HealthCheckRef {
                    api_version: "apiextensions.k8s.io/v1".into(),
                    kind: "CustomResourceDefinition".into(),
                    name: "widgets.example.com".into(),
                    namespace: None,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            checked_objects(&listed, "gitops", &applied),
            vec![
                InventoryEntry::new("apps/v1", "Deployment", "gitops", "web"),
                applied[1].clone()
            ]
        );
    }

    #[test]
    fn the_timeout_defaults_to_the_interval() {
        let interval = Duration::from_secs(600);
        assert_eq!(timeout(&SyncSpec::default(), interval), Ok(interval));
        let spec = SyncSpec {
            timeout: Some("90s".into()),
            ..Default::default()
        };
        assert_eq!(timeout(&spec, interval), Ok(Duration::from_secs(90)));
        let bad = SyncSpec {
            timeout: Some("soon".into()),
            ..Default::default()
        };
        assert!(
            timeout(&bad, interval)
                .expect_err("invalid")
                .contains("spec.timeout")
        );
    }
}
