//! Deleting a Sync (`spec.deletionPolicy`): `Delete` removes exactly its objects — an unrelated
//! object in the same namespace, another Sync's object and one relabelled for another Sync stay
//! —, `Orphan` removes none, the default `MirrorPrune` follows `spec.prune` and never deletes for
//! a suspended Sync or one whose last revision failed, and `WaitForTermination` on an object that never goes gives up at
//! `spec.timeout` with an Event naming it instead of holding the Sync forever.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use sigil::api::ManifestSync;

use crate::lifecycle::{NS, WAIT, configmap_yaml, is_ready, source_yaml};
use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, wait_for};

/// A Sync of `path` with `prune` and the lines of `extra`.
fn sync_yaml(name: &str, path: &str, prune: bool, extra: &str) -> String {
    format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\nspec:\n  sourceRef:\n    name: fleet\n  path: {path}\n  interval: 1h\n  prune: {prune}\n{extra}"
    )
}

struct Fixture {
    ops: GitOps,
    configmaps: Api<ConfigMap>,
    syncs: Api<ManifestSync>,
}

impl Fixture {
    async fn present(&self, names: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            if let Some(cm) = self.configmaps.get_opt(name).await.expect("get") {
                let terminating = cm.metadata.deletion_timestamp.is_some();
                out.push(format!(
                    "{name}{}",
                    if terminating { " (terminating)" } else { "" }
                ));
            }
        }
        out
    }

    /// Asserts the Sync `sync` published an Event `reason` whose message contains `text`.
    async fn assert_event(&self, sync: &str, reason: &str, text: &str) {
        let events = self.ops.events(NS, sync).await;
        assert!(
            events.iter().any(|e| e.reason.as_deref() == Some(reason)
                && e.message.as_deref().is_some_and(|m| m.contains(text))),
            "no {reason} Event with {text:?}: {events:#?}"
        );
    }

    async fn delete_sync(&self, name: &str) {
        self.syncs
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete the Sync");
        let syncs = self.syncs.clone();
        let name = name.to_string();
        wait_for("the Sync gone", WAIT, || {
            let (syncs, name) = (syncs.clone(), name.clone());
            async move { syncs.get_opt(&name).await.ok()?.is_none().then_some(()) }
        })
        .await;
    }

    async fn wait_ready(&self, name: &str) {
        self.ops
            .wait_sync(NS, name, "Ready", WAIT, |s| {
                is_ready(s) && sigil_finalized(s)
            })
            .await;
    }
}

fn sigil_finalized(sync: &ManifestSync) -> bool {
    sync.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == "sigil.dev/sync-cleanup")
}

async fn start(repo: &GitRepo) -> Fixture {
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    let configmaps = Api::namespaced(ops.client(), NS);
    let syncs = Api::namespaced(ops.client(), NS);
    Fixture {
        ops,
        configmaps,
        syncs,
    }
}

#[tokio::test]
async fn delete_removes_exactly_the_syncs_objects_and_orphan_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    for (folder, names) in [
        ("del", ["del-a", "del-b"]),
        ("orphan", ["orphan-a", "orphan-b"]),
        ("other", ["other-a", "other-b"]),
    ] {
        for name in names {
            repo.write(&format!("{folder}/{name}.yaml"), &configmap_yaml(name));
        }
    }
    repo.commit("three folders");
    let f = start(&repo).await;
    f.ops
        .create_sync(
            NS,
            &sync_yaml("del", "del", false, "  deletionPolicy: Delete\n"),
        )
        .await;
    f.ops
        .create_sync(
            NS,
            &sync_yaml("orphan", "orphan", true, "  deletionPolicy: Orphan\n"),
        )
        .await;
    f.ops
        .create_sync(NS, &sync_yaml("other", "other", true, ""))
        .await;
    for name in ["del", "orphan", "other"] {
        f.wait_ready(name).await;
    }
    // Not sigil's: created by hand in the same namespace.
    f.configmaps
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "loose"}, "data": {"k": "v"}}))
                .expect("ConfigMap"),
        )
        .await
        .expect("create loose");
    // In "del"'s inventory, but now labelled for Sync "other": not "del"'s to delete.
    f.configmaps
        .patch(
            "del-b",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"labels": {"sigil.dev/sync-name": "other"}}})),
        )
        .await
        .expect("relabel del-b");

    let all = [
        "del-a", "del-b", "orphan-a", "orphan-b", "other-a", "other-b", "loose",
    ];
    f.delete_sync("del").await;
    assert_eq!(
        f.present(&all).await,
        [
            "del-b", "orphan-a", "orphan-b", "other-a", "other-b", "loose"
        ]
    );
    f.assert_event("del", "Deleted", "1 object(s) deleted")
        .await;

    // Orphan: nothing goes, although the Sync prunes.
    f.delete_sync("orphan").await;
    assert_eq!(
        f.present(&all).await,
        [
            "del-b", "orphan-a", "orphan-b", "other-a", "other-b", "loose"
        ]
    );
    f.assert_event("orphan", "Orphaned", "deletionPolicy is Orphan")
        .await;
}

