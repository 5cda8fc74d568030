//! State every controller shares: the client, options, metrics, events and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kube::runtime::events::Reporter;
use tokio_util::sync::CancellationToken;

use super::Options;
use super::events::Recorders;
use super::metrics::Metrics;

/// Shared by every controller and the HTTP port.
pub struct Context {
    pub client: kube::Client,
    pub options: Options,
    pub metrics: Arc<Metrics>,
    /// Publishes Events as `sigil`.
    pub recorder: Recorders,
    /// Cancelled when the process should stop.
    pub shutdown: CancellationToken,
    /// Restarts workloads using a Secret whose data changed (see [`super::reload`]).
    pub reloader: super::reload::Reloader,
    ready: AtomicBool,
}

impl Context {
    pub fn new(client: kube::Client, options: Options) -> Self {
        let reporter = Reporter {
            controller: crate::api::FIELD_MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let reloader = super::reload::Reloader::new(options.reload_debounce);
        Self {
            recorder: Recorders::new(&client, &reporter),
            client,
            options,
            metrics: Arc::new(Metrics::default()),
            shutdown: CancellationToken::new(),
            reloader,
            ready: AtomicBool::new(false),
        }
    }

    /// Whether this process's shard reconciles `object`; controllers skip the rest.
    pub fn owns(&self, object: &impl kube::ResourceExt) -> bool {
        self.options.shard.owns_object(object)
    }

    /// The API of a namespaced kind as the controllers watch it: every namespace,
    /// or only `--watch-namespace`.
    pub fn watched<K>(&self) -> kube::Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        match &self.options.watch_namespace {
            Some(namespace) => kube::Api::namespaced(self.client.clone(), namespace),
            None => kube::Api::all(self.client.clone()),
        }
    }

    /// Whether every controller has started (`/readyz`).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }
}
