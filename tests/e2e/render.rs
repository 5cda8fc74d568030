//! Syncs of Kustomize overlays and Helm charts, with the real `kubectl kustomize` and
//! `helm template` as the oracle: what a Sync applies must be exactly what they print for the
//! same input (every rendered object is live with every field it renders, and nothing else is
//! in the inventory). examples/kustomize and examples/helm are the repositories used.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;
use sigil::api::ManifestSync;

use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, fleet_source_yaml, ready, wait_for};
use crate::support::tools::tool;
use crate::sync::request_reconcile;

const NS: &str = "gitops";
const WAIT: Duration = Duration::from_secs(60);

fn examples() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
}

/// Copies the folder `from` into the work tree of `repo` at `to`.
fn copy_into(repo: &GitRepo, from: &Path, to: &str) {
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target = format!("{to}/{}", entry.file_name().to_string_lossy());
        if entry.file_type().expect("type").is_dir() {
            copy_into(repo, &entry.path(), &target);
        } else {
            let text = std::fs::read_to_string(entry.path()).expect("read");
            repo.write(&target, &text);
        }
    }
}

/// The documents a real program prints.
fn oracle(program: &str, args: &[&str], dir: &Path) -> Vec<Value> {
    let output = Command::new(tool(program))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("oracle runs");
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    sigil::yaml::documents(&String::from_utf8_lossy(&output.stdout))
        .expect("oracle output is YAML")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Whether every field of `expected` is in `live` with the same value.
fn contains(live: &Value, expected: &Value) -> bool {
    match (live, expected) {
        (Value::Object(live), Value::Object(expected)) => expected
            .iter()
            .all(|(k, v)| live.get(k).is_some_and(|l| contains(l, v))),
        (Value::Array(live), Value::Array(expected)) => {
            live.len() == expected.len() && live.iter().zip(expected).all(|(l, e)| contains(l, e))
        }
        _ => live == expected,
    }
}

fn identity(object: &Value, default_namespace: &str) -> (String, String, String, String) {
    let text = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("");
    let namespaced = !matches!(text("/kind"), "Namespace" | "CustomResourceDefinition");
    let namespace = match text("/metadata/namespace") {
        "" if namespaced => default_namespace,
        ns => ns,
    };
    (
        text("/apiVersion").to_string(),
        text("/kind").to_string(),
        namespace.to_string(),
        text("/metadata/name").to_string(),
    )
}

fn api_for(ops: &GitOps, api_version: &str, kind: &str, namespace: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, kind),
        &format!("{}s", kind.to_ascii_lowercase()),
    );
    if namespace.is_empty() {
        Api::all_with(ops.client(), &resource)
    } else {
        Api::namespaced_with(ops.client(), namespace, &resource)
    }
}

/// Asserts that the Sync applied exactly `expected`: each object live with all its rendered
/// fields, and the inventory naming these objects and no others. Returns resourceVersions.
async fn assert_applied(
    ops: &GitOps,
    sync: &ManifestSync,
    expected: &[Value],
    default_namespace: &str,
) -> Vec<String> {
    let inventory: BTreeSet<_> = sync
        .status
        .as_ref()
        .expect("status")
        .inventory
        .iter()
        .map(|e| {
            (
                e.api_version.clone(),
                e.kind.clone(),
                e.namespace.clone(),
                e.name.clone(),
            )
        })
        .collect();
    let wanted: BTreeSet<_> = expected
        .iter()
        .map(|o| identity(o, default_namespace))
        .collect();
    assert_eq!(
        inventory, wanted,
        "the inventory is what the oracle printed"
    );
    let mut versions = Vec::new();
    for object in expected {
        let (api_version, kind, namespace, name) = identity(object, default_namespace);
        let namespace = if kind == "Namespace" { "" } else { &namespace };
        let live = api_for(ops, &api_version, &kind, namespace)
            .get(&name)
            .await
            .unwrap_or_else(|e| panic!("{kind}/{name} is live: {e}"));
        let live_json = serde_json::to_value(&live).expect("json");
        assert!(
            contains(&live_json, object),
            "{kind}/{name}: live {live_json:#}\nlacks what was rendered: {object:#}"
        );
        versions.push(live.metadata.resource_version.clone().unwrap_or_default());
    }
    versions
}

fn applied(revision: String) -> impl Fn(&ManifestSync) -> bool {
    move |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_applied_revision.as_deref())
            == Some(revision.as_str())
            && ready(s).is_some_and(|(status, _, _)| status == "True")
    }
}

