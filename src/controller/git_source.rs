//! The GitSource controller: fetches `spec.url` at `spec.ref` every `spec.interval` into the
//! process's Git cache and reports `status.artifact.revision`.
//!
//! A fetch whose remote ref did not move downloads nothing and writes no status. The
//! `sigil.dev/reconcile-requested-at` annotation (set by `kubectl annotate` or by the webhook
//! receiver) forces an immediate fetch.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use zeroize::Zeroize;

use super::schedule::{self, Schedule};
use super::status::{StatusError, patch_status, publish};
use super::{Context, runner};
use crate::api::common::LocalObjectReference;
use crate::api::conditions::{self, ConditionUpdate, set_condition};
use crate::api::git_source::{Artifact, GitSource};
use crate::git::{Cache, Credentials, FetchError, Fetched, Reference};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "gitsource";
/// Changing this annotation (any value, usually a timestamp) forces a reconcile.
pub const REQUESTED_AT_ANNOTATION: &str = "sigil.dev/reconcile-requested-at";

const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

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
    let controller = Controller::new(api, watcher::Config::default());
    runner::run_retrying_soon(&ctx, CONTROLLER, controller, reconcile, state).await;
}

/// The value of `sigil.dev/reconcile-requested-at`, if set.
pub fn requested_at(object: &impl ResourceExt) -> Option<String> {
    object.annotations().get(REQUESTED_AT_ANNOTATION).cloned()
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
    let mut data: BTreeMap<String, Vec<u8>> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect();
    let credentials = Credentials::from_secret_data(&secret_ref.name, &data);
    data.values_mut().for_each(Zeroize::zeroize);
    credentials
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

async fn reconcile(source: Arc<GitSource>, state: Arc<State>) -> Result<Action, StatusError> {
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
    let interval = match schedule::interval(source.spec.interval.as_deref(), DEFAULT_INTERVAL) {
        Ok(interval) => interval,
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
                    last_update_time: Some(conditions::now()),
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
) -> Result<(), StatusError> {
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
        conditions::now(),
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
                note: Some(message),
                action: "Fetch".to_string(),
                secondary: None,
            })
    });
    if let Some(event) = event {
        publish(ctx, event, &source.object_ref(&())).await;
    }
    if status == old {
        return Ok(());
    }
    patch_status(&ctx.client, source, &status).await
}

#[cfg(test)]
pub(crate) mod mocked_api {
    use http::Method;
    use serde_json::json;

    use super::*;
    use crate::controller::test_api::{self, ApiServer, Started};

    const STATUS: &str = "/apis/sigil.dev/v1alpha1/namespaces/apps/gitsources/repo/status";

    /// GitSource `apps/repo` with `spec` (the URL leads nowhere: nothing is fetched).
    fn source(spec: serde_json::Value) -> GitSource {
        let mut source: GitSource = serde_json::from_value(json!({
            "apiVersion": "sigil.dev/v1alpha1",
            "kind": "GitSource",
            "metadata": {"name": "repo", "namespace": "apps", "uid": "gs-uid", "generation": 1},
            "spec": {"url": "file:///nonexistent/sigil-mocked-api"},
        }))
        .expect("a GitSource");
        let mut merged = serde_json::to_value(&source.spec).expect("JSON");
        json_patch::merge(&mut merged, &spec);
        source.spec = serde_json::from_value(merged).expect("a spec");
        source
    }

    fn start(source: &GitSource) -> Started<Result<Action, StatusError>> {
        let source = Arc::new(source.clone());
        test_api::spawn(|ctx| {
            let state = State {
                ctx,
                cache: Arc::new(Cache::temporary()),
                schedule: Schedule::default(),
            };
            reconcile(source, Arc::new(state))
        })
    }

