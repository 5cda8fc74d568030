//! The operator process: starts every controller and the HTTP port, with leader election.
//!
//! `sigil controller` (and `sigil dev`) call [`run`].

pub mod leader;

use std::future::Future;
use std::sync::Arc;

use crate::controller::{
    Context, Error, Options, external_secret, git_source, sealed_secret, sealing_keys, sync,
};
use crate::git::Cache;
use crate::server;

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

    let server = server::serve(ctx.clone());
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
    let keys = sealing_keys::KeyringHandle::default();
    let sealing = tokio::spawn(sealing_keys::run(ctx.clone(), keys.clone()));
    let sealed = tokio::spawn(sealed_secret::run(ctx.clone(), keys));
    let gitops = tokio::spawn(run_gitops(ctx.clone()));
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

/// The GitSource and Sync controllers, sharing one Git cache (a fresh folder per process,
/// removed at shutdown).
pub async fn run_gitops(ctx: Arc<Context>) {
    let cache = Arc::new(Cache::temporary());
    tokio::join!(
        git_source::run(ctx.clone(), cache.clone()),
        sync::run(ctx, cache)
    );
}
