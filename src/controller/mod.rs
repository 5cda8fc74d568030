//! The operator: every controller runs in one process and shares a [`Context`].
//!
//! `sigil controller` (and `sigil dev`) call [`run`]; each controller module
//! exposes `async fn run(ctx: Arc<Context>)` that returns when
//! `ctx.shutdown` is cancelled.

pub mod context;
pub mod error;
pub mod external_secret;
pub mod git_source;
pub mod keyring;
pub mod leader;
pub mod metrics;
pub mod reload;
pub mod sealed_secret;
pub mod secret_store;
pub mod shard;
pub mod sync;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use context::Context;
pub use error::Error;
pub use shard::Shard;

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
    /// Secret changes within this window restart a workload once.
    pub reload_debounce: Duration,
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
            reload_debounce: Duration::from_secs(10),
        }
    }
}

/// Runs the HTTP port and every controller until `shutdown` completes.
pub async fn run(
    client: kube::Client,
    options: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let ctx = Arc::new(Context::new(client, options));
    let token = ctx.shutdown.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });

    let server = crate::server::serve(ctx.clone());
    let controllers = lead_then_run(ctx.clone());
    tracing::info!(namespace = %ctx.options.namespace, shard = ctx.options.shard.index, shards = ctx.options.shard.count, "controller started");
    let (served, led) = tokio::join!(server, controllers);
    served?;
    led?;
    tracing::info!("controller stopped");
    Ok(())
}

/// With leader election, waits for the shard's Lease before starting the
/// controllers, and stops the process when leadership is lost (a restarted
/// replica rejoins as a standby), so two replicas never write at once.
async fn lead_then_run(ctx: Arc<Context>) -> Result<(), Error> {
    if !ctx.options.leader_elect {
        run_controllers(ctx).await;
        return Ok(());
    }
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("sigil-{}", uuid::Uuid::new_v4()));
    let config = leader::LeaderConfig::new(
        &ctx.options.namespace,
        &ctx.options.shard.lease_name(),
        &identity,
    );
    // A standby is healthy and ready; it just does not write.
    ctx.set_ready(true);
    let Some(leadership) = leader::acquire(ctx.client.clone(), config, ctx.shutdown.clone()).await
    else {
        return Ok(());
    };
    let lost = leadership.lost.clone();
    let controllers = run_controllers(ctx.clone());
    tokio::select! {
        () = controllers => {
            // Shut down: the controllers stopped writing, so hand the lease over now.
            leadership.step_down().await;
            Ok(())
        }
        () = lost.cancelled() => {
            ctx.shutdown.cancel();
            Err(Error::LeadershipLost)
        }
    }
}

/// Every controller, concurrently; marks the process ready once they started.
async fn run_controllers(ctx: Arc<Context>) {
    let keys = keyring::KeyringHandle::default();
    let sealing = tokio::spawn(keyring::run(ctx.clone(), keys.clone()));
    let sealed = tokio::spawn(sealed_secret::run(ctx.clone(), keys));
    let gitops = tokio::spawn(sync::run_with_sources(ctx.clone()));
    ctx.set_ready(true);
    let reload = tokio::spawn({
        let ctx = ctx.clone();
        async move {
            ctx.reloader
                .run(ctx.client.clone(), ctx.shutdown.clone())
                .await
        }
    });
    let external = tokio::spawn(external_secret::run(ctx.clone()));
    ctx.shutdown.cancelled().await;
    let _ = tokio::join!(sealing, sealed, gitops, reload, external);
}
