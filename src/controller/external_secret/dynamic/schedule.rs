//! When a lease is renewed and when its credentials are replaced: pure
//! arithmetic over the times kept in the ExternalSecret's status.
//!
//! * A renewable lease is renewed at two thirds of its current term (from its
//!   issue or last renewal to its expiry). Each renewal asks for the lease's
//!   first duration plus the rotation lead time; Vault grants less only when
//!   the max TTL is closer than that, and from then on the lease's end is
//!   known ([`LeaseClock::max_expires`]). Asking for the lead time on top makes
//!   the max TTL show up at least a lead time before it is reached.
//! * Credentials are rotated a lead time before the end no renewal can move:
//!   the max TTL once known, or the expiry of a lease that is not renewable.
//!   The lead time is `rotateBefore`, by default a third of the lease's first
//!   duration, and never more than half of it (so new credentials live a while
//!   before they too are rotated).

use std::time::Duration;

use jiff::Timestamp;

/// The least time between two actions on a lease, so a misjudged clock cannot spin.
pub const MIN_WAIT: Duration = Duration::from_millis(500);

/// A lease's times, as the status keeps them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseClock {
    pub issued: Timestamp,
    /// The duration granted at issue.
    pub duration: Duration,
    pub expires: Timestamp,
    pub last_renewal: Option<Timestamp>,
    pub renewable: bool,
    /// The end no renewal can move, once known.
    pub max_expires: Option<Timestamp>,
}

/// What to do next with a lease, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Renew(Timestamp),
    Rotate(Timestamp),
}

impl Next {
    pub fn at(self) -> Timestamp {
        match self {
            Self::Renew(at) | Self::Rotate(at) => at,
        }
    }
}

/// The rotation lead time: `configured`, else a third of the first duration; at most half of it.
pub fn rotation_lead(configured: Option<Duration>, duration: Duration) -> Duration {
    configured.unwrap_or(duration / 3).min(duration / 2)
}

/// How much longer a renewal asks for, in whole seconds as Vault counts.
pub fn renewal_increment(duration: Duration, lead: Duration) -> Duration {
    let total = duration + lead;
    Duration::from_secs(total.as_secs() + u64::from(total.subsec_nanos() > 0))
}

fn minus(at: Timestamp, span: Duration) -> Timestamp {
    at.checked_sub(jiff::SignedDuration::try_from(span).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MIN)
}

