//! Fault injection: `sigil controller` (a real process) talks to `sigil dev` through the test
//! [`ApiProxy`], which delays requests, refuses them with 409/429/500/503, resets connections and
//! cuts watches short, on a schedule, while a SealedSecret, an ExternalSecret (moto) and a Sync (Git
//! over HTTPS) move to a new round; moto and the Git server are stopped and started while
//! they refresh every second (moto coming back empty); and OpenBao is SIGKILLed and restarted on
//! its own storage while ten ExternalSecrets refresh from it every second. In every case:
//! * once the faults stop, every workload converges to what a clean run leaves, with no manual step;
//! * no Secret is ever seen half-written or emptied (every version a watch straight to the API
//!   server saw, and every Secret a write through the proxy answered with, is one whole round), and
//!   during a full outage each keeps its last good value;
//! * nothing is pruned on error: objects every revision keeps are never deleted, and a removed one
//!   only after the whole next revision was applied;
//! * Events stay few: at most [`EVENTS_PER_PERIOD`] per object per fault period.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use sigil::api::{ExternalSecret, SecretStore};

use crate::support::api_proxy::ApiProxy;
use crate::support::controller::{ControllerProcess, client};
use crate::support::dev::DevProcess;
use crate::support::fault_plan::{Fault, Requests, Rule};
use crate::support::objects::{create_namespace, wait_for_recipients};
use crate::support::openbao::OpenBao;
use crate::support::workloads::{self, Backends, Workloads};

/// How long each set of faults lasts while the controller works on a new round.
const FAULT_PERIOD: Duration = Duration::from_secs(4);
/// How long a round may take to converge once the faults stopped (backoffs included).
const CONVERGE: Duration = Duration::from_secs(60);
/// Most Events about one object in one fault period: the round's write and one per distinct
/// failure met on the way (measured: at most 4). A storm — an Event per retry, several a second
/// while faults last — goes far past it.
const EVENTS_PER_PERIOD: i32 = 6;

/// The API server, the backends, and the controller behind its own proxy.
struct Bed {
    dev: DevProcess,
    backends: Backends,
    proxy: ApiProxy,
    controller: ControllerProcess,
    workloads: Workloads,
}

impl Bed {
    /// Everything started and round 0 converged.
    async fn start(namespace: &str) -> Bed {
        let dev = DevProcess::start(&["--no-controller"]);
        let client = client(&dev.kubeconfig).await;
        create_namespace(&client, "sigil-system").await;
        let proxy = ApiProxy::start(&dev.kubeconfig, dev.home(), "faulty").await;
        let controller =
            ControllerProcess::start("faulty", &proxy.kubeconfig, dev.home(), &[]).await;
        wait_for_recipients(&client, Duration::from_secs(30)).await;
        let backends = Backends::start().await;
        let workloads = Workloads::create(&client, &dev.kubeconfig, &backends, namespace).await;
        workloads.wait_round(0, CONVERGE, || controller.log()).await;
        Bed {
            dev,
            backends,
            proxy,
            controller,
            workloads,
        }
    }

    async fn wait_round(&self, round: u32) {
        self.workloads
            .wait_round(round, CONVERGE, || {
                format!(
                    "controller log:\n{}\nfaults injected: {:?}\nsigil dev log:\n{}",
                    self.controller.log(),
                    self.proxy.injected(),
                    self.dev.log()
                )
            })
            .await;
    }

    /// Events per object since `before` (the most, and about what); panics past
    /// [`EVENTS_PER_PERIOD`] for any.
    async fn assert_few_events(
        &self,
        before: &BTreeMap<String, i32>,
        period: &str,
    ) -> (i32, String) {
        let after = self.workloads.event_counts().await;
        let mut most = (0, String::new());
        for (object, count) in &after {
            let new = count - before.get(object).copied().unwrap_or(0);
            assert!(
                new <= EVENTS_PER_PERIOD,
                "{period}: {new} Events about {object} (an Event storm); all: {after:?}"
            );
            if new > most.0 {
                most = (new, object.clone());
            }
        }
        most
    }
}

