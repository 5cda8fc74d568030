//! External secrets from AWS Secrets Manager, against `moto_server`.

use std::time::Duration;

use sigil::providers::aws::{AwsSecretsManager, BATCH_SIZE};
use sigil::providers::{BackendCalls, FindQuery, Provider, ProviderError, RemoteKey};

use crate::support::counting_proxy::CountingProxy;
use crate::support::moto::{self, Moto};

async fn provider(endpoint: &str, calls: &BackendCalls) -> AwsSecretsManager {
    sigil::tls::install_crypto_provider();
    AwsSecretsManager::new(
        &moto::store_spec(endpoint),
        moto::static_credentials(),
        calls.for_store("SecretStore/test/aws", "aws"),
    )
    .await
    .expect("provider builds")
}

fn text(value: &sigil::providers::SecretValue) -> &str {
    std::str::from_utf8(value.expose()).expect("utf-8")
}

#[tokio::test]
async fn provider_batches_reads_by_twenty_and_maps_results_back() {
    let moto = Moto::start().await;
    let seed = moto.client().await;
    for i in 0..45 {
        moto::create(
            &seed,
            &format!("batch/s{i:02}"),
            &format!(r#"{{"n":{i}}}"#),
            &[],
        )
        .await;
    }
    moto::create_binary(&seed, "batch/binary", &[0, 1, 2, 255]).await;
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let calls = BackendCalls::default();
    let aws = provider(&proxy.endpoint, &calls).await;

    let mut keys: Vec<RemoteKey> = (0..45)
        .rev()
        .map(|i| RemoteKey::new(format!("batch/s{i:02}"), None))
        .collect();
    keys.push(RemoteKey::new("batch/missing", None));
    keys.push(RemoteKey::new("batch/binary", None));
    let results = aws.get_many(&keys).await;

    assert_eq!(results.len(), keys.len());
    for (i, result) in results.iter().take(45).enumerate() {
        let n = 44 - i;
        assert_eq!(
            text(result.as_ref().expect("read")),
            format!(r#"{{"n":{n}}}"#)
        );
    }
    assert!(
        matches!(&results[45], Err(ProviderError::NotFound { key }) if key == "batch/missing"),
        "{:?}",
        results[45]
    );
    assert_eq!(
        results[46].as_ref().expect("binary").expose(),
        &[0, 1, 2, 255]
    );
    let expected_batches = keys.len().div_ceil(BATCH_SIZE) as u64;
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        expected_batches,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(proxy.count("GetSecretValue"), 0, "{:?}", proxy.counts());
    assert_eq!(
        proxy.times("BatchGetSecretValue").len() as u64,
        expected_batches
    );
    assert_eq!(
        calls.count("SecretStore/test/aws", "aws", "success"),
        expected_batches
    );
}

#[tokio::test]
async fn provider_reads_versions_and_stages_one_by_one() {
    let moto = Moto::start().await;
    let seed = moto.client().await;
    moto::create(&seed, "versioned", "first", &[]).await;
    moto::put(&seed, "versioned", "second").await;
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let aws = provider(&proxy.endpoint, &BackendCalls::default()).await;

    let current = aws
        .get(&RemoteKey::new("versioned", None))
        .await
        .expect("current");
    let previous = aws
        .get(&RemoteKey::new("versioned", Some("AWSPREVIOUS".into())))
        .await
        .expect("previous");
    assert_eq!(text(&current), "second");
    assert_eq!(text(&previous), "first");
    assert_eq!(proxy.count("GetSecretValue"), 1, "{:?}", proxy.counts());

    let version_id = seed
        .list_secret_version_ids()
        .secret_id("versioned")
        .send()
        .await
        .expect("versions")
        .versions()
        .iter()
        .find(|v| v.version_stages().iter().any(|s| s == "AWSPREVIOUS"))
        .and_then(|v| v.version_id().map(str::to_string))
        .expect("previous version id");
    let by_id = aws
        .get(&RemoteKey::new(
            "versioned",
            Some(format!("uuid:{version_id}")),
        ))
        .await
        .expect("by id");
    assert_eq!(text(&by_id), "first");
}

#[tokio::test]
async fn provider_finds_by_name_and_tags() {
    let moto = Moto::start().await;
    let seed = moto.client().await;
    moto::create(
        &seed,
        "team-a/db",
        "a-db",
        &[("team", "a"), ("env", "prod")],
    )
    .await;
    moto::create(
        &seed,
        "team-a/cache",
        "a-cache",
        &[("team", "a"), ("env", "dev")],
    )
    .await;
    moto::create(
        &seed,
        "team-b/db",
        "b-db",
        &[("team", "b"), ("env", "prod")],
    )
    .await;
    let aws = provider(&moto.endpoint, &BackendCalls::default()).await;

    let by_name = aws
        .find(&FindQuery {
            name_regexp: Some("^team-a/".into()),
            ..Default::default()
        })
        .await
        .expect("find by name");
    let names: Vec<&str> = by_name.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["team-a/cache", "team-a/db"]);
    assert_eq!(text(&by_name[1].1), "a-db");

    let by_tags = aws
        .find(&FindQuery {
            tags: [("env".to_string(), "prod".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("find by tags");
    let names: Vec<&str> = by_tags.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["team-a/db", "team-b/db"]);

    let both = aws
        .find(&FindQuery {
            name_regexp: Some("db$".into()),
            tags: [("team".to_string(), "b".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("find by both");
    assert_eq!(both.len(), 1);
    assert_eq!(text(&both[0].1), "b-db");

    let error = aws
        .find(&FindQuery {
            name_regexp: Some("(".into()),
            ..Default::default()
        })
        .await
        .expect_err("bad pattern");
    assert!(error.to_string().contains("find.name.regexp"), "{error}");
}

#[tokio::test]
async fn provider_reports_outages_as_transient_and_recovers() {
    let moto = Moto::start().await;
    let seed = moto.client().await;
    moto::create(&seed, "steady", "Zq7-plaintext", &[]).await;
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let calls = BackendCalls::default();
    let aws = provider(&proxy.endpoint, &calls).await;
    aws.validate().await.expect("store validates");

    proxy.set_down(true);
    let error = tokio::time::timeout(
        Duration::from_secs(60),
        aws.get(&RemoteKey::new("steady", None)),
    )
    .await
    .expect("bounded")
    .expect_err("outage");
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.to_string().contains("Zq7-plaintext"), "{error}");
    proxy.set_down(false);
    let value = aws
        .get(&RemoteKey::new("steady", None))
        .await
        .expect("recovered");
    assert_eq!(text(&value), "Zq7-plaintext");
}

// ---- The controller, in the embedded API server ----

pub(crate) mod controller {
    use std::time::{Duration, Instant};

    use kube::ResourceExt;
    use sigil::api::{ClusterSecretStore, ExternalSecret};

    use crate::support::external::{self, Env, ready_reason, wait_for};
    use crate::support::moto::{self, Moto};

    /// Credentials in the controller's namespace and a Secrets Manager ClusterSecretStore for `endpoint`.
    pub async fn cluster_store(env: &Env, name: &str, endpoint: &str, conditions: &str) {
        cluster_store_for(env, name, "SecretsManager", endpoint, conditions).await;
    }

    /// Credentials in the controller's namespace and a ClusterSecretStore for
    /// the AWS `service` (`SecretsManager`, `ParameterStore`) at `endpoint`.
    pub async fn cluster_store_for(
        env: &Env,
        name: &str,
        service: &str,
        endpoint: &str,
        conditions: &str,
    ) {
        env.secret(
            external::CONTROLLER_NAMESPACE,
            "aws-credentials",
            &[
                ("access-key", moto::ACCESS_KEY_ID),
                ("secret-key", moto::SECRET_ACCESS_KEY),
            ],
        )
        .await;
        env.apply_cluster::<ClusterSecretStore>(&format!(
            r#"
apiVersion: sigil.dev/v1alpha1
kind: ClusterSecretStore
metadata:
  name: {name}
spec:
  provider:
    aws:
      service: {service}
      region: {region}
      endpoint: {endpoint}
      auth:
        secretRef:
          accessKeyIDSecretRef: {{name: aws-credentials, key: access-key, namespace: sigil-system}}
          secretAccessKeySecretRef: {{name: aws-credentials, key: secret-key, namespace: sigil-system}}
{conditions}
"#,
            region = moto::REGION,
        ))
        .await;
    }

    #[tokio::test]
    async fn materializes_data_and_extract_and_follows_rotation() {
        let moto = Moto::start().await;
        let aws = moto.client().await;
        moto::create(&aws, "prod/db", r#"{"user":"app","password":"pw-1"}"#, &[]).await;
        moto::create(
            &aws,
            "prod/config",
            r#"{"host":"db.internal","port":5432}"#,
            &[],
        )
        .await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        cluster_store(&env, "aws", &moto.endpoint, "").await;
        env.apply::<ExternalSecret>(
            r#"
apiVersion: sigil.dev/v1alpha1
kind: ExternalSecret
metadata: {name: db, namespace: app}
spec:
  refreshInterval: 2s
  secretStoreRef: {name: aws, kind: ClusterSecretStore}
  target: {name: db-credentials}
  data:
    - secretKey: password
      remoteRef: {key: prod/db, property: password}
  dataFrom:
    - extract: {key: prod/config}
"#,
        )
        .await;

        let es = env
            .wait_condition("app", "db", "True", Duration::from_secs(20))
            .await;
        assert_eq!(ready_reason(&es).0, "SecretSynced");
        let status = es.status.clone().expect("status");
        assert!(status.refresh_time.is_some());
        let secret = env
            .get_secret("app", "db-credentials")
            .await
            .expect("Secret written");
        assert_eq!(status.synced_resource_version, secret.resource_version());
        assert_eq!(
            secret
                .labels()
                .get("sigil.dev/managed-by")
                .map(String::as_str),
            Some("external-secret")
        );
        assert_eq!(
            secret
                .annotations()
                .get("sigil.dev/external-secret")
                .map(String::as_str),
            Some("db")
        );
        let hmac = secret
            .annotations()
            .get("sigil.dev/data-hmac")
            .expect("fingerprint")
            .clone();
        assert_eq!(hmac.len(), 64);
        assert_eq!(secret.owner_references()[0].uid, es.uid().expect("uid"));
        let data = env
            .secret_data("app", "db-credentials")
            .await
            .expect("data");
        assert_eq!(data.get("password").map(String::as_str), Some("pw-1"));
        assert_eq!(data.get("host").map(String::as_str), Some("db.internal"));
        assert_eq!(data.get("port").map(String::as_str), Some("5432"));
        assert_eq!(data.len(), 3);

        let rotated_at = Instant::now();
        moto::put(&aws, "prod/db", r#"{"user":"app","password":"pw-2"}"#).await;
        wait_for("the rotated password", Duration::from_secs(10), || async {
            let data = env.secret_data("app", "db-credentials").await?;
            (data.get("password").map(String::as_str) == Some("pw-2")).then_some(())
        })
        .await;
        let took = rotated_at.elapsed();
        eprintln!("rotation reached the Secret after {took:?} (refreshInterval 2s)");
        assert!(
            took < Duration::from_secs(5),
            "within the next refresh, took {took:?}"
        );
        let rotated = env
            .get_secret("app", "db-credentials")
            .await
            .expect("Secret");
        assert_ne!(
            rotated.annotations().get("sigil.dev/data-hmac"),
            Some(&hmac)
        );

        // Several refreshes later: one Event per change, none per refresh.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let events: kube::Api<k8s_openapi::api::events::v1::Event> =
            kube::Api::namespaced(env.client.clone(), "app");
        let reasons: Vec<String> = events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("db"))
            .filter_map(|e| e.reason)
            .collect();
        assert_eq!(
            reasons.iter().filter(|r| *r == "Created").count(),
            1,
            "{reasons:?}"
        );
        assert_eq!(
            reasons.iter().filter(|r| *r == "Updated").count(),
            1,
            "{reasons:?}"
        );
        assert_eq!(reasons.len(), 2, "{reasons:?}");
    }

    fn external_secret(namespace: &str, name: &str, interval: &str, key: &str) -> String {
        format!(
            r#"
apiVersion: sigil.dev/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  refreshInterval: {interval}
  secretStoreRef: {{name: aws, kind: ClusterSecretStore}}
  data:
    - secretKey: value
      remoteRef: {{key: {key}}}
"#
        )
    }

    #[tokio::test]
    async fn cluster_store_conditions_refuse_other_namespaces_and_write_nothing() {
        let moto = Moto::start().await;
        moto::create(&moto.client().await, "shared/token", "t0k3n", &[]).await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.namespace("other", &[]).await;
        cluster_store(
            &env,
            "aws",
            &moto.endpoint,
            "  conditions:\n    - namespaces: [app]\n    - namespaceSelector: {matchLabels: {sigil.dev/secrets: allowed}}",
        )
        .await;
        env.apply::<ExternalSecret>(&external_secret("app", "token", "1h", "shared/token"))
            .await;
        env.apply::<ExternalSecret>(&external_secret("other", "token", "1h", "shared/token"))
            .await;

        env.wait_condition("app", "token", "True", Duration::from_secs(20))
            .await;
        let refused = env
            .wait_condition("other", "token", "False", Duration::from_secs(20))
            .await;
        let (reason, message) = ready_reason(&refused);
        assert_eq!(reason, "StoreNotAllowed");
        assert!(message.contains("other"), "{message}");
        assert!(
            env.get_secret("other", "token").await.is_none(),
            "nothing written"
        );

        // Labelling the namespace admits it through the namespaceSelector.
        let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
            kube::Api::all(env.client.clone());
        namespaces
            .patch(
                "other",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(
                    serde_json::json!({"metadata": {"labels": {"sigil.dev/secrets": "allowed"}}}),
                ),
            )
            .await
            .expect("label namespace");
        env.wait_condition("other", "token", "True", Duration::from_secs(20))
            .await;
        let data = env
            .secret_data("other", "token")
            .await
            .expect("written once allowed");
        assert_eq!(data["value"], "t0k3n");
    }

    #[tokio::test]
    async fn thousand_external_secrets_over_hundred_secrets_batch_and_deduplicate() {
        use futures::StreamExt;
        const SECRETS: usize = 100;
        const EXTERNAL_SECRETS: usize = 1_000;
        const INTERVAL: Duration = Duration::from_secs(10);
        let moto = Moto::start().await;
        let aws = moto.client().await;
        for i in 0..SECRETS {
            moto::create(&aws, &format!("fleet/s{i:03}"), &format!("value-{i}"), &[]).await;
        }
        let proxy = crate::support::counting_proxy::CountingProxy::start(&moto.endpoint).await;
        let env = external::start(|_| {}).await;
        env.namespace("fleet", &[]).await;
        cluster_store(&env, "aws", &proxy.endpoint, "").await;

        let started = Instant::now();
        let creations = (0..EXTERNAL_SECRETS).map(|i| {
            let env = &env;
            async move {
                env.apply::<ExternalSecret>(&external_secret(
                    "fleet",
                    &format!("es-{i:04}"),
                    "10s",
                    &format!("fleet/s{:03}", i % SECRETS),
                ))
                .await;
            }
        });
        futures::stream::iter(creations)
            .buffer_unordered(16)
            .collect::<Vec<()>>()
            .await;
        let created = started.elapsed();
        let api: kube::Api<ExternalSecret> = kube::Api::namespaced(env.client.clone(), "fleet");
        // Listing 1,000 objects is heavy for a debug build: poll once a second.
        external::wait_for_every(
            "1,000 ExternalSecrets Ready",
            Duration::from_secs(180),
            Duration::from_secs(1),
            || async {
                let list = api.list(&Default::default()).await.ok()?;
                let ready = list
                    .items
                    .iter()
                    .filter(|es| ready_reason(es).0 == "SecretSynced")
                    .count();
                (ready == EXTERNAL_SECRETS).then_some(())
            },
        )
        .await;
        let materialized = started.elapsed();
        let initial_batches = proxy.count("BatchGetSecretValue");
        let secret = env.secret_data("fleet", "es-0123").await.expect("Secret");
        assert_eq!(secret["value"], "value-23");

        // Steady state: count requests over three refresh intervals.
        let window_start = Instant::now();
        let before = proxy.count("BatchGetSecretValue");
        tokio::time::sleep(INTERVAL * 3).await;
        let batches = proxy.count("BatchGetSecretValue") - before;
        let singles = proxy.count("GetSecretValue");
        // A round is a burst of requests; rounds are an interval apart.
        let rounds = proxy.rounds("BatchGetSecretValue", window_start, Duration::from_secs(3));
        eprintln!(
            "1,000 ExternalSecrets over 100 AWS secrets: created in {created:?}, all Ready after {materialized:?} \
             with {initial_batches} BatchGetSecretValue calls; steady state over 3 intervals: {batches} calls \
             in rounds {rounds:?}; GetSecretValue calls: {singles}"
        );
        assert!(rounds.len() >= 2, "refreshes happened: {rounds:?}");
        assert!(
            rounds.iter().all(|calls| *calls <= 5),
            "at most 5 calls per round: {rounds:?}"
        );
        assert!(batches <= 5 * 4, "{batches} calls in 3 intervals");
        assert_eq!(singles, 0, "no single reads");
    }

    /// Applies an ExternalSecret in `app` reading from the ClusterSecretStore `aws`.
    async fn es(env: &Env, name: &str, spec: &str) -> ExternalSecret {
        env.apply::<ExternalSecret>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  secretStoreRef: {{name: aws, kind: ClusterSecretStore}}\n{spec}"
        ))
        .await
    }

    async fn env_with_store(moto: &Moto, endpoint: &str) -> Env {
        let _ = moto;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        cluster_store(&env, "aws", endpoint, "").await;
        env
    }

    #[tokio::test]
    async fn outage_keeps_the_last_secret_and_recovers() {
        let moto = Moto::start().await;
        moto::create(&moto.client().await, "svc/key", "k-1", &[]).await;
        let proxy = crate::support::counting_proxy::CountingProxy::start(&moto.endpoint).await;
        let env = env_with_store(&moto, &proxy.endpoint).await;
        es(&env, "svc", "  refreshInterval: 1s\n  data:\n    - secretKey: key\n      remoteRef: {key: svc/key}\n").await;
        env.wait_condition("app", "svc", "True", Duration::from_secs(20))
            .await;
        let before = env.get_secret("app", "svc").await.expect("Secret");

        proxy.set_down(true);
        let failed = env
            .wait_condition("app", "svc", "False", Duration::from_secs(30))
            .await;
        let (reason, message) = ready_reason(&failed);
        assert_eq!(reason, "SecretSyncError");
        assert!(!message.contains("k-1"), "{message}");
        let during = env.get_secret("app", "svc").await.expect("Secret kept");
        assert_eq!(during.data, before.data, "last good values kept");
        assert_eq!(
            during.resource_version(),
            before.resource_version(),
            "not rewritten"
        );

        proxy.set_down(false);
        env.wait_condition("app", "svc", "True", Duration::from_secs(30))
            .await;
        assert_eq!(
            env.secret_data("app", "svc").await.expect("Secret")["key"],
            "k-1"
        );
    }

    #[tokio::test]
    async fn manual_refresh_works_with_interval_zero() {
        let moto = Moto::start().await;
        let aws = moto.client().await;
        moto::create(&aws, "manual/key", "m-1", &[]).await;
        let env = env_with_store(&moto, &moto.endpoint).await;
        es(&env, "manual", "  refreshInterval: \"0\"\n  data:\n    - secretKey: key\n      remoteRef: {key: manual/key}\n").await;
        env.wait_condition("app", "manual", "True", Duration::from_secs(20))
            .await;
        moto::put(&aws, "manual/key", "m-2").await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(
            env.secret_data("app", "manual").await.expect("Secret")["key"],
            "m-1",
            "no periodic refresh"
        );

        let api: kube::Api<ExternalSecret> = kube::Api::namespaced(env.client.clone(), "app");
        api.patch(
            "manual",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"metadata": {"annotations": {
                "sigil.dev/refresh-requested-at": jiff::Timestamp::now().to_string()
            }}})),
        )
        .await
        .expect("annotate");
        wait_for("the manual refresh", Duration::from_secs(10), || async {
            let data = env.secret_data("app", "manual").await?;
            (data["key"] == "m-2").then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn creation_policies_never_adopt_and_merge_keeps_other_keys() {
        let moto = Moto::start().await;
        moto::create(&moto.client().await, "p/key", "v-1", &[]).await;
        let env = env_with_store(&moto, &moto.endpoint).await;
        env.secret("app", "taken", &[("theirs", "x")]).await;
        env.secret("app", "shared", &[("keep", "k")]).await;
        let data = "  data:\n    - secretKey: value\n      remoteRef: {key: p/key}\n";

        es(&env, "owner", &format!("  target: {{name: taken}}\n{data}")).await;
        let refused = env
            .wait_condition("app", "owner", "False", Duration::from_secs(20))
            .await;
        assert_eq!(ready_reason(&refused).0, "SecretConflict");
        let taken = env.get_secret("app", "taken").await.expect("still there");
        assert!(
            !taken
                .annotations()
                .contains_key("sigil.dev/external-secret"),
            "not adopted"
        );
        assert_eq!(
            env.secret_data("app", "taken").await.expect("data").len(),
            1
        );

        es(
            &env,
            "merge",
            &format!("  target: {{name: shared, creationPolicy: Merge}}\n{data}"),
        )
        .await;
        env.wait_condition("app", "merge", "True", Duration::from_secs(20))
            .await;
        let merged = env.secret_data("app", "shared").await.expect("data");
        assert_eq!(merged.get("keep").map(String::as_str), Some("k"));
        assert_eq!(merged.get("value").map(String::as_str), Some("v-1"));
        assert!(
            env.get_secret("app", "shared")
                .await
                .expect("Secret")
                .owner_references()
                .is_empty()
        );

        es(
            &env,
            "merge-missing",
            &format!("  target: {{name: nowhere, creationPolicy: Merge}}\n{data}"),
        )
        .await;
        let missing = env
            .wait_condition("app", "merge-missing", "False", Duration::from_secs(20))
            .await;
        assert!(
            ready_reason(&missing).1.contains("does not exist"),
            "{:?}",
            ready_reason(&missing)
        );
        assert!(env.get_secret("app", "nowhere").await.is_none());

        es(
            &env,
            "orphan",
            &format!("  target: {{creationPolicy: Orphan}}\n{data}"),
        )
        .await;
        env.wait_condition("app", "orphan", "True", Duration::from_secs(20))
            .await;
        let orphan = env.get_secret("app", "orphan").await.expect("Secret");
        assert!(orphan.owner_references().is_empty());

        // A second ExternalSecret cannot take over a Secret the first one manages.
        es(
            &env,
            "thief",
            &format!("  target: {{name: orphan, creationPolicy: Merge}}\n{data}"),
        )
        .await;
        let thief = env
            .wait_condition("app", "thief", "False", Duration::from_secs(20))
            .await;
        assert_eq!(ready_reason(&thief).0, "SecretConflict");
    }

    #[tokio::test]
    async fn deletion_policy_deletes_or_retains_when_the_remote_secret_is_gone() {
        let moto = Moto::start().await;
        let aws = moto.client().await;
        moto::create(&aws, "gone/a", "a", &[]).await;
        moto::create(&aws, "gone/b", "b", &[]).await;
        let env = env_with_store(&moto, &moto.endpoint).await;
        es(&env, "deleted", "  refreshInterval: 1s\n  target: {deletionPolicy: Delete}\n  data:\n    - secretKey: v\n      remoteRef: {key: gone/a}\n").await;
        es(
            &env,
            "retained",
            "  refreshInterval: 1s\n  data:\n    - secretKey: v\n      remoteRef: {key: gone/b}\n",
        )
        .await;
        env.wait_condition("app", "deleted", "True", Duration::from_secs(20))
            .await;
        env.wait_condition("app", "retained", "True", Duration::from_secs(20))
            .await;
        for name in ["gone/a", "gone/b"] {
            aws.delete_secret()
                .secret_id(name)
                .force_delete_without_recovery(true)
                .send()
                .await
                .expect("delete remote secret");
        }
        wait_for("the Secret deleted", Duration::from_secs(20), || async {
            env.get_secret("app", "deleted")
                .await
                .is_none()
                .then_some(())
        })
        .await;
        let deleted = env.external_secret("app", "deleted").await;
        assert_eq!(ready_reason(&deleted).0, "SecretDeleted");
        let retained = env
            .wait_condition("app", "retained", "False", Duration::from_secs(20))
            .await;
        assert!(
            ready_reason(&retained).1.contains("Retain"),
            "{:?}",
            ready_reason(&retained)
        );
        assert_eq!(
            env.secret_data("app", "retained").await.expect("kept")["v"],
            "b"
        );
    }

    #[tokio::test]
    async fn find_by_tags_and_name_with_a_template() {
        let moto = Moto::start().await;
        let aws = moto.client().await;
        moto::create(&aws, "team/db-user", "app", &[("team", "a")]).await;
        moto::create(&aws, "team/db-password", "s3cr3t", &[("team", "a")]).await;
        moto::create(&aws, "team/other", "x", &[("team", "b")]).await;
        let env = env_with_store(&moto, &moto.endpoint).await;
        es(
            &env,
            "found",
            r#"  dataFrom:
    - find: {tags: {team: a}}
  target:
    template:
      type: kubernetes.io/basic-auth
      metadata: {labels: {app.kubernetes.io/part-of: shop}}
      data:
        username: "{{ index . \"team_db-user\" }}"
        password: "{{ index . \"team_db-password\" }}"
        url: "postgres://{{ index . \"team_db-user\" | upper }}@db"
"#,
        )
        .await;
        es(
            &env,
            "by-name",
            "  dataFrom:\n    - find: {name: {regexp: \"^team/db-\"}}\n",
        )
        .await;
        env.wait_condition("app", "found", "True", Duration::from_secs(20))
            .await;
        let secret = env.get_secret("app", "found").await.expect("Secret");
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/basic-auth"));
        assert_eq!(
            secret
                .labels()
                .get("app.kubernetes.io/part-of")
                .map(String::as_str),
            Some("shop")
        );
        let data = env.secret_data("app", "found").await.expect("data");
        assert_eq!(
            data,
            [
                ("password", "s3cr3t"),
                ("url", "postgres://APP@db"),
                ("username", "app")
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        );
        env.wait_condition("app", "by-name", "True", Duration::from_secs(20))
            .await;
        let keys: Vec<String> = env
            .secret_data("app", "by-name")
            .await
            .expect("data")
            .into_keys()
            .collect();
        assert_eq!(keys, ["team_db-password", "team_db-user"]);

        es(&env, "bad-template", "  data:\n    - secretKey: a\n      remoteRef: {key: team/other}\n  target:\n    template:\n      data:\n        x: \"{{ .missing }}\"\n").await;
        let bad = env
            .wait_condition("app", "bad-template", "False", Duration::from_secs(20))
            .await;
        let (reason, message) = ready_reason(&bad);
        assert_eq!(reason, "InvalidSpec");
        assert!(
            message.contains("missing") && !message.contains("s3cr3t"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn drift_is_repaired_from_the_backend() {
        let moto = Moto::start().await;
        moto::create(&moto.client().await, "drift/key", "d-1", &[]).await;
        let env = env_with_store(&moto, &moto.endpoint).await;
        es(
            &env,
            "drift",
            "  data:\n    - secretKey: key\n      remoteRef: {key: drift/key}\n",
        )
        .await;
        env.wait_condition("app", "drift", "True", Duration::from_secs(20))
            .await;
        let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> =
            kube::Api::namespaced(env.client.clone(), "app");
        secrets
            .patch(
                "drift",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(serde_json::json!({"data": {"key": "ZWRpdGVk"}})),
            )
            .await
            .expect("edit Secret");
        wait_for("the edit repaired", Duration::from_secs(10), || async {
            let data = env.secret_data("app", "drift").await?;
            (data["key"] == "d-1").then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn rotation_restarts_opted_in_workloads_once_and_never_on_first_sync_or_restart() {
        use k8s_openapi::api::apps::v1::Deployment;
        let moto = Moto::start().await;
        let aws = moto.client().await;
        moto::create(&aws, "rl/a", "a-1", &[]).await;
        moto::create(&aws, "rl/b", "b-1", &[]).await;
        // Rotations up to 3s apart count as one change.
        let mut env = external::start(|o| o.reload_debounce = Duration::from_secs(3)).await;
        env.namespace("app", &[]).await;
        cluster_store(&env, "aws", &moto.endpoint, "").await;
        let deployment = |name: &str, opt_in: bool| {
            format!(
                r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: app
  annotations: {{sigil.dev/reload: "{opt_in}"}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers:
        - name: app
          image: example/app:1
          env:
            - name: A
              valueFrom: {{secretKeyRef: {{name: secret-a, key: v}}}}
          envFrom:
            - secretRef: {{name: unrelated}}
      volumes:
        - name: b
          projected:
            sources:
              - secret: {{name: secret-b}}
"#
            )
        };
        env.apply::<Deployment>(&deployment("web", true)).await;
        env.apply::<Deployment>(&deployment("batch", false)).await;
        for (name, key) in [("secret-a", "rl/a"), ("secret-b", "rl/b")] {
            es(&env, name, &format!("  refreshInterval: 1s\n  data:\n    - secretKey: v\n      remoteRef: {{key: {key}}}\n")).await;
        }
        env.wait_condition("app", "secret-a", "True", Duration::from_secs(20))
            .await;
        env.wait_condition("app", "secret-b", "True", Duration::from_secs(20))
            .await;
        let deployments: kube::Api<Deployment> = kube::Api::namespaced(env.client.clone(), "app");
        let restarted = |d: &Deployment| {
            d.spec
                .as_ref()
                .and_then(|s| s.template.metadata.as_ref())
                .and_then(|m| m.annotations.as_ref())
                .and_then(|a| a.get("sigil.dev/secrets-hmac").cloned())
        };
        tokio::time::sleep(Duration::from_secs(2)).await;
        let web = deployments.get("web").await.expect("web");
        assert_eq!(restarted(&web), None, "first sync restarts nothing");
        let generation = web.metadata.generation;

        env.restart_controller().await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let web = deployments.get("web").await.expect("web");
        assert_eq!(
            restarted(&web),
            None,
            "a controller restart restarts nothing"
        );

        moto::put(&aws, "rl/a", "a-2").await;
        moto::put(&aws, "rl/b", "b-2").await;
        let web = wait_for("web restarted", Duration::from_secs(20), || async {
            let web = deployments.get("web").await.ok()?;
            restarted(&web).map(|_| web)
        })
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let settled = deployments.get("web").await.expect("web");
        assert_eq!(restarted(&settled), restarted(&web));
        assert_eq!(
            settled.metadata.generation,
            generation.map(|g| g + 1),
            "both Secrets rotating together restart once"
        );
        let batch = deployments.get("batch").await.expect("batch");
        assert_eq!(restarted(&batch), None, "not opted in");
        assert_eq!(
            env.secret_data("app", "secret-b").await.expect("b")["v"],
            "b-2"
        );
    }
}

// ---- auth.jwt: a ServiceAccount token exchanged with STS AssumeRoleWithWebIdentity ----

mod jwt {
    use std::time::Duration;

    use base64::Engine;
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kube::api::PostParams;
    use serde_json::{Value, json};
    use sigil::api::{ExternalSecret, SecretStore};

    use crate::support::counting_proxy::CountingProxy;
    use crate::support::external::{self, Env, ready_reason, wait_for};
    use crate::support::moto::{self, Moto};

    const ROLE: &str = "arn:aws:iam::123456789012:role/reader";

    async fn service_account(env: &Env, namespace: &str, name: &str) {
        let api: kube::Api<ServiceAccount> = kube::Api::namespaced(env.client.clone(), namespace);
        let account = serde_json::from_value(json!({"metadata": {"name": name}})).expect("object");
        api.create(&PostParams::default(), &account)
            .await
            .expect("ServiceAccount");
    }

    /// A SecretStore in `app` authenticating with `account`'s token; `role` is a YAML line or empty.
    async fn store(env: &Env, name: &str, endpoint: &str, account: &str, role: &str) {
        env.apply::<SecretStore>(&format!(
            r#"
apiVersion: sigil.dev/v1alpha1
kind: SecretStore
metadata: {{name: {name}, namespace: app}}
spec:
  provider:
    aws:
      service: SecretsManager
      region: {region}
      endpoint: {endpoint}
      {role}
      auth:
        jwt:
          serviceAccountRef: {{name: {account}}}
"#,
            region = moto::REGION,
        ))
        .await;
    }

    async fn external_secret(env: &Env, name: &str, store: &str, key: &str) {
        env.apply::<ExternalSecret>(&format!(
            r#"
apiVersion: sigil.dev/v1alpha1
kind: ExternalSecret
metadata: {{name: {name}, namespace: app}}
spec:
  refreshInterval: 1s
  secretStoreRef: {{name: {store}, kind: SecretStore}}
  data:
    - secretKey: value
      remoteRef: {{key: {key}}}
"#
        ))
        .await;
    }

    /// The store's Ready condition once it has `status`: (reason, message).
    async fn store_ready(env: &Env, name: &str, status: &str) -> (String, String) {
        let api: kube::Api<SecretStore> = kube::Api::namespaced(env.client.clone(), "app");
        wait_for(
            &format!("SecretStore app/{name} Ready={status}"),
            Duration::from_secs(20),
            || async {
                let store = api.get(name).await.ok()?;
                let ready = store
                    .status?
                    .conditions
                    .into_iter()
                    .find(|c| c.type_ == "Ready" && c.status == status)?;
                Some((ready.reason, ready.message))
            },
        )
        .await
    }

    fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).expect("a JWT");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("claims")
    }

    #[tokio::test]
    async fn service_account_token_is_exchanged_for_role_credentials() {
        let moto = Moto::start().await;
        moto::create(&moto.client().await, "irsa/key", "w-1", &[]).await;
        let proxy = CountingProxy::start(&moto.endpoint).await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        service_account(&env, "app", "reader").await;
        store(
            &env,
            "irsa",
            &proxy.endpoint,
            "reader",
            &format!("role: {ROLE}"),
        )
        .await;
        external_secret(&env, "irsa", "irsa", "irsa/key").await;

        let es = env
            .wait_condition("app", "irsa", "True", Duration::from_secs(20))
            .await;
        assert_eq!(ready_reason(&es).0, "SecretSynced");
        assert_eq!(
            env.secret_data("app", "irsa").await.expect("Secret")["value"],
            "w-1"
        );
        let (reason, _) = store_ready(&env, "irsa", "True").await;
        assert_eq!(reason, "Valid");

        let exchanges = proxy.forms("AssumeRoleWithWebIdentity");
        assert!(!exchanges.is_empty(), "{:?}", proxy.counts());
        let exchange = &exchanges[0];
        assert_eq!(exchange["RoleArn"], ROLE);
        let token = claims(&exchange["WebIdentityToken"]);
        assert_eq!(token["sub"], "system:serviceaccount:app:reader");
        assert_eq!(token["aud"], json!(["sts.amazonaws.com"]));
        assert!(
            proxy.signers("AssumeRoleWithWebIdentity").is_empty(),
            "the exchange is unsigned"
        );
        let signers = proxy.signers("BatchGetSecretValue");
        assert!(
            !signers.is_empty() && signers.iter().all(|key| key.starts_with("ASIA")),
            "reads are signed with the role's temporary credentials: {signers:?}"
        );

        // Refreshes reuse the credentials until they near expiry (moto grants 12 hours).
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(
            proxy.count("BatchGetSecretValue") >= 3,
            "{:?}",
            proxy.counts()
        );
        assert_eq!(
            proxy.count("AssumeRoleWithWebIdentity"),
            1,
            "one exchange per client: {:?}",
            proxy.counts()
        );
    }

    #[tokio::test]
    async fn missing_service_account_or_role_is_not_ready_and_writes_nothing() {
        let moto = Moto::start().await;
        moto::create(&moto.client().await, "irsa/key", "w-1", &[]).await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        service_account(&env, "app", "reader").await;
        store(
            &env,
            "ghost",
            &moto.endpoint,
            "ghost",
            &format!("role: {ROLE}"),
        )
        .await;
        store(&env, "roleless", &moto.endpoint, "reader", "").await;
        external_secret(&env, "ghost", "ghost", "irsa/key").await;
        external_secret(&env, "roleless", "roleless", "irsa/key").await;

        let (reason, message) = store_ready(&env, "ghost", "False").await;
        eprintln!("store without its ServiceAccount: {reason}: {message}");
        assert_eq!(reason, "InvalidProviderConfig", "{message}");
        assert!(
            message.contains("spec.provider.aws.auth.jwt.serviceAccountRef")
                && message.contains("ServiceAccount app/ghost")
                && message.contains("not found"),
            "{message}"
        );
        let (reason, message) = store_ready(&env, "roleless", "False").await;
        eprintln!("store without a role: {reason}: {message}");
        assert_eq!(reason, "InvalidProviderConfig", "{message}");
        assert!(message.contains("spec.provider.aws.role"), "{message}");

        for name in ["ghost", "roleless"] {
            let es = env
                .wait_condition("app", name, "False", Duration::from_secs(20))
                .await;
            let (reason, message) = ready_reason(&es);
            assert_eq!(reason, "StoreNotReady", "{name}: {message}");
            assert!(
                env.get_secret("app", name).await.is_none(),
                "{name}: nothing written"
            );
        }
    }
}
