//! SOPS files against the real `sops`: what `sops encrypt` writes (every value type, the
//! encryption rules, MAC-only-encrypted, JSON, several documents) sigil opens to exactly what
//! `sops decrypt` prints; a flipped ciphertext byte, a changed MAC, a changed unencrypted value,
//! another key and unsupported recipients are refused, and no error shows a decrypted value.
//! Then a Sync: examples/sops materialized, refused without `spec.decryption`, tampered
//! revisions refused with the last good Secret kept, and a SOPS Secret through a Kustomize
//! overlay that renames it.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sigil::api::ManifestSync;
use sigil::manifests::parse::parse_files;
use sigil::manifests::pipeline::Rendered;
use sigil::manifests::sops::{Keys, open_manifests};
use sigil::manifests::source::SourceFile;

use crate::support::git_repo::GitRepo;
use crate::support::gitops::{GitOps, fleet_source_yaml, ready};
use crate::support::tools::tool;

const NS: &str = "gitops";
const WAIT: Duration = Duration::from_secs(60);
/// The recipient of examples/sops/demo.agekey.
const DEMO_RECIPIENT: &str = "age1qkr7c4dwmk5suwqws8jn0ccgtcrs5w2h827vl8xh5z502rmyn9yq6wuaxq";
const SECRET_VALUES: [&str; 3] = ["hunter2", "s3cr3t-token", "correct-horse-battery-staple"];

/// An age identity made by the real `age-keygen`: (identity file text, recipient).
fn keygen(dir: &Path) -> (String, String) {
    let path = dir.join("key.txt");
    let status = Command::new(tool("age-keygen"))
        .arg("-o")
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("age-keygen runs");
    assert!(status.success());
    let text = std::fs::read_to_string(&path).expect("key file");
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key line")
        .to_string();
    (text, recipient)
}

/// Runs the real `sops` on `input` (a file named `name` in `dir`).
fn sops(dir: &Path, key_file: Option<&Path>, args: &[&str], name: &str, input: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, input).expect("write input");
    let mut command = Command::new(tool("sops"));
    command
        .current_dir(dir)
        .args(args)
        .arg(&path)
        .env_remove("SOPS_AGE_KEY");
    match key_file {
        Some(key) => command.env("SOPS_AGE_KEY_FILE", key),
        None => command.env_remove("SOPS_AGE_KEY_FILE"),
    };
    let output = command.output().expect("sops runs");
    assert!(
        output.status.success(),
        "sops {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn keys(identity_file: &str) -> Keys {
    Keys::new(sigil::crypto::identity::parse_file(identity_file).expect("identity"))
}

/// The documents sigil opens from `file` (named `name`), or the error text.
fn sigil_open(name: &str, file: &str, keys: &Keys) -> Result<Vec<Value>, String> {
    let rendered = Rendered::plain(vec![SourceFile::new(name, file)]);
    let (manifests, errors) = parse_files(&rendered.files);
    assert!(errors.is_empty(), "{errors:?}");
    let (opened, failures) = open_manifests(manifests, &rendered.sops_sources, Some(keys));
    if let Some(failure) = failures.first() {
        return Err(format!("{}: {}", failure.location, failure.error));
    }
    Ok(opened.into_iter().map(|m| m.object).collect())
}

fn documents(text: &str, json: bool) -> Vec<Value> {
    if json {
        return vec![serde_json::from_str(text).expect("JSON")];
    }
    sigil::yaml::documents(text).expect("YAML")
}

const PLAIN: &str = "\
apiVersion: v1
kind: Secret
metadata:
  name: app
  labels:
    tier: backend
stringData:
  password: hunter2
  token: s3cr3t-token
  empty: \"\"
  count_unencrypted: visible
settings:
  port: 5432
  ratio: 0.25
  big: 12345678901
  enabled: true
  disabled: false
  nothing: null
  hosts:
    - a.example.com
    - b.example.com
  nested:
    deep:
      phrase: correct-horse-battery-staple
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: second
data:
  note: in the same file, under the same MAC
";

