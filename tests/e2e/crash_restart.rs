//! Crash-restart trials: `sigil controller` (a real process) is SIGKILLed at random points while
//! it generates its first sealing key and while it opens SealedSecrets, then started again. Every
//! trial must end as a clean run does: one sealing key (never a duplicate), every Secret with
//! exactly its sealed bytes, and never a Secret seen half-written or emptied in between.
//!
//! `SIGIL_CRASH_TRIALS` sets the number of trials (default 12 in CI time; SECURITY.md records a
//! run of 100+). `SIGIL_CRASH_SEED` replays a run (the seed is printed).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use rand::{Rng, SeedableRng};
use sigil::controller::sealing_keys::KEY_LABEL;

use crate::support::controller::ControllerProcess;
use crate::support::dev::DevProcess;
use crate::support::objects::{create_namespace, create_sealed_secret, wait_for_recipients};

const SECRETS_PER_TRIAL: usize = 4;

fn trials() -> usize {
    std::env::var("SIGIL_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(12)
}

async fn sealing_keys(client: &kube::Client) -> Vec<Secret> {
    Api::<Secret>::namespaced(client.clone(), "sigil-system")
        .list(&ListParams::default().labels(KEY_LABEL))
        .await
        .expect("list sealing keys")
        .items
}

/// Removes every key and the published recipients (with no controller running), so the next
/// start generates its first key again.
async fn forget_keys(client: &kube::Client) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "sigil-system");
    for key in sealing_keys(client).await {
        let name = key.metadata.name.expect("key name");
        secrets
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete a sealing key");
    }
    let _ = Api::<ConfigMap>::namespaced(client.clone(), "sigil-system")
        .delete("sigil-recipients", &DeleteParams::default())
        .await;
}

fn value_of(name: &str) -> String {
    format!("crash-trial-value-of-{name}")
}

/// Watches a namespace while a trial runs: any Secret seen must hold exactly its one sealed value.
fn watch_for_torn_secrets(
    client: kube::Client,
    namespace: String,
    stop: Arc<AtomicBool>,
    torn: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let api: Api<Secret> = Api::namespaced(client, &namespace);
        let mut looks = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok(list) = api.list(&ListParams::default()).await {
                for secret in list.items {
                    let name = secret.metadata.name.clone().unwrap_or_default();
                    let data: BTreeMap<_, _> = secret.data.clone().unwrap_or_default();
                    let whole = data.len() == 1
                        && data.get("value").map(|v| v.0.as_slice())
                            == Some(value_of(&name).as_bytes());
                    if !whole {
                        eprintln!("torn Secret {namespace}/{name}: keys {:?}", data.keys());
                        torn.fetch_add(1, Ordering::Relaxed);
                    }
                }
                looks += 1;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        looks
    })
}

async fn wait_until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_converges_like_a_clean_run() {
    let seed = std::env::var("SIGIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen::<u64>());
    eprintln!(
        "crash-restart trials: {} (SIGIL_CRASH_SEED={seed})",
        trials()
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dev = DevProcess::start(&["--no-controller"]);
    let client = crate::support::controller::client(&dev.kubeconfig).await;
    create_namespace(&client, "sigil-system").await;

    let total = trials();
    let key_trials = total / 3;
    let mut kills = 0;
    // Phase 1: killed while generating and publishing the first sealing key.
    for trial in 0..key_trials {
        forget_keys(&client).await;
        let victim =
            ControllerProcess::start(&format!("keys-{trial}"), &dev.kubeconfig, dev.home(), &[])
                .await;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..600))).await;
        victim.signal("KILL");
        drop(victim);
        kills += 1;
        let restarted = ControllerProcess::start(
            &format!("keys-{trial}-again"),
            &dev.kubeconfig,
            dev.home(),
            &[],
        )
        .await;
        wait_for_recipients(&client, Duration::from_secs(20)).await;
        // Let it settle: a duplicate would appear now if the restart did not see the first key.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let keys = sealing_keys(&client).await;
        assert_eq!(
            keys.len(),
            1,
            "trial {trial}: exactly one sealing key, not {}:\n{}",
            keys.len(),
            restarted.log()
        );
        drop(restarted);
    }

    // Phase 2: killed while opening SealedSecrets into Secrets.
    let mut looks = 0;
    for trial in key_trials..total {
        let namespace = format!("crash-{trial}");
        create_namespace(&client, &namespace).await;
        let stop = Arc::new(AtomicBool::new(false));
        let torn = Arc::new(AtomicUsize::new(0));
        let watcher = watch_for_torn_secrets(
            client.clone(),
            namespace.clone(),
            stop.clone(),
            torn.clone(),
        );
        let victim =
            ControllerProcess::start(&format!("open-{trial}"), &dev.kubeconfig, dev.home(), &[])
                .await;
        wait_for_recipients(&client, Duration::from_secs(20)).await;
        let names: Vec<String> = (0..SECRETS_PER_TRIAL).map(|i| format!("s{i}")).collect();
        let kill_after = rng.gen_range(0..SECRETS_PER_TRIAL + 1);
        for (i, name) in names.iter().enumerate() {
            if i == kill_after {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..200))).await;
                victim.signal("KILL");
            }
            create_sealed_secret(&client, &dev.kubeconfig, &namespace, name, &value_of(name)).await;
        }
        if kill_after == SECRETS_PER_TRIAL {
            tokio::time::sleep(Duration::from_millis(rng.gen_range(0..400))).await;
            victim.signal("KILL");
        }
        drop(victim);
        kills += 1;
        let restarted = ControllerProcess::start(
            &format!("open-{trial}-again"),
            &dev.kubeconfig,
            dev.home(),
            &[],
        )
        .await;
        let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        wait_until(
            &format!("trial {trial}: every Secret written after the restart"),
            Duration::from_secs(30),
            || async {
                let list = secrets.list(&ListParams::default()).await.expect("list");
                list.items.len() == SECRETS_PER_TRIAL
            },
        )
        .await;
        stop.store(true, Ordering::Relaxed);
        looks += watcher.await.expect("watcher");
        for name in &names {
            let secret = secrets.get(name).await.expect("the Secret");
            let data = secret.data.unwrap_or_default();
            assert_eq!(data.len(), 1, "trial {trial}: {name} has exactly its key");
            assert_eq!(
                data.get("value").map(|v| v.0.clone()),
                Some(value_of(name).into_bytes()),
                "trial {trial}: {name} holds its sealed bytes"
            );
        }
        assert_eq!(
            torn.load(Ordering::Relaxed),
            0,
            "trial {trial}: a Secret was seen half-written or emptied"
        );
        assert_eq!(
            sealing_keys(&client).await.len(),
            1,
            "trial {trial}: no key generated on restart"
        );
        drop(restarted);
    }
    eprintln!(
        "crash-restart: {total} trials, {kills} SIGKILLs, {key_trials} during key generation, \
         {} during SealedSecret reconciles, {looks} namespace scans for torn Secrets, 0 failures",
        total - key_trials
    );
}
