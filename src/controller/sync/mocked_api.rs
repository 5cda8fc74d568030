//! Sync reconciles against a mocked API: a Sync without a usable source reads the GitSource,
//! reports why, and applies nothing.

use std::sync::Arc;
use std::time::Duration;

use http::Method;
use kube::runtime::controller::Action;
use serde_json::json;

use super::{State, reconcile};
use crate::api::sync::ManifestSync;
use crate::controller::git_source::mocked_api::commit_files;
use crate::controller::status::StatusError;
use crate::controller::test_api::{self, ApiServer, Started};
use crate::git::Cache;

const SOURCE: &str = "/apis/sigil.dev/v1alpha1/namespaces/apps/gitsources/repo";
const STATUS: &str = "/apis/sigil.dev/v1alpha1/namespaces/apps/syncs/site/status";

/// Sync `apps/site` of GitSource `repo`, with `spec` merged into its spec.
fn sync(spec: serde_json::Value) -> ManifestSync {
    let mut object = json!({
        "apiVersion": "sigil.dev/v1alpha1",
        "kind": "Sync",
        "metadata": {"name": "site", "namespace": "apps", "uid": "sync-uid", "generation": 1,
                     "finalizers": [super::deletion::FINALIZER]},
        "spec": {"sourceRef": {"kind": "GitSource", "name": "repo"}, "prune": true},
    });
    json_patch::merge(&mut object, &json!({ "spec": spec }));
    serde_json::from_value(object).expect("a Sync")
}

fn start(sync: &ManifestSync) -> Started<Result<Action, StatusError>> {
    let sync = Arc::new(sync.clone());
    test_api::spawn(|ctx| {
        let state = State::new(
            ctx,
            Arc::new(Cache::temporary()),
            Arc::default(),
            kube::runtime::reflector::store().0,
        );
        reconcile(sync, Arc::new(state))
    })
}

/// GitSource `apps/repo` of `url` with `status`.
fn git_source(url: &str, status: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "sigil.dev/v1alpha1",
        "kind": "GitSource",
        "metadata": {"name": "repo", "namespace": "apps", "uid": "gs-uid", "generation": 1},
        "spec": {"url": url},
        "status": status,
    })
}

/// The status patch of a failed run, then its Event; returns the patched status.
async fn failure_reported(
    api: &mut ApiServer,
    sync: &ManifestSync,
    reason: &str,
    also: (&str, &str),
) -> serde_json::Value {
    let patch = api.expect_merge_patch(STATUS).await;
    let status = patch.body["status"].clone();
    let conditions = status["conditions"].as_array().expect("conditions");
    let find = |type_: &str| {
        conditions
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
    };
    assert_eq!(
        (&find("Ready")["status"], &find("Ready")["reason"]),
        (&json!("False"), &json!(reason))
    );
    assert_eq!(find(also.0)["reason"], also.1);
    assert_eq!(conditions.len(), 2, "{status}");
    assert_eq!(
        status.get("lastAttemptedRevision"),
        None,
        "nothing was attempted"
    );
    assert_eq!(status["observedGeneration"], 1);
    patch.merged_into(sync);
    let event = api.expect_event("apps").await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some(reason))
    );
    assert_eq!(event["regarding"]["kind"], "Sync");
    status
}

