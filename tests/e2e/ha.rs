//! High availability: `sigil controller --leader-elect` replicas as real processes against
//! `sigil dev --no-controller`, each talking to the API server through its own recording proxy,
//! so the test sees which replica wrote what and when.

use std::time::{Duration, Instant};

use kube_devserver::testing::{poll, wait_for};

use crate::support::api_proxy::ApiProxy;
use crate::support::controller::{ControllerProcess, client, lease_holder};
use crate::support::dev::DevProcess;
use crate::support::objects::{
    create_namespace, create_sealed_secret, wait_for_recipients, wait_for_secret,
};

/// The Lease of an unsharded controller.
pub const LEASE: &str = "sigil-controller";
/// A failover must complete within this (issue 6).
const FAILOVER_LIMIT: Duration = Duration::from_secs(15);

/// One controller process and the proxy that records its API calls.
pub struct Replica {
    pub process: ControllerProcess,
    pub proxy: ApiProxy,
}

impl Replica {
    /// Starts `sigil controller ARGS` as `POD_NAME=name` behind a fresh proxy.
    pub async fn start(dev: &DevProcess, name: &str, args: &[&str]) -> Replica {
        let proxy = ApiProxy::start(&dev.kubeconfig, dev.home(), name).await;
        let process = ControllerProcess::start(name, &proxy.kubeconfig, dev.home(), args).await;
        Replica { process, proxy }
    }

    /// Its successful writes other than to the Lease `lease`, as `METHOD path` lines.
    pub fn writes_besides_lease(&self, lease: &str) -> Vec<String> {
        self.proxy
            .writes()
            .into_iter()
            .filter(|w| !w.is_lease(lease))
            .map(|w| format!("{} {}", w.method, w.path))
            .collect()
    }

    /// Whether it wrote a path containing `part` (e.g. `/namespaces/apps/secrets/db`). Waits
    /// up to a second for it: the proxy logs a write once the answer is back, a moment after the
    /// API server stored the object.
    pub async fn wrote(&self, part: &str) -> bool {
        self.wrote_where(|path| path.contains(part)).await
    }

    /// Whether it wrote exactly `path` (query aside), e.g. `/api/v1/namespaces/apps/secrets/db`;
    /// waits like [`Replica::wrote`].
    pub async fn wrote_path(&self, path: &str) -> bool {
        self.wrote_where(|written| written.split('?').next() == Some(path))
            .await
    }