    /// The event, then the status patch with `Ready` False and `reason`; returns the status.
    async fn failure_reported(
        api: &mut ApiServer,
        source: &GitSource,
        reason: &str,
    ) -> serde_json::Value {
        let event = api.expect_event("apps").await;
        assert_eq!(
            (event["type"].as_str(), event["reason"].as_str()),
            (Some("Warning"), Some(reason))
        );
        assert_eq!(event["regarding"]["name"], "repo");
        let patch = api.expect_merge_patch(STATUS).await;
        let status = patch.body["status"].clone();
        assert_eq!(status["conditions"][0]["type"], "Ready");
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], reason);
        assert_eq!(status["observedGeneration"], 1);
        assert_eq!(status.get("artifact"), None, "no revision without a fetch");
        patch.merged_into(source);
        status
    }

    #[tokio::test]
    async fn an_invalid_interval_is_reported_and_nothing_is_fetched() {
        let source = source(json!({"interval": "soon"}));
        let (mut api, run) = start(&source);
        let status = failure_reported(&mut api, &source, "InvalidInterval").await;
        assert!(
            status["conditions"][0]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("spec.interval: ")),
            "{status}"
        );
        let action = api.finish(run).await.expect("reconciled");
        assert_eq!(action, Action::await_change());
    }

    #[tokio::test]
    async fn a_missing_credentials_secret_stops_the_fetch_and_is_reported_once() {
        let mut source = source(json!({"secretRef": {"name": "git-auth"}}));
        let (mut api, run) = start(&source);
        let secret = "/api/v1/namespaces/apps/secrets/git-auth";
        api.expect(Method::GET, secret).await.not_found();
        let status = failure_reported(&mut api, &source, "CredentialsInvalid").await;
        assert_eq!(
            status["conditions"][0]["message"],
            "spec.secretRef: Secret apps/git-auth not found"
        );
        api.finish(run).await.expect("reconciled");

        // The same failure again: neither an Event nor a status write.
        source.status = Some(serde_json::from_value(status).expect("a status"));
        let (mut api, run) = start(&source);
        api.expect(Method::GET, secret).await.not_found();
        api.finish(run).await.expect("reconciled");
    }

    /// Commits `files` (name, content) to branch `main` of a new repository in `dir`; returns the
    /// commit id.
    pub fn commit_files(dir: &std::path::Path, files: &[(&str, &str)]) -> String {
        let repo = gix::init(dir).expect("a repository");
        let mut entries: Vec<gix::objs::tree::Entry> = files
            .iter()
            .map(|(name, content)| gix::objs::tree::Entry {
                mode: gix::objs::tree::EntryKind::Blob.into(),
                filename: (*name).into(),
                oid: repo.write_blob(content).expect("a blob").detach(),
            })
            .collect();
        entries.sort();
        let tree = repo
            .write_object(gix::objs::Tree { entries })
            .expect("a tree")
            .detach();
        let signature = gix::actor::SignatureRef {
            name: "sigil test".into(),
            email: "test@sigil.dev".into(),
            time: "1700000000 +0000",
        };
        let no_parents: [gix::ObjectId; 0] = [];
        repo.commit_as(
            signature,
            signature,
            "refs/heads/main",
            "fixture",
            tree,
            no_parents,
        )
        .expect("a commit")
        .to_string()
    }

    #[tokio::test]
    async fn a_new_revision_is_an_event_and_the_artifact_in_the_status() {
        let repo = tempfile::tempdir().expect("a temporary directory");
        let commit = commit_files(repo.path(), &[("README", "fixture\n")]);
        let url = format!("file://{}", repo.path().display());
        let source = source(json!({ "url": url }));
        let (mut api, run) = start(&source);
        let revision = format!("main@sha1:{commit}");
        let event = api.expect_event("apps").await;
        assert_eq!(
            (event["type"].as_str(), event["reason"].as_str()),
            (Some("Normal"), Some("NewRevision"))
        );
        assert_eq!(event["note"], format!("fetched revision {revision}"));
        let patch = api.expect_merge_patch(STATUS).await;
        let status = &patch.body["status"];
        assert_eq!(status["artifact"]["revision"], revision);
        assert_eq!(status["conditions"][0]["status"], "True");
        assert_eq!(status["conditions"][0]["reason"], "Succeeded");
        assert_eq!(
            status["conditions"][0]["message"],
            format!("stored revision {revision}")
        );
        patch.merged_into(&source);
        let action = api.finish(run).await.expect("reconciled");
        assert_eq!(action, Action::requeue(DEFAULT_INTERVAL));
    }

    #[tokio::test]
    async fn a_suspended_source_makes_no_request() {
        let (mut api, run) = start(&source(json!({"suspend": true})));
        let action = api.finish(run).await.expect("reconciled");
        assert_eq!(action, Action::await_change());
    }
}
