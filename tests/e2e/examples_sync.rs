//! examples/sync/README.md's walk-through, run as written against `sigil dev` (a real process)
//! with the real kubectl and git.

use std::path::Path;
use std::process::Command;

use crate::support::dev::DevProcess;
use crate::support::readme::{shell_blocks, strict};
use crate::support::tools::tool;

#[test]
fn the_sync_walk_through_runs_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("examples/sync/README.md")).expect("README");
    let blocks = shell_blocks(&readme);
    assert!(blocks.len() >= 5, "walk-through blocks: {}", blocks.len());
    let script = format!("set -euo pipefail\n{}", strict(&blocks.join("\n")));

    let dev = DevProcess::start(&["--controller-http-listen", "127.0.0.1:0"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let sigil_dir = Path::new(env!("CARGO_BIN_EXE_sigil"))
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let kubectl_dir = tool("kubectl").parent().expect("kubectl dir").to_path_buf();
    let git_dir = tool("git").parent().expect("git dir").to_path_buf();
    let path = std::env::join_paths([sigil_dir, kubectl_dir, git_dir].into_iter().chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(root)
        .env("KUBECONFIG", &dev.kubeconfig)
        .env("HOME", dev.home())
        .env("TMPDIR", tmp.path())
        .env("PATH", path)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walk-through failed\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}\n--- sigil dev log ---\n{}",
        dev.log()
    );
    for expected in [
        "main@sha1:",
        "clusters/dev/db.yaml:1 Secret/db (namespace dev)",
        "plaintext Secret dev/db refused",
        "+ ConfigMap prod/settings",
        "0 to create, 0 to change, 2 unchanged, 0 to prune",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}\n{stderr}"
        );
    }
    assert!(!stdout.contains("do-not-commit-me") && !stderr.contains("do-not-commit-me"));
}
