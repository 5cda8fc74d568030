//! Running an example README's walk-through: its `sh` blocks, in order, in one
//! bash script (`set -euo pipefail`), with a bounded run time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the walk-through did not finish in {limit:?}:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        status.success(),
        "walk-through failed:\n{stderr}\n--- stdout:\n{stdout}"
    );
    stdout
}
