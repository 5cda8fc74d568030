//! External secrets from AWS SSM Parameter Store (`service: ParameterStore`),
//! against `moto_server`, with requests counted at a proxy in front of it.

use aws_sdk_ssm::types::ParameterType;
use sigil::api::secret_store::AwsService;
use sigil::providers::parameter_store::{AwsParameterStore, BATCH_SIZE};
use sigil::providers::{BackendCalls, FindQuery, Provider, ProviderError, RemoteKey, SecretValue};

use crate::support::counting_proxy::CountingProxy;
use crate::support::moto::{self, Moto, put_parameter};

const STORE: &str = "SecretStore/test/ssm";

async fn provider(endpoint: &str, calls: &BackendCalls) -> AwsParameterStore {
    sigil::tls::install_crypto_provider();
    let spec = sigil::api::secret_store::AwsProvider {
        service: AwsService::ParameterStore,
        ..moto::store_spec(endpoint)
    };
    AwsParameterStore::new(
        &spec,
        moto::static_credentials(),
        calls.for_store(STORE, "aws-ssm"),
    )
    .await
    .expect("provider builds")
}

fn text(value: &SecretValue) -> &str {
    std::str::from_utf8(value.expose()).expect("utf-8")
}

fn key(name: &str, version: Option<&str>) -> RemoteKey {
    RemoteKey::new(name, version.map(str::to_string))
}

