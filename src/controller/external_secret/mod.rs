//! The ExternalSecret controller.
//!
//! Watches ExternalSecrets, SecretStores, ClusterSecretStores, Namespaces and
//! only the Secrets it manages (label `sigil.dev/managed-by=external-secret`,
//! kept without their data). A [`scheduler::Scheduler`] decides what runs:
//! new and changed objects and manual refreshes (annotation
//! `sigil.dev/refresh-requested-at`, which works with `refreshInterval: 0`)
//! go through the fast lane; periodic refreshes are spread with jitter.
//! Work is handed out in rounds ([`round`]) that read each store once for
//! every ExternalSecret of the round.
//!
//! ExternalSecrets reading a generator (`dataFrom[].sourceRef.generatorRef`)
//! are left to [`dynamic`], which keeps their leases.
//!
//! After a restart, objects whose status shows them in sync are refreshed
//! within a couple of seconds through the periodic lane (the Secret is only
//! written if the data differs), so restarts converge without a burst of
//! writes and never look like a rotation.

pub mod desired;
pub mod dynamic;
pub mod fetch;
pub mod hmac;
#[cfg(test)]
mod mocked_api;
pub mod round;
pub mod scheduler;
pub mod status;
pub mod target;
pub mod template;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector::store::Writer};
use kube::{Resource, ResourceExt};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use self::round::{Finished, Shared};
use self::scheduler::{EsKey, Scheduler};
use super::Context;
use super::schedule::sleep_until;
use super::secret_store::{self, StoreCaches, StoreEvent};
use crate::api::conditions;
use crate::api::external_secret::{ExternalSecret, StoreKind};
use crate::api::secret_store::{ClusterSecretStore, SecretStore};
use crate::crypto::manifest;
use crate::providers::credentials::StoreKey;
use crate::providers::{BackendCalls, ClientCache};

/// Annotation requesting an immediate refresh; any new value triggers one.
pub const REFRESH_ANNOTATION: &str = "sigil.dev/refresh-requested-at";
/// How long the fast lane waits to gather a burst of new objects into one round.
const FAST_GATHER: Duration = Duration::from_millis(25);
/// Most ExternalSecrets handed out in one round.
const ROUND_LIMIT: usize = 2_000;
/// After a restart, objects in sync are refreshed within this spread.
const STARTUP_SPREAD: Duration = Duration::from_secs(2);

enum Msg {
    Es(Box<Event<ExternalSecret>>),
    Secret(Box<Event<Secret>>),
    Store(Event<StoreKey>, Option<i64>),
    Namespace(Box<Event<Namespace>>),
    StoreReady(StoreKey),
    Finished(Finished),
}

/// What the loop last saw of an ExternalSecret.
struct Seen {
    generation: Option<i64>,
    refresh: Option<String>,
    store: StoreKey,
}

fn store_key_of(es: &ExternalSecret) -> StoreKey {
    let reference = &es.spec.secret_store_ref;
    match reference.kind {
        StoreKind::SecretStore => {
            StoreKey::secret_store(&es.namespace().unwrap_or_default(), &reference.name)
        }
        StoreKind::ClusterSecretStore => StoreKey::cluster(&reference.name),
    }
}

fn key_of(es: &ExternalSecret) -> EsKey {
    EsKey::new(&es.namespace().unwrap_or_default(), &es.name_any())
}

