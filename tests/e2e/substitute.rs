//! `spec.postBuild`: Flux's post-build variable substitution on `sigil dev` — values from
//! `substitute`, a ConfigMap and a Secret in Flux's precedence, defaults, the per-object opt-out
//! (sigil's annotation and Flux's label), a SealedSecret applied byte for byte, a labelled source
//! whose change is applied at once, a missing optional source tolerated and a missing required
//! one reported until it appears.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;
use sigil::api::ManifestSync;

use crate::lifecycle::{NS, WAIT, applied_revision, is_ready, source_yaml, sync_yaml};
use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, ready};

/// A value only the Secret holds: it must reach the object and nothing else.
const TOKEN: &str = "t0ken-from-the-secret";

const SETTINGS: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: gitops\ndata:\n  cluster: ${cluster_name}\n  region: ${region:=eu-west-1}\n  tier: ${tier}\n  owner: ${owner}\n  token: ${token}\n  unset: \"[${nobody}]\"\n  literal: $${cluster_name}\n";

const OPTED_OUT: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: script\n  namespace: gitops\n  annotations:\n    sigil.dev/substitute: disabled\ndata:\n  run.sh: echo ${cluster_name}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flux-script\n  namespace: gitops\n  labels:\n    kustomize.toolkit.fluxcd.io/substitute: disabled\ndata:\n  run.sh: echo ${cluster_name}\n";

const ARMORED: &str = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdlLWVuY3J5cHRpb24${cluster_name}\n-----END AGE ENCRYPTED FILE-----\n";

fn sealed_yaml() -> String {
    let armored = ARMORED.replace('\n', "\\n");
    format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\n  namespace: gitops\n  annotations:\n    note: ${{cluster_name}}\nspec:\n  encryptedData:\n    password: \"{armored}\"\n"
    )
}

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn create_configmap(ops: &GitOps, name: &str, pairs: &[(&str, &str)]) {
    let configmap = ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data(pairs)),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(ops.client(), NS)
        .create(&PostParams::default(), &configmap)
        .await
        .expect("create ConfigMap");
}

