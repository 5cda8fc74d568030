//! External secrets from Vault, against a real OpenBao dev server
//! (`support::openbao`): KV v1 (`kv1/`) and v2 (`secret/`), token / AppRole /
//! userpass auth, renewals, max TTL and revocation.

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;
use sigil::api::secret_store::{VaultKvVersion, VaultProvider};
use sigil::providers::vault::{VaultKv, VaultLogin};
use sigil::providers::{BackendCalls, FindQuery, Provider, ProviderError, RemoteKey};

use crate::support::counting_proxy::CountingProxy;
use crate::support::openbao::OpenBao;

fn kv(address: &str, version: VaultKvVersion, login: VaultLogin) -> VaultKv {
    kv_counted(address, version, login, &BackendCalls::default())
}

/// [`kv`] counting into `calls` (store label `SecretStore/test/vault`).
fn kv_counted(
    address: &str,
    version: VaultKvVersion,
    login: VaultLogin,
    calls: &BackendCalls,
) -> VaultKv {
    sigil::tls::install_crypto_provider();
    let mount = match version {
        VaultKvVersion::V1 => "kv1",
        VaultKvVersion::V2 => "secret",
    };
    VaultKv::new(
        &VaultProvider {
            server: address.into(),
            path: Some(mount.into()),
            version,
            ..Default::default()
        },
        login,
        calls.for_store("SecretStore/test/vault", "vault"),
    )
    .expect("provider builds")
}

fn text(value: &sigil::providers::SecretValue) -> String {
    String::from_utf8(value.expose().to_vec()).expect("utf-8")
}

fn key(path: &str) -> RemoteKey {
    RemoteKey::new(path, None)
}

/// Reads `path` every 200 ms for `span`; returns how many reads succeeded.
async fn read_for(vault: &VaultKv, path: &str, span: Duration) -> u32 {
    let start = Instant::now();
    let mut reads = 0;
    while start.elapsed() < span {
        vault.get(&key(path)).await.expect("read");
        reads += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    reads
}

#[tokio::test]
async fn kv_v1_with_a_token_reads_properties_and_finds_by_name() {
    let bao = OpenBao::start().await;
    bao.put_v1("app/db", json!({"user": "app", "password": "pw-1"}))
        .await;
    bao.put_v1("app/cache", json!({"url": "redis://cache"}))
        .await;
    bao.put_v1("other/thing", json!({"x": "y"})).await;
    let token = bao.create_token("1h").await;
    let vault = kv(
        &bao.address,
        VaultKvVersion::V1,
        VaultLogin::Token(SecretString::from(token)),
    );

    vault.validate().await.expect("token validates");
    let db = vault.get(&key("app/db")).await.expect("read");
    let password =
        sigil::providers::property::select(&db, Some("password"), "app/db").expect("property");
    assert_eq!(&*password, b"pw-1");
    let same = vault
        .get(&key("kv1/app/db"))
        .await
        .expect("mount prefix accepted");
    assert_eq!(text(&same), text(&db));
    assert!(matches!(
        vault.get(&key("app/missing")).await,
        Err(ProviderError::NotFound { .. })
    ));
    let refused = vault
        .get(&key("../sys/seal-status"))
        .await
        .expect_err("traversal");
    assert!(
        refused.to_string().contains("invalid Vault path"),
        "{refused}"
    );

    let found = vault
        .find(&FindQuery {
            name_regexp: Some("^app/".into()),
            ..Default::default()
        })
        .await
        .expect("find");
    let names: Vec<&str> = found.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["app/cache", "app/db"]);
}

#[tokio::test]
async fn kv_v1_with_an_invalid_token_fails_authentication() {
    let bao = OpenBao::start().await;
    bao.put_v1("app/db", json!({"password": "pw-1"})).await;
    let vault = kv(
        &bao.address,
        VaultKvVersion::V1,
        VaultLogin::Token(SecretString::from("not-a-token")),
    );
    let error = vault.validate().await.expect_err("bad token");
    assert!(matches!(error, ProviderError::Auth(_)), "{error:?}");
    assert!(!error.to_string().contains("not-a-token"), "{error}");
}

