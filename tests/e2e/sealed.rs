//! Sealed secrets end to end in the embedded API server: the keyring, the
//! SealedSecret controller and the CLI against a live controller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sigil::api::sealed_secret::SealedSecret;
use sigil::crypto::recipients;

use crate::support::dev::eventually;
use crate::support::sealed::{Bed, CONTROLLER_NAMESPACE};
use crate::support::tools::tool;
use kube_devserver::testing::poll_blocking;

const PASSWORD: &str = "e2e-pässwörd-7f3a9c";
fn binary() -> Vec<u8> {
    let mut value = b"e2e-binary\x00\xff\x01\n".to_vec();
    value.extend((0..=255u8).rev());
    value
}

fn secret_yaml(namespace: &str, name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: db
  annotations:
    team: payments
type: kubernetes.io/basic-auth
data:
  blob: {}
stringData:
  password: {}
  username: admin
"#,
        BASE64.encode(binary()),
        serde_json::to_string(PASSWORD).expect("JSON string")
    )
}

fn plaintexts() -> Vec<Vec<u8>> {
    vec![PASSWORD.as_bytes().to_vec(), binary()]
}

/// Seals with the recipients fetched from the cluster (the CLI reads the ConfigMap).
fn seal(bed: &Bed, namespace: &str, name: &str) -> SealedSecret {
    let out = bed.sigil_ok(
        &["seal", "-o", "json"],
        secret_yaml(namespace, name).as_bytes(),
    );
    serde_json::from_slice(&out).expect("a SealedSecret")
}

async fn create(bed: &Bed, sealed: &SealedSecret) -> SealedSecret {
    let api: Api<SealedSecret> = Api::namespaced(
        bed.client.clone(),
        sealed.metadata.namespace.as_deref().expect("namespace"),
    );
    api.create(&PostParams::default(), sealed)
        .await
        .expect("create SealedSecret")
}

async fn ready(bed: &Bed, namespace: &str, name: &str) -> (String, String, Option<String>) {
    let api: Api<SealedSecret> = Api::namespaced(bed.client.clone(), namespace);
    let status = api
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|s| s.status);
    let Some(status) = status else {
        return (String::new(), String::new(), None);
    };
    let ready = sigil::api::conditions::find(&status.conditions, "Ready");
    (
        ready.map(|c| c.status.clone()).unwrap_or_default(),
        ready.map(|c| c.reason.clone()).unwrap_or_default(),
        status.key_fingerprint,
    )
}

async fn wait_ready(
    bed: &Bed,
    namespace: &str,
    name: &str,
    status: &str,
    reason: &str,
) -> Option<String> {
    let what = format!("{namespace}/{name} Ready={status} reason={reason}");
    eventually(&what, || async {
        let (s, r, key) = ready(bed, namespace, name).await;
        (s == status && r == reason).then_some(key)
    })
    .await
}

async fn secret(bed: &Bed, namespace: &str, name: &str) -> Option<Secret> {
    let api: Api<Secret> = Api::namespaced(bed.client.clone(), namespace);
    api.get_opt(name).await.expect("get Secret")
}

fn data(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect()
}

async fn published_recipients(bed: &Bed) -> String {
    let api: Api<ConfigMap> = Api::namespaced(bed.client.clone(), CONTROLLER_NAMESPACE);
    api.get("sigil-recipients")
        .await
        .expect("recipients ConfigMap")
        .data
        .and_then(|mut d| d.remove("recipients"))
        .unwrap_or_default()
}

fn fingerprint_of(line: &str) -> String {
    recipients::fingerprint(&recipients::parse(line).expect("recipient"))
}

async fn http_get(bed: &Bed, path: &str) -> (u16, String, String) {
    let response = crate::support::http::get(format!("{}{path}", bed.http_url()))
        .await
        .expect("HTTP request");
    let code = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (code, content_type, response.text().await.expect("body"))
}

