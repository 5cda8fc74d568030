//! Dynamic secrets with leases: a `VaultDynamicSecret` on OpenBao's database
//! secrets engine issuing logins of a real PostgreSQL (`support::postgres`),
//! read by ExternalSecrets through `dataFrom[].sourceRef.generatorRef`.

use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams};
use secrecy::SecretString;
use sigil::api::ExternalSecret;
use sigil::api::VaultDynamicSecret;
use sigil::api::secret_store::VaultProvider;
use sigil::api::vault_dynamic_secret::{VaultDynamicMethod, VaultDynamicResultType};
use sigil::providers::generator::GenerateRequest;
use sigil::providers::vault::{VaultKv, VaultLogin};
use sigil::providers::{BackendCalls, Provider};

use crate::support::external::{self, Env, wait_for};
use crate::support::openbao::OpenBao;
use crate::support::postgres::{self, Postgres};

const NS: &str = "app";
const ROLE: &str = "app";

fn credentials(data: &sigil::providers::SecretValue) -> (String, String) {
    let value: serde_json::Value = serde_json::from_slice(data.expose()).expect("JSON object");
    (
        value["username"].as_str().expect("username").to_string(),
        value["password"].as_str().expect("password").to_string(),
    )
}

#[tokio::test]
async fn vault_generator_issues_database_logins_under_a_lease_it_renews_and_revokes() {
    let pg = Postgres::start();
    let bao = OpenBao::start().await;
    postgres::database_engine(&bao, &pg, ROLE, 30, 120).await;
    sigil::tls::install_crypto_provider();
    let token = bao.create_token("1h").await;
    let calls = BackendCalls::default();
    let vault = VaultKv::new(
        &VaultProvider {
            server: bao.address.clone(),
            ..Default::default()
        },
        VaultLogin::Token(SecretString::from(token)),
        calls.for_store("VaultDynamicSecret/app/pg", "vault"),
    )
    .expect("provider builds");
    let generator = vault.generator().expect("Vault issues leases");
    let request = GenerateRequest {
        path: format!("database/creds/{ROLE}"),
        method: VaultDynamicMethod::Get,
        parameters: None,
        result: VaultDynamicResultType::Data,
    };
    let issued = generator.issue(&request).await.expect("credentials");
    let lease = issued.lease.clone().expect("a lease");
    assert!(lease.id.starts_with("database/creds/app/"), "{lease:?}");
    assert_eq!(lease.duration, Duration::from_secs(30));
    assert!(lease.renewable);
    let (user, password) = credentials(&issued.data);
    assert!(pg.can_log_in(&user, &password), "issued login works");
    assert_eq!(postgres::leases(&bao, ROLE).await, vec![lease.id.clone()]);

    let renewed = generator
        .renew(&lease.id, Duration::from_secs(60))
        .await
        .expect("renewed");
    assert_eq!(renewed.duration, Duration::from_secs(60));
    // Near the max TTL Vault grants less than asked.
    let capped = generator
        .renew(&lease.id, Duration::from_secs(600))
        .await
        .expect("renewed");
    assert!(
        capped.duration <= Duration::from_secs(120) && capped.duration >= Duration::from_secs(100),
        "{capped:?}"
    );

    generator.revoke(&lease.id).await.expect("revoked");
    assert!(!pg.can_log_in(&user, &password), "revoked login refused");
    assert!(postgres::leases(&bao, ROLE).await.is_empty());
    generator
        .revoke(&lease.id)
        .await
        .expect("revoking twice is fine");
    let gone = generator
        .renew(&lease.id, Duration::from_secs(60))
        .await
        .expect_err("a revoked lease cannot be renewed");
    assert!(sigil::providers::vault::lease_is_gone(&gone), "{gone}");

    let mut registry = prometheus_client::registry::Registry::with_prefix("sigil");
    calls.register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encodes");
    for line in [
        r#"sigil_backend_leases_issued_total{store="VaultDynamicSecret/app/pg",provider="vault"} 1"#,
        r#"sigil_backend_leases_renewed_total{store="VaultDynamicSecret/app/pg",provider="vault"} 2"#,
        r#"sigil_backend_leases_revoked_total{store="VaultDynamicSecret/app/pg",provider="vault"} 2"#,
        r#"sigil_backend_lease_failures_total{store="VaultDynamicSecret/app/pg",provider="vault",operation="renew"} 1"#,
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
}

/// OpenBao + PostgreSQL with role `app` (`ttl`, `max_ttl` seconds), the
/// controller, and a generator `pg` in namespace `app` (with `extra` spec lines).
struct World {
    pg: Postgres,
    bao: OpenBao,
    env: Env,
}

async fn world(ttl: u64, max_ttl: u64, extra: &str) -> World {
    let pg = Postgres::start();
    let bao = OpenBao::start().await;
    postgres::database_engine(&bao, &pg, ROLE, ttl, max_ttl).await;
    // Leases die with the token that made them: give it a life longer than the test's.
    let token = bao.create_token("2h").await;
    let env = external::start(|_| {}).await;
    env.namespace(NS, &[]).await;
    env.secret(NS, "vault-token", &[("token", &token)]).await;
    env.apply::<VaultDynamicSecret>(&format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: VaultDynamicSecret\nmetadata: {{name: pg, namespace: {NS}}}\nspec:\n  path: database/creds/{ROLE}\n  provider:\n    server: {}\n    auth:\n      tokenSecretRef: {{name: vault-token, key: token}}\n{extra}",
        bao.address
    ))
    .await;
    World { pg, bao, env }
}