#[tokio::test]
async fn approle_renews_its_token_and_logs_in_again_only_at_max_ttl() {
    let bao = OpenBao::start().await;
    bao.put_v1("app/db", json!({"password": "pw-1"})).await;
    // Renewable for an hour: one login, then renewals at two thirds of the 3s TTL.
    let (role_id, secret_id) = bao.approle_at("approle", "sigil", "3s", "1h").await;
    // Never renewable past 4s: renewals shrink, so a new login follows each max TTL.
    let (short_role, short_secret) = bao.approle_at("approle-short", "sigil", "3s", "4s").await;
    let proxy = CountingProxy::start(&bao.address).await;
    let login = |mount: &str, role_id: &str, secret_id: &str| VaultLogin::AppRole {
        mount: mount.into(),
        role_id: role_id.into(),
        secret_id: SecretString::from(secret_id.to_string()),
    };
    let calls = BackendCalls::default();
    let renewing = kv_counted(
        &proxy.endpoint,
        VaultKvVersion::V1,
        login("approle", &role_id, &secret_id),
        &calls,
    );
    let capped = kv(
        &proxy.endpoint,
        VaultKvVersion::V1,
        login("approle-short", &short_role, &short_secret),
    );

    let span = Duration::from_secs(7);
    let (reads, capped_reads) = tokio::join!(
        read_for(&renewing, "app/db", span),
        read_for(&capped, "app/db", span)
    );
    assert!(
        reads >= 20 && capped_reads >= 20,
        "reads: {reads}, {capped_reads}"
    );
    assert_eq!(
        proxy.count("GET /v1/kv1/app/db"),
        u64::from(reads + capped_reads)
    );
    assert_eq!(
        proxy.count("POST /v1/auth/approle/login"),
        1,
        "{:?}",
        proxy.counts()
    );
    assert_eq!(renewing.logins(), 1);
    let capped_logins = proxy.count("POST /v1/auth/approle-short/login");
    assert!(
        (2..=4).contains(&capped_logins),
        "logins at max TTL: {capped_logins}, counts {:?}",
        proxy.counts()
    );
    assert_eq!(capped.logins(), capped_logins);
    let renewals = proxy.count("POST /v1/auth/token/renew-self");
    assert!((3..=10).contains(&renewals), "renewals: {renewals}");

    let mut registry = prometheus_client::registry::Registry::with_prefix("sigil");
    calls.register(&mut registry);
    let mut metrics = String::new();
    prometheus_client::encoding::text::encode(&mut metrics, &registry).expect("metrics");
    let labels = r#"{store="SecretStore/test/vault",provider="vault",outcome="success"}"#;
    assert!(
        metrics.contains(&format!("sigil_backend_logins_total{labels} 1\n")),
        "{metrics}"
    );
    let renewed = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&format!("sigil_backend_token_renewals_total{labels} ")))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    // Only the renewing client counts here; the capped one has its own registry-less calls.
    assert!(
        (2..=renewals).contains(&renewed),
        "renewals counted: {renewed}\n{metrics}"
    );
}

#[tokio::test]
async fn userpass_logs_in_and_refuses_a_wrong_password_without_echoing_it() {
    let bao = OpenBao::start().await;
    bao.put_v1("app/db", json!({"password": "pw-1"})).await;
    bao.userpass("alice", "alice-pw", "1h", "1h").await;
    let proxy = CountingProxy::start(&bao.address).await;
    let good = kv(
        &proxy.endpoint,
        VaultKvVersion::V1,
        VaultLogin::UserPass {
            mount: "userpass".into(),
            username: "alice".into(),
            password: SecretString::from("alice-pw"),
        },
    );
    for _ in 0..10 {
        good.get(&key("app/db")).await.expect("read");
    }
    assert_eq!(proxy.count("POST /v1/auth/userpass/login/alice"), 1);

    let bad = kv(
        &bao.address,
        VaultKvVersion::V1,
        VaultLogin::UserPass {
            mount: "userpass".into(),
            username: "alice".into(),
            password: SecretString::from("Wrong-Pw-42"),
        },
    );
    let error = bad.get(&key("app/db")).await.expect_err("wrong password");
    assert!(matches!(error, ProviderError::Auth(_)), "{error:?}");
    assert!(!error.to_string().contains("Wrong-Pw-42"), "{error}");
}

