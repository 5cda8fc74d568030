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
