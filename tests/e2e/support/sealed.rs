//! A sealed-secrets test bed: the embedded API server on one runtime, the sigil
//! controller on another whose every thread logs into a captured buffer, so a
//! test can grep everything the controller logged.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use sigil::controller::Options;
use tokio_util::sync::CancellationToken;

use super::dev::{self, Cluster};

/// Namespace the controller keeps its keys in, in these tests.
pub const CONTROLLER_NAMESPACE: &str = "sigil-system";

/// Everything the controller logged, shared with the subscriber's writer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl Capture {
    pub fn text(&self) -> String {
        let bytes = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn append(&self, bytes: &[u8]) {
        if let Ok(mut buffer) = self.0.lock() {
            buffer.extend_from_slice(bytes);
        }
    }
}

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The embedded API server plus a running sigil controller.
pub struct Bed {
    pub logs: Capture,
    /// Admin client (on the controller's runtime).
    pub client: kube::Client,
    pub kubeconfig: PathBuf,
    /// The controller's HTTP port.
    pub http: SocketAddr,
    pub dir: tempfile::TempDir,
    controller: Option<tokio::task::JoinHandle<Result<(), sigil::controller::Error>>>,
    stop: CancellationToken,
    // Fields drop in order: the controller runtime first, the server last.
    runtime: Option<tokio::runtime::Runtime>,
    cluster: Option<Cluster>,
    server_runtime: Option<tokio::runtime::Runtime>,
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

impl Bed {
    /// Starts the server and the controller with `configure` applied to its options.
    pub fn start(configure: impl FnOnce(&mut Options)) -> Bed {
        let logs = Capture::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "sigil=trace,kube=debug,info",
            ))
            .finish();
        let dispatch = tracing::Dispatch::new(subscriber);

        let server_runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("server runtime");
        let cluster = server_runtime.block_on(dev::start_with(kube_devserver::DevOptions {
            install_crds: sigil::api::crds(),
            ..kube_devserver::DevOptions::default()
        }));
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        cluster
            .server
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");

        let thread_dispatch = dispatch.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || {
                // Every controller thread logs into the capture, for the thread's life.
                std::mem::forget(tracing::dispatcher::set_default(&thread_dispatch));
            })
            .build()
            .expect("controller runtime");
        let http = free_port();
        let mut options = Options {
            namespace: CONTROLLER_NAMESPACE.to_string(),
            http_listen: http,
            concurrency: 4,
            ..Options::default()
        };
        configure(&mut options);
        let stop = CancellationToken::new();
        let kubeconfig_data = cluster.server.kubeconfig();
        let (client, controller) = runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(kubeconfig_data, &Default::default())
                .await
                .expect("client config");
            let client = kube::Client::try_from(config).expect("client");
            for name in [CONTROLLER_NAMESPACE, "prod", "dev"] {
                create_namespace(&client, name).await;
            }
            let token = stop.clone();
            let controller =
                tokio::spawn(sigil::operator::run(client.clone(), options, async move {
                    token.cancelled().await
                }));
            (client, controller)
        });
        let bed = Bed {
            logs,
            client,
            kubeconfig,
            http,
            dir,
            controller: Some(controller),
            stop,
            runtime: Some(runtime),
            cluster: Some(cluster),
            server_runtime: Some(server_runtime),
        };
        bed.block_on(async {
            let api: Api<ConfigMap> = Api::namespaced(bed.client.clone(), CONTROLLER_NAMESPACE);
            dev::eventually("the recipients ConfigMap", || {
                let api = api.clone();
                async move { api.get_opt("sigil-recipients").await.ok().flatten() }
            })
            .await;
        });
        bed
    }

    /// Runs a future on the controller's runtime.
    pub fn block_on<F: std::future::Future>(&self, future: F) -> F::Output {
        self.runtime
            .as_ref()
            .expect("runtime is running")
            .block_on(future)
    }

    /// Runs `sigil ARGS` with the bed's kubeconfig in the environment, feeding `stdin`.
    pub fn sigil(&self, args: &[&str], stdin: &[u8]) -> Output {
        run(
            Command::new(env!("CARGO_BIN_EXE_sigil"))
                .args(args)
                .env("KUBECONFIG", &self.kubeconfig)
                .env("RUST_BACKTRACE", "0")
                .env("SIGIL_CONTROLLER_NAMESPACE", CONTROLLER_NAMESPACE),
            stdin,
        )
    }

    /// Like [`sigil`](Self::sigil), asserting success; returns stdout.
    pub fn sigil_ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let output = self.sigil(args, stdin);
        assert!(
            output.status.success(),
            "sigil {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        // The CLI's own logs count as captured logs too.
        self.logs.append(&output.stderr);
        output.stdout
    }

    /// `http://ADDR` of the controller's HTTP port.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Asserts that no captured log line holds any of `secrets` (nor their base64).
    pub fn assert_no_plaintext(&self, secrets: &[&[u8]]) {
        use base64::Engine;
        let logs = self.logs.text();
        // Proof that the capture sees the controller's tasks, not just this thread.
        assert!(
            logs.contains("generated a new active sealing key"),
            "the controller's logs were not captured:\n{logs}"
        );
        for secret in secrets {
            let text = String::from_utf8_lossy(secret);
            let encoded = base64::engine::general_purpose::STANDARD.encode(secret);
            assert!(
                !logs.contains(text.as_ref()),
                "plaintext {text:?} found in the logs"
            );
            assert!(
                !logs.contains(&encoded),
                "base64 of a plaintext found in the logs"
            );
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        self.stop.cancel();
        if let (Some(runtime), Some(controller)) = (self.runtime.as_ref(), self.controller.take()) {
            let _ = runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), controller).await
            });
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        if let (Some(runtime), Some(cluster)) = (self.server_runtime.as_ref(), self.cluster.take())
        {
            runtime.block_on(cluster.server.shutdown());
        }
        if let Some(runtime) = self.server_runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match api.create(&PostParams::default(), &namespace).await {
        Ok(_) | Err(kube::Error::Api(_)) => {}
        Err(e) => panic!("cannot create namespace {name}: {e}"),
    }
}

/// Runs a command feeding `stdin` from a separate thread (no pipe deadlock).
pub fn run(command: &mut Command, stdin: &[u8]) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let mut input = child.stdin.take().expect("stdin");
    let bytes = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&bytes);
    });
    let output = child.wait_with_output().expect("the command ends");
    let _ = writer.join();
    output
}
