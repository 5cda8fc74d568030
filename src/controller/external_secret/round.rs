//! One round: the ExternalSecrets the scheduler handed out, grouped by store;
//! each store is read once for all of them (see [`super::fetch`]), then every
//! ExternalSecret's Secret is compared and, if needed, written.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

use super::desired::{self, BuildError, Desired};
use super::fetch::{self, Limiters, Needs, RoundCache, StoreValues};
use super::hmac::DataHmac;
use super::scheduler::{EsKey, Lane, Work};
use super::status::{self, Verdict, Written};
use super::target::{self, HMAC_ANNOTATION, Ownership};
use crate::api::external_secret::{CreationPolicy, DeletionPolicy, ExternalSecret};
use crate::api::secret_store::Provider as ProviderSpec;
use crate::controller::Context;
use crate::controller::backoff::{self, Failures};
use crate::controller::secret_store::{self, StoreCaches, StoreProblem};
use crate::crypto::manifest;
use crate::providers::credentials::StoreKey;
use crate::providers::{ClientCache, ProviderError};

/// Default `refreshInterval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Longest jitter window (and so longest a value read is shared).
pub const MAX_WINDOW: Duration = Duration::from_secs(30);
/// Longest a store may take to answer one round.
const STORE_TIMEOUT: Duration = Duration::from_secs(120);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Refreshes of ExternalSecrets sharing a value spread over this window.
pub fn jitter_window(interval: Duration) -> Duration {
    (interval / 10).min(MAX_WINDOW)
}

/// An ExternalSecret's refresh interval.
pub fn refresh_interval(es: &ExternalSecret) -> Result<Duration, String> {
    match es.spec.refresh_interval.as_deref() {
        None | Some("") => Ok(DEFAULT_INTERVAL),
        Some(text) => {
            crate::api::duration::parse(text).map_err(|e| format!("spec.refreshInterval: {e}"))
        }
    }
}

/// Everything rounds share.
pub struct Shared {
    pub ctx: Arc<Context>,
    pub hmac: DataHmac,
    pub providers: Arc<ClientCache>,
    pub memo: RoundCache,
    pub limiters: Limiters,
    pub store_rate: u32,
    pub per_object_reads: bool,
    pub externals: Store<ExternalSecret>,
    pub caches: StoreCaches,
    /// Our Secrets, without their data.
    pub secrets: Store<Secret>,
    pub fast_permits: Semaphore,
    pub periodic_permits: Semaphore,
    /// The reference point of every store's refresh clock.
    pub origin: Instant,
    /// resourceVersion of each Secret whose data we last saw equal to our fingerprint.
    verified: Mutex<HashMap<(String, String), String>>,
    failures: Failures<EsKey>,
    recheck: Mutex<HashSet<StoreKey>>,
}

/// A finished piece of work and its next periodic refresh.
pub struct Finished {
    pub key: EsKey,
    pub next: Option<Instant>,
}

impl Shared {
    pub fn new(
        ctx: Arc<Context>,
        hmac: DataHmac,
        providers: Arc<ClientCache>,
        externals: Store<ExternalSecret>,
        caches: StoreCaches,
        secrets: Store<Secret>,
    ) -> Self {
        let concurrency = usize::from(ctx.options.external_secret_concurrency);
        let store_rate = ctx.options.store_requests_per_second;
        let per_object_reads = ctx.options.per_object_reads;
        Self {
            ctx,
            hmac,
            providers,
            memo: RoundCache::default(),
            limiters: Limiters::default(),
            store_rate,
            per_object_reads,
            externals,
            caches,
            secrets,
            fast_permits: Semaphore::new(concurrency.max(1)),
            periodic_permits: Semaphore::new(concurrency.max(1)),
            origin: Instant::now(),
            verified: Mutex::new(HashMap::new()),
            failures: Failures::new(FIRST_BACKOFF, MAX_BACKOFF),
            recheck: Mutex::new(HashSet::new()),
        }
    }

    /// Whether `rv` is the version of the Secret we last verified.
    pub fn is_verified(&self, namespace: &str, name: &str, rv: Option<&str>) -> bool {
        let Ok(verified) = self.verified.lock() else {
            return false;
        };
        rv.is_some()
            && verified
                .get(&(namespace.to_string(), name.to_string()))
                .map(String::as_str)
                == rv
    }

