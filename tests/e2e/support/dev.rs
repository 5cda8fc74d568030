//! The embedded API server for tests: in-process ([`start`]) or as a real
//! `sigil dev` process ([`DevProcess`]), plus small helpers to drive it.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube_devserver::{DevOptions, DevServer};

/// An in-process server and an admin client for it. Dropping it stops the server.
pub struct Cluster {
    pub server: DevServer,
    pub client: kube::Client,
}

/// Starts a server on 127.0.0.1, a port chosen at run time.
pub async fn start() -> Cluster {
    start_with(DevOptions::default()).await
}

/// Starts a server with `opts` (its listen address is forced to 127.0.0.1:0).
pub async fn start_with(opts: DevOptions) -> Cluster {
    sigil::tls::install_crypto_provider();
    let opts = DevOptions {
        listen: "127.0.0.1:0".parse().expect("socket address"),
        ..opts
    };
    let server = DevServer::start(opts)
        .await
        .expect("start the embedded API server");
    let client = server
        .client()
        .await
        .expect("client for the embedded API server");
    Cluster { server, client }
}

impl Cluster {
    /// A client acting as `user` (impersonation), e.g. `system:serviceaccount:ns:name`.
    pub async fn client_as(&self, user: &str) -> kube::Client {
        let mut kubeconfig = self.server.kubeconfig();
        for auth in &mut kubeconfig.auth_infos {
            if let Some(info) = auth.auth_info.as_mut() {
                info.impersonate = Some(user.to_string());
            }
        }
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("impersonating config");
        kube::Client::try_from(config).expect("impersonating client")
    }

    /// A client presenting `token` instead of the server's.
    pub async fn client_with_token(&self, token: &str) -> kube::Client {
        let mut kubeconfig = self.server.kubeconfig();
        for auth in &mut kubeconfig.auth_infos {
            if let Some(info) = auth.auth_info.as_mut() {
                info.token = Some(token.to_string().into());
            }
        }
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .expect("config");
        kube::Client::try_from(config).expect("client")
    }

    /// Creates a namespace and waits until the in-process controllers have added its
    /// `default` ServiceAccount and `kube-root-ca.crt` ConfigMap, so tests start settled.
    pub async fn namespace(&self, name: &str) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), name);
        let accounts: Api<ServiceAccount> = Api::namespaced(self.client.clone(), name);
        eventually("the namespace's default objects", || async {
            let cm = configmaps.get_opt("kube-root-ca.crt").await.ok().flatten();
            let sa = accounts.get_opt("default").await.ok().flatten();
            (cm.is_some() && sa.is_some()).then_some(())
        })
        .await;
    }
}

/// Polls `check` every 50 ms for up to 10 s until it returns Some; panics naming `what` otherwise.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The status code and reason of a failed API call.
pub fn api_error<T: std::fmt::Debug>(
    result: Result<T, kube::Error>,
) -> (u16, String, kube::core::Status) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.reason.clone(), *status),
        other => panic!("expected an API error, got {other:?}"),
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
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let log = std::fs::File::create(dir.path().join("sigil-dev.log")).expect("log file");
        let out = std::fs::File::create(dir.path().join("sigil-dev.out")).expect("output file");
        let child = Command::new(env!("CARGO_BIN_EXE_sigil"))
            .args(["dev", "--listen", "127.0.0.1:0", "--kubeconfig"])
            .arg(&kubeconfig)
            .args(extra)
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
