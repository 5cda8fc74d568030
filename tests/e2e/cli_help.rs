//! Every command documents itself with at least one example, and completions work.

use std::path::{Path, PathBuf};
use std::process::Command;

fn sigil(args: &[&str]) -> String {
    run(Path::new(env!("CARGO_BIN_EXE_sigil")), args)
}

fn run(binary: &Path, args: &[&str]) -> String {
    let output = Command::new(binary)
        .args(args)
        .output()
        .expect("sigil runs");
    assert!(
        output.status.success(),
        "sigil {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn commands() -> Vec<String> {
    commands_of(&sigil(&["--help"]))
}

fn commands_of(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|line| !line.starts_with("Commands:"))
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next().map(str::to_string))
        .filter(|name| name != "help")
        .collect()
}

#[test]
fn every_command_has_an_example() {
    let commands = commands();
    assert!(commands.len() >= 4, "commands found: {commands:?}");
    for command in commands {
        let help = sigil(&[&command, "--help"]);
        assert!(
            help.contains("Examples:\n  sigil "),
            "`sigil {command} --help` shows no example:\n{help}"
        );
    }
}

#[test]
fn completions_cover_every_command() {
    for shell in ["bash", "zsh", "fish"] {
        let script = sigil(&["completions", shell]);
        for command in commands() {
            assert!(
                script.contains(&command),
                "{shell} completion lacks {command}"
            );
        }
    }
}

/// The binary of `cargo build -p sigil --no-default-features` (what the container image ships):
/// `SIGIL_NO_DEV_BIN` when `scripts/test.sh` built it, else built here into its own target dir
/// under the test cache (kept between runs, so only sigil itself is rebuilt).
fn no_default_features_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIGIL_NO_DEV_BIN") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("SIGIL_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/sigil-test")))
        .expect("SIGIL_TEST_CACHE or HOME");
    let target = cache.join("target-no-dev");
    let built = Command::new(env!("CARGO"))
        .args([
            "build",
            "-p",
            "sigil",
            "--no-default-features",
            "--bin",
            "sigil",
        ])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(built.success(), "cargo build --no-default-features failed");
    target.join("debug/sigil")
}

#[test]
fn the_build_without_default_features_has_every_command_but_dev() {
    let full = commands();
    assert!(full.contains(&"dev".to_string()), "{full:?}");
    let binary = no_default_features_binary();
    let lean = commands_of(&run(&binary, &["--help"]));
    let expected: Vec<String> = full.into_iter().filter(|c| c != "dev").collect();
    assert_eq!(lean, expected);
    let refused = Command::new(&binary)
        .args(["dev", "--help"])
        .output()
        .expect("sigil runs");
    assert!(
        !refused.status.success(),
        "`sigil dev` is not in this build"
    );
}
