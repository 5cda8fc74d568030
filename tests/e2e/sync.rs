//! GitSource + Sync end to end in the embedded API server: apply, update, prune, self-heal,
//! plaintext refusal, failures that never prune, webhooks, impersonation, ownership.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};

use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, condition, fleet_source_yaml, ready, wait_for};

const NS: &str = "gitops";
const WAIT: Duration = Duration::from_secs(30);

fn namespace_yaml(name: &str) -> String {
    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n")
}

fn configmap_yaml(namespace: &str, name: &str, mode: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {namespace}\ndata:\n  mode: \"{mode}\"\n"
    )
}

fn source_yaml(url: &str, interval: &str) -> String {
    fleet_source_yaml(url, interval, "")
}

fn sync_yaml(name: &str, path: &str, extra: &str) -> String {
    format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\nspec:\n  sourceRef:\n    name: fleet\n  path: {path}\n  interval: 1h\n  prune: true\n{extra}"
    )
}

fn applied(revision: &str) -> impl Fn(&sigil::api::ManifestSync) -> bool + '_ {
    move |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_applied_revision.as_deref())
            == Some(revision)
            && ready(s).is_some_and(|(status, _, _)| status == "True")
    }
}

fn failed_with<'a>(
    reason: &'a str,
    attempted: &'a str,
) -> impl Fn(&sigil::api::ManifestSync) -> bool + 'a {
    move |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_attempted_revision.as_deref())
            == Some(attempted)
            && ready(s).is_some_and(|(status, r, _)| status == "False" && r == reason)
    }
}

async fn configmap(ops: &GitOps, namespace: &str, name: &str) -> Option<ConfigMap> {
    Api::<ConfigMap>::namespaced(ops.client(), namespace)
        .get_opt(name)
        .await
        .expect("get ConfigMap")
}

fn mode(cm: &ConfigMap) -> Option<&str> {
    cm.data.as_ref()?.get("mode").map(String::as_str)
}

async fn setup(ops: &GitOps, repo: &GitRepo, interval: &str) {
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &source_yaml(&repo.url(), interval))
        .await;
}

