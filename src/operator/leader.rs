//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! replicas (of one shard) only one writes.
//!
//! The holder renews the lease every [`LeaderConfig::renew_every`]. A standby
//! judges expiry the way client-go does: on **its own monotonic clock**, from the
//! moment it last saw the lease record change. It never compares the holder's
//! `renewTime` with its local wall clock, so replicas whose clocks disagree (by
//! seconds or hours) still never take a live lease; the timestamps written into
//! the record are informative only. Every write goes through `replace` with the
//! lease's resourceVersion, so two candidates racing for an expired lease cannot
//! both win: the loser gets 409.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Where a candidate reads time: the monotonic clock judges expiry, the wall clock only
/// fills the record's timestamps. Injected so tests can run a candidate with a skewed wall clock.
pub trait Clock: Send + Sync {
    fn monotonic(&self) -> Instant;
    fn wall(&self) -> jiff::Timestamp;
}

/// The process's clocks.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn monotonic(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
    }
}

/// A wall clock off by a fixed amount (a replica whose NTP is broken); monotonic time is the process's.
#[derive(Debug)]
pub struct SkewedClock(pub jiff::SignedDuration);

impl Clock for SkewedClock {
    fn monotonic(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> jiff::Timestamp {
        jiff::Timestamp::now()
            .checked_add(self.0)
            .unwrap_or_else(|_| jiff::Timestamp::now())
    }
}

/// Timing and identity of one candidate.
#[derive(Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a lease stays valid without renewal; a standby waits this long after it last saw the record change.
    pub lease_duration: Duration,
    /// How often the holder renews and a standby retries.
    pub renew_every: Duration,
    pub clock: Arc<dyn Clock>,
}

impl fmt::Debug for LeaderConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaderConfig")
            .field("namespace", &self.namespace)
            .field("lease_name", &self.lease_name)
            .field("identity", &self.identity)
            .field("lease_duration", &self.lease_duration)
            .field("renew_every", &self.renew_every)
            .finish_non_exhaustive()
    }
}

impl LeaderConfig {
    /// Defaults that fail over within 15 s: a 10 s lease renewed every 2 s.
    pub fn new(namespace: &str, lease_name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            lease_name: lease_name.to_string(),
            identity: identity.to_string(),
            lease_duration: Duration::from_secs(10),
            renew_every: Duration::from_secs(2),
            clock: Arc::new(SystemClock),
        }
    }
}

/// What a candidate should do with the lease as it is now.
#[derive(Debug, PartialEq, Eq)]
enum Decision {
    /// Held by us: renew.
    Renew,
    /// Free or expired: take it.
    Acquire,
    /// Held by someone else, still valid.
    Wait,
}

/// The last lease record this candidate saw and when (monotonic) it first saw it.
#[derive(Debug, Default)]
struct Observed {
    record: Option<(LeaseSpec, Instant)>,
}

impl Observed {
    /// Decides from the record as read at `now`. A record that differs from the last one seen
    /// restarts the expiry timer: the holder is alive as long as its record keeps changing.
    fn decide(&mut self, spec: Option<&LeaseSpec>, identity: &str, now: Instant) -> Decision {
        let Some(spec) = spec else {
            self.record = None;
            return Decision::Acquire;
        };
        let seen_at = match &self.record {
            Some((seen, at)) if seen == spec => *at,
            _ => {
                self.record = Some((spec.clone(), now));
                now
            }
        };
        match spec.holder_identity.as_deref() {
            Some(holder) if holder == identity => Decision::Renew,
            None | Some("") => Decision::Acquire,
            Some(_) => {
                let duration = Duration::from_secs(
                    u64::try_from(spec.lease_duration_seconds.unwrap_or(0)).unwrap_or(0),
                );
                if now.saturating_duration_since(seen_at) >= duration {
                    Decision::Acquire
                } else {
                    Decision::Wait
                }
            }
        }
    }
}

