#![doc = include_str!("../README.md")]

mod auth;
mod certs;
mod clock;
mod controllers;
mod convert;
mod crd;
mod defaults;
mod delete;
mod discovery;
mod fields;
mod http;
mod jsonpath;
mod names;
mod object;
mod openapi;
mod owner_index;
pub mod patch;
mod protobuf;
mod rbac;
mod read;
mod registry;
mod request;
pub mod schema;
mod selector;
mod state;
mod status;
mod store;
mod strategy;
mod table;
#[cfg(feature = "testing")]
pub mod testing;
mod token;
mod watch;
mod write;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::config::{
    AuthInfo, Cluster, Context, KubeConfigOptions, Kubeconfig, NamedAuthInfo, NamedCluster,
    NamedContext,
};
use rand::RngCore;
use tokio::sync::RwLock;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use auth::ADMIN_USER;

/// How to start a [`DevServer`].
#[derive(Clone, Debug)]
pub struct DevOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// CRDs installed (and established) before `start` returns.
    pub install_crds: Vec<CustomResourceDefinition>,
    /// How many changes the server remembers for watches and paged lists;
    /// older resourceVersions answer 410 Gone.
    pub event_history: usize,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
}

impl Default for DevOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            install_crds: Vec::new(),
            event_history: 10_000,
            bookmark_interval: Duration::from_secs(60),
        }
    }
}

/// The server could not start or a client could not be built for it.
#[derive(Debug, thiserror::Error)]
pub enum DevError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Certs(#[from] certs::CertError),
    #[error("cannot install CustomResourceDefinition {name}: {message}")]
    InstallCrd { name: String, message: String },
    #[error("cannot write kubeconfig {path}: {message}")]
    WriteKubeconfig { path: String, message: String },
    #[error("cannot build a client: {0}")]
    Client(String),
}

