//! The embedded API server for tests: in-process ([`start_with`]) or as a real
//! `sigil dev` process ([`DevProcess`]), plus small helpers to drive it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use kube_devserver::testing::poll;
pub use kube_devserver::testing::{Cluster, eventually, start, start_with};

/// Waits (bounded) until `GET url` answers 200; panics with the log of `dev` otherwise.
pub async fn wait_ok(url: &str, dev: &DevProcess) {
    let answered = poll(
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async {
            let answer = crate::support::http::get(url).await.ok()?;
            answer.status().is_success().then_some(())
        },
    )
    .await;
    if answered.is_none() {
        panic!("{url} never answered:\n{}", dev.log());
    }
}

/// `sigil dev` running as a real process; killed (by pid) when dropped.
pub struct DevProcess {
    child: Child,
    pub kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

impl DevProcess {
    /// Runs `sigil dev --listen 127.0.0.1:0 --kubeconfig DIR/kubeconfig` plus `extra` arguments,
    /// and waits (bounded) until the kubeconfig exists, which `sigil dev` writes once it serves.
    pub fn start(extra: &[&str]) -> DevProcess {
        Self::start_with_env(extra, &[])
    }

    /// [`DevProcess::start`] with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> DevProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let log = std::fs::File::create(dir.path().join("sigil-dev.log")).expect("log file");
        let out = std::fs::File::create(dir.path().join("sigil-dev.out")).expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["dev", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
            .envs(env.iter().copied())
            .stdout(out)
            .stderr(log)
            .spawn()
            .expect("spawn sigil dev");
        let mut process = DevProcess {
            child,
            kubeconfig,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !process.kubeconfig.exists() {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("sigil dev exited with {status}:\n{}", process.log());
            }
            assert!(
                Instant::now() < deadline,
                "sigil dev wrote no kubeconfig:\n{}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        process
    }

    /// What the process logged on stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sigil-dev.log")).unwrap_or_default()
    }

    /// What the process printed on stdout so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sigil-dev.out")).unwrap_or_default()
    }

    /// The home directory to give kubectl/helm (caches land there, not in the real home).
    pub fn home(&self) -> &Path {
        self.dir.path()
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self) -> bool {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => return false,
            }
        }
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
