//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! replicas (of one shard) only one writes.
//!
//! The holder renews the lease every [`LeaderConfig::renew_every`]; a standby
//! takes it over once `renewTime + leaseDurationSeconds` has passed. Every
//! write goes through `replace` with the lease's resourceVersion, so two
//! candidates racing for an expired lease cannot both win: the loser gets 409.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio_util::sync::CancellationToken;

/// Timing and identity of one candidate.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub lease_name: String,
    /// This replica's identity (the pod name in a cluster).
    pub identity: String,
    /// How long a lease stays valid without renewal; a standby waits this long after the last renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and a standby retries.
    pub renew_every: Duration,
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

fn decide(spec: Option<&LeaseSpec>, identity: &str, now: jiff::Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => Decision::Renew,
        None | Some("") => Decision::Acquire,
        Some(_) => {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(0));
            let expired = match &spec.renew_time {
                Some(MicroTime(renewed)) => renewed
                    .checked_add(jiff::SignedDuration::from_secs(duration))
                    .map(|expires| expires <= now)
                    .unwrap_or(true),
                None => true,
            };
            if expired {
                Decision::Acquire
            } else {
                Decision::Wait
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
async fn try_hold(api: &Api<Lease>, config: &LeaderConfig) -> Result<bool, RenewError> {
    let now = jiff::Timestamp::now();
    let current = api.get_opt(&config.lease_name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    if decide(spec, &config.identity, now) == Decision::Wait {
        return Ok(false);
    }
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
    let written = match current {
        Some(_) => {
            api.replace(&config.lease_name, &PostParams::default(), &lease)
                .await
        }
        None => api.create(&PostParams::default(), &lease).await,
    };
    match written {
        Ok(_) => Ok(true),
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
    loop {
        let attempt = tokio::time::timeout(config.renew_every, try_hold(&api, &config))
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
    let renewing = tokio::spawn(keep_renewing(api, config, step_down.clone(), lost.clone()));
    Some(Leadership {
        lost,
        step_down,
        renewing,
    })
}

async fn keep_renewing(
    api: Api<Lease>,
    config: LeaderConfig,
    step_down: CancellationToken,
    lost: CancellationToken,
) {
    let mut last_renewal = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = step_down.cancelled() => return release(&api, &config).await,
            _ = tokio::time::sleep(config.renew_every) => {}
        }
        // Bounded: a hanging API server must not keep us writing past the lease.
        let attempt = tokio::time::timeout(config.renew_every, try_hold(&api, &config))
            .await
            .unwrap_or_else(|_| Err(RenewError::TimedOut(config.renew_every)));
        match attempt {
            Ok(true) => last_renewal = tokio::time::Instant::now(),
            Ok(false) => {
                tracing::warn!(lease = %config.lease_name, "leadership lost to another replica");
                lost.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(lease = %config.lease_name, error = %e, "cannot renew the leader lease");
                // Stop writing before a standby may consider the lease expired.
                if last_renewal.elapsed()
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

    #[test]
    fn a_missing_or_released_lease_is_taken() {
        assert_eq!(decide(None, "a", at(100)), Decision::Acquire);
        assert_eq!(
            decide(Some(&LeaseSpec::default()), "a", at(100)),
            Decision::Acquire
        );
    }

    #[test]
    fn the_holder_renews_and_others_wait_until_expiry() {
        let spec = held_by("a", 100);
        assert_eq!(decide(Some(&spec), "a", at(105)), Decision::Renew);
        assert_eq!(decide(Some(&spec), "b", at(105)), Decision::Wait);
        assert_eq!(decide(Some(&spec), "b", at(109)), Decision::Wait);
        assert_eq!(decide(Some(&spec), "b", at(110)), Decision::Acquire);
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
