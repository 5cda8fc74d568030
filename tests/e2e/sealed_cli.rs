//! The sealing command line, offline: `keygen`, `seal`, `set`, `unseal`,
//! `reencrypt`, `validate`, and interop with the reference `age` CLI both ways.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::support::tools::tool;

/// Binary test data: every byte value, including NUL and newlines.
fn binary_value() -> Vec<u8> {
    (0..=255u8).rev().chain(0..=255u8).collect()
}

const UTF8_VALUE: &str = "pässwörd ✓ — s3cret\n";

fn run(program: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(program)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        // Never reach a cluster by accident.
        .env("KUBECONFIG", "/nonexistent/kubeconfig")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let output = child.wait_with_output().expect("waits");
    writer.join().expect("stdin writer");
    output
}

fn sigil_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_sigil"))
}

/// Runs sigil and asserts success; returns stdout.
fn sigil(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = run(&sigil_bin(), args, stdin);
    assert!(
        output.status.success(),
        "sigil {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Runs sigil and asserts failure; returns stderr.
fn sigil_fails(args: &[&str], stdin: &[u8]) -> String {
    let output = run(&sigil_bin(), args, stdin);
    assert!(
        !output.status.success(),
        "sigil {args:?} should fail; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn age(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let output = run(&tool("age"), args, stdin);
    assert!(
        output.status.success(),
        "age {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// A new identity from `sigil keygen`, with its recipient.
fn keygen(dir: &Path, name: &str) -> (String, String) {
    let path = dir.join(name);
    let path_text = path.to_str().expect("UTF-8 path").to_string();
    sigil(&["keygen", "-o", &path_text], b"");
    let text = std::fs::read_to_string(&path).expect("identity written");
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("public key comment")
        .to_string();
    (path_text, recipient)
}

fn secret_manifest() -> String {
    format!(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  labels:
    app: db
  annotations:
    kubectl.kubernetes.io/last-applied-configuration: '{{"stringData":{{"password":"last-applied-leak"}}}}'
type: Opaque
data:
  blob: {}
stringData:
  password: {}
"#,
        BASE64.encode(binary_value()),
        serde_json::to_string(UTF8_VALUE).expect("JSON string")
    )
}

fn documents(bytes: &[u8]) -> Vec<serde_json::Value> {
    sigil::yaml::documents(std::str::from_utf8(bytes).expect("UTF-8")).expect("valid YAML")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("writes");
    path.to_str().expect("UTF-8 path").to_string()
}

/// The Secret `data` that `sigil unseal` prints, decoded.
fn unsealed_data(identity: &str, sealed_path: &str) -> serde_json::Map<String, serde_json::Value> {
    let out = sigil(&["unseal", "-i", identity, "-f", sealed_path], b"");
    let docs = documents(&out);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"], "Secret");
    docs[0]["data"].as_object().expect("data").clone()
}

fn decoded(data: &serde_json::Map<String, serde_json::Value>, key: &str) -> Vec<u8> {
    BASE64
        .decode(data[key].as_str().expect("base64 string"))
        .expect("valid base64")
}

#[test]
fn keygen_writes_an_identity_the_age_cli_uses() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    assert!(recipient.starts_with("age1"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&identity).expect("exists").permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let encrypted = age(&["-r", &recipient], b"hello");
    assert_eq!(age(&["-d", "-i", &identity], &encrypted), b"hello");
    let err = sigil_fails(&["keygen", "-o", &identity], b"");
    assert!(err.contains(&identity), "{err}");
}

#[test]
fn age_cli_opens_every_value_sigil_seal_writes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cluster, cluster_recipient) = keygen(dir.path(), "cluster.txt");
    // A recovery identity made by the reference tool itself.
    let recovery = dir.path().join("recovery.txt");
    let output = run(
        &tool("age-keygen"),
        &["-o", recovery.to_str().expect("UTF-8")],
        b"",
    );
    assert!(output.status.success());
    let recovery = recovery.to_str().expect("UTF-8").to_string();
    let recovery_recipient = String::from_utf8(age_keygen_y(&recovery)).expect("UTF-8");

    let sealed = sigil(
        &[
            "seal",
            "--recipient",
            &cluster_recipient,
            "--recipient",
            recovery_recipient.trim(),
        ],
        secret_manifest().as_bytes(),
    );
    let doc = &documents(&sealed)[0];
    for (key, expected) in [
        ("blob", binary_value()),
        ("password", UTF8_VALUE.as_bytes().to_vec()),
    ] {
        let armored = doc["spec"]["encryptedData"][key].as_str().expect("armored");
        assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----\n"));
        let mut envelope = b"sigil.dev/envelope/v1 strict prod db\n".to_vec();
        envelope.extend_from_slice(&expected);
        for identity in [&cluster, &recovery] {
            let plaintext = age(&["-d", "-i", identity], armored.as_bytes());
            assert_eq!(
                plaintext, envelope,
                "age -d of {key} is the documented envelope carrying the value"
            );
        }
    }
}

fn age_keygen_y(identity: &str) -> Vec<u8> {
    let output = run(&tool("age-keygen"), &["-y", identity], b"");
    assert!(output.status.success());
    output.stdout
}

#[test]
fn values_encrypted_by_age_r_are_accepted_where_the_cli_wraps_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let sealed = sigil(&["seal", "-r", &recipient], secret_manifest().as_bytes());
    let file = write(dir.path(), "sealed.yaml", &sealed);

    // sigil wraps the value in its envelope; the reference age CLI encrypts it.
    let envelope = sigil(
        &[
            "seal",
            "--raw",
            "--envelope-only",
            "--namespace",
            "prod",
            "--name",
            "db",
        ],
        &binary_value(),
    );
    let armored = age(&["-a", "-r", &recipient], &envelope);
    sigil(&["set", "--sealed", &file, "from-age"], &armored);
    let data = unsealed_data(&identity, &file);
    assert_eq!(decoded(&data, "from-age"), binary_value());
    sigil(&["validate", "-i", &identity, &file], b"");

    // An age file of a bare value (no envelope) carries no scope: refused.
    let bare = age(&["-a", "-r", &recipient], b"bare value");
    sigil(&["set", "--sealed", &file, "bare"], &bare);
    let err = sigil_fails(&["validate", "-i", &identity, &file], b"");
    assert!(
        err.contains("spec.encryptedData.bare: not a sigil envelope"),
        "{err}"
    );
    assert!(!err.contains("bare value"), "{err}");
    // --sealed accepts only an armored age file.
    let err = sigil_fails(&["set", "--sealed", &file, "x"], b"plaintext");
    assert!(err.contains("ASCII-armored age file"), "{err}");
}

#[test]
fn seal_pipes_yaml_and_json_and_drops_last_applied() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let yaml = sigil(&["seal", "-r", &recipient], secret_manifest().as_bytes());
    let text = String::from_utf8(yaml.clone()).expect("UTF-8");
    for leak in [
        "last-applied",
        "last-applied-leak",
        "pässwörd",
        &BASE64.encode(binary_value())[..20],
    ] {
        assert!(
            !text.contains(leak),
            "sealed output contains {leak:?}:\n{text}"
        );
    }
    let doc = &documents(&yaml)[0];
    assert_eq!(doc["apiVersion"], "sigil.dev/v1alpha1");
    assert_eq!(doc["kind"], "SealedSecret");
    assert_eq!(doc["metadata"]["namespace"], "prod");
    assert_eq!(doc["spec"]["scope"], "strict");
    assert_eq!(doc["spec"]["template"]["metadata"]["labels"]["app"], "db");

    let json = sigil(
        &[
            "seal",
            "-r",
            &recipient,
            "-o",
            "json",
            "--scope",
            "namespace",
        ],
        secret_manifest().as_bytes(),
    );
    let parsed: serde_json::Value = serde_json::from_slice(&json).expect("JSON output");
    assert_eq!(parsed["spec"]["scope"], "namespace");
    let file = write(dir.path(), "sealed.json", &json);
    // Namespace scope: the same values open under another name in the namespace.
    let renamed = String::from_utf8(json)
        .expect("UTF-8")
        .replace("\"name\": \"db\"", "\"name\": \"other\"");
    let renamed_file = write(dir.path(), "renamed.json", renamed.as_bytes());
    assert_eq!(
        decoded(&unsealed_data(&identity, &renamed_file), "password"),
        UTF8_VALUE.as_bytes()
    );
    assert_eq!(
        decoded(&unsealed_data(&identity, &file), "blob"),
        binary_value()
    );

    // JSON in, a manifest without namespace: -n supplies it.
    let no_namespace = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"api"},"stringData":{"token":"t0k3n"}}"#;
    let out = sigil(
        &["seal", "-r", &recipient, "-n", "team-a"],
        no_namespace.as_bytes(),
    );
    assert_eq!(documents(&out)[0]["metadata"]["namespace"], "team-a");
}

