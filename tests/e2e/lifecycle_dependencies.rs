//! `spec.dependsOn`: a Sync of custom resources waits for the Sync of their CRDs — until it is
//! Ready at its source's latest revision, not at an older one — and a cycle is reported.

use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use serde_json::json;
use sigil::api::ManifestSync;

use crate::lifecycle::{NS, WAIT, applied_revision, is_ready, source_yaml, sync_yaml};
use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, condition, ready};

const CRD: &str = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n    listKind: WidgetList\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n";

fn widget_yaml(name: &str) -> String {
    format!(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  size: 3\n"
    )
}

fn blocked(reason: &'static str, says: &'static str) -> impl Fn(&ManifestSync) -> bool {
    move |s| {
        ready(s).is_some_and(|(status, r, m)| status == "False" && r == reason && m.contains(says))
    }
}

fn ready_since(sync: &ManifestSync) -> jiff::Timestamp {
    let status = sync.status.as_ref().expect("status");
    sigil::api::conditions::find(&status.conditions, "Ready")
        .expect("Ready")
        .last_transition_time
        .0
}

#[tokio::test]
async fn depends_on_applies_custom_resources_after_their_crds_at_the_latest_revision() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("crds/widget.yaml", CRD)
        .write("widgets/one.yaml", &widget_yaml("one"));
    let first = format!("main@sha1:{}", repo.commit("a CRD and a widget"));
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    let depends = "  dependsOn:\n  - name: crds\n";
    ops.create_sync(NS, &sync_yaml("widgets", "widgets", depends))
        .await;
    ops.wait_sync(
        NS,
        "widgets",
        "waiting for a missing dependency",
        WAIT,
        blocked(
            "DependencyNotReady",
            "dependency Sync gitops/crds not found",
        ),
    )
    .await;

    ops.create_sync(NS, &sync_yaml("crds", "crds", "")).await;
    let widgets = ops
        .wait_sync(NS, "widgets", "applied after the CRDs", WAIT, |s| {
            is_ready(s) && applied_revision(s) == Some(first.as_str())
        })
        .await;
    let crds = ops.sync(NS, "crds").await;
    assert!(is_ready(&crds));
    assert!(ready_since(&crds) <= ready_since(&widgets));
    let widgets_api: Api<DynamicObject> = Api::namespaced_with(
        ops.client(),
        NS,
        &ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "example.com",
            "v1",
            "Widget",
        )),
    );
    assert!(widgets_api.get_opt("one").await.expect("get").is_some());

    // Ready at an older revision is not enough: with the CRDs' Sync suspended (its Ready is
    // of the generation before, and of the revision before), a new commit waits for it.
    let syncs: Api<ManifestSync> = Api::namespaced(ops.client(), NS);
    let suspend = |on: bool| {
        let syncs = syncs.clone();
        async move {
            syncs
                .patch(
                    "crds",
                    &PatchParams::default(),
                    &Patch::Merge(&json!({"spec": {"suspend": on}})),
                )
                .await
                .expect("suspend or resume");
        }
    };
    suspend(true).await;
    repo.write("widgets/two.yaml", &widget_yaml("two"));
    let second = format!("main@sha1:{}", repo.commit("a second widget"));
    ops.wait_sync(
        NS,
        "widgets",
        "waiting for the dependency to catch up",
        WAIT,
        |s| {
            blocked("DependencyNotReady", "dependency Sync gitops/crds")(s)
                && s.status
                    .as_ref()
                    .and_then(|st| st.last_attempted_revision.as_deref())
                    == Some(first.as_str())
        },
    )
    .await;
    assert!(widgets_api.get_opt("two").await.expect("get").is_none());
    suspend(false).await;
    ops.wait_sync(NS, "widgets", "the second revision", WAIT, |s| {
        is_ready(s) && applied_revision(s) == Some(second.as_str())
    })
    .await;
    assert!(widgets_api.get_opt("two").await.expect("get").is_some());

    // A cycle is reported on every Sync of it, naming the cycle, and nothing waits forever.
    ops.create_sync(NS, &sync_yaml("a", "crds", "  dependsOn:\n  - name: b\n"))
        .await;
    ops.create_sync(
        NS,
        &sync_yaml(
            "b",
            "crds",
            "  dependsOn:\n  - name: a\n    namespace: gitops\n",
        ),
    )
    .await;
    for (name, cycle) in [
        ("a", "gitops/a -> gitops/b -> gitops/a"),
        ("b", "gitops/b -> gitops/a -> gitops/b"),
    ] {
        let sync = ops
            .wait_sync(
                NS,
                name,
                "the cycle reported",
                WAIT,
                blocked("DependencyCycle", cycle),
            )
            .await;
        assert!(condition(&sync, "Stalled").is_some(), "{:?}", sync.status);
    }
}
