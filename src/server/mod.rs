//! The controller's HTTP port: `/healthz`, `/readyz`, `/metrics`, and the routes
//! other modules add (`/v1/recipients`, `/hooks/...`).

pub mod decrypt_limit;
mod health;
pub mod hooks;
pub mod recipients;

use std::sync::Arc;

use axum::Router;

use crate::controller::{Context, Error};

/// Every route of the HTTP port.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .merge(health::router())
        .merge(hooks::router())
        .merge(recipients::router())
        .with_state(ctx)
}

/// Serves [`router`] on `ctx.options.http_listen` until shutdown.
pub async fn serve(ctx: Arc<Context>) -> Result<(), Error> {
    let addr = ctx.options.http_listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Serve { addr, source })?;
    tracing::info!(%addr, "serving health, metrics and webhooks");
    let shutdown = ctx.shutdown.clone();
    // Connection info lets the webhook receiver rate-limit invalid calls per client.
    axum::serve(
        listener,
        router(ctx).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .map_err(|source| Error::Serve { addr, source })
}