#[tokio::test]
async fn kv_v2_reads_versions_metadata_and_tags() {
    let bao = OpenBao::start().await;
    bao.put_v2("app/db", json!({"password": "v1"})).await;
    bao.put_v2("app/db", json!({"password": "v2"})).await;
    bao.put_v2("app/api", json!({"token": "t"})).await;
    bao.set_custom_metadata("app/db", json!({"team": "a"}))
        .await;
    let (role_id, secret_id) = bao.approle_at("approle", "sigil", "1h", "1h").await;
    let proxy = CountingProxy::start(&bao.address).await;
    let vault = kv(
        &proxy.endpoint,
        VaultKvVersion::V2,
        VaultLogin::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id: SecretString::from(secret_id),
        },
    );
    vault.validate().await.expect("approle validates");
    assert_eq!(
        text(&vault.get(&key("app/db")).await.expect("latest")),
        r#"{"password":"v2"}"#
    );
    let first = vault
        .get(&RemoteKey::new("secret/data/app/db", Some("1".into())))
        .await
        .expect("version 1");
    assert_eq!(text(&first), r#"{"password":"v1"}"#);
    let error = vault
        .get(&RemoteKey::new("app/db", Some("latest".into())))
        .await
        .expect_err("not a number");
    assert!(error.to_string().contains("version"), "{error}");

    let tagged = vault
        .find(&FindQuery {
            tags: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        })
        .await
        .expect("find by tags");
    let names: Vec<&str> = tagged.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["app/db"]);
    let by_name = vault
        .find(&FindQuery {
            name_regexp: Some("api$".into()),
            ..Default::default()
        })
        .await
        .expect("find by name");
    let names: Vec<&str> = by_name.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["app/api"]);
    assert_eq!(proxy.count("POST /v1/auth/approle/login"), 1);
}

#[tokio::test]
async fn a_revoked_token_is_replaced_by_one_new_login() {
    let bao = OpenBao::start().await;
    bao.put_v2("app/db", json!({"password": "v1"})).await;
    bao.userpass("alice", "alice-pw", "1h", "1h").await;
    let proxy = CountingProxy::start(&bao.address).await;
    let vault = kv(
        &proxy.endpoint,
        VaultKvVersion::V2,
        VaultLogin::UserPass {
            mount: "userpass".into(),
            username: "alice".into(),
            password: SecretString::from("alice-pw"),
        },
    );
    vault.get(&key("app/db")).await.expect("read");
    for round in 1..=3 {
        // Every token userpass issued, revoked at the server.
        bao.root(
            "POST",
            "sys/leases/revoke-prefix/auth/userpass/login",
            serde_json::Value::Null,
        )
        .await;
        vault
            .get(&key("app/db"))
            .await
            .unwrap_or_else(|e| panic!("read after revocation {round}: {e}"));
        assert_eq!(vault.logins(), 1 + round);
    }
    assert_eq!(proxy.count("POST /v1/auth/userpass/login/alice"), 4);
}

// ---- The controller, in the embedded API server ----

mod controller {
    use std::time::Duration;

    use sigil::api::{ExternalSecret, SecretStore};

    use crate::support::counting_proxy::CountingProxy;
    use crate::support::external::{self, Env, ready_reason, wait_for};
    use crate::support::openbao::OpenBao;