    fn verify(&self, namespace: &str, name: &str, rv: Option<String>) {
        if let Ok(mut verified) = self.verified.lock() {
            let key = (namespace.to_string(), name.to_string());
            match rv {
                Some(rv) => verified.insert(key, rv),
                None => verified.remove(&key),
            };
        }
    }

    /// Forgets a Secret (deleted).
    pub fn unverify(&self, namespace: &str, name: &str) {
        self.verify(namespace, name, None);
    }

    fn failed(&self, key: &EsKey) -> u32 {
        self.failures.failed(key)
    }

    fn succeeded(&self, key: &EsKey) {
        self.failures.succeeded(key);
    }

    pub fn forget(&self, key: &EsKey) {
        self.succeeded(key);
    }

    fn take_recheck(&self, store: &StoreKey) -> bool {
        self.recheck
            .lock()
            .map(|mut set| set.remove(store))
            .unwrap_or(false)
    }

    fn mark_recheck(&self, store: &StoreKey) {
        if let Ok(mut set) = self.recheck.lock() {
            set.insert(store.clone());
        }
    }
}

struct Item {
    work: Work,
    es: Arc<ExternalSecret>,
    interval: Duration,
    started: Instant,
}

fn backoff(failures: u32, interval: Duration) -> Duration {
    let cap = if interval.is_zero() {
        MAX_BACKOFF
    } else {
        MAX_BACKOFF.min(interval.max(Duration::from_secs(1)))
    };
    backoff::exponential(FIRST_BACKOFF, cap, failures)
        .mul_f64(rand::thread_rng().gen_range(0.9..=1.1))
}