/// `sigil_<name>{...labels...}` summed from the controller's `/metrics`.
async fn metric(ops: &GitOps, name: &str, labels: &[&str]) -> u64 {
    let text = reqwest::get(format!("http://{}/metrics", ops.http))
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(&format!("sigil_{name}{{")))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

async fn start(repo: &GitRepo) -> GitOps {
    let kubectl = tool("kubectl");
    let helm = tool("helm");
    let ops = GitOps::start_with(move |options| {
        options.render.kustomize = Some(kubectl);
        options.render.helm = Some(helm);
    })
    .await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &fleet_source_yaml(&repo.url(), "1s", ""))
        .await;
    ops
}

#[tokio::test]
async fn a_kustomize_overlay_applies_what_kubectl_kustomize_prints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    copy_into(&repo, &examples().join("kustomize"), "kustomize");
    let first = repo.commit("overlays");
    let ops = start(&repo).await;
    ops.create_sync(
        NS,
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: web-dev\nspec:\n  sourceRef:\n    name: fleet\n  path: kustomize/overlays/dev\n  interval: 1h\n  prune: true\n  selfHeal: true\n",
    )
    .await;
    let overlay = repo.dir.join("kustomize/overlays/dev");
    let sync = ops
        .wait_sync(
            NS,
            "web-dev",
            "overlay applied",
            WAIT,
            applied(format!("main@sha1:{first}")),
        )
        .await;
    let expected = oracle("kubectl", &["kustomize", "."], &overlay);
    assert_eq!(
        expected.len(),
        4,
        "namespace, generated ConfigMap, Service, Deployment"
    );
    let versions = assert_applied(&ops, &sync, &expected, NS).await;
    assert_eq!(
        metric(
            &ops,
            "render_runs_total",
            &["renderer=\"kustomize\"", "outcome=\"rendered\""]
        )
        .await,
        1
    );

    // A resync of the same revision renders nothing and writes nothing.
    request_reconcile::<ManifestSync>(&ops, "web-dev", "again").await;
    ops.wait_sync(NS, "web-dev", "resync handled", WAIT, |s| {
        s.status
            .as_ref()
            .and_then(|st| st.last_handled_reconcile_at.as_deref())
            == Some("again")
    })
    .await;
    assert_eq!(
        metric(&ops, "render_runs_total", &["renderer=\"kustomize\""]).await,
        1,
        "no renderer ran"
    );
    assert!(metric(&ops, "render_cache_hits_total", &["renderer=\"kustomize\""]).await >= 1);
    let sync = ops.sync(NS, "web-dev").await;
    assert_eq!(
        assert_applied(&ops, &sync, &expected, NS).await,
        versions,
        "nothing was written"
    );

    // A changed patch, generator and a removed resource roll out in a new commit.
    repo.write(
        "kustomize/overlays/dev/replicas.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 4\n",
    );
    let base =
        std::fs::read_to_string(repo.dir.join("kustomize/base/kustomization.yaml")).expect("base");
    repo.write(
        "kustomize/base/kustomization.yaml",
        &base
            .replace("  - service.yaml\n", "")
            .replace("GREETING=hello", "GREETING=hi"),
    );
    let second = repo.commit("four replicas, no service");
    let sync = ops
        .wait_sync(
            NS,
            "web-dev",
            "second revision applied",
            WAIT,
            applied(format!("main@sha1:{second}")),
        )
        .await;
    let expected = oracle("kubectl", &["kustomize", "."], &overlay);
    assert_eq!(expected.len(), 3);
    assert_applied(&ops, &sync, &expected, NS).await;
    let service = api_for(&ops, "v1", "Service", "web-dev")
        .get_opt("web-dev")
        .await
        .expect("get");
    assert!(service.is_none(), "the Service left Git and was pruned");
    let old_config = api_for(&ops, "v1", "ConfigMap", "web-dev")
        .list(&Default::default())
        .await
        .expect("list")
        .items
        .iter()
        .filter(|cm| {
            cm.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("web-config"))
        })
        .count();
    assert_eq!(old_config, 1, "the ConfigMap of the old hash was pruned");

    // Self-heal puts a deleted rendered object back.
    let deployments = api_for(&ops, "apps/v1", "Deployment", "web-dev");
    deployments
        .delete("web-dev", &DeleteParams::default())
        .await
        .expect("delete");
    wait_for("the Deployment healed", WAIT, || {
        let deployments = deployments.clone();
        async move { deployments.get_opt("web-dev").await.ok().flatten() }
    })
    .await;
}

