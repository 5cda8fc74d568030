//! The GitSource controller: fetches `spec.url` at `spec.ref` every `spec.interval` into the
//! process's Git cache and reports `status.artifact.revision`.
//!
//! A fetch whose remote ref did not move downloads nothing and writes no status. The
//! `sigil.dev/reconcile-requested-at` annotation (set by `kubectl annotate` or by the webhook
//! receiver) forces an immediate fetch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::Context;
use super::sync::schedule::Schedule;
use crate::api::common::LocalObjectReference;
use crate::api::conditions::{ConditionUpdate, set_condition};
use crate::api::git_source::{Artifact, GitSource, GitSourceStatus};
use crate::git::{Cache, Credentials, FetchError, Fetched, Reference};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "gitsource";
/// Changing this annotation (any value, usually a timestamp) forces a reconcile.
pub const REQUESTED_AT_ANNOTATION: &str = "sigil.dev/reconcile-requested-at";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest interval honoured (GitSource and Sync).
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// A reconcile failed in a way the status could not record.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("GitSource {0}: cannot write status: {1}")]
    Status(String, #[source] kube::Error),
}

struct State {
    ctx: Arc<Context>,
    cache: Arc<Cache>,
    schedule: Schedule,
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>, cache: Arc<Cache>) {
    let api = ctx.watched::<GitSource>();
    let state = Arc::new(State {
        ctx: ctx.clone(),
        cache,
        schedule: Schedule::default(),
    });
    Controller::new(api, watcher::Config::default())
        .with_config(
            kube::runtime::controller::Config::default().concurrency(ctx.options.concurrency),
        )
        .graceful_shutdown_on(ctx.shutdown.clone().cancelled_owned())
        .run(reconcile, error_policy, state)
        .for_each(|result| async move {
            if let Err(err) = result {
                tracing::debug!(controller = CONTROLLER, error = %err, "reconcile");
            }
        })
        .await;
}

fn error_policy(_: Arc<GitSource>, err: &Error, _: Arc<State>) -> Action {
    tracing::warn!(controller = CONTROLLER, error = %err, "reconcile failed");
    Action::requeue(Duration::from_secs(10))
}

/// The value of `sigil.dev/reconcile-requested-at`, if set.
pub fn requested_at(object: &impl ResourceExt) -> Option<String> {
    object.annotations().get(REQUESTED_AT_ANNOTATION).cloned()
}

/// `spec.interval`, or the default.
fn interval(text: Option<&str>, default: Duration) -> Result<Duration, String> {
    match text {
        None => Ok(default),
        Some(text) => crate::api::duration::parse(text).map_err(|e| e.to_string()),
    }
}

/// The credentials of `spec.secretRef` (in the source's namespace).
pub async fn credentials(
    client: &kube::Client,
    namespace: &str,
    secret_ref: Option<&LocalObjectReference>,
) -> Result<Credentials, FetchError> {
    let Some(secret_ref) = secret_ref else {
        return Ok(Credentials::default());
    };
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(&secret_ref.name)
        .await
        .map_err(|e| FetchError::Credentials(format!("Secret {}: {e}", secret_ref.name)))?
        .ok_or_else(|| {
            FetchError::Credentials(format!("Secret {namespace}/{} not found", secret_ref.name))
        })?;
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    Credentials::from_secret_data(&secret_ref.name, &data)
}

/// Fetches the source's reference into the cache.
pub async fn fetch(
    client: &kube::Client,
    cache: &Cache,
    source: &GitSource,
    reference: Reference,
) -> Result<Fetched, FetchError> {
    let namespace = source.namespace().unwrap_or_default();
    let credentials = credentials(client, &namespace, source.spec.secret_ref.as_ref()).await?;
    let dir = cache.repo_dir(&namespace, &source.name_any(), &source.spec.url);
    cache
        .fetch(
            dir,
            source.spec.url.clone(),
            reference,
            credentials,
            FETCH_TIMEOUT,
        )
        .await
}

