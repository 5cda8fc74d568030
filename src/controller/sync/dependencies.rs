//! `spec.dependsOn`: a Sync applies only once every Sync it names is Ready at the latest
//! revision of that Sync's own source — Ready at an older revision is not enough, as the
//! dependency has not caught up yet. A dependency that waits for health (`wait`,
//! `healthChecks`) is Ready only when healthy, so Ready covers that too. Cycles are found in
//! the controller's cache of Syncs and reported, naming every Sync of the cycle.

use std::collections::HashSet;

use kube::api::Api;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};

use crate::api::conditions;
use crate::api::git_source::GitSource;
use crate::api::sync::{DependencyRef, ManifestSync};

/// Why a Sync does not run yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Blocked {
    /// A dependency is missing or not Ready at its latest revision (retried).
    NotReady(String),
    /// The Sync is part of a `dependsOn` cycle (only a spec change can fix it).
    Cycle(String),
}

impl Blocked {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotReady(_) => "DependencyNotReady",
            Self::Cycle(_) => "DependencyCycle",
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Self::NotReady(m) | Self::Cycle(m) => m,
        }
    }
}

/// `namespace/name` of a dependency of a Sync in `namespace`.
pub fn dependency_key(namespace: &str, dependency: &DependencyRef) -> String {
    let ns = dependency
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or(namespace);
    format!("{ns}/{}", dependency.name)
}

fn key_of(sync: &ManifestSync) -> String {
    format!(
        "{}/{}",
        sync.namespace().unwrap_or_default(),
        sync.name_any()
    )
}

/// The `namespace/name` keys a Sync depends on.
pub fn dependencies_of(sync: &ManifestSync) -> Vec<String> {
    let namespace = sync.namespace().unwrap_or_default();
    sync.spec
        .depends_on
        .iter()
        .map(|d| dependency_key(&namespace, d))
        .collect()
}