#[tokio::test]
async fn kustomizations_reaching_outside_the_repository_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    let cases = [
        (
            "past-root",
            "resources:\n  - ../../../outside\n",
            "reaches outside the repository",
        ),
        (
            "absolute",
            "resources:\n  - /etc/kubernetes/manifests\n",
            "absolute paths are not allowed",
        ),
        (
            "remote",
            "resources:\n  - https://github.com/kubernetes-sigs/kustomize//examples/helloWorld?ref=v5.0.0\n",
            "remote bases and resources are not allowed",
        ),
    ];
    for (name, kustomization, _) in &cases {
        repo.write(&format!("bad/{name}/kustomization.yaml"), kustomization);
    }
    repo.commit("bad overlays");
    let ops = start(&repo).await;
    for (name, _, _) in &cases {
        ops.create_sync(
            NS,
            &format!("apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {name}\nspec:\n  sourceRef:\n    name: fleet\n  path: bad/{name}\n  interval: 1h\n"),
        )
        .await;
    }
    for (name, _, why) in &cases {
        let sync = ops
            .wait_sync(NS, name, "refused", WAIT, |s| {
                ready(s).is_some_and(|(st, r, _)| st == "False" && r != "SourceNotReady")
            })
            .await;
        let (_, reason, message) = ready(&sync).expect("Ready");
        assert_eq!(reason, "RenderRefused", "{message}");
        assert!(message.contains(why), "{name}: {message}");
        assert!(message.contains(&format!("Sync {NS}/{name}")), "{message}");
        assert!(
            message.contains(&format!("bad/{name}/kustomization.yaml")),
            "{message}"
        );
    }
    assert_eq!(
        metric(&ops, "render_runs_total", &["outcome=\"rendered\""]).await,
        0
    );

    // A symlink out of the repository is never followed into the render.
    let other = GitRepo::init(&tmp.path().join("linked"));
    other
        .write("app/kustomization.yaml", "resources:\n  - secret.yaml\n")
        .symlink("app/secret.yaml", "/etc/hostname");
    other.commit("a link out");
    ops.create_source(
        NS,
        &format!("apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: linked\nspec:\n  url: {}\n  interval: 1h\n", other.url()),
    )
    .await;
    ops.create_sync(
        NS,
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: linked\nspec:\n  sourceRef:\n    name: linked\n  path: app\n  interval: 1h\n",
    )
    .await;
    let sync = ops
        .wait_sync(NS, "linked", "refused", WAIT, |s| {
            ready(s).is_some_and(|(st, r, _)| st == "False" && r != "SourceNotReady")
        })
        .await;
    let (_, reason, message) = ready(&sync).expect("Ready");
    assert_eq!(reason, "ArtifactRefused", "{message}");
    assert!(
        message.contains("symlink points outside the repository"),
        "{message}"
    );
}

/// `helm template` of the chart with the values the Sync gives it, in the same order.
fn helm_template(chart: &Path, from_cluster: &str, inline: &str) -> Vec<Value> {
    let args = [
        "template",
        "web",
        ".",
        "--namespace",
        "web",
        "--no-hooks",
        "--include-crds",
        "--values",
        "values-prod.yaml",
        "--values",
        from_cluster,
        "--values",
        inline,
        "--api-versions",
        "sigil.dev/v1alpha1",
    ];
    oracle("helm", &args, chart)
}