#[tokio::test]
async fn a_source_without_a_revision_is_waited_for_and_nothing_is_applied() {
    let sync = sync(json!({}));
    let (mut api, run) = start(&sync);
    let status = json!({"conditions": [{
        "type": "Ready", "status": "False", "reason": "AuthFailed",
        "message": "authentication failed", "lastTransitionTime": "2024-01-01T00:00:00Z",
    }]});
    api.expect(Method::GET, SOURCE)
        .await
        .ok(&git_source("https://git.example/repo.git", status));
    let status = failure_reported(
        &mut api,
        &sync,
        "SourceNotReady",
        ("Reconciling", "ProgressingWithRetry"),
    )
    .await;
    assert_eq!(
        status["conditions"][0]["message"],
        "GitSource apps/repo has no revision yet: authentication failed"
    );
    // No discovery, no read of live objects, no apply, no prune: `finish` fails on any request.
    let action = api.finish(run).await.expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_missing_source_is_reported_and_retried() {
    let sync = sync(json!({}));
    let (mut api, run) = start(&sync);
    api.expect(Method::GET, SOURCE).await.not_found();
    failure_reported(
        &mut api,
        &sync,
        "SourceNotFound",
        ("Reconciling", "ProgressingWithRetry"),
    )
    .await;
    let action = api.finish(run).await.expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_source_of_another_kind_stalls_without_a_read() {
    let sync = sync(json!({"sourceRef": {"kind": "OCIRepository"}}));
    let (mut api, run) = start(&sync);
    failure_reported(
        &mut api,
        &sync,
        "InvalidSourceRef",
        ("Stalled", "InvalidSourceRef"),
    )
    .await;
    let action = api.finish(run).await.expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_suspended_sync_makes_no_request() {
    let (mut api, run) = start(&sync(json!({"suspend": true})));
    let action = api.finish(run).await.expect("reconciled");
    assert_eq!(action, Action::await_change());
}

#[tokio::test]
async fn a_revision_is_fetched_into_an_empty_cache_and_applied_server_side() {
    let repo = tempfile::tempdir().expect("a temporary directory");
    let manifest =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: greeting\ndata:\n  text: hello\n";
    let commit = commit_files(repo.path(), &[("configmap.yaml", manifest)]);
    let revision = format!("main@sha1:{commit}");
    let sync = sync(json!({}));
    // A new process: its Git cache is empty, so the Sync fetches the commit itself.
    let (mut api, run) = start(&sync);
    let url = format!("file://{}", repo.path().display());
    api.expect(Method::GET, SOURCE).await.ok(&git_source(
        &url,
        json!({"artifact": {"revision": revision}}),
    ));
    let progressing = api.expect_merge_patch(STATUS).await;
    let condition = &progressing.body["status"]["conditions"][0];
    assert_eq!(
        (
            &condition["type"],
            &condition["status"],
            &condition["reason"]
        ),
        (&json!("Reconciling"), &json!("True"), &json!("Progressing"))
    );
    assert_eq!(
        condition["message"],
        format!("applying revision {revision}")
    );
    progressing.merged_into(&sync);
    api.expect(Method::GET, "/api/v1").await.ok(&json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [{
            "name": "configmaps", "singularName": "configmap", "namespaced": true,
            "kind": "ConfigMap", "verbs": ["get", "list", "patch", "delete"],
        }],
    }));
    api.expect(Method::GET, "/api/v1/namespaces/apps/configmaps")
        .await
        .ok(&json!({
            "apiVersion": "v1", "kind": "ConfigMapList",
            "metadata": {"resourceVersion": "1"}, "items": [],
        }));
    let apply = api
        .expect_apply("/api/v1/namespaces/apps/configmaps/greeting")
        .await;
    assert_eq!(
        apply.body,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "greeting",
                "namespace": "apps",
                "labels": {"sigil.dev/sync-name": "site", "sigil.dev/sync-namespace": "apps"},
            },
            "data": {"text": "hello"},
        })
    );
    apply.echo();
    let done = api.expect_merge_patch(STATUS).await;
    let status = done.body["status"].clone();
    assert_eq!(status["lastAppliedRevision"], revision);
    assert_eq!(status["lastAttemptedRevision"], revision);
    assert_eq!(
        status["inventory"],
        json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "greeting", "namespace": "apps"}])
    );
    assert_eq!(
        status["conditions"].as_array().map(Vec::len),
        Some(1),
        "Reconciling is removed: {status}"
    );
    assert_eq!(status["conditions"][0]["type"], "Ready");
    assert_eq!(status["conditions"][0]["reason"], "ReconciliationSucceeded");
    done.merged_into(&sync);
    let event = api.expect_event("apps").await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Normal"), Some("Applied"))
    );
    assert_eq!(
        event["note"],
        format!("revision {revision}: 1 created, 0 configured, 0 unchanged, 0 pruned")
    );
    let action = api.finish(run).await.expect("reconciled");
    assert_eq!(action, Action::requeue(Duration::from_secs(600)));
}
