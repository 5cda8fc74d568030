//! Settings of the operator, from `sigil controller`'s flags.

use std::net::SocketAddr;
use std::time::Duration;

use super::Shard;

/// Settings of the operator, from `sigil controller`'s flags.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace the controller keeps its keys, recipients ConfigMap and lease in.
    pub namespace: String,
    /// Only this namespace's objects are reconciled; None: every namespace.
    pub watch_namespace: Option<String>,
    /// Address of the HTTP port: health, metrics, recipients, webhooks.
    pub http_listen: SocketAddr,
    /// How often a new sealing key becomes active; zero never renews.
    pub key_renew_period: Duration,
    /// Offline recovery recipients every value is also sealed to.
    pub recovery_recipients: Vec<String>,
    /// Reconciles running at once, per controller.
    pub concurrency: u16,
    /// Wait for a Lease before writing anything, so only one replica (per shard) acts.
    pub leader_elect: bool,
    /// The part of the objects this process reconciles.
    pub shard: Shard,
    /// ExternalSecrets synced at once (and as many more for new or changed ones).
    pub external_secret_concurrency: u16,
    /// Requests per second sigil sends to one secret store, at most.
    pub store_requests_per_second: u32,
    /// Read every ExternalSecret's keys on their own, as External Secrets Operator does
    /// (benchmark baseline): no deduplication, batching, sharing or read-ahead.
    pub per_object_reads: bool,
    /// Secret changes within this window restart a workload once.
    pub reload_debounce: Duration,
    /// The programs and bounds of Kustomize and Helm renders.
    pub render: crate::manifests::render::RenderOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "sigil-system".to_string(),
            watch_namespace: None,
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            key_renew_period: Duration::from_secs(720 * 3600),
            recovery_recipients: Vec::new(),
            concurrency: 10,
            leader_elect: false,
            shard: Shard::default(),
            external_secret_concurrency: 10,
            store_requests_per_second: 10,
            per_object_reads: false,
            reload_debounce: Duration::from_secs(10),
            render: Default::default(),
        }
    }
}