#[tokio::test]
async fn a_helm_chart_applies_what_helm_template_prints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    copy_into(&repo, &examples().join("helm"), "helm");
    let first = repo.commit("chart");
    let ops = start(&repo).await;
    ops.cluster.namespace("web").await;
    let from_cluster = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("web-values".to_string()),
            ..Default::default()
        },
        data: Some(
            [(
                "values.yaml".to_string(),
                "image:\n  tag: \"1.27-alpine\"\n".to_string(),
            )]
            .into(),
        ),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(ops.client(), NS)
        .create(&PostParams::default(), &from_cluster)
        .await
        .expect("values ConfigMap");
    ops.create_sync(
        NS,
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: web-prod\nspec:\n  sourceRef:\n    name: fleet\n  path: helm/web\n  interval: 1h\n  prune: true\n  targetNamespace: web\n  helm:\n    releaseName: web\n    valuesFiles: [values-prod.yaml]\n    valuesFrom:\n      - kind: ConfigMap\n        name: web-values\n    values:\n      replicas: 2\n",
    )
    .await;
    let sync = ops
        .wait_sync(
            NS,
            "web-prod",
            "chart applied",
            WAIT,
            applied(format!("main@sha1:{first}")),
        )
        .await;
    let chart = repo.dir.join("helm/web");
    std::fs::write(
        tmp.path().join("from.yaml"),
        "image:\n  tag: \"1.27-alpine\"\n",
    )
    .expect("values");
    std::fs::write(tmp.path().join("inline.yaml"), "replicas: 2\n").expect("values");
    let from = tmp.path().join("from.yaml").display().to_string();
    let inline = tmp.path().join("inline.yaml").display().to_string();
    let expected = helm_template(&chart, &from, &inline);
    assert_eq!(
        expected.len(),
        3,
        "subchart ConfigMap, ConfigMap, Deployment; no hook"
    );
    assert_applied(&ops, &sync, &expected, "web").await;
    let config = Api::<ConfigMap>::namespaced(ops.client(), "web")
        .get("web-config")
        .await
        .expect("config");
    let data = config.data.unwrap_or_default();
    assert_eq!(
        data.get("HAS_SIGIL_API").map(String::as_str),
        Some("true"),
        ".Capabilities from discovery"
    );
    assert_eq!(
        data.get("GREETING").map(String::as_str),
        Some("hello from prod")
    );
    let hook = Api::<ConfigMap>::namespaced(ops.client(), "web")
        .get_opt("web-pre-install")
        .await
        .expect("get");
    assert!(hook.is_none(), "hooks are not applied");

    // A changed values file rolls out in a new commit.
    repo.write(
        "helm/web/values-prod.yaml",
        "replicas: 3\ngreeting: hello again\n",
    );
    let second = repo.commit("new greeting");
    let sync = ops
        .wait_sync(
            NS,
            "web-prod",
            "second revision applied",
            WAIT,
            applied(format!("main@sha1:{second}")),
        )
        .await;
    let expected = helm_template(&chart, &from, &inline);
    assert_applied(&ops, &sync, &expected, "web").await;
    let config = Api::<ConfigMap>::namespaced(ops.client(), "web")
        .get("web-config")
        .await
        .expect("config");
    assert_eq!(
        config
            .data
            .unwrap_or_default()
            .get("GREETING")
            .map(String::as_str),
        Some("hello again")
    );
}

#[tokio::test]
async fn renderer_failures_name_the_sync_the_path_and_the_renderers_own_message() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    repo.write(
        "broken/kustomize/kustomization.yaml",
        "resources:\n  - missing-deployment.yaml\n",
    )
    .write(
        "broken/helm/Chart.yaml",
        "apiVersion: v2\nname: broken\nversion: 0.1.0\n",
    )
    .write(
        "broken/helm/templates/fail.yaml",
        "{{ fail \"the chart refuses: value-7f3 missing\" }}\n",
    );
    repo.commit("broken renders");
    let ops = start(&repo).await;
    let cases = [
        ("kustomize", "broken/kustomize", "missing-deployment.yaml"),
        (
            "helm",
            "broken/helm",
            "the chart refuses: value-7f3 missing",
        ),
    ];
    for (renderer, path, _) in &cases {
        ops.create_sync(
            NS,
            &format!("apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: broken-{renderer}\nspec:\n  sourceRef:\n    name: fleet\n  path: {path}\n  interval: 1h\n"),
        )
        .await;
    }
    for (renderer, path, stderr) in &cases {
        let name = format!("broken-{renderer}");
        let sync = ops
            .wait_sync(NS, &name, "render failed", WAIT, |s| {
                ready(s).is_some_and(|(st, r, _)| st == "False" && r == "RenderFailed")
            })
            .await;
        let (_, _, message) = ready(&sync).expect("Ready");
        for part in [
            format!("Sync {NS}/{name}"),
            format!("{path:?} ({renderer})"),
            stderr.to_string(),
        ] {
            assert!(
                message.contains(&part),
                "{renderer}: no {part:?} in {message}"
            );
        }
        assert!(
            !message.contains("/tmp/"),
            "sandbox paths are repository-relative: {message}"
        );
        assert!(
            !message.contains('\n'),
            "stderr is trimmed to one line: {message}"
        );
        let labels = [
            format!("renderer=\"{renderer}\""),
            "outcome=\"RenderFailed\"".to_string(),
        ];
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        assert!(
            metric(&ops, "render_runs_total", &labels).await >= 1,
            "{renderer}: failed runs counted"
        );
        assert!(
            metric(&ops, "render_duration_seconds_count", &labels).await >= 1,
            "{renderer}: failed runs timed"
        );
    }
}
