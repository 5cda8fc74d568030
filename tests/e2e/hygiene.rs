//! Secret hygiene, measured: every end-to-end flow of `sigil dev` (sealed, external, sync, CLI),
//! the good paths and the failing ones, runs with marker plaintexts; then every log line (the
//! controller at trace level), Event, status condition, metric and CLI error is scanned for the
//! markers and their base64. The only place a marker may be is the data of the Secrets written.

use std::time::Duration;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{ListParams, PostParams};
use serde::Serialize;
use sigil::api::git_source::GitSource;
use sigil::api::sealed_secret::SealedSecret;
use sigil::api::sync::ManifestSync;
use sigil::api::{ExternalSecret, SecretStore};

use kube_devserver::testing::poll;

use crate::support::controller::{client, free_port, get_metrics};
use crate::support::dev::{DevProcess, wait_ok};
use crate::support::git_repo::GitRepo;
use crate::support::moto::{self, Moto};
use crate::support::objects::{
    create_namespace, create_sealed_secret, seal, wait_for_recipients, wait_for_secret,
};
use crate::support::sealed::run;

const NS: &str = "hygiene";
/// One marker per flow, so a finding names the flow that leaked.
const SEALED: &str = "HygieneSealedMarker7f3a";
const SEALED_MOVED: &str = "HygieneMovedMarker2c9d";
const AWS_JSON: &str = "HygieneAwsJsonMarker81be";
const AWS_RAW: &str = "HygieneAwsRaw!Marker44d0";
const GIT: &str = "HygieneGitMarker5e17";
const CLI: &str = "HygieneCli!Marker9a02";

const ALL: [&str; 6] = [SEALED, SEALED_MOVED, AWS_JSON, AWS_RAW, GIT, CLI];

/// Every finding of `markers` (plain, or base64 at any of the three alignments) in `text`.
fn findings(place: &str, text: &str, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for marker in markers {
        let mut forms = vec![marker.to_string()];
        for pad in 0..3 {
            let encoded = base64::engine::general_purpose::STANDARD
                .encode(format!("{}{marker}", "x".repeat(pad)));
            // Only the characters that depend on marker bytes alone: after the group holding
            // the prefix, before the last group (which may hold padding).
            let skip = if pad == 0 { 0 } else { 4 };
            forms.push(encoded[skip..encoded.len() - 4].to_string());
        }
        for form in forms {
            if text.contains(&form) {
                found.push(format!("{place}: {marker} (as {form:?})"));
            }
        }
    }
    found
}

/// Every object of kind `K` in the cluster, as JSON text.
async fn listed<K>(client: &kube::Client) -> String
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + Serialize + std::fmt::Debug,
    K::DynamicType: Default,
{
    let items = Api::<K>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list")
        .items;
    serde_json::to_string(&items).expect("serializable")
}

async fn create<K>(client: &kube::Client, yaml: &str) -> K
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let object: K = sigil::yaml::from_str(yaml).expect("a manifest");
    Api::<K>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &object)
        .await
        .unwrap_or_else(|e| panic!("create {yaml}: {e}"))
}