fn lease_spec(
    config: &LeaderConfig,
    previous: Option<&LeaseSpec>,
    now: jiff::Timestamp,
) -> LeaseSpec {
    let ours =
        previous.and_then(|p| p.holder_identity.as_deref()) == Some(config.identity.as_str());
    let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
    LeaseSpec {
        holder_identity: Some(config.identity.clone()),
        lease_duration_seconds: Some(
            i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX),
        ),
        acquire_time: if ours {
            previous.and_then(|p| p.acquire_time.clone())
        } else {
            Some(MicroTime(now))
        },
        renew_time: Some(MicroTime(now)),
        lease_transitions: Some(if ours || previous.is_none() {
            transitions
        } else {
            transitions + 1
        }),
        ..LeaseSpec::default()
    }
}

/// Why an attempt to acquire or renew did not complete.
#[derive(Debug, thiserror::Error)]
enum RenewError {
    #[error(transparent)]
    Api(#[from] kube::Error),
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
}

/// One attempt to acquire or renew; true when we hold the lease afterwards.
async fn try_hold(
    api: &Api<Lease>,
    config: &LeaderConfig,
    observed: &mut Observed,
) -> Result<bool, RenewError> {
    let current = api.get_opt(&config.lease_name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    if observed.decide(spec, &config.identity, config.clock.monotonic()) == Decision::Wait {
        return Ok(false);
    }
    let now = config.clock.wall();
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(config.lease_name.clone()),
            namespace: Some(config.namespace.clone()),
            resource_version: current
                .as_ref()
                .and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(lease_spec(config, spec, now)),
    };
    let written_spec = lease.spec.clone();
    let written = match current {
        Some(_) => {
            api.replace(&config.lease_name, &PostParams::default(), &lease)
                .await
        }
        None => api.create(&PostParams::default(), &lease).await,
    };
    match written {
        Ok(_) => {
            observed.record = written_spec.map(|s| (s, config.clock.monotonic()));
            Ok(true)
        }
        // Someone else wrote the lease first (409 on a stale resourceVersion or on create).
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// How long stepping down may take to release the lease before the process exits anyway.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

/// The lease, held: renewed in the background until [`Leadership::step_down`].
pub struct Leadership {
    /// Cancelled when leadership is lost, so the caller stops writing.
    pub lost: CancellationToken,
    step_down: CancellationToken,
    renewing: tokio::task::JoinHandle<()>,
}

impl Leadership {
    /// Stops renewing and releases the lease (bounded by a timeout), so a standby takes
    /// over at once instead of waiting for the lease to expire. Call it after the
    /// controllers stopped writing.
    pub async fn step_down(self) {
        self.step_down.cancel();
        if tokio::time::timeout(RELEASE_TIMEOUT, self.renewing)
            .await
            .is_err()
        {
            tracing::warn!(
                "gave up releasing the leader lease; a standby takes over once it expires"
            );
        }
    }
}

/// Blocks until this candidate holds the lease (or `shutdown` is cancelled: then
/// returns None), then keeps renewing it in the background.
pub async fn acquire(
    client: Client,
    config: LeaderConfig,
    shutdown: CancellationToken,
) -> Option<Leadership> {
    let api: Api<Lease> = Api::namespaced(client, &config.namespace);
    let mut observed = Observed::default();
    loop {
        let attempt =
            tokio::time::timeout(config.renew_every, try_hold(&api, &config, &mut observed))
                .await
                .unwrap_or_else(|_| Err(RenewError::TimedOut(config.renew_every)));
        match attempt {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(lease = %config.lease_name, error = %e, "cannot read or write the leader lease")
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return None,
            _ = tokio::time::sleep(config.renew_every) => {}
        }
    }
    tracing::info!(lease = %config.lease_name, identity = %config.identity, "became leader");
    let lost = CancellationToken::new();
    let step_down = CancellationToken::new();
    let renewing = tokio::spawn(keep_renewing(
        api,
        config,
        observed,
        step_down.clone(),
        lost.clone(),
    ));
    Some(Leadership {
        lost,
        step_down,
        renewing,
    })
}

async fn keep_renewing(
    api: Api<Lease>,
    config: LeaderConfig,
    mut observed: Observed,
    step_down: CancellationToken,
    lost: CancellationToken,
) {
    let mut last_renewal = config.clock.monotonic();
    loop {
        tokio::select! {
            _ = step_down.cancelled() => return release(&api, &config).await,
            _ = tokio::time::sleep(config.renew_every) => {}
        }
        // Bounded: a hanging API server must not keep us writing past the lease.
        let attempt =
            tokio::time::timeout(config.renew_every, try_hold(&api, &config, &mut observed))
                .await
                .unwrap_or_else(|_| Err(RenewError::TimedOut(config.renew_every)));
        match attempt {
            Ok(true) => last_renewal = config.clock.monotonic(),
            Ok(false) => {
                tracing::warn!(lease = %config.lease_name, "leadership lost to another replica");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %config.lease_name, error = %e, "cannot renew the leader lease");
                // Stop writing before a standby may consider the lease expired.
                if config
                    .clock
                    .monotonic()
                    .saturating_duration_since(last_renewal)
                    >= config.lease_duration.saturating_sub(config.renew_every)
                {
                    lost.cancel();
                    return;
                }
            }
        }
    }
}

/// Gives the lease up on a clean shutdown so a standby takes over at once.
async fn release(api: &Api<Lease>, config: &LeaderConfig) {
    let Ok(Some(mut lease)) = api.get_opt(&config.lease_name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    match api
        .replace(&config.lease_name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => tracing::info!(lease = %config.lease_name, "released the leader lease"),
        Err(e) => {
            tracing::warn!(lease = %config.lease_name, error = %e, "could not release the leader lease")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).expect("valid time")
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.to_string()),
            lease_duration_seconds: Some(10),
            renew_time: Some(MicroTime(at(renewed))),
            ..LeaseSpec::default()
        }
    }

    fn secs(start: Instant, n: u64) -> Instant {
        start + Duration::from_secs(n)
    }

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        let now = Instant::now();
        let mut observed = Observed::default();
        assert_eq!(observed.decide(None, "a", now), Decision::Acquire);
        assert_eq!(
            observed.decide(Some(&LeaseSpec::default()), "a", now),
            Decision::Acquire
        );
    }