#[test]
fn sealed_secret_becomes_a_secret_with_the_right_bytes() {
    let bed = Bed::start(|_| {});
    // fetch-key prints what the controller published, in the ConfigMap and over HTTP.
    let fetched = String::from_utf8(bed.sigil_ok(&["fetch-key"], b"")).expect("UTF-8");
    let (published, http) = bed.block_on(async {
        (
            published_recipients(&bed).await,
            http_get(&bed, "/v1/recipients").await,
        )
    });
    assert_eq!(fetched, published);
    assert_eq!(fetched.lines().count(), 1, "{fetched}");
    assert_eq!(http.0, 200);
    assert!(http.1.starts_with("text/plain"), "{}", http.1);
    assert_eq!(http.2, published);
    let active = fingerprint_of(fetched.trim());

    let sealed = seal(&bed, "prod", "db");
    bed.block_on(async {
        let created = create(&bed, &sealed).await;
        let key = wait_ready(&bed, "prod", "db", "True", "Unsealed").await;
        assert_eq!(
            key.as_deref(),
            Some(active.as_str()),
            "status reports the key"
        );
        let live = secret(&bed, "prod", "db").await.expect("Secret written");
        let values = data(&live);
        assert_eq!(values["password"], PASSWORD.as_bytes());
        assert_eq!(values["blob"], binary());
        assert_eq!(values["username"], b"admin");
        assert_eq!(live.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(live.metadata.labels.as_ref().expect("labels")["app"], "db");
        assert_eq!(
            live.metadata.annotations.as_ref().expect("annotations")["team"],
            "payments"
        );
        let owner = &live.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!(owner.kind, "SealedSecret");
        assert_eq!(Some(owner.uid.as_str()), created.metadata.uid.as_deref());
        assert_eq!(owner.controller, Some(true));
        let managers: Vec<String> = live
            .metadata
            .managed_fields
            .iter()
            .flatten()
            .filter_map(|m| m.manager.clone())
            .collect();
        assert!(managers.contains(&"sigil".to_string()), "{managers:?}");

        let api: Api<SealedSecret> = Api::namespaced(bed.client.clone(), "prod");
        let object = api.get("db").await.expect("SealedSecret");
        let status = object.status.expect("status");
        assert_eq!(status.observed_generation, object.metadata.generation);

        let (_, _, metrics) = http_get(&bed, "/metrics").await;
        assert!(
            metrics.contains(&format!("sigil_sealedsecrets{{key=\"{active}\"}} 1")),
            "{metrics}"
        );
        assert!(metrics.contains("sigil_sealing_keys 1"), "{metrics}");

        // The Secret goes with its SealedSecret (ownerReference, garbage collection).
        api.delete("db", &DeleteParams::default())
            .await
            .expect("delete SealedSecret");
        eventually("the Secret garbage-collected", || async {
            secret(&bed, "prod", "db").await.is_none().then_some(())
        })
        .await;
    });
    let secrets = plaintexts();
    bed.assert_no_plaintext(&secrets.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn drift_is_reverted_deleted_secrets_come_back_and_nothing_storms() {
    let bed = Bed::start(|_| {});
    let sealed = seal(&bed, "prod", "db");
    bed.block_on(async {
        create(&bed, &sealed).await;
        wait_ready(&bed, "prod", "db", "True", "Unsealed").await;
        let api: Api<Secret> = Api::namespaced(bed.client.clone(), "prod");

        // A hand edit of a value sigil owns is reverted.
        let edit = serde_json::json!({"data": {"password": BASE64.encode("hacked")}});
        api.patch("db", &PatchParams::default(), &Patch::Merge(&edit))
            .await
            .expect("hand edit");
        eventually("the edit reverted", || async {
            let live = secret(&bed, "prod", "db").await?;
            (data(&live)["password"] == PASSWORD.as_bytes()).then_some(())
        })
        .await;

        // A deleted Secret is re-created.
        api.delete("db", &DeleteParams::default())
            .await
            .expect("delete Secret");
        eventually("the Secret re-created", || async {
            let live = secret(&bed, "prod", "db").await?;
            (data(&live)["blob"] == binary()).then_some(())
        })
        .await;

        // Steady state: no more writes to the Secret or the SealedSecret's status.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let secret_version = secret(&bed, "prod", "db")
            .await
            .expect("Secret")
            .metadata
            .resource_version;
        let sealed_api: Api<SealedSecret> = Api::namespaced(bed.client.clone(), "prod");
        let sealed_version = sealed_api
            .get("db")
            .await
            .expect("SealedSecret")
            .metadata
            .resource_version;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            secret(&bed, "prod", "db")
                .await
                .expect("Secret")
                .metadata
                .resource_version,
            secret_version,
            "the Secret was written again without a change"
        );
        assert_eq!(
            sealed_api
                .get("db")
                .await
                .expect("SealedSecret")
                .metadata
                .resource_version,
            sealed_version,
            "the status was written again without a change"
        );

        // One Event per state change: drift and re-creation changed no state.
        let events: Api<Event> = Api::namespaced(bed.client.clone(), "prod");
        let ours: Vec<Event> = events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("SealedSecret"))
            .collect();
        let unsealed = ours
            .iter()
            .filter(|e| e.reason.as_deref() == Some("Unsealed"))
            .map(|e| e.count.unwrap_or(1))
            .sum::<i32>();
        assert_eq!(unsealed, 1, "{ours:?}");
    });
    let secrets = plaintexts();
    bed.assert_no_plaintext(&secrets.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

/// Changes one base64 character in the middle of the last payload line.
fn tamper(armored: &str) -> String {
    let lines: Vec<&str> = armored.lines().collect();
    let last_body = lines[lines.len() - 2];
    let flipped: String = last_body
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == last_body.len() / 2 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    armored.replace(last_body, &flipped)
}

#[test]
fn tampered_and_copied_objects_are_refused_and_write_no_secret() {
    let bed = Bed::start(|_| {});
    let good = seal(&bed, "prod", "db");
    bed.block_on(async {
        // Tampered value: DecryptFailed, no Secret.
        let mut tampered = seal(&bed, "prod", "tampered");
        let value = tampered.spec.encrypted_data["password"].clone();
        tampered
            .spec
            .encrypted_data
            .insert("password".into(), tamper(&value));
        create(&bed, &tampered).await;
        wait_ready(&bed, "prod", "tampered", "False", "DecryptFailed").await;

        // Copied to another namespace, even claiming cluster scope: ScopeMismatch, no Secret.
        let mut copied = good.clone();
        copied.metadata.namespace = Some("dev".into());
        copied.spec.scope = sigil::api::sealed_secret::Scope::Cluster;
        create(&bed, &copied).await;
        wait_ready(&bed, "dev", "db", "False", "ScopeMismatch").await;

        // Renamed in the same namespace: also out of a strict scope.
        let mut renamed = good.clone();
        renamed.metadata.name = Some("renamed".into());
        create(&bed, &renamed).await;
        wait_ready(&bed, "prod", "renamed", "False", "ScopeMismatch").await;

        assert!(secret(&bed, "prod", "tampered").await.is_none());
        assert!(secret(&bed, "dev", "db").await.is_none());
        assert!(secret(&bed, "prod", "renamed").await.is_none());

        let api: Api<SealedSecret> = Api::namespaced(bed.client.clone(), "dev");
        let status = api.get("db").await.expect("copied").status.expect("status");
        let message = &sigil::api::conditions::find(&status.conditions, "Ready")
            .expect("Ready")
            .message;
        assert!(
            message.contains("sealed for strict scope prod/db, but used in dev/db"),
            "{message}"
        );

        // A failure leaves the last good Secret as it was.
        create(&bed, &good).await;
        wait_ready(&bed, "prod", "db", "True", "Unsealed").await;
        let before = secret(&bed, "prod", "db").await.expect("Secret");
        let prod: Api<SealedSecret> = Api::namespaced(bed.client.clone(), "prod");
        let broken = serde_json::json!({"spec": {"encryptedData": {"password": tamper(&good.spec.encrypted_data["password"])}}});
        prod.patch("db", &PatchParams::default(), &Patch::Merge(&broken))
            .await
            .expect("break the SealedSecret");
        wait_ready(&bed, "prod", "db", "False", "DecryptFailed").await;
        let after = secret(&bed, "prod", "db").await.expect("Secret kept");
        assert_eq!(data(&after), data(&before));
        assert_eq!(after.metadata.resource_version, before.metadata.resource_version);
    });
    let secrets = plaintexts();
    bed.assert_no_plaintext(&secrets.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

async fn foreign_secret(bed: &Bed, name: &str) {
    let api: Api<Secret> = Api::namespaced(bed.client.clone(), "prod");
    let foreign: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "prod"},
        "stringData": {"password": "someone-elses"},
    }))
    .expect("Secret");
    api.create(&PostParams::default(), &foreign)
        .await
        .expect("foreign Secret");
}

#[test]
fn a_secret_sigil_does_not_own_is_never_overwritten() {
    let bed = Bed::start(|_| {});
    let sealed = seal(&bed, "prod", "db");
    let mut other = seal(&bed, "prod", "other");
    other.spec.template = None;
    bed.block_on(async {
        let api: Api<Secret> = Api::namespaced(bed.client.clone(), "prod");
        foreign_secret(&bed, "db").await;
        foreign_secret(&bed, "other").await;
        create(&bed, &sealed).await;
        create(&bed, &other).await;
        wait_ready(&bed, "prod", "db", "False", "SecretExists").await;
        wait_ready(&bed, "prod", "other", "False", "SecretExists").await;
        let live = secret(&bed, "prod", "db").await.expect("Secret");
        assert_eq!(data(&live)["password"], b"someone-elses");

        // Let the retry backoff grow past 6s, so that only the Secret watch can
        // explain a prompt reaction below.
        tokio::time::sleep(Duration::from_secs(8)).await;
        let live = secret(&bed, "prod", "db").await.expect("Secret");
        assert_eq!(data(&live)["password"], b"someone-elses", "still untouched");

        // Annotated sigil.dev/managed=true: taken over (its type changes, so it is replaced).
        let annotate =
            serde_json::json!({"metadata": {"annotations": {"sigil.dev/managed": "true"}}});
        let started = Instant::now();
        api.patch("db", &PatchParams::default(), &Patch::Merge(&annotate))
            .await
            .expect("annotate");
        wait_ready(&bed, "prod", "db", "True", "Unsealed").await;
        // Deleted by its owner: the SealedSecret writes its own.
        api.delete("other", &DeleteParams::default())
            .await
            .expect("delete the foreign Secret");
        wait_ready(&bed, "prod", "other", "True", "Unsealed").await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(4),
            "took {took:?}: the Secret watch did not trigger"
        );

        let live = secret(&bed, "prod", "db").await.expect("Secret");
        assert_eq!(data(&live)["password"], PASSWORD.as_bytes());
        assert_eq!(live.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert!(live.metadata.owner_references.is_some());
        let live = secret(&bed, "prod", "other").await.expect("Secret");
        assert_eq!(data(&live)["password"], PASSWORD.as_bytes());
    });
}

#[test]
fn key_renewal_activates_a_new_key_and_old_values_still_open() {
    let bed = Bed::start(|o| o.key_renew_period = Duration::from_secs(3));
    let first = String::from_utf8(bed.sigil_ok(&["fetch-key"], b"")).expect("UTF-8");
    let old_key = fingerprint_of(first.trim());
    let old = seal(&bed, "prod", "old");
    bed.block_on(async {
        create(&bed, &old).await;
        let key = wait_ready(&bed, "prod", "old", "True", "Unsealed").await;
        assert_eq!(key.as_deref(), Some(old_key.as_str()));
    });
    // Wait (bounded) for the renewal to publish a new active key.
    let renewed = next_recipients(&bed, &first);
    let new_key = fingerprint_of(renewed.trim());
    assert_ne!(new_key, old_key);
    let new = seal(&bed, "prod", "new");
    bed.block_on(async {
        let keys: Api<Secret> = Api::namespaced(bed.client.clone(), CONTROLLER_NAMESPACE);
        let listed = keys
            .list(&ListParams::default().labels("sigil.dev/sealing-key"))
            .await
            .expect("key Secrets");
        assert!(listed.items.len() >= 2, "old keys are kept");
        create(&bed, &new).await;
        let key = wait_ready(&bed, "prod", "new", "True", "Unsealed").await;
        assert_eq!(key.as_deref(), Some(new_key.as_str()));
        // The old SealedSecret still opens, and still reports the old key.
        let (status, _, key) = ready(&bed, "prod", "old").await;
        assert_eq!(status, "True");
        assert_eq!(key.as_deref(), Some(old_key.as_str()));
        let (_, _, metrics) = http_get(&bed, "/metrics").await;
        assert!(
            metrics.contains(&format!("sigil_sealedsecrets{{key=\"{old_key}\"}} 1")),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!("sigil_sealedsecrets{{key=\"{new_key}\"}} 1")),
            "{metrics}"
        );

        // Removing the old key takes effect without a restart: the old object no longer opens.
        keys.delete(
            &format!("sigil-sealing-key-{old_key}"),
            &DeleteParams::default(),
        )
        .await
        .expect("delete the old key");
        wait_ready(&bed, "prod", "old", "False", "DecryptFailed").await;
        let (status, _, _) = ready(&bed, "prod", "new").await;
        assert_eq!(status, "True");
    });
}

