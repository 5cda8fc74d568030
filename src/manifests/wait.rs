//! Waiting for applied objects to become healthy ([`super::health`]) within a timeout, polling
//! them as the Sync's identity. A Failed object ends the wait at once (a stuck rollout is
//! reported when the Deployment says so, not at the timeout).

use std::time::{Duration, Instant};

use super::client::Target;
use super::discovery::Resolver;
use super::health::Health;
use super::health_expr::HealthExprs;
use super::object::describe;
use crate::api::sync::InventoryEntry;

/// How often objects are read again while waiting.
pub const POLL: Duration = Duration::from_secs(1);

/// The health of the live object an inventory entry names, by `exprs` for the kinds they name.
pub async fn live_health(
    target: &Target,
    resolver: &Resolver,
    entry: &InventoryEntry,
    exprs: &HealthExprs,
) -> Health {
    let kind = match resolver.resolve(&entry.api_version, &entry.kind).await {
        Ok(Some(kind)) => kind,
        Ok(None) => return Health::InProgress(format!("{} is not served", entry.api_version)),
        Err(e) => return Health::InProgress(format!("discovery failed: {e}")),
    };
    let namespace = kind.namespaced.then_some(entry.namespace.as_str());
    match target.get(&kind.resource, namespace, &entry.name).await {
        Ok(object) => exprs.judge(object.as_ref()),
        Err(e) => Health::InProgress(format!("cannot read it: {e}")),
    }
}

/// How a wait ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WaitOutcome {
    Healthy,
    /// An object reported Failed.
    Failed {
        object: String,
        why: String,
    },
    /// The timeout passed with these objects not yet Current.
    TimedOut {
        pending: Vec<(String, String)>,
    },
}

impl WaitOutcome {
    /// A condition message naming the object(s) and why.
    pub fn message(&self) -> String {
        match self {
            WaitOutcome::Healthy => "all objects are healthy".into(),
            WaitOutcome::Failed { object, why } => format!("{object} failed: {why}"),
            WaitOutcome::TimedOut { pending } => format!(
                "timeout waiting for {} object(s): {}",
                pending.len(),
                listing(pending)
            ),
        }
    }
}

fn listing(pending: &[(String, String)]) -> String {
    pending
        .iter()
        .map(|(object, why)| format!("{object} ({why})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The objects not yet Current, `(Kind namespace/name, why)`, or the first Failed one.
async fn round(
    target: &Target,
    resolver: &Resolver,
    entries: &[InventoryEntry],
    exprs: &HealthExprs,
) -> Result<Vec<(String, String)>, (String, String)> {
    let mut pending = Vec::new();
    for entry in entries {
        match live_health(target, resolver, entry, exprs).await {
            Health::Current(_) => {}
            Health::Failed(why) => return Err((describe(entry), why)),
            Health::InProgress(why) => pending.push((describe(entry), why)),
        }
    }
    Ok(pending)
}

/// Polls until every entry is Current, one is Failed, or `timeout` passes. `progress` is told
/// what is still pending whenever that changes (to publish `Reconciling`).
pub async fn wait_healthy<F, Fut>(
    target: &Target,
    resolver: &Resolver,
    entries: &[InventoryEntry],
    exprs: &HealthExprs,
    timeout: Duration,
    poll: Duration,
    mut progress: F,
) -> WaitOutcome
where
    F: FnMut(String) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let pending = match round(target, resolver, entries, exprs).await {
            Ok(pending) if pending.is_empty() => return WaitOutcome::Healthy,
            Ok(pending) => pending,
            Err((object, why)) => return WaitOutcome::Failed { object, why },
        };
        if Instant::now() + poll > deadline {
            return WaitOutcome::TimedOut { pending };
        }
        let message = format!(
            "waiting for {} object(s) to become healthy: {}",
            pending.len(),
            listing(&pending)
        );
        if message != last {
            last = message.clone();
            progress(message).await;
        }
        tokio::time::sleep(poll).await;
    }
}
