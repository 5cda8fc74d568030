//! The GitSource and Sync controllers running in-process against the embedded API server,
//! with the controller's HTTP port (webhooks) on a loopback port of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use sigil::api::git_source::GitSource;
use sigil::api::sync::Sync as SyncResource;
use sigil::controller::{Context, Options};

use super::dev::{Cluster, start_with};

/// A cluster with sigil's CRDs, the controllers, and their HTTP port.
pub struct GitOps {
    pub cluster: Cluster,
    pub ctx: Arc<Context>,
    /// Where `/hooks/...` is served.
    pub http: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for GitOps {
    fn drop(&mut self) {
        self.ctx.shutdown.cancel();
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl GitOps {
    pub async fn start() -> Self {
        let cluster = start_with(sigil::dev::DevOptions {
            install_crds: sigil::api::crds(),
            ..Default::default()
        })
        .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let http = listener.local_addr().expect("address");
        let options = Options {
            http_listen: http,
            ..Options::default()
        };
        let ctx = Arc::new(Context::new(cluster.client.clone(), options));
        let controllers = tokio::spawn(sigil::controller::sync::run_with_sources(ctx.clone()));
        let shutdown = ctx.shutdown.clone();
        let router = sigil::server::router(ctx.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        });
        Self {
            cluster,
            ctx,
            http,
            tasks: vec![controllers, server],
        }
    }

    pub fn client(&self) -> kube::Client {
        self.cluster.client.clone()
    }

    /// Creates a GitSource from YAML.
    pub async fn create_source(&self, namespace: &str, yaml: &str) -> GitSource {
        let source: GitSource = sigil::yaml::from_str(yaml).expect("GitSource YAML");
        Api::<GitSource>::namespaced(self.client(), namespace)
            .create(&PostParams::default(), &source)
            .await
            .expect("create GitSource")
    }

    /// Creates a Sync from YAML.
    pub async fn create_sync(&self, namespace: &str, yaml: &str) -> SyncResource {
        let sync: SyncResource = sigil::yaml::from_str(yaml).expect("Sync YAML");
        Api::<SyncResource>::namespaced(self.client(), namespace)
            .create(&PostParams::default(), &sync)
            .await
            .expect("create Sync")
    }

    pub async fn sync(&self, namespace: &str, name: &str) -> SyncResource {
        Api::<SyncResource>::namespaced(self.client(), namespace)
            .get(name)
            .await
            .expect("get Sync")
    }

    pub async fn source(&self, namespace: &str, name: &str) -> GitSource {
        Api::<GitSource>::namespaced(self.client(), namespace)
            .get(name)
            .await
            .expect("get GitSource")
    }

    /// Waits until the Sync's status satisfies `check`; panics with the status after `timeout`.
    pub async fn wait_sync(
        &self,
        namespace: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&SyncResource) -> bool,
    ) -> SyncResource {
        let deadline = Instant::now() + timeout;
        loop {
            let sync = self.sync(namespace, name).await;
            if check(&sync) {
                return sync;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for Sync {namespace}/{name}: {what}; status: {:#?}",
                sync.status
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Events about an object, oldest first.
    pub async fn events(&self, namespace: &str, name: &str) -> Vec<Event> {
        let mut events: Vec<Event> = Api::<Event>::namespaced(self.client(), namespace)
            .list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .collect();
        events.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
        events
    }
}

/// The Ready condition's (status, reason, message) of a Sync.
pub fn ready(sync: &SyncResource) -> Option<(String, String, String)> {
    condition(sync, "Ready")
}

/// A condition's (status, reason, message).
pub fn condition(sync: &SyncResource, type_: &str) -> Option<(String, String, String)> {
    sync.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls `check` every 50 ms until it returns Some, for up to `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
