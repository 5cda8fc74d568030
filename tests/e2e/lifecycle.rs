//! A Sync's lifecycle beyond "the server accepted it": waiting for health (`spec.wait`,
//! `spec.healthChecks`, `spec.timeout`), the guards against an emptied folder and mass pruning
//! (`spec.allowEmpty`, `spec.maxPrune`), and `status.history`. The emulator runs no workload
//! controllers, so the tests write a Deployment's status as the controller-manager would.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use sigil::api::ManifestSync;

use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, condition, fleet_source_yaml, ready};

pub(crate) const NS: &str = "gitops";
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn source_yaml(url: &str) -> String {
    fleet_source_yaml(url, "1s", "")
}

pub(crate) fn sync_yaml(name: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\nspec:\n  sourceRef:\n    name: fleet\n  path: {path}\n  interval: 1h\n  prune: true\n{extra}"
    )
}

pub(crate) fn deployment_yaml(image: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
    )
}

pub(crate) fn configmap_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NS}\ndata:\n  k: v\n"
    )
}

/// Writes a Deployment status the way the Deployment controller does: `done` finishes the
/// rollout of the current generation, otherwise the progress deadline passed.
async fn write_rollout(ops: &GitOps, done: bool) {
    let api: Api<Deployment> = Api::namespaced(ops.client(), "apps");
    let generation = api
        .get("web")
        .await
        .expect("deployment")
        .metadata
        .generation;
    let status: Value = if done {
        json!({"observedGeneration": generation, "replicas": 2, "updatedReplicas": 2,
            "readyReplicas": 2, "availableReplicas": 2, "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]})
    } else {
        json!({"observedGeneration": generation, "replicas": 3, "updatedReplicas": 1,
            "readyReplicas": 2, "availableReplicas": 2, "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
             "message": "ReplicaSet \"web-2\" has timed out progressing."}]})
    };
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({ "status": status })),
    )
    .await
    .expect("write the Deployment status");
}

pub(crate) fn is_ready(sync: &ManifestSync) -> bool {
    ready(sync).is_some_and(|(status, _, _)| status == "True")
}

pub(crate) fn applied_revision(sync: &ManifestSync) -> Option<&str> {
    sync.status.as_ref()?.last_applied_revision.as_deref()
}

#[tokio::test]
async fn wait_holds_ready_until_the_rollout_is_done_and_reports_a_stuck_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write(
        "apps/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
    )
    .write("apps/web.yaml", &deployment_yaml("nginx:1.27"))
    .write("other/settings.yaml", &configmap_yaml("settings"));
    let first = format!("main@sha1:{}", repo.commit("web 1.27"));
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    ops.create_sync(
        NS,
        &sync_yaml("apps", "apps", "  wait: true\n  timeout: 20s\n"),
    )
    .await;

    // Applied, but not Ready: Reconciling names the Deployment and what it waits for.
    let waiting = ops
        .wait_sync(NS, "apps", "waiting for the rollout", WAIT, |s| {
            condition(s, "Reconciling").is_some_and(|(_, _, m)| m.contains("Deployment apps/web"))
        })
        .await;
    assert!(!is_ready(&waiting), "{:?}", waiting.status);
    let (_, _, message) = condition(&waiting, "Reconciling").expect("Reconciling");
    assert!(message.contains("waiting for 1 object(s)"), "{message}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !is_ready(&ops.sync(NS, "apps").await),
        "Ready before the rollout"
    );

    write_rollout(&ops, true).await;
    let sync = ops
        .wait_sync(NS, "apps", "Ready after the rollout", WAIT, |s| {
            is_ready(s) && applied_revision(s) == Some(first.as_str())
        })
        .await;
    assert!(
        condition(&sync, "Reconciling").is_none(),
        "{:?}",
        sync.status
    );
    let history = sync.status.clone().expect("status").history;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].revision, first);
    assert_eq!(history[0].result, "ReconciliationSucceeded");

    // A new image whose rollout gets stuck: reported as soon as the Deployment says so, well
    // before the 20 s timeout, naming the object and why.
    repo.write("apps/web.yaml", &deployment_yaml("nginx:1.28"));
    let second = format!("main@sha1:{}", repo.commit("web 1.28"));
    let api: Api<Deployment> = Api::namespaced(ops.client(), "apps");
    crate::support::gitops::wait_for("the new generation applied", WAIT, || async {
        let deployment = api.get("web").await.ok()?;
        (deployment.metadata.generation == Some(2)).then_some(())
    })
    .await;
    let stuck_at = Instant::now();
    write_rollout(&ops, false).await;
    let sync = ops
        .wait_sync(NS, "apps", "HealthCheckFailed", WAIT, |s| {
            ready(s).is_some_and(|(status, reason, _)| {
                status == "False" && reason == "HealthCheckFailed"
            })
        })
        .await;
    assert!(
        stuck_at.elapsed() < Duration::from_secs(15),
        "{:?}",
        stuck_at.elapsed()
    );
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("Deployment apps/web") && message.contains("timed out progressing"),
        "{message}"
    );
    let status = sync.status.clone().expect("status");
    assert_eq!(
        status.last_applied_revision.as_deref(),
        Some(first.as_str())
    );
    assert_eq!(
        status.last_attempted_revision.as_deref(),
        Some(second.as_str())
    );
    assert_eq!(status.history[0].result, "HealthCheckFailed");
    assert_eq!(status.history[0].revision, second);

    // healthChecks with a timeout: a Deployment that never rolls out times out, named.
    let health_checks = "  timeout: 3s\n  healthChecks:\n  - apiVersion: apps/v1\n    kind: Deployment\n    name: web\n    namespace: apps\n";
    ops.create_sync(NS, &sync_yaml("checked", "other", health_checks))
        .await;
    api.patch_status(
        "web",
        &PatchParams::default(),
        &Patch::Merge(&json!({"status": {"conditions": [], "updatedReplicas": 0}})),
    )
    .await
    .expect("reset the status");
    let sync = ops
        .wait_sync(NS, "checked", "timed out", WAIT, |s| {
            ready(s).is_some_and(|(_, reason, _)| reason == "HealthCheckFailed")
        })
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("timeout waiting for 1 object(s): Deployment apps/web"),
        "{message}"
    );
}

