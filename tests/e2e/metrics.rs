//! `/metrics` after an end-to-end run: `sigil dev` (API server + controller in one process)
//! reconciles real objects, then the exposition is checked for OpenMetrics well-formedness and
//! for the series issue 6 lists.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;
use sigil::api::ExternalSecret;
use sigil::api::git_source::GitSource;
use sigil::api::sealed_secret::SealedSecret;
use sigil::api::sync::ManifestSync;

use kube_devserver::testing::poll;

use crate::support::controller::{self, client, free_port};
use crate::support::dev::{DevProcess, wait_ok};
use crate::support::git_repo::GitRepo;
use crate::support::moto::{self, Moto};
use crate::support::objects::{
    create_namespace, create_sealed_secret, wait_for_recipients, wait_for_secret,
};

/// One sample line: `name{labels} value`.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The exposition, checked for the OpenMetrics text format as it goes: every sample belongs to a
/// family declared by a `# TYPE` line before it, with the suffixes its type allows, and the text
/// ends with `# EOF`.
struct Exposition {
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(name.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

fn allowed_suffixes(kind: &str) -> &'static [&'static str] {
    match kind {
        "counter" => &["_total", "_created"],
        "histogram" => &["_bucket", "_sum", "_count", "_created"],
        "gauge" | "unknown" | "info" | "stateset" => &[""],
        "summary" => &["", "_sum", "_count", "_created"],
        other => panic!("unknown OpenMetrics type {other}"),
    }
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics ends with # EOF:\n{text}"
        );
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if line == "# EOF" {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (family, kind) = rest.split_once(' ').expect("# TYPE name type");
                allowed_suffixes(kind);
                assert!(
                    types.insert(family.to_string(), kind.to_string()).is_none(),
                    "family {family} declared twice"
                );
                continue;
            }
            if line.starts_with("# HELP ") || line.starts_with("# UNIT ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line}");
            let (series, value) = line.rsplit_once(' ').expect("sample: series value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (
                    name,
                    parse_labels(labels.strip_suffix('}').expect("closing brace")),
                ),
                None => (series, BTreeMap::new()),
            };
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("numeric value in {line}"));
            let family = types
                .iter()
                .filter(|(family, kind)| {
                    allowed_suffixes(kind)
                        .iter()
                        .any(|suffix| name == format!("{family}{suffix}"))
                })
                .map(|(family, _)| family.clone())
                .next();
            assert!(family.is_some(), "sample {name} has no # TYPE before it");
            samples.push(Sample {
                name: name.to_string(),
                labels,
                value,
            });
        }
        Exposition { types, samples }
    }

    fn kind(&self, family: &str) -> Option<&str> {
        self.types.get(family).map(String::as_str)
    }

    /// Samples named `name` whose labels include every pair of `labels`.
    fn find(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name)
            .filter(|s| {
                labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.find(name, labels).iter().map(|s| s.value).sum()
    }
}

async fn get_metrics(url: &str) -> (String, String) {
    controller::get_metrics(url).await.expect("GET /metrics")
}

/// Waits (bounded) until `/readyz` on `url` answers 200.
async fn wait_ready(url: &str, dev: &DevProcess) {
    wait_ok(&format!("{url}/readyz"), dev).await;
}

/// Waits (bounded) until the exposition satisfies `done`.
async fn metrics_until(url: &str, what: &str, done: impl Fn(&Exposition) -> bool) -> Exposition {
    let last = std::cell::RefCell::new(String::new());
    let found = poll(
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (_, text) = get_metrics(url).await;
            let exposition = Exposition::parse(&text);
            let found = done(&exposition).then_some(exposition);
            *last.borrow_mut() = text;
            found
        },
    )
    .await;
    found.unwrap_or_else(|| panic!("{what} never showed:\n{}", last.borrow()))
}

