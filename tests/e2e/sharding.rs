//! Sharding: the chart's `sharding.shards` renders one Deployment per shard, and controllers
//! started with exactly those arguments split the objects between them, each shard leading on
//! its own Lease. Each controller talks through its own recording proxy, so the test sees which
//! shard wrote which object.

use std::time::Duration;

use std::time::Instant;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use sigil::api::ExternalSecret;
use sigil::api::git_source::GitSource;
use sigil::api::sync::ManifestSync;
use sigil::controller::Shard;

use crate::ha::{APPS, Replica, dev_without_controller, wait_for_holder};
use crate::support::controller::lease_holder;
use crate::support::dev::DevProcess;
use crate::support::git_repo::GitRepo;
use crate::support::kube_cli::helm_template;
use crate::support::moto::{self, Moto};
use crate::support::objects::{create_sealed_secret, wait_for_recipients, wait_for_secret};

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn container_args(deployment: &Value) -> Vec<String> {
    deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("container args")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

fn labels(value: &Value) -> Vec<(String, String)> {
    value
        .as_object()
        .map(|map| {
            map.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every label of `selector` is among `labels`.
fn selects(selector: &Value, target: &Value) -> bool {
    let target = labels(target);
    labels(selector).iter().all(|pair| target.contains(pair))
}

#[test]
fn chart_renders_one_deployment_and_disruption_budget_per_shard() {
    let docs = helm_template(&["sharding.shards=3"]);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 3);
    let budgets = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(budgets.len(), 3);
    let service = of_kind(&docs, "Service")[0];
    for (index, deployment) in deployments.iter().enumerate() {
        let name = format!("sigil-shard-{index}");
        assert_eq!(deployment["metadata"]["name"], name.as_str());
        let args = container_args(deployment);
        for expected in [
            "--leader-elect".to_string(),
            format!("--shard={index}"),
            "--shards=3".to_string(),
        ] {
            assert!(args.contains(&expected), "{name}: {args:?}");
        }
        let selector = &deployment["spec"]["selector"]["matchLabels"];
        let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
        assert_eq!(selector["sigil.dev/shard"], index.to_string().as_str());
        assert!(selects(selector, pod_labels), "{name} selects its pods");
        for (other_index, other) in deployments.iter().enumerate() {
            let other_pods = &other["spec"]["template"]["metadata"]["labels"];
            assert_eq!(
                selects(selector, other_pods),
                index == other_index,
                "{name} must select only its own pods"
            );
            assert!(
                selects(&service["spec"]["selector"], other_pods),
                "the Service reaches every shard (metrics, recipients, webhooks)"
            );
        }
        let budget = budgets
            .iter()
            .find(|b| b["metadata"]["name"] == name.as_str())
            .unwrap_or_else(|| panic!("a PodDisruptionBudget for {name}"));
        assert_eq!(budget["spec"]["selector"]["matchLabels"], *selector);
        let anti_affinity = &deployment["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]["labelSelector"]
            ["matchLabels"];
        assert_eq!(anti_affinity, selector, "{name} spreads its own replicas");
    }
}

#[test]
fn unsharded_chart_keeps_one_deployment_without_shard_flags() {
    let docs = helm_template(&[]);
    let deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 1);
    assert_eq!(deployments[0]["metadata"]["name"], "sigil");
    let args = container_args(deployments[0]);
    assert!(!args.iter().any(|a| a.starts_with("--shard")), "{args:?}");
    assert!(
        deployments[0]["spec"]["selector"]["matchLabels"]
            .get("sigil.dev/shard")
            .is_none(),
        "an unsharded selector stays as it always was"
    );
    assert_eq!(of_kind(&docs, "PodDisruptionBudget").len(), 1);
}

#[test]
fn chart_schema_refuses_zero_shards() {
    let home = tempfile::tempdir().expect("temp dir");
    let chart = crate::support::kube_cli::chart_dir();
    let out = std::process::Command::new(crate::support::tools::tool("helm"))
        .args(["template", "sigil"])
        .arg(&chart)
        .args(["--set", "sharding.shards=0"])
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shards"), "{stderr}");
}

/// The arguments the chart gives shard `index` of `shards`, without `--namespace` (the test
/// process helper passes it).
fn chart_args(shards: u32, index: usize) -> Vec<String> {
    let docs = helm_template(&[&format!("sharding.shards={shards}")]);
    let deployment = of_kind(&docs, "Deployment")[index];
    container_args(deployment)
        .into_iter()
        .skip(1)
        .filter(|a| !a.starts_with("--namespace"))
        .collect()
}

/// Two controllers started with the chart's arguments for shards 0 and 1, once each leads its
/// shard's Lease.
async fn start_two_shards(dev: &DevProcess, client: &kube::Client) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for index in 0..2 {
        let args = chart_args(2, index);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        replicas.push(Replica::start(dev, &format!("shard-{index}"), &args).await);
    }
    for index in 0..2 {
        let lease = format!("sigil-controller-shard-{index}");
        let holder = wait_for_holder(client, &lease, &["shard-0", "shard-1"]).await;
        assert_eq!(holder, format!("shard-{index}"), "{lease}");
    }
    assert_eq!(
        lease_holder(client, "sigil-controller").await,
        None,
        "sharded controllers do not use the unsharded lease"
    );
    replicas
}

/// Which of two shards owns `namespace/name`.
fn owner(namespace: &str, name: &str) -> usize {
    (0..2)
        .position(|i| {
            Shard::new(i, 2)
                .expect("valid shard")
                .owns(Some(namespace), name)
        })
        .expect("an owner")
}

/// Asserts that the owner of `name` wrote every path of `paths` and the other shard wrote
/// nothing whose path ends in `/name` or passes through `/name/`.
async fn only_the_owner_writes(replicas: &[Replica], name: &str, owner: usize, paths: &[String]) {
    for (index, replica) in replicas.iter().enumerate() {
        if index == owner {
            for path in paths {
                assert!(
                    replica.wrote_path(path).await,
                    "shard {index} writes {path}: {:?}",
                    replica.writes_besides_lease("")
                );
            }
        } else {
            let touched: Vec<String> = replica
                .writes_besides_lease("")
                .into_iter()
                .filter(|w| {
                    let path = w.split('?').next().unwrap_or_default();
                    path.ends_with(&format!("/{name}")) || path.contains(&format!("/{name}/"))
                })
                .collect();
            assert!(
                touched.is_empty(),
                "shard {index} must leave {name} alone: {touched:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_lead_on_their_own_leases_and_split_the_sealed_secrets() {
    let (dev, client) = dev_without_controller().await;
    let replicas = start_two_shards(&dev, &client).await;

    // Objects whose names hash to both shards.
    wait_for_recipients(&client, Duration::from_secs(20)).await;
    let names: Vec<String> = (0..10).map(|n| format!("item-{n}")).collect();
    for index in 0..2 {
        assert!(
            names.iter().any(|n| owner(APPS, n) == index),
            "shard {index} owns some of {names:?}"
        );
    }
    for name in &names {
        create_sealed_secret(&client, &dev.kubeconfig, APPS, name, "v").await;
    }
    for name in &names {
        wait_for_secret(&client, APPS, name, Duration::from_secs(30)).await;
    }

    for name in &names {
        let paths = [
            format!("/api/v1/namespaces/{APPS}/secrets/{name}"),
            format!("/apis/sigil.dev/v1alpha1/namespaces/{APPS}/sealedsecrets/{name}/status"),
        ];
        only_the_owner_writes(&replicas, name, owner(APPS, name), &paths).await;
    }
    // Only shard 0 makes keys and publishes recipients; the other only reads them.
    assert!(
        replicas[0]
            .wrote("/namespaces/sigil-system/configmaps/sigil-recipients")
            .await
    );
    let shard_1_system_writes: Vec<String> = replicas[1]
        .writes_besides_lease("sigil-controller-shard-1")
        .into_iter()
        .filter(|w| w.contains("/namespaces/sigil-system/"))
        .collect();
    assert!(
        shard_1_system_writes.is_empty(),
        "{shard_1_system_writes:?}"
    );
    let mut counted = Vec::new();
    for (index, replica) in replicas.iter().enumerate() {
        assert!(
            replica.reconciles().await > 0.0,
            "shard {index} reconciled its share"
        );
        let (_, text) = replica.process.metrics().await;
        let sealed: f64 = text
            .lines()
            .filter(|line| line.starts_with("sigil_sealedsecrets{"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        let owned = names.iter().filter(|n| owner(APPS, n) == index).count();
        assert_eq!(
            sealed as usize, owned,
            "shard {index} counts only its own SealedSecrets"
        );
        counted.push(sealed);
    }
    assert_eq!(
        counted.iter().sum::<f64>() as usize,
        names.len(),
        "the shards' series add up"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_git_sources_and_syncs() {
    let (dev, client) = dev_without_controller().await;
    let replicas = start_two_shards(&dev, &client).await;

    // One repository, a folder per Sync, each applying one ConfigMap; each Sync has a
    // GitSource of its own (the same URL), and goes to that GitSource's shard.
    let repo_dir = tempfile::tempdir().expect("temp dir");
    let repo = GitRepo::init(&repo_dir.path().join("fleet"));
    let syncs: Vec<String> = (0..6).map(|n| format!("sync-{n}")).collect();
    let source_of = |sync: &str| sync.replace("sync-", "fleet-");
    for sync in &syncs {
        repo.write(
            &format!("{sync}/config.yaml"),
            &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {sync}-config\n  namespace: {APPS}\ndata:\n  from: {sync}\n"),
        );
    }
    repo.commit("one folder per sync");
    for index in 0..2 {
        assert!(
            syncs.iter().any(|s| owner(APPS, &source_of(s)) == index),
            "shard {index} owns some of {syncs:?}"
        );
    }
    for sync in &syncs {
        let source: GitSource = sigil::yaml::from_str(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: {}\n  namespace: {APPS}\nspec:\n  url: {}\n  ref:\n    branch: main\n  interval: 1m\n",
            source_of(sync),
            repo.url()
        ))
        .expect("a GitSource");
        Api::<GitSource>::namespaced(client.clone(), APPS)
            .create(&PostParams::default(), &source)
            .await
            .expect("create a GitSource");
        let object: ManifestSync = sigil::yaml::from_str(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: {sync}\n  namespace: {APPS}\nspec:\n  sourceRef:\n    kind: GitSource\n    name: {}\n  path: {sync}\n  interval: 1m\n  prune: true\n",
            source_of(sync)
        ))
        .expect("a Sync");
        Api::<ManifestSync>::namespaced(client.clone(), APPS)
            .create(&PostParams::default(), &object)
            .await
            .expect("create a Sync");
    }
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), APPS);
    for sync in &syncs {
        let name = format!("{sync}-config");
        let deadline = Instant::now() + Duration::from_secs(60);
        while config_maps.get_opt(&name).await.expect("read").is_none() {
            if Instant::now() >= deadline {
                let source = Api::<GitSource>::namespaced(client.clone(), APPS)
                    .get("fleet")
                    .await
                    .map(|s| format!("{:?}", s.status));
                let stuck = Api::<ManifestSync>::namespaced(client.clone(), APPS)
                    .get(sync)
                    .await
                    .map(|s| format!("{:?}", s.status));
                panic!(
                    "{sync} never applied: source {source:?}, sync {stuck:?}\n{}\n{}",
                    replicas[0].process.log(),
                    replicas[1].process.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    for sync in &syncs {
        let source = source_of(sync);
        let shard = owner(APPS, &source);
        only_the_owner_writes(
            &replicas,
            &source,
            shard,
            &[format!(
                "/apis/sigil.dev/v1alpha1/namespaces/{APPS}/gitsources/{source}/status"
            )],
        )
        .await;
        let paths = [
            format!("/apis/sigil.dev/v1alpha1/namespaces/{APPS}/syncs/{sync}/status"),
            format!("/api/v1/namespaces/{APPS}/configmaps/{sync}-config"),
        ];
        only_the_owner_writes(&replicas, sync, shard, &paths).await;
        only_the_owner_writes(&replicas, &format!("{sync}-config"), shard, &[]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_shards_split_the_external_secrets() {
    let (dev, client) = dev_without_controller().await;
    let replicas = start_two_shards(&dev, &client).await;

    let moto = Moto::start().await;
    let aws = moto.client().await;
    let names: Vec<String> = (0..8).map(|n| format!("es-{n}")).collect();
    for index in 0..2 {
        assert!(
            names.iter().any(|n| owner(APPS, n) == index),
            "shard {index} owns some of {names:?}"
        );
    }
    for name in &names {
        moto::create(
            &aws,
            &format!("sharded/{name}"),
            &format!("value-of-{name}"),
            &[],
        )
        .await;
    }
    moto::create_store(&client, APPS, &moto.endpoint).await;
    for name in &names {
        let external: ExternalSecret = sigil::yaml::from_str(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: {APPS}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  target: {{name: {name}}}\n  data:\n    - secretKey: value\n      remoteRef: {{key: sharded/{name}}}\n"
        ))
        .expect("an ExternalSecret");
        Api::<ExternalSecret>::namespaced(client.clone(), APPS)
            .create(&PostParams::default(), &external)
            .await
            .expect("create an ExternalSecret");
    }
    for name in &names {
        wait_for_secret(&client, APPS, name, Duration::from_secs(60)).await;
    }

    only_the_owner_writes(
        &replicas,
        "aws",
        owner(APPS, "aws"),
        &[format!(
            "/apis/sigil.dev/v1alpha1/namespaces/{APPS}/secretstores/aws/status"
        )],
    )
    .await;
    for name in &names {
        let paths = [
            format!("/api/v1/namespaces/{APPS}/secrets/{name}"),
            format!("/apis/sigil.dev/v1alpha1/namespaces/{APPS}/externalsecrets/{name}/status"),
        ];
        only_the_owner_writes(&replicas, name, owner(APPS, name), &paths).await;
    }
}
