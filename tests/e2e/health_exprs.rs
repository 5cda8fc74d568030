//! `spec.healthCheckExprs`: a custom kind whose health only CEL expressions can tell (its
//! `Synced` condition means nothing to kstatus, which would call it Current at once). The Sync
//! applies the CRD and a Widget and waits; the test writes the Widget's status as its controller
//! would: Reconciling while `inProgress` holds, HealthCheckFailed naming the object when `failed`
//! does, Ready once `current` does. An expression that does not parse stops the Sync before
//! anything is applied, naming the field.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::discovery::ApiResource;
use serde_json::{Value, json};

use crate::lifecycle::{NS, WAIT, applied_revision, is_ready, source_yaml, sync_yaml};
use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, condition, ready};

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    subresources:\n      status: {}\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n";

const WIDGET: &str = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w1\n  namespace: gitops\nspec:\n  size: 3\n";

const EXPRS: &str = "  wait: true\n  timeout: 60s\n  healthCheckExprs:\n  - apiVersion: example.com/v1\n    kind: Widget\n    inProgress: \"status.conditions.exists(e, e.type == 'Provisioning' && e.status == 'True')\"\n    failed: \"status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'False')\"\n    current: \"status.conditions.filter(e, e.type == 'Synced').all(e, e.status == 'True')\"\n";

fn widgets() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

/// Writes the Widget's status as its controller would.
async fn write_status(ops: &GitOps, conditions: Value) {
    let api = Api::<DynamicObject>::namespaced_with(ops.client(), NS, &widgets());
    let generation = api
        .get("w1")
        .await
        .expect("the Widget was applied")
        .metadata
        .generation;
    api.patch_status(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"status": {"observedGeneration": generation, "conditions": conditions}}),
        ),
    )
    .await
    .expect("write the Widget status");
}

fn reconciling_with(text: &'static str) -> impl Fn(&sigil::api::ManifestSync) -> bool {
    move |s| condition(s, "Reconciling").is_some_and(|(_, _, m)| m.contains(text))
}

#[tokio::test]
async fn cel_expressions_judge_a_custom_kind() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("widgets/crd.yaml", CRD)
        .write("widgets/widget.yaml", WIDGET);
    let revision = format!("main@sha1:{}", repo.commit("a widget"));
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    ops.create_sync(NS, &sync_yaml("widgets", "widgets", EXPRS))
        .await;

    // No status yet: the expressions cannot be evaluated, so the Widget is in progress (kstatus
    // alone would call an object without conditions Current).
    let sync = ops
        .wait_sync(
            NS,
            "widgets",
            "waiting for the Widget",
            WAIT,
            reconciling_with("Widget gitops/w1"),
        )
        .await;
    assert!(!is_ready(&sync), "{:?}", sync.status);

    write_status(
        &ops,
        json!([{"type": "Provisioning", "status": "True"}, {"type": "Synced", "status": "False"}]),
    )
    .await;
    let sync = ops
        .wait_sync(
            NS,
            "widgets",
            "inProgress holds",
            WAIT,
            reconciling_with("spec.healthCheckExprs[0].inProgress is true"),
        )
        .await;
    assert!(!is_ready(&sync), "inProgress comes before failed");

    write_status(&ops, json!([{"type": "Synced", "status": "False"}])).await;
    let sync = ops
        .wait_sync(NS, "widgets", "HealthCheckFailed", WAIT, |s| {
            ready(s).is_some_and(|(status, reason, _)| {
                status == "False" && reason == "HealthCheckFailed"
            })
        })
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("Widget gitops/w1 failed: spec.healthCheckExprs[0].failed is true"),
        "{message}"
    );

    // Its controller recovers: the next run (a failed health check is retried) finds it Current.
    write_status(&ops, json!([{"type": "Synced", "status": "True"}])).await;
    ops.wait_sync(NS, "widgets", "Ready once current holds", WAIT, |s| {
        is_ready(s) && applied_revision(s) == Some(revision.as_str())
    })
    .await;

    // An expression that does not parse: nothing is applied, the field is named, and only a
    // spec change can fix it.
    let broken = "  wait: true\n  healthCheckExprs:\n  - apiVersion: example.com/v1\n    kind: Widget\n    current: \"status.conditions.filter(e, \"\n";
    ops.create_sync(NS, &sync_yaml("broken", "widgets", broken))
        .await;
    let sync = ops
        .wait_sync(NS, "broken", "InvalidHealthCheckExprs", WAIT, |s| {
            ready(s).is_some_and(|(status, reason, _)| {
                status == "False" && reason == "InvalidHealthCheckExprs"
            })
        })
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("spec.healthCheckExprs[0].current: invalid CEL expression"),
        "{message}"
    );
    assert!(condition(&sync, "Stalled").is_some(), "{:?}", sync.status);
    assert!(
        sync.status
            .as_ref()
            .is_some_and(|s| s.last_applied_revision.is_none()),
        "nothing applied"
    );
}
