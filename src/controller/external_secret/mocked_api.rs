//! Rounds against a mocked API: what one ExternalSecret's sync reads and writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::Method;
use kube::runtime::reflector;
use serde_json::json;
use tokio::sync::mpsc;

use super::hmac::DataHmac;
use super::round::{self, Finished, Shared};
use super::scheduler::{EsKey, Lane, Work};
use super::status;
use crate::api::conditions;
use crate::api::external_secret::ExternalSecret;
use crate::controller::secret_store::StoreCaches;
use crate::controller::secret_store::mocked_api::{aws_store, caches, credentials_read};
use crate::controller::test_api::{self, ApiServer, Call, Started};
use crate::providers::{BackendCalls, ClientCache};

const TARGET: &str = "/api/v1/namespaces/team/secrets/db-credentials";
const STATUS: &str = "/apis/sigil.dev/v1alpha1/namespaces/team/externalsecrets/db/status";
const HMAC_KEY: &[u8] = b"mocked hmac key";

/// ExternalSecret `team/db` of store `aws` whose Secret `db-credentials` comes from its template
/// alone, so no backend value is read.
fn external_secret() -> ExternalSecret {
    serde_json::from_value(json!({
        "apiVersion": "sigil.dev/v1alpha1",
        "kind": "ExternalSecret",
        "metadata": {"name": "db", "namespace": "team", "uid": "es-uid", "generation": 1},
        "spec": {
            "secretStoreRef": {"name": "aws", "kind": "SecretStore"},
            "target": {"name": "db-credentials", "template": {"data": {"username": "admin"}}},
        },
    }))
    .expect("an ExternalSecret")
}

/// Runs one round of `es` on a mocked API; the test answers its requests.
fn start(es: &ExternalSecret, caches: StoreCaches) -> Started<Vec<Finished>> {
    let (externals, mut writer) = reflector::store();
    writer.apply_watcher_event(&kube::runtime::watcher::Event::Apply(es.clone()));
    test_api::spawn(|ctx| async move {
        let (secrets, _) = reflector::store();
        let shared = Arc::new(Shared::new(
            ctx,
            DataHmac::from_key(HMAC_KEY.to_vec()),
            Arc::new(ClientCache::new(BackendCalls::default())),
            externals,
            caches,
            secrets,
        ));
        let work = vec![Work {
            key: EsKey::new("team", "db"),
            lane: Lane::Fast,
            force_fresh: false,
        }];
        let (done, mut finished) = mpsc::unbounded_channel();
        round::run(shared, work, Vec::new(), done).await;
        let mut all = Vec::new();
        while let Ok(one) = finished.try_recv() {
            all.push(one);
        }
        all
    })
}

/// Asserts the status patch's `Ready` condition and answers it.
fn ready(patch: Call, es: &ExternalSecret, status: &str, reason: &str) -> String {
    let conditions: Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> =
        serde_json::from_value(patch.body["status"]["conditions"].clone()).expect("conditions");
    let ready = conditions::find(&conditions, conditions::READY).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        (status, reason)
    );
    assert_eq!(patch.body["status"]["observedGeneration"], 1);
    let message = ready.message.clone();
    patch.merged_into(es);
    message
}

async fn event(api: &mut ApiServer, type_: &str, reason: &str) -> String {
    let event = api.expect_event("team").await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some(type_), Some(reason))
    );
    assert_eq!(event["regarding"]["kind"], "ExternalSecret");
    assert_eq!(event["regarding"]["name"], "db");
    event["note"].as_str().unwrap_or_default().to_string()
}

fn one_finished(finished: &[Finished]) -> &Finished {
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].key, EsKey::new("team", "db"));
    &finished[0]
}

#[tokio::test]
async fn a_missing_store_is_a_condition_and_no_secret_is_touched() {
    let es = external_secret();
    let (mut api, run) = start(&es, caches(Vec::new(), Vec::new()));
    let patch = api.expect_merge_patch(STATUS).await;
    let message = ready(patch, &es, "False", status::STORE_NOT_FOUND);
    assert_eq!(
        message,
        "spec.secretStoreRef: SecretStore team/aws not found"
    );
    event(&mut api, "Warning", status::STORE_NOT_FOUND).await;
    // No credential read, no Secret read or write: `finish` fails on any further request.
    let finished = api.finish(run).await;
    assert!(
        one_finished(&finished).next.is_some(),
        "retried with backoff"
    );
}

#[tokio::test]
async fn the_secret_is_applied_with_its_owner_markers_and_fingerprint() {
    let es = external_secret();
    let (mut api, run) = start(&es, caches(vec![aws_store()], Vec::new()));
    credentials_read(&mut api).await;
    api.expect(Method::GET, TARGET).await.not_found();
    let apply = api.expect_apply(TARGET).await;
    let data = BTreeMap::from([("username".to_string(), b"admin".to_vec())]);
    let fingerprint = DataHmac::from_key(HMAC_KEY.to_vec()).of(data.iter());
    assert_eq!(apply.body["kind"], "Secret");
    assert_eq!(apply.body["type"], "Opaque");
    assert_eq!(apply.body["data"], json!({"username": "YWRtaW4="}));
    assert_eq!(
        apply.body["metadata"]["labels"],
        json!({"sigil.dev/managed-by": "external-secret"})
    );
    assert_eq!(
        apply.body["metadata"]["annotations"],
        json!({"sigil.dev/external-secret": "db", "sigil.dev/data-hmac": fingerprint})
    );
    let owner = &apply.body["metadata"]["ownerReferences"][0];
    assert_eq!(
        (
            &owner["kind"],
            &owner["name"],
            &owner["uid"],
            &owner["controller"]
        ),
        (
            &json!("ExternalSecret"),
            &json!("db"),
            &json!("es-uid"),
            &json!(true)
        )
    );
    apply.echo();
    let patch = api.expect_merge_patch(STATUS).await;
    assert_eq!(patch.body["status"]["syncedResourceVersion"], "1");
    assert!(!patch.body.to_string().contains("admin"), "{}", patch.body);
    ready(patch, &es, "True", status::SECRET_SYNCED);
    let note = event(&mut api, "Normal", "Created").await;
    assert_eq!(note, "Secret db-credentials created");
    let finished = api.finish(run).await;
    assert!(
        one_finished(&finished).next.is_some(),
        "refreshed every hour"
    );
}

#[tokio::test]
async fn a_secret_another_external_secret_manages_is_not_written() {
    let es = external_secret();
    let (mut api, run) = start(&es, caches(vec![aws_store()], Vec::new()));
    credentials_read(&mut api).await;
    api.expect(Method::GET, TARGET).await.ok(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "db-credentials",
            "namespace": "team",
            "resourceVersion": "5",
            "annotations": {"sigil.dev/external-secret": "other"},
        },
        "data": {"username": "cm9vdA=="},
    }));
    let patch = api.expect_merge_patch(STATUS).await;
    let message = ready(patch, &es, "False", status::SECRET_CONFLICT);
    assert_eq!(
        message,
        "Secret db-credentials is managed by ExternalSecret \"other\""
    );
    event(&mut api, "Warning", status::SECRET_CONFLICT).await;
    let finished = api.finish(run).await;
    one_finished(&finished);
}
