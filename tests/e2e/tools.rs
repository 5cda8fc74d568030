//! The real programs from `scripts/install-tools.sh` are there and work, so every other test can rely on them.

use crate::support::tools::tool;
use std::io::Write;
use std::process::{Command, Output, Stdio};

fn run(name: &str, args: &[&str]) -> Output {
    let output = Command::new(tool(name))
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {name}: {err}"));
    assert!(
        output.status.success(),
        "{name} {args:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn reference_age_cli_round_trips_an_armored_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("key.txt");
    let sealed = dir.path().join("value.age");
    let key_arg = key.to_str().expect("utf-8 temp path");
    let sealed_arg = sealed.to_str().expect("utf-8 temp path");

    run("age-keygen", &["-o", key_arg]);
    let recipient =
        String::from_utf8(run("age-keygen", &["-y", key_arg]).stdout).expect("utf-8 recipient");
    let recipient = recipient.trim();
    assert!(
        recipient.starts_with("age1"),
        "age-keygen -y printed {recipient:?}"
    );

    let mut encrypt = Command::new(tool("age"))
        .args(["-e", "-a", "-r", recipient, "-o", sealed_arg])
        .stdin(Stdio::piped())
        .spawn()
        .expect("start age -e");
    encrypt
        .stdin
        .take()
        .expect("age stdin")
        .write_all(b"s3cr3t value\n")
        .expect("write to age");
    assert!(
        encrypt.wait().expect("age -e exits").success(),
        "age -e failed"
    );

    let armored = std::fs::read_to_string(&sealed).expect("read sealed file");
    assert!(
        armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
        "not armored: {armored}"
    );
    assert!(
        !armored.contains("s3cr3t"),
        "plaintext visible in the sealed file"
    );

    let opened = run("age", &["-d", "-i", key_arg, sealed_arg]).stdout;
    assert_eq!(opened, b"s3cr3t value\n");

    let other_key = dir.path().join("other.txt");
    run(
        "age-keygen",
        &["-o", other_key.to_str().expect("utf-8 temp path")],
    );
    let refused = Command::new(tool("age"))
        .args([
            "-d",
            "-i",
            other_key.to_str().expect("utf-8 temp path"),
            sealed_arg,
        ])
        .output()
        .expect("run age -d");
    assert!(
        !refused.status.success(),
        "age opened the file with the wrong identity"
    );
}

#[test]
fn kubectl_is_v1_35_and_helm_is_v4() {
    let version: serde_json::Value =
        serde_json::from_slice(&run("kubectl", &["version", "--client", "-o", "json"]).stdout)
            .expect("kubectl version JSON");
    assert_eq!(version["clientVersion"]["major"], "1", "{version}");
    assert_eq!(version["clientVersion"]["minor"], "35", "{version}");

    let helm = String::from_utf8(run("helm", &["version", "--template", "{{.Version}}"]).stdout)
        .expect("utf-8");
    assert!(helm.starts_with("v4."), "helm version {helm:?}");
}

#[test]
fn servers_and_clients_the_tests_start_are_runnable() {
    let sshd = run("sshd", &["-V"]);
    assert!(
        String::from_utf8_lossy(&sshd.stderr).contains("OpenSSH"),
        "sshd -V: {sshd:?}"
    );
    let git = String::from_utf8(run("git", &["--version"]).stdout).expect("utf-8");
    assert!(git.starts_with("git version 2."), "git --version: {git:?}");
    run("moto_server", &["--help"]);
    let bao = String::from_utf8(run("bao", &["version"]).stdout).expect("utf-8");
    assert!(bao.starts_with("OpenBao v2.7."), "bao version: {bao:?}");
    let postgres = String::from_utf8(run("postgres", &["--version"]).stdout).expect("utf-8");
    assert!(
        postgres.contains("PostgreSQL"),
        "postgres --version: {postgres:?}"
    );
    run("initdb", &["--version"]);
    run("pg_ctl", &["--version"]);
    run("psql", &["--version"]);
}