async fn create_secret(ops: &GitOps, name: &str, pairs: &[(&str, &str)]) {
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<Secret>::namespaced(ops.client(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("create Secret");
}

async fn live_data(ops: &GitOps, name: &str) -> BTreeMap<String, String> {
    Api::<ConfigMap>::namespaced(ops.client(), NS)
        .get(name)
        .await
        .expect("applied ConfigMap")
        .data
        .unwrap_or_default()
}

fn failed_with(reason: &'static str) -> impl Fn(&ManifestSync) -> bool {
    move |s| ready(s).is_some_and(|(status, r, _)| status == "False" && r == reason)
}

#[tokio::test]
async fn variables_come_from_substitute_configmaps_and_secrets_in_fluxs_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("apps/settings.yaml", SETTINGS)
        .write("apps/scripts.yaml", OPTED_OUT)
        .write("apps/sealed.yaml", &sealed_yaml())
        .write(
            "late/settings.yaml",
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: late\n  namespace: gitops\ndata:\n  level: ${level}\n",
        );
    let revision = format!("main@sha1:{}", repo.commit("templated"));
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    // Precedence: `substitute` over every source; a later source over an earlier one.
    create_configmap(
        &ops,
        "cluster-vars",
        &[
            ("cluster_name", "from-configmap"),
            ("tier", "gold"),
            ("owner", "configmap-owner"),
        ],
    )
    .await;
    create_secret(
        &ops,
        "cluster-secrets",
        &[("token", TOKEN), ("owner", "secret-owner")],
    )
    .await;
    ops.create_source(NS, &source_yaml(&repo.url())).await;
    let post_build = "  postBuild:\n    substitute:\n      cluster_name: prod-1\n    substituteFrom:\n    - kind: ConfigMap\n      name: cluster-vars\n    - kind: Secret\n      name: cluster-secrets\n    - kind: ConfigMap\n      name: not-there\n      optional: true\n";
    ops.create_sync(NS, &sync_yaml("apps", "apps", post_build))
        .await;

    let sync = ops
        .wait_sync(NS, "apps", "applied", WAIT, |s| {
            is_ready(s) && applied_revision(s) == Some(revision.as_str())
        })
        .await;
    let settings = live_data(&ops, "settings").await;
    let expected = data(&[
        ("cluster", "prod-1"),
        ("region", "eu-west-1"),
        ("tier", "gold"),
        ("owner", "secret-owner"),
        ("token", TOKEN),
        ("unset", "[]"),
        ("literal", "${cluster_name}"),
    ]);
    assert_eq!(settings, expected);
    for opted_out in ["script", "flux-script"] {
        assert_eq!(
            live_data(&ops, opted_out)
                .await
                .get("run.sh")
                .map(String::as_str),
            Some("echo ${cluster_name}"),
            "{opted_out}"
        );
    }
    let sealed_secrets = ApiResource {
        group: "sigil.dev".into(),
        version: "v1alpha1".into(),
        api_version: "sigil.dev/v1alpha1".into(),
        kind: "SealedSecret".into(),
        plural: "sealedsecrets".into(),
    };
    let sealed = Api::<DynamicObject>::namespaced_with(ops.client(), NS, &sealed_secrets)
        .get("db")
        .await
        .expect("the SealedSecret was applied");
    assert_eq!(
        sealed.data.pointer("/spec/encryptedData/password"),
        Some(&json!(ARMORED)),
        "ciphertext byte for byte"
    );
    assert_eq!(
        sealed
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("note"))
            .map(String::as_str),
        Some("${cluster_name}"),
        "a SealedSecret is not substituted at all"
    );
    let status = format!("{:?}", sync.status);
    let events = format!("{:?}", ops.events(NS, "apps").await);
    assert!(
        !status.contains(TOKEN) && !events.contains(TOKEN),
        "a Secret's value left the object"
    );

    // A labelled source that changes wakes the Sync at once (its interval is an hour).
    Api::<ConfigMap>::namespaced(ops.client(), NS)
        .patch(
            "cluster-vars",
            &PatchParams::default(),
            &Patch::Merge(
                &json!({"metadata": {"labels": {"sigil.dev/watch": "enabled"}},
                "data": {"tier": "platinum"}}),
            ),
        )
        .await
        .expect("change the ConfigMap");
    crate::support::gitops::wait_for("the new tier applied", WAIT, || async {
        let tier = live_data(&ops, "settings").await.remove("tier");
        (tier.as_deref() == Some("platinum")).then_some(())
    })
    .await;

    // A required source that is missing: reported naming the field and the object, until it
    // appears.
    let required = "  postBuild:\n    substituteFrom:\n    - kind: ConfigMap\n      name: cluster-vars\n    - kind: Secret\n      name: late-vars\n";
    ops.create_sync(NS, &sync_yaml("late", "late", required))
        .await;
    let sync = ops
        .wait_sync(
            NS,
            "late",
            "SubstitutionFailed",
            WAIT,
            failed_with("SubstitutionFailed"),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("spec.postBuild.substituteFrom[1]")
            && message.contains("Secret gitops/late-vars not found"),
        "{message}"
    );
    assert!(
        Api::<ConfigMap>::namespaced(ops.client(), NS)
            .get_opt("late")
            .await
            .expect("get")
            .is_none(),
        "nothing applied without its variables"
    );
    create_secret(&ops, "late-vars", &[("level", "debug")]).await;
    ops.wait_sync(NS, "late", "applied once the Secret exists", WAIT, |s| {
        is_ready(s) && applied_revision(s) == Some(revision.as_str())
    })
    .await;
    assert_eq!(
        live_data(&ops, "late")
            .await
            .get("level")
            .map(String::as_str),
        Some("debug")
    );
}
