//! Vault auth and transport against OpenBao beyond static credentials:
//! Kubernetes auth (OpenBao calls the embedded API server's TokenReview with
//! the ServiceAccount token sigil presents), TLS with a custom CA, and Vault
//! namespaces.

use std::time::Duration;

use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use secrecy::SecretString;
use serde_json::json;
use sigil::api::SecretStore;
use sigil::api::secret_store::{VaultKvVersion, VaultProvider};
use sigil::providers::vault::{VaultKv, VaultLogin};
use sigil::providers::{BackendCalls, Provider, ProviderError, RemoteKey};

use crate::support::external::{self, Env, ready_reason, wait_for};
use crate::support::openbao::OpenBao;

fn kv(spec: VaultProvider, login: VaultLogin) -> VaultKv {
    sigil::tls::install_crypto_provider();
    VaultKv::new(
        &spec,
        login,
        BackendCalls::default().for_store("SecretStore/test/vault", "vault"),
    )
    .expect("provider builds")
}

fn root(bao: &OpenBao) -> VaultLogin {
    VaultLogin::Token(SecretString::from(bao.root_token.clone()))
}

async fn service_account(env: &Env, namespace: &str, name: &str) {
    let api: Api<ServiceAccount> = Api::namespaced(env.client.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    api.create(&PostParams::default(), &account)
        .await
        .expect("create ServiceAccount");
}

/// OpenBao's Kubernetes auth pointed at the embedded API server: TokenReview
/// through `kubernetes_host` with the admin token as the reviewer's.
async fn kubernetes_auth(bao: &OpenBao, env: &Env) {
    let server = &env._cluster.server;
    let reviewer = server
        .kubeconfig()
        .auth_infos
        .into_iter()
        .find_map(|a| a.auth_info?.token)
        .expect("admin token");
    bao.enable_auth("kubernetes", "kubernetes").await;
    bao.root(
        "POST",
        "auth/kubernetes/config",
        json!({
            "kubernetes_host": format!("https://{}", server.addr()),
            "kubernetes_ca_cert": server.ca_pem(),
            "token_reviewer_jwt": secrecy::ExposeSecret::expose_secret(&reviewer),
            "disable_local_ca_jwt": true,
        }),
    )
    .await;
    bao.root(
        "POST",
        "auth/kubernetes/role/sigil",
        json!({
            "bound_service_account_names": ["reader"],
            "bound_service_account_namespaces": ["app"],
            "audience": "vault",
            "token_policies": ["reader"],
            "token_ttl": "1h",
        }),
    )
    .await;
}

#[tokio::test]
async fn kubernetes_auth_logs_in_with_a_service_account_token_reviewed_by_the_cluster() {
    let bao = OpenBao::start().await;
    bao.put_v2("app/db", json!({"password": "k8s-pw"})).await;
    let env = external::start(|_| {}).await;
    env.namespace("app", &[]).await;
    service_account(&env, "app", "reader").await;
    service_account(&env, "app", "stranger").await;
    kubernetes_auth(&bao, &env).await;
    for (store, account) in [("by-reader", "reader"), ("by-stranger", "stranger")] {
        env.apply::<SecretStore>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: {store}, namespace: app}}\nspec:\n  provider:\n    vault:\n      server: {}\n      path: secret\n      auth:\n        kubernetes:\n          role: sigil\n          serviceAccountRef: {{name: {account}, audiences: [vault]}}\n",
            bao.address
        ))
        .await;
        env.apply::<sigil::api::ExternalSecret>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: {store}, namespace: app}}\nspec:\n  secretStoreRef: {{name: {store}}}\n  data:\n    - secretKey: password\n      remoteRef: {{key: app/db, property: password}}\n"
        ))
        .await;
    }
    env.wait_condition("app", "by-reader", "True", Duration::from_secs(30))
        .await;
    assert_eq!(
        env.secret_data("app", "by-reader").await.expect("Secret")["password"],
        "k8s-pw"
    );
    // The cluster vouches for `stranger` too, but the Vault role is not bound to it.
    let refused = env
        .wait_condition("app", "by-stranger", "False", Duration::from_secs(30))
        .await;
    let (reason, message) = ready_reason(&refused);
    assert!(
        reason != "SecretSynced"
            && message.contains("authentication failed: Vault login (kubernetes)"),
        "{reason}: {message}"
    );
    assert!(env.get_secret("app", "by-stranger").await.is_none());
    let stores: Api<SecretStore> = Api::namespaced(env.client.clone(), "app");
    wait_for("store by-reader Ready", Duration::from_secs(20), || async {
        let ready = stores
            .get("by-reader")
            .await
            .ok()?
            .status?
            .conditions
            .into_iter()
            .find(|c| c.type_ == "Ready")?;
        (ready.status == "True").then_some(())
    })
    .await;
    // Logged in through Kubernetes auth: the token's metadata names the ServiceAccount.
    let accessors = bao
        .root("LIST", "auth/token/accessors", serde_json::Value::Null)
        .await;
    let mut found = false;
    for accessor in accessors["data"]["keys"].as_array().expect("accessors") {
        let token = bao
            .root(
                "POST",
                "auth/token/lookup-accessor",
                json!({ "accessor": accessor }),
            )
            .await;
        if token["data"]["meta"]["service_account_name"] == "reader" {
            assert_eq!(token["data"]["path"], "auth/kubernetes/login", "{token}");
            found = true;
        }
    }
    assert!(found, "no token issued through Kubernetes auth for reader");
}

