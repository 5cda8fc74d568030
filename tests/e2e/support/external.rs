//! The external secrets tests' environment: the embedded API server with
//! sigil's CRDs, the controller running in-process against it, and helpers
//! to create objects from YAML and wait for results.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use kube_devserver::DevOptions;
use serde::de::DeserializeOwned;
use sigil::api::ExternalSecret;
use sigil::controller::Options;

use super::dev::{self, Cluster};

/// The controller's namespace in these tests.
pub const CONTROLLER_NAMESPACE: &str = "sigil-system";

/// The controller running in-process; stopped when dropped.
struct Controller {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Controller {
    fn start(client: kube::Client, options: Options) -> Self {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            if let Err(error) = sigil::operator::run(client, options, shutdown).await {
                panic!("controller failed: {error}");
            }
        });
        Self {
            stop: Some(stop),
            task,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.abort();
    }
}

/// A cluster with the controller running; both stop when dropped.
pub struct Env {
    /// The API server; kept alive for the test.
    pub _cluster: Cluster,
    pub client: kube::Client,
    options: Options,
    controller: Option<Controller>,
}

/// Starts the API server and the controller, with `tune` adjusting its options.
pub async fn start(tune: impl FnOnce(&mut Options)) -> Env {
    if std::env::var_os("RUST_LOG").is_some() {
        sigil::cli::init_tracing(sigil::cli::LogFormat::Text);
    }
    let cluster = dev::start_with(DevOptions {
        install_crds: sigil::api::crds(),
        ..Default::default()
    })
    .await;
    cluster.namespace(CONTROLLER_NAMESPACE).await;
    let client = cluster.client.clone();
    let mut options = Options {
        namespace: CONTROLLER_NAMESPACE.into(),
        http_listen: "127.0.0.1:0".parse().expect("address"),
        reload_debounce: Duration::from_millis(500),
        ..Default::default()
    };
    tune(&mut options);
    let controller = Controller::start(client.clone(), options.clone());
    Env {
        _cluster: cluster,
        client,
        options,
        controller: Some(controller),
    }
}

impl Env {
    /// Stops the controller and starts a new one (a restart or failover).
    pub async fn restart_controller(&mut self) {
        if let Some(controller) = self.controller.take() {
            controller.stop().await;
        }
        self.controller = Some(Controller::start(self.client.clone(), self.options.clone()));
    }
}

impl Env {
    /// Creates a namespace with labels.
    pub async fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let api: Api<Namespace> = Api::all(self.client.clone());
        let ns = Namespace {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .expect("create namespace");
    }

    /// Creates (or updates, by server-side apply) the namespaced object in `yaml`.
    pub async fn apply<K>(&self, yaml: &str) -> K
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = sigil::yaml::from_str(yaml).expect("valid test manifest");
        let api: Api<K> =
            Api::namespaced(self.client.clone(), &object.namespace().expect("namespace"));
        server_side_apply(&api, &object).await
    }

    /// Creates (or updates) the cluster-scoped object in `yaml`.
    pub async fn apply_cluster<K>(&self, yaml: &str) -> K
    where
        K: Resource<Scope = k8s_openapi::ClusterResourceScope>
            + Clone
            + DeserializeOwned
            + serde::Serialize
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        let object: K = sigil::yaml::from_str(yaml).expect("valid test manifest");
        let api: Api<K> = Api::all(self.client.clone());
        server_side_apply(&api, &object).await
    }

    /// An Opaque Secret with string values.
    pub async fn secret(&self, namespace: &str, name: &str, data: &[(&str, &str)]) {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                ..Default::default()
            },
            string_data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        };
        api.patch(
            name,
            &PatchParams::apply("e2e").force(),
            &Patch::Apply(&secret),
        )
        .await
        .expect("apply Secret");
    }

    /// The data of a Secret as UTF-8 strings, if it exists.
    pub async fn secret_data(
        &self,
        namespace: &str,
        name: &str,
    ) -> Option<BTreeMap<String, String>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let secret = api.get_opt(name).await.expect("get Secret")?;
        Some(
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, String::from_utf8(v.0).expect("utf-8 value")))
                .collect(),
        )
    }

    pub async fn get_secret(&self, namespace: &str, name: &str) -> Option<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.expect("get Secret")
    }

    pub async fn external_secret(&self, namespace: &str, name: &str) -> ExternalSecret {
        let api: Api<ExternalSecret> = Api::namespaced(self.client.clone(), namespace);
        api.get(name).await.expect("get ExternalSecret")
    }

    /// Waits until the ExternalSecret's Ready condition has `status` and returns its reason.
    pub async fn wait_condition(
        &self,
        namespace: &str,
        name: &str,
        status: &str,
        within: Duration,
    ) -> ExternalSecret {
        wait_for(
            &format!("ExternalSecret {namespace}/{name} Ready={status}"),
            within,
            || async {
                let es = self.external_secret(namespace, name).await;
                let ready = es
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))?;
                (ready.status == status && ready.observed_generation == es.metadata.generation)
                    .then_some(es.clone())
            },
        )
        .await
    }
}

async fn server_side_apply<K>(api: &Api<K>, object: &K) -> K
where
    K: Resource + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    api.patch(
        &object.name_any(),
        &PatchParams::apply("e2e").force(),
        &Patch::Apply(object),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {}: {e}", object.name_any()))
}

/// Polls `check` every 100 ms until it returns Some, for at most `within`.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_every(what, within, Duration::from_millis(100), check).await
}

/// Polls `check` every `every` until it returns Some, for at most `within`.
pub async fn wait_for_every<T, F, Fut>(
    what: &str,
    within: Duration,
    every: Duration,
    mut check: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(every).await;
    }
}

/// The Ready condition's reason and message.
pub fn ready_reason(es: &ExternalSecret) -> (String, String) {
    es.status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default()
}
