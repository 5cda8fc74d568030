//! Where a renderer runs: a private copy of the revision's tree in a fresh temporary folder,
//! and the child process itself — an empty environment (no credentials, no `PATH` to find
//! `git` with, proxies that lead nowhere, so nothing reaches the network), a timeout, and caps
//! on what it may print.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::manifests::source::SourceFile;

/// The bounds of one renderer run.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub timeout: Duration,
    /// Bytes of rendered output, at most.
    pub max_output: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            max_output: 32 << 20,
        }
    }
}

/// stderr kept for the error message.
const MAX_STDERR: u64 = 16 << 10;
/// Characters of stderr shown in a condition.
const SHOWN_STDERR: usize = 1024;

/// Why a renderer run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot prepare the render folder: {0}")]
    Prepare(std::io::Error),
    #[error("cannot start {program}: {source}")]
    Start {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {}s", timeout.as_secs())]
    Timeout { program: String, timeout: Duration },
    #[error("{program} printed more than {limit} bytes")]
    TooMuchOutput { program: String, limit: u64 },
    #[error("{program} failed: {stderr}")]
    Failed { program: String, stderr: String },
}

/// A private copy of a tree; removed when dropped.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    /// Writes `files` (repository-relative paths) under `<sandbox>/repo`.
    pub fn with_tree(files: &[SourceFile]) -> Result<Self, RunError> {
        let dir = tempfile::Builder::new()
            .prefix("sigil-render-")
            .tempdir()
            .map_err(RunError::Prepare)?;
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(&repo).map_err(RunError::Prepare)?;
        for file in files {
            let relative = Path::new(&file.path);
            if relative.is_absolute()
                || relative
                    .components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                continue;
            }
            let target = repo.join(relative);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(RunError::Prepare)?;
            }
            std::fs::write(&target, &file.content).map_err(RunError::Prepare)?;
        }
        for folder in ["home", "work"] {
            std::fs::create_dir_all(dir.path().join(folder)).map_err(RunError::Prepare)?;
        }
        Ok(Self { dir })
    }

    /// The copy of the repository root.
    pub fn repo(&self) -> PathBuf {
        self.dir.path().join("repo")
    }

    /// A folder outside the repository copy for generated files (wrappers, values).
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Runs `program args` in `cwd`; returns its stdout.
    pub async fn run(
        &self,
        program: &Path,
        args: &[OsString],
        cwd: &Path,
        limits: Limits,
    ) -> Result<Vec<u8>, RunError> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.display().to_string());
        let home = self.dir.path().join("home");
        let mut child = Command::new(program)
            .args(args)
            .current_dir(cwd)
            .env_clear()
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_DATA_HOME", home.join("data"))
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("NO_PROXY", "")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| RunError::Start {
                program: name.clone(),
                source,
            })?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(RunError::Start {
                program: name,
                source: std::io::Error::other("no pipes"),
            });
        };
        let work = async {
            let mut out = Vec::new();
            let mut err = Vec::new();
            let mut stdout = stdout.take(limits.max_output + 1);
            let mut stderr = stderr.take(MAX_STDERR);
            let (read_out, read_err) =
                tokio::join!(stdout.read_to_end(&mut out), stderr.read_to_end(&mut err));
            read_out.and(read_err)?;
            if out.len() as u64 > limits.max_output {
                return Ok((None, out, err));
            }
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((Some(status), out, err))
        };
        let result = tokio::time::timeout(limits.timeout, work).await;
        match result {
            Err(_) => Err(RunError::Timeout {
                program: name,
                timeout: limits.timeout,
            }),
            Ok(Err(source)) => Err(RunError::Start {
                program: name,
                source,
            }),
            Ok(Ok((None, _, _))) => Err(RunError::TooMuchOutput {
                program: name,
                limit: limits.max_output,
            }),
            Ok(Ok((Some(status), out, _))) if status.success() => Ok(out),
            Ok(Ok((Some(_), _, err))) => Err(RunError::Failed {
                stderr: trimmed(&String::from_utf8_lossy(&err), &self.repo()),
                program: name,
            }),
        }
    }
}

/// The renderer's stderr on one line, its sandbox paths made repository-relative, cut short.
fn trimmed(stderr: &str, repo: &Path) -> String {
    let repo = format!("{}/", repo.display());
    let text = stderr
        .replace(&repo, "")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match text.char_indices().nth(SHOWN_STDERR) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

/// `name` as found on `PATH` (the controller's own environment), if it is there.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_are_bounded_and_see_no_environment() {
        let sandbox = Sandbox::with_tree(&[SourceFile {
            path: "a/b.txt".to_string(),
            content: b"hello".to_vec(),
        }])
        .expect("sandbox");
        assert_eq!(
            std::fs::read(sandbox.repo().join("a/b.txt")).expect("copied"),
            b"hello"
        );
        let sh = Path::new("/bin/sh");
        let run = |script: &str| vec![OsString::from("-c"), OsString::from(script)];
        let env = sandbox
            .run(sh, &run("/usr/bin/env"), &sandbox.repo(), Limits::default())
            .await
            .expect("env runs");
        let env = String::from_utf8_lossy(&env);
        assert!(!env.contains("CARGO"), "{env}");
        assert!(env.contains("HTTPS_PROXY=http://127.0.0.1:9"), "{env}");
        let short = Limits {
            timeout: Duration::from_millis(300),
            max_output: 10,
        };
        let err = sandbox
            .run(sh, &run("exec /bin/sleep 5"), &sandbox.repo(), short)
            .await
            .expect_err("times out");
        assert!(matches!(err, RunError::Timeout { .. }), "{err}");
        let err = sandbox
            .run(sh, &run("echo 0123456789abcdef"), &sandbox.repo(), short)
            .await
            .expect_err("too much");
        assert!(matches!(err, RunError::TooMuchOutput { .. }), "{err}");
        let script = format!(
            "echo 'Error: {}/a/b.txt is bad' >&2; exit 3",
            sandbox.repo().display()
        );
        let err = sandbox
            .run(sh, &run(&script), &sandbox.repo(), Limits::default())
            .await
            .expect_err("fails");
        assert_eq!(err.to_string(), "sh failed: Error: a/b.txt is bad");
    }
}
