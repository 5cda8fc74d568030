//! How every kube-runtime controller of sigil is run: the process's concurrency, a graceful stop
//! on shutdown, and failures logged the same way.

use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::Resource;
use kube::runtime::controller::{Action, Config, Controller};
use serde::de::DeserializeOwned;

use super::Context;
use super::status::StatusError;

/// How soon a reconcile whose status could not be written is retried, unless the controller has
/// its own backoff.
const RETRY: Duration = Duration::from_secs(10);

/// The error policy of controllers without their own backoff: log, retry in [`RETRY`].
pub fn retry_soon<K, S>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &StatusError, Arc<S>) -> Action {
    move |_, error, _| {
        tracing::warn!(controller, %error, "reconcile failed");
        Action::requeue(RETRY)
    }
}

/// Runs `controller` until `ctx.shutdown`, at most `ctx.options.concurrency` reconciles at once.
/// Trigger errors (a watch restarting) are logged at debug: kube's watcher retries them itself.
pub async fn run<K, S, F>(
    ctx: &Context,
    name: &'static str,
    controller: Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<S>) -> F,
    error_policy: impl Fn(Arc<K>, &StatusError, Arc<S>) -> Action,
    state: Arc<S>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    F: Future<Output = Result<Action, StatusError>> + Send + 'static,
    S: Send + Sync + 'static,
{
    tracing::info!(controller = name, "starting");
    controller
        .with_config(Config::default().concurrency(ctx.options.concurrency))
        .graceful_shutdown_on(ctx.shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(controller = name, %error, "reconcile trigger");
            }
        })
        .await;
}

/// [`run`] with the [`retry_soon`] error policy.
pub async fn run_retrying_soon<K, S, F>(
    ctx: &Context,
    name: &'static str,
    controller: Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<S>) -> F,
    state: Arc<S>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Debug + Unpin,
    F: Future<Output = Result<Action, StatusError>> + Send + 'static,
    S: Send + Sync + 'static,
{
    run(ctx, name, controller, reconcile, retry_soon(name), state).await;
}