/// The next periodic refresh. ExternalSecrets of one store with the same
/// interval share a clock: their refreshes fall on the ticks
/// `origin + phase + k·interval`, so each tick is one round reading every
/// distinct secret of the store once. The phase is a fixed offset per store
/// and interval, which spreads (jitters) the rounds of different stores.
pub fn next_tick(
    origin: Instant,
    store: &StoreKey,
    interval: Duration,
    now: Instant,
) -> Option<Instant> {
    if interval.is_zero() {
        return None;
    }
    let digest = Sha256::new()
        .chain_update(store.to_string().as_bytes())
        .chain_update(interval.as_nanos().to_be_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let fraction = u64::from_be_bytes(first) as f64 / u64::MAX as f64;
    let start = origin + interval.mul_f64(fraction);
    if now < start {
        return Some(start);
    }
    let periods = (now - start).as_nanos() / interval.as_nanos() + 1;
    let periods = u32::try_from(periods).unwrap_or(u32::MAX);
    Some(start + interval * periods)
}

/// How old a value a new or changed ExternalSecret accepts from the round's cache.
fn reuse_window(lane: Lane, interval: Duration) -> Duration {
    const FAST_REUSE: Duration = Duration::from_secs(5);
    match lane {
        Lane::Periodic => jitter_window(interval),
        Lane::Fast => {
            let cap = if interval.is_zero() {
                FAST_REUSE
            } else {
                interval
            };
            jitter_window(interval).max(FAST_REUSE.min(cap))
        }
    }
}

/// Runs one round; every piece of work ends in one [`Finished`] on `done`.
pub async fn run(
    shared: Arc<Shared>,
    work: Vec<Work>,
    ahead: Vec<Arc<ExternalSecret>>,
    done: mpsc::UnboundedSender<Finished>,
) {
    let mut groups: HashMap<StoreKey, (ProviderSpec, Vec<Item>)> = HashMap::new();
    let mut refused: Vec<(Item, Verdict, bool)> = Vec::new();
    for work in work {
        let es = shared
            .externals
            .get(&ObjectRef::new(&work.key.name).within(&work.key.namespace));
        let Some(es) = es.filter(|es| shared.ctx.owns(es.as_ref())) else {
            let _ = done.send(Finished {
                key: work.key,
                next: None,
            });
            continue;
        };
        let started = Instant::now();
        let interval = match refresh_interval(&es) {
            Ok(interval) => interval,
            Err(message) => {
                let item = Item {
                    work,
                    es,
                    interval: DEFAULT_INTERVAL,
                    started,
                };
                refused.push((item, Verdict::failed(status::INVALID_SPEC, message), false));
                continue;
            }
        };
        let item = Item {
            work,
            es,
            interval,
            started,
        };
        if let Err(BuildError::Invalid(message)) = desired::validate(&item.es.spec) {
            refused.push((item, Verdict::failed(status::INVALID_SPEC, message), false));
            continue;
        }
        match secret_store::resolve(&item.es, &shared.caches) {
            Err(StoreProblem::NotFound(message)) => {
                refused.push((
                    item,
                    Verdict::failed(status::STORE_NOT_FOUND, message),
                    true,
                ));
            }
            Err(StoreProblem::NotAllowed(message)) => {
                refused.push((
                    item,
                    Verdict::failed(status::STORE_NOT_ALLOWED, message),
                    true,
                ));
            }
            Ok(store) => match store.not_ready {
                Some(why) if !item.work.force_fresh => {
                    let message = format!("{}: not ready: {why}", store.key);
                    refused.push((
                        item,
                        Verdict::failed(status::STORE_NOT_READY, message),
                        true,
                    ));
                }
                _ => groups
                    .entry(store.key)
                    .or_insert_with(|| (store.provider, Vec::new()))
                    .1
                    .push(item),
            },
        }
    }

    let refusals = refused.into_iter().map(|(item, verdict, retry)| {
        let shared = shared.clone();
        let done = done.clone();
        async move {
            let next = if retry {
                let failures = shared.failed(&item.work.key);
                Some(Instant::now() + backoff(failures, item.interval))
            } else {
                None
            };
            finish(&shared, &item, &verdict, next, &done).await;
        }
    });
    let mut ahead_by_store: HashMap<StoreKey, Vec<Arc<ExternalSecret>>> = HashMap::new();
    for es in ahead {
        if let Ok(store) = secret_store::resolve(&es, &shared.caches)
            && groups.contains_key(&store.key)
        {
            ahead_by_store.entry(store.key).or_default().push(es);
        }
    }
    let stores = groups.into_iter().map(|(key, (spec, items))| {
        let ahead = ahead_by_store.remove(&key).unwrap_or_default();
        run_store(shared.clone(), key, spec, items, ahead, done.clone())
    });
    futures::future::join(
        futures::future::join_all(refusals),
        futures::future::join_all(stores),
    )
    .await;
}

fn needs_of(es: &ExternalSecret, fresh_after: Instant) -> Needs {
    let mut keys = desired::remote_keys(&es.spec);
    keys.sort();
    keys.dedup();
    let mut finds = desired::find_queries(&es.spec);
    finds.sort();
    finds.dedup();
    Needs {
        keys,
        finds,
        fresh_after,
    }
}

fn window_start(now: Instant, interval: Duration) -> Instant {
    now.checked_sub(jitter_window(interval)).unwrap_or(now)
}

async fn run_store(
    shared: Arc<Shared>,
    key: StoreKey,
    spec: ProviderSpec,
    items: Vec<Item>,
    ahead: Vec<Arc<ExternalSecret>>,
    done: mpsc::UnboundedSender<Finished>,
) {
    let recheck = shared.take_recheck(&key);
    let provider = match shared
        .providers
        .provider(&shared.ctx.client, &key, &spec, recheck)
        .await
    {
        Ok(provider) => provider,
        Err(error) => {
            shared.mark_recheck(&key);
            let reason = match error {
                ProviderError::Config(_) | ProviderError::Auth(_) => status::STORE_NOT_READY,
                _ => status::SECRET_SYNC_ERROR,
            };
            let message = format!("{key}: {error}");
            let finishes = items.iter().map(|item| {
                let failures = shared.failed(&item.work.key);
                let next = Some(Instant::now() + backoff(failures, item.interval));
                let verdict = Verdict::failed(reason, message.clone());
                let shared = shared.clone();
                let done = done.clone();
                async move { finish(&shared, item, &verdict, next, &done).await }
            });
            futures::future::join_all(finishes).await;
            return;
        }
    };
    let now = Instant::now();
    let needs: Vec<Needs> = items
        .iter()
        .map(|item| {
            let fresh_after = if item.work.force_fresh {
                now
            } else {
                now.checked_sub(reuse_window(item.work.lane, item.interval))
                    .unwrap_or(now)
            };
            needs_of(&item.es, fresh_after)
        })
        .collect();
    let ahead_needs: Vec<Needs> = ahead
        .iter()
        .filter_map(|es| {
            let interval = refresh_interval(es).ok()?;
            Some(needs_of(es, window_start(now, interval)))
        })
        .collect();
    let limiter = shared.limiters.for_store(&key, shared.store_rate);
    let read = async {
        if shared.per_object_reads {
            fetch::read_each(provider.as_ref(), &limiter, &needs).await
        } else {
            fetch::read_store(
                provider.as_ref(),
                &key,
                &shared.memo,
                &limiter,
                &needs,
                &ahead_needs,
            )
            .await
        }
    };
    let values = tokio::time::timeout(STORE_TIMEOUT, read).await;
    let values = match values {
        Ok(values) => values,
        Err(_) => {
            let message = format!("{key}: no answer within {}s", STORE_TIMEOUT.as_secs());
            let finishes = items.iter().map(|item| {
                let failures = shared.failed(&item.work.key);
                let next = Some(Instant::now() + backoff(failures, item.interval));
                let verdict = Verdict::failed(status::SECRET_SYNC_ERROR, message.clone());
                let shared = shared.clone();
                let done = done.clone();
                async move { finish(&shared, item, &verdict, next, &done).await }
            });
            futures::future::join_all(finishes).await;
            return;
        }
    };
    let auth_failed = values
        .fetched
        .values()
        .any(|r| matches!(r, Err(ProviderError::Auth(_))))
        || values
            .found
            .values()
            .any(|r| matches!(r, Err(ProviderError::Auth(_))));
    if auth_failed {
        shared.mark_recheck(&key);
    }

    let syncs = items.into_iter().map(|item| {
        let shared = shared.clone();
        let done = done.clone();
        let values = &values;
        let key = &key;
        async move {
            let permits = match item.work.lane {
                Lane::Fast => &shared.fast_permits,
                Lane::Periodic => &shared.periodic_permits,
            };
            let _permit = permits.acquire().await;
            let (verdict, next) = sync(&shared, &item, values, key).await;
            finish(&shared, &item, &verdict, next, &done).await;
        }
    });
    futures::future::join_all(syncs).await;
}

async fn finish(
    shared: &Shared,
    item: &Item,
    verdict: &Verdict,
    next: Option<Instant>,
    done: &mpsc::UnboundedSender<Finished>,
) {
    status::publish(&shared.ctx, &item.es, verdict, item.interval).await;
    shared.ctx.metrics.reconciled(
        "externalsecret",
        item.started.elapsed(),
        (!verdict.ready).then_some(verdict.reason),
    );
    let _ = done.send(Finished {
        key: item.work.key.clone(),
        next,
    });
}

/// Syncs one ExternalSecret from the round's values.
async fn sync(
    shared: &Shared,
    item: &Item,
    values: &StoreValues,
    store: &StoreKey,
) -> (Verdict, Option<Instant>) {
    let es = &item.es;
    let key = &item.work.key;
    let periodic = next_tick(shared.origin, store, item.interval, Instant::now());
    let retry = |shared: &Shared| {
        let failures = shared.failed(key);
        Some(Instant::now() + backoff(failures, item.interval))
    };
    let result = match desired::build(&es.spec, &values.fetched, &values.found) {
        Ok(desired) => write(shared, es, &desired).await,
        Err(BuildError::AllMissing(message)) => remove(shared, es, &message).await,
        Err(BuildError::Failed { message, transient }) => {
            let next = if transient {
                retry(shared)
            } else {
                periodic.or_else(|| retry(shared))
            };
            return (Verdict::failed(status::SECRET_SYNC_ERROR, message), next);
        }
        Err(BuildError::Invalid(message)) => {
            return (Verdict::failed(status::INVALID_SPEC, message), None);
        }
    };
    match result {
        Ok(verdict) => {
            shared.succeeded(key);
            (verdict, periodic)
        }
        Err(verdict) => (verdict, retry(shared)),
    }
}

fn kube_failure(what: &str, error: &kube::Error) -> Verdict {
    Verdict::failed(status::SECRET_SYNC_ERROR, format!("{what}: {error}"))
}

/// Reads the target Secret in full (the reflector keeps no data).
async fn live_secret(shared: &Shared, es: &ExternalSecret) -> Result<Option<Secret>, Verdict> {
    target::get(&shared.ctx.client, es)
        .await
        .map_err(|e| kube_failure(&format!("reading Secret {}", target::target_name(es)), &e))
}

async fn write(
    shared: &Shared,
    es: &ExternalSecret,
    desired: &Desired,
) -> Result<Verdict, Verdict> {
    let fingerprint = shared.hmac.of(desired.data.iter());
    let namespace = es.namespace().unwrap_or_default();
    let name = target::target_name(es);
    let synced = |rv: Option<String>| {
        let mut verdict =
            Verdict::ready(status::SECRET_SYNCED, format!("Secret {name} is in sync"));
        verdict.synced_resource_version = rv;
        verdict
    };
    if let Some(known) = shared
        .secrets
        .get(&ObjectRef::new(&name).within(&namespace))
    {
        let rv = known.resource_version();
        if shared.is_verified(&namespace, &name, rv.as_deref())
            && target::up_to_date(&known, es, desired, &fingerprint, None)
        {
            return Ok(synced(rv));
        }
    }
    let mut live = live_secret(shared, es).await?;
    let policy = es.spec.target.creation_policy;
    let verdict = decide_and_write(shared, es, desired, &fingerprint, live.as_ref(), policy).await;
    if let Some(live) = live.as_mut() {
        manifest::wipe_secret(live);
    }
    verdict
}

async fn decide_and_write(
    shared: &Shared,
    es: &ExternalSecret,
    desired: &Desired,
    fingerprint: &str,
    live: Option<&Secret>,
    policy: CreationPolicy,
) -> Result<Verdict, Verdict> {
    let namespace = es.namespace().unwrap_or_default();
    let name = target::target_name(es);
    match target::ownership(live, &es.name_any(), policy) {
        Ownership::Foreign(message) => {
            return Err(Verdict::failed(status::SECRET_CONFLICT, message));
        }
        Ownership::Absent if policy == CreationPolicy::Merge => {
            return Err(Verdict::failed(
                status::SECRET_SYNC_ERROR,
                format!("creationPolicy Merge: Secret {name} does not exist"),
            ));
        }
        Ownership::Absent | Ownership::Ours => {}
    }
    if let Some(live) = live
        && target::up_to_date(live, es, desired, fingerprint, Some(&shared.hmac))
    {
        shared.verify(&namespace, &name, live.resource_version());
        let mut verdict =
            Verdict::ready(status::SECRET_SYNCED, format!("Secret {name} is in sync"));
        verdict.synced_resource_version = live.resource_version();
        return Ok(verdict);
    }
    let previous = live.and_then(|l| l.annotations().get(HMAC_ANNOTATION).cloned());
    let rv = target::apply(&shared.ctx.client, es, Some(desired), fingerprint)
        .await
        .map_err(|e| kube_failure(&format!("writing Secret {name}"), &e))?;
    shared.verify(&namespace, &name, rv.clone());
    if let Some(previous) = &previous
        && previous != fingerprint
    {
        shared
            .ctx
            .reloader
            .secret_changed(&namespace, &name, fingerprint);
    }
    let written = if live.is_none() {
        (Written::Created, format!("Secret {name} created"))
    } else if previous.as_deref() == Some(fingerprint) {
        (Written::Updated, format!("Secret {name} repaired"))
    } else {
        (Written::Updated, format!("Secret {name} updated"))
    };
    let mut verdict = Verdict::ready(status::SECRET_SYNCED, format!("Secret {name} is in sync"));
    verdict.synced_resource_version = rv;
    verdict.written = Some(written);
    Ok(verdict)
}

/// Every remote value is gone: apply the deletion policy.
async fn remove(shared: &Shared, es: &ExternalSecret, why: &str) -> Result<Verdict, Verdict> {
    let name = target::target_name(es);
    if es.spec.target.deletion_policy == DeletionPolicy::Retain {
        let mut verdict = Verdict::failed(
            status::SECRET_SYNC_ERROR,
            format!("{why}; Secret {name} keeps its last values (deletionPolicy: Retain)"),
        );
        verdict.refreshed = true;
        return Ok(verdict);
    }
    let policy = es.spec.target.creation_policy;
    let mut live = live_secret(shared, es).await?;
    let result = match target::ownership(live.as_ref(), &es.name_any(), policy) {
        Ownership::Foreign(message) => Err(Verdict::failed(status::SECRET_CONFLICT, message)),
        Ownership::Absent => Ok(Verdict::ready(
            status::SECRET_DELETED,
            format!("{why}; Secret {name} deleted (deletionPolicy: Delete)"),
        )),
        Ownership::Ours => {
            let namespace = es.namespace().unwrap_or_default();
            let outcome = match (policy, live.as_ref()) {
                (CreationPolicy::Merge, _) => {
                    let empty = shared.hmac.of(std::iter::empty::<(&String, &Vec<u8>)>());
                    target::apply(&shared.ctx.client, es, None, &empty)
                        .await
                        .map(|rv| shared.verify(&namespace, &name, rv))
                }
                (_, Some(live)) => target::delete(&shared.ctx.client, live).await.map(|()| {
                    shared.unverify(&namespace, &name);
                }),
                (_, None) => Ok(()),
            };
            match outcome {
                Ok(()) => {
                    let message = match policy {
                        CreationPolicy::Merge => format!(
                            "{why}; our keys removed from Secret {name} (deletionPolicy: Delete)"
                        ),
                        _ => format!("{why}; Secret {name} deleted (deletionPolicy: Delete)"),
                    };
                    let mut verdict = Verdict::ready(status::SECRET_DELETED, message.clone());
                    verdict.written = Some((Written::Deleted, message));
                    Ok(verdict)
                }
                Err(error) => Err(kube_failure(&format!("deleting Secret {name}"), &error)),
            }
        }
    };
    if let Some(live) = live.as_mut() {
        manifest::wipe_secret(live);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_a_tenth_of_the_interval_up_to_thirty_seconds() {
        assert_eq!(
            jitter_window(Duration::from_secs(2)),
            Duration::from_millis(200)
        );
        assert_eq!(jitter_window(Duration::from_secs(3600)), MAX_WINDOW);
        assert_eq!(jitter_window(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn refreshes_of_a_store_fall_on_one_clock_with_a_phase_per_store() {
        let origin = Instant::now();
        let ten = Duration::from_secs(10);
        let aws = StoreKey::cluster("aws");
        let first = next_tick(origin, &aws, ten, origin).expect("periodic");
        assert!(first >= origin && first < origin + ten);
        // Whenever an ExternalSecret finishes, it lands on the same ticks.
        for offset_ms in [1, 2_500, 7_300, 9_999] {
            let now = first + Duration::from_millis(offset_ms);
            assert_eq!(next_tick(origin, &aws, ten, now), Some(first + ten));
        }
        assert_eq!(
            next_tick(origin, &aws, ten, first),
            Some(first + ten),
            "strictly after now"
        );
        let other = next_tick(origin, &StoreKey::cluster("vault"), ten, origin).expect("periodic");
        assert_ne!(first, other, "stores are spread");
        assert_eq!(
            next_tick(origin, &aws, Duration::ZERO, origin),
            None,
            "interval 0: only on change"
        );
    }

    #[test]
    fn new_objects_may_reuse_values_a_little_older() {
        let two = Duration::from_secs(2);
        assert_eq!(
            reuse_window(Lane::Periodic, two),
            Duration::from_millis(200)
        );
        assert_eq!(reuse_window(Lane::Fast, two), two);
        assert_eq!(
            reuse_window(Lane::Fast, Duration::from_secs(3600)),
            MAX_WINDOW
        );
        assert_eq!(
            reuse_window(Lane::Fast, Duration::ZERO),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn backoff_grows_and_stays_under_its_caps() {
        let hour = Duration::from_secs(3600);
        assert!(backoff(1, hour) <= Duration::from_millis(1100));
        assert!(backoff(4, hour) >= Duration::from_millis(7200));
        assert!(backoff(30, hour) <= MAX_BACKOFF.mul_f64(1.1));
        assert!(backoff(30, Duration::from_secs(2)) <= Duration::from_millis(2200));
        assert!(backoff(30, Duration::ZERO) <= MAX_BACKOFF.mul_f64(1.1));
    }

    #[test]
    fn refresh_intervals_default_to_an_hour() {
        let mut es = ExternalSecret::new("x", Default::default());
        assert_eq!(refresh_interval(&es), Ok(DEFAULT_INTERVAL));
        es.spec.refresh_interval = Some("0".into());
        assert_eq!(refresh_interval(&es), Ok(Duration::ZERO));
        es.spec.refresh_interval = Some("2s".into());
        assert_eq!(refresh_interval(&es), Ok(Duration::from_secs(2)));
        es.spec.refresh_interval = Some("soon".into());
        assert!(refresh_interval(&es).is_err());
    }
}
