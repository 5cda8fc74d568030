//! Objects the HA, sharding and metrics tests give the controllers to reconcile, made the way a
//! user makes them (`sigil seal` against the cluster), and waits for their results.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube_devserver::testing::wait_for;
use sigil::api::sealed_secret::SealedSecret;

/// Creates namespace `name`.
pub async fn create_namespace(client: &kube::Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &Namespace {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..ObjectMeta::default()
                },
                ..Namespace::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
}

/// Waits (bounded) until the controller published its recipients in `sigil-system`.
pub async fn wait_for_recipients(client: &kube::Client, limit: Duration) -> String {
    let config_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "sigil-system");
    wait_for(
        "the published recipients",
        limit,
        Duration::from_millis(100),
        || async {
            config_maps
                .get_opt("sigil-recipients")
                .await
                .expect("read sigil-recipients")
                .and_then(|cm| cm.data)
                .and_then(|data| data.get("recipients").cloned())
                .filter(|text| text.contains("age1"))
        },
    )
    .await
}

/// Seals a one-key Secret `namespace/name` with `sigil seal` (recipients fetched from the
/// cluster of `kubeconfig`) and creates the SealedSecret.
pub async fn create_sealed_secret(
    client: &kube::Client,
    kubeconfig: &Path,
    namespace: &str,
    name: &str,
    value: &str,
) -> SealedSecret {
    let sealed = seal(kubeconfig, namespace, name, &[("value", value)]).await;
    let api: Api<SealedSecret> = Api::namespaced(client.clone(), namespace);
    api.create(&PostParams::default(), &sealed)
        .await
        .unwrap_or_else(|e| panic!("create SealedSecret {namespace}/{name}: {e}"))
}

/// Seals the Secret `namespace/name` with `data` and creates or replaces the SealedSecret (by
/// server-side apply).
pub async fn apply_sealed_secret(
    client: &kube::Client,
    kubeconfig: &Path,
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
) -> SealedSecret {
    let sealed = seal(kubeconfig, namespace, name, data).await;
    let api: Api<SealedSecret> = Api::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(&sealed),
    )
    .await
    .unwrap_or_else(|e| panic!("apply SealedSecret {namespace}/{name}: {e}"))
}

/// `sigil seal` of the Secret `namespace/name` with `data`, to the recipients of the cluster of
/// `kubeconfig`.
pub async fn seal(
    kubeconfig: &Path,
    namespace: &str,
    name: &str,
    data: &[(&str, &str)],
) -> SealedSecret {
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>(),
    });
    let mut seal = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["seal", "-o", "json", "--kubeconfig"])
        .arg(kubeconfig)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run sigil seal");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = seal.stdin.take().expect("stdin");
        stdin
            .write_all(secret.to_string().as_bytes())
            .await
            .expect("write the Secret");
    }
    let out = seal.wait_with_output().await.expect("sigil seal output");
    assert!(
        out.status.success(),
        "sigil seal: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("a SealedSecret")
}

/// The Secret `namespace/name` if it exists.
pub async fn secret(client: &kube::Client, namespace: &str, name: &str) -> Option<Secret> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    api.get_opt(name).await.expect("read a Secret")
}

/// Waits (bounded) until the Secret `namespace/name` exists; returns when it appeared.
pub async fn wait_for_secret(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    limit: Duration,
) -> Secret {
    let what = format!("Secret {namespace}/{name} written");
    wait_for(&what, limit, Duration::from_millis(50), || {
        secret(client, namespace, name)
    })
    .await
}