/// Runs the ExternalSecret controller and the store checks until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let Some(hmac) =
        hmac::DataHmac::load_with_retry(&ctx.client, &ctx.options.namespace, &ctx.shutdown).await
    else {
        return;
    };
    let calls = BackendCalls::default();
    ctx.metrics.register(|registry| calls.register(registry));
    let providers = Arc::new(ClientCache::new(calls));
    let leases = tokio::spawn(dynamic::run(ctx.clone(), providers.clone(), hmac.clone()));

    let (tx, rx) = mpsc::unbounded_channel::<Msg>();
    let (es_reader, es_writer) = reflector::store::<ExternalSecret>();
    let (store_reader, store_writer) = reflector::store::<SecretStore>();
    let (cluster_reader, cluster_writer) = reflector::store::<ClusterSecretStore>();
    let (ns_reader, ns_writer) = reflector::store::<Namespace>();
    let (secret_reader, secret_writer) = reflector::store::<Secret>();
    let (store_events_tx, store_events_rx) = mpsc::unbounded_channel::<StoreEvent>();
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel::<StoreKey>();

    let client = ctx.client.clone();
    let shutdown = ctx.shutdown.clone();
    let mut tasks = tokio::task::JoinSet::new();
    {
        let tx = tx.clone();
        tasks.spawn(watch(
            ctx.watched::<ExternalSecret>(),
            watcher::Config::default(),
            es_writer,
            shutdown.clone(),
            move |event| {
                let _ = tx.send(Msg::Es(Box::new(event)));
            },
        ));
    }
    // With --watch-namespace, ClusterSecretStores (and so namespace labels) are not watched.
    let cluster_wide = ctx.options.watch_namespace.is_none();
    for_store_watch(
        &mut tasks,
        &ctx,
        store_writer,
        cluster_wide.then_some(cluster_writer),
        &tx,
        &store_events_tx,
    );
    if cluster_wide {
        let tx = tx.clone();
        tasks.spawn(watch(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
            ns_writer,
            shutdown.clone(),
            move |event| {
                let _ = tx.send(Msg::Namespace(Box::new(event)));
            },
        ));
    }
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        let api = ctx.watched::<Secret>();
        tasks.spawn(async move {
            let stream = watcher(
                api,
                watcher::Config::default().labels(&target::managed_selector()),
            )
            .default_backoff()
            .modify(|secret: &mut Secret| {
                manifest::wipe_secret(secret);
                secret.data = None;
                secret.string_data = None;
                secret.metadata.managed_fields = None;
            })
            .reflect(secret_writer);
            forward(stream, shutdown, move |event| {
                let _ = tx.send(Msg::Secret(Box::new(event)));
            })
            .await;
        });
    }
    {
        let tx = tx.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    key = ready_rx.recv() => match key {
                        Some(key) => { let _ = tx.send(Msg::StoreReady(key)); }
                        None => return,
                    },
                }
            }
        });
    }

    let caches = StoreCaches {
        stores: store_reader,
        cluster_stores: cluster_reader,
        namespaces: ns_reader,
    };
    tasks.spawn(secret_store::run(
        ctx.clone(),
        providers.clone(),
        caches.clone(),
        store_events_rx,
        ready_tx,
    ));

    let shared = Arc::new(Shared::new(
        ctx.clone(),
        hmac,
        providers,
        es_reader.clone(),
        caches.clone(),
        secret_reader.clone(),
    ));
    let ready = async {
        let _ = futures::future::join3(
            es_reader.wait_until_ready(),
            caches.stores.wait_until_ready(),
            secret_reader.wait_until_ready(),
        )
        .await;
        if cluster_wide {
            let _ = futures::future::join(
                caches.cluster_stores.wait_until_ready(),
                caches.namespaces.wait_until_ready(),
            )
            .await;
        }
    };
    tokio::select! {
        () = ctx.shutdown.cancelled() => {}
        () = ready => {
            tracing::info!("external secret controller started");
            Loop::new(shared, es_reader).run(rx).await;
        }
    }
    tasks.shutdown().await;
    let _ = leases.await;
}

