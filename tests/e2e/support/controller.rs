//! `sigil controller` run as a real process against a test API server, killed (by pid) when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

/// A `sigil controller` process with its own HTTP port and log file.
pub struct ControllerProcess {
    child: Child,
    /// The identity it uses in Leases (`POD_NAME`).
    pub name: String,
    /// Base URL of its HTTP port (`/metrics`, `/healthz`, ...).
    pub url: String,
    log: PathBuf,
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

impl ControllerProcess {
    /// Runs `sigil controller --kubeconfig KUBECONFIG --namespace sigil-system --http-listen
    /// 127.0.0.1:PORT ARGS` as `POD_NAME=name`, logging into `dir/NAME.log`, and waits (bounded)
    /// until its `/healthz` answers.
    pub async fn start(name: &str, kubeconfig: &Path, dir: &Path, args: &[&str]) -> Self {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("controller log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .arg("controller")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--namespace", "sigil-system", "--http-listen"])
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            // Its Git cache and render copies, which a SIGKILL leaves behind, go with the test's dir.
            .env("TMPDIR", dir)
            .env_remove("KUBECONFIG")
            .stdout(std::process::Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn sigil controller");
        let mut process = ControllerProcess {
            child,
            name: name.to_string(),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("{name} exited with {status}:\n{}", process.log());
            }
            if process.get("/healthz").await.is_some() {
                return process;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never answered /healthz:\n{}",
                process.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The body of `GET path` on its HTTP port when it answers 200.
    pub async fn get(&self, path: &str) -> Option<String> {
        let answer = crate::support::http::get(format!("{}{path}", self.url))
            .await
            .ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.text().await.ok()
    }

    /// `GET /metrics`, with its content type.
    pub async fn metrics(&self) -> (String, String) {
        get_metrics(&self.url)
            .await
            .unwrap_or_else(|e| panic!("GET /metrics of {}: {e}\n{}", self.name, self.log()))
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "KILL", "TERM") to the process, by pid.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -{signal} {}", self.pid());
    }

    /// Waits (bounded by `limit`) for the process to exit.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the controller") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} still runs {limit:?} later:\n{}",
                self.name,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ControllerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The holder of Lease `name` in `sigil-system`, if it exists and is held.
pub async fn lease_holder(client: &kube::Client, name: &str) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), "sigil-system");
    leases
        .get_opt(name)
        .await
        .expect("read the lease")
        .and_then(|lease| lease.spec)
        .and_then(|spec| spec.holder_identity)
        .filter(|holder| !holder.is_empty())
}

/// A client for the server of `kubeconfig`.
pub async fn client(kubeconfig: &Path) -> kube::Client {
    sigil::tls::install_crypto_provider();
    let config = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

/// `GET {url}/metrics`: its content type and body.
pub async fn get_metrics(url: &str) -> Result<(String, String), reqwest::Error> {
    let answer = crate::support::http::get(format!("{url}/metrics")).await?;
    assert!(
        answer.status().is_success(),
        "GET {url}/metrics: {}",
        answer.status()
    );
    let content_type = answer
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Ok((content_type, answer.text().await?))
}
