//! Where fetched repositories live: one bare repository per source (namespace, name and URL),
//! one fetch at a time per repository, the blocking work on tokio's blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::fetch::{FetchRequest, Fetched, fetch};
use super::tree::{TreeFile, TreeLimits, read_folder};
use super::{Credentials, FetchError, Reference, TreeError};

/// The cache of fetched repositories.
pub struct Cache {
    root: PathBuf,
    remove_on_drop: bool,
    locks: Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>,
}

impl Cache {
    /// A cache in `root` (kept when dropped).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            remove_on_drop: false,
            locks: Mutex::new(HashMap::new()),
        }
    }

    /// A cache in a new folder under the system temp dir, removed when dropped; each process
    /// (and each test's controller) gets its own.
    pub fn temporary() -> Self {
        let root = std::env::temp_dir().join(format!(
            "sigil-git-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        Self {
            root,
            remove_on_drop: true,
            locks: Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The bare repository of a source. The URL is part of the key so that changing it starts
    /// from an empty repository.
    pub fn repo_dir(&self, namespace: &str, name: &str, url: &str) -> PathBuf {
        let digest = Sha256::digest(format!("{namespace}\0{name}\0{url}").as_bytes());
        self.root
            .join("repos")
            .join(format!("{namespace}_{name}_{}", &hex::encode(digest)[..16]))
    }

    fn lock(&self, dir: &Path) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(dir.to_path_buf()).or_default().clone()
    }

    /// Fetches `reference` of `url` into `repo_dir` (see [`fetch`]), giving up after `timeout`.
    pub async fn fetch(
        &self,
        repo_dir: PathBuf,
        url: String,
        reference: Reference,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Fetched, FetchError> {
        let guard = self.lock(&repo_dir).lock_owned().await;
        let scratch = self.root.join("scratch");
        let interrupt = Arc::new(AtomicBool::new(false));
        let shown_url = super::fetch::display_url(&url);
        let task = {
            let interrupt = interrupt.clone();
            tokio::task::spawn_blocking(move || {
                let _guard = guard;
                let request = FetchRequest {
                    url: &url,
                    reference: &reference,
                    credentials: &credentials,
                };
                fetch(&repo_dir, &scratch, &request, &interrupt)
            })
        };
        match tokio::time::timeout(timeout, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(join)) => Err(FetchError::Failed {
                url: shown_url,
                message: format!("fetch task failed: {join}"),
            }),
            Err(_) => {
                interrupt.store(true, Ordering::Relaxed);
                Err(FetchError::Timeout { url: shown_url })
            }
        }
    }

    /// Reads the files under `folder` of `commit` from `repo_dir` (see [`read_folder`]).
    pub async fn read_folder(
        &self,
        repo_dir: PathBuf,
        commit: String,
        folder: String,
        select: fn(&str) -> bool,
        limits: TreeLimits,
    ) -> Result<Vec<TreeFile>, TreeError> {
        tokio::task::spawn_blocking(move || {
            read_folder(&repo_dir, &commit, &folder, &select, limits)
        })
        .await
        .map_err(|join| TreeError::Open {
            path: String::new(),
            message: format!("read task failed: {join}"),
        })?
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