fn plus(at: Timestamp, span: Duration) -> Timestamp {
    at.checked_add(jiff::SignedDuration::try_from(span).unwrap_or(jiff::SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// The end no renewal can move, if known.
pub fn hard_end(clock: &LeaseClock) -> Option<Timestamp> {
    if clock.renewable {
        clock.max_expires
    } else {
        Some(clock.expires)
    }
}

/// The next action on a lease with rotation lead time `lead`.
pub fn next(clock: &LeaseClock, lead: Duration) -> Next {
    let since = clock.last_renewal.unwrap_or(clock.issued);
    let term = clock.expires.duration_since(since).unsigned_abs();
    let renew_at = plus(since, term * 2 / 3);
    match hard_end(clock) {
        Some(end) => {
            let rotate_at = minus(end, lead);
            // Renew only a lease that would expire before its rotation.
            if clock.renewable && clock.expires < rotate_at {
                Next::Renew(renew_at)
            } else {
                Next::Rotate(rotate_at)
            }
        }
        None => Next::Renew(renew_at),
    }
}

/// The clock after a renewal at `now` that asked for `asked` and was granted `granted`.
pub fn renewed(
    clock: &LeaseClock,
    now: Timestamp,
    asked: Duration,
    granted: Duration,
    renewable: bool,
) -> LeaseClock {
    let expires = plus(now, granted);
    // Vault grants less than asked only when the max TTL is nearer.
    let capped = granted < asked || !renewable;
    LeaseClock {
        expires,
        last_renewal: Some(now),
        renewable: clock.renewable && renewable,
        max_expires: if capped {
            Some(expires)
        } else {
            clock.max_expires
        },
        ..*clock
    }
}

/// How long to wait from `now` until `at` (at least [`MIN_WAIT`]).
pub fn wait_until(now: Timestamp, at: Timestamp) -> Duration {
    at.duration_since(now)
        .try_into()
        .unwrap_or(Duration::ZERO)
        .max(MIN_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("valid")
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn issued(duration: u64, renewable: bool) -> LeaseClock {
        LeaseClock {
            issued: at(0),
            duration: secs(duration),
            expires: at(duration as i64),
            last_renewal: None,
            renewable,
            max_expires: None,
        }
    }

    #[test]
    fn lead_defaults_to_a_third_and_is_at_most_half() {
        assert_eq!(rotation_lead(None, secs(90)), secs(30));
        assert_eq!(rotation_lead(Some(secs(10)), secs(90)), secs(10));
        assert_eq!(rotation_lead(Some(secs(600)), secs(90)), secs(45));
        assert_eq!(renewal_increment(secs(90), secs(30)), secs(120));
        let lead = rotation_lead(None, secs(4));
        assert_eq!(
            renewal_increment(secs(4), lead),
            secs(6),
            "whole seconds, rounded up"
        );
    }

    #[test]
    fn renewable_leases_are_renewed_at_two_thirds_of_their_term() {
        let clock = issued(30, true);
        assert_eq!(next(&clock, secs(10)), Next::Renew(at(20)));
        let clock = renewed(&clock, at(20), secs(40), secs(40), true);
        assert_eq!(clock.expires, at(60));
        assert_eq!(clock.max_expires, None, "granted what was asked");
        let Next::Renew(when) = next(&clock, secs(10)) else {
            panic!("renew");
        };
        // Two thirds of the 40 s term from the renewal at 20 s.
        assert!(when > at(46) && when < at(47), "{when}");
    }

    #[test]
    fn a_capped_renewal_reveals_the_max_ttl_and_schedules_the_rotation() {
        let clock = renewed(&issued(30, true), at(20), secs(40), secs(25), true);
        assert_eq!(clock.max_expires, Some(at(45)));
        assert_eq!(next(&clock, secs(10)), Next::Rotate(at(35)));
        // Already inside the lead time: rotate at once (the wait is the minimum).
        let late = renewed(&issued(30, true), at(20), secs(40), secs(5), true);
        assert_eq!(next(&late, secs(10)), Next::Rotate(at(15)));
        assert_eq!(wait_until(at(20), at(15)), MIN_WAIT);
    }

    #[test]
    fn leases_that_cannot_be_renewed_rotate_a_lead_time_before_they_expire() {
        let clock = issued(30, false);
        assert_eq!(next(&clock, secs(10)), Next::Rotate(at(20)));
        assert_eq!(hard_end(&clock), Some(at(30)));
    }

    #[test]
    fn renewals_continue_while_the_known_end_is_far() {
        // Max TTL known (e.g. restored), term short: renew until the rotation is nearer.
        let mut clock = issued(30, true);
        clock.max_expires = Some(at(300));
        assert_eq!(next(&clock, secs(10)), Next::Renew(at(20)));
        clock.expires = at(295);
        clock.last_renewal = Some(at(265));
        assert_eq!(next(&clock, secs(10)), Next::Rotate(at(290)));
    }

    #[test]
    fn the_max_ttl_shows_up_before_the_rotation_is_due() {
        // A lease of 30 s with a max TTL of 200 s, renewed as scheduled, asking
        // 30 s + the 10 s lead each time: the rotation lands at max - lead.
        let max = at(200);
        let lead = rotation_lead(None, secs(30));
        let asked = renewal_increment(secs(30), lead);
        let mut clock = issued(30, true);
        let mut renewals = 0;
        loop {
            match next(&clock, lead) {
                Next::Renew(when) => {
                    let left = max.duration_since(when).unsigned_abs();
                    clock = renewed(&clock, when, asked, asked.min(left), true);
                    renewals += 1;
                    assert!(renewals < 50, "bounded");
                }
                Next::Rotate(when) => {
                    assert_eq!(when, at(190));
                    break;
                }
            }
        }
        assert!(renewals >= 6, "{renewals}");
    }
}