/// The first cycle through `start`, as the path `start -> ... -> start`, following `edges`.
pub fn cycle_through(start: &str, edges: impl Fn(&str) -> Vec<String>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        start: &str,
        edges: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        seen: &mut HashSet<String>,
    ) -> bool {
        for next in edges(node) {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if visit(&next, start, edges, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    let mut seen = HashSet::from([start.to_string()]);
    visit(start, start, &edges, &mut path, &mut seen).then_some(path)
}

/// Whether a dependency is Ready at `latest`, the revision its source offers now.
pub fn readiness(dependency: &ManifestSync, latest: Option<&str>) -> Result<(), String> {
    let key = key_of(dependency);
    let status = dependency.status.clone().unwrap_or_default();
    let ready = conditions::find(&status.conditions, conditions::READY);
    let ready_now = ready.is_some_and(|c| {
        c.status == "True" && c.observed_generation == dependency.meta().generation
    });
    if !ready_now {
        let why = ready
            .map(|c| format!(" ({}: {})", c.reason, c.message))
            .unwrap_or_default();
        return Err(format!("dependency Sync {key} is not Ready{why}"));
    }
    let Some(latest) = latest else {
        return Err(format!(
            "dependency Sync {key}: its source has no revision yet"
        ));
    };
    match status.last_applied_revision.as_deref() {
        Some(applied) if applied == latest => Ok(()),
        applied => Err(format!(
            "dependency Sync {key} is Ready at revision {}, not yet at its source's latest {latest}",
            applied.unwrap_or("none")
        )),
    }
}

/// Checks every dependency of `sync`: cycles in the cache, readiness from the API.
pub async fn check(
    client: &kube::Client,
    syncs: &Store<ManifestSync>,
    sync: &ManifestSync,
) -> Result<(), Blocked> {
    if sync.spec.depends_on.is_empty() {
        return Ok(());
    }
    let cached = syncs.state();
    let edges = |key: &str| {
        cached
            .iter()
            .find(|s| key_of(s) == key)
            .map(|s| dependencies_of(s))
            .unwrap_or_default()
    };
    let me = key_of(sync);
    let mine = dependencies_of(sync);
    let through_me = |key: &str| if key == me { mine.clone() } else { edges(key) };
    if let Some(cycle) = cycle_through(&me, through_me) {
        return Err(Blocked::Cycle(format!(
            "spec.dependsOn forms a cycle: {}",
            cycle.join(" -> ")
        )));
    }
    for key in mine {
        let (namespace, name) = key.split_once('/').unwrap_or(("", key.as_str()));
        let dependency = Api::<ManifestSync>::namespaced(client.clone(), namespace)
            .get_opt(name)
            .await
            .map_err(|e| Blocked::NotReady(format!("dependency Sync {key}: {e}")))?
            .ok_or_else(|| Blocked::NotReady(format!("dependency Sync {key} not found")))?;
        let source = Api::<GitSource>::namespaced(client.clone(), namespace)
            .get_opt(&dependency.spec.source_ref.name)
            .await
            .map_err(|e| Blocked::NotReady(format!("dependency Sync {key}'s source: {e}")))?;
        let latest = source
            .and_then(|s| s.status)
            .and_then(|s| s.artifact)
            .map(|a| a.revision);
        readiness(&dependency, latest.as_deref()).map_err(Blocked::NotReady)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    use super::*;
    use crate::api::sync::{SyncSpec, SyncStatus};

    fn graph(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycles_are_named_and_chains_are_not_cycles() {
        let g = graph(&[("n/a", &["n/b"]), ("n/b", &["n/c"]), ("n/c", &["n/a"])]);
        let edges = |k: &str| g.get(k).cloned().unwrap_or_default();
        assert_eq!(
            cycle_through("n/a", edges).expect("cycle"),
            ["n/a", "n/b", "n/c", "n/a"]
        );
        let chain = graph(&[("n/a", &["n/b", "n/c"]), ("n/b", &["n/c"]), ("n/c", &[])]);
        assert_eq!(
            cycle_through("n/a", |k| chain.get(k).cloned().unwrap_or_default()),
            None
        );
        // A cycle elsewhere that does not pass through the Sync is the other Syncs' report.
        let elsewhere = graph(&[("n/a", &["n/b"]), ("n/b", &["n/c"]), ("n/c", &["n/b"])]);
        assert_eq!(
            cycle_through("n/a", |k| elsewhere.get(k).cloned().unwrap_or_default()),
            None
        );
        let myself = graph(&[("n/a", &["n/a"])]);
        assert_eq!(
            cycle_through("n/a", |k| myself.get(k).cloned().unwrap_or_default()),
            Some(vec!["n/a".to_string(), "n/a".to_string()])
        );
    }

    #[test]
    fn the_namespace_defaults_to_the_depending_syncs() {
        let local = DependencyRef {
            name: "crds".into(),
            namespace: None,
        };
        let other = DependencyRef {
            name: "infra".into(),
            namespace: Some("platform".into()),
        };
        assert_eq!(dependency_key("apps", &local), "apps/crds");
        assert_eq!(dependency_key("apps", &other), "platform/infra");
    }

    fn dependency(ready: &str, generation: i64, applied: Option<&str>) -> ManifestSync {
        let mut sync = ManifestSync::new("crds", SyncSpec::default());
        sync.metadata.namespace = Some("apps".into());
        sync.metadata.generation = Some(2);
        sync.status = Some(SyncStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: ready.into(),
                reason: "ReconciliationSucceeded".into(),
                message: "applied".into(),
                observed_generation: Some(generation),
                last_transition_time: conditions::now(),
            }],
            last_applied_revision: applied.map(String::from),
            ..Default::default()
        });
        sync
    }

    #[test]
    fn ready_means_ready_at_the_latest_revision_of_the_current_generation() {
        assert_eq!(
            readiness(
                &dependency("True", 2, Some("main@sha1:b")),
                Some("main@sha1:b")
            ),
            Ok(())
        );
        let behind = readiness(
            &dependency("True", 2, Some("main@sha1:a")),
            Some("main@sha1:b"),
        )
        .expect_err("an older revision is not enough");
        assert!(
            behind.contains("at revision main@sha1:a") && behind.contains("main@sha1:b"),
            "{behind}"
        );
        let stale = readiness(
            &dependency("True", 1, Some("main@sha1:b")),
            Some("main@sha1:b"),
        )
        .expect_err("Ready of an older generation");
        assert!(stale.contains("apps/crds is not Ready"), "{stale}");
        assert!(
            readiness(
                &dependency("False", 2, Some("main@sha1:b")),
                Some("main@sha1:b")
            )
            .is_err()
        );
        assert!(readiness(&dependency("True", 2, Some("main@sha1:b")), None).is_err());
    }
}
