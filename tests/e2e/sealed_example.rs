//! Runs the walk-through of examples/sealed-secret/README.md against the
//! embedded cluster with a live controller, block by block, as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::readme::{path_with, shell_blocks, wait_bounded};
use crate::support::sealed::Bed;
use crate::support::tools::tool;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/sealed-secret")
}

#[test]
fn readme_walk_through_runs() {
    let readme = std::fs::read_to_string(example_dir().join("README.md")).expect("README");
    let blocks = shell_blocks(&readme);
    assert!(blocks.len() >= 6, "found {} sh blocks", blocks.len());
    assert!(
        !blocks.iter().any(|b| b.contains("sigil dev")),
        "the `sigil dev` block is marked not run"
    );

    let bed = Bed::start(|_| {});
    let work = tempfile::tempdir().expect("temp dir");
    for file in ["secret.yaml", "sealed-secret.yaml", "demo-identity.txt"] {
        std::fs::copy(example_dir().join(file), work.path().join(file)).expect("copy example");
    }
    let script = format!("set -euo pipefail\nset -x\n{}", blocks.join("\n"));
    let path = path_with(&[
        PathBuf::from(env!("CARGO_BIN_EXE_sigil")),
        tool("kubectl"),
        tool("age"),
    ]);
    let out_path = work.path().join("walk-through.out");
    let err_path = work.path().join("walk-through.err");
    let mut child = Command::new("bash")
        .args(["-c", &script])
        .current_dir(work.path())
        .env("PATH", path)
        .env("KUBECONFIG", &bed.kubeconfig)
        .env("HOME", work.path())
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("bash runs");
    let status = wait_bounded(&mut child, Duration::from_secs(180), &err_path);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "walk-through failed:\n{stderr}\n--- stdout:\n{stdout}"
    );
    assert!(
        stdout.contains("age1"),
        "fetch-key printed a recipient:\n{stdout}"
    );
    assert!(
        stdout.contains("correct-horse-battery-staple"),
        "the Secret holds the password:\n{stdout}"
    );
    assert!(
        stdout.contains("sigil.dev/envelope/v1 strict default db-credentials"),
        "{stdout}"
    );
    assert!(
        stdout.contains("sealedsecret.sigil.dev/db-credentials configured"),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l == "admin"), "{stdout}");
    // The controller never logged the example's plaintext.
    bed.assert_no_plaintext(&[b"correct-horse-battery-staple"]);
}