#[test]
fn recovery_recipients_are_published_and_open_values_offline() {
    let dir = tempfile::tempdir().expect("temp dir");
    let identity = dir.path().join("recovery.key");
    let identity_path = identity.to_str().expect("UTF-8").to_string();
    let keygen = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["keygen", "-o", &identity_path])
        .output()
        .expect("keygen");
    assert!(keygen.status.success());
    let recovery = std::fs::read_to_string(&identity)
        .expect("identity")
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .expect("public key");
    let bed = Bed::start(|o| o.recovery_recipients = vec![recovery.clone()]);
    let fetched = String::from_utf8(bed.sigil_ok(&["fetch-key"], b"")).expect("UTF-8");
    let lines: Vec<&str> = fetched.lines().collect();
    assert_eq!(lines.len(), 2, "{fetched}");
    assert_eq!(lines[1], recovery);
    let sealed = bed.sigil_ok(&["seal"], secret_yaml("prod", "db").as_bytes());
    let file = dir.path().join("sealed.yaml");
    std::fs::write(&file, &sealed).expect("write");
    let secret = bed.sigil_ok(
        &[
            "unseal",
            "--identity",
            &identity_path,
            "-f",
            file.to_str().expect("UTF-8"),
        ],
        b"",
    );
    let doc =
        &sigil::yaml::documents(std::str::from_utf8(&secret).expect("UTF-8")).expect("YAML")[0];
    assert_eq!(
        BASE64
            .decode(doc["data"]["password"].as_str().expect("password"))
            .expect("base64"),
        PASSWORD.as_bytes()
    );
    // The reference age CLI opens it with the recovery key too.
    let value = serde_json::to_value(
        sigil::yaml::documents(std::str::from_utf8(&sealed).expect("UTF-8")).expect("YAML"),
    )
    .expect("JSON");
    let armored = value[0]["spec"]["encryptedData"]["blob"]
        .as_str()
        .expect("armored");
    let output = crate::support::sealed::run(
        std::process::Command::new(tool("age")).args(["-d", "-i", &identity_path]),
        armored.as_bytes(),
    );
    assert!(output.status.success());
    let mut expected = b"sigil.dev/envelope/v1 strict prod db\n".to_vec();
    expected.extend(binary());
    assert_eq!(output.stdout, expected);
}