#[tokio::test]
async fn applies_heals_and_prunes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("clusters/dev/namespace.yaml", &namespace_yaml("apps"))
        .write(
            "clusters/dev/settings.yaml",
            &configmap_yaml("apps", "settings", "fast"),
        )
        .write(
            "clusters/dev/extra.yaml",
            &configmap_yaml("apps", "extra", "x"),
        )
        .write("clusters/prod/namespace.yaml", &namespace_yaml("prod-only"));
    let first = repo.commit("first");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1s").await;
    ops.create_sync(NS, &sync_yaml("dev", "clusters/dev", "  selfHeal: true\n"))
        .await;

    let revision = format!("main@sha1:{first}");
    let sync = ops
        .wait_sync(
            NS,
            "dev",
            "first revision applied",
            WAIT,
            applied(&revision),
        )
        .await;
    let status = sync.status.clone().expect("status");
    assert_eq!(status.inventory.len(), 3, "{:?}", status.inventory);
    assert!(condition(&sync, "Stalled").is_none());
    assert!(condition(&sync, "Reconciling").is_none());
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("3 created"), "{message}");
    let settings = configmap(&ops, "apps", "settings").await.expect("applied");
    assert_eq!(mode(&settings), Some("fast"));
    let labels = settings.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        labels.get("sigil.dev/sync-name").map(String::as_str),
        Some("dev")
    );
    let managers: Vec<String> = settings
        .metadata
        .managed_fields
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| m.manager)
        .collect();
    assert!(managers.contains(&"sigil".to_string()), "{managers:?}");
    assert!(
        Api::<Namespace>::all(ops.client())
            .get_opt("prod-only")
            .await
            .expect("get")
            .is_none(),
        "only spec.path is applied"
    );
    let events = ops.events(NS, "dev").await;
    assert!(
        events.iter().any(|e| e.reason.as_deref() == Some("Applied")
            && e.message
                .as_deref()
                .is_some_and(|m| m.contains(&revision) && m.contains("3 created"))),
        "{events:#?}"
    );

    // No write when nothing changed: a forced resync leaves every object as it is.
    let before = settings.metadata.resource_version.clone();
    request_reconcile::<sigil::api::ManifestSync>(&ops, "dev", "resync-1").await;
    ops.wait_sync(NS, "dev", "resync handled", WAIT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_reconcile_at.as_deref())
            == Some("resync-1")
    })
    .await;
    let after = configmap(&ops, "apps", "settings")
        .await
        .expect("still there");
    assert_eq!(
        after.metadata.resource_version, before,
        "a no-op resync wrote"
    );

    // A hand edit is reverted by the self-heal watch.
    let cms = Api::<ConfigMap>::namespaced(ops.client(), "apps");
    let edited = Instant::now();
    cms.patch(
        "settings",
        &PatchParams::apply("kubectl-edit").force(),
        &Patch::Apply(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "settings", "namespace": "apps"},
            "data": {"mode": "slow"}
        })),
    )
    .await
    .expect("hand edit");
    wait_for(
        "the hand edit to be reverted",
        Duration::from_secs(15),
        || async {
            configmap(&ops, "apps", "settings")
                .await
                .filter(|cm| mode(cm) == Some("fast"))
        },
    )
    .await;
    let took = edited.elapsed();
    println!("self-heal: hand edit reverted in {} ms", took.as_millis());
    assert!(took < Duration::from_secs(15));

    // A deletion is undone too.
    let deleted = Instant::now();
    cms.delete("extra", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for(
        "the deleted object to come back",
        Duration::from_secs(15),
        || async { configmap(&ops, "apps", "extra").await },
    )
    .await;
    println!(
        "self-heal: deletion undone in {} ms",
        deleted.elapsed().as_millis()
    );

    // A file removed from Git is pruned; the Namespace stays (no sigil.dev/prune: "true").
    repo.remove("clusters/dev/extra.yaml");
    let second = repo.commit("remove extra");
    let sync = ops
        .wait_sync(
            NS,
            "dev",
            "second revision applied",
            WAIT,
            applied(&format!("main@sha1:{second}")),
        )
        .await;
    assert!(configmap(&ops, "apps", "extra").await.is_none(), "pruned");
    assert!(configmap(&ops, "apps", "settings").await.is_some());
    assert_eq!(sync.status.expect("status").inventory.len(), 2);
    let (_, _, message) = ready(&ops.sync(NS, "dev").await).expect("Ready");
    assert!(message.contains("1 pruned"), "{message}");

    // Removing the Namespace from Git does not delete it without the opt-in annotation.
    repo.remove("clusters/dev/namespace.yaml");
    let third = repo.commit("remove namespace");
    ops.wait_sync(
        NS,
        "dev",
        "third revision applied",
        WAIT,
        applied(&format!("main@sha1:{third}")),
    )
    .await;
    assert!(
        Api::<Namespace>::all(ops.client())
            .get_opt("apps")
            .await
            .expect("get")
            .is_some(),
        "a Namespace is pruned only with sigil.dev/prune: \"true\""
    );
}

pub(crate) async fn request_reconcile<K>(ops: &GitOps, name: &str, value: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(ops.client(), NS)
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {"sigil.dev/reconcile-requested-at": value}}})),
        )
        .await
        .expect("annotate");
}