#[test]
fn unseal_round_trips_binary_and_utf8_and_checks_scope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let (stranger, _) = keygen(dir.path(), "stranger.txt");
    let manifest = write(dir.path(), "secret.yaml", secret_manifest().as_bytes());
    let sealed = sigil(&["seal", "-r", &recipient, "-f", &manifest], b"");
    let file = write(dir.path(), "sealed.yaml", &sealed);

    let data = unsealed_data(&identity, &file);
    assert_eq!(decoded(&data, "blob"), binary_value());
    assert_eq!(decoded(&data, "password"), UTF8_VALUE.as_bytes());
    // stdin works too, and JSON output.
    let json = sigil(&["unseal", "-i", &identity, "-o", "json"], &sealed);
    let secret: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(secret["metadata"]["labels"]["app"], "db");

    let err = sigil_fails(&["unseal", "-i", &stranger, "-f", &file], b"");
    assert!(
        err.contains("SealedSecret prod/db: spec.encryptedData.blob: no available key"),
        "{err}"
    );
    // Copied to another namespace: the scope inside refuses it.
    let copied = String::from_utf8(sealed)
        .expect("UTF-8")
        .replace("namespace: prod", "namespace: dev");
    let copied = write(dir.path(), "copied.yaml", copied.as_bytes());
    let err = sigil_fails(&["unseal", "-i", &identity, "-f", &copied], b"");
    assert!(
        err.contains("SealedSecret dev/db: spec.encryptedData.blob: sealed for strict scope prod/db, but used in dev/db"),
        "{err}"
    );
    assert!(!err.contains("s3cret"));
}

