//! Living with other controllers: `spec.ignore[]` keeps a self-healing Sync from fighting an
//! "HPA" that scales a Deployment (counted: 0 fights with the rule, some without it), and the
//! per-object annotations `sigil.dev/ssa: IfNotPresent | Ignore | Merge` and
//! `sigil.dev/force: enabled` (an immutable selector changed in Git recreates the Deployment).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::json;

use crate::lifecycle::{NS, WAIT, applied_revision, is_ready, source_yaml};
use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, ready, wait_for};

/// What the Git manifests set; the "HPA" never writes it.
const GIT_REPLICAS: i32 = 2;
/// How long the HPA and the Syncs run side by side.
const WINDOW: Duration = Duration::from_secs(4);

fn deployment_yaml(name: &str, app: &str, image: &str, annotations: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\n  namespace: {NS}\n  annotations: {{{annotations}}}\nspec:\n  replicas: {GIT_REPLICAS}\n  selector:\n    matchLabels: {{app: {app}}}\n  template:\n    metadata:\n      labels: {{app: {app}}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
    )
}

fn configmap_yaml(name: &str, annotations: &str, data: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NS}\n  annotations: {{{annotations}}}\ndata: {{{data}}}\n"
    )
}

fn sync_yaml(name: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\nspec:\n  sourceRef:\n    name: fleet\n  path: {path}\n  interval: 1h\n  prune: true\n  selfHeal: true\n{extra}"
    )
}