    async fn wrote_where(&self, matches: impl Fn(&str) -> bool) -> bool {
        for _ in 0..20 {
            if self.proxy.writes().iter().any(|w| matches(&w.path)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Successful writes to the Lease `lease` answered after `since`.
    pub fn lease_writes_since(&self, lease: &str, since: Instant) -> usize {
        self.proxy
            .writes_since(since)
            .iter()
            .filter(|w| w.is_lease(lease))
            .count()
    }

    /// Whether it read the Lease `lease` (a live candidate polls it).
    pub fn polled_lease(&self, lease: &str) -> bool {
        self.proxy
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.is_lease(lease))
    }

    /// Sum of `sigil_reconciles_total` over every controller on its `/metrics`.
    pub async fn reconciles(&self) -> f64 {
        let (_, text) = self.process.metrics().await;
        text.lines()
            .filter(|line| line.starts_with("sigil_reconciles_total"))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Namespace of the SealedSecrets the replicas reconcile.
pub const APPS: &str = "apps";

/// `sigil dev --no-controller` with the controller's namespace and [`APPS`] created.
pub async fn dev_without_controller() -> (DevProcess, kube::Client) {
    let dev = DevProcess::start(&["--no-controller"]);
    let client = client(&dev.kubeconfig).await;
    create_namespace(&client, "sigil-system").await;
    create_namespace(&client, APPS).await;
    (dev, client)
}

/// Waits (bounded) until `lease` is held by one of `names`; returns the holder.
pub async fn wait_for_holder(client: &kube::Client, lease: &str, names: &[&str]) -> String {
    let what = format!("a holder of lease {lease}");
    let holder = wait_for(
        &what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        || lease_holder(client, lease),
    )
    .await;
    assert!(
        names.contains(&holder.as_str()),
        "lease {lease} held by unknown {holder}"
    );
    holder
}

/// Waits until `standby` holds `lease` and has written it after `since`; returns how long after
/// `since` that was. Panics after `limit`.
async fn wait_for_takeover(
    client: &kube::Client,
    standby: &Replica,
    since: Instant,
    limit: Duration,
) -> Duration {
    let within = (since + limit + Duration::from_secs(5)).saturating_duration_since(Instant::now());
    poll(within, Duration::from_millis(50), || async {
        let holder = lease_holder(client, LEASE).await;
        (holder.as_deref() == Some(standby.process.name.as_str())
            && standby.lease_writes_since(LEASE, since) > 0)
            .then(|| since.elapsed())
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{} did not take over:\n{}",
            standby.process.name,
            standby.process.log()
        )
    })
}

/// Starts two replicas and returns them as (leader, standby) once one holds the lease and both
/// have run for a few renewal periods, asserting that only the leader wrote meanwhile.
async fn leader_and_standby(dev: &DevProcess, client: &kube::Client) -> (Replica, Replica) {
    let a = Replica::start(dev, "sigil-a", &["--leader-elect"]).await;
    let b = Replica::start(dev, "sigil-b", &["--leader-elect"]).await;
    let first = wait_for_holder(client, LEASE, &["sigil-a", "sigil-b"]).await;
    let (leader, standby) = if first == "sigil-a" { (a, b) } else { (b, a) };

    // The leader does the work: makes the sealing key, publishes the recipients, opens a
    // SealedSecret into its Secret.
    wait_for_recipients(client, Duration::from_secs(20)).await;
    create_sealed_secret(client, &dev.kubeconfig, APPS, "before", "one").await;
    wait_for_secret(client, APPS, "before", Duration::from_secs(20)).await;

    // Let both run for several renewal periods (2 s each).
    let watched_from = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        lease_holder(client, LEASE).await.as_deref(),
        Some(leader.process.name.as_str()),
        "the lease changed hands while both replicas were healthy"
    );
    assert!(
        leader.lease_writes_since(LEASE, watched_from) >= 2,
        "the leader renews its lease every 2 s: {:?}",
        leader.proxy.writes()
    );
    assert!(
        standby.polled_lease(LEASE),
        "the standby is a live candidate"
    );
    assert_eq!(
        standby.proxy.writes().len(),
        0,
        "a standby writes nothing: {:?}",
        standby.proxy.writes()
    );
    for work in [
        "/namespaces/sigil-system/configmaps/sigil-recipients",
        "/namespaces/sigil-system/secrets",
        "/namespaces/apps/secrets/before",
    ] {
        assert!(
            leader.wrote(work).await,
            "the leader wrote {work}: {:?}",
            leader.writes_besides_lease(LEASE)
        );
    }
    assert!(leader.reconciles().await > 0.0, "the leader reconciles");
    assert_eq!(
        standby.reconciles().await,
        0.0,
        "a standby reconciles nothing"
    );
    for replica in [&leader, &standby] {
        assert_eq!(
            replica.process.get("/readyz").await.as_deref(),
            Some("ok"),
            "{} is ready (a standby too: it serves /metrics and /v1/recipients)",
            replica.process.name
        );
    }
    (leader, standby)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_leads_and_a_killed_leader_is_replaced_within_15_seconds() {
    let (dev, client) = dev_without_controller().await;
    let (mut leader, standby) = leader_and_standby(&dev, &client).await;

    let killed = Instant::now();
    leader.process.signal("KILL");
    leader.process.wait_exit(Duration::from_secs(10)).await;
    // Work that arrives while nobody leads waits for the new leader.
    create_sealed_secret(&client, &dev.kubeconfig, APPS, "after", "two").await;
    let took = wait_for_takeover(&client, &standby, killed, FAILOVER_LIMIT).await;
    wait_for_secret(
        &client,
        APPS,
        "after",
        FAILOVER_LIMIT + Duration::from_secs(5),
    )
    .await;
    let working = killed.elapsed();
    println!(
        "failover after SIGKILL of the leader: lease taken after {:.1} s, first Secret written after {:.1} s (limit {} s)",
        took.as_secs_f64(),
        working.as_secs_f64(),
        FAILOVER_LIMIT.as_secs()
    );
    assert!(
        working <= FAILOVER_LIMIT,
        "failover took {working:?}, more than {FAILOVER_LIMIT:?}"
    );
    assert!(
        standby.wrote("/namespaces/apps/secrets/after").await,
        "the new leader wrote the Secret: {:?}",
        standby.writes_besides_lease(LEASE)
    );
    // The lease lasts 10 s and the killed leader renewed at most 2 s before dying: a standby
    // that took over much sooner would not be respecting a live lease.
    assert!(
        took >= Duration::from_secs(7),
        "standby took a lease that had not expired yet ({took:?})"
    );

    // The new leader keeps renewing, and no-one else holds the lease.
    let since = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(standby.lease_writes_since(LEASE, since) >= 1);
    assert_eq!(
        lease_holder(&client, LEASE).await.as_deref(),
        Some(standby.process.name.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_releases_the_lease_so_the_standby_takes_over_at_once() {
    let (dev, client) = dev_without_controller().await;
    let (mut leader, standby) = leader_and_standby(&dev, &client).await;

    let terminated = Instant::now();
    leader.process.signal("TERM");
    let status = leader.process.wait_exit(Duration::from_secs(10)).await;
    assert!(
        status.success(),
        "a leader stops cleanly on SIGTERM ({status}):\n{}",
        leader.process.log()
    );
    let stopped = terminated.elapsed();
    assert!(
        leader.lease_writes_since(LEASE, terminated) >= 1,
        "the leader released its lease on the way out: {:?}\n{}",
        leader.proxy.writes_since(terminated),
        leader.process.log()
    );
    create_sealed_secret(&client, &dev.kubeconfig, APPS, "after", "two").await;
    let took = wait_for_takeover(&client, &standby, terminated, FAILOVER_LIMIT).await;
    wait_for_secret(&client, APPS, "after", FAILOVER_LIMIT).await;
    let working = terminated.elapsed();
    println!(
        "failover after SIGTERM of the leader: lease taken after {:.1} s, first Secret written after {:.1} s (the leader exited after {:.2} s)",
        took.as_secs_f64(),
        working.as_secs_f64(),
        stopped.as_secs_f64()
    );
    assert!(
        working < Duration::from_secs(6),
        "a released lease is taken within one retry period, not after expiry: {working:?}"
    );
    assert!(
        standby.wrote("/namespaces/apps/secrets/after").await,
        "the new leader wrote the Secret: {:?}",
        standby.writes_besides_lease(LEASE)
    );

    // No overlap: the old leader's last write precedes the new leader's first.
    let last_old = leader.proxy.writes().last().map(|w| w.at);
    let first_new = standby.proxy.writes().first().map(|w| w.at);
    assert!(
        last_old < first_new,
        "the replicas' writes overlap: {:?} / {:?}",
        leader.proxy.writes(),
        standby.proxy.writes()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_leader_stops_before_its_lease_can_be_taken() {
    let (dev, client) = dev_without_controller().await;
    let (mut leader, standby) = leader_and_standby(&dev, &client).await;

    // The leader's API server stops answering (its renewals hang), the standby's does not.
    let cut = Instant::now();
    leader.proxy.stall(true);
    let status = leader.process.wait_exit(Duration::from_secs(15)).await;
    let stopped = cut.elapsed();
    assert!(
        !status.success(),
        "a leader that cannot renew exits with an error ({status}):\n{}",
        leader.process.log()
    );
    let took = wait_for_takeover(&client, &standby, cut, FAILOVER_LIMIT).await;
    println!(
        "partitioned leader exited after {:.1} s; the standby took over after {:.1} s",
        stopped.as_secs_f64(),
        took.as_secs_f64()
    );
    assert!(
        stopped < took,
        "the old leader ({stopped:?}) must stop before the new one starts ({took:?})"
    );
    // When the partition heals, nothing the old leader queued reaches the API server.
    leader.proxy.stall(false);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        leader.proxy.writes_since(cut).is_empty(),
        "{:?}",
        leader.proxy.writes_since(cut)
    );
    create_sealed_secret(&client, &dev.kubeconfig, APPS, "after", "two").await;
    wait_for_secret(&client, APPS, "after", Duration::from_secs(20)).await;
    assert!(standby.wrote("/namespaces/apps/secrets/after").await);
}