#[test]
fn merge_into_adds_and_replaces_keys_in_place() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let sealed = sigil(&["seal", "-r", &recipient], secret_manifest().as_bytes());
    let file = write(dir.path(), "sealed.yaml", &sealed);
    let update =
        "kind: Secret\nmetadata: {name: ignored}\nstringData: {password: new, extra: added}\n";
    let out = sigil(
        &["seal", "-r", &recipient, "--merge-into", &file],
        update.as_bytes(),
    );
    assert!(out.is_empty(), "merge writes the file, not stdout");
    let data = unsealed_data(&identity, &file);
    assert_eq!(decoded(&data, "password"), b"new");
    assert_eq!(decoded(&data, "extra"), b"added");
    assert_eq!(decoded(&data, "blob"), binary_value());
    let err = sigil_fails(
        &[
            "seal",
            "-r",
            &recipient,
            "--merge-into",
            &file,
            "--scope",
            "cluster",
        ],
        update.as_bytes(),
    );
    assert!(err.contains("spec.scope is strict"), "{err}");
}

#[test]
fn set_seals_stdin_into_a_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let sealed = sigil(&["seal", "-r", &recipient], secret_manifest().as_bytes());
    let file = write(dir.path(), "sealed.yaml", &sealed);
    sigil(
        &["set", "-r", &recipient, &file, "tls.key"],
        &binary_value(),
    );
    sigil(&["set", "-r", &recipient, &file, "password"], b"rotated");
    let data = unsealed_data(&identity, &file);
    assert_eq!(decoded(&data, "tls.key"), binary_value());
    assert_eq!(decoded(&data, "password"), b"rotated");
    let err = sigil_fails(&["set", "-r", &recipient, &file, "bad key"], b"x");
    assert!(
        err.contains("SealedSecret prod/db: spec.encryptedData.bad key: invalid key"),
        "{err}"
    );
}

#[test]
fn raw_seals_one_value_for_its_scope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let value_file = write(dir.path(), "value.bin", &binary_value());
    let from_file = sigil(
        &[
            "seal",
            "--raw",
            "-r",
            &recipient,
            "--namespace",
            "prod",
            "--name",
            "db",
            "--from-file",
            &value_file,
        ],
        b"",
    );
    let mut expected = b"sigil.dev/envelope/v1 strict prod db\n".to_vec();
    expected.extend(binary_value());
    assert_eq!(age(&["-d", "-i", &identity], &from_file), expected);

    let literal = sigil(
        &[
            "seal",
            "--raw",
            "-r",
            &recipient,
            "--scope",
            "cluster",
            "--from-literal",
            "lit",
        ],
        b"",
    );
    assert_eq!(
        age(&["-d", "-i", &identity], &literal),
        b"sigil.dev/envelope/v1 cluster\nlit"
    );
    let stdin = sigil(
        &[
            "seal",
            "--raw",
            "-r",
            &recipient,
            "--scope",
            "namespace",
            "-n",
            "prod",
        ],
        b"piped",
    );
    assert_eq!(
        age(&["-d", "-i", &identity], &stdin),
        b"sigil.dev/envelope/v1 namespace prod\npiped"
    );
    let err = sigil_fails(
        &["seal", "--raw", "-r", &recipient, "--namespace", "prod"],
        b"x",
    );
    assert!(err.contains("name is required for strict scope"), "{err}");
}