#[tokio::test]
async fn provider_batches_reads_by_ten_decrypts_and_maps_results_back() {
    let moto = Moto::start().await;
    let ssm = moto.ssm().await;
    let kinds = [
        ParameterType::String,
        ParameterType::SecureString,
        ParameterType::StringList,
    ];
    for i in 0..25 {
        let kind = kinds[i % 3].clone();
        put_parameter(
            &ssm,
            &format!("/batch/p{i:02}"),
            &format!("v-{i},x"),
            kind,
            &[],
        )
        .await;
    }
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let calls = BackendCalls::default();
    let store = provider(&proxy.endpoint, &calls).await;

    let mut keys: Vec<RemoteKey> = (0..25)
        .rev()
        .map(|i| key(&format!("/batch/p{i:02}"), None))
        .collect();
    keys.push(key("/batch/missing", None));
    let results = store.get_many(&keys).await;

    assert_eq!(results.len(), keys.len());
    for (i, result) in results.iter().take(25).enumerate() {
        let n = 24 - i;
        // SecureStrings (every third) arrive decrypted.
        assert_eq!(text(result.as_ref().expect("read")), format!("v-{n},x"));
    }
    assert!(
        matches!(&results[25], Err(ProviderError::NotFound { key }) if key == "/batch/missing"),
        "{:?}",
        results[25]
    );
    let expected = keys.len().div_ceil(BATCH_SIZE) as u64;
    assert_eq!(expected, 3);
    assert_eq!(
        proxy.count("GetParameters"),
        expected,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(proxy.count("GetParameter"), 0, "{:?}", proxy.counts());
    assert_eq!(calls.count(STORE, "aws-ssm", "success"), expected);
}

#[tokio::test]
async fn provider_reads_versions_and_labels_as_selectors() {
    let moto = Moto::start().await;
    let ssm = moto.ssm().await;
    put_parameter(
        &ssm,
        "/versioned",
        "first",
        ParameterType::SecureString,
        &[],
    )
    .await;
    put_parameter(
        &ssm,
        "/versioned",
        "second",
        ParameterType::SecureString,
        &[],
    )
    .await;
    put_parameter(&ssm, "/other", "o", ParameterType::String, &[]).await;
    ssm.label_parameter_version()
        .name("/versioned")
        .parameter_version(1)
        .labels("stable")
        .send()
        .await
        .expect("label version 1");
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let store = provider(&proxy.endpoint, &BackendCalls::default()).await;

    let keys = [
        key("/versioned", None),
        key("/versioned", Some("1")),
        key("/other", None),
        key("/versioned", Some("stable")),
        key("/versioned", Some("9")),
    ];
    let results = store.get_many(&keys).await;
    let shown: Vec<Result<&str, String>> = results
        .iter()
        .map(|r| r.as_ref().map(text).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(shown[0], Ok("second"));
    assert_eq!(shown[1], Ok("first"));
    assert_eq!(shown[2], Ok("o"));
    assert_eq!(shown[3], Ok("first"));
    assert!(
        matches!(&results[4], Err(ProviderError::NotFound { key }) if key.contains("/versioned") && key.contains('9')),
        "{:?}",
        results[4]
    );
    // One request per version of a parameter (an answer does not say which selector it serves).
    assert_eq!(proxy.count("GetParameters"), 4, "{:?}", proxy.counts());
    assert_eq!(proxy.count("GetParameter"), 0, "{:?}", proxy.counts());
}

#[tokio::test]
async fn provider_finds_by_path_name_and_tags() {
    let moto = Moto::start().await;
    let ssm = moto.ssm().await;
    let team = [("team", "a")];
    put_parameter(
        &ssm,
        "/team-a/db/user",
        "a-user",
        ParameterType::String,
        &team,
    )
    .await;
    put_parameter(
        &ssm,
        "/team-a/db/password",
        "a-password",
        ParameterType::SecureString,
        &team,
    )
    .await;
    put_parameter(&ssm, "/team-a/cache", "a-cache", ParameterType::String, &[]).await;
    put_parameter(
        &ssm,
        "/team-b/db/user",
        "b-user",
        ParameterType::String,
        &team,
    )
    .await;
    for i in 0..15 {
        put_parameter(
            &ssm,
            &format!("/deep/n{i:02}"),
            "d",
            ParameterType::String,
            &[],
        )
        .await;
    }
    let proxy = CountingProxy::start(&moto.endpoint).await;
    let store = provider(&proxy.endpoint, &BackendCalls::default()).await;

    let by_path = store
        .find(&FindQuery {
            path: Some("/team-a".into()),
            ..Default::default()
        })
        .await
        .expect("find by path");
    let names: Vec<&str> = by_path.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["/team-a/cache", "/team-a/db/password", "/team-a/db/user"],
        "recursive"
    );
    assert_eq!(text(&by_path[1].1), "a-password", "decrypted");
    assert_eq!(
        proxy.count("GetParametersByPath"),
        1,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(proxy.count("DescribeParameters"), 0, "{:?}", proxy.counts());

    let paged = store
        .find(&FindQuery {
            path: Some("/deep/".into()),
            ..Default::default()
        })
        .await
        .expect("find a tree of 15");
    assert_eq!(paged.len(), 15);
    assert_eq!(
        proxy.count("GetParametersByPath"),
        1 + 2,
        "pages of 10: {:?}",
        proxy.counts()
    );

    let path_and_name = store
        .find(&FindQuery {
            path: Some("/team-a".into()),
            name_regexp: Some("/db/".into()),
            ..Default::default()
        })
        .await
        .expect("find by path and name");
    let names: Vec<&str> = path_and_name.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["/team-a/db/password", "/team-a/db/user"]);

    let before = proxy.counts();
    let by_tags = store
        .find(&FindQuery {
            tags: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("find by tags");
    let names: Vec<&str> = by_tags.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["/team-a/db/password", "/team-a/db/user", "/team-b/db/user"]
    );
    assert_eq!(text(&by_tags[0].1), "a-password");
    let delta = |action: &str| proxy.count(action) - before.get(action).copied().unwrap_or(0);
    assert_eq!(delta("DescribeParameters"), 1, "{:?}", proxy.counts());
    assert_eq!(
        delta("GetParameters"),
        1,
        "one batch for 3: {:?}",
        proxy.counts()
    );

    let tags_below_path = store
        .find(&FindQuery {
            path: Some("/team-b".into()),
            tags: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("find by path and tags");
    let names: Vec<&str> = tags_below_path.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["/team-b/db/user"]);

    let relative = store
        .find(&FindQuery {
            path: Some("team-a".into()),
            ..Default::default()
        })
        .await
        .expect_err("paths start with /");
    assert!(relative.to_string().contains("find.path"), "{relative}");
    let bad = store
        .find(&FindQuery {
            path: Some("/team-a".into()),
            name_regexp: Some("(".into()),
            ..Default::default()
        })
        .await
        .expect_err("bad pattern");
    assert!(bad.to_string().contains("find.name.regexp"), "{bad}");
}

#[tokio::test]
async fn provider_reads_one_by_one_when_batches_are_denied_and_reports_outages() {
    let moto = Moto::start().await;
    let ssm = moto.ssm().await;
    for name in ["/deny/a", "/deny/b", "/deny/c"] {
        put_parameter(
            &ssm,
            name,
            "Zq7-plaintext",
            ParameterType::SecureString,
            &[],
        )
        .await;
    }
    let proxy = CountingProxy::start(&moto.endpoint).await;
    proxy.deny("GetParameters");
    let calls = BackendCalls::default();
    let store = provider(&proxy.endpoint, &calls).await;
    store.validate().await.expect("store validates");

    let keys = [
        key("/deny/a", None),
        key("/deny/b", None),
        key("/deny/missing", None),
    ];
    let first = store.get_many(&keys).await;
    assert_eq!(text(first[0].as_ref().expect("a")), "Zq7-plaintext");
    assert_eq!(text(first[1].as_ref().expect("b")), "Zq7-plaintext");
    assert!(
        matches!(&first[2], Err(ProviderError::NotFound { key }) if key == "/deny/missing"),
        "{:?}",
        first[2]
    );
    assert_eq!(proxy.count("GetParameters"), 1, "{:?}", proxy.counts());
    assert_eq!(proxy.count("GetParameter"), 3, "{:?}", proxy.counts());
    assert_eq!(calls.count(STORE, "aws-ssm", "denied"), 1);
    // From then on, no batch is tried.
    store.get_many(&keys[..2]).await;
    assert_eq!(proxy.count("GetParameters"), 1, "{:?}", proxy.counts());
    assert_eq!(proxy.count("GetParameter"), 5, "{:?}", proxy.counts());

    proxy.set_down(true);
    let error = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        store.get(&key("/deny/c", None)),
    )
    .await
    .expect("bounded")
    .expect_err("outage");
    assert!(error.is_transient(), "{error:?}");
    assert!(error.to_string().contains("/deny/c"), "{error}");
    assert!(!error.to_string().contains("Zq7-plaintext"), "{error}");
    proxy.set_down(false);
    let value = store.get(&key("/deny/c", None)).await.expect("recovered");
    assert_eq!(text(&value), "Zq7-plaintext");
}

// ---- The controller, in the embedded API server ----

mod controller {
    use std::time::{Duration, Instant};

    use aws_sdk_ssm::types::ParameterType;
    use k8s_openapi::api::events::v1::Event;
    use sigil::api::ExternalSecret;

    use crate::external_aws::controller::cluster_store_for;
    use crate::support::counting_proxy::CountingProxy;
    use crate::support::external::{self, Env, ready_reason, wait_for};
    use crate::support::moto::{Moto, put_parameter};

    async fn env_with_store(endpoint: &str) -> Env {
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        cluster_store_for(&env, "ssm", "ParameterStore", endpoint, "").await;
        env
    }

    /// Applies an ExternalSecret in `app` reading from the ClusterSecretStore `ssm`.
    async fn es(env: &Env, name: &str, spec: &str) -> ExternalSecret {
        env.apply::<ExternalSecret>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  secretStoreRef: {{name: ssm, kind: ClusterSecretStore}}\n{spec}"
        ))
        .await
    }

    fn strings(pairs: &[(&str, &str)]) -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn parameters_materialize_and_follow_overwrites() {
        let moto = Moto::start().await;
        let ssm = moto.ssm().await;
        put_parameter(&ssm, "/shop/db/user", "shop", ParameterType::String, &[]).await;
        put_parameter(
            &ssm,
            "/shop/db/password",
            "pw-1",
            ParameterType::SecureString,
            &[],
        )
        .await;
        put_parameter(
            &ssm,
            "/shop/config",
            r#"{"host":"db.internal","port":5432}"#,
            ParameterType::String,
            &[],
        )
        .await;
        let proxy = CountingProxy::start(&moto.endpoint).await;
        let env = env_with_store(&proxy.endpoint).await;
        es(
            &env,
            "db",
            r#"  refreshInterval: 2s
  data:
    - secretKey: user
      remoteRef: {key: /shop/db/user}
    - secretKey: password
      remoteRef: {key: /shop/db/password}
    - secretKey: database-host
      remoteRef: {key: /shop/config, property: host}
  dataFrom:
    - extract: {key: /shop/config}
"#,
        )
        .await;
        es(
            &env,
            "tree",
            "  refreshInterval: 2s\n  dataFrom:\n    - find: {path: /shop/db}\n",
        )
        .await;

        let ready = env
            .wait_condition("app", "db", "True", Duration::from_secs(20))
            .await;
        assert_eq!(ready_reason(&ready).0, "SecretSynced");
        assert_eq!(
            env.secret_data("app", "db").await.expect("Secret"),
            strings(&[
                ("database-host", "db.internal"),
                ("host", "db.internal"),
                ("password", "pw-1"),
                ("port", "5432"),
                ("user", "shop"),
            ])
        );
        env.wait_condition("app", "tree", "True", Duration::from_secs(20))
            .await;
        assert_eq!(
            env.secret_data("app", "tree").await.expect("Secret"),
            strings(&[("shop_db_password", "pw-1"), ("shop_db_user", "shop")])
        );
        assert!(proxy.count("GetParameters") >= 1, "{:?}", proxy.counts());
        assert!(
            proxy.count("GetParametersByPath") >= 1,
            "{:?}",
            proxy.counts()
        );
        assert_eq!(proxy.count("GetParameter"), 0, "{:?}", proxy.counts());

        let rotated_at = Instant::now();
        put_parameter(
            &ssm,
            "/shop/db/password",
            "pw-2",
            ParameterType::SecureString,
            &[],
        )
        .await;
        for name in ["db", "tree"] {
            let key = if name == "db" {
                "password"
            } else {
                "shop_db_password"
            };
            wait_for(
                &format!("the overwritten password in {name}"),
                Duration::from_secs(10),
                || async {
                    let data = env.secret_data("app", name).await?;
                    (data.get(key).map(String::as_str) == Some("pw-2")).then_some(())
                },
            )
            .await;
        }
        let took = rotated_at.elapsed();
        eprintln!(
            "a Parameter Store overwrite reached both Secrets after {took:?} (refreshInterval 2s)"
        );
        assert!(
            took < Duration::from_secs(6),
            "within the next refreshes: {took:?}"
        );
    }

    #[tokio::test]
    async fn errors_name_the_external_secret_and_the_key_never_the_value() {
        let moto = Moto::start().await;
        let ssm = moto.ssm().await;
        put_parameter(
            &ssm,
            "/errs/token",
            "Zq7-plaintext",
            ParameterType::SecureString,
            &[],
        )
        .await;
        let env = env_with_store(&moto.endpoint).await;
        es(
            &env,
            "missing",
            "  data:\n    - secretKey: value\n      remoteRef: {key: /errs/nowhere}\n",
        )
        .await;
        es(
            &env,
            "not-json",
            "  data:\n    - secretKey: value\n      remoteRef: {key: /errs/token, property: password}\n",
        )
        .await;
        es(&env, "relative", "  dataFrom:\n    - find: {path: errs}\n").await;

        let expectations = [
            ("missing", "/errs/nowhere"),
            ("not-json", "/errs/token"),
            ("relative", "find.path"),
        ];
        for (name, named) in expectations {
            let failed = env
                .wait_condition("app", name, "False", Duration::from_secs(20))
                .await;
            let (reason, message) = ready_reason(&failed);
            eprintln!("{name}: {reason}: {message}");
            assert_eq!(reason, "SecretSyncError", "{name}: {message}");
            assert!(message.contains(named), "{name}: {message}");
            assert!(!message.contains("Zq7-plaintext"), "{name}: {message}");
            assert!(
                env.get_secret("app", name).await.is_none(),
                "{name}: nothing written"
            );
        }
        let events: kube::Api<Event> = kube::Api::namespaced(env.client.clone(), "app");
        let notes: Vec<(String, String)> = events
            .list(&Default::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter_map(|e| {
                let regarding = e.regarding?.name?;
                Some((regarding, e.note.unwrap_or_default()))
            })
            .collect();
        for (name, named) in expectations {
            assert!(
                notes
                    .iter()
                    .any(|(regarding, note)| regarding == name && note.contains(named)),
                "a Warning Event on {name} naming {named}: {notes:?}"
            );
        }
        assert!(
            notes
                .iter()
                .all(|(_, note)| !note.contains("Zq7-plaintext")),
            "{notes:?}"
        );
    }

    #[tokio::test]
    async fn twenty_five_external_secrets_over_twenty_five_parameters_cost_three_calls_a_round() {
        const PARAMETERS: usize = 25;
        const INTERVAL: Duration = Duration::from_secs(4);
        let moto = Moto::start().await;
        let ssm = moto.ssm().await;
        for i in 0..PARAMETERS {
            put_parameter(
                &ssm,
                &format!("/fleet/p{i:02}"),
                &format!("value-{i}"),
                ParameterType::SecureString,
                &[],
            )
            .await;
        }
        let proxy = CountingProxy::start(&moto.endpoint).await;
        let env = env_with_store(&proxy.endpoint).await;
        for i in 0..PARAMETERS {
            es(
                &env,
                &format!("es-{i:02}"),
                &format!(
                    "  refreshInterval: 4s\n  data:\n    - secretKey: value\n      remoteRef: {{key: /fleet/p{i:02}}}\n"
                ),
            )
            .await;
        }
        for i in 0..PARAMETERS {
            env.wait_condition(
                "app",
                &format!("es-{i:02}"),
                "True",
                Duration::from_secs(30),
            )
            .await;
        }
        assert_eq!(
            env.secret_data("app", "es-17").await.expect("Secret")["value"],
            "value-17"
        );

        // Steady state: every refresh tick is one round of ceil(25 / 10) = 3 requests.
        let window_start = Instant::now();
        tokio::time::sleep(INTERVAL * 4).await;
        let rounds = proxy.rounds("GetParameters", window_start, Duration::from_secs(1));
        eprintln!(
            "25 ExternalSecrets over 25 parameters: GetParameters per round {rounds:?}; all calls {:?}",
            proxy.counts()
        );
        // The window's edges may cut a round: judge the whole ones between them.
        let whole = rounds
            .get(1..rounds.len().saturating_sub(1))
            .unwrap_or_default();
        assert!(whole.len() >= 2, "refreshes happened: {rounds:?}");
        assert!(
            whole.iter().all(|calls| *calls == 3),
            "3 GetParameters per round: {rounds:?}"
        );
        assert_eq!(
            proxy.count("GetParameter"),
            0,
            "no single reads: {:?}",
            proxy.counts()
        );
    }
}
