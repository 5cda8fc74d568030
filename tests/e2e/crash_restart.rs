//! Crash-restart trials: `sigil controller` (a real process) is SIGKILLed at random points, then
//! started again, while it
//! * generates its first sealing key,
//! * renews the sealing key (the only key is older than `--key-renew-period`),
//! * opens SealedSecrets into Secrets,
//! * reconciles a SealedSecret, an ExternalSecret (moto) and a Sync (Git over HTTPS): first their
//!   creation, then a new round (re-sealed value, rotated remote value, a commit that prunes).
//!
//! Every trial must end as a clean run (no kill) ends: the same keys (never a duplicate, the old
//! key kept), every Secret with exactly its values, the Sync's objects and inventory; and no Secret
//! is ever half-written or emptied in between (every version a watch saw is checked).
//!
//! `SIGIL_CRASH_TRIALS` sets the number of trials (default [`CI_TRIALS`]; SECURITY.md records a run
//! of 100). `SIGIL_CRASH_SEED` replays a run (the seed is printed).

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kube_devserver::testing::wait_for;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sigil::controller::sealing_keys::{CREATED_ANNOTATION, KEY_DATA, KEY_LABEL};

use crate::support::controller::ControllerProcess;
use crate::support::dev::DevProcess;
use crate::support::objects::{create_namespace, create_sealed_secret, wait_for_recipients};
use crate::support::versions::Versions;
use crate::support::workloads::{Backends, EndState, Workloads};

/// Trials in CI time (the whole module stays within about three minutes on 2 cores).
const CI_TRIALS: usize = 20;
const SECRETS_PER_TRIAL: usize = 4;
/// Renewal trials start with a key this old, past the period the controller runs with.
const RENEW_PERIOD: &str = "1h";
const CONVERGE: Duration = Duration::from_secs(60);

