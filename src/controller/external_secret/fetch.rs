//! Reading a round's values from one store: deduplicated, batched, rate-limited,
//! and shared within a short window.
//!
//! Every ExternalSecret of a round names the remote keys it needs; each
//! distinct key (and version) is read once, in requests of the provider's
//! batch size. Refreshes are spread with jitter, so ExternalSecrets that
//! share a secret fall due a little apart: a value read at time `t` serves
//! every ExternalSecret whose refresh falls within its jitter window after
//! `t` ([`RoundCache`]), and a round also reads ahead the keys of
//! ExternalSecrets due within that window. One refresh interval thus costs
//! one read per distinct secret. Manual refreshes bypass the shared values.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use futures::StreamExt;

use super::desired::{FetchedValues, FoundValues};
use crate::providers::credentials::StoreKey;
use crate::providers::{FindQuery, Provider, ProviderError, RemoteKey, SecretValue};

/// Reads of one store running at once.
const PARALLEL_REQUESTS: usize = 4;

type ValueResult = Result<SecretValue, ProviderError>;
type FindResult = Result<Vec<(String, SecretValue)>, ProviderError>;

/// Values read recently, by store, with when they were read.
#[derive(Default)]
pub struct RoundCache {
    values: Mutex<HashMap<(StoreKey, RemoteKey), (Instant, ValueResult)>>,
    finds: Mutex<HashMap<(StoreKey, FindQuery), (Instant, FindResult)>>,
}

impl RoundCache {
    /// Drops everything read before `oldest` (the longest window ago).
    pub fn expire(&self, oldest: Instant) {
        if let Ok(mut values) = self.values.lock() {
            values.retain(|_, (at, _)| *at >= oldest);
        }
        if let Ok(mut finds) = self.finds.lock() {
            finds.retain(|_, (at, _)| *at >= oldest);
        }
    }

    /// Entries held (tests, diagnostics).
    pub fn len(&self) -> usize {
        self.values.lock().map(|v| v.len()).unwrap_or(0)
            + self.finds.lock().map(|f| f.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn value(
        &self,
        store: &StoreKey,
        key: &RemoteKey,
        newer_than: Instant,
    ) -> Option<(Instant, ValueResult)> {
        let values = self.values.lock().ok()?;
        values
            .get(&(store.clone(), key.clone()))
            .filter(|(at, _)| *at >= newer_than)
            .cloned()
    }

    /// Up to `count` cached keys of `store` (oldest first), other than `skip`.
    fn oldest(&self, store: &StoreKey, count: usize, skip: &HashSet<RemoteKey>) -> Vec<RemoteKey> {
        let Ok(values) = self.values.lock() else {
            return Vec::new();
        };
        let mut cached: Vec<(Instant, &RemoteKey)> = values
            .iter()
            .filter(|((s, key), _)| s == store && !skip.contains(key))
            .map(|((_, key), (at, _))| (*at, key))
            .collect();
        cached.sort();
        cached
            .into_iter()
            .take(count)
            .map(|(_, key)| key.clone())
            .collect()
    }

    fn found(
        &self,
        store: &StoreKey,
        query: &FindQuery,
        newer_than: Instant,
    ) -> Option<(Instant, FindResult)> {
        let finds = self.finds.lock().ok()?;
        finds
            .get(&(store.clone(), query.clone()))
            .filter(|(at, _)| *at >= newer_than)
            .cloned()
    }
}

/// A token bucket: `per_second` requests on average, bursts up to `burst`.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl RateLimiter {
    pub fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        let burst = per_second.max(1.0);
        Self {
            per_second,
            burst,
            state: Mutex::new((burst, Instant::now())),
        }
    }

    /// How long the caller must wait for its turn (reserving it).
    fn reserve(&self, now: Instant) -> Duration {
        let Ok(mut state) = self.state.lock() else {
            return Duration::ZERO;
        };
        let (tokens, last) = *state;
        let refilled = (tokens
            + now.saturating_duration_since(last).as_secs_f64() * self.per_second)
            .min(self.burst);
        let left = refilled - 1.0;
        *state = (left, now);
        if left >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-left / self.per_second)
        }
    }

    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Rate limiters by store, made on first use.
#[derive(Default)]
pub struct Limiters {
    by_store: Mutex<HashMap<StoreKey, Arc<RateLimiter>>>,
}

impl Limiters {
    pub fn for_store(&self, store: &StoreKey, per_second: u32) -> Arc<RateLimiter> {
        let mut map = self.by_store.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(store.clone())
            .or_insert_with(|| Arc::new(RateLimiter::new(per_second)))
            .clone()
    }
}

/// What one ExternalSecret needs from a store this round.
pub struct Needs {
    pub keys: Vec<RemoteKey>,
    pub finds: Vec<FindQuery>,
    /// Values read after this instant may be reused.
    pub fresh_after: Instant,
}

/// The values a round read for one store.
pub struct StoreValues {
    pub fetched: FetchedValues,
    pub found: FoundValues,
}