impl World {
    async fn create(&self, name: &str) {
        self.env
            .apply::<ExternalSecret>(&format!(
                "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: {name}, namespace: {NS}}}\nspec:\n  dataFrom:\n    - sourceRef:\n        generatorRef: {{apiVersion: sigil.dev/v1alpha1, kind: VaultDynamicSecret, name: pg}}\n"
            ))
            .await;
    }

    /// The Secret's login once it holds one other than `not`.
    async fn login(&self, name: &str, not: Option<&str>, within: Duration) -> (String, String) {
        wait_for(
            &format!("Secret {name} with a new login"),
            within,
            || async {
                let data = self.env.secret_data(NS, name).await?;
                let user = data.get("username")?.clone();
                (Some(user.as_str()) != not)
                    .then(|| (user, data.get("password").cloned().unwrap_or_default()))
            },
        )
        .await
    }

    async fn lease_id(&self, name: &str) -> String {
        let es = self.env.external_secret(NS, name).await;
        es.status
            .and_then(|s| s.lease)
            .map(|l| l.id)
            .expect("status.lease")
    }

    async fn delete(&self, name: &str) {
        let api: Api<ExternalSecret> = Api::namespaced(self.env.client.clone(), NS);
        api.delete(name, &DeleteParams::default())
            .await
            .expect("delete ExternalSecret");
    }

    async fn wait_gone(&self, name: &str, within: Duration) {
        let api: Api<ExternalSecret> = Api::namespaced(self.env.client.clone(), NS);
        wait_for(&format!("ExternalSecret {name} gone"), within, || async {
            api.get_opt(name)
                .await
                .expect("get")
                .is_none()
                .then_some(())
        })
        .await;
    }
}

#[tokio::test]
async fn generated_logins_work_are_reissued_with_their_secret_and_revoked_with_the_external_secret()
{
    let world = world(60, 600, "").await;
    world.create("db").await;
    let (user, password) = world.login("db", None, Duration::from_secs(30)).await;
    assert!(world.pg.can_log_in(&user, &password), "{}", world.pg.log());
    let first = world.lease_id("db").await;
    assert_eq!(
        postgres::leases(&world.bao, ROLE).await,
        vec![first.clone()]
    );
    let es = world.env.external_secret(NS, "db").await;
    assert!(
        es.metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"sigil.dev/revoke-leases".to_string())
    );

    // The target Secret deleted: new credentials, the old lease revoked.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(world.env.client.clone(), NS);
    secrets
        .delete("db", &DeleteParams::default())
        .await
        .expect("delete Secret");
    let (user2, password2) = world
        .login("db", Some(&user), Duration::from_secs(30))
        .await;
    assert!(world.pg.can_log_in(&user2, &password2));
    let second = world.lease_id("db").await;
    assert_ne!(first, second);
    wait_for("old lease revoked", Duration::from_secs(10), || async {
        (postgres::leases(&world.bao, ROLE).await == vec![second.clone()]).then_some(())
    })
    .await;
    assert!(!world.pg.can_log_in(&user, &password), "old login revoked");

    // The ExternalSecret deleted: its finalizer revokes the lease first.
    world.delete("db").await;
    world.wait_gone("db", Duration::from_secs(30)).await;
    assert!(postgres::leases(&world.bao, ROLE).await.is_empty());
    assert!(!world.pg.can_log_in(&user2, &password2), "login revoked");
}

