//! A lease as the ExternalSecret's status keeps it, and as the schedule reads it.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::schedule::{self, LeaseClock};
use crate::api::external_secret::LeaseStatus;
use crate::providers::generator::{LeaseGrant, Renewed};

fn plus(at: Timestamp, span: Duration) -> Timestamp {
    jiff::SignedDuration::try_from(span)
        .ok()
        .and_then(|span| at.checked_add(span).ok())
        .unwrap_or(Timestamp::MAX)
}

/// The status of credentials issued at `now` under `grant` (none: nothing to renew or revoke).
pub fn issued(
    generator: &str,
    grant: Option<&LeaseGrant>,
    now: Timestamp,
    data_hmac: String,
    generation: i64,
) -> LeaseStatus {
    let (id, duration, renewable) = match grant {
        Some(grant) => (grant.id.clone(), grant.duration, grant.renewable),
        None => (String::new(), Duration::ZERO, false),
    };
    LeaseStatus {
        generator: generator.to_string(),
        id,
        issue_time: Time(now),
        expire_time: Time(plus(now, duration)),
        last_renewal_time: None,
        duration_seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        renewable,
        max_expire_time: (!renewable).then(|| Time(plus(now, duration))),
        data_hmac,
        generation,
    }
}

/// The schedule's view of a lease.
pub fn clock(lease: &LeaseStatus) -> LeaseClock {
    LeaseClock {
        issued: lease.issue_time.0,
        duration: duration(lease),
        expires: lease.expire_time.0,
        last_renewal: lease.last_renewal_time.as_ref().map(|t| t.0),
        renewable: lease.renewable,
        max_expires: lease.max_expire_time.as_ref().map(|t| t.0),
    }
}

/// The lease's first duration.
pub fn duration(lease: &LeaseStatus) -> Duration {
    Duration::from_secs(u64::try_from(lease.duration_seconds).unwrap_or(0))
}

/// Whether the lease can be renewed or must be replaced at all (it has an id and a term).
pub fn is_scheduled(lease: &LeaseStatus) -> bool {
    !lease.id.is_empty() && lease.duration_seconds > 0
}

/// The status after a renewal at `now` that asked for `asked`.
pub fn renewed(
    lease: &LeaseStatus,
    now: Timestamp,
    asked: Duration,
    answer: Renewed,
) -> LeaseStatus {
    let next = schedule::renewed(&clock(lease), now, asked, answer.duration, answer.renewable);
    LeaseStatus {
        expire_time: Time(next.expires),
        last_renewal_time: next.last_renewal.map(Time),
        renewable: next.renewable,
        max_expire_time: next.max_expires.map(Time),
        ..lease.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid")
    }

    #[test]
    fn status_round_trips_through_the_clock() {
        let grant = LeaseGrant {
            id: "database/creds/app/abc".into(),
            duration: Duration::from_secs(30),
            renewable: true,
        };
        let lease = issued("VaultDynamicSecret/pg", Some(&grant), at(0), "h".into(), 2);
        assert_eq!(lease.expire_time, Time(at(30)));
        assert!(lease.max_expire_time.is_none() && is_scheduled(&lease));
        let clock = clock(&lease);
        assert_eq!(clock.duration, Duration::from_secs(30));
        let after = renewed(
            &lease,
            at(20),
            Duration::from_secs(40),
            Renewed {
                duration: Duration::from_secs(15),
                renewable: true,
            },
        );
        assert_eq!(after.expire_time, Time(at(35)));
        assert_eq!(
            after.max_expire_time,
            Some(Time(at(35))),
            "capped: max TTL known"
        );
        assert_eq!(after.last_renewal_time, Some(Time(at(20))));
        assert_eq!(after.id, lease.id);
    }

    #[test]
    fn answers_without_a_lease_are_not_scheduled() {
        let lease = issued("VaultDynamicSecret/pg", None, at(0), "h".into(), 1);
        assert!(!is_scheduled(&lease));
        let fixed = LeaseGrant {
            id: "x".into(),
            duration: Duration::from_secs(60),
            renewable: false,
        };
        let lease = issued("VaultDynamicSecret/pg", Some(&fixed), at(0), "h".into(), 1);
        assert_eq!(lease.max_expire_time, Some(Time(at(60))));
    }
}
