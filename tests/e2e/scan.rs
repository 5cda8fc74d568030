//! `sigil scan` finds plaintext Secrets the way a Sync refuses them.

use std::process::Command;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn scan(dir: &std::path::Path, args: &[&str]) -> Run {
    let output = Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("scan")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("sigil runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn write(dir: &std::path::Path, path: &str, content: &str) {
    let file = dir.join(path);
    std::fs::create_dir_all(file.parent().expect("parent")).expect("folders");
    std::fs::write(file, content).expect("write");
}

const CONFIGMAP: &str =
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: fast\n";
const SEALED: &str = "apiVersion: sigil.dev/v1alpha1\nkind: SealedSecret\nmetadata:\n  name: db\nspec:\n  encryptedData:\n    password: \"-----BEGIN AGE ENCRYPTED FILE-----\"\n";

#[test]
fn clean_trees_pass() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "clusters/dev/cm.yaml", CONFIGMAP);
    write(tmp.path(), "clusters/dev/sealed.yaml", SEALED);
    write(
        tmp.path(),
        "clusters/dev/token.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: sa-token\ntype: kubernetes.io/service-account-token\n",
    );
    let run = scan(tmp.path(), &["."]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "");
}

#[test]
fn plaintext_secrets_are_reported_with_file_and_line() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "clusters/dev/cm.yaml", CONFIGMAP);
    write(
        tmp.path(),
        "clusters/dev/app.yaml",
        &format!(
            "{CONFIGMAP}---\n# the database password\napiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: apps\nstringData:\n  password: hunter2-plaintext\n"
        ),
    );
    write(
        tmp.path(),
        "clusters/prod/list.json",
        r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Secret","metadata":{"name":"api"},"data":{"token":"dG9rZW4="}}]}"#,
    );
    // Hidden folders are not walked, as the Sync does not read them.
    write(
        tmp.path(),
        ".github/leak.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: ci\nstringData:\n  k: v\n",
    );
    let run = scan(tmp.path(), &[]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        "clusters/dev/app.yaml:9 Secret/db (namespace apps)\nclusters/prod/list.json:1 Secret/api\n"
    );
    assert!(
        run.stderr.contains("found 2 plaintext Secret(s)"),
        "{}",
        run.stderr
    );
    for output in [&run.stdout, &run.stderr] {
        assert!(!output.contains("hunter2-plaintext"));
        assert!(!output.contains("dG9rZW4="));
    }

    // As a pre-commit hook: the staged files are named, hidden or not.
    let run = scan(tmp.path(), &["clusters/dev/cm.yaml", ".github/leak.yaml"]);
    assert_eq!(run.code, Some(1));
    assert_eq!(run.stdout, ".github/leak.yaml:1 Secret/ci\n");
}

#[test]
fn unparsable_files_fail_the_scan() {
    let tmp = tempfile::tempdir().expect("tempdir");
    write(
        tmp.path(),
        "bad.yaml",
        "kind: Secret\nstringData: [unclosed\n",
    );
    let run = scan(tmp.path(), &["."]);
    assert_eq!(run.code, Some(1));
    assert!(run.stderr.contains("bad.yaml:1"), "{}", run.stderr);
    assert!(run.stderr.contains("could not be parsed"), "{}", run.stderr);
}

#[test]
fn sops_encrypted_secrets_are_not_plaintext_unless_a_value_was_left_clear() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sops");
    let run = scan(&example, &["."]);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let encrypted =
        std::fs::read_to_string(example.join("db-credentials.sops.yaml")).expect("example");
    let start = encrypted.find("    username: ENC[").expect("username");
    let end = start + encrypted[start..].find('\n').expect("line end");
    let half = format!(
        "{}    username: app{}",
        &encrypted[..start],
        &encrypted[end..]
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    write(tmp.path(), "secrets/db.sops.yaml", &half);
    let run = scan(tmp.path(), &["."]);
    assert_eq!(run.code, Some(1), "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, "secrets/db.sops.yaml:1 Secret/db-credentials\n");
}
