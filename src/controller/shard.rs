//! Sharding: `--shard N --shards M` splits the objects between M controllers
//! by a stable hash of namespace/name, the way Argo CD and Flux scale out.
//! Each shard elects its own leader on its own Lease.

use kube::ResourceExt;
use sha2::{Digest, Sha256};

/// Which part of the objects this process reconciles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Self { index: 0, count: 1 }
    }
}

/// `--shard` is not below `--shards`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--shard {index} is out of range: --shards {count} allows 0 to {}", count.saturating_sub(1))]
pub struct InvalidShard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn new(index: u32, count: u32) -> Result<Self, InvalidShard> {
        if count == 0 || index >= count {
            return Err(InvalidShard { index, count });
        }
        Ok(Self { index, count })
    }

    /// Whether this shard reconciles the object `namespace/name`.
    pub fn owns(&self, namespace: Option<&str>, name: &str) -> bool {
        if self.count <= 1 {
            return true;
        }
        let digest = Sha256::new()
            .chain_update(namespace.unwrap_or_default().as_bytes())
            .chain_update(b"/")
            .chain_update(name.as_bytes())
            .finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_be_bytes(first) % u64::from(self.count) == u64::from(self.index)
    }

    /// Whether this shard reconciles `object`.
    pub fn owns_object(&self, object: &impl kube::ResourceExt) -> bool {
        self.owns(object.namespace().as_deref(), &object.name_any())
    }

    /// Whether this shard reconciles `sync`. A Sync goes with its GitSource (same namespace,
    /// `spec.sourceRef.name`), so the process that fetched a revision into its Git cache is the
    /// one that applies it, and a repository is fetched by one shard only.
    pub fn owns_sync(&self, sync: &crate::api::sync::ManifestSync) -> bool {
        self.owns(sync.namespace().as_deref(), &sync.spec.source_ref.name)
    }

    /// The Lease this shard's replicas elect a leader on.
    pub fn lease_name(&self) -> String {
        if self.count <= 1 {
            "sigil-controller".to_string()
        } else {
            format!("sigil-controller-shard-{}", self.index)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_object_belongs_to_exactly_one_shard_and_the_split_is_even() {
        let shards: Vec<Shard> = (0..3).map(|i| Shard::new(i, 3).expect("valid")).collect();
        let mut per_shard = [0usize; 3];
        for n in 0..3000 {
            let name = format!("object-{n}");
            let owners: Vec<usize> = (0..3)
                .filter(|&i| shards[i].owns(Some("team"), &name))
                .collect();
            assert_eq!(owners.len(), 1, "{name} owned by {owners:?}");
            per_shard[owners[0]] += 1;
        }
        for count in per_shard {
            assert!((800..1200).contains(&count), "uneven split {per_shard:?}");
        }
    }

    #[test]
    fn a_sync_belongs_to_the_shard_of_its_git_source() {
        let sync = |name: &str, source: &str| -> crate::api::sync::ManifestSync {
            let mut sync = crate::api::sync::ManifestSync::new(
                name,
                crate::api::sync::SyncSpec {
                    source_ref: crate::api::sync::SourceRef {
                        kind: "GitSource".to_string(),
                        name: source.to_string(),
                    },
                    ..Default::default()
                },
            );
            sync.metadata.namespace = Some("apps".to_string());
            sync
        };
        for n in 0..50 {
            let (name, source) = (format!("sync-{n}"), format!("repo-{}", n % 7));
            for index in 0..3 {
                let shard = Shard::new(index, 3).expect("valid");
                assert_eq!(
                    shard.owns_sync(&sync(&name, &source)),
                    shard.owns(Some("apps"), &source),
                    "{name} follows {source}"
                );
            }
        }
    }

    #[test]
    fn a_single_shard_owns_everything_and_bad_indexes_are_refused() {
        assert!(Shard::default().owns(None, "anything"));
        assert_eq!(Shard::new(2, 2), Err(InvalidShard { index: 2, count: 2 }));
        assert!(Shard::new(0, 0).is_err());
        assert_eq!(
            Shard::new(1, 2).expect("valid").lease_name(),
            "sigil-controller-shard-1"
        );
    }
}
