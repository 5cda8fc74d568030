//! Git repositories made by the tests with the real `git` program.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A work tree with a `main` branch, made by `git init`.
pub struct GitRepo {
    pub dir: PathBuf,
}

/// Runs `git` in `dir` and returns its trimmed stdout; panics with stderr on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(super::tools::tool("git"))
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "sigil test")
        .env("GIT_AUTHOR_EMAIL", "test@sigil.dev")
        .env("GIT_COMMITTER_NAME", "sigil test")
        .env("GIT_COMMITTER_EMAIL", "test@sigil.dev")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

impl GitRepo {
    /// `git init -b main` in `dir` (created).
    pub fn init(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).expect("repo dir");
        git(dir, &["init", "-q", "-b", "main"]);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// Writes (or overwrites) a file, creating folders.
    pub fn write(&self, path: &str, content: &str) -> &Self {
        let file = self.dir.join(path);
        std::fs::create_dir_all(file.parent().expect("parent")).expect("folders");
        std::fs::write(file, content).expect("write file");
        self
    }

    /// Removes a file.
    pub fn remove(&self, path: &str) -> &Self {
        std::fs::remove_file(self.dir.join(path)).expect("remove file");
        self
    }

    /// Makes a symlink `path` → `target`.
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        let link = self.dir.join(path);
        std::fs::create_dir_all(link.parent().expect("parent")).expect("folders");
        std::os::unix::fs::symlink(target, link).expect("symlink");
        self
    }

    /// Commits everything; returns the commit SHA-1.
    pub fn commit(&self, message: &str) -> String {
        git(&self.dir, &["add", "-A"]);
        git(&self.dir, &["commit", "-q", "--allow-empty", "-m", message]);
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.dir, &["rev-parse", "HEAD"])
    }

    /// `file://` URL of the repository.
    pub fn url(&self) -> String {
        format!("file://{}", self.dir.display())
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.dir, args)
    }
}