/// Reads what `needs` ask for (plus `read_ahead`) from one store.
pub async fn read_store(
    provider: &dyn Provider,
    store: &StoreKey,
    cache: &RoundCache,
    limiter: &RateLimiter,
    needs: &[Needs],
    read_ahead: &[Needs],
) -> StoreValues {
    let now = Instant::now();
    let mut values = StoreValues {
        fetched: FetchedValues::new(),
        found: FoundValues::new(),
    };
    let mut to_read: Vec<RemoteKey> = Vec::new();
    let mut queued: HashSet<RemoteKey> = HashSet::new();
    let mut to_find: Vec<FindQuery> = Vec::new();
    let mut find_queued: HashSet<FindQuery> = HashSet::new();

    for need in needs {
        for key in &need.keys {
            if values.fetched.contains_key(key) || queued.contains(key) {
                continue;
            }
            match cache.value(store, key, need.fresh_after) {
                Some((_, result)) => {
                    values.fetched.insert(key.clone(), result);
                }
                None => {
                    queued.insert(key.clone());
                    to_read.push(key.clone());
                }
            }
        }
        for query in &need.finds {
            if values.found.contains_key(query) || find_queued.contains(query) {
                continue;
            }
            match cache.found(store, query, need.fresh_after) {
                Some((_, result)) => {
                    values.found.insert(query.clone(), result);
                }
                None => {
                    find_queued.insert(query.clone());
                    to_find.push(query.clone());
                }
            }
        }
    }
    // Read ahead only when this round talks to the backend anyway.
    if !to_read.is_empty() || !to_find.is_empty() {
        for need in read_ahead {
            for key in &need.keys {
                if !queued.contains(key) && cache.value(store, key, need.fresh_after).is_none() {
                    queued.insert(key.clone());
                    to_read.push(key.clone());
                }
            }
        }
    }

    let batch = provider.batch_size().max(1);
    // A partly filled last request has room: refresh the store's oldest cached
    // values in it for free, so bursts of new objects reuse them.
    let room = (batch - to_read.len() % batch) % batch;
    if room > 0 && !to_read.is_empty() {
        to_read.extend(cache.oldest(store, room, &queued));
    }
    // Metadata is read key by key (no backend batches it).
    let (metadata, to_read): (Vec<RemoteKey>, Vec<RemoteKey>) =
        to_read.into_iter().partition(|key| key.metadata);
    let reads: Vec<_> = to_read
        .chunks(batch)
        .map(|chunk| async move {
            limiter.acquire().await;
            let results = provider.get_many(chunk).await;
            chunk.iter().cloned().zip(results).collect::<Vec<_>>()
        })
        .collect();
    let mut answers: Vec<Vec<(RemoteKey, ValueResult)>> = futures::stream::iter(reads)
        .buffer_unordered(PARALLEL_REQUESTS)
        .collect()
        .await;
    for key in metadata {
        limiter.acquire().await;
        let result = provider.get_metadata(&key).await;
        answers.push(vec![(key, result)]);
    }
    if let Ok(mut shared) = cache.values.lock() {
        for (key, result) in answers.iter().flatten() {
            shared.insert((store.clone(), key.clone()), (now, result.clone()));
        }
    }
    for (key, result) in answers.into_iter().flatten() {
        values.fetched.insert(key, result);
    }

    for query in to_find {
        limiter.acquire().await;
        let result = provider.find(&query).await;
        if let Ok(mut shared) = cache.finds.lock() {
            shared.insert((store.clone(), query.clone()), (now, result.clone()));
        }
        values.found.insert(query, result);
    }
    values
}