/// A running embedded API server.
pub struct DevServer {
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    api: Arc<http::Api>,
    handle: axum_server::Handle<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

/// A random bearer token (hex, 256 bits).
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

impl DevServer {
    /// Starts the server and returns once it accepts connections and `install_crds` are established.
    pub async fn start(opts: DevOptions) -> Result<DevServer, DevError> {
        // Err only means a provider is already installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener =
            std::net::TcpListener::bind(opts.listen).map_err(|source| DevError::Bind {
                addr: opts.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| DevError::Bind {
            addr: opts.listen,
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| DevError::Bind {
                addr: bound,
                source,
            })?;
        let addr = if bound.ip().is_unspecified() {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bound.port())
        } else {
            bound
        };
        let certs = certs::generate(Some(bound.ip()))?;
        let token = random_token();

        let mut state = state::State::new(opts.event_history, 4096);
        controllers::bootstrap(&mut state);
        controllers::reconcile(&mut state, &certs.ca_pem, None);
        for crd in &opts.install_crds {
            install_crd(&mut state, crd)?;
        }
        let api = Arc::new(http::Api {
            state: RwLock::new(state),
            token: token.clone(),
            server_address: addr.to_string(),
            shutdown: CancellationToken::new(),
            bookmark_interval: opts.bookmark_interval,
            tokens: token::TokenIssuer::random(),
        });

        let router = axum::Router::new()
            .fallback(http::handle)
            .with_state(api.clone());
        let handle = axum_server::Handle::new();
        let tls = axum_server::tls_rustls::RustlsConfig::from_config(certs.server_config.clone());
        let server = axum_server::from_tcp_rustls(listener, tls)
            .map_err(|source| DevError::Bind {
                addr: bound,
                source,
            })?
            .handle(handle.clone());
        let serve = tokio::spawn(async move {
            if let Err(e) = server.serve(router.into_make_service()).await {
                tracing::error!(error = %e, "embedded API server stopped");
            }
        });
        let ca_pem = certs.ca_pem.clone();
        let controllers = tokio::spawn(run_controllers(api.clone(), ca_pem.clone()));
        handle.listening().await;
        Ok(DevServer {
            addr,
            ca_pem,
            token,
            api,
            handle,
            tasks: vec![serve, controllers],
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA that signed the server's certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The public key ServiceAccount tokens are signed with (PEM), as the real server's
    /// `--service-account-key-file`: what JWT validators are configured with.
    pub fn service_account_public_key_pem(&self) -> String {
        self.api.tokens.public_key_pem()
    }

    /// A kubeconfig for the admin user (server `https://ADDR`, CA data, bearer token).
    pub fn kubeconfig(&self) -> Kubeconfig {
        let ca = base64::engine::general_purpose::STANDARD.encode(self.ca_pem.as_bytes());
        Kubeconfig {
            clusters: vec![NamedCluster {
                name: "kube-devserver".into(),
                cluster: Some(Cluster {
                    server: Some(format!("https://{}", self.addr)),
                    certificate_authority_data: Some(ca),
                    ..Cluster::default()
                }),
                other: Default::default(),
            }],
            auth_infos: vec![NamedAuthInfo {
                name: ADMIN_USER.into(),
                auth_info: Some(AuthInfo {
                    token: Some(self.token.clone().into()),
                    ..AuthInfo::default()
                }),
                other: Default::default(),
            }],
            contexts: vec![NamedContext {
                name: "kube-devserver".into(),
                context: Some(Context {
                    cluster: "kube-devserver".into(),
                    user: Some(ADMIN_USER.into()),
                    namespace: Some("default".into()),
                    ..Context::default()
                }),
                other: Default::default(),
            }],
            current_context: Some("kube-devserver".into()),
            api_version: Some("v1".into()),
            kind: Some("Config".into()),
            ..Kubeconfig::default()
        }
    }

    /// Writes [`kubeconfig`](Self::kubeconfig) to `path` (mode 0600: it holds the token).
    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), DevError> {
        let fail = |message: String| DevError::WriteKubeconfig {
            path: path.display().to_string(),
            message,
        };
        let text = bounded_yaml::to_string(&self.kubeconfig()).map_err(|e| fail(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        {
            use std::io::Write;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(&tmp).map_err(|e| fail(e.to_string()))?;
            file.write_all(text.as_bytes())
                .map_err(|e| fail(e.to_string()))?;
        }
        std::fs::rename(&tmp, path).map_err(|e| fail(e.to_string()))
    }

    /// A kube client for the admin user.
    pub async fn client(&self) -> Result<kube::Client, DevError> {
        let config =
            kube::Config::from_custom_kubeconfig(self.kubeconfig(), &KubeConfigOptions::default())
                .await
                .map_err(|e| DevError::Client(e.to_string()))?;
        kube::Client::try_from(config).map_err(|e| DevError::Client(e.to_string()))
    }

    /// Stops accepting requests, ends open watches and waits for the background tasks.
    pub async fn shutdown(mut self) {
        self.api.shutdown.cancel();
        self.handle.graceful_shutdown(Some(Duration::from_secs(2)));
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        self.api.shutdown.cancel();
        self.handle.shutdown();
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn install_crd(st: &mut state::State, crd: &CustomResourceDefinition) -> Result<(), DevError> {
    let name = crd.metadata.name.clone().unwrap_or_default();
    let fail = |message: String| DevError::InstallCrd {
        name: name.clone(),
        message,
    };
    let body = serde_json::to_value(crd).map_err(|e| fail(e.to_string()))?;
    let rt = st
        .registry
        .lookup("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .ok_or_else(|| fail("CustomResourceDefinitions are not served".into()))?;
    write::create(
        st,
        &rt,
        "",
        body,
        &write::WriteOptions::new("kube-devserver"),
    )
    .map_err(|e| fail(e.message))?;
    Ok(())
}

/// Runs the in-process controllers after every change until shutdown.
async fn run_controllers(api: Arc<http::Api>, root_ca: String) {
    let mut rx = api.state.read().await.store.subscribe();
    // The first pass looks at everything: writes may have come before the subscription.
    let mut handled = None;
    loop {
        tokio::select! {
            _ = api.shutdown.cancelled() => return,
            received = rx.recv() => {
                if matches!(received, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                    return;
                }
            }
        }
        // Coalesce a burst of changes into one pass.
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
            rx.try_recv()
        {}
        let mut st = api.state.write().await;
        handled = Some(controllers::reconcile(&mut st, &root_ca, handled));
    }
}