#[tokio::test]
async fn a_plaintext_secret_fails_the_revision_and_prunes_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("clusters/dev/namespace.yaml", &namespace_yaml("apps"))
        .write("clusters/dev/a.yaml", &configmap_yaml("apps", "a", "1"))
        .write("clusters/dev/b.yaml", &configmap_yaml("apps", "b", "1"));
    let first = repo.commit("first");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1s").await;
    ops.create_sync(NS, &sync_yaml("dev", "clusters/dev", ""))
        .await;
    let good = format!("main@sha1:{first}");
    ops.wait_sync(NS, "dev", "first revision", WAIT, applied(&good))
        .await;

    repo.remove("clusters/dev/b.yaml")
        .write("clusters/dev/a.yaml", &configmap_yaml("apps", "a", "2"))
        .write(
            "clusters/dev/db.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\nstringData:\n  password: hunter2-in-git\n",
        );
    let leaked = repo.commit("oops: a plaintext secret");
    let bad = format!("main@sha1:{leaked}");
    let sync = ops
        .wait_sync(
            NS,
            "dev",
            "plaintext refusal",
            WAIT,
            failed_with("PlaintextSecret", &bad),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("plaintext"), "{message}");
    assert!(message.contains("clusters/dev/db.yaml:1"), "{message}");
    assert!(message.contains("apps/db"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert_eq!(
        condition(&sync, "Stalled").map(|c| c.0),
        Some("True".to_string())
    );
    let status = sync.status.clone().expect("status");
    assert_eq!(status.last_applied_revision.as_deref(), Some(good.as_str()));
    assert!(
        Api::<Secret>::namespaced(ops.client(), "apps")
            .get_opt("db")
            .await
            .expect("get")
            .is_none(),
        "the plaintext Secret is not applied"
    );
    assert_eq!(
        configmap(&ops, "apps", "a").await.as_ref().and_then(mode),
        Some("1"),
        "nothing of the refused revision is applied"
    );
    assert!(
        configmap(&ops, "apps", "b").await.is_some(),
        "nothing is pruned"
    );
    let events = ops.events(NS, "dev").await;
    assert!(
        events
            .iter()
            .any(|e| e.reason.as_deref() == Some("PlaintextSecret")
                && e.type_.as_deref() == Some("Warning")),
        "{events:#?}"
    );

    // `sigil scan` finds it in the repository.
    let scan = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["scan", "clusters"])
        .current_dir(&repo.dir)
        .output()
        .expect("sigil scan");
    assert_eq!(scan.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&scan.stdout),
        "clusters/dev/db.yaml:1 Secret/db (namespace apps)\n"
    );

    // Fixing Git recovers, and only then is b pruned.
    repo.remove("clusters/dev/db.yaml");
    let fixed = repo.commit("remove the secret");
    ops.wait_sync(
        NS,
        "dev",
        "fixed revision",
        WAIT,
        applied(&format!("main@sha1:{fixed}")),
    )
    .await;
    assert!(configmap(&ops, "apps", "b").await.is_none());
    assert_eq!(
        configmap(&ops, "apps", "a").await.as_ref().and_then(mode),
        Some("2")
    );
    assert!(condition(&ops.sync(NS, "dev").await, "Stalled").is_none());
}

