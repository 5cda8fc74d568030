//! Running documentation: an example README's walk-through or README.md's tour (its `sh`
//! blocks, in order, in one bash script, `set -euo pipefail`, with a bounded run time), or the
//! commands of the chart's NOTES.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use super::tools::tool;
use kube_devserver::testing::poll_blocking;

/// The `sh` blocks of a README, except those right after a `<!-- not run` comment.
pub fn shell_blocks(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut skip_next = false;
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            Some(block) if line.trim_start() == "```" => {
                if !skip_next {
                    blocks.push(std::mem::take(block));
                }
                skip_next = false;
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.trim_start().starts_with("<!-- not run") => skip_next = true,
            None if line.trim_start() == "```sh" => current = Some(String::new()),
            None => {}
        }
    }
    blocks
}

/// `PATH` with the directories of `programs` first.
pub fn path_with(programs: &[PathBuf]) -> String {
    let mut dirs: Vec<PathBuf> = programs
        .iter()
        .filter_map(|p| p.parent().map(Path::to_path_buf))
        .collect();
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

/// Runs `blocks` in `dir` with `env`; panics with the output unless they all
/// succeed within `limit`. Returns stdout.
pub fn run(blocks: &[String], dir: &Path, env: &[(&str, String)], limit: Duration) -> String {
    let script = format!("set -euo pipefail\nset -x\n{}", blocks.join("\n"));
    let out_path = dir.join("walk-through.out");
    let err_path = dir.join("walk-through.err");
    let mut command = Command::new("bash");
    command
        .args(["-c", &script])
        .current_dir(dir)
        .env("HOME", dir)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("bash runs");
    let status = wait_bounded(&mut child, limit, &err_path);
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "walk-through failed:\n{stderr}\n--- stdout:\n{stdout}"
    );
    stdout
}

/// Makes `! command` lines fail the script when the command succeeds: under `set -e` bash does
/// not stop on a negated command, so the line would check nothing.
pub fn strict(script: &str) -> String {
    script
        .lines()
        .map(|line| match line.strip_prefix("! ") {
            Some(command) => {
                // Drop a trailing comment, which would swallow the rest of the `if`.
                let command = command.split(" # ").next().unwrap_or(command).trim_end();
                format!(
                    "if {command}; then echo 'expected to fail: {}' >&2; exit 1; fi",
                    command.replace('\'', "")
                )
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The part of `markdown` under the heading `heading` (e.g. `## Tour`), up to the next heading
/// of the same or a higher level.
pub fn section<'a>(markdown: &'a str, heading: &str) -> &'a str {
    let level = heading.chars().take_while(|&c| c == '#').count();
    let start = markdown
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("no heading {heading:?}"))
        + 1;
    let body = &markdown[start + heading.len() + 1..];
    let mut offset = 0;
    let mut in_code = false;
    for line in body.split_inclusive('\n') {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        let hashes = line.chars().take_while(|&c| c == '#').count();
        if !in_code && hashes > 0 && hashes <= level && line[hashes..].starts_with(' ') {
            break;
        }
        offset += line.len();
    }
    &markdown[start..start + heading.len() + 1 + offset]
}

/// The programs documentation may call: sigil (this build), kubectl, helm, age, git.
pub fn doc_programs() -> Vec<PathBuf> {
    vec![
        PathBuf::from(env!("CARGO_BIN_EXE_sigil")),
        tool("kubectl"),
        tool("helm"),
        tool("age"),
        tool("git"),
    ]
}

/// What a script printed, and whether it succeeded.
pub struct ScriptRun {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `script` with `bash -euo pipefail -x` in `dir`, with `env` set and `PATH` from
/// [`doc_programs`]; kills it after `limit`. Blocking: call it from a test thread or
/// `spawn_blocking`.
pub fn run_script(script: &str, dir: &Path, env: &[(&str, &str)], limit: Duration) -> ScriptRun {
    let script = format!("set -euo pipefail\nset -x\n{}", strict(script));
    let out_path = dir.join("script.out");
    let err_path = dir.join("script.err");
    let mut command = Command::new("bash");
    command
        .args(["-c", &script])
        .current_dir(dir)
        .env("PATH", path_with(&doc_programs()))
        .env("HOME", dir)
        .env("TMPDIR", dir)
        .env("RUST_BACKTRACE", "0")
        .env("HELM_CACHE_HOME", dir.join(".helm/cache"))
        .env("HELM_CONFIG_HOME", dir.join(".helm/config"))
        .env("HELM_DATA_HOME", dir.join(".helm/data"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("stdout file"))
        .stderr(std::fs::File::create(&err_path).expect("stderr file"));
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("bash runs");
    let status = wait_bounded(&mut child, limit, &err_path);
    ScriptRun {
        success: status.success(),
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

#[test]
fn blocks_after_a_not_run_marker_are_skipped() {
    let readme =
        "```sh\na\n```\n<!-- not run: x -->\n```sh\nb\n```\n```text\nc\n```\n```sh\nd\n```\n";
    assert_eq!(shell_blocks(readme), vec!["a\n", "d\n"]);
}

#[test]
fn negated_commands_must_fail() {
    assert_eq!(
        strict("a\n! grep -q x f # not there\nb"),
        "a\nif grep -q x f; then echo 'expected to fail: grep -q x f' >&2; exit 1; fi\nb"
    );
}

#[test]
fn a_section_ends_at_the_next_heading_of_its_level_outside_code() {
    let page = "# T\n\n## A\ntext\n```sh\n# comment\n```\n### A.1\nmore\n## B\nlast\n";
    assert_eq!(
        section(page, "## A"),
        "## A\ntext\n```sh\n# comment\n```\n### A.1\nmore\n"
    );
    assert_eq!(section(page, "## B"), "## B\nlast\n");
}

/// Waits (bounded by `limit`) for a script to exit; kills it and panics with its stderr (in
/// `err_path`) when it did not.
pub fn wait_bounded(child: &mut Child, limit: Duration, err_path: &Path) -> ExitStatus {
    poll_blocking(limit, Duration::from_millis(100), || {
        child.try_wait().expect("wait for bash")
    })
    .unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the script did not finish in {limit:?}:\n{}",
            std::fs::read_to_string(err_path).unwrap_or_default()
        )
    })
}