fn for_store_watch(
    tasks: &mut tokio::task::JoinSet<()>,
    ctx: &Context,
    store_writer: Writer<SecretStore>,
    cluster_writer: Option<Writer<ClusterSecretStore>>,
    tx: &mpsc::UnboundedSender<Msg>,
    checker: &mpsc::UnboundedSender<StoreEvent>,
) {
    let shutdown = &ctx.shutdown;
    fn relay<K: Resource>(
        event: Event<K>,
        key: impl Fn(&K) -> StoreKey,
        tx: &mpsc::UnboundedSender<Msg>,
        checker: &mpsc::UnboundedSender<StoreEvent>,
    ) {
        let keyed = match event {
            Event::Apply(k) => {
                let _ = checker.send(StoreEvent::Applied(key(&k)));
                (Event::Apply(key(&k)), k.meta().generation)
            }
            Event::InitApply(k) => {
                let _ = checker.send(StoreEvent::Applied(key(&k)));
                (Event::InitApply(key(&k)), k.meta().generation)
            }
            Event::Delete(k) => {
                let _ = checker.send(StoreEvent::Deleted(key(&k)));
                (Event::Delete(key(&k)), None)
            }
            Event::Init => (Event::Init, None),
            Event::InitDone => (Event::InitDone, None),
        };
        let _ = tx.send(Msg::Store(keyed.0, keyed.1));
    }
    {
        let tx = tx.clone();
        let checker = checker.clone();
        tasks.spawn(watch(
            ctx.watched::<SecretStore>(),
            watcher::Config::default(),
            store_writer,
            shutdown.clone(),
            move |event| {
                relay(
                    event,
                    |s: &SecretStore| {
                        StoreKey::secret_store(&s.namespace().unwrap_or_default(), &s.name_any())
                    },
                    &tx,
                    &checker,
                );
            },
        ));
    }
    let Some(cluster_writer) = cluster_writer else {
        return;
    };
    let tx = tx.clone();
    let checker = checker.clone();
    tasks.spawn(watch(
        Api::<ClusterSecretStore>::all(ctx.client.clone()),
        watcher::Config::default(),
        cluster_writer,
        shutdown.clone(),
        move |event| {
            relay(
                event,
                |s: &ClusterSecretStore| StoreKey::cluster(&s.name_any()),
                &tx,
                &checker,
            );
        },
    ));
}

async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    shutdown: tokio_util::sync::CancellationToken,
    on_event: impl Fn(Event<K>) + Send + 'static,
) where
    K: Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Default + Eq + std::hash::Hash + Clone,
{
    let stream = watcher(api, config).default_backoff().reflect(writer);
    forward(stream, shutdown, on_event).await;
}

async fn forward<K>(
    stream: impl futures::Stream<Item = Result<Event<K>, watcher::Error>> + Send,
    shutdown: tokio_util::sync::CancellationToken,
    on_event: impl Fn(Event<K>) + Send,
) {
    let mut stream = std::pin::pin!(stream);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            next = stream.next() => match next {
                Some(Ok(event)) => on_event(event),
                Some(Err(error)) => tracing::warn!(%error, "watch failed; retrying"),
                None => return,
            },
        }
    }
}

/// The scheduling loop: turns watch events into work and hands out rounds.
struct Loop {
    shared: Arc<Shared>,
    externals: Store<ExternalSecret>,
    scheduler: Scheduler,
    seen: HashMap<EsKey, Seen>,
    relisting: Option<HashSet<EsKey>>,
    store_generations: HashMap<StoreKey, Option<i64>>,
    namespace_labels: HashMap<String, std::collections::BTreeMap<String, String>>,
    fast_since: Option<Instant>,
}

