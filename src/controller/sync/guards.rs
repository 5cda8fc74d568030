//! Refusals before anything is applied: a revision that renders no object while the inventory
//! is not empty (`spec.allowEmpty`), and one that would prune more than `spec.maxPrune`.

use crate::api::sync::{InventoryEntry, SyncSpec};
use crate::manifests::prune::stale;

/// Why a revision is refused: a Ready reason and a message naming the field to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Checks the planned inventory against the previous one.
pub fn check(
    spec: &SyncSpec,
    planned: &[InventoryEntry],
    previous: &[InventoryEntry],
) -> Result<(), Refusal> {
    if planned.is_empty() && !previous.is_empty() && !spec.allow_empty {
        return Err(Refusal {
            reason: "EmptyRevision",
            message: format!(
                "the revision has no objects while {} are applied; nothing applied or pruned (set spec.allowEmpty: true to remove them all)",
                previous.len()
            ),
        });
    }
    if let Some(max) = spec.max_prune
        && spec.prune
    {
        let going = stale(previous, planned).len();
        if i64::try_from(going).unwrap_or(i64::MAX) > i64::from(max) {
            return Err(Refusal {
                reason: "PruneLimitExceeded",
                message: format!(
                    "the revision would prune {going} objects, more than spec.maxPrune ({max}); nothing applied or pruned"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(names: &[&str]) -> Vec<InventoryEntry> {
        names
            .iter()
            .map(|n| InventoryEntry {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: "apps".into(),
                name: n.to_string(),
            })
            .collect()
    }

    #[test]
    fn an_emptied_folder_is_refused_unless_allowed() {
        let spec = SyncSpec {
            prune: true,
            ..Default::default()
        };
        let refusal = check(&spec, &[], &entries(&["a", "b"])).expect_err("refused");
        assert_eq!(refusal.reason, "EmptyRevision");
        assert!(
            refusal.message.contains("spec.allowEmpty"),
            "{}",
            refusal.message
        );
        assert!(
            check(&spec, &[], &[]).is_ok(),
            "a first empty revision is fine"
        );
        let allowed = SyncSpec {
            allow_empty: true,
            ..spec
        };
        assert!(check(&allowed, &[], &entries(&["a"])).is_ok());
    }

    #[test]
    fn pruning_beyond_the_limit_is_refused() {
        let spec = SyncSpec {
            prune: true,
            max_prune: Some(1),
            ..Default::default()
        };
        let previous = entries(&["a", "b", "c"]);
        assert!(check(&spec, &entries(&["a", "b"]), &previous).is_ok());
        let refusal = check(&spec, &entries(&["a"]), &previous).expect_err("two would go");
        assert_eq!(refusal.reason, "PruneLimitExceeded");
        assert!(
            refusal.message.contains("prune 2 objects"),
            "{}",
            refusal.message
        );
        let no_prune = SyncSpec {
            prune: false,
            ..spec
        };
        assert!(check(&no_prune, &entries(&["a"]), &previous).is_ok());
    }
}