#[tokio::test]
async fn bad_yaml_unknown_kinds_and_fetch_errors_never_prune() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("clusters/dev/namespace.yaml", &namespace_yaml("apps"))
        .write("clusters/dev/a.yaml", &configmap_yaml("apps", "a", "1"))
        .write("clusters/dev/b.yaml", &configmap_yaml("apps", "b", "1"));
    let first = repo.commit("first");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1s").await;
    ops.create_sync(NS, &sync_yaml("dev", "clusters/dev", ""))
        .await;
    ops.wait_sync(
        NS,
        "dev",
        "first revision",
        WAIT,
        applied(&format!("main@sha1:{first}")),
    )
    .await;

    // A fetch error: the source keeps its last revision, the Sync keeps the cluster.
    let sources = Api::<sigil::api::GitSource>::namespaced(ops.client(), NS);
    let broken = format!("file://{}/missing", tmp.path().display());
    sources
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"url": broken}})),
        )
        .await
        .expect("break the URL");
    repo.remove("clusters/dev/b.yaml");
    let removal = repo.commit("remove b");
    wait_for("the fetch to fail", WAIT, || async {
        let source = ops.source(NS, "fleet").await;
        let cond = source
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (cond.status == "False" && cond.reason == "NotFound").then_some(())
    })
    .await;
    // Ask for a reconcile and wait until the Sync records having handled it: that reconcile
    // saw the failed source, so what it left is what a fetch error does (no fixed sleep).
    let requested = "after-fetch-failure";
    Api::<sigil::api::ManifestSync>::namespaced(ops.client(), NS)
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                sigil::controller::git_source::REQUESTED_AT_ANNOTATION: requested
            }}})),
        )
        .await
        .expect("request a reconcile");
    let sync = ops
        .wait_sync(
            NS,
            "dev",
            "the reconcile after the fetch failure",
            WAIT,
            |s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.last_handled_reconcile_at.as_deref())
                    == Some(requested)
            },
        )
        .await;
    let status = sync.status.expect("status");
    assert_eq!(
        status.last_applied_revision,
        Some(format!("main@sha1:{first}")),
        "the failed fetch of {removal} was never applied"
    );
    assert!(
        configmap(&ops, "apps", "b").await.is_some(),
        "a fetch error never prunes"
    );

    // Bad YAML in the new revision: nothing applied, nothing pruned.
    repo.write(
        "clusters/dev/broken.yaml",
        "kind: ConfigMap\nmetadata: [unclosed\n",
    );
    let bad_yaml = repo.commit("bad yaml");
    sources
        .patch(
            "fleet",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"url": repo.url()}})),
        )
        .await
        .expect("restore the URL");
    let sync = ops
        .wait_sync(
            NS,
            "dev",
            "parse failure",
            WAIT,
            failed_with("ParseFailed", &format!("main@sha1:{bad_yaml}")),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("clusters/dev/broken.yaml:1"), "{message}");
    assert!(
        configmap(&ops, "apps", "b").await.is_some(),
        "bad YAML never prunes"
    );

    // An unknown kind: nothing applied, nothing pruned.
    repo.remove("clusters/dev/broken.yaml").write(
        "clusters/dev/widget.yaml",
        "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: apps\n",
    );
    let unknown = repo.commit("unknown kind");
    let sync = ops
        .wait_sync(
            NS,
            "dev",
            "unknown kind",
            WAIT,
            failed_with("UnknownKind", &format!("main@sha1:{unknown}")),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("Widget"), "{message}");
    assert!(
        configmap(&ops, "apps", "b").await.is_some(),
        "an unknown kind never prunes"
    );
    assert_eq!(
        sync.status.expect("status").last_applied_revision,
        Some(format!("main@sha1:{first}"))
    );

    // With the CRD in the same revision, the kind is known: CRDs go first and are awaited.
    repo.write(
        "clusters/dev/crd.yaml",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  scope: Namespaced\n  names:\n    kind: Widget\n    plural: widgets\n    singular: widget\n    listKind: WidgetList\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-preserve-unknown-fields: true\n",
    );
    let with_crd = repo.commit("the CRD");
    ops.wait_sync(
        NS,
        "dev",
        "CRD and custom resource",
        WAIT,
        applied(&format!("main@sha1:{with_crd}")),
    )
    .await;
    assert!(
        configmap(&ops, "apps", "b").await.is_none(),
        "pruned once a revision fully applied"
    );
}

fn github_signature(token: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test]
async fn webhooks_trigger_a_fetch_and_bad_calls_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("clusters/dev/a.yaml", &configmap_yaml(NS, "a", "1"));
    let first = repo.commit("first");
    let ops = GitOps::start().await;
    ops.cluster.namespace(NS).await;
    ops.create_webhook_source(NS, &repo.url(), "w3bh00k-token")
        .await;
    let revision_of = |ops: &GitOps| {
        let ops_client = ops.client();
        async move {
            Api::<sigil::api::GitSource>::namespaced(ops_client, NS)
                .get("fleet")
                .await
                .ok()?
                .status?
                .artifact
                .map(|a| a.revision)
        }
    };
    wait_for("the first fetch", WAIT, || async {
        revision_of(&ops).await.filter(|r| r.ends_with(&first))
    })
    .await;

    let second = {
        repo.write("clusters/dev/a.yaml", &configmap_yaml(NS, "a", "2"));
        repo.commit("second")
    };
    let http = crate::support::http::client();
    let url = format!("http://{}/hooks/{NS}/fleet", ops.http);
    let body = br#"{"ref":"refs/heads/main"}"#.to_vec();
    let post = |headers: Vec<(&'static str, String)>| {
        let mut request = http.post(&url).body(body.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        request.send()
    };
    let status = post(vec![]).await.expect("unsigned call").status();
    assert_eq!(status, 401);
    let status = post(vec![(
        "X-Hub-Signature-256",
        github_signature("wrong", &body),
    )])
    .await
    .expect("badly signed call")
    .status();
    assert_eq!(status, 401);
    let status = post(vec![("X-Gitlab-Token", "wrong".to_string())])
        .await
        .expect("wrong token")
        .status();
    assert_eq!(status, 401);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        revision_of(&ops).await.is_some_and(|r| r.ends_with(&first)),
        "invalid calls trigger nothing"
    );

    let called = Instant::now();
    let status = post(vec![(
        "X-Hub-Signature-256",
        github_signature("w3bh00k-token", &body),
    )])
    .await
    .expect("signed call")
    .status();
    assert_eq!(status, 202);
    wait_for(
        "the webhook-triggered fetch",
        Duration::from_secs(10),
        || async { revision_of(&ops).await.filter(|r| r.ends_with(&second)) },
    )
    .await;
    println!(
        "webhook: new revision fetched {} ms after the call",
        called.elapsed().as_millis()
    );

    repo.write("clusters/dev/a.yaml", &configmap_yaml(NS, "a", "3"));
    let third = repo.commit("third");
    let status = post(vec![("X-Gitlab-Token", "w3bh00k-token".to_string())])
        .await
        .expect("GitLab call")
        .status();
    assert_eq!(status, 202);
    wait_for(
        "the GitLab-triggered fetch",
        Duration::from_secs(10),
        || async { revision_of(&ops).await.filter(|r| r.ends_with(&third)) },
    )
    .await;

    let mut limited = false;
    for _ in 0..20 {
        let status = post(vec![("X-Gitlab-Token", "guess".to_string())])
            .await
            .expect("guess")
            .status();
        assert!(status == 401 || status == 429, "{status}");
        if status == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "repeated invalid calls are rate-limited");
}