#[test]
fn sops_files_open_to_what_sops_decrypt_prints_and_tampering_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (identity, recipient) = keygen(tmp.path());
    let key_file = tmp.path().join("key.txt");
    let keys = keys(&identity);
    let modes: [(&str, &[&str], bool); 5] = [
        ("default", &[], false),
        (
            "values",
            &["--encrypted-regex", "^(data|stringData)$"],
            false,
        ),
        // Set in a creation rule: `sops encrypt` has no flag for it.
        ("mac-only", &["--config", "mac-only.sops.yaml"], false),
        ("suffix", &["--unencrypted-suffix", "_unencrypted"], false),
        ("json", &[], true),
    ];
    std::fs::write(
        tmp.path().join("mac-only.sops.yaml"),
        format!(
            "creation_rules:\n  - age: {recipient}\n    encrypted_regex: '^(data|stringData)$'\n    mac_only_encrypted: true\n"
        ),
    )
    .expect("sops config");
    for (mode, rule, json) in modes {
        let (name, plain, types) = if json {
            let doc = &documents(PLAIN, false)[0];
            (
                "s.json",
                serde_json::to_string_pretty(doc).expect("json"),
                ["--input-type", "json", "--output-type", "json"],
            )
        } else {
            (
                "s.yaml",
                PLAIN.to_string(),
                ["--input-type", "yaml", "--output-type", "yaml"],
            )
        };
        let mut args: Vec<&str> = Vec::new();
        if mode == "mac-only" {
            args.extend(rule);
            args.push("encrypt");
        } else {
            args.extend(["encrypt", "--age", recipient.as_str()]);
            args.extend(rule);
        }
        args.extend(types);
        let encrypted = sops(tmp.path(), None, &args, name, &plain);
        assert!(!encrypted.contains("hunter2"), "{mode}: sops encrypted");
        let decrypted = sops(tmp.path(), Some(&key_file), &["decrypt"], name, &encrypted);
        let expected = documents(&decrypted, json);
        let opened = sigil_open(name, &encrypted, &keys).unwrap_or_else(|e| panic!("{mode}: {e}"));
        assert_eq!(
            opened, expected,
            "{mode}: sigil opens what sops decrypt prints"
        );

        let refuse = |what: &str, text: &str, wanted: &str| {
            let err = sigil_open(name, text, &keys).expect_err(what);
            assert!(err.contains(wanted), "{mode} {what}: {err}");
            for value in SECRET_VALUES {
                assert!(
                    !err.contains(value),
                    "{mode} {what}: no decrypted value in {err}"
                );
            }
        };
        // A flipped byte in the ciphertext of a value.
        let marker = if json {
            "\"password\": \"ENC[AES256_GCM,data:"
        } else {
            "password: ENC[AES256_GCM,data:"
        };
        let at = encrypted.find(marker).expect("password value") + marker.len();
        let mut flipped = encrypted.clone().into_bytes();
        flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
        refuse(
            "flipped byte",
            &String::from_utf8(flipped).expect("utf8"),
            "stringData.password cannot be authenticated",
        );
        // A MAC of another content: the MAC of a second encryption of the same file.
        let other = sops(
            tmp.path(),
            None,
            &args,
            name,
            &plain.replace("hunter2", "hunter3"),
        );
        let mac = |text: &str| {
            let from = text
                .find("mac\"")
                .or_else(|| text.find("mac:"))
                .expect("mac");
            let start = from + text[from..].find("ENC[AES256_GCM").expect("mac value");
            text[start..]
                .split(['"', '\n'])
                .next()
                .expect("mac end")
                .to_string()
        };
        refuse(
            "tampered MAC",
            &encrypted.replace(&mac(&encrypted), &mac(&other)),
            "SOPS MAC does not match",
        );
        // A changed value SOPS left unencrypted is caught by the MAC too (unless mac-only).
        let relabelled = encrypted.replace("backend", "frontend");
        if mode == "mac-only" {
            assert!(
                sigil_open(name, &relabelled, &keys).is_ok(),
                "mac-only covers encrypted values only"
            );
        } else if mode == "values" {
            refuse(
                "changed clear value",
                &relabelled,
                "SOPS MAC does not match",
            );
        }
    }

    let (other_identity, _) = {
        let dir = tempfile::tempdir().expect("tempdir");
        keygen(dir.path())
    };
    let encrypted = sops(
        tmp.path(),
        None,
        &[
            "encrypt",
            "--age",
            &recipient,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
        ],
        "k.yaml",
        PLAIN,
    );
    let err =
        sigil_open("k.yaml", &encrypted, &self::keys(&other_identity)).expect_err("another key");
    assert!(
        err.contains("none of the configured age identities opens"),
        "{err}"
    );
    // PGP (or KMS) recipients: "not supported", not a generic failure.
    let start = encrypted.find("    age:").expect("age stanza");
    let end = encrypted.find("    lastmodified:").expect("lastmodified");
    let pgp = format!(
        "{}    pgp:\n        - created_at: \"2026-01-01T00:00:00Z\"\n          enc: x\n          fp: 0123456789ABCDEF\n{}",
        &encrypted[..start],
        &encrypted[end..]
    );
    let err = sigil_open("k.yaml", &pgp, &keys).expect_err("pgp");
    assert!(err.contains("PGP recipients are not supported"), "{err}");
}