#[tokio::test]
async fn an_emptied_folder_prunes_nothing_and_max_prune_stops_a_mass_prune() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("apps/README.md", "kept so the folder stays\n");
    for name in ["a", "b", "c"] {
        repo.write(&format!("apps/{name}.yaml"), &configmap_yaml(name));
    }
    let first = format!("main@sha1:{}", repo.commit("three"));
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    ops.create_sync(NS, &sync_yaml("apps", "apps", "  maxPrune: 1\n"))
        .await;
    ops.wait_sync(NS, "apps", "applied", WAIT, |s| {
        is_ready(s) && applied_revision(s) == Some(first.as_str())
    })
    .await;
    let configmaps: Api<ConfigMap> = Api::namespaced(ops.client(), NS);
    let present = || async {
        let mut names = Vec::new();
        for name in ["a", "b", "c"] {
            if configmaps.get_opt(name).await.expect("get").is_some() {
                names.push(name);
            }
        }
        names
    };

    let refused = |reason: &'static str| {
        move |s: &ManifestSync| {
            ready(s).is_some_and(|(status, r, _)| status == "False" && r == reason)
                && condition(s, "Stalled").is_some()
        }
    };
    // Two of three would go, the limit is one: nothing is applied or pruned.
    repo.remove("apps/b.yaml").remove("apps/c.yaml");
    repo.commit("two fewer");
    let sync = ops
        .wait_sync(
            NS,
            "apps",
            "PruneLimitExceeded",
            WAIT,
            refused("PruneLimitExceeded"),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("prune 2 objects") && message.contains("spec.maxPrune (1)"),
        "{message}"
    );
    assert_eq!(present().await, ["a", "b", "c"]);

    // The folder emptied (only a README left): refused, nothing pruned.
    repo.remove("apps/a.yaml");
    repo.commit("empty");
    let sync = ops
        .wait_sync(NS, "apps", "EmptyRevision", WAIT, refused("EmptyRevision"))
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("spec.allowEmpty"), "{message}");
    assert_eq!(present().await, ["a", "b", "c"]);
    assert_eq!(sync.status.clone().expect("status").inventory.len(), 3);

    // Allowed on purpose: everything goes.
    Api::<ManifestSync>::namespaced(ops.client(), NS)
        .patch(
            "apps",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"allowEmpty": true, "maxPrune": 5}})),
        )
        .await
        .expect("allow empty");
    let sync = ops
        .wait_sync(NS, "apps", "emptied on purpose", WAIT, |s| {
            is_ready(s) && s.status.as_ref().is_some_and(|st| st.inventory.is_empty())
        })
        .await;
    assert!(present().await.is_empty());
    let history = sync.status.expect("status").history;
    let results: Vec<&str> = history.iter().map(|h| h.result.as_str()).collect();
    assert_eq!(
        results,
        [
            "ReconciliationSucceeded",
            "EmptyRevision",
            "PruneLimitExceeded",
            "ReconciliationSucceeded"
        ]
    );
}