/// Waits (bounded) until the object's status has a Ready condition with status False.
async fn wait_not_ready<K>(client: &kube::Client, name: &str) -> String
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), NS);
    let found = poll(
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            let object = api.get(name).await.ok()?;
            let status = serde_json::to_value(&object).ok()?.get("status")?.clone();
            let ready = status
                .get("conditions")?
                .as_array()?
                .iter()
                .find(|c| c["type"] == "Ready" && c["status"] == "False")?
                .clone();
            Some(ready.to_string())
        },
    )
    .await;
    found.unwrap_or_else(|| panic!("{name} never reported Ready=False"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_marker_plaintext_reaches_logs_events_conditions_metrics_or_errors() {
    let listen = format!("127.0.0.1:{}", free_port());
    let dev = DevProcess::start_with_env(
        &["--controller-http-listen", &listen],
        &[("RUST_LOG", "info,sigil=trace")],
    );
    let url = format!("http://{listen}");
    wait_ok(&format!("{url}/readyz"), &dev).await;
    let client = client(&dev.kubeconfig).await;
    create_namespace(&client, NS).await;
    wait_for_recipients(&client, Duration::from_secs(30)).await;

    // Sealed: one that opens, and one moved to a name it was not sealed for.
    create_sealed_secret(&client, &dev.kubeconfig, NS, "sealed-good", SEALED).await;
    let mut moved = seal(&dev.kubeconfig, NS, "elsewhere", &[("value", SEALED_MOVED)]).await;
    moved.metadata.name = Some("sealed-moved".into());
    Api::<SealedSecret>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &moved)
        .await
        .expect("create the moved SealedSecret");

    // External: a value that materializes, then a template that cannot decode the value, a
    // property missing from a JSON value, and a property asked of a value that is not JSON.
    let moto = Moto::start().await;
    let aws = moto.client().await;
    moto::create(
        &aws,
        "hygiene/db",
        &format!(r#"{{"password":"{AWS_JSON}"}}"#),
        &[],
    )
    .await;
    moto::create(&aws, "hygiene/raw", AWS_RAW, &[]).await;
    moto::create_store(&client, NS, &moto.endpoint).await;
    let external = |name: &str, remote: &str, template: &str| {
        format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata:\n  name: {name}\n  namespace: {NS}\nspec:\n  refreshInterval: 1h\n  secretStoreRef: {{name: aws, kind: SecretStore}}\n  target:\n    name: {name}\n{template}  data:\n    - secretKey: value\n      remoteRef: {remote}\n"
        )
    };
    for (name, remote, template) in [
        ("es-good", "{key: hygiene/db, property: password}", ""),
        (
            "es-template",
            "{key: hygiene/raw}",
            "    template:\n      data:\n        token: '{{ .value | b64dec }}'\n",
        ),
        ("es-property", "{key: hygiene/db, property: nope}", ""),
        ("es-not-json", "{key: hygiene/raw, property: password}", ""),
    ] {
        create::<ExternalSecret>(&client, &external(name, remote, template)).await;
    }

    // Sync: a folder with a ConfigMap and a plaintext Secret, which is refused.
    let repo_dir = tempfile::tempdir().expect("temp dir");
    let repo = GitRepo::init(&repo_dir.path().join("fleet"));
    repo.write(
        "apps/settings.yaml",
        &format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: {NS}\ndata:\n  mode: fast\n"),
    );
    repo.write(
        "apps/leak.yaml",
        &format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: leak\n  namespace: {NS}\nstringData:\n  password: {GIT}\n"),
    );
    repo.commit("a plaintext Secret");
    create::<GitSource>(
        &client,
        &format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: fleet\n  namespace: {NS}\nspec:\n  url: {}\n  ref:\n    branch: main\n  interval: 1m\n",
            repo.url()
        ),
    )
    .await;
    create::<ManifestSync>(
        &client,
        &format!("apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: apps\n  namespace: {NS}\nspec:\n  sourceRef:\n    kind: GitSource\n    name: fleet\n  path: apps\n  interval: 1m\n  prune: true\n"),
    )
    .await;

    // The good paths ran: the markers are in the Secrets' data, and only there.
    for (name, marker) in [("sealed-good", SEALED), ("es-good", AWS_JSON)] {
        let secret = wait_for_secret(&client, NS, name, Duration::from_secs(60)).await;
        let data = secret.data.unwrap_or_default();
        let values: Vec<&[u8]> = data.values().map(|v| v.0.as_slice()).collect();
        assert!(
            values.contains(&marker.as_bytes()),
            "Secret {name} holds its marker"
        );
    }
    let mut conditions = Vec::new();
    conditions.push(wait_not_ready::<SealedSecret>(&client, "sealed-moved").await);
    for name in ["es-template", "es-property", "es-not-json"] {
        conditions.push(wait_not_ready::<ExternalSecret>(&client, name).await);
    }
    conditions.push(wait_not_ready::<ManifestSync>(&client, "apps").await);
    assert!(
        Api::<Secret>::namespaced(client.clone(), NS)
            .get_opt("leak")
            .await
            .expect("read")
            .is_none(),
        "the plaintext Secret from Git was not applied"
    );

    // The CLI: sealing a manifest whose value is not base64, and the status overview.
    let bad_manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cli\n  namespace: {NS}\ndata:\n  password: {CLI}\n"
    );
    let sigil = |args: &[&str], stdin: &[u8]| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"));
        command
            .args(args)
            .arg("--kubeconfig")
            .arg(&dev.kubeconfig)
            .env("RUST_LOG", "trace");
        run(&mut command, stdin)
    };
    let refused = sigil(&["seal"], bad_manifest.as_bytes());
    assert!(
        !refused.status.success(),
        "a value that is not base64 is refused"
    );
    let overview = sigil(&["get", "-A", "-o", "yaml"], b"");
    assert!(overview.status.success(), "sigil get -A");
    let mut cli_text = String::new();
    for output in [&refused, &overview] {
        cli_text.push_str(&String::from_utf8_lossy(&output.stdout));
        cli_text.push_str(&String::from_utf8_lossy(&output.stderr));
    }

    // Everything a user or a log collector sees.
    let mut places: Vec<(&str, String)> = vec![
        ("conditions waited for", conditions.join("\n")),
        ("sigil dev log", dev.log()),
        ("sigil dev output", dev.output()),
        ("CLI output and errors", cli_text),
        ("metrics", get_metrics(&url).await.expect("GET /metrics").1),
    ];
    places.push((
        "events.k8s.io Events",
        listed::<k8s_openapi::api::events::v1::Event>(&client).await,
    ));
    places.push((
        "core Events",
        listed::<k8s_openapi::api::core::v1::Event>(&client).await,
    ));
    places.push(("SealedSecrets", listed::<SealedSecret>(&client).await));
    places.push(("ExternalSecrets", listed::<ExternalSecret>(&client).await));
    places.push(("SecretStores", listed::<SecretStore>(&client).await));
    places.push(("GitSources", listed::<GitSource>(&client).await));
    places.push(("Syncs", listed::<ManifestSync>(&client).await));
    assert!(
        places[1].1.contains("generated a new active sealing key"),
        "the controller's log was captured:\n{}",
        places[1].1
    );
    assert!(
        places
            .iter()
            .any(|(place, text)| place.contains("Events") && text.contains(NS)),
        "Events of the failing objects were recorded"
    );
    let leaks: Vec<String> = places
        .iter()
        .flat_map(|(place, text)| findings(place, text, &ALL))
        .collect();
    assert!(
        leaks.is_empty(),
        "plaintext markers leaked:\n{}",
        leaks.join("\n")
    );
}