fn secret_values(secret: &Secret) -> Vec<(String, String)> {
    secret
        .data
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf8")))
        .collect()
}

fn reason(sync: &ManifestSync) -> (String, String) {
    ready(sync)
        .map(|(_, reason, message)| (reason, message))
        .unwrap_or_default()
}

#[tokio::test]
async fn a_sync_materializes_a_sops_secret_and_refuses_tampered_revisions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sops");
    let repo = GitRepo::init(&tmp.path().join("fleet"));
    let encrypted =
        std::fs::read_to_string(example.join("db-credentials.sops.yaml")).expect("example");
    repo.write("secrets/db-credentials.sops.yaml", &encrypted);
    repo.write(
        "secrets/config.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  mode: dev\n",
    );
    let first = repo.commit("a SOPS Secret");
    let kubectl = tool("kubectl");
    let ops = GitOps::start_with(move |options| options.render.kustomize = Some(kubectl)).await;
    ops.cluster.namespace(NS).await;
    ops.create_source(NS, &fleet_source_yaml(&repo.url(), "1s", ""))
        .await;
    ops.create_sync(
        NS,
        "apiVersion: sigil.dev/v1alpha1\nkind: Sync\nmetadata:\n  name: secrets\nspec:\n  sourceRef:\n    name: fleet\n  path: secrets\n  interval: 1h\n  prune: true\n",
    )
    .await;

    // Without spec.decryption: refused, saying how to enable it; nothing applied.
    let sync = ops
        .wait_sync(NS, "secrets", "refused without decryption", WAIT, |s| {
            reason(s).0 == "DecryptionFailed"
        })
        .await;
    let (_, message) = reason(&sync);
    assert!(
        message.contains("secrets/db-credentials.sops.yaml"),
        "{message}"
    );
    assert!(message.contains("spec.decryption"), "{message}");
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(ops.client(), NS);
    assert!(
        config_maps.get_opt("web").await.expect("get").is_none(),
        "nothing applied"
    );

    // With the Flux-style Secret of *.agekey entries: the Secret is what `sops decrypt` prints.
    let identity = std::fs::read_to_string(example.join("demo.agekey")).expect("demo key");
    let secrets: Api<Secret> = Api::namespaced(ops.client(), NS);
    let key_secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "sops-age"},
        "stringData": {"age.agekey": identity},
    }))
    .expect("secret");
    secrets
        .create(&PostParams::default(), &key_secret)
        .await
        .expect("create key Secret");
    let syncs: Api<ManifestSync> = Api::namespaced(ops.client(), NS);
    syncs
        .patch(
            "secrets",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"decryption": {"provider": "sops", "secretRef": {"name": "sops-age"}}}})),
        )
        .await
        .expect("enable decryption");
    let applied = |revision: String| {
        move |s: &ManifestSync| {
            s.status
                .as_ref()
                .and_then(|st| st.last_applied_revision.as_deref())
                == Some(revision.as_str())
                && ready(s).is_some_and(|(status, _, _)| status == "True")
        }
    };
    ops.wait_sync(
        NS,
        "secrets",
        "decrypted and applied",
        WAIT,
        applied(format!("main@sha1:{first}")),
    )
    .await;
    let key_file = tmp.path().join("demo.agekey");
    std::fs::write(&key_file, &identity).expect("key file");
    let expected = &documents(
        &sops(
            tmp.path(),
            Some(&key_file),
            &["decrypt"],
            "db.sops.yaml",
            &encrypted,
        ),
        false,
    )[0];
    let live = secrets.get("db-credentials").await.expect("materialized");
    let wanted = wanted_pairs(expected);
    assert_eq!(
        secret_values(&live),
        wanted,
        "the values sops decrypt prints"
    );
    assert_eq!(
        live.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("app"))
            .map(String::as_str),
        Some("web")
    );
    assert!(
        live.metadata
            .annotations
            .clone()
            .unwrap_or_default()
            .keys()
            .all(|k| !k.contains("sops"))
    );

    // `sigil diff` opens the local SOPS file too (with the Sync's Secret, or an identity file)
    // and shows the Secret changed without a value.
    let local = tmp.path().join("local");
    std::fs::create_dir_all(&local).expect("local");
    let changed = sops(
        tmp.path(),
        None,
        &[
            "encrypt",
            "--age",
            DEMO_RECIPIENT,
            "--encrypted-regex",
            "^(data|stringData)$",
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
        ],
        "changed.yaml",
        &sops(
            tmp.path(),
            Some(&key_file),
            &["decrypt"],
            "db.sops.yaml",
            &encrypted,
        )
        .replace("correct-horse-battery-staple", "new-diff-password-value"),
    );
    std::fs::write(local.join("db-credentials.sops.yaml"), &changed).expect("write");
    std::fs::copy(
        repo.dir.join("secrets/config.yaml"),
        local.join("config.yaml"),
    )
    .expect("copy");
    let kubeconfig = tmp.path().join("kubeconfig");
    ops.cluster
        .server
        .write_kubeconfig(&kubeconfig)
        .expect("kubeconfig");
    for extra in [
        vec![],
        vec!["-i".to_string(), key_file.display().to_string()],
    ] {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["diff", "--path"])
            .arg(&local)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["-n", NS, "--sync", "secrets"])
            .args(&extra)
            .output()
            .await
            .expect("sigil diff");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{extra:?}: {stdout}{stderr}");
        assert!(
            stdout.contains(&format!("~ Secret {NS}/db-credentials")),
            "{stdout}"
        );
        assert!(
            stdout.contains("0 to create, 1 to change, 1 unchanged"),
            "{stdout}"
        );
        for value in ["new-diff-password-value", "correct-horse-battery-staple"] {
            assert!(
                !stdout.contains(value) && !stderr.contains(value),
                "{stdout}{stderr}"
            );
        }
    }
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .args(["diff", "--path"])
        .arg(&local)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", NS])
        .output()
        .await
        .expect("sigil diff");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success());
    assert!(stderr.contains("spec.decryption"), "{stderr}");

    // A flipped ciphertext byte, then a tampered MAC: refused, the last good Secret stays.
    let marker = "password: ENC[AES256_GCM,data:";
    let at = encrypted.find(marker).expect("password") + marker.len();
    let mut flipped = encrypted.clone().into_bytes();
    flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
    let mac_start = encrypted.find("mac: ENC[").expect("mac") + "mac: ENC[AES256_GCM,data:".len();
    let mut bad_mac = encrypted.clone().into_bytes();
    bad_mac[mac_start] = if bad_mac[mac_start] == b'A' {
        b'B'
    } else {
        b'A'
    };
    for (what, text, refusal) in [
        (
            "flipped ciphertext byte",
            flipped,
            "stringData.password cannot be authenticated",
        ),
        ("tampered MAC", bad_mac, "SOPS MAC does not match"),
    ] {
        repo.write(
            "secrets/db-credentials.sops.yaml",
            &String::from_utf8(text).expect("utf8"),
        );
        repo.write(
            "secrets/config.yaml",
            &format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: web\ndata:\n  mode: \"{}\"\n",
                what.len()
            ),
        );
        let revision = format!("main@sha1:{}", repo.commit(what));
        let sync = ops
            .wait_sync(NS, "secrets", what, WAIT, |s| {
                s.status
                    .as_ref()
                    .and_then(|st| st.last_attempted_revision.as_deref())
                    == Some(revision.as_str())
                    && reason(s).0 == "DecryptionFailed"
            })
            .await;
        let (_, message) = reason(&sync);
        assert!(message.contains(refusal), "{what}: {message}");
        assert!(
            message.contains("secrets/db-credentials.sops.yaml"),
            "{what}: {message}"
        );
        let events = ops.events(NS, "secrets").await;
        for value in wanted.iter().map(|(_, v)| v).filter(|v| v.len() > 8) {
            assert!(
                !message.contains(value),
                "{what}: no decrypted value in {message}"
            );
            assert!(
                events
                    .iter()
                    .all(|e| !e.message.clone().unwrap_or_default().contains(value)),
                "{what}: no decrypted value in an event"
            );
        }
        let kept = secrets.get("db-credentials").await.expect("still there");
        assert_eq!(secret_values(&kept), wanted, "{what}: last good Secret");
        let config = config_maps.get("web").await.expect("config");
        assert_eq!(
            config
                .data
                .unwrap_or_default()
                .get("mode")
                .map(String::as_str),
            Some("dev"),
            "{what}: nothing of the revision applied"
        );
    }

    // Through a Kustomize overlay that renames it: kustomize reorders keys and changes the
    // name, every value is still one of the MAC-verified file.
    repo.write("secrets/db-credentials.sops.yaml", &encrypted);
    repo.write(
        "secrets/kustomization.yaml",
        "namePrefix: dev-\nresources:\n  - db-credentials.sops.yaml\n  - config.yaml\n",
    );
    let revision = repo.commit("through kustomize");
    ops.wait_sync(
        NS,
        "secrets",
        "rendered and decrypted",
        WAIT,
        applied(format!("main@sha1:{revision}")),
    )
    .await;
    let renamed = secrets
        .get("dev-db-credentials")
        .await
        .expect("renamed Secret");
    assert_eq!(secret_values(&renamed), wanted);
    assert!(
        secrets
            .get_opt("db-credentials")
            .await
            .expect("get")
            .is_none(),
        "the old name was pruned"
    );
}