#[test]
fn validate_and_reencrypt_go_through_the_controller() {
    let bed = Bed::start(|o| o.key_renew_period = Duration::from_secs(3));
    let first = String::from_utf8(bed.sigil_ok(&["fetch-key"], b"")).expect("UTF-8");
    let old_key = fingerprint_of(first.trim());
    let sealed = bed.sigil_ok(
        &["seal", "--scope", "namespace"],
        secret_yaml("prod", "db").as_bytes(),
    );
    let file = bed.dir.path().join("sealed.yaml");
    std::fs::write(&file, &sealed).expect("write");
    let file = file.to_str().expect("UTF-8").to_string();
    let url = bed.http_url();
    let out = bed.sigil_ok(&["validate", "--controller-url", &url, &file], b"");
    assert!(
        String::from_utf8_lossy(&out).contains(&format!(
            "SealedSecret prod/db: ok (3 values, key {old_key})"
        )),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Out of scope: validate says so, without values, and fails.
    let copied = String::from_utf8(sealed.clone())
        .expect("UTF-8")
        .replace("namespace: prod", "namespace: dev");
    let copied_file = bed.dir.path().join("copied.yaml");
    std::fs::write(&copied_file, copied).expect("write");
    let output = bed.sigil(
        &[
            "validate",
            "--controller-url",
            &url,
            copied_file.to_str().expect("UTF-8"),
        ],
        b"",
    );
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("ScopeMismatch"), "{err}");

    // After a renewal, reencrypt moves the values to the new key and keeps the scope.
    let new_key = fingerprint_of(next_recipients(&bed, &first).trim());
    bed.sigil_ok(&["reencrypt", "--controller-url", &url, &file], b"");
    let out = bed.sigil_ok(&["validate", "--controller-url", &url, &file], b"");
    assert!(
        String::from_utf8_lossy(&out).contains(&format!("key {new_key})")),
        "{}",
        String::from_utf8_lossy(&out)
    );
    let rewritten: SealedSecret = serde_json::from_value(
        sigil::yaml::documents(&std::fs::read_to_string(&file).expect("read")).expect("YAML")[0]
            .clone(),
    )
    .expect("SealedSecret");
    assert_eq!(
        rewritten.spec.scope,
        sigil::api::sealed_secret::Scope::Namespace
    );
    let secrets = plaintexts();
    bed.assert_no_plaintext(&secrets.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn acceptance_seal_piped_into_kubectl_apply_gives_the_secret_within_seconds() {
    let bed = Bed::start(|_| {});
    let kubeconfig = bed.kubeconfig.to_str().expect("UTF-8").to_string();
    let home = bed.dir.path().to_str().expect("UTF-8").to_string();
    let script = format!(
        "set -euo pipefail; {sigil} seal --kubeconfig {kubeconfig} < {secret} | {kubectl} --kubeconfig {kubeconfig} apply -f -",
        sigil = env!("CARGO_BIN_EXE_sigil"),
        secret = {
            let path = bed.dir.path().join("secret.yaml");
            std::fs::write(&path, secret_yaml("prod", "db")).expect("write");
            path.to_str().expect("UTF-8").to_string()
        },
        kubectl = tool("kubectl").display(),
    );
    let started = Instant::now();
    let output = crate::support::sealed::run(
        std::process::Command::new("bash")
            .args(["-c", &script])
            .env("HOME", &home)
            .env("RUST_BACKTRACE", "0")
            .env("SIGIL_CONTROLLER_NAMESPACE", CONTROLLER_NAMESPACE),
        b"",
    );
    assert!(
        output.status.success(),
        "seal | kubectl apply failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("sealedsecret.sigil.dev/db created"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    bed.block_on(async {
        eventually("the Secret from the pipe", || async {
            let live = secret(&bed, "prod", "db").await?;
            (data(&live)["password"] == PASSWORD.as_bytes()).then_some(())
        })
        .await;
    });
    let took = started.elapsed();
    eprintln!("seal | kubectl apply → Secret in {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains(PASSWORD));
    let secrets = plaintexts();
    bed.assert_no_plaintext(&secrets.iter().map(Vec::as_slice).collect::<Vec<_>>());
}

#[test]
fn a_new_sealed_value_restarts_opted_in_workloads_but_the_first_sync_does_not() {
    use k8s_openapi::api::apps::v1::Deployment;
    let bed = Bed::start(|o| o.reload_debounce = Duration::from_millis(500));
    let sealed_with = |value: &str| -> SealedSecret {
        let secret = format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: api, namespace: prod}}\nstringData: {{token: {value}}}\n"
        );
        serde_json::from_slice(&bed.sigil_ok(&["seal", "-o", "json"], secret.as_bytes()))
            .expect("a SealedSecret")
    };
    let deployment: Deployment = serde_json::from_value(serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "prod", "annotations": {"sigil.dev/reload": "true"}},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "example/web:1",
                    "envFrom": [{"secretRef": {"name": "api"}}]}]}
            }
        }
    }))
    .expect("a Deployment");
    let restarted = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get("sigil.dev/secrets-hmac").cloned())
    };
    bed.block_on(async {
        let deployments: Api<Deployment> = Api::namespaced(bed.client.clone(), "prod");
        deployments
            .create(&PostParams::default(), &deployment)
            .await
            .expect("create Deployment");
        create(&bed, &sealed_with("first-token-1f2e")).await;
        wait_ready(&bed, "prod", "api", "True", "Unsealed").await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let web = deployments.get("web").await.expect("web");
        assert_eq!(restarted(&web), None, "the first sync restarts nothing");

        let mut resealed = sealed_with("second-token-9a8b");
        let api: Api<SealedSecret> = Api::namespaced(bed.client.clone(), "prod");
        resealed.metadata.resource_version = api
            .get("api")
            .await
            .expect("SealedSecret")
            .metadata
            .resource_version;
        api.replace("api", &PostParams::default(), &resealed)
            .await
            .expect("replace SealedSecret");
        eventually("web restarted after the new value", || async {
            let web = deployments.get("web").await.ok()?;
            restarted(&web)
        })
        .await;
        let live = secret(&bed, "prod", "api").await.expect("Secret");
        assert_eq!(data(&live)["token"], b"second-token-9a8b");
    });
    bed.assert_no_plaintext(&[b"first-token-1f2e", b"second-token-9a8b"]);
}

/// Waits (bounded) until `sigil fetch-key` prints other recipients than `first` (a key renewal).
fn next_recipients(bed: &Bed, first: &str) -> String {
    poll_blocking(Duration::from_secs(20), Duration::from_millis(200), || {
        let now = String::from_utf8(bed.sigil_ok(&["fetch-key"], b"")).expect("UTF-8");
        (now != first).then_some(now)
    })
    .unwrap_or_else(|| panic!("no key renewal within 20s"))
}