#[tokio::test]
async fn logins_rotate_before_the_max_ttl_and_the_old_lease_is_revoked() {
    // Leases of 6 s, renewable up to 14 s; rotated 3 s before that.
    let world = world(6, 14, "  rotateBefore: 3s\n").await;
    world.create("db").await;
    let (user, password) = world.login("db", None, Duration::from_secs(30)).await;
    let es = world.env.external_secret(NS, "db").await;
    let lease = es.status.and_then(|s| s.lease).expect("lease");
    let issued = lease.issue_time.0;
    let max_end = issued + jiff::SignedDuration::from_secs(14);
    let first = lease.id.clone();

    // Renewed at least once before the rotation.
    wait_for("a renewal", Duration::from_secs(15), || async {
        let first = first.clone();
        let es = world.env.external_secret(NS, "db").await;
        let lease = es.status?.lease?;
        (lease.id == first && lease.last_renewal_time.is_some()).then_some(())
    })
    .await;
    let (user2, password2) = world
        .login("db", Some(&user), Duration::from_secs(20))
        .await;
    let rotated_at = jiff::Timestamp::now();
    assert!(
        rotated_at < max_end,
        "rotated at {rotated_at}, after the old lease's max TTL {max_end}"
    );
    assert!(world.pg.can_log_in(&user2, &password2));
    let new_id = world.lease_id("db").await;
    assert_ne!(new_id, lease.id);
    wait_for("old lease revoked", Duration::from_secs(10), || async {
        let left = postgres::leases(&world.bao, ROLE).await;
        (!left.contains(&lease.id)).then_some(())
    })
    .await;
    assert!(!world.pg.can_log_in(&user, &password), "old login revoked");
    world.delete("db").await;
    world.wait_gone("db", Duration::from_secs(30)).await;
    assert!(postgres::leases(&world.bao, ROLE).await.is_empty());
}

#[tokio::test]
async fn a_restarted_controller_renews_the_same_lease() {
    let mut world = world(4, 600, "").await;
    world.create("db").await;
    let (user, password) = world.login("db", None, Duration::from_secs(30)).await;
    let lease = world.lease_id("db").await;
    world.env.restart_controller().await;
    let restarted = jiff::Timestamp::now();
    let renewed = wait_for(
        "a renewal after the restart",
        Duration::from_secs(20),
        || async {
            let es = world.env.external_secret(NS, "db").await;
            let current = es.status?.lease?;
            current
                .last_renewal_time
                .as_ref()
                .is_some_and(|t| t.0 > restarted)
                .then_some(current)
        },
    )
    .await;
    assert_eq!(renewed.id, lease, "the same lease, renewed");
    // Past the first lease's TTL, the login still works and is still the same.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let data = world.env.secret_data(NS, "db").await.expect("Secret");
    assert_eq!(data["username"], user, "no new credentials on restart");
    assert!(world.pg.can_log_in(&user, &password), "renewed login works");
    assert_eq!(postgres::leases(&world.bao, ROLE).await, vec![lease]);
    world.delete("db").await;
    world.wait_gone("db", Duration::from_secs(30)).await;
    assert!(postgres::leases(&world.bao, ROLE).await.is_empty());
}

#[tokio::test]
async fn hundred_create_delete_cycles_leave_no_lease() {
    let world = world(60, 600, "").await;
    let started = Instant::now();
    // Ten ExternalSecrets at a time, each created and deleted ten times; every
    // other cycle deletes it before its credentials may even have been issued.
    let cycles = (0..10).map(|slot| {
        let world = &world;
        async move {
            let name = format!("db-{slot}");
            for round in 0..10 {
                world.create(&name).await;
                if round % 2 == 0 {
                    world.login(&name, None, Duration::from_secs(30)).await;
                }
                world.delete(&name).await;
                world.wait_gone(&name, Duration::from_secs(30)).await;
            }
        }
    });
    futures::future::join_all(cycles).await;
    let took = started.elapsed();
    let left = wait_for("no lease left", Duration::from_secs(10), || async {
        let left = postgres::leases(&world.bao, ROLE).await;
        left.is_empty().then_some(left)
    })
    .await;
    eprintln!(
        "100 create/delete cycles in {:.1}s, {} leases left",
        took.as_secs_f64(),
        left.len()
    );
    assert!(took < Duration::from_secs(90), "{took:?}");
}

#[tokio::test]
async fn a_lease_left_retiring_by_a_crash_is_revoked_on_the_next_reconcile() {
    let world = world(60, 600, "").await;
    world.create("db").await;
    world.login("db", None, Duration::from_secs(30)).await;
    let current = world.lease_id("db").await;
    // As a controller killed between writing the new Secret and revoking the old
    // lease leaves it: an old lease listed in status.retiringLeases.
    let old = world
        .bao
        .root(
            "GET",
            &format!("database/creds/{ROLE}"),
            serde_json::Value::Null,
        )
        .await["lease_id"]
        .as_str()
        .expect("lease id")
        .to_string();
    let api: Api<ExternalSecret> = Api::namespaced(world.env.client.clone(), NS);
    let patch = serde_json::json!({"status": {"retiringLeases": [
        {"generator": "VaultDynamicSecret/pg", "id": old}
    ]}});
    api.patch_status(
        "db",
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .expect("patch status");
    wait_for(
        "the retiring lease revoked",
        Duration::from_secs(20),
        || async {
            let es = world.env.external_secret(NS, "db").await;
            let status = es.status?;
            (status.retiring_leases.is_empty()
                && postgres::leases(&world.bao, ROLE).await == vec![current.clone()])
            .then_some(())
        },
    )
    .await;
    assert_eq!(
        world.lease_id("db").await,
        current,
        "the lease in use is kept"
    );
}