fn trials() -> usize {
    std::env::var("SIGIL_CRASH_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(CI_TRIALS)
}

/// The API server, the backends and the random source of one run of trials.
struct Trials {
    dev: DevProcess,
    client: kube::Client,
    rng: StdRng,
    kills: usize,
}

impl Trials {
    async fn start(seed: u64) -> Trials {
        let dev = DevProcess::start(&["--no-controller"]);
        let client = crate::support::controller::client(&dev.kubeconfig).await;
        create_namespace(&client, "sigil-system").await;
        Trials {
            dev,
            client,
            rng: StdRng::seed_from_u64(seed),
            kills: 0,
        }
    }

    async fn controller(&self, name: &str, args: &[&str]) -> ControllerProcess {
        ControllerProcess::start(name, &self.dev.kubeconfig, self.dev.home(), args).await
    }

    /// Waits a random time below `most_ms`, SIGKILLs `victim`, and starts its successor.
    async fn kill_and_restart(
        &mut self,
        victim: ControllerProcess,
        most_ms: u64,
        args: &[&str],
    ) -> ControllerProcess {
        tokio::time::sleep(Duration::from_millis(self.rng.gen_range(0..most_ms))).await;
        victim.signal("KILL");
        let name = format!("{}-again", victim.name);
        drop(victim);
        self.kills += 1;
        self.controller(&name, args).await
    }

    async fn sealing_keys(&self) -> Vec<Secret> {
        Api::<Secret>::namespaced(self.client.clone(), "sigil-system")
            .list(&ListParams::default().labels(KEY_LABEL))
            .await
            .expect("list sealing keys")
            .items
    }

    /// Removes every key and the published recipients (with no controller running), so the next
    /// start generates its first key again.
    async fn forget_keys(&self) {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), "sigil-system");
        for key in self.sealing_keys().await {
            let name = key.metadata.name.expect("key name");
            secrets
                .delete(&name, &DeleteParams::default())
                .await
                .expect("delete a sealing key");
        }
        let _ = Api::<ConfigMap>::namespaced(self.client.clone(), "sigil-system")
            .delete("sigil-recipients", &DeleteParams::default())
            .await;
    }

    /// Leaves one key, made two hours ago, so the next start must renew it; returns its recipient.
    async fn leave_an_old_key(&self, name: &str) -> String {
        self.forget_keys().await;
        let made = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(2);
        let (identity, file) = sigil::crypto::identity::generate_file(made);
        let recipient = identity.to_public();
        let key = Secret {
            metadata: ObjectMeta {
                name: Some(format!("old-key-{name}")),
                labels: Some(BTreeMap::from([(
                    KEY_LABEL.to_string(),
                    sigil::crypto::recipients::fingerprint(&recipient),
                )])),
                annotations: Some(BTreeMap::from([(
                    CREATED_ANNOTATION.to_string(),
                    made.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(
                KEY_DATA.to_string(),
                k8s_openapi::ByteString(file.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(self.client.clone(), "sigil-system")
            .create(&PostParams::default(), &key)
            .await
            .expect("create the old key");
        recipient.to_string()
    }

    /// The keys once a controller published recipients other than `old` (none: any), after a
    /// moment in which a duplicate would show: (how many, whether `old` is among them).
    async fn keys_once_published(
        &self,
        old: Option<&str>,
        log: &ControllerProcess,
    ) -> (usize, bool) {
        let config_maps: Api<ConfigMap> = Api::namespaced(self.client.clone(), "sigil-system");
        let published = kube_devserver::testing::poll(
            Duration::from_secs(20),
            Duration::from_millis(50),
            || async {
                let text = config_maps
                    .get_opt("sigil-recipients")
                    .await
                    .expect("read sigil-recipients")
                    .and_then(|cm| cm.data)
                    .and_then(|data| data.get("recipients").cloned())?;
                (text.contains("age1") && old.is_none_or(|old| !text.contains(old))).then_some(())
            },
        )
        .await;
        assert!(
            published.is_some(),
            "no new recipients published:\n{}",
            log.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let keys = self.sealing_keys().await;
        let old_kept = old.is_some()
            && keys.iter().any(|k| {
                k.metadata
                    .name
                    .as_deref()
                    .is_some_and(|name| name.starts_with("old-key-"))
            });
        (keys.len(), old_kept)
    }
}

fn value_of(name: &str) -> String {
    format!("crash-trial-value-of-{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_converges_like_a_clean_run() {
    let seed = std::env::var("SIGIL_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().r#gen::<u64>());
    let total = trials();
    eprintln!("crash-restart trials: {total} (SIGIL_CRASH_SEED={seed})");
    let mut run = Trials::start(seed).await;
    let key_trials = total.div_ceil(5);
    let renewal_trials = total.div_ceil(5);
    let sealed_trials = total.div_ceil(5);
    let workload_trials = total.saturating_sub(key_trials + renewal_trials + sealed_trials);

    // Key generation: killed while generating and publishing the first sealing key.
    for trial in 0..key_trials {
        run.forget_keys().await;
        let victim = run.controller(&format!("keys-{trial}"), &[]).await;
        let restarted = run.kill_and_restart(victim, 600, &[]).await;
        let (keys, _) = run.keys_once_published(None, &restarted).await;
        assert_eq!(
            keys,
            1,
            "trial {trial}: exactly one sealing key (a clean first start makes one), not {keys}:\n{}",
            restarted.log()
        );
    }

    // Key renewal: the only key is due; killed while adding the new active key.
    let renew = ["--key-renew-period", RENEW_PERIOD];
    let old = run.leave_an_old_key("clean").await;
    let clean = run.controller("renew-clean", &renew).await;
    let clean_keys = run.keys_once_published(Some(&old), &clean).await;
    drop(clean);
    assert_eq!(
        clean_keys,
        (2, true),
        "a clean renewal adds one key and keeps the old"
    );
    for trial in 0..renewal_trials {
        let old = run.leave_an_old_key(&trial.to_string()).await;
        let victim = run.controller(&format!("renew-{trial}"), &renew).await;
        let restarted = run.kill_and_restart(victim, 600, &renew).await;
        let keys = run.keys_once_published(Some(&old), &restarted).await;
        assert_eq!(
            keys,
            clean_keys,
            "trial {trial}: (keys, old key kept) as a clean renewal leaves them:\n{}",
            restarted.log()
        );
    }

    // SealedSecrets: killed while opening them into Secrets.
    let mut versions_checked = 0;
    for trial in 0..sealed_trials {
        let namespace = format!("crash-{trial}");
        create_namespace(&run.client, &namespace).await;
        let versions = Versions::secrets(&run.client, &namespace).await;
        let victim = run.controller(&format!("open-{trial}"), &[]).await;
        wait_for_recipients(&run.client, Duration::from_secs(20)).await;
        let names: Vec<String> = (0..SECRETS_PER_TRIAL).map(|i| format!("s{i}")).collect();
        let kill_after = run.rng.gen_range(0..SECRETS_PER_TRIAL + 1);
        let mut victim = Some(victim);
        let mut restarted = None;
        for (i, name) in names.iter().enumerate() {
            if i == kill_after
                && let Some(victim) = victim.take()
            {
                restarted = Some(run.kill_and_restart(victim, 200, &[]).await);
            }
            create_sealed_secret(
                &run.client,
                &run.dev.kubeconfig,
                &namespace,
                name,
                &value_of(name),
            )
            .await;
        }
        if let Some(victim) = victim.take() {
            restarted = Some(run.kill_and_restart(victim, 400, &[]).await);
        }
        let restarted = restarted.expect("restarted");
        let secrets: Api<Secret> = Api::namespaced(run.client.clone(), &namespace);
        wait_for(
            &format!("trial {trial}: every Secret written after the restart"),
            Duration::from_secs(30),
            Duration::from_millis(50),
            || async {
                let list = secrets.list(&ListParams::default()).await.expect("list");
                (list.items.len() == SECRETS_PER_TRIAL).then_some(())
            },
        )
        .await;
        for name in &names {
            let secret = secrets.get(name).await.expect("the Secret");
            assert_eq!(
                crate::support::versions::data_of(&secret),
                BTreeMap::from([("value".to_string(), value_of(name))]),
                "trial {trial}: {name} holds exactly its sealed bytes:\n{}",
                restarted.log()
            );
        }
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        versions_checked += versions.assert_whole(&names, |name, data| {
            *data == BTreeMap::from([("value".to_string(), value_of(name))])
        });
        assert_eq!(
            run.sealing_keys().await.len(),
            clean_keys.0,
            "trial {trial}: no key generated on restart"
        );
    }

    // All three controllers: killed while creating, then while moving to the next round.
    let backends = Backends::start().await;
    let clean = run.controller("workloads-clean", &[]).await;
    let clean_states = clean_run(&run, &backends, &clean).await;
    drop(clean);
    for trial in 0..workload_trials {
        let namespace = format!("workloads-{trial}");
        let victim = run.controller(&format!("work-{trial}"), &[]).await;
        let workloads =
            Workloads::create(&run.client, &run.dev.kubeconfig, &backends, &namespace).await;
        let watched = workloads.watch().await;
        let mut controller = run.kill_and_restart(victim, 1500, &[]).await;
        for (round, clean_state) in clean_states.iter().enumerate() {
            let round = round as u32;
            if round > 0 {
                workloads.set_round(round).await;
                controller = run.kill_and_restart(controller, 1500, &[]).await;
            }
            workloads
                .wait_round(round, CONVERGE, || controller.log())
                .await;
            assert_eq!(
                &workloads.state().await,
                clean_state,
                "trial {trial}, round {round}: the end state of a clean run"
            );
        }
        versions_checked += watched.assert_never_torn();
        watched.assert_pruned_only_after_applies();
    }
    eprintln!(
        "crash-restart: {total} trials, {} SIGKILLs: {key_trials} during key generation, \
         {renewal_trials} during key renewal, {sealed_trials} during SealedSecret reconciles, \
         {workload_trials} x 2 during SealedSecret + ExternalSecret + Sync reconciles; \
         {versions_checked} Secret/ConfigMap versions watched, none torn; 0 failures",
        run.kills
    );
}

/// Rounds 0 and 1 of the workloads with a controller never killed: what every trial must leave.
async fn clean_run(
    run: &Trials,
    backends: &Backends,
    controller: &ControllerProcess,
) -> Vec<EndState> {
    let workloads = Workloads::create(
        &run.client,
        &run.dev.kubeconfig,
        backends,
        "workloads-clean",
    )
    .await;
    let mut states = Vec::new();
    for round in 0..2 {
        if round > 0 {
            workloads.set_round(round).await;
        }
        workloads
            .wait_round(round, CONVERGE, || controller.log())
            .await;
        states.push(workloads.state().await);
    }
    states
}
