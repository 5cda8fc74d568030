//! Bounds on the routes that decrypt with the cluster's private keys (`POST /v1/verify`,
//! `POST /v1/rotate`). They answer anyone who reaches the port, so each client IP gets a
//! token bucket, the body is capped before anything is parsed, and only a few decryptions run
//! at once; whatever is refused is answered at once (429, 413, 503) and counted in
//! `sigil_decrypt_calls_total{route, outcome}`. See SECURITY.md ("The decrypting endpoints").

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::controller::metrics::Metrics;

/// The largest SealedSecret a decrypting route reads: a Secret holds at most 1 MiB, and its
/// armored age values grow by about a third, plus the JSON around them.
pub const MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

/// How many calls one client IP may make per second, sustained.
pub const PER_CLIENT_PER_SECOND: u32 = 5;
/// How many calls one client IP may make at once after a quiet spell (`sigil reencrypt` of a folder).
pub const PER_CLIENT_BURST: u32 = 20;
/// Decryptions running at once, over all clients.
pub const MAX_IN_FLIGHT: usize = 4;

/// The limits in force; [`DecryptLimits::default`] is what the controller uses.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub per_client_per_second: u32,
    pub per_client_burst: u32,
    pub max_in_flight: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_client_per_second: PER_CLIENT_PER_SECOND,
            per_client_burst: PER_CLIENT_BURST,
            max_in_flight: MAX_IN_FLIGHT,
            max_body_bytes: MAX_BODY_BYTES,
        }
    }
}

/// Why a call was refused before it decrypted anything.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The client is over its rate.
    RateLimited,
    /// Too many decryptions are running.
    Busy,
    /// The body is larger than [`Limits::max_body_bytes`] (or could not be read).
    TooLarge,
}

impl Refusal {
    /// The word the metric and the log use.
    pub fn outcome(&self) -> &'static str {
        match self {
            Refusal::RateLimited => "rate_limited",
            Refusal::Busy => "busy",
            Refusal::TooLarge => "too_large",
        }
    }
}

/// One per HTTP port, shared by both decrypting routes.
pub struct DecryptLimits {
    limits: Limits,
    per_client: DefaultKeyedRateLimiter<IpAddr>,
    in_flight: Arc<Semaphore>,
}

impl Default for DecryptLimits {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

fn at_least_one(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

impl DecryptLimits {
    pub fn new(limits: Limits) -> Self {
        let quota = Quota::per_second(at_least_one(limits.per_client_per_second))
            .allow_burst(at_least_one(limits.per_client_burst));
        Self {
            limits,
            per_client: RateLimiter::keyed(quota),
            in_flight: Arc::new(Semaphore::new(limits.max_in_flight.max(1))),
        }
    }

    /// Admits one call of `client` to `route` and reads its body, or says why not. Hold the
    /// returned permit while decrypting: it is what bounds concurrency.
    pub async fn admit(
        &self,
        metrics: &Metrics,
        route: &str,
        client: Option<IpAddr>,
        body: Body,
    ) -> Result<(OwnedSemaphorePermit, Bytes), Refusal> {
        let result = match self.check(client).await {
            Ok(permit) => axum::body::to_bytes(body, self.limits.max_body_bytes)
                .await
                .map(|bytes| (permit, bytes))
                .map_err(|_| Refusal::TooLarge),
            Err(refusal) => Err(refusal),
        };
        let outcome = match &result {
            Ok(_) => "admitted",
            Err(refusal) => refusal.outcome(),
        };
        metrics.decrypt_call(route, outcome);
        if let Err(refusal) = &result {
            tracing::debug!(route, client = ?client, outcome = refusal.outcome(), "refused a decrypting call");
        }
        result
    }

    async fn check(&self, client: Option<IpAddr>) -> Result<OwnedSemaphorePermit, Refusal> {
        // A call without a peer address (only in-process tests) shares one bucket.
        let key = client.unwrap_or(IpAddr::from([0, 0, 0, 0]));
        if self.per_client.check_key(&key).is_err() {
            return Err(Refusal::RateLimited);
        }
        // Forget buckets of clients that went quiet, so many addresses cannot grow the map unbounded.
        if self.per_client.len() > 10_000 {
            self.per_client.retain_recent();
        }
        self.in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refusal::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(burst: u32, in_flight: usize) -> DecryptLimits {
        DecryptLimits::new(Limits {
            per_client_per_second: 1,
            per_client_burst: burst,
            max_in_flight: in_flight,
            max_body_bytes: 16,
        })
    }

    const A: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1)));
    const B: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2)));

    #[tokio::test]
    async fn each_client_has_its_own_bucket() {
        let limits = limits(3, 100);
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(limits.check(A).await.expect("within the burst"));
        }
        assert_eq!(limits.check(A).await.err(), Some(Refusal::RateLimited));
        assert!(
            limits.check(B).await.is_ok(),
            "another client is not limited"
        );
    }

    #[tokio::test]
    async fn concurrency_is_bounded_and_freed_when_a_call_ends() {
        let limits = limits(100, 2);
        let first = limits.check(A).await.expect("first");
        let _second = limits.check(B).await.expect("second");
        assert_eq!(limits.check(A).await.err(), Some(Refusal::Busy));
        drop(first);
        assert!(
            limits.check(A).await.is_ok(),
            "a finished call frees its slot"
        );
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_refused_and_counted() {
        let limits = limits(100, 2);
        let metrics = Metrics::default();
        let small = limits
            .admit(&metrics, "verify", A, Body::from("{}"))
            .await
            .expect("a small body");
        assert_eq!(small.1.as_ref(), b"{}");
        let big = limits
            .admit(&metrics, "verify", A, Body::from(vec![b' '; 17]))
            .await;
        assert_eq!(big.err(), Some(Refusal::TooLarge));
        let text = metrics.encode();
        assert!(
            text.contains(r#"sigil_decrypt_calls_total{route="verify",outcome="too_large"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sigil_decrypt_calls_total{route="verify",outcome="admitted"} 1"#),
            "{text}"
        );
    }
}