/// Reads as External Secrets Operator does, for comparison (`--per-object-reads`):
/// every key of every ExternalSecret in a request of its own, with nothing
/// deduplicated, batched, shared between rounds or read ahead.
pub async fn read_each(
    provider: &dyn Provider,
    limiter: &RateLimiter,
    needs: &[Needs],
) -> StoreValues {
    let keys: Vec<RemoteKey> = needs.iter().flat_map(|need| need.keys.clone()).collect();
    let reads = keys.into_iter().map(|key| async move {
        limiter.acquire().await;
        let mut results = provider.get_many(std::slice::from_ref(&key)).await;
        let result = results
            .pop()
            .unwrap_or_else(|| Err(ProviderError::Backend(format!("{key}: no result returned"))));
        (key, result)
    });
    let answers: Vec<(RemoteKey, ValueResult)> = futures::stream::iter(reads)
        .buffer_unordered(PARALLEL_REQUESTS)
        .collect()
        .await;
    let mut values = StoreValues {
        fetched: answers.into_iter().collect(),
        found: FoundValues::new(),
    };
    let queries: Vec<FindQuery> = needs.iter().flat_map(|need| need.finds.clone()).collect();
    for query in queries {
        limiter.acquire().await;
        let result = provider.find(&query).await;
        values.found.insert(query, result);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::future::BoxFuture;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts requests; answers every key with its own name.
    #[derive(Default)]
    struct Counting {
        requests: AtomicUsize,
        keys: AtomicUsize,
    }

    impl Provider for Counting {
        fn kind(&self) -> &'static str {
            "test"
        }
        fn batch_size(&self) -> usize {
            20
        }
        fn validate(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
            Box::pin(async { Ok(()) })
        }
        fn get_many<'a>(&'a self, keys: &'a [RemoteKey]) -> BoxFuture<'a, Vec<ValueResult>> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.keys.fetch_add(keys.len(), Ordering::SeqCst);
            Box::pin(async move {
                keys.iter()
                    .map(|k| Ok(SecretValue::new(k.key.as_bytes().to_vec())))
                    .collect()
            })
        }
        fn find_names<'a>(
            &'a self,
            _query: &'a FindQuery,
        ) -> BoxFuture<'a, Result<Vec<String>, ProviderError>> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(vec!["found".to_string()]) })
        }
    }

    fn needs(keys: &[usize], fresh_after: Instant) -> Needs {
        Needs {
            keys: keys
                .iter()
                .map(|i| RemoteKey::new(format!("s{i}"), None))
                .collect(),
            finds: Vec::new(),
            fresh_after,
        }
    }

    #[tokio::test]
    async fn thousand_needs_over_hundred_keys_cost_five_requests() {
        let provider = Counting::default();
        let store = StoreKey::cluster("aws");
        let cache = RoundCache::default();
        let limiter = RateLimiter::new(100);
        let now = Instant::now();
        let all: Vec<Needs> = (0..1000).map(|i| needs(&[i % 100], now)).collect();
        let values = read_store(&provider, &store, &cache, &limiter, &all, &[]).await;
        assert_eq!(provider.requests.load(Ordering::SeqCst), 5);
        assert_eq!(provider.keys.load(Ordering::SeqCst), 100);
        assert_eq!(values.fetched.len(), 100);

        // Within the window, another round reuses the values without a request.
        let again = read_store(&provider, &store, &cache, &limiter, &all[..10], &[]).await;
        assert_eq!(provider.requests.load(Ordering::SeqCst), 5);
        assert_eq!(again.fetched.len(), 10);
        // A manual refresh (fresh_after = now) reads again.
        let forced = [needs(&[1], Instant::now())];
        read_store(&provider, &store, &cache, &limiter, &forced, &[]).await;
        assert_eq!(provider.requests.load(Ordering::SeqCst), 6);
    }

    #[tokio::test]
    async fn read_ahead_joins_only_rounds_that_read_anyway() {
        let provider = Counting::default();
        let store = StoreKey::cluster("aws");
        let cache = RoundCache::default();
        let limiter = RateLimiter::new(100);
        let now = Instant::now();
        let ahead = [needs(&[50, 51], now)];
        read_store(
            &provider,
            &store,
            &cache,
            &limiter,
            &[needs(&[1], now)],
            &ahead,
        )
        .await;
        assert_eq!(
            provider.keys.load(Ordering::SeqCst),
            3,
            "one request with the read-ahead"
        );
        assert_eq!(provider.requests.load(Ordering::SeqCst), 1);
        let later = read_store(&provider, &store, &cache, &limiter, &ahead, &[]).await;
        assert_eq!(
            provider.requests.load(Ordering::SeqCst),
            1,
            "served from the round"
        );
        assert_eq!(later.fetched.len(), 2);
        cache.expire(Instant::now() + Duration::from_secs(1));
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn partly_filled_requests_refresh_the_oldest_cached_values() {
        let provider = Counting::default();
        let store = StoreKey::cluster("aws");
        let cache = RoundCache::default();
        let limiter = RateLimiter::new(100);
        let early = Instant::now();
        let first: Vec<usize> = (0..30).collect();
        read_store(
            &provider,
            &store,
            &cache,
            &limiter,
            &[needs(&first, early)],
            &[],
        )
        .await;
        assert_eq!(provider.requests.load(Ordering::SeqCst), 2);
        // A forced read of one key fills its request with 19 cached keys.
        let forced = [needs(&[99], Instant::now())];
        read_store(&provider, &store, &cache, &limiter, &forced, &[]).await;
        assert_eq!(provider.requests.load(Ordering::SeqCst), 3);
        assert_eq!(provider.keys.load(Ordering::SeqCst), 30 + 20);
    }

    #[tokio::test]
    async fn per_object_reads_cost_one_request_per_key_of_each_external_secret() {
        let provider = Counting::default();
        let limiter = RateLimiter::new(10_000);
        let now = Instant::now();
        let all: Vec<Needs> = (0..1000).map(|i| needs(&[i % 100], now)).collect();
        let values = read_each(&provider, &limiter, &all).await;
        assert_eq!(provider.requests.load(Ordering::SeqCst), 1000);
        assert_eq!(provider.keys.load(Ordering::SeqCst), 1000);
        assert_eq!(values.fetched.len(), 100);
    }

    #[test]
    fn rate_limiter_spaces_requests_after_the_burst() {
        let limiter = RateLimiter::new(10);
        let now = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.reserve(now), Duration::ZERO);
        }
        let wait = limiter.reserve(now);
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(110),
            "{wait:?}"
        );
    }
}