/// Counts, per Deployment, how often `spec.replicas` went back to the Git value after someone
/// else changed it: each is sigil overwriting the other writer — a fight.
struct FightCounter {
    fights: Arc<Mutex<HashMap<String, usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FightCounter {
    fn start(api: Api<Deployment>) -> Self {
        let fights: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let counted = fights.clone();
        let task = tokio::spawn(async move {
            let mut last: HashMap<String, i32> = HashMap::new();
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .applied_objects();
            futures::pin_mut!(events);
            while let Some(Ok(deployment)) = events.next().await {
                let name = deployment.metadata.name.clone().unwrap_or_default();
                let replicas = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
                let before = last.insert(name.clone(), replicas);
                if before.is_some_and(|b| b != GIT_REPLICAS) && replicas == GIT_REPLICAS {
                    *counted
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(name)
                        .or_default() += 1;
                }
            }
        });
        Self { fights, task }
    }

    fn fights(&self, name: &str) -> usize {
        self.fights
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for FightCounter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Sets `spec.replicas` of each Deployment every 200 ms for `WINDOW`, as its own field
/// manager, cycling through values other than the Git one; returns the last value written.
async fn hpa(api: &Api<Deployment>, names: &[&str]) -> i32 {
    let params = PatchParams {
        field_manager: Some("horizontal-pod-autoscaler".into()),
        ..PatchParams::default()
    };
    let started = Instant::now();
    let mut replicas = GIT_REPLICAS;
    for step in 0.. {
        if started.elapsed() >= WINDOW {
            break;
        }
        replicas = 3 + step % 3;
        for name in names {
            api.patch(
                name,
                &params,
                &Patch::Merge(&json!({"spec": {"replicas": replicas}})),
            )
            .await
            .expect("the HPA scales");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    replicas
}

#[tokio::test]
async fn an_hpa_and_a_self_healing_sync_coexist_with_an_ignore_rule_and_fight_without() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write(
        "scaled/web.yaml",
        &deployment_yaml("scaled", "scaled", "nginx:1.27", ""),
    )
    .write(
        "fought/web.yaml",
        &deployment_yaml("fought", "fought", "nginx:1.27", ""),
    );
    repo.commit("two Deployments");
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    let rule = "  ignore:\n  - paths: [/spec/replicas]\n    target:\n      group: apps\n      kind: Deployment\n";
    ops.create_sync(NS, &sync_yaml("scaled", "scaled", rule))
        .await;
    ops.create_sync(NS, &sync_yaml("fought", "fought", ""))
        .await;
    for name in ["scaled", "fought"] {
        ops.wait_sync(NS, name, "Ready", WAIT, is_ready).await;
    }
    let api: Api<Deployment> = Api::namespaced(ops.client(), NS);
    let counter = FightCounter::start(api.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let last = hpa(&api, &["scaled", "fought"]).await;
    // Let the last heals land before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (with_rule, without_rule) = (counter.fights("scaled"), counter.fights("fought"));
    eprintln!(
        "fights over {WINDOW:?} of HPA writes every 200 ms: {with_rule} with the ignore rule, {without_rule} without"
    );
    assert_eq!(with_rule, 0, "sigil wrote spec.replicas back");
    assert!(
        without_rule > 0,
        "without the rule sigil must heal spec.replicas (else this test proves nothing)"
    );
    let replicas = |d: Deployment| d.spec.and_then(|s| s.replicas);
    assert_eq!(replicas(api.get("scaled").await.expect("get")), Some(last));
    assert_eq!(
        replicas(api.get("fought").await.expect("get")),
        Some(GIT_REPLICAS)
    );

    // The rule leaves only replicas alone: a new image in Git is applied, replicas kept.
    repo.write(
        "scaled/web.yaml",
        &deployment_yaml("scaled", "scaled", "nginx:1.28", ""),
    );
    let second = format!("main@sha1:{}", repo.commit("new image"));
    ops.wait_sync(NS, "scaled", "the new image applied", WAIT, |s| {
        is_ready(s) && applied_revision(s) == Some(second.as_str())
    })
    .await;
    let deployment = api.get("scaled").await.expect("get");
    let image = deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|p| p.containers[0].image.clone());
    assert_eq!(image, Some(Some("nginx:1.28".to_string())));
    assert_eq!(replicas(deployment), Some(last));
    assert_eq!(counter.fights("scaled"), 0);
}

#[tokio::test]
async fn if_not_present_ignore_merge_and_force() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    let write = |selector: &str, value: &str| {
        repo.write(
            "policies/seeded.yaml",
            &configmap_yaml(
                "seeded",
                "sigil.dev/ssa: IfNotPresent",
                &format!("k: {value}"),
            ),
        )
        .write(
            "policies/skipped.yaml",
            &configmap_yaml("skipped", "sigil.dev/ssa: Ignore", "k: git"),
        )
        .write(
            "policies/merged.yaml",
            &configmap_yaml(
                "merged",
                "sigil.dev/ssa: Merge",
                &format!("k: {value}, other: {value}"),
            ),
        )
        .write(
            "policies/forced.yaml",
            &deployment_yaml("forced", selector, "nginx:1.27", "sigil.dev/force: enabled"),
        )
        .write(
            "unforced/web.yaml",
            &deployment_yaml("unforced", selector, "nginx:1.27", ""),
        );
    };
    write("v1", "git");
    repo.commit("policies");
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    ops.create_sync(NS, &sync_yaml("policies", "policies", ""))
        .await;
    ops.create_sync(NS, &sync_yaml("unforced", "unforced", ""))
        .await;
    for name in ["policies", "unforced"] {
        ops.wait_sync(NS, name, "Ready", WAIT, is_ready).await;
    }
    let configmaps: Api<ConfigMap> = Api::namespaced(ops.client(), NS);
    let deployments: Api<Deployment> = Api::namespaced(ops.client(), NS);
    let data = |name: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            configmaps
                .get_opt(name)
                .await
                .expect("get")
                .and_then(|c| c.data)
                .map(|d| d.into_iter().collect::<Vec<_>>())
        }
    };
    let pair = |k: &str, v: &str| (k.to_string(), v.to_string());
    assert_eq!(data("seeded").await, Some(vec![pair("k", "git")]));
    assert_eq!(data("skipped").await, None, "Ignore: never created");

    // Hand edits (another field manager) of the IfNotPresent and the Merge objects stay,
    // although the Sync heals.
    let edit = PatchParams {
        field_manager: Some("kubectl-edit".into()),
        ..PatchParams::default()
    };
    for name in ["seeded", "merged"] {
        configmaps
            .patch(name, &edit, &Patch::Merge(&json!({"data": {"k": "hand"}})))
            .await
            .expect("hand edit");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(data("seeded").await, Some(vec![pair("k", "hand")]));
    assert_eq!(
        data("merged").await,
        Some(vec![pair("k", "hand"), pair("other", "git")])
    );

    // A new revision: IfNotPresent still not updated, Merge updates only what sigil owns, the
    // forced Deployment's immutable selector change recreates it; unforced, it is refused.
    let old_uid = deployments.get("forced").await.expect("get").metadata.uid;
    write("v2", "git2");
    let second = format!("main@sha1:{}", repo.commit("v2"));
    ops.wait_sync(NS, "policies", "v2 applied", WAIT, |s| {
        is_ready(s) && applied_revision(s) == Some(second.as_str())
    })
    .await;
    assert_eq!(data("seeded").await, Some(vec![pair("k", "hand")]));
    assert_eq!(
        data("merged").await,
        Some(vec![pair("k", "hand"), pair("other", "git2")])
    );
    let forced = deployments.get("forced").await.expect("get");
    assert_ne!(forced.metadata.uid, old_uid, "recreated");
    let selector = forced.spec.map(|s| s.selector.match_labels);
    assert_eq!(
        selector,
        Some(Some([pair("app", "v2")].into_iter().collect()))
    );
    let refused = ops
        .wait_sync(NS, "unforced", "refused", WAIT, |s| {
            ready(s)
                .is_some_and(|(status, reason, _)| status == "False" && reason == "ApplyRejected")
        })
        .await;
    let (_, _, message) = ready(&refused).expect("Ready");
    assert!(message.contains("field is immutable"), "{message}");

    // IfNotPresent creates what is absent: a deleted object comes back (self-heal).
    configmaps
        .delete("seeded", &DeleteParams::default())
        .await
        .expect("delete seeded");
    wait_for("seeded recreated", WAIT, || {
        let data = data("seeded");
        async move { data.await.filter(|d| *d == vec![pair("k", "git2")]) }
    })
    .await;
    assert_eq!(data("skipped").await, None, "Ignore: still never created");
}
