//! The leader lease under clock skew: candidates run in-process against the embedded API
//! server with injected wall clocks hours apart. Expiry is timed on each candidate's monotonic
//! clock from the last change it saw, so skew can neither make a live lease look expired nor an
//! abandoned one look alive.

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use sigil::operator::leader::{self, LeaderConfig, SkewedClock};
use tokio_util::sync::CancellationToken;

use crate::support::dev;

const NAMESPACE: &str = "sigil-system";
const LEASE: &str = "skew-test";
const LEASE_DURATION: Duration = Duration::from_secs(2);
const RENEW_EVERY: Duration = Duration::from_millis(300);

fn candidate(identity: &str, skew_hours: i64) -> LeaderConfig {
    LeaderConfig {
        lease_duration: LEASE_DURATION,
        renew_every: RENEW_EVERY,
        clock: Arc::new(SkewedClock(jiff::SignedDuration::from_hours(skew_hours))),
        ..LeaderConfig::new(NAMESPACE, LEASE, identity)
    }
}

async fn holder_and_renew_time(client: &kube::Client) -> (Option<String>, Option<jiff::Timestamp>) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NAMESPACE);
    let spec = leases
        .get_opt(LEASE)
        .await
        .expect("read the lease")
        .and_then(|l| l.spec);
    (
        spec.as_ref().and_then(|s| s.holder_identity.clone()),
        spec.and_then(|s| s.renew_time).map(|t| t.0),
    )
}

/// Runs a candidate with its own runtime on its own thread until `die` is sent, then drops the
/// runtime: its renewals stop mid-flight without releasing the lease, as a SIGKILL would.
fn killable_holder(
    kubeconfig: kube::config::Kubeconfig,
    config: LeaderConfig,
) -> (std::sync::mpsc::Sender<()>, std::sync::mpsc::Receiver<()>) {
    let (die, die_rx) = std::sync::mpsc::channel::<()>();
    let (leading_tx, leading) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let _leadership = runtime.block_on(async move {
            let config_k = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
                .await
                .expect("client config");
            let client = kube::Client::try_from(config_k).expect("client");
            let leadership = leader::acquire(client, config, CancellationToken::new())
                .await
                .expect("the first candidate leads");
            leading_tx.send(()).expect("report leading");
            leadership
        });
        // Keep the runtime driving the renewals until told to die (or the test is gone).
        runtime.block_on(async {
            while die_rx.try_recv() == Err(std::sync::mpsc::TryRecvError::Empty) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        drop(runtime);
    });
    (die, leading)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skewed_standby_never_takes_a_live_lease_and_takes_an_abandoned_one() {
    let cluster = dev::start().await;
    cluster.namespace(NAMESPACE).await;

    // The holder's wall clock runs an hour slow, the standby's an hour fast: judged by
    // timestamps, the standby would see the lease as two hours expired at once.
    let (die, leading) = killable_holder(cluster.server.kubeconfig(), candidate("slow-clock", -1));
    tokio::task::spawn_blocking(move || leading.recv_timeout(Duration::from_secs(10)))
        .await
        .expect("join")
        .expect("the slow-clock candidate becomes leader");
    let (holder, renewed) = holder_and_renew_time(&cluster.client).await;
    assert_eq!(holder.as_deref(), Some("slow-clock"));
    let behind = jiff::Timestamp::now().duration_since(renewed.expect("renewTime"));
    assert!(
        behind >= jiff::SignedDuration::from_mins(59),
        "the holder's clock is an hour slow: {behind:?}"
    );

    let standby = tokio::spawn(leader::acquire(
        cluster.client.clone(),
        candidate("fast-clock", 1),
        CancellationToken::new(),
    ));

    // Three lease durations of a live, renewing holder: the standby never takes it.
    let watch_until = Instant::now() + 3 * LEASE_DURATION;
    while Instant::now() < watch_until {
        let (holder, _) = holder_and_renew_time(&cluster.client).await;
        assert_eq!(
            holder.as_deref(),
            Some("slow-clock"),
            "a skewed standby took a live lease"
        );
        assert!(!standby.is_finished(), "the standby must still be waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The holder dies without releasing: the standby takes over once a lease duration has passed
    // on its own clock since the last renewal it saw, neither sooner nor much later.
    die.send(()).expect("kill the holder");
    let died = Instant::now();
    let leadership = tokio::time::timeout(LEASE_DURATION * 4, standby)
        .await
        .expect("the standby takes the abandoned lease")
        .expect("join")
        .expect("leadership");
    let waited = died.elapsed();
    assert!(
        waited >= LEASE_DURATION - RENEW_EVERY * 2,
        "took over after {waited:?}, before the lease could have expired"
    );
    assert!(
        waited <= LEASE_DURATION + RENEW_EVERY * 3 + Duration::from_secs(1),
        "took over only after {waited:?}"
    );
    let (holder, renewed) = holder_and_renew_time(&cluster.client).await;
    assert_eq!(holder.as_deref(), Some("fast-clock"));
    let ahead = renewed
        .expect("renewTime")
        .duration_since(jiff::Timestamp::now());
    assert!(
        ahead >= jiff::SignedDuration::from_mins(59),
        "the standby's clock is an hour fast: {ahead:?}"
    );
    leadership.step_down().await;
}