fn periods() -> Vec<(&'static str, Vec<Rule>, bool)> {
    use Requests::{All, Reads, StatusWrites, Watches, Writes};
    // (what, rules, whether nothing can get through: the Secrets must keep the last round)
    vec![
        (
            "400 ms latency on every request",
            vec![Rule::on(All, Fault::Latency(Duration::from_millis(400)))],
            false,
        ),
        (
            "409 Conflict on every other write",
            vec![Rule::on(Writes, Fault::Status(409)).every(2)],
            false,
        ),
        (
            "429 TooManyRequests (Retry-After) on every other request",
            vec![Rule::on(All, Fault::Status(429)).every(2)],
            false,
        ),
        (
            "500 InternalError on every request",
            vec![Rule::on(All, Fault::Status(500))],
            true,
        ),
        (
            "503 ServiceUnavailable on every write",
            vec![Rule::on(Writes, Fault::Status(503))],
            true,
        ),
        (
            "503 ServiceUnavailable on every status write",
            vec![Rule::on(StatusWrites, Fault::Status(503))],
            false,
        ),
        (
            "connection reset on every third request",
            vec![Rule::on(All, Fault::Reset).every(3)],
            false,
        ),
        (
            "watches cut after 1 s, 500 on every third read",
            vec![
                Rule::on(Watches, Fault::DropWatch(Duration::from_secs(1))),
                Rule::on(Reads, Fault::Status(500)).every(3),
            ],
            false,
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_faults_keep_the_last_good_secrets_and_converge_once_they_stop() {
    let bed = Bed::start("faults").await;
    let watched = bed.workloads.watch().await;
    let mut figures = Vec::new();
    for (index, (what, rules, outage)) in periods().into_iter().enumerate() {
        let round = index as u32 + 1;
        let events = bed.workloads.event_counts().await;
        let injected_before: u64 = bed.proxy.injected().values().sum();
        bed.proxy.inject(rules);
        bed.workloads.set_round(round).await;
        tokio::time::sleep(FAULT_PERIOD).await;
        if outage {
            let state = bed.workloads.state().await;
            let last = Workloads::expected(round - 1);
            assert_eq!(
                (state.secrets, state.config_maps),
                (last.secrets, last.config_maps),
                "{what}: nothing written while every write fails; the last good values stay"
            );
        }
        let injected = bed.proxy.injected().values().sum::<u64>() - injected_before;
        bed.proxy.heal();
        assert!(injected > 0, "{what}: the proxy injected no fault");
        bed.wait_round(round).await;
        let (most, about) = bed.assert_few_events(&events, what).await;
        figures.push(format!(
            "{what}: {injected} faults injected, converged, at most {most} Events per object ({about})"
        ));
    }
    let versions = watched.assert_never_torn();
    let prunes = watched.assert_pruned_only_after_applies();
    let written = workloads::assert_written_whole(&bed.proxy.written_secrets());
    assert_eq!(
        prunes,
        periods().len(),
        "every round pruned the ConfigMap of the round before"
    );
    eprintln!(
        "fault injection: {}\n{versions} Secret/ConfigMap versions watched, {written} Secret writes \
         seen by the proxy, none torn; {prunes} prunes, each after a whole apply; faults injected: {:?}",
        figures.join("\n"),
        bed.proxy.injected()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_stopped_under_load_keep_the_last_good_secrets_and_recover() {
    let mut bed = Bed::start("outage").await;
    let watched = bed.workloads.watch().await;
    let events = bed.workloads.event_counts().await;
    bed.backends.moto.stop();
    bed.backends.git.stop();
    bed.workloads.seal_round(1).await;
    bed.workloads.commit_round(1);

    // Status says why while they are down; the last good values stay.
    let down = |condition: Option<Condition>| {
        condition.filter(|c| c.status == "False" && !c.message.is_empty())
    };
    let (external, source) = kube_devserver::testing::wait_for(
        "the ExternalSecret and the GitSource to say their servers are down",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (external, source) = bed.workloads.external_and_source_ready().await;
            Some((down(external)?, down(source)?))
        },
    )
    .await;
    // Several refreshes (every second) against the stopped servers.
    tokio::time::sleep(FAULT_PERIOD).await;
    let state = bed.workloads.state().await;
    let last = Workloads::expected(0);
    assert_eq!(
        state.secrets.get(workloads::EXTERNAL),
        last.secrets.get(workloads::EXTERNAL),
        "the ExternalSecret's Secret keeps its last good value while moto is down"
    );
    assert_eq!(
        state.config_maps, last.config_maps,
        "nothing pruned or changed while the Git server is down"
    );
    assert_eq!(
        bed.workloads
            .sync()
            .await
            .status
            .and_then(|s| s.last_applied_revision),
        Some(format!("main@sha1:{}", bed.workloads.head_of_round(0))),
        "the Sync keeps its last applied revision"
    );
    let (still_down, _) = bed.workloads.external_and_source_ready().await;
    assert_eq!(
        still_down.as_ref().map(|c| c.status.as_str()),
        Some("False"),
        "{still_down:?}"
    );

    // The Git server comes back: the commit made meanwhile is applied without a manual step.
    bed.backends.git.restart().await;
    let git_back = std::time::Instant::now();
    let round_one = format!("main@sha1:{}", bed.workloads.head_of_round(1));
    let resumed = kube_devserver::testing::wait_for(
        "the Sync to apply the commit made while Git was down",
        CONVERGE,
        Duration::from_millis(100),
        || async {
            let applied = bed.workloads.sync().await.status?.last_applied_revision?;
            (applied == round_one).then(|| git_back.elapsed())
        },
    )
    .await;
    // moto comes back empty (it keeps secrets in memory): the value is not found, and the
    // Secret still keeps its last good value (deletionPolicy Retain) until it is restored.
    bed.backends.moto.restart().await;
    let empty = kube_devserver::testing::wait_for(
        "the ExternalSecret to say its value is gone",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || async {
            let (external, _) = bed.workloads.external_and_source_ready().await;
            external.filter(|c| c.status == "False" && c.message.contains("not found"))
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let state = bed.workloads.state().await;
    assert_eq!(
        state.secrets.get(workloads::EXTERNAL),
        last.secrets.get(workloads::EXTERNAL),
        "the Secret keeps its last good value while the restarted store lacks it: {empty:?}"
    );
    bed.workloads.restore_remote(1).await;
    bed.wait_round(1).await;
    let (most_events, about) = bed.assert_few_events(&events, "backend outage").await;
    let versions = watched.assert_never_torn();
    let written = workloads::assert_written_whole(&bed.proxy.written_secrets());
    eprintln!(
        "backend outage: while down the ExternalSecret said {:?}: {:?} and the GitSource {:?}: {:?}; \
         after an empty restart {:?}: {:?}; recovered once restored; the Sync applied the commit made while Git was down \
         {resumed:?} after the Git server came back; at most {most_events} Events per object ({about}); {versions} versions \
         watched and {written} Secret writes, none torn",
        external.reason,
        external.message,
        source.reason,
        source.message,
        empty.reason,
        empty.message
    );
}

/// ExternalSecrets reading one OpenBao store, each refreshing every second.
const VAULT_LOAD: usize = 10;
/// How long OpenBao stays down: several refreshes (and backoffs) of every ExternalSecret.
const VAULT_OUTAGE: Duration = Duration::from_secs(8);

/// The ExternalSecrets `es-N` of `vault-outage` reading `kv1/app/sN` (`{"password": ...}`).
struct VaultLoad {
    client: kube::Client,
}

impl VaultLoad {
    const NS: &'static str = "vault-outage";

    fn value(i: usize, round: u32) -> String {
        format!("pw-{i}-r{round}")
    }

    async fn put_round(bao: &OpenBao, round: u32) {
        for i in 0..VAULT_LOAD {
            bao.put_v1(
                &format!("app/s{i}"),
                serde_json::json!({ "password": Self::value(i, round) }),
            )
            .await;
        }
    }

    async fn create(client: &kube::Client, bao: &OpenBao) -> VaultLoad {
        create_namespace(client, Self::NS).await;
        let ns = Self::NS;
        workloads::create_object::<Secret>(
            client,
            ns,
            &format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: bao}}\nstringData: {{token: {}}}\n",
                bao.root_token
            ),
        )
        .await;
        workloads::create_object::<SecretStore>(
            client,
            ns,
            &format!(
                "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata: {{name: bao}}\nspec:\n  provider:\n    vault:\n      server: {}\n      path: kv1\n      version: v1\n      auth:\n        tokenSecretRef: {{name: bao, key: token}}\n",
                bao.address
            ),
        )
        .await;
        for i in 0..VAULT_LOAD {
            workloads::create_object::<ExternalSecret>(
                client,
                ns,
                &format!(
                    "apiVersion: sigil.dev/v1alpha1\nkind: ExternalSecret\nmetadata: {{name: es-{i}}}\nspec:\n  refreshInterval: 1s\n  secretStoreRef: {{name: bao}}\n  data:\n    - secretKey: password\n      remoteRef: {{key: app/s{i}, property: password}}\n"
                ),
            )
            .await;
        }
        VaultLoad {
            client: client.clone(),
        }
    }

    /// Every Secret's password, by index (absent: not written yet).
    async fn passwords(&self) -> Vec<Option<String>> {
        let secrets: kube::Api<Secret> = kube::Api::namespaced(self.client.clone(), Self::NS);
        let mut out = Vec::new();
        for i in 0..VAULT_LOAD {
            let secret = secrets.get_opt(&format!("es-{i}")).await.expect("read");
            out.push(secret.and_then(|s| crate::support::versions::data_of(&s).remove("password")));
        }
        out
    }

    fn round(round: u32) -> Vec<Option<String>> {
        (0..VAULT_LOAD)
            .map(|i| Some(Self::value(i, round)))
            .collect()
    }

    /// Every ExternalSecret's Ready condition.
    async fn ready(&self) -> Vec<Option<Condition>> {
        let api: kube::Api<ExternalSecret> = kube::Api::namespaced(self.client.clone(), Self::NS);
        let mut out = Vec::new();
        for i in 0..VAULT_LOAD {
            let es = api.get(&format!("es-{i}")).await.expect("read");
            out.push(es.status.and_then(|s| {
                sigil::api::conditions::find(&s.conditions, sigil::api::conditions::READY).cloned()
            }));
        }
        out
    }

    /// Waits (bounded) until every ExternalSecret's Ready has `status` (and a message); returns
    /// how long that took and one of the conditions.
    async fn wait_all(&self, status: &str, limit: Duration) -> (Duration, String) {
        let started = std::time::Instant::now();
        let condition = kube_devserver::testing::wait_for(
            &format!("every ExternalSecret Ready={status}"),
            limit,
            Duration::from_millis(100),
            || async {
                let all = self.ready().await;
                all.iter()
                    .all(|c| c.as_ref().is_some_and(|c| c.status == status))
                    .then(|| {
                        let c = all[0].clone().expect("a condition");
                        format!("{}: {}", c.reason, c.message)
                    })
            },
        )
        .await;
        (started.elapsed(), condition)
    }

    async fn wait_round(&self, round: u32, limit: Duration) -> Duration {
        let started = std::time::Instant::now();
        let expected = Self::round(round);
        kube_devserver::testing::wait_for(
            &format!("every Secret at round {round}"),
            limit,
            Duration::from_millis(100),
            || async { (self.passwords().await == expected).then_some(()) },
        )
        .await;
        started.elapsed()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_stopped_openbao_killed_under_load_keeps_the_last_good_secrets_and_recovers() {
    let dev = DevProcess::start(&["--no-controller"]);
    let client = client(&dev.kubeconfig).await;
    create_namespace(&client, "sigil-system").await;
    let controller =
        ControllerProcess::start("vault-outage", &dev.kubeconfig, dev.home(), &[]).await;
    let mut bao = OpenBao::start_persistent().await;
    VaultLoad::put_round(&bao, 0).await;
    let load = VaultLoad::create(&client, &bao).await;
    load.wait_round(0, CONVERGE).await;
    load.wait_all("True", CONVERGE).await;
    let watched = crate::support::versions::Versions::secrets(&client, VaultLoad::NS).await;
    let events = workloads::event_counts(&client, VaultLoad::NS).await;

    bao.kill();
    let (reported, down) = load.wait_all("False", Duration::from_secs(30)).await;
    tokio::time::sleep(VAULT_OUTAGE).await;
    assert_eq!(
        load.passwords().await,
        VaultLoad::round(0),
        "every Secret keeps its last good value while OpenBao is down"
    );
    let (_, still_down) = load.wait_all("False", Duration::from_secs(1)).await;

    let restarting = std::time::Instant::now();
    bao.restart().await;
    let bao_up = restarting.elapsed();
    let (recovered, _) = load.wait_all("True", CONVERGE).await;
    let recovered = recovered + bao_up;
    // The same token and data came back: a rotation is picked up as before the crash.
    VaultLoad::put_round(&bao, 1).await;
    let refreshed = load.wait_round(1, CONVERGE).await;

    let after = workloads::event_counts(&client, VaultLoad::NS).await;
    let mut most = (0, String::new());
    for (object, count) in &after {
        let new = count - events.get(object).copied().unwrap_or(0);
        assert!(
            new <= EVENTS_PER_PERIOD,
            "{new} Events about {object} over the outage (an Event storm); all: {after:?}\n{}",
            controller.log()
        );
        if new > most.0 {
            most = (new, object.clone());
        }
    }
    let names: Vec<String> = (0..VAULT_LOAD).map(|i| format!("es-{i}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let versions = watched.assert_whole(&names, |name, data| {
        let i: usize = name.trim_start_matches("es-").parse().expect("index");
        let password = data.get("password");
        data.len() == 1
            && (password == Some(&VaultLoad::value(i, 0))
                || password == Some(&VaultLoad::value(i, 1)))
    });
    eprintln!(
        "OpenBao outage ({VAULT_LOAD} ExternalSecrets refreshing every 1s, SIGKILL, {VAULT_OUTAGE:?} down, \
         restarted on its raft storage): every Ready=False {reported:?} after the kill ({down:?}; still {still_down:?}); \
         OpenBao unsealed and serving {bao_up:?} after the restart, every Ready=True {recovered:?} after it; \
         a rotation then reached every Secret in {refreshed:?}; at most {} Events per object over the outage ({}); \
         {versions} Secret versions watched, none torn",
        most.0, most.1
    );
}
