//! Store checks against a mocked API: the credential reads a check makes and the status it writes.

use http::Method;
use kube::runtime::{reflector, watcher};
use serde_json::json;

use super::*;
use crate::controller::test_api::{self, ApiServer, Started};

const CREDENTIALS: &str = "/api/v1/namespaces/team/secrets/aws-creds";
const STORE_STATUS: &str = "/apis/sigil.dev/v1alpha1/namespaces/team/secretstores/aws/status";
/// The AWS credentials the credential Secret holds; never in a status.
const ACCESS_KEY: &str = "AKIAMOCKEDEXAMPLE";
const SECRET_KEY: &str = "mocked-secret-access-key";

/// SecretStore `team/aws` (generation 2) reading its AWS keys from Secret `aws-creds`; its
/// endpoint is a closed port, so any backend call fails at once.
pub fn aws_store() -> SecretStore {
    serde_json::from_value(json!({
        "apiVersion": "sigil.dev/v1alpha1",
        "kind": "SecretStore",
        "metadata": {"name": "aws", "namespace": "team", "uid": "store-uid", "generation": 2},
        "spec": {"provider": {"aws": {
            "service": "SecretsManager",
            "region": "eu-west-1",
            "endpoint": "http://127.0.0.1:9",
            "auth": {"secretRef": {
                "accessKeyIDSecretRef": {"name": "aws-creds", "key": "id"},
                "secretAccessKeySecretRef": {"name": "aws-creds", "key": "secret"},
            }},
        }}},
    }))
    .expect("a SecretStore")
}

/// Answers the read of the store's credential Secret.
pub async fn credentials_read(api: &mut ApiServer) {
    api.expect(Method::GET, CREDENTIALS).await.ok(&json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "aws-creds", "namespace": "team", "uid": "creds-uid", "resourceVersion": "3"},
        "data": {
            "id": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ACCESS_KEY),
            "secret": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, SECRET_KEY),
        },
    }));
}

/// Reflector stores holding exactly these stores (and no namespaces).
pub fn caches(stores: Vec<SecretStore>, cluster_stores: Vec<ClusterSecretStore>) -> StoreCaches {
    fn filled<K>(objects: Vec<K>) -> Store<K>
    where
        K: kube::Resource + Clone + 'static,
        K::DynamicType: Eq + std::hash::Hash + Clone + Default,
    {
        let (reader, mut writer) = reflector::store();
        for object in objects {
            writer.apply_watcher_event(&watcher::Event::Apply(object));
        }
        reader
    }
    StoreCaches {
        stores: filled(stores),
        cluster_stores: filled(cluster_stores),
        namespaces: filled(Vec::new()),
    }
}

/// Runs one check of `key` on a mocked API.
fn start(caches: StoreCaches, key: StoreKey) -> Started<Option<Checked>> {
    test_api::spawn(|ctx| async move {
        let providers = ClientCache::default();
        check(&ctx, &providers, &caches, &key).await
    })
}

/// Asserts a status patch: `Ready` False with `reason` for generation 2, and no credential in it.
fn not_ready(patch: &test_api::Call, reason: &str) -> Condition {
    let text = patch.body.to_string();
    assert!(
        !text.contains(ACCESS_KEY) && !text.contains(SECRET_KEY),
        "credentials in the status: {text}"
    );
    assert_eq!(patch.body["status"]["observedGeneration"], 2);
    let written: Vec<Condition> =
        serde_json::from_value(patch.body["status"]["conditions"].clone()).expect("conditions");
    let ready = conditions::find(&written, conditions::READY).expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", reason)
    );
    assert_eq!(ready.observed_generation, Some(2));
    ready.clone()
}

#[tokio::test]
async fn a_store_whose_credential_secret_is_missing_is_invalid() {
    let store = aws_store();
    let (mut api, run) = start(
        caches(vec![store.clone()], Vec::new()),
        StoreKey::secret_store("team", "aws"),
    );
    api.expect(Method::GET, CREDENTIALS).await.not_found();
    let patch = api.expect_merge_patch(STORE_STATUS).await;
    let ready = not_ready(&patch, REASON_INVALID_CONFIG);
    assert!(
        ready.message.contains("spec.provider.aws.auth.secretRef.accessKeyIDSecretRef: Secret team/aws-creds: not found"),
        "{}",
        ready.message
    );
    patch.merged_into(&store);
    let checked = api.finish(run).await.expect("checked");
    assert!(!checked.ok && !checked.became_ready);
}

#[tokio::test]
async fn a_store_whose_backend_fails_is_reported_without_its_credentials() {
    let store = aws_store();
    let (mut api, run) = start(
        caches(vec![store.clone()], Vec::new()),
        StoreKey::secret_store("team", "aws"),
    );
    credentials_read(&mut api).await;
    let patch = api.expect_merge_patch(STORE_STATUS).await;
    not_ready(&patch, REASON_VALIDATION_FAILED);
    patch.merged_into(&store);
    let checked = api.finish(run).await.expect("checked");
    assert!(!checked.ok);
}

#[tokio::test]
async fn an_unchanged_failure_is_not_written_again() {
    let mut store = aws_store();
    let (mut api, run) = start(
        caches(vec![store.clone()], Vec::new()),
        StoreKey::secret_store("team", "aws"),
    );
    api.expect(Method::GET, CREDENTIALS).await.not_found();
    let patch = api.expect_merge_patch(STORE_STATUS).await;
    let written: SecretStoreStatus =
        serde_json::from_value(patch.body["status"].clone()).expect("a status");
    patch.merged_into(&store);
    api.finish(run).await.expect("checked");

    store.status = Some(written);
    let (mut api, run) = start(
        caches(vec![store], Vec::new()),
        StoreKey::secret_store("team", "aws"),
    );
    api.expect(Method::GET, CREDENTIALS).await.not_found();
    // The same condition for the same generation: no status write.
    api.finish(run).await.expect("checked");
}

#[tokio::test]
async fn a_cluster_store_without_a_provider_is_invalid_at_its_cluster_path() {
    let store: ClusterSecretStore = serde_json::from_value(json!({
        "apiVersion": "sigil.dev/v1alpha1",
        "kind": "ClusterSecretStore",
        "metadata": {"name": "shared", "uid": "cluster-store-uid", "generation": 2},
        "spec": {"provider": {}},
    }))
    .expect("a ClusterSecretStore");
    let (mut api, run) = start(
        caches(Vec::new(), vec![store.clone()]),
        StoreKey::cluster("shared"),
    );
    let patch = api
        .expect_merge_patch("/apis/sigil.dev/v1alpha1/clustersecretstores/shared/status")
        .await;
    not_ready(&patch, REASON_INVALID_CONFIG);
    patch.merged_into(&store);
    let checked = api.finish(run).await.expect("checked");
    assert!(!checked.ok);
}

/// A store deleted before its check is not checked: no request at all.
#[tokio::test]
async fn a_store_that_is_gone_costs_no_request() {
    let (mut api, run) = start(
        caches(Vec::new(), Vec::new()),
        StoreKey::secret_store("team", "aws"),
    );
    assert!(api.finish(run).await.is_none());
}
