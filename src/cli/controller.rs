//! `sigil controller`: the operator.

use std::net::SocketAddr;

use crate::controller::{self, Options};

/// Arguments of `sigil controller`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path to a kubeconfig; without it, KUBECONFIG or the in-cluster config is used.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: Option<std::path::PathBuf>,
    /// Namespace of the controller's keys, recipients ConfigMap and lease.
    #[arg(
        long,
        short = 'n',
        default_value = "sigil-system",
        env = "POD_NAMESPACE"
    )]
    pub namespace: String,
    /// Reconcile objects of this namespace only (single-tenant installs whose RBAC
    /// covers one namespace); ClusterSecretStores are then not watched.
    #[arg(long, value_name = "NAMESPACE")]
    pub watch_namespace: Option<String>,
    /// Address of the HTTP port (health, metrics, recipients, webhooks).
    #[arg(long, default_value = "0.0.0.0:8080")]
    pub http_listen: SocketAddr,
    /// How often a new sealing key becomes active (e.g. 720h); 0 never renews.
    #[arg(long, default_value = "720h", value_parser = parse_duration)]
    pub key_renew_period: std::time::Duration,
    /// An age recipient every value is also sealed to, for offline recovery (repeatable).
    #[arg(long = "recovery-recipient", value_name = "AGE1...")]
    pub recovery_recipients: Vec<String>,
    /// Reconciles running at once, per controller.
    #[arg(long, default_value_t = 10)]
    pub concurrency: u16,
    /// Elect a leader on a Lease so that of several replicas only one writes.
    #[arg(long)]
    pub leader_elect: bool,
    /// This process's shard, from 0 to --shards - 1.
    #[arg(long, default_value_t = 0)]
    pub shard: u32,
    /// Number of shards the objects are split between (each with its own leader).
    #[arg(long, default_value_t = 1)]
    pub shards: u32,
    /// ExternalSecrets synced at once; as many more are reserved for new or changed ones.
    #[arg(long, default_value_t = 10)]
    pub external_secret_concurrency: u16,
    /// Requests per second sent to one SecretStore's backend, at most.
    #[arg(long, default_value_t = 10)]
    pub store_requests_per_second: u32,
    /// Read each ExternalSecret's keys on its own, one backend request per key, as External
    /// Secrets Operator does: no deduplication, batching, sharing or read-ahead. A baseline for
    /// comparing backend load (scripts/bench.sh); it multiplies the calls, so not for production.
    #[arg(long)]
    pub per_object_reads: bool,
    /// Secrets rotating within this window restart a workload once (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub reload_debounce: std::time::Duration,
    /// The kustomize program: a `kustomize` binary, or `kubectl` (runs `kubectl kustomize`);
    /// default: `kustomize`, else `kubectl`, on PATH.
    #[arg(long, value_name = "PATH")]
    pub kustomize_binary: Option<std::path::PathBuf>,
    /// The helm program (v3 or v4); default: `helm` on PATH.
    #[arg(long, value_name = "PATH")]
    pub helm_binary: Option<std::path::PathBuf>,
    /// How long one kustomize or helm render may take.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub render_timeout: std::time::Duration,
    /// Bytes a render may print, at most.
    #[arg(long, default_value_t = 32 << 20)]
    pub render_max_output: u64,
    /// Let kustomize run exec and KRM function plugins (refused by default).
    #[arg(long)]
    pub render_allow_plugins: bool,
}

fn parse_duration(
    text: &str,
) -> Result<std::time::Duration, crate::api::duration::InvalidDuration> {
    crate::api::duration::parse(text)
}

/// Why the controller stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ControllerCliError {
    #[error("cannot load Kubernetes config: {0}")]
    Config(String),
    #[error(transparent)]
    Shard(#[from] controller::shard::InvalidShard),
    #[error(transparent)]
    Run(#[from] controller::Error),
}

/// Builds a client the way kubectl does: `--kubeconfig`, then KUBECONFIG, then in-cluster.
pub async fn client(
    kubeconfig: Option<&std::path::Path>,
) -> Result<kube::Client, ControllerCliError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| ControllerCliError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| ControllerCliError::Config(e.to_string()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| ControllerCliError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| ControllerCliError::Config(e.to_string()))
}

/// Runs the operator until SIGTERM or Ctrl-C.
pub async fn run(args: Args) -> Result<(), ControllerCliError> {
    let client = client(args.kubeconfig.as_deref()).await?;
    let options = Options {
        namespace: args.namespace,
        watch_namespace: args.watch_namespace,
        http_listen: args.http_listen,
        key_renew_period: args.key_renew_period,
        recovery_recipients: args.recovery_recipients,
        concurrency: args.concurrency,
        leader_elect: args.leader_elect,
        shard: controller::Shard::new(args.shard, args.shards)?,
        external_secret_concurrency: args.external_secret_concurrency,
        store_requests_per_second: args.store_requests_per_second,
        per_object_reads: args.per_object_reads,
        reload_debounce: args.reload_debounce,
        render: crate::manifests::render::RenderOptions {
            kustomize: args.kustomize_binary,
            helm: args.helm_binary,
            limits: crate::manifests::render::Limits {
                timeout: args.render_timeout,
                max_output: args.render_max_output,
            },
            allow_plugins: args.render_allow_plugins,
        },
    };
    crate::operator::run(client, options, shutdown_signal()).await?;
    Ok(())
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
