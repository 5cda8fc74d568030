//! The status commands (`sigil get`, `tree`, `reconcile`, `suspend`, `resume`) against a real
//! `sigil dev` process, with their exit codes. The emulator runs no workload controllers, so the
//! test writes a Deployment's status the way the controller-manager would.

use std::process::{Command, Output};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use sigil::api::ManifestSync;

use crate::support::dev::DevProcess;
use crate::support::git_repo::GitRepo;
use crate::support::gitops::wait_for;

const NS: &str = "gitops";
const WAIT: Duration = Duration::from_secs(60);

fn sigil(dev: &DevProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(args)
        .env("KUBECONFIG", &dev.kubeconfig)
        .env("HOME", dev.home())
        .output()
        .expect("sigil runs")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs sigil and checks its exit code; returns stdout.
fn expect_exit(dev: &DevProcess, args: &[&str], code: i32) -> String {
    let output = sigil(dev, args);
    let (stdout, stderr) = text(&output);
    assert_eq!(
        output.status.code(),
        Some(code),
        "sigil {args:?}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- sigil dev ---\n{}",
        dev.log()
    );
    stdout
}

async fn client(dev: &DevProcess) -> kube::Client {
    sigil::tls::install_crypto_provider();
    let kubeconfig = kube::config::Kubeconfig::read_from(&dev.kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(config).expect("client")
}

fn deployment_yaml() -> &'static str {
    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: apps\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n"
}

async fn create<K>(client: &kube::Client, namespace: &str, yaml: &str)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + serde::de::DeserializeOwned
        + serde::Serialize
        + Clone
        + std::fmt::Debug,
{
    let object: K = sigil::yaml::from_str(yaml).expect("YAML");
    Api::<K>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &object)
        .await
        .expect("create");
}