#[tokio::test]
async fn impersonation_is_refused_without_rights() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("tenant/cm.yaml", &configmap_yaml(NS, "tenant-config", "1"));
    let first = repo.commit("first");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1s").await;
    ops.create_sync(
        NS,
        &sync_yaml("tenant", "tenant", "  serviceAccountName: deployer\n"),
    )
    .await;
    let revision = format!("main@sha1:{first}");
    let sync = ops
        .wait_sync(
            NS,
            "tenant",
            "refused as the ServiceAccount",
            WAIT,
            failed_with("Forbidden", &revision),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(
        message.contains("system:serviceaccount:gitops:deployer"),
        "{message}"
    );
    assert!(configmap(&ops, NS, "tenant-config").await.is_none());

    let rbac = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: deployer\n  namespace: {NS}\nrules:\n- apiGroups: [\"\"]\n  resources: [configmaps]\n  verbs: [get, list, watch, create, update, patch, delete]\n"
    );
    let binding = format!(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: deployer\n  namespace: {NS}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: deployer\nsubjects:\n- kind: ServiceAccount\n  name: deployer\n  namespace: {NS}\n"
    );
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let role: Role = sigil::yaml::from_str(&rbac).expect("Role YAML");
    Api::<Role>::namespaced(ops.client(), NS)
        .create(&PostParams::default(), &role)
        .await
        .expect("create Role");
    let binding: RoleBinding = sigil::yaml::from_str(&binding).expect("RoleBinding YAML");
    Api::<RoleBinding>::namespaced(ops.client(), NS)
        .create(&PostParams::default(), &binding)
        .await
        .expect("create RoleBinding");
    request_reconcile::<sigil::api::ManifestSync>(&ops, "tenant", "granted").await;
    ops.wait_sync(
        NS,
        "tenant",
        "applied once granted",
        WAIT,
        applied(&revision),
    )
    .await;
    let cm = configmap(&ops, NS, "tenant-config").await.expect("applied");
    assert_eq!(mode(&cm), Some("1"));
}

