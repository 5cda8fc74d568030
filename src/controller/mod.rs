//! The operator: every controller runs in one process and shares a [`Context`].
//!
//! `sigil controller` (and `sigil dev`) call [`run`]; each controller module
//! exposes `async fn run(ctx: Arc<Context>)` that returns when
//! `ctx.shutdown` is cancelled.

pub mod context;
pub mod error;
pub mod keyring;
pub mod metrics;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use context::Context;
pub use error::Error;

/// Settings of the operator, from `sigil controller`'s flags.
#[derive(Clone, Debug)]
pub struct Options {
    /// Namespace the controller keeps its keys, recipients ConfigMap and lease in.
    pub namespace: String,
    /// Address of the HTTP port: health, metrics, recipients, webhooks.
    pub http_listen: SocketAddr,
    /// How often a new sealing key becomes active; zero never renews.
    pub key_renew_period: Duration,
    /// Offline recovery recipients every value is also sealed to.
    pub recovery_recipients: Vec<String>,
    /// Reconciles running at once, per controller.
    pub concurrency: u16,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            namespace: "sigil-system".to_string(),
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            key_renew_period: Duration::from_secs(720 * 3600),
            recovery_recipients: Vec::new(),
            concurrency: 10,
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
    let controllers = run_controllers(ctx.clone());
    tracing::info!(namespace = %ctx.options.namespace, "controller started");
    let (served, ()) = tokio::join!(server, controllers);
    served?;
    tracing::info!("controller stopped");
    Ok(())
}

/// Every controller, concurrently; marks the process ready once they started.
async fn run_controllers(ctx: Arc<Context>) {
    ctx.set_ready(true);
    ctx.shutdown.cancelled().await;
}