const SEALED: &str = "sealedsecret";
const GIT_SOURCE: &str = "gitsource";
const SYNC: &str = "sync";
const EXTERNAL: &str = "externalsecret";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_an_end_to_end_run_are_openmetrics_with_every_series() {
    let url_port = free_port();
    let listen = format!("127.0.0.1:{url_port}");
    let dev = DevProcess::start(&["--controller-http-listen", &listen]);
    let url = format!("http://{listen}");
    wait_ready(&url, &dev).await;
    let client = client(&dev.kubeconfig).await;
    create_namespace(&client, "apps").await;

    // Sealed secrets: one that opens, one that cannot.
    let plaintext = "metrics-plaintext-7c1f";
    wait_for_recipients(&client, Duration::from_secs(30)).await;
    create_sealed_secret(&client, &dev.kubeconfig, "apps", "good", plaintext).await;
    wait_for_secret(&client, "apps", "good", Duration::from_secs(30)).await;
    let mut broken: SealedSecret = serde_json::from_value(serde_json::json!({
        "apiVersion": "sigil.dev/v1alpha1",
        "kind": "SealedSecret",
        "metadata": {"name": "broken", "namespace": "apps"},
        "spec": {"encryptedData": {"password": "-----BEGIN AGE ENCRYPTED FILE-----\nbm90IGFnZQ==\n-----END AGE ENCRYPTED FILE-----\n"}}
    }))
    .expect("a SealedSecret");
    broken.metadata.resource_version = None;
    Api::<SealedSecret>::namespaced(client.clone(), "apps")
        .create(&PostParams::default(), &broken)
        .await
        .expect("create the broken SealedSecret");

    // Manifest sync: a GitSource over file:// and a Sync of one folder.
    let repo_dir = tempfile::tempdir().expect("temp dir");
    let repo = GitRepo::init(&repo_dir.path().join("fleet"));
    repo.write(
        "apps/settings.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: apps\ndata:\n  mode: fast\n",
    );
    repo.commit("settings");
    let source: GitSource = sigil::yaml::from_str(&format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: fleet\n  namespace: apps\nspec:\n  url: {}\n  ref:\n    branch: main\n  interval: 1m\n",
        repo.url()
    ))
    .expect("a GitSource");
    Api::<GitSource>::namespaced(client.clone(), "apps")
        .create(&PostParams::default(), &source)
        .await
        .expect("create the GitSource");
    let sync: ManifestSync = sigil::yaml::from_str(
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: apps\n  namespace: apps\nspec:\n  sourceRef:\n    kind: GitSource\n    name: fleet\n  path: apps\n  interval: 1m\n  prune: true\n",
    )
    .expect("a Sync");
    Api::<ManifestSync>::namespaced(client.clone(), "apps")
        .create(&PostParams::default(), &sync)
        .await
        .expect("create the Sync");
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "apps");
    let deadline = Instant::now() + Duration::from_secs(60);
    while config_maps
        .get_opt("settings")
        .await
        .expect("read")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the Sync never applied:\n{}",
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // External secrets: a SecretStore for moto (the AWS emulator) and an ExternalSecret.
    let moto = Moto::start().await;
    moto::create(
        &moto.client().await,
        "prod/metrics/db",
        r#"{"password":"metrics-aws-value-9b2e"}"#,
        &[],
    )
    .await;
    moto::create_store(&client, "apps", &moto.endpoint).await;
    let external: ExternalSecret = sigil::yaml::from_str(
        "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata:\n  name: db\n  namespace: apps\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {name: aws, kind: SecretStore}\n  target: {name: db-from-aws}\n  data:\n    - secretKey: password\n      remoteRef: {key: prod/metrics/db, property: password}\n",
    )
    .expect("an ExternalSecret");
    Api::<ExternalSecret>::namespaced(client.clone(), "apps")
        .create(&PostParams::default(), &external)
        .await
        .expect("create the ExternalSecret");
    wait_for_secret(&client, "apps", "db-from-aws", Duration::from_secs(60)).await;

    // A webhook call without a valid signature.
    let refused = crate::support::http::client()
        .post(format!("{url}/hooks/apps/fleet"))
        .header("X-Hub-Signature-256", "sha256=00")
        .body("{}")
        .send()
        .await
        .expect("webhook call");
    assert_eq!(refused.status(), reqwest::StatusCode::UNAUTHORIZED);

    let exposition = metrics_until(&url, "reconciles of every controller", |e| {
        e.value("sigil_reconcile_errors_total", &[("controller", SEALED)]) >= 1.0
            && e.value("sigil_reconciles_total", &[("controller", "secretstore")]) >= 1.0
            && e.value("sigil_git_fetches_total", &[("outcome", "fetched")]) >= 1.0
            && e.value("sigil_applied_objects_total", &[("outcome", "created")]) >= 1.0
            && e.value("sigil_reconciles_total", &[("controller", GIT_SOURCE)]) >= 1.0
            && e.value("sigil_reconciles_total", &[("controller", SYNC)]) >= 1.0
            && e.value("sigil_reconciles_total", &[("controller", EXTERNAL)]) >= 1.0
    })
    .await;
    let (content_type, text) = get_metrics(&url).await;
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    for value in [plaintext, "metrics-aws-value-9b2e"] {
        assert!(!text.contains(value), "no secret value in /metrics");
    }

    // Per controller: reconcile count, errors by reason, duration histogram.
    assert_eq!(exposition.kind("sigil_reconciles"), Some("counter"));
    assert!(exposition.value("sigil_reconciles_total", &[("controller", SEALED)]) >= 2.0);
    assert_eq!(exposition.kind("sigil_reconcile_errors"), Some("counter"));
    for error in exposition.find("sigil_reconcile_errors_total", &[("controller", SEALED)]) {
        let reason = &error.labels["reason"];
        assert!(
            !reason.is_empty() && reason.chars().all(|c| c.is_ascii_alphanumeric()),
            "a reason is a fixed CamelCase word, not a message: {reason:?}"
        );
    }
    assert_eq!(
        exposition.kind("sigil_reconcile_duration_seconds"),
        Some("histogram")
    );
    for controller in [SEALED, GIT_SOURCE, SYNC, EXTERNAL] {
        let count = exposition.value(
            "sigil_reconcile_duration_seconds_count",
            &[("controller", controller)],
        );
        assert!(count >= 1.0, "{controller} reconciles are timed");
        let infinite = exposition.value(
            "sigil_reconcile_duration_seconds_bucket",
            &[("controller", controller), ("le", "+Inf")],
        );
        assert_eq!(
            infinite, count,
            "the +Inf bucket counts every {controller} reconcile"
        );
    }

    // Sealing keys in use, and SealedSecrets per key (none: not opened).
    assert_eq!(exposition.kind("sigil_sealing_keys"), Some("gauge"));
    assert_eq!(exposition.value("sigil_sealing_keys", &[]), 1.0);
    assert_eq!(exposition.kind("sigil_sealedsecrets"), Some("gauge"));
    let per_key = exposition.find("sigil_sealedsecrets", &[]);
    let opened: Vec<&&Sample> = per_key
        .iter()
        .filter(|s| s.labels["key"] != "none")
        .collect();
    assert_eq!(opened.len(), 1, "{per_key:?}");
    assert_eq!(opened[0].value, 1.0);
    assert_eq!(
        exposition.value("sigil_sealedsecrets", &[("key", "none")]),
        1.0
    );

    // Git fetches, applied objects and webhook calls, by outcome.
    assert_eq!(exposition.kind("sigil_git_fetches"), Some("counter"));
    assert_eq!(exposition.kind("sigil_applied_objects"), Some("counter"));
    assert_eq!(
        exposition.value("sigil_applied_objects_total", &[("outcome", "created")]),
        1.0,
        "one ConfigMap created"
    );
    assert_eq!(exposition.kind("sigil_webhook_calls"), Some("counter"));
    assert_eq!(
        exposition.value("sigil_webhook_calls_total", &[("outcome", "unauthorized")]),
        1.0
    );

    // Backend calls by store, provider and outcome.
    assert_eq!(exposition.kind("sigil_backend_calls"), Some("counter"));
    assert!(
        exposition.value(
            "sigil_backend_calls_total",
            &[
                ("store", "SecretStore/apps/aws"),
                ("provider", "aws"),
                ("outcome", "success"),
            ],
        ) >= 1.0,
        "{:?}",
        exposition.find("sigil_backend_calls_total", &[])
    );
}
