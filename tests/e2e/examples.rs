//! The documentation is executable: README.md's tour runs against `sigil dev` as a user would
//! type it, its command table lists every command, and every directory under `examples/` is run
//! by some test.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::controller::free_port;
use crate::support::dev::{DevProcess, wait_ok};
use crate::support::moto::{self, Moto, aws_stand_in};
use crate::support::readme::{doc_programs, path_with, run_script, section, shell_blocks};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn readme() -> String {
    std::fs::read_to_string(repo().join("README.md")).expect("README.md")
}

#[test]
fn readme_starts_with_the_run_and_test_commands() {
    let readme = readme();
    let first_block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a first sh block");
    let commands: Vec<&str> = first_block
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .collect();
    assert_eq!(commands, ["cargo run --release -- dev", "scripts/test.sh"]);
    let intro = readme.split("```sh").next().unwrap_or_default();
    assert!(
        intro.lines().filter(|l| !l.trim().is_empty()).count() <= 4,
        "the top is the title, three lines, then the commands:\n{intro}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_tour_runs_against_sigil_dev() {
    let readme = readme();
    let tour = section(&readme, "## Five-minute tour");
    let blocks = shell_blocks(tour);
    assert!(blocks.len() >= 3, "found {} runnable blocks", blocks.len());
    assert!(
        !blocks.iter().any(|b| b.contains("cargo run")),
        "starting sigil dev is left to the test"
    );

    // `sigil dev` as the tour starts it, on ports chosen now instead of its defaults.
    let http = format!("127.0.0.1:{}", free_port());
    let dev = DevProcess::start(&["--controller-http-listen", &http]);
    wait_ok(&format!("http://{http}/readyz"), &dev).await;
    let script = blocks.join("\n").replace("127.0.0.1:8080", &http);

    // Run from a scratch folder that sees the repository's examples, as the tour's
    // `examples/...` paths expect, without writing into the repository.
    let work = tempfile::tempdir().expect("temp dir");
    let dir = work.path().to_path_buf();
    std::os::unix::fs::symlink(repo().join("examples"), dir.join("examples"))
        .expect("link examples/");
    // AWS: moto, the variables the tour tells users to set for it, and an `aws` command.
    let moto = Moto::start().await;
    let aws = aws_stand_in(&dir.join("bin"));
    let path = path_with(&[vec![aws], doc_programs()].concat());
    let env: Vec<(String, String)> = vec![
        ("KUBECONFIG".into(), dev.kubeconfig.display().to_string()),
        ("PATH".into(), path),
        ("AWS_ENDPOINT_URL".into(), moto.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID".into(), moto::ACCESS_KEY_ID.into()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            moto::SECRET_ACCESS_KEY.into(),
        ),
        ("AWS_DEFAULT_REGION".into(), moto::REGION.into()),
    ];
    let run = tokio::task::spawn_blocking(move || {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_script(&script, &dir, &env, Duration::from_secs(240))
    })
    .await
    .expect("the tour ran");
    assert!(
        run.success,
        "the README tour failed:\n{}\n--- stdout:\n{}\n--- sigil dev log:\n{}",
        run.stderr,
        run.stdout,
        dev.log()
    );
    for expected in [
        "age1",                                                // sigil fetch-key
        "correct-horse",                                       // the Secret the controller wrote
        "ScopeMismatch",                                       // the copied value was refused
        "postgres://shop:battery-horse@db.internal:5432/shop", // the ExternalSecret's Secret
        "Secret/oops",                  // sigil scan found the plaintext Secret
        "main@sha1:",                   // the GitSource's revision
        "tr0ub4dor",                    // the sealed secret synced from Git, opened
        "correct-horse-battery-staple", // the SOPS Secret synced from Git, decrypted
        "sigil_reconciles_total",       // metrics
    ] {
        assert!(
            run.stdout.contains(expected),
            "the tour printed no {expected}:\n{}",
            run.stdout
        );
    }
    for plaintext in [
        "correct-horse",
        "tr0ub4dor",
        "battery-horse",
        "battery-staple",
    ] {
        assert!(
            !dev.log().contains(plaintext),
            "sigil dev logged a plaintext value"
        );
    }
}

/// The subcommands `sigil --help` lists.
fn sigil_commands() -> Vec<String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sigil"))
        .arg("--help")
        .output()
        .expect("sigil --help");
    let help = String::from_utf8_lossy(&out.stdout).into_owned();
    help.split("Commands:\n")
        .nth(1)
        .expect("a Commands section")
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_command_table_lists_every_command() {
    let readme = readme();
    let table = section(&readme, "## Command line");
    let commands = sigil_commands();
    assert!(commands.len() >= 10, "{commands:?}");
    for command in &commands {
        assert!(
            table.contains(&format!("| `sigil {command}` |")),
            "README's command table lacks `sigil {command}`"
        );
    }
    for row in table.lines().filter(|l| l.starts_with("| `sigil ")) {
        let named = row
            .trim_start_matches("| `sigil ")
            .split('`')
            .next()
            .unwrap_or_default();
        assert!(
            commands.iter().any(|c| c == named),
            "README lists `sigil {named}`, which does not exist"
        );
    }
}

fn test_sources() -> String {
    fn walk(dir: &Path, text: &mut String) {
        for entry in std::fs::read_dir(dir).expect("read tests dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, text);
            } else if path.extension().is_some_and(|e| e == "rs") {
                text.push_str(&std::fs::read_to_string(&path).unwrap_or_default());
            }
        }
    }
    let mut text = String::new();
    walk(&repo().join("tests"), &mut text);
    text
}

#[test]
fn every_example_directory_is_run_by_a_test() {
    let sources = test_sources();
    let examples: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(!examples.is_empty(), "examples/ has examples");
    for example in examples {
        let name = example
            .file_name()
            .and_then(|n| n.to_str())
            .expect("UTF-8 name");
        assert!(
            sources.contains(&format!("examples/{name}")),
            "no test under tests/ runs examples/{name}"
        );
    }
}