    async fn store(env: &Env, name: &str, server: &str, version: &str, auth: &str) {
        let mount = if version == "v1" { "kv1" } else { "secret" };
        env.apply::<SecretStore>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  provider:\n    vault:\n      server: {server}\n      path: {mount}\n      version: {version}\n      auth:\n{auth}"
        ))
        .await;
    }

    async fn es(env: &Env, name: &str, store: &str, spec: &str) {
        env.apply::<ExternalSecret>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  secretStoreRef: {{name: {store}}}\n{spec}"
        ))
        .await;
    }

    #[tokio::test]
    async fn approle_store_logs_in_once_per_token_lifetime_not_per_reconcile() {
        let bao = OpenBao::start().await;
        for i in 0..5 {
            bao.put_v1(
                &format!("app/s{i}"),
                serde_json::json!({"password": format!("pw-{i}")}),
            )
            .await;
        }
        let (role_id, secret_id) = bao.approle_at("approle", "sigil", "1h", "1h").await;
        let (short_role, short_secret) = bao.approle_at("approle-short", "sigil", "3s", "3s").await;
        let proxy = CountingProxy::start(&bao.address).await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.secret(
            "app",
            "approle",
            &[("long", &secret_id), ("short", &short_secret)],
        )
        .await;
        for (name, role, mount) in [
            ("long", &role_id, "approle"),
            ("short", &short_role, "approle-short"),
        ] {
            store(
                &env,
                name,
                &proxy.endpoint,
                "v1",
                &format!("        appRole: {{path: {mount}, roleId: {role}, secretRef: {{name: approle, key: {name}}}}}\n"),
            )
            .await;
        }
        for i in 0..10 {
            for store_name in ["long", "short"] {
                es(
                    &env,
                    &format!("{store_name}-{i}"),
                    store_name,
                    &format!("  refreshInterval: 1s\n  data:\n    - secretKey: password\n      remoteRef: {{key: app/s{}, property: password}}\n", i % 5),
                )
                .await;
            }
        }
        for i in 0..10 {
            env.wait_condition("app", &format!("long-{i}"), "True", Duration::from_secs(30))
                .await;
            env.wait_condition(
                "app",
                &format!("short-{i}"),
                "True",
                Duration::from_secs(30),
            )
            .await;
        }
        let started = std::time::Instant::now();
        let start_reads = proxy.count("GET /v1/kv1/app/s0");
        tokio::time::sleep(Duration::from_secs(8)).await;
        let reads = proxy.count("GET /v1/kv1/app/s0") - start_reads;
        let long_logins = proxy.count("POST /v1/auth/approle/login");
        let short_logins = proxy.count("POST /v1/auth/approle-short/login");
        let lifetime = started.elapsed();
        eprintln!(
            "Vault approle, 2 stores x 10 ExternalSecrets refreshing every 1s: 1h tokens {long_logins} login(s), \
             3s tokens {short_logins} logins; {reads} reads of one path in the last {lifetime:?}"
        );
        assert!(
            reads >= 10,
            "both stores refreshed every second: {reads} reads"
        );
        assert_eq!(long_logins, 1, "one login for the whole token lifetime");
        // 3s tokens that cannot outlive 3s are replaced at 2s: about one login per 2s.
        assert!(
            (2..=10).contains(&short_logins),
            "short-lived logins: {short_logins}"
        );
        assert_eq!(
            env.secret_data("app", "long-3").await.expect("Secret")["password"],
            "pw-3"
        );
    }

    #[tokio::test]
    async fn token_and_userpass_stores_materialize_kv_v1() {
        let bao = OpenBao::start().await;
        bao.put_v1(
            "app/db",
            serde_json::json!({"user": "app", "password": "pw-1"}),
        )
        .await;
        bao.userpass("alice", "alice-pw", "1h", "1h").await;
        let token = bao.create_token("1h").await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.secret(
            "app",
            "vault-creds",
            &[("token", &token), ("password", "alice-pw")],
        )
        .await;
        store(
            &env,
            "by-token",
            &bao.address,
            "v1",
            "        tokenSecretRef: {name: vault-creds, key: token}\n",
        )
        .await;
        store(
            &env,
            "by-user",
            &bao.address,
            "v1",
            "        userPass: {username: alice, secretRef: {name: vault-creds, key: password}}\n",
        )
        .await;
        es(
            &env,
            "t",
            "by-token",
            "  dataFrom:\n    - extract: {key: app/db}\n",
        )
        .await;
        es(&env, "u", "by-user", "  data:\n    - secretKey: pw\n      remoteRef: {key: kv1/app/db, property: password}\n").await;
        env.wait_condition("app", "t", "True", Duration::from_secs(20))
            .await;
        env.wait_condition("app", "u", "True", Duration::from_secs(20))
            .await;
        let extracted = env.secret_data("app", "t").await.expect("Secret");
        assert_eq!(extracted["user"], "app");
        assert_eq!(extracted["password"], "pw-1");
        assert_eq!(
            env.secret_data("app", "u").await.expect("Secret")["pw"],
            "pw-1"
        );
        let stores: kube::Api<SecretStore> = kube::Api::namespaced(env.client.clone(), "app");
        wait_for("store Ready", Duration::from_secs(20), || async {
            let store = stores.get("by-user").await.ok()?;
            let ready = store
                .status?
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Ready")?;
            (ready.status == "True" && ready.reason == "Valid").then_some(())
        })
        .await;
    }

    /// A cluster with the store `kv2` in namespace `app`: KV v2 through a counting proxy,
    /// AppRole tokens of `ttl` renewable for an hour.
    async fn approle_kv2_store(bao: &OpenBao, ttl: &str) -> (CountingProxy, Env) {
        let (role_id, secret_id) = bao.approle_at("approle", "sigil", ttl, "1h").await;
        let proxy = CountingProxy::start(&bao.address).await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.secret("app", "approle", &[("secret-id", &secret_id)])
            .await;
        store(
            &env,
            "kv2",
            &proxy.endpoint,
            "v2",
            &format!(
                "        appRole: {{roleId: {role_id}, secretRef: {{name: approle, key: secret-id}}}}\n"
            ),
        )
        .await;
        (proxy, env)
    }

    #[tokio::test]
    async fn kv_v2_store_reads_versions_and_renews_its_token() {
        let bao = OpenBao::start().await;
        bao.put_v2("app/api", serde_json::json!({"key": "k-1"}))
            .await;
        bao.put_v2("app/api", serde_json::json!({"key": "k-2"}))
            .await;
        let (proxy, env) = approle_kv2_store(&bao, "4s").await;
        es(&env, "api", "kv2", "  refreshInterval: 1s\n  data:\n    - secretKey: latest\n      remoteRef: {key: app/api, property: key}\n    - secretKey: first\n      remoteRef: {key: app/api, property: key, version: \"1\"}\n").await;
        env.wait_condition("app", "api", "True", Duration::from_secs(20))
            .await;
        let data = env.secret_data("app", "api").await.expect("Secret");
        assert_eq!(data["latest"], "k-2");
        assert_eq!(data["first"], "k-1");
        tokio::time::sleep(Duration::from_secs(9)).await;
        bao.put_v2("app/api", serde_json::json!({"key": "k-3"}))
            .await;
        wait_for("version 3", Duration::from_secs(10), || async {
            let data = env.secret_data("app", "api").await?;
            (data["latest"] == "k-3").then_some(())
        })
        .await;
        assert_eq!(
            proxy.count("POST /v1/auth/approle/login"),
            1,
            "renewed, not logged in again: {:?}",
            proxy.counts()
        );
        let renewals = proxy.count("POST /v1/auth/token/renew-self");
        assert!(renewals >= 2, "renewals: {renewals}");
    }

    #[tokio::test]
    async fn find_by_path_and_name_regexp_and_metadata_in_templates() {
        let bao = OpenBao::start().await;
        bao.put_v2("app/team-a/db", serde_json::json!({"password": "a-db"}))
            .await;
        bao.put_v2(
            "app/team-a/nested/cache",
            serde_json::json!({"url": "redis://a"}),
        )
        .await;
        bao.put_v2("app/team-b/db", serde_json::json!({"password": "b-db"}))
            .await;
        bao.put_v2("other/db", serde_json::json!({"password": "o-db"}))
            .await;
        bao.set_custom_metadata(
            "app/team-a/db",
            serde_json::json!({"owner": "alice", "rotated": "2026-12-01"}),
        )
        .await;
        let (proxy, env) = approle_kv2_store(&bao, "1h").await;
        es(
            &env,
            "by-path",
            "kv2",
            "  dataFrom:\n    - find: {path: app/team-a}\n",
        )
        .await;
        es(
            &env,
            "by-name",
            "kv2",
            "  dataFrom:\n    - find: {path: app, name: {regexp: \"/db$\"}}\n",
        )
        .await;
        es(
            &env,
            "with-metadata",
            "kv2",
            "  refreshInterval: 1s\n  target:\n    template:\n      data:\n        summary: \"{{ .password }} owned by {{ .owner }}\"\n  data:\n    - secretKey: password\n      remoteRef: {key: app/team-a/db, property: password}\n    - secretKey: owner\n      remoteRef: {key: app/team-a/db, property: owner, metadataPolicy: Fetch}\n  dataFrom:\n    - extract: {key: app/team-a/db, metadataPolicy: Fetch}\n",
        )
        .await;
        es(
            &env,
            "escaping",
            "kv2",
            "  dataFrom:\n    - find: {path: ../sys}\n",
        )
        .await;
        for name in ["by-path", "by-name", "with-metadata"] {
            env.wait_condition("app", name, "True", Duration::from_secs(30))
                .await;
        }
        let by_path = env.secret_data("app", "by-path").await.expect("Secret");
        let keys: Vec<&str> = by_path.keys().map(String::as_str).collect();
        assert_eq!(keys, ["app_team-a_db", "app_team-a_nested_cache"]);
        assert_eq!(by_path["app_team-a_db"], r#"{"password":"a-db"}"#);
        assert_eq!(by_path["app_team-a_nested_cache"], r#"{"url":"redis://a"}"#);
        let by_name = env.secret_data("app", "by-name").await.expect("Secret");
        let keys: Vec<&str> = by_name.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["app_team-a_db", "app_team-b_db"],
            "other/db is outside the path"
        );
        let meta = env
            .secret_data("app", "with-metadata")
            .await
            .expect("Secret");
        let keys: Vec<&str> = meta.keys().map(String::as_str).collect();
        assert_eq!(keys, ["summary"], "a template keeps only its keys");
        assert_eq!(meta["summary"], "a-db owned by alice");
        // Only the searched folders were listed, never the mount's root or `other/`.
        let counts = proxy.counts();
        assert!(
            counts
                .keys()
                .all(|request| !request.contains("/metadata/other")
                    && !request.ends_with("/v1/secret/metadata/")),
            "{counts:?}"
        );
        let refused = env
            .wait_condition("app", "escaping", "False", Duration::from_secs(20))
            .await;
        let (_, message) = ready_reason(&refused);
        assert!(message.contains("find.path"), "{message}");
        // Metadata changes reach the template like data changes.
        bao.set_custom_metadata("app/team-a/db", serde_json::json!({"owner": "bob"}))
            .await;
        wait_for("new owner", Duration::from_secs(15), || async {
            let data = env.secret_data("app", "with-metadata").await?;
            (data["summary"] == "a-db owned by bob").then_some(())
        })
        .await;
    }

    #[tokio::test]
    async fn a_revoked_token_is_replaced_before_any_refresh_fails() {
        let bao = OpenBao::start().await;
        bao.put_v2("app/api", serde_json::json!({"key": "k-0"}))
            .await;
        let (proxy, env) = approle_kv2_store(&bao, "1h").await;
        es(&env, "api", "kv2", "  refreshInterval: 1s\n  data:\n    - secretKey: key\n      remoteRef: {key: app/api, property: key}\n").await;
        env.wait_condition("app", "api", "True", Duration::from_secs(20))
            .await;
        for round in 1..=3 {
            bao.root(
                "POST",
                "sys/leases/revoke-prefix/auth/approle/login",
                serde_json::Value::Null,
            )
            .await;
            let value = format!("k-{round}");
            bao.put_v2("app/api", serde_json::json!({ "key": value }))
                .await;
            wait_for(
                &format!("value {value} after revocation {round}"),
                Duration::from_secs(15),
                || async {
                    let es = env.external_secret("app", "api").await;
                    let (reason, message) = ready_reason(&es);
                    assert_eq!(
                        reason, "SecretSynced",
                        "a failed refresh reached the status: {message}"
                    );
                    let data = env.secret_data("app", "api").await?;
                    (data["key"] == value.as_str()).then_some(())
                },
            )
            .await;
            let es = env.external_secret("app", "api").await;
            let ready = es
                .status
                .and_then(|s| s.conditions.into_iter().find(|c| c.type_ == "Ready"))
                .expect("Ready condition");
            assert_eq!(ready.status, "True", "{ready:?}");
        }
        assert_eq!(proxy.count("POST /v1/auth/approle/login"), 4);
    }

    #[tokio::test]
    async fn a_secret_store_cannot_read_credentials_of_another_namespace() {
        let bao = OpenBao::start().await;
        bao.put_v2("app/api", serde_json::json!({"key": "k"})).await;
        let proxy = CountingProxy::start(&bao.address).await;
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.namespace("elsewhere", &[]).await;
        env.secret("elsewhere", "vault-token", &[("token", &bao.root_token)])
            .await;
        store(
            &env,
            "sneaky",
            &proxy.endpoint,
            "v2",
            "        tokenSecretRef: {name: vault-token, key: token, namespace: elsewhere}\n",
        )
        .await;
        es(
            &env,
            "api",
            "sneaky",
            "  data:\n    - secretKey: k\n      remoteRef: {key: app/api, property: key}\n",
        )
        .await;
        let refused = env
            .wait_condition("app", "api", "False", Duration::from_secs(20))
            .await;
        let (reason, message) = ready_reason(&refused);
        assert_eq!(reason, "StoreNotReady");
        assert!(message.contains("own namespace"), "{message}");
        assert!(env.get_secret("app", "api").await.is_none());
        assert!(
            proxy.counts().is_empty(),
            "nothing sent with the other namespace's token: {:?}",
            proxy.counts()
        );
    }
}