fn wanted_pairs(expected: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = expected["stringData"]
        .as_object()
        .expect("stringData")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("str").to_string()))
        .collect();
    pairs.sort();
    pairs
}

#[test]
fn sigil_unseal_prints_what_sops_decrypt_prints_and_refuses_tampering() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_, recipient) = keygen(tmp.path());
    let key_file = tmp.path().join("key.txt");
    let encrypted = sops(
        tmp.path(),
        None,
        &[
            "encrypt",
            "--age",
            &recipient,
            "--input-type",
            "yaml",
            "--output-type",
            "yaml",
        ],
        "plain.yaml",
        PLAIN,
    );
    let encrypted_path = tmp.path().join("secret.sops.yaml");
    std::fs::write(&encrypted_path, &encrypted).expect("write");
    let expected = sops(
        tmp.path(),
        Some(&key_file),
        &["decrypt", "--input-type", "yaml", "--output-type", "yaml"],
        "secret.sops.yaml",
        &encrypted,
    );
    let unseal = |file: &Path| {
        Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["unseal", "-i"])
            .arg(&key_file)
            .arg("-f")
            .arg(file)
            .output()
            .expect("sigil unseal runs")
    };
    let opened = unseal(&encrypted_path);
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );
    let text = String::from_utf8(opened.stdout).expect("UTF-8");
    assert_eq!(documents(&text, false), documents(&expected, false));

    let tampered_path = tmp.path().join("tampered.sops.yaml");
    let mac_line = encrypted
        .lines()
        .find(|l| l.trim_start().starts_with("mac: ENC["))
        .expect("a MAC line");
    let flipped = mac_line.replacen("ENC[AES256_GCM,data:", "ENC[AES256_GCM,data:A", 1);
    std::fs::write(&tampered_path, encrypted.replace(mac_line, &flipped)).expect("write");
    let refused = unseal(&tampered_path);
    assert!(!refused.status.success(), "a tampered MAC is refused");
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(error.contains("tampered.sops.yaml"), "{error}");
    for value in SECRET_VALUES {
        assert!(!error.contains(value), "{error}");
    }
}