async fn reconcile(source: Arc<GitSource>, state: Arc<State>) -> Result<Action, Error> {
    let ctx = &state.ctx;
    let namespace = source.namespace().unwrap_or_default();
    let name = source.name_any();
    let key = format!("{namespace}/{name}");
    if !ctx.owns(&*source) || source.meta().deletion_timestamp.is_some() {
        state.schedule.forget(&key);
        return Ok(Action::await_change());
    }
    if source.spec.suspend {
        return Ok(Action::await_change());
    }
    let requested = requested_at(&*source);
    let generation = source.metadata.generation;
    let trigger = format!(
        "{}|{}",
        generation.unwrap_or(0),
        requested.as_deref().unwrap_or("")
    );
    let interval = match interval(source.spec.interval.as_deref(), DEFAULT_INTERVAL) {
        // `0` would poll in a loop.
        Ok(interval) => interval.max(MIN_INTERVAL),
        Err(message) => {
            let update =
                ConditionUpdate::not_ready("InvalidInterval", format!("spec.interval: {message}"));
            write_status(ctx, &source, update, None, requested).await?;
            return Ok(Action::await_change());
        }
    };
    if let Some(wait) = state.schedule.skip(&key, &trigger, interval) {
        return Ok(Action::requeue(wait));
    }
    let started = Instant::now();
    let reference = Reference::from_spec(source.spec.git_ref.as_ref());
    let result = fetch(&ctx.client, &state.cache, &source, reference).await;
    let (update, artifact, error_reason) = match &result {
        Ok(fetched) => {
            let previous = source.status.as_ref().and_then(|s| s.artifact.clone());
            let artifact = match previous {
                Some(previous) if previous.revision == fetched.revision => previous,
                _ => Artifact {
                    revision: fetched.revision.clone(),
                    last_update_time: Some(Time(jiff::Timestamp::now())),
                },
            };
            (
                ConditionUpdate::ready(
                    "Succeeded",
                    format!("stored revision {}", fetched.revision),
                ),
                Some(artifact),
                None,
            )
        }
        Err(err) => (
            ConditionUpdate::not_ready(err.reason(), err.to_string()),
            None,
            Some(err.reason()),
        ),
    };
    ctx.metrics.git_fetch(match &result {
        Ok(fetched) if fetched.downloaded => "fetched",
        Ok(_) => "unchanged",
        Err(err) => err.reason(),
    });
    match &result {
        Ok(fetched) if fetched.downloaded => {
            tracing::info!(source = %key, revision = %fetched.revision, "fetched a new revision")
        }
        Ok(fetched) => {
            tracing::debug!(source = %key, revision = %fetched.revision, "remote ref did not move")
        }
        Err(err) => {
            tracing::warn!(source = %key, reason = err.reason(), error = %err, "fetch failed")
        }
    }
    write_status(ctx, &source, update, artifact, requested).await?;
    ctx.metrics
        .reconciled(CONTROLLER, started.elapsed(), error_reason);
    let next = state
        .schedule
        .record(&key, &trigger, result.is_ok(), interval);
    Ok(Action::requeue(next))
}

/// Writes the status when anything in it changed, with an Event for a new revision or a new
/// failure.
async fn write_status(
    ctx: &Context,
    source: &GitSource,
    update: ConditionUpdate<'_>,
    artifact: Option<Artifact>,
    requested: Option<String>,
) -> Result<(), Error> {
    let old = source.status.clone().unwrap_or_default();
    let mut status = old.clone();
    let event = match (&update.status, &artifact) {
        (true, Some(a)) if old.artifact.as_ref().map(|o| &o.revision) != Some(&a.revision) => {
            Some(Event {
                type_: EventType::Normal,
                reason: "NewRevision".to_string(),
                note: Some(format!("fetched revision {}", a.revision)),
                action: "Fetch".to_string(),
                secondary: None,
            })
        }
        _ => None,
    };
    let failure_note =
        (!update.status).then(|| (update.reason.to_string(), update.message.clone()));
    let changed = set_condition(
        &mut status.conditions,
        update,
        source.metadata.generation,
        Time(jiff::Timestamp::now()),
    );
    if artifact.is_some() {
        status.artifact = artifact;
    }
    status.observed_generation = source.metadata.generation;
    if requested.is_some() {
        status.last_handled_reconcile_at = requested;
    }
    let event = event.or_else(|| {
        failure_note
            .filter(|_| changed)
            .map(|(reason, message)| Event {
                type_: EventType::Warning,
                reason,
                note: Some(truncate(&message, 1000)),
                action: "Fetch".to_string(),
                secondary: None,
            })
    });
    if let Some(event) = event {
        let reference = source.object_ref(&());
        if let Err(err) = ctx.recorder.publish(&event, &reference).await {
            tracing::debug!(error = %err, "cannot publish event");
        }
    }
    if status == old {
        return Ok(());
    }
    let name = source.name_any();
    let namespace = source.namespace().unwrap_or_default();
    let patch = serde_json::json!({ "status": status_json(&status) });
    Api::<GitSource>::namespaced(ctx.client.clone(), &namespace)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::Status(format!("{namespace}/{name}"), e))?;
    Ok(())
}

fn status_json(status: &GitSourceStatus) -> serde_json::Value {
    serde_json::to_value(status).unwrap_or_default()
}

/// Cuts a message to at most `max` bytes on a character boundary (Event notes are limited).
pub(crate) fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(interval(None, DEFAULT_INTERVAL), Ok(DEFAULT_INTERVAL));
        assert_eq!(
            interval(Some("5s"), DEFAULT_INTERVAL),
            Ok(Duration::from_secs(5))
        );
        assert!(interval(Some("soon"), DEFAULT_INTERVAL).is_err());
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("ok", 10), "ok");
    }
}