impl Loop {
    fn new(shared: Arc<Shared>, externals: Store<ExternalSecret>) -> Self {
        Self {
            shared,
            externals,
            scheduler: Scheduler::default(),
            seen: HashMap::new(),
            relisting: None,
            store_generations: HashMap::new(),
            namespace_labels: HashMap::new(),
            fast_since: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Finished>();
        loop {
            let now = Instant::now();
            if self.scheduler.has_fast_work() {
                self.fast_since.get_or_insert(now);
            }
            let fast_at = self.fast_since.map(|since| since + FAST_GATHER);
            let periodic_at = self
                .scheduler
                .next_wake(now)
                .filter(|_| !self.scheduler.has_fast_work());
            let wake = match (fast_at, periodic_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                () = self.shared.ctx.shutdown.cancelled() => return,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg),
                    None => return,
                },
                finished = done_rx.recv() => {
                    if let Some(finished) = finished {
                        self.handle(Msg::Finished(finished));
                    }
                }
                () = sleep_until(wake) => self.dispatch(&done_tx),
            }
        }
    }

    fn dispatch(&mut self, done: &mpsc::UnboundedSender<Finished>) {
        let now = Instant::now();
        if let Some(since) = self.fast_since
            && now < since + FAST_GATHER
        {
            return;
        }
        self.fast_since = None;
        let work = self.scheduler.take(now, ROUND_LIMIT);
        if work.is_empty() {
            return;
        }
        if let Some(oldest) = now.checked_sub(round::MAX_WINDOW + Duration::from_secs(1)) {
            self.shared.memo.expire(oldest);
        }
        let ahead: Vec<Arc<ExternalSecret>> = self
            .scheduler
            .upcoming(now, round::MAX_WINDOW)
            .into_iter()
            .filter_map(|(key, due)| {
                let es = self
                    .externals
                    .get(&reflector::ObjectRef::new(&key.name).within(&key.namespace))?;
                let window = round::jitter_window(round::refresh_interval(&es).ok()?);
                (due <= now + window).then_some(es)
            })
            .collect();
        tokio::spawn(round::run(self.shared.clone(), work, ahead, done.clone()));
    }

    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Es(event) => self.on_external_secret(*event),
            Msg::Secret(event) => self.on_secret(*event),
            Msg::Store(event, generation) => self.on_store(event, generation),
            Msg::Namespace(event) => self.on_namespace(*event),
            Msg::StoreReady(key) => {
                let waiting: Vec<EsKey> = self
                    .seen
                    .iter()
                    .filter(|(_, seen)| seen.store == key)
                    .map(|(k, _)| k.clone())
                    .filter(|k| {
                        self.externals
                            .get(&reflector::ObjectRef::new(&k.name).within(&k.namespace))
                            .is_some_and(|es| !is_ready(&es))
                    })
                    .collect();
                for key in waiting {
                    self.scheduler.fast(key, false);
                }
            }
            Msg::Finished(finished) => {
                let known = self.seen.contains_key(&finished.key);
                self.scheduler
                    .done(finished.key.clone(), finished.next.filter(|_| known));
                if !known {
                    self.scheduler.remove(&finished.key);
                }
            }
        }
    }

    fn forget(&mut self, key: &EsKey) {
        self.seen.remove(key);
        self.scheduler.remove(key);
        self.shared.forget(key);
    }

    fn on_external_secret(&mut self, event: Event<ExternalSecret>) {
        match event {
            Event::Init => self.relisting = Some(HashSet::new()),
            Event::InitApply(es) => {
                if let Some(listed) = self.relisting.as_mut() {
                    listed.insert(key_of(&es));
                }
                self.observe(&es, true);
            }
            Event::InitDone => {
                if let Some(listed) = self.relisting.take() {
                    let gone: Vec<EsKey> = self
                        .seen
                        .keys()
                        .filter(|k| !listed.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        self.forget(&key);
                    }
                }
            }
            Event::Apply(es) => self.observe(&es, false),
            Event::Delete(es) => self.forget(&key_of(&es)),
        }
    }

    fn observe(&mut self, es: &ExternalSecret, initial: bool) {
        let key = key_of(es);
        if !self.shared.ctx.owns(es)
            || es.meta().deletion_timestamp.is_some()
            || dynamic::uses_generator(es)
        {
            self.forget(&key);
            return;
        }
        let generation = es.meta().generation;
        let refresh = es.annotations().get(REFRESH_ANNOTATION).cloned();
        let store = store_key_of(es);
        match self.seen.get_mut(&key) {
            Some(seen) => {
                let force = refresh.is_some() && seen.refresh != refresh;
                if seen.generation != generation || force {
                    self.scheduler.fast(key.clone(), force);
                }
                seen.generation = generation;
                seen.refresh = refresh;
                seen.store = store;
            }
            None => {
                if initial && is_ready(es) && !refresh_requested_since_sync(es) {
                    let spread = STARTUP_SPREAD.mul_f64(rand::thread_rng().gen_range(0.0..=1.0));
                    self.scheduler.at(key.clone(), Instant::now() + spread);
                } else {
                    self.scheduler
                        .fast(key.clone(), refresh_requested_since_sync(es));
                }
                self.seen.insert(
                    key,
                    Seen {
                        generation,
                        refresh,
                        store,
                    },
                );
            }
        }
    }

    fn on_secret(&mut self, event: Event<Secret>) {
        let (secret, deleted) = match event {
            Event::Apply(secret) => (secret, false),
            Event::Delete(secret) => (secret, true),
            Event::Init | Event::InitApply(_) | Event::InitDone => return,
        };
        let namespace = secret.namespace().unwrap_or_default();
        let name = secret.name_any();
        let Some(owner) = secret.annotations().get(target::OWNER_ANNOTATION) else {
            return;
        };
        let key = EsKey::new(&namespace, owner);
        if deleted {
            self.shared.unverify(&namespace, &name);
        } else if self
            .shared
            .is_verified(&namespace, &name, secret.resource_version().as_deref())
        {
            return;
        }
        if self.seen.contains_key(&key) {
            self.scheduler.fast(key, false);
        }
    }

    fn on_store(&mut self, event: Event<StoreKey>, generation: Option<i64>) {
        let (key, initial) = match event {
            Event::Apply(key) => (key, false),
            Event::InitApply(key) => (key, true),
            Event::Delete(key) => {
                self.store_generations.remove(&key);
                self.fast_dependents(&key);
                return;
            }
            Event::Init | Event::InitDone => return,
        };
        let previous = self.store_generations.insert(key.clone(), generation);
        if !initial && previous != Some(generation) {
            self.fast_dependents(&key);
        }
    }

    fn on_namespace(&mut self, event: Event<Namespace>) {
        let (namespace, initial) = match event {
            Event::Apply(ns) => (ns, false),
            Event::InitApply(ns) => (ns, true),
            Event::Delete(ns) => {
                self.namespace_labels.remove(&ns.name_any());
                return;
            }
            Event::Init | Event::InitDone => return,
        };
        let name = namespace.name_any();
        let labels = namespace.labels().clone();
        let previous = self.namespace_labels.insert(name.clone(), labels.clone());
        if initial || previous.as_ref() == Some(&labels) {
            return;
        }
        let affected: Vec<EsKey> = self
            .seen
            .iter()
            .filter(|(k, seen)| {
                k.namespace == name && seen.store.kind == StoreKind::ClusterSecretStore
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in affected {
            self.scheduler.fast(key, false);
        }
    }

    fn fast_dependents(&mut self, store: &StoreKey) {
        let dependents: Vec<EsKey> = self
            .seen
            .iter()
            .filter(|(_, seen)| &seen.store == store)
            .map(|(k, _)| k.clone())
            .collect();
        for key in dependents {
            self.scheduler.fast(key, false);
        }
    }
}

fn is_ready(es: &ExternalSecret) -> bool {
    es.status.as_ref().is_some_and(|status| {
        conditions::is_true(&status.conditions, conditions::READY)
            && status.observed_generation == es.meta().generation
    })
}

/// A refresh annotation holding a time after the last refresh (set while the
/// controller was down) still counts.
fn refresh_requested_since_sync(es: &ExternalSecret) -> bool {
    let Some(requested) = es.annotations().get(REFRESH_ANNOTATION) else {
        return false;
    };
    let Some(refreshed) = es.status.as_ref().and_then(|s| s.refresh_time.as_ref()) else {
        return true;
    };
    match requested.parse::<jiff::Timestamp>() {
        Ok(at) => at > refreshed.0,
        Err(_) => requested
            .parse::<i64>()
            .ok()
            .and_then(|seconds| jiff::Timestamp::from_second(seconds).ok())
            .is_some_and(|at| at > refreshed.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::external_secret::{ExternalSecretSpec, ExternalSecretStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn es_with(annotation: Option<&str>, refreshed: Option<i64>) -> ExternalSecret {
        let mut es = ExternalSecret::new("db", ExternalSecretSpec::default());
        if let Some(value) = annotation {
            es.metadata.annotations =
                Some([(REFRESH_ANNOTATION.to_string(), value.to_string())].into());
        }
        es.status = refreshed.map(|s| ExternalSecretStatus {
            refresh_time: Some(Time(jiff::Timestamp::from_second(s).expect("time"))),
            ..Default::default()
        });
        es
    }

    #[test]
    fn refresh_requests_made_while_down_are_honoured() {
        assert!(!refresh_requested_since_sync(&es_with(None, Some(100))));
        assert!(refresh_requested_since_sync(&es_with(
            Some("1970-01-01T00:03:20Z"),
            Some(100)
        )));
        assert!(!refresh_requested_since_sync(&es_with(
            Some("1970-01-01T00:00:50Z"),
            Some(100)
        )));
        assert!(
            refresh_requested_since_sync(&es_with(Some("200"), Some(100))),
            "unix seconds"
        );
        assert!(!refresh_requested_since_sync(&es_with(
            Some("whenever"),
            Some(100)
        )));
        assert!(
            refresh_requested_since_sync(&es_with(Some("x"), None)),
            "never refreshed"
        );
    }
}