    #[test]
    fn others_wait_a_full_lease_duration_from_the_last_change_they_saw() {
        let start = Instant::now();
        let mut observed = Observed::default();
        let spec = held_by("a", 100);
        assert_eq!(observed.decide(Some(&spec), "a", start), Decision::Renew);
        let mut standby = Observed::default();
        assert_eq!(standby.decide(Some(&spec), "b", start), Decision::Wait);
        assert_eq!(
            standby.decide(Some(&spec), "b", secs(start, 9)),
            Decision::Wait
        );
        // The holder renewed: the timer restarts, whatever renewTime says.
        let renewed = held_by("a", 50);
        assert_eq!(
            standby.decide(Some(&renewed), "b", secs(start, 9)),
            Decision::Wait
        );
        assert_eq!(
            standby.decide(Some(&renewed), "b", secs(start, 18)),
            Decision::Wait
        );
        assert_eq!(
            standby.decide(Some(&renewed), "b", secs(start, 19)),
            Decision::Acquire
        );
    }

    #[test]
    fn record_timestamps_never_decide_expiry() {
        let start = Instant::now();
        // renewTime decades in the past or future: only the local monotonic timer counts.
        for renewed in [0, 4_000_000_000] {
            let mut standby = Observed::default();
            let spec = held_by("a", renewed);
            assert_eq!(standby.decide(Some(&spec), "b", start), Decision::Wait);
            assert_eq!(
                standby.decide(Some(&spec), "b", secs(start, 10)),
                Decision::Acquire
            );
        }
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let config = LeaderConfig::new("ns", "lease", "b");
        let previous = held_by("a", 100);
        let taken = lease_spec(&config, Some(&previous), at(111));
        assert_eq!(taken.lease_transitions, Some(1));
        assert_eq!(taken.acquire_time, Some(MicroTime(at(111))));
        let renewed = lease_spec(&config, Some(&taken), at(113));
        assert_eq!(renewed.lease_transitions, Some(1));
        assert_eq!(renewed.acquire_time, Some(MicroTime(at(111))));
        assert_eq!(renewed.renew_time, Some(MicroTime(at(113))));
    }
}