#[tokio::test]
async fn an_object_of_another_sync_is_a_conflict_and_disabled_objects_are_left_alone() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("one/shared.yaml", &configmap_yaml(NS, "shared", "one"))
        .write("two/shared.yaml", &configmap_yaml(NS, "shared", "two"));
    let first = repo.commit("first");
    let revision = format!("main@sha1:{first}");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1s").await;
    ops.create_sync(NS, &sync_yaml("one", "one", "  selfHeal: true\n"))
        .await;
    ops.wait_sync(NS, "one", "first Sync applied", WAIT, applied(&revision))
        .await;
    ops.create_sync(NS, &sync_yaml("two", "two", "")).await;
    let sync = ops
        .wait_sync(
            NS,
            "two",
            "conflict",
            WAIT,
            failed_with("OwnershipConflict", &revision),
        )
        .await;
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("gitops/one"), "{message}");
    assert_eq!(
        configmap(&ops, NS, "shared").await.as_ref().and_then(mode),
        Some("one")
    );

    // sigil.dev/reconcile: disabled on the live object: hand edits stay.
    let cms = Api::<ConfigMap>::namespaced(ops.client(), NS);
    cms.patch(
        "shared",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({
            "metadata": {"annotations": {"sigil.dev/reconcile": "disabled"}},
            "data": {"mode": "hand-tuned"}
        })),
    )
    .await
    .expect("disable and edit");
    request_reconcile::<sigil::api::ManifestSync>(&ops, "one", "after-disable").await;
    let sync = ops
        .wait_sync(NS, "one", "resync handled", WAIT, |s| {
            s.status
                .as_ref()
                .and_then(|st| st.last_handled_reconcile_at.as_deref())
                == Some("after-disable")
        })
        .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        configmap(&ops, NS, "shared").await.as_ref().and_then(mode),
        Some("hand-tuned")
    );
    let (_, _, message) = ready(&sync).expect("Ready");
    assert!(message.contains("1 skipped"), "{message}");
}

#[tokio::test]
async fn diff_shows_what_a_sync_would_change_without_secret_values() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    let secret = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: token\n  namespace: apps\nstringData:\n  token: {value}\n"
        )
    };
    repo.write("dev/namespace.yaml", &namespace_yaml("apps"))
        .write(
            "dev/settings.yaml",
            &configmap_yaml("apps", "settings", "fast"),
        )
        .write("dev/extra.yaml", &configmap_yaml("apps", "extra", "x"))
        .write("dev/token.yaml", &secret("old-token-value"));
    let first = repo.commit("first");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1h").await;
    ops.create_sync(
        NS,
        &sync_yaml("dev", "dev", "  allowPlaintextSecrets: true\n"),
    )
    .await;
    ops.wait_sync(
        NS,
        "dev",
        "applied",
        WAIT,
        applied(&format!("main@sha1:{first}")),
    )
    .await;

    let local = tmp.path().join("local");
    let local_repo = GitRepo { dir: local.clone() };
    local_repo
        .write("namespace.yaml", &namespace_yaml("apps"))
        .write("settings.yaml", &configmap_yaml("apps", "settings", "slow"))
        .write("added.yaml", &configmap_yaml("apps", "added", "new"))
        .write("token.yaml", &secret("new-token-value"));
    let kubeconfig = tmp.path().join("kubeconfig");
    ops.cluster
        .server
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    // Async, so the in-process API server keeps serving while sigil runs.
    let run = |extra: &'static [&'static str]| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["diff", "--path"])
            .arg(&local)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", NS, "--sync", "dev"])
            .args(extra)
            .output()
    };
    let output = run(&[]).await.expect("sigil diff");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stdout}{stderr}");
    println!("sigil diff:\n{stdout}");
    for expected in [
        "~ ConfigMap apps/settings",
        "-   mode: fast",
        "+   mode: slow",
        "+ ConfigMap apps/added",
        "~ Secret apps/token",
        "(changed)",
        "- ConfigMap apps/extra: would be pruned",
        "1 to create, 2 to change, 1 unchanged, 1 to prune",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    for secret_text in [
        "old-token-value",
        "new-token-value",
        "b2xkLXRva2VuLXZhbHVl",
        "bmV3LXRva2VuLXZhbHVl",
    ] {
        assert!(
            !stdout.contains(secret_text) && !stderr.contains(secret_text),
            "{stdout}"
        );
    }
    assert_eq!(
        configmap(&ops, "apps", "settings")
            .await
            .as_ref()
            .and_then(mode),
        Some("fast"),
        "a diff changes nothing"
    );
    assert!(configmap(&ops, "apps", "added").await.is_none());
    let output = run(&["--exit-code"]).await.expect("sigil diff --exit-code");
    assert_eq!(
        output.status.code(),
        Some(1),
        "--exit-code fails on changes"
    );
}

