//! Deleting the objects that left Git: entries of the previous inventory that the applied plan
//! no longer has. Only called after a fully successful apply. An object is kept (and forgotten)
//! when it is no longer labelled for this Sync, when it says `sigil.dev/reconcile: disabled` or
//! `sigil.dev/prune: "false"`, and — unless it says `sigil.dev/prune: "true"` — when it is a
//! Namespace or a CRD, whose deletion takes everything inside with it.

use serde_json::Value;

use super::apply::Mode;
use super::client::Target;
use super::discovery::Resolver;
use super::object::{Owner, describe, group_of, prune_annotation, reconcile_disabled, same_object};
use crate::api::sync::InventoryEntry;

/// What prune did.
#[derive(Clone, Debug, Default)]
pub struct PruneReport {
    /// Deleted (or, in a dry run, would be).
    pub pruned: Vec<InventoryEntry>,
    /// Left in place, with why.
    pub kept: Vec<(InventoryEntry, String)>,
    /// Deletions that failed; they stay in the inventory to be tried again.
    pub failures: Vec<(InventoryEntry, String)>,
}

fn is_namespace_or_crd(entry: &InventoryEntry) -> bool {
    (entry.api_version == "v1" && entry.kind == "Namespace")
        || (group_of(&entry.api_version) == "apiextensions.k8s.io"
            && entry.kind == "CustomResourceDefinition")
}

/// Order of deletion: objects, then Namespaces, then CRDs.
fn rank(entry: &InventoryEntry) -> u8 {
    match (group_of(&entry.api_version), entry.kind.as_str()) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => 2,
        ("", "Namespace") => 1,
        _ => 0,
    }
}

/// The previous entries that are not in `current`.
pub fn stale(previous: &[InventoryEntry], current: &[InventoryEntry]) -> Vec<InventoryEntry> {
    let mut out: Vec<InventoryEntry> = previous
        .iter()
        .filter(|p| !current.iter().any(|c| same_object(p, c)))
        .cloned()
        .collect();
    out.sort_by_key(rank);
    out
}

/// Why a live object is not deleted, if it is not.
fn keep_reason(entry: &InventoryEntry, live: &Value, owner: &Owner) -> Option<String> {
    if Owner::of(live).as_ref() != Some(owner) {
        return Some(format!("no longer labelled for Sync {owner}"));
    }
    if reconcile_disabled(live) {
        return Some(format!("{}: disabled", super::RECONCILE_ANNOTATION));
    }
    match prune_annotation(live) {
        Some(false) => Some(format!("{}: \"false\"", super::PRUNE_ANNOTATION)),
        Some(true) => None,
        None if is_namespace_or_crd(entry) => Some(format!(
            "{} is pruned only with the annotation {}: \"true\"",
            entry.kind,
            super::PRUNE_ANNOTATION
        )),
        None => None,
    }
}

/// Deletes (or, with [`Mode::DryRun`], lists) the stale objects.
pub async fn prune(
    target: &Target,
    resolver: &Resolver,
    previous: &[InventoryEntry],
    current: &[InventoryEntry],
    owner: &Owner,
    mode: Mode,
) -> PruneReport {
    let mut report = PruneReport::default();
    for entry in stale(previous, current) {
        let namespace = (!entry.namespace.is_empty()).then_some(entry.namespace.as_str());
        let kind = match resolver.resolve(&entry.api_version, &entry.kind).await {
            Ok(Some(kind)) => kind,
            Ok(None) => {
                report
                    .kept
                    .push((entry, "its kind is no longer served".to_string()));
                continue;
            }
            Err(err) => {
                report.failures.push((entry, err.message));
                continue;
            }
        };
        let live = match target.get(&kind.resource, namespace, &entry.name).await {
            Ok(Some(live)) => live,
            Ok(None) => continue,
            Err(err) => {
                report.failures.push((entry, err.message));
                continue;
            }
        };
        if let Some(reason) = keep_reason(&entry, &live, owner) {
            tracing::info!(object = %describe(&entry), %reason, "not pruned");
            report.kept.push((entry, reason));
            continue;
        }
        if mode == Mode::DryRun {
            report.pruned.push(entry);
            continue;
        }
        match target.delete(&kind.resource, namespace, &entry.name).await {
            Ok(_) => report.pruned.push(entry),
            Err(err) => report.failures.push((entry, err.message)),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stale_entries_come_objects_first() {
        let previous = vec![
            InventoryEntry::new("v1", "Namespace", "", "apps"),
            InventoryEntry::new(
                "apiextensions.k8s.io/v1",
                "CustomResourceDefinition",
                "",
                "w.example.com",
            ),
            InventoryEntry::new("v1", "ConfigMap", "apps", "a"),
            InventoryEntry::new("apps/v1", "Deployment", "apps", "d"),
        ];
        let current = vec![InventoryEntry::new(
            "apps/v1beta1",
            "Deployment",
            "apps",
            "d",
        )];
        let kinds: Vec<String> = stale(&previous, &current)
            .into_iter()
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            ["ConfigMap", "Namespace", "CustomResourceDefinition"]
        );
    }

    #[test]
    fn guards() {
        let owner = Owner {
            namespace: "flux".into(),
            name: "apps".into(),
        };
        let labels = json!({"sigil.dev/sync-name": "apps", "sigil.dev/sync-namespace": "flux"});
        let ns = InventoryEntry::new("v1", "Namespace", "", "apps");
        let cm = InventoryEntry::new("v1", "ConfigMap", "apps", "a");
        let plain = json!({"metadata": {"labels": labels}});
        assert!(keep_reason(&ns, &plain, &owner).is_some());
        assert!(keep_reason(&cm, &plain, &owner).is_none());
        let opted_in =
            json!({"metadata": {"labels": labels, "annotations": {"sigil.dev/prune": "true"}}});
        assert!(keep_reason(&ns, &opted_in, &owner).is_none());
        let opted_out =
            json!({"metadata": {"labels": labels, "annotations": {"sigil.dev/prune": "false"}}});
        assert!(keep_reason(&cm, &opted_out, &owner).is_some());
        let foreign = json!({"metadata": {"labels": {"sigil.dev/sync-name": "other", "sigil.dev/sync-namespace": "flux"}}});
        assert!(keep_reason(&cm, &foreign, &owner).is_some());
    }
}