#[test]
fn reencrypt_moves_values_to_new_recipients_and_keeps_each_scope() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (old, old_recipient) = keygen(dir.path(), "old.txt");
    let (new, new_recipient) = keygen(dir.path(), "new.txt");
    let sealed = sigil(
        &["seal", "-r", &old_recipient, "--scope", "namespace"],
        secret_manifest().as_bytes(),
    );
    let file = write(dir.path(), "sealed.yaml", &sealed);
    let second = write(dir.path(), "second.yaml", &sealed);
    sigil(
        &[
            "reencrypt",
            "--identity",
            &old,
            "--recipient",
            &new_recipient,
            &file,
            &second,
        ],
        b"",
    );
    for path in [&file, &second] {
        let err = sigil_fails(&["validate", "-i", &old, path], b"");
        assert!(err.contains("no available key"), "{err}");
        let out = sigil(&["validate", "-i", &new, path], b"");
        assert!(
            String::from_utf8_lossy(&out).contains("SealedSecret prod/db: ok (2 values"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    let doc = &documents(&std::fs::read(&file).expect("reads"))[0];
    let armored = doc["spec"]["encryptedData"]["password"]
        .as_str()
        .expect("armored");
    let plaintext = age(&["-d", "-i", &new], armored.as_bytes());
    assert!(plaintext.starts_with(b"sigil.dev/envelope/v1 namespace prod\n"));
    assert_eq!(decoded(&unsealed_data(&new, &file), "blob"), binary_value());
}

#[test]
fn errors_name_object_and_field_on_stderr_with_nothing_on_stdout() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (identity, recipient) = keygen(dir.path(), "key.txt");
    let bad =
        "kind: Secret\nmetadata: {name: db, namespace: prod}\ndata: {password: 'not*base64'}\n";
    let output = run(&sigil_bin(), &["seal", "-r", &recipient], bad.as_bytes());
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("stdin: Secret prod/db: data.password: not valid base64"),
        "{err}"
    );
    let err = sigil_fails(&["seal", "-r", "age1notakey"], secret_manifest().as_bytes());
    assert!(err.contains("invalid age recipient"), "{err}");

    // A tampered value: one base64 character of the payload changed.
    let sealed = sigil(&["seal", "-r", &recipient], secret_manifest().as_bytes());
    let mut doc = documents(&sealed).remove(0);
    let armored = doc["spec"]["encryptedData"]["password"]
        .as_str()
        .expect("armored")
        .to_string();
    let lines: Vec<&str> = armored.lines().collect();
    let last_body = lines[lines.len() - 2];
    let flipped: String = last_body
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i == 3 {
                if c == 'A' { 'B' } else { 'A' }
            } else {
                c
            }
        })
        .collect();
    doc["spec"]["encryptedData"]["password"] =
        serde_json::Value::String(armored.replace(last_body, &flipped));
    let file = write(
        dir.path(),
        "tampered.json",
        serde_json::to_string(&doc).expect("JSON").as_bytes(),
    );
    let err = sigil_fails(&["unseal", "-i", &identity, "-f", &file], b"");
    assert!(
        err.contains("spec.encryptedData.password: integrity check failed"),
        "{err}"
    );
}

#[test]
fn commands_needing_the_cluster_say_so_without_one() {
    let err = sigil_fails(
        &["fetch-key", "--kubeconfig", "/nonexistent/kubeconfig"],
        b"",
    );
    assert!(err.contains("/nonexistent/kubeconfig"), "{err}");
    let err = sigil_fails(
        &["seal", "--kubeconfig", "/nonexistent/kubeconfig"],
        secret_manifest().as_bytes(),
    );
    assert!(err.contains("Kubernetes config"), "{err}");
}

#[test]
fn example_sealed_form_is_the_example_secret_sealed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sealed-secret");
    let identity = dir.join("demo-identity.txt");
    let identity = identity.to_str().expect("UTF-8");
    let sealed = dir.join("sealed-secret.yaml");
    let sealed = sealed.to_str().expect("UTF-8");
    sigil(&["validate", "--identity", identity, sealed], b"");
    let data = unsealed_data(identity, sealed);
    let secret = sigil::yaml::documents(
        &std::fs::read_to_string(dir.join("secret.yaml")).expect("secret.yaml"),
    )
    .expect("YAML")
    .remove(0);
    let plain = secret["stringData"].as_object().expect("stringData");
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
    for (key, value) in plain {
        assert_eq!(
            decoded(&data, key),
            value.as_str().expect("string").as_bytes()
        );
    }
    let doc = &documents(&std::fs::read(sealed).expect("sealed-secret.yaml"))[0];
    assert_eq!(doc["metadata"]["name"], secret["metadata"]["name"]);
    assert_eq!(
        doc["metadata"]["namespace"],
        secret["metadata"]["namespace"]
    );
    assert_eq!(doc["spec"]["scope"], "strict");
    assert_eq!(
        doc["spec"]["template"]["metadata"]["labels"],
        secret["metadata"]["labels"]
    );
}