#[tokio::test]
async fn a_sealed_secret_in_git_becomes_a_secret() {
    use crate::support::gitops::CONTROLLER_NAMESPACE;
    let tmp = tempfile::tempdir().expect("tempdir");
    let ops = GitOps::start().await;
    wait_for("the recipients ConfigMap", WAIT, || async {
        Api::<ConfigMap>::namespaced(ops.client(), CONTROLLER_NAMESPACE)
            .get_opt("sigil-recipients")
            .await
            .ok()
            .flatten()
    })
    .await;
    let kubeconfig = tmp.path().join("kubeconfig");
    ops.cluster
        .server
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    let plaintext = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\nstringData:\n  password: s3aled-in-git\n";
    let mut seal = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("seal")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sigil seal");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = seal.stdin.take().expect("stdin");
        stdin.write_all(plaintext.as_bytes()).await.expect("write");
    }
    let sealed = seal.wait_with_output().await.expect("sigil seal output");
    assert!(
        sealed.status.success(),
        "{}",
        String::from_utf8_lossy(&sealed.stderr)
    );
    let sealed_yaml = String::from_utf8(sealed.stdout).expect("UTF-8");
    assert!(!sealed_yaml.contains("s3aled-in-git"));

    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write("clusters/dev/namespace.yaml", &namespace_yaml("apps"))
        .write("clusters/dev/db.yaml", &sealed_yaml);
    let first = repo.commit("a sealed secret");
    let scan = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["scan", "."])
        .current_dir(&repo.dir)
        .output()
        .await
        .expect("sigil scan");
    assert!(scan.status.success(), "a SealedSecret is not plaintext");

    setup(&ops, &repo, "1s").await;
    ops.create_sync(NS, &sync_yaml("dev", "clusters/dev", ""))
        .await;
    ops.wait_sync(
        NS,
        "dev",
        "applied",
        WAIT,
        applied(&format!("main@sha1:{first}")),
    )
    .await;
    let secret = wait_for("the Secret from the SealedSecret", WAIT, || async {
        Api::<Secret>::namespaced(ops.client(), "apps")
            .get_opt("db")
            .await
            .ok()
            .flatten()
    })
    .await;
    let password = secret
        .data
        .and_then(|d| d.get("password").cloned())
        .expect("password key");
    assert_eq!(password.0, b"s3aled-in-git");
}

#[tokio::test]
async fn namespaces_are_defaulted_and_pruned_only_when_annotated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    let no_namespace = |name: &str| {
        format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  mode: \"x\"\n"
        )
    };
    repo.write(
        "target/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: scratch\n  annotations:\n    sigil.dev/prune: \"true\"\n",
    )
    .write("target/cm.yaml", &no_namespace("lands-in-target"))
    .write("target/keep.yaml", &configmap_yaml(NS, "keep", "k"))
    .write("own/cm.yaml", &no_namespace("lands-in-sync-namespace"));
    let first = repo.commit("first");
    let revision = format!("main@sha1:{first}");
    let ops = GitOps::start().await;
    setup(&ops, &repo, "1s").await;
    ops.create_sync(
        NS,
        &sync_yaml("target", "target", "  targetNamespace: scratch\n"),
    )
    .await;
    ops.create_sync(NS, &sync_yaml("own", "own", "")).await;
    ops.wait_sync(NS, "target", "applied", WAIT, applied(&revision))
        .await;
    ops.wait_sync(NS, "own", "applied", WAIT, applied(&revision))
        .await;
    assert!(
        configmap(&ops, "scratch", "lands-in-target")
            .await
            .is_some()
    );
    assert!(
        configmap(&ops, NS, "lands-in-sync-namespace")
            .await
            .is_some()
    );

    repo.remove("target/namespace.yaml")
        .remove("target/cm.yaml");
    let second = repo.commit("drop the scratch namespace");
    let sync = ops
        .wait_sync(
            NS,
            "target",
            "emptied",
            WAIT,
            applied(&format!("main@sha1:{second}")),
        )
        .await;
    // (An emptied folder would not exist in Git at all: PathNotFound, and nothing pruned.)
    assert_eq!(sync.status.expect("status").inventory.len(), 1);
    wait_for("the annotated Namespace to go", WAIT, || async {
        let ns = Api::<Namespace>::all(ops.client())
            .get_opt("scratch")
            .await
            .expect("get");
        // Deletion may leave it Terminating for a moment.
        ns.is_none_or(|ns| ns.metadata.deletion_timestamp.is_some())
            .then_some(())
    })
    .await;
}