/// Writes the status a Deployment controller writes once the rollout finished.
async fn finish_rollout(client: &kube::Client) {
    let api: Api<Deployment> = Api::namespaced(client.clone(), "apps");
    let generation = api
        .get("web")
        .await
        .expect("deployment")
        .metadata
        .generation;
    let status = json!({"status": {"observedGeneration": generation, "replicas": 2,
        "updatedReplicas": 2, "readyReplicas": 2, "availableReplicas": 2,
        "conditions": [
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}});
    api.patch_status("web", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("write the Deployment status");
}

#[tokio::test]
async fn get_tree_reconcile_suspend_and_resume_show_and_steer_the_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write(
        "apps/namespace.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: apps\n",
    )
    .write(
        "apps/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n  mode: fast\n",
    )
    .write("apps/web.yaml", deployment_yaml());
    let commit = repo.commit("apps");
    let revision = format!("main@sha1:{commit}");

    let dev = DevProcess::start(&["--controller-http-listen", "127.0.0.1:0"]);
    let client = client(&dev).await;
    let namespace: k8s_openapi::api::core::v1::Namespace =
        sigil::yaml::from_str("metadata:\n  name: gitops\n").expect("YAML");
    Api::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    create::<sigil::api::GitSource>(
        &client,
        NS,
        &format!("apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: fleet\nspec:\n  url: {}\n  interval: 1h\n", repo.url()),
    )
    .await;
    for (name, path) in [("apps", "apps"), ("broken", "missing")] {
        create::<ManifestSync>(
            &client,
            NS,
            &format!("apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\nspec:\n  sourceRef:\n    name: fleet\n  path: {path}\n  interval: 1h\n  prune: true\n"),
        )
        .await;
    }
    let syncs: Api<ManifestSync> = Api::namespaced(client.clone(), NS);
    wait_for("Sync apps applied", WAIT, || async {
        let sync = syncs.get("apps").await.ok()?;
        (sync.status?.last_applied_revision.as_deref() == Some(revision.as_str())).then_some(())
    })
    .await;

    // sigil get -A: one block per kind, Ready, reason, revision.
    let all = expect_exit(&dev, &["get", "-A"], 0);
    let line = |prefix: &str| {
        all.lines()
            .find(|l| l.starts_with(NS) && l.contains(prefix))
            .unwrap_or_else(|| panic!("no {prefix} line in:\n{all}"))
            .to_string()
    };
    assert!(all.starts_with("NAMESPACE"), "{all}");
    let source_line = line("gitsource/fleet");
    assert!(
        source_line.contains("True") && source_line.contains(&revision),
        "{all}"
    );
    let apps_line = line("sync/apps");
    assert!(
        apps_line.contains("True")
            && apps_line.contains("ReconciliationSucceeded")
            && apps_line.contains(&revision),
        "{all}"
    );
    let broken_line = line("sync/broken");
    assert!(
        broken_line.contains("False") && broken_line.contains("PathNotFound"),
        "{all}"
    );
    // One kind, wide: SUSPENDED and MESSAGE columns; names without the kind prefix.
    let wide = expect_exit(&dev, &["get", "sync", "-n", NS, "-o", "wide"], 0);
    let header = wide.lines().next().expect("header");
    for column in [
        "NAME",
        "READY",
        "REASON",
        "REVISION",
        "SUSPENDED",
        "AGE",
        "MESSAGE",
    ] {
        assert!(header.contains(column), "{wide}");
    }
    assert!(wide.lines().any(|l| l.starts_with("apps ")), "{wide}");
    let one: serde_json::Value = serde_json::from_str(&expect_exit(
        &dev,
        &["get", "sync/apps", "-n", NS, "-o", "json"],
        0,
    ))
    .expect("JSON");
    assert_eq!(one["kind"], "Sync");
    assert_eq!(one["status"]["lastAppliedRevision"], revision.as_str());
    let list = expect_exit(&dev, &["get", "gitsources", "-n", NS, "-o", "yaml"], 0);
    assert!(
        list.contains("kind: List") && list.contains("name: fleet"),
        "{list}"
    );
    expect_exit(&dev, &["get", "sync/nope", "-n", NS], 1);
    expect_exit(&dev, &["get", "deployments"], 1);

    // sigil tree: the inventory with health; the Deployment has not rolled out (exit 3).
    let tree = expect_exit(&dev, &["tree", "sync/apps", "-n", NS], 3);
    let lines: Vec<&str> = tree.lines().collect();
    assert!(
        lines[0].starts_with("Sync/gitops/apps") && lines[0].contains("Current"),
        "{tree}"
    );
    assert_eq!(lines.len(), 4, "{tree}");
    let web = lines
        .iter()
        .find(|l| l.contains("Deployment/apps/web"))
        .unwrap_or_else(|| panic!("{tree}"));
    assert!(web.contains("InProgress"), "{tree}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("── Namespace/apps") && l.contains("Current")),
        "{tree}"
    );
    finish_rollout(&client).await;
    let tree = expect_exit(&dev, &["tree", "sync/apps", "-n", NS, "-o", "json"], 0);
    let tree: serde_json::Value = serde_json::from_str(&tree).expect("JSON");
    let children = tree["children"].as_array().expect("children");
    assert_eq!(children.len(), 3, "{tree}");
    assert!(children.iter().all(|c| c["health"] == "Current"), "{tree}");

    // sigil reconcile: handled and Ready → 0; a failing Sync → 3.
    let out = expect_exit(
        &dev,
        &["reconcile", "sync/apps", "-n", NS, "--with-source"],
        0,
    );
    assert!(
        out.contains("sync.sigil.dev/apps reconciled") && out.contains(&revision),
        "{out}"
    );
    let sync = syncs.get("apps").await.expect("Sync");
    assert!(
        sync.status
            .and_then(|s| s.last_handled_reconcile_at)
            .is_some()
    );
    expect_exit(
        &dev,
        &["reconcile", "sync/broken", "-n", NS, "--timeout", "30s"],
        3,
    );
    expect_exit(&dev, &["reconcile", "sealedsecret/x", "-n", NS], 1);

    // suspend / resume.
    let out = expect_exit(&dev, &["suspend", "sync/apps", "-n", NS], 0);
    assert_eq!(out.trim(), "sync.sigil.dev/apps suspended");
    assert!(syncs.get("apps").await.expect("Sync").spec.suspend);
    let refused = sigil(&dev, &["reconcile", "sync/apps", "-n", NS]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        text(&refused).1.contains("is suspended"),
        "{:?}",
        text(&refused)
    );
    let wide = expect_exit(&dev, &["get", "sync/apps", "-n", NS, "-o", "wide"], 0);
    let column = wide.find("SUSPENDED").expect("SUSPENDED column");
    let row = wide.lines().nth(1).expect("a row");
    assert!(
        row.get(column..).is_some_and(|c| c.starts_with("True")),
        "{wide}"
    );
    let out = expect_exit(&dev, &["resume", "sync/apps", "-n", NS], 0);
    assert!(out.starts_with("sync.sigil.dev/apps resumed"), "{out}");
    assert!(!syncs.get("apps").await.expect("Sync").spec.suspend);
}
