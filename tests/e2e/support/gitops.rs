//! The controller running in-process against the embedded API server, as `sigil controller`
//! runs it, with its HTTP port (webhooks) on a loopback port chosen at run time.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{Api, ListParams, PostParams};
use sigil::api::git_source::GitSource;
use sigil::api::sync::ManifestSync;
use sigil::controller::Options;
use tokio_util::sync::CancellationToken;

use super::dev::{Cluster, start_with as start_cluster};
use kube_devserver::testing::poll;

/// Namespace of the controller (keys, recipients).
pub const CONTROLLER_NAMESPACE: &str = "sigil-system";

/// A cluster with sigil's CRDs and the whole controller (`sigil::operator::run`: sealed
/// secrets, GitSource, Sync, and the HTTP port with the webhook receiver).
pub struct GitOps {
    pub cluster: Cluster,
    /// Where the controller's HTTP port (`/hooks/...`) listens.
    pub http: SocketAddr,
    stop: CancellationToken,
    controller: tokio::task::JoinHandle<Result<(), sigil::controller::Error>>,
}

impl Drop for GitOps {
    fn drop(&mut self) {
        self.stop.cancel();
        self.controller.abort();
    }
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address")
}

impl GitOps {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the default options as `configure` changes them.
    pub async fn start_with(configure: impl FnOnce(&mut Options)) -> Self {
        let cluster = start_cluster(kube_devserver::DevOptions {
            install_crds: sigil::api::crds(),
            ..Default::default()
        })
        .await;
        cluster.namespace(CONTROLLER_NAMESPACE).await;
        let http = free_port();
        let mut options = Options {
            namespace: CONTROLLER_NAMESPACE.to_string(),
            http_listen: http,
            concurrency: 4,
            ..Options::default()
        };
        configure(&mut options);
        let stop = CancellationToken::new();
        let token = stop.clone();
        let controller = tokio::spawn(sigil::operator::run(
            cluster.client.clone(),
            options,
            async move { token.cancelled().await },
        ));
        let ready = format!("http://{http}/readyz");
        wait_for("the controller's /readyz", Duration::from_secs(20), || {
            let ready = ready.clone();
            async move {
                let response = crate::support::http::get(&ready).await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        Self {
            cluster,
            http,
            stop,
            controller,
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

    /// Creates the GitSource `fleet` on `url` (polled hourly) that takes webhooks carrying `token`,
    /// kept in the Secret `hook`.
    pub async fn create_webhook_source(
        &self,
        namespace: &str,
        url: &str,
        token: &str,
    ) -> GitSource {
        let secret = Secret {
            metadata: kube::api::ObjectMeta {
                name: Some("hook".into()),
                ..Default::default()
            },
            string_data: Some([("token".to_string(), token.to_string())].into()),
            ..Default::default()
        };
        Api::<Secret>::namespaced(self.client(), namespace)
            .create(&PostParams::default(), &secret)
            .await
            .expect("webhook Secret");
        self.create_source(
            namespace,
            &fleet_source_yaml(url, "1h", "  webhookSecretRef:\n    name: hook\n"),
        )
        .await
    }

    /// Creates a Sync from YAML.
    pub async fn create_sync(&self, namespace: &str, yaml: &str) -> ManifestSync {
        let sync: ManifestSync = sigil::yaml::from_str(yaml).expect("Sync YAML");
        Api::<ManifestSync>::namespaced(self.client(), namespace)
            .create(&PostParams::default(), &sync)
            .await
            .expect("create Sync")
    }

    pub async fn sync(&self, namespace: &str, name: &str) -> ManifestSync {
        Api::<ManifestSync>::namespaced(self.client(), namespace)
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
        check: impl Fn(&ManifestSync) -> bool,
    ) -> ManifestSync {
        let last = std::cell::RefCell::new(None);
        let found = poll(timeout, Duration::from_millis(50), || async {
            let sync = self.sync(namespace, name).await;
            if check(&sync) {
                return Some(sync);
            }
            *last.borrow_mut() = Some(sync);
            None
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "timed out waiting for Sync {namespace}/{name}: {what}; status: {:#?}",
                last.into_inner().and_then(|s| s.status)
            )
        })
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
/// The GitSource `fleet` on `url`, polled every `interval`, with `extra` spec lines.
pub fn fleet_source_yaml(url: &str, interval: &str, extra: &str) -> String {
    format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: GitSource\nmetadata:\n  name: fleet\nspec:\n  url: {url}\n  interval: {interval}\n{extra}"
    )
}

pub fn ready(sync: &ManifestSync) -> Option<(String, String, String)> {
    condition(sync, "Ready")
}

/// A condition's (status, reason, message).
pub fn condition(sync: &ManifestSync, type_: &str) -> Option<(String, String, String)> {
    sync.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Polls `check` every 50 ms until it returns Some, for up to `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    kube_devserver::testing::wait_for(what, timeout, Duration::from_millis(50), check).await
}