#[tokio::test]
async fn tls_with_a_custom_ca_is_trusted_only_through_ca_bundle() {
    let bao = OpenBao::start_tls().await;
    bao.put_v2("app/db", json!({"password": "over-tls"})).await;
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD
        .encode(bao.ca_pem.as_deref().expect("TLS server has a CA"));
    let spec = |ca_bundle: Option<String>| VaultProvider {
        server: bao.address.clone(),
        path: Some("secret".into()),
        version: VaultKvVersion::V2,
        ca_bundle,
        ..Default::default()
    };
    let trusted = kv(spec(Some(ca)), root(&bao));
    let value = trusted
        .get(&RemoteKey::new("app/db", None))
        .await
        .expect("read over TLS");
    assert_eq!(value.expose(), br#"{"password":"over-tls"}"#);
    let untrusted = kv(spec(None), root(&bao));
    let error = untrusted.validate().await.expect_err("unknown CA");
    assert!(
        matches!(error, ProviderError::Backend(_)),
        "a transport error, not an auth one: {error:?}"
    );
    assert!(
        error.to_string().to_lowercase().contains("certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn vault_namespaces_scope_reads() {
    let bao = OpenBao::start().await;
    bao.root("POST", "sys/namespaces/team-a", json!({})).await;
    bao.root_in(
        "team-a",
        "POST",
        "sys/mounts/secret",
        json!({"type": "kv", "options": {"version": "2"}}),
    )
    .await;
    bao.root_in(
        "team-a",
        "POST",
        "secret/data/app/db",
        json!({"data": {"password": "in-team-a"}}),
    )
    .await;
    bao.put_v2("app/db", json!({"password": "in-root"})).await;
    let spec = |namespace: Option<&str>| VaultProvider {
        server: bao.address.clone(),
        path: Some("secret".into()),
        version: VaultKvVersion::V2,
        namespace: namespace.map(String::from),
        ..Default::default()
    };
    let key = RemoteKey::new("app/db", None);
    let team = kv(spec(Some("team-a")), root(&bao));
    assert_eq!(
        team.get(&key).await.expect("read in team-a").expose(),
        br#"{"password":"in-team-a"}"#
    );
    let top = kv(spec(None), root(&bao));
    assert_eq!(
        top.get(&key).await.expect("read in root").expose(),
        br#"{"password":"in-root"}"#
    );
    let missing = kv(spec(Some("team-b")), root(&bao));
    assert!(missing.get(&key).await.is_err(), "no such namespace");
}

/// OpenBao's `jwt` auth method trusting the embedded API server's ServiceAccount
/// signing key (`jwt_validation_pubkeys`, as for a cluster whose issuer Vault
/// cannot reach), with a role bound to `system:serviceaccount:app:reader`.
async fn jwt_auth(bao: &OpenBao, env: &Env) {
    let server = &env._cluster.server;
    bao.enable_auth("jwt", "jwt").await;
    bao.root(
        "POST",
        "auth/jwt/config",
        json!({
            "jwt_validation_pubkeys": [server.service_account_public_key_pem()],
            "bound_issuer": "https://kubernetes.default.svc.cluster.local",
        }),
    )
    .await;
    bao.root(
        "POST",
        "auth/jwt/role/sigil",
        json!({
            "role_type": "jwt",
            "bound_audiences": ["vault"],
            "bound_subject": "system:serviceaccount:app:reader",
            "user_claim": "sub",
            "token_policies": ["reader"],
            "token_ttl": "1h",
        }),
    )
    .await;
}

#[tokio::test]
async fn jwt_auth_logs_in_with_service_account_tokens_and_with_a_jwt_in_a_secret() {
    let bao = OpenBao::start().await;
    bao.put_v2("app/db", json!({"password": "jwt-pw"})).await;
    let env = external::start(|_| {}).await;
    env.namespace("app", &[]).await;
    service_account(&env, "app", "reader").await;
    service_account(&env, "app", "stranger").await;
    jwt_auth(&bao, &env).await;
    // A token made outside sigil, kept in a Secret (ESO's `jwt.secretRef`).
    let accounts: Api<ServiceAccount> = Api::namespaced(env.client.clone(), "app");
    let request = k8s_openapi::api::authentication::v1::TokenRequest {
        spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
            audiences: vec!["vault".into()],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    let token = accounts
        .create_token_request("reader", &PostParams::default(), &request)
        .await
        .expect("TokenRequest")
        .status
        .expect("token")
        .token;
    env.secret("app", "reader-jwt", &[("jwt", &token)]).await;
    let stores = [
        (
            "by-reader",
            "kubernetesServiceAccountToken:\n            serviceAccountRef: {name: reader}\n            audiences: [vault]\n            expirationSeconds: 900",
        ),
        (
            "by-default-audience",
            "kubernetesServiceAccountToken:\n            serviceAccountRef: {name: reader}",
        ),
        ("by-secret", "secretRef: {name: reader-jwt, key: jwt}"),
        (
            "by-stranger",
            "kubernetesServiceAccountToken:\n            serviceAccountRef: {name: stranger}",
        ),
    ];
    for (store, source) in stores {
        env.apply::<SecretStore>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: {store}, namespace: app}}\nspec:\n  provider:\n    vault:\n      server: {}\n      path: secret\n      auth:\n        jwt:\n          path: jwt\n          role: sigil\n          {source}\n",
            bao.address
        ))
        .await;
        env.apply::<sigil::api::ExternalSecret>(&format!(
            "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: {store}, namespace: app}}\nspec:\n  secretStoreRef: {{name: {store}}}\n  data:\n    - secretKey: password\n      remoteRef: {{key: app/db, property: password}}\n"
        ))
        .await;
    }
    for store in ["by-reader", "by-default-audience", "by-secret"] {
        env.wait_condition("app", store, "True", Duration::from_secs(30))
            .await;
        assert_eq!(
            env.secret_data("app", store).await.expect("Secret")["password"],
            "jwt-pw",
            "{store}"
        );
    }
    // The cluster signed `stranger`'s token too, but the role's subject is `reader`.
    let refused = env
        .wait_condition("app", "by-stranger", "False", Duration::from_secs(30))
        .await;
    let (reason, message) = ready_reason(&refused);
    assert!(
        reason != "SecretSynced" && message.contains("authentication failed: Vault login (jwt)"),
        "{reason}: {message}"
    );
    assert!(!message.contains(&token), "no token in the condition");
    assert!(env.get_secret("app", "by-stranger").await.is_none());
    // Logged in through the jwt method: the tokens' metadata carry the role.
    let accessors = bao
        .root("LIST", "auth/token/accessors", serde_json::Value::Null)
        .await;
    let mut jwt_logins = 0;
    for accessor in accessors["data"]["keys"].as_array().expect("accessors") {
        let token = bao
            .root(
                "POST",
                "auth/token/lookup-accessor",
                json!({ "accessor": accessor }),
            )
            .await;
        if token["data"]["path"] == "auth/jwt/login" {
            assert_eq!(token["data"]["meta"]["role"], "sigil", "{token}");
            jwt_logins += 1;
        }
    }
    assert!(
        jwt_logins >= 3,
        "{jwt_logins} tokens issued through jwt auth"
    );
}
