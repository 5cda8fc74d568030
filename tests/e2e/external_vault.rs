//! External secrets from Vault: KV v1 and token / AppRole / userpass auth
//! through RustyVault; KV v2, renewals and revocation through the KV v2 test
//! double (`support::vault_kv2`).

use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::json;
use sigil::api::secret_store::{VaultKvVersion, VaultProvider};
use sigil::providers::vault::{VaultKv, VaultLogin};
use sigil::providers::{BackendCalls, FindQuery, Provider, ProviderError, RemoteKey};

use crate::support::counting_proxy::CountingProxy;
use crate::support::rvault::RustyVault;
use crate::support::vault_kv2::{Kv2Config, VaultKv2};

fn kv(address: &str, version: VaultKvVersion, login: VaultLogin) -> VaultKv {
    sigil::tls::install_crypto_provider();
    VaultKv::new(
        &VaultProvider {
            server: address.into(),
            path: Some("secret".into()),
            version,
            ..Default::default()
        },
        login,
        BackendCalls::default().for_store("SecretStore/test/vault", "vault"),
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
    let rv = RustyVault::start().await;
    rv.put("app/db", json!({"user": "app", "password": "pw-1"}))
        .await;
    rv.put("app/cache", json!({"url": "redis://cache"})).await;
    rv.put("other/thing", json!({"x": "y"})).await;
    let token = rv.create_token("1h").await;
    let vault = kv(
        &rv.address,
        VaultKvVersion::V1,
        VaultLogin::Token(SecretString::from(token)),
    );

    vault.validate().await.expect("token validates");
    let db = vault.get(&key("app/db")).await.expect("read");
    let password =
        sigil::providers::property::select(&db, Some("password"), "app/db").expect("property");
    assert_eq!(&*password, b"pw-1");
    let same = vault
        .get(&key("secret/app/db"))
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
    let rv = RustyVault::start().await;
    rv.put("app/db", json!({"password": "pw-1"})).await;
    let vault = kv(
        &rv.address,
        VaultKvVersion::V1,
        VaultLogin::Token(SecretString::from("not-a-token")),
    );
    let error = vault.validate().await.expect_err("bad token");
    assert!(matches!(error, ProviderError::Auth(_)), "{error:?}");
    assert!(!error.to_string().contains("not-a-token"), "{error}");
}

#[tokio::test]
async fn approle_logs_in_once_per_token_lifetime_against_rustyvault() {
    let rv = RustyVault::start().await;
    rv.put("app/db", json!({"password": "pw-1"})).await;
    let (role_id, secret_id) = rv.approle("sigil", "3s").await;
    let proxy = CountingProxy::start(&rv.address).await;
    let vault = kv(
        &proxy.endpoint,
        VaultKvVersion::V1,
        VaultLogin::AppRole {
            mount: "approle".into(),
            role_id,
            secret_id: SecretString::from(secret_id),
        },
    );

    let span = Duration::from_secs(7);
    let reads = read_for(&vault, "app/db", span).await;
    let logins = proxy.count("POST /v1/auth/approle/login");
    // A 3s token is replaced at 2s: about 4 logins in 7s, against ~35 reads.
    assert!(reads >= 20, "reads: {reads}");
    assert!(
        (2..=5).contains(&logins),
        "logins: {logins}, counts {:?}",
        proxy.counts()
    );
    assert_eq!(vault.logins(), logins);
    assert_eq!(proxy.count("GET /v1/secret/app/db"), u64::from(reads));
}

#[tokio::test]
async fn userpass_logs_in_and_refuses_a_wrong_password_without_echoing_it() {
    let rv = RustyVault::start().await;
    rv.put("app/db", json!({"password": "pw-1"})).await;
    rv.userpass("alice", "alice-pw", "1h").await;
    let proxy = CountingProxy::start(&rv.address).await;
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
        &rv.address,
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
    let double = VaultKv2::start(Kv2Config::default()).await;
    double.put("app/db", json!({"password": "v1"}));
    double.put("app/db", json!({"password": "v2"}));
    double.put("app/api", json!({"token": "t"}));
    double.set_custom_metadata("app/db", &[("team", "a")]);
    let vault = kv(
        &double.address,
        VaultKvVersion::V2,
        VaultLogin::AppRole {
            mount: "approle".into(),
            role_id: double.config.role_id.clone(),
            secret_id: SecretString::from(double.config.secret_id.clone()),
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
    assert_eq!(double.logins(), 1);
}

#[tokio::test]
async fn kv_v2_renews_a_renewable_token_instead_of_logging_in_again() {
    let double = VaultKv2::start(Kv2Config {
        token_ttl: Duration::from_secs(3),
        token_max_ttl: Duration::from_secs(3600),
        ..Default::default()
    })
    .await;
    double.put("app/db", json!({"password": "v1"}));
    let vault = kv(
        &double.address,
        VaultKvVersion::V2,
        VaultLogin::UserPass {
            mount: "userpass".into(),
            username: "alice".into(),
            password: SecretString::from("alice-password"),
        },
    );
    let reads = read_for(&vault, "app/db", Duration::from_secs(7)).await;
    assert!(reads >= 20, "reads: {reads}");
    assert_eq!(double.reads(), u64::from(reads));
    assert_eq!(double.logins(), 1);
    assert!(
        (2..=5).contains(&double.renewals()),
        "renewals: {}",
        double.renewals()
    );
}

#[tokio::test]
async fn kv_v2_logs_in_again_at_max_ttl_and_after_revocation() {
    let double = VaultKv2::start(Kv2Config {
        token_ttl: Duration::from_secs(3),
        token_max_ttl: Duration::from_secs(4),
        ..Default::default()
    })
    .await;
    double.put("app/db", json!({"password": "v1"}));
    let vault = kv(
        &double.address,
        VaultKvVersion::V2,
        VaultLogin::AppRole {
            mount: "approle".into(),
            role_id: double.config.role_id.clone(),
            secret_id: SecretString::from(double.config.secret_id.clone()),
        },
    );
    read_for(&vault, "app/db", Duration::from_secs(6)).await;
    let logins = double.logins();
    // Renewal at 2s grants only up to the 4s max TTL, so a new login follows.
    assert!(
        (2..=4).contains(&logins),
        "logins: {logins}, renewals {}",
        double.renewals()
    );

    double.revoke_all();
    vault
        .get(&key("app/db"))
        .await
        .expect("read after revocation");
    assert_eq!(double.logins(), logins + 1);
}

// ---- The controller, in the embedded API server ----

mod controller {
    use std::time::Duration;

    use sigil::api::{ExternalSecret, SecretStore};

    use crate::support::counting_proxy::CountingProxy;
    use crate::support::external::{self, Env, ready_reason, wait_for};
    use crate::support::rvault::RustyVault;
    use crate::support::vault_kv2::{Kv2Config, VaultKv2};

    async fn store(env: &Env, name: &str, server: &str, version: &str, auth: &str) {
        env.apply::<SecretStore>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: {name}, namespace: app}}\nspec:\n  provider:\n    vault:\n      server: {server}\n      path: secret\n      version: {version}\n      auth:\n{auth}"
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
        let rv = RustyVault::start().await;
        for i in 0..5 {
            rv.put(
                &format!("app/s{i}"),
                serde_json::json!({"password": format!("pw-{i}")}),
            )
            .await;
        }
        let (role_id, secret_id) = rv.approle_at("approle", "sigil", "1h").await;
        let (short_role, short_secret) = rv.approle_at("approle-short", "sigil", "3s").await;
        let proxy = CountingProxy::start(&rv.address).await;
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
        let start_reads = proxy.count("GET /v1/secret/app/s0");
        tokio::time::sleep(Duration::from_secs(8)).await;
        let reads = proxy.count("GET /v1/secret/app/s0") - start_reads;
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
        // 3s tokens are replaced at 2s (RustyVault cannot renew): about one login per 2s.
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
        let rv = RustyVault::start().await;
        rv.put(
            "app/db",
            serde_json::json!({"user": "app", "password": "pw-1"}),
        )
        .await;
        rv.userpass("alice", "alice-pw", "1h").await;
        let token = rv.create_token("1h").await;
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
            &rv.address,
            "v1",
            "        tokenSecretRef: {name: vault-creds, key: token}\n",
        )
        .await;
        store(
            &env,
            "by-user",
            &rv.address,
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
        es(&env, "u", "by-user", "  data:\n    - secretKey: pw\n      remoteRef: {key: secret/app/db, property: password}\n").await;
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

    #[tokio::test]
    async fn kv_v2_store_reads_versions_and_renews_its_token() {
        let double = VaultKv2::start(Kv2Config {
            token_ttl: Duration::from_secs(4),
            ..Default::default()
        })
        .await;
        double.put("app/api", serde_json::json!({"key": "k-1"}));
        double.put("app/api", serde_json::json!({"key": "k-2"}));
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.secret("app", "approle", &[("secret-id", &double.config.secret_id)])
            .await;
        store(
            &env,
            "kv2",
            &double.address,
            "v2",
            &format!(
                "        appRole: {{roleId: {}, secretRef: {{name: approle, key: secret-id}}}}\n",
                double.config.role_id
            ),
        )
        .await;
        es(&env, "api", "kv2", "  refreshInterval: 1s\n  data:\n    - secretKey: latest\n      remoteRef: {key: app/api, property: key}\n    - secretKey: first\n      remoteRef: {key: app/api, property: key, version: \"1\"}\n").await;
        env.wait_condition("app", "api", "True", Duration::from_secs(20))
            .await;
        let data = env.secret_data("app", "api").await.expect("Secret");
        assert_eq!(data["latest"], "k-2");
        assert_eq!(data["first"], "k-1");
        tokio::time::sleep(Duration::from_secs(9)).await;
        double.put("app/api", serde_json::json!({"key": "k-3"}));
        wait_for("version 3", Duration::from_secs(10), || async {
            let data = env.secret_data("app", "api").await?;
            (data["latest"] == "k-3").then_some(())
        })
        .await;
        assert_eq!(double.logins(), 1, "renewed, not logged in again");
        assert!(double.renewals() >= 2, "renewals: {}", double.renewals());
    }

    #[tokio::test]
    async fn a_secret_store_cannot_read_credentials_of_another_namespace() {
        let double = VaultKv2::start(Kv2Config::default()).await;
        double.put("app/api", serde_json::json!({"key": "k"}));
        let env = external::start(|_| {}).await;
        env.namespace("app", &[]).await;
        env.namespace("elsewhere", &[]).await;
        env.secret("elsewhere", "vault-token", &[("token", "root")])
            .await;
        store(
            &env,
            "sneaky",
            &double.address,
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
        assert_eq!(
            double.reads(),
            0,
            "nothing read with the other namespace's token"
        );
    }
}