#[tokio::test]
async fn mirror_prune_follows_prune_and_suspend_and_a_stuck_deletion_gives_up_at_the_timeout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    for (folder, name) in [
        ("mirror", "mirror-a"),
        ("kept", "kept-a"),
        ("suspended", "suspended-a"),
        ("broken", "broken-a"),
    ] {
        repo.write(&format!("{folder}/{name}.yaml"), &configmap_yaml(name));
    }
    // An object another controller holds with its finalizer.
    repo.write(
        "stuck/held.yaml",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: {NS}\n  finalizers: [example.com/hold]\ndata:\n  k: v\n"
        ),
    );
    repo.commit("four folders");
    let f = start(&repo).await;
    f.ops
        .create_sync(NS, &sync_yaml("mirror", "mirror", true, ""))
        .await;
    f.ops
        .create_sync(NS, &sync_yaml("kept", "kept", false, ""))
        .await;
    f.ops
        .create_sync(NS, &sync_yaml("suspended", "suspended", true, ""))
        .await;
    f.ops
        .create_sync(NS, &sync_yaml("broken", "broken", true, ""))
        .await;
    f.ops
        .create_sync(
            NS,
            &sync_yaml(
                "stuck",
                "stuck",
                true,
                "  deletionPolicy: WaitForTermination\n  timeout: 3s\n",
            ),
        )
        .await;
    for name in ["mirror", "kept", "suspended", "broken", "stuck"] {
        f.wait_ready(name).await;
    }
    let all = ["mirror-a", "kept-a", "suspended-a", "broken-a", "held"];

    // A Sync whose last revision failed to apply keeps its objects on removal.
    repo.write("broken/bad.yaml", "kind: [\n");
    let bad = format!("main@sha1:{}", repo.commit("bad YAML"));
    f.ops
        .wait_sync(NS, "broken", "the bad revision refused", WAIT, |s| {
            !is_ready(s)
                && s.status
                    .as_ref()
                    .and_then(|st| st.last_attempted_revision.as_deref())
                    == Some(bad.as_str())
        })
        .await;
    f.delete_sync("broken").await;
    f.assert_event("broken", "Orphaned", "its last revision failed to apply")
        .await;

    // MirrorPrune with prune: deleted; without: kept.
    f.delete_sync("mirror").await;
    f.delete_sync("kept").await;
    assert_eq!(
        f.present(&all).await,
        ["kept-a", "suspended-a", "broken-a", "held"]
    );

    // A suspended Sync keeps its objects on removal.
    f.syncs
        .patch(
            "suspended",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"suspend": true}})),
        )
        .await
        .expect("suspend");
    f.delete_sync("suspended").await;
    assert_eq!(
        f.present(&all).await,
        ["kept-a", "suspended-a", "broken-a", "held"]
    );

    // WaitForTermination on an object that never goes: the Sync stays until the timeout, then
    // goes with a Warning naming what is left.
    let started = Instant::now();
    f.syncs
        .delete("stuck", &DeleteParams::default())
        .await
        .expect("delete stuck");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        f.syncs.get_opt("stuck").await.expect("get").is_some(),
        "held while the object terminates"
    );
    f.delete_sync("stuck").await;
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        f.present(&all).await,
        ["kept-a", "suspended-a", "broken-a", "held (terminating)"]
    );
    f.assert_event(
        "stuck",
        "DeletionTimedOut",
        "ConfigMap gitops/held (still terminating)",
    )
    .await;
    // Let the object go, so the namespace can.
    f.configmaps
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("release held");
}
