//! SecretStore and ClusterSecretStore: which store an ExternalSecret may use,
//! and each store's `Ready` condition after a real authentication check.
//!
//! A store is checked when its spec changes, every [`RECHECK`] while it
//! works, and with backoff while it does not. Checks use the same long-lived
//! provider the ExternalSecrets use ([`ClientCache`]), so checking a Vault
//! store does not cost an extra login.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::schedule::sleep_until;
use super::{Context, backoff};
use crate::api::conditions::{self, ConditionUpdate};
use crate::api::external_secret::{ExternalSecret, StoreKind};
use crate::api::secret_store::{
    ClusterSecretStore, ClusterSecretStoreCondition, Provider as ProviderSpec, SecretStore,
    SecretStoreStatus,
};
use crate::providers::credentials::StoreKey;
use crate::providers::{ClientCache, ProviderError};

/// How often a working store is checked again.
pub const RECHECK: Duration = Duration::from_secs(300);
const FIRST_RETRY: Duration = Duration::from_secs(10);

/// Store condition reasons (as External Secrets Operator's).
pub const REASON_VALID: &str = "Valid";
pub const REASON_INVALID_CONFIG: &str = "InvalidProviderConfig";
pub const REASON_VALIDATION_FAILED: &str = "ValidationFailed";

/// The reflector stores the controllers read stores and namespaces from.
#[derive(Clone)]
pub struct StoreCaches {
    pub stores: Store<SecretStore>,
    pub cluster_stores: Store<ClusterSecretStore>,
    pub namespaces: Store<Namespace>,
}

/// A store an ExternalSecret may use.
pub struct UsableStore {
    pub key: StoreKey,
    pub provider: ProviderSpec,
    /// Not ready per a check of its current spec; the message says why.
    pub not_ready: Option<String>,
}

/// Why an ExternalSecret cannot use its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreProblem {
    NotFound(String),
    NotAllowed(String),
}

/// Whether a ClusterSecretStore's conditions let `namespace` use it.
pub fn namespace_allowed(
    conditions: &[ClusterSecretStoreCondition],
    namespace: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    conditions.is_empty()
        || conditions.iter().any(|condition| {
            condition.namespaces.iter().any(|n| n == namespace)
                || condition
                    .namespace_selector
                    .as_ref()
                    .is_some_and(|selector| {
                        Selector::try_from(selector.clone()).is_ok_and(|s| s.matches(labels))
                    })
        })
}

fn not_ready(status: Option<&SecretStoreStatus>, generation: Option<i64>) -> Option<String> {
    let ready = status.and_then(|s| conditions::find(&s.conditions, conditions::READY))?;
    (ready.status == "False" && ready.observed_generation == generation)
        .then(|| ready.message.clone())
}

/// The store `es` names, if it exists and admits the ExternalSecret's namespace.
pub fn resolve(es: &ExternalSecret, caches: &StoreCaches) -> Result<UsableStore, StoreProblem> {
    let namespace = es.namespace().unwrap_or_default();
    let reference = &es.spec.secret_store_ref;
    match reference.kind {
        StoreKind::SecretStore => {
            let store = caches
                .stores
                .get(&ObjectRef::new(&reference.name).within(&namespace))
                .ok_or_else(|| {
                    StoreProblem::NotFound(format!(
                        "spec.secretStoreRef: SecretStore {namespace}/{} not found",
                        reference.name
                    ))
                })?;
            Ok(UsableStore {
                key: StoreKey::secret_store(&namespace, &reference.name),
                provider: store.spec.provider.clone(),
                not_ready: not_ready(store.status.as_ref(), store.meta().generation),
            })
        }
        StoreKind::ClusterSecretStore => {
            let store = caches
                .cluster_stores
                .get(&ObjectRef::new(&reference.name))
                .ok_or_else(|| {
                    StoreProblem::NotFound(format!(
                        "spec.secretStoreRef: ClusterSecretStore {} not found",
                        reference.name
                    ))
                })?;
            let labels = caches
                .namespaces
                .get(&ObjectRef::new(&namespace))
                .map(|ns| ns.labels().clone())
                .unwrap_or_default();
            if !namespace_allowed(&store.spec.conditions, &namespace, &labels) {
                return Err(StoreProblem::NotAllowed(format!(
                    "ClusterSecretStore {} does not allow namespace {namespace} (spec.conditions)",
                    reference.name
                )));
            }
            Ok(UsableStore {
                key: StoreKey::cluster(&reference.name),
                provider: store.spec.provider.clone(),
                not_ready: not_ready(store.status.as_ref(), store.meta().generation),
            })
        }
    }
}

/// A store event for the checker.
pub enum StoreEvent {
    Applied(StoreKey),
    Deleted(StoreKey),
}

struct Tracked {
    due: Instant,
    checked_generation: Option<i64>,
    failures: u32,
}

/// Checks stores and keeps their `Ready` condition. `ready_tx` hears of every
/// store that became Ready, so waiting ExternalSecrets can go at once.
pub async fn run(
    ctx: Arc<Context>,
    providers: Arc<ClientCache>,
    caches: StoreCaches,
    mut events: mpsc::UnboundedReceiver<StoreEvent>,
    ready_tx: mpsc::UnboundedSender<StoreKey>,
) {
    let mut tracked: HashMap<StoreKey, Tracked> = HashMap::new();
    loop {
        let next = tracked.values().map(|t| t.due).min();
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            event = events.recv() => match event {
                None => return,
                Some(StoreEvent::Applied(key)) => {
                    let generation = generation_of(&caches, &key);
                    let entry = tracked.entry(key).or_insert(Tracked {
                        due: Instant::now(),
                        checked_generation: None,
                        failures: 0,
                    });
                    if entry.checked_generation != generation || generation.is_none() {
                        entry.due = Instant::now();
                    }
                }
                Some(StoreEvent::Deleted(key)) => {
                    tracked.remove(&key);
                    providers.retain(|k| k != &key);
                }
            },
            () = sleep_until(next) => {
                let now = Instant::now();
                let due: Vec<StoreKey> = tracked
                    .iter()
                    .filter(|(_, t)| t.due <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                let checks = due.into_iter().map(|key| {
                    let ctx = ctx.clone();
                    let providers = providers.clone();
                    let caches = caches.clone();
                    async move {
                        let result = check(&ctx, &providers, &caches, &key).await;
                        (key, result)
                    }
                });
                let results: Vec<_> = futures::future::join_all(checks).await;
                for (key, result) in results {
                    let Some(entry) = tracked.get_mut(&key) else { continue };
                    match result {
                        Some(Checked { ok, generation, became_ready }) => {
                            entry.checked_generation = generation;
                            if ok {
                                entry.failures = 0;
                                entry.due = Instant::now() + RECHECK;
                            } else {
                                entry.failures += 1;
                                entry.due = Instant::now()
                                    + backoff::exponential(FIRST_RETRY, RECHECK, entry.failures);
                            }
                            if became_ready {
                                let _ = ready_tx.send(key);
                            }
                        }
                        None => {
                            tracked.remove(&key);
                        }
                    }
                }
            }
        }
    }
}

fn generation_of(caches: &StoreCaches, key: &StoreKey) -> Option<i64> {
    match &key.namespace {
        Some(ns) => caches
            .stores
            .get(&ObjectRef::new(&key.name).within(ns))
            .and_then(|s| s.meta().generation),
        None => caches
            .cluster_stores
            .get(&ObjectRef::new(&key.name))
            .and_then(|s| s.meta().generation),
    }
}

struct Checked {
    ok: bool,
    generation: Option<i64>,
    became_ready: bool,
}

/// Checks one store and writes its status; `None` when it is gone or not ours.
async fn check(
    ctx: &Context,
    providers: &ClientCache,
    caches: &StoreCaches,
    key: &StoreKey,
) -> Option<Checked> {
    let (provider_spec, generation, status) = match &key.namespace {
        Some(ns) => {
            let store = caches.stores.get(&ObjectRef::new(&key.name).within(ns))?;
            if !ctx.owns(store.as_ref()) {
                return None;
            }
            (
                store.spec.provider.clone(),
                store.meta().generation,
                store.status.clone(),
            )
        }
        None => {
            let store = caches.cluster_stores.get(&ObjectRef::new(&key.name))?;
            if !ctx.owns(store.as_ref()) {
                return None;
            }
            (
                store.spec.provider.clone(),
                store.meta().generation,
                store.status.clone(),
            )
        }
    };
    let started = std::time::Instant::now();
    let outcome = match providers
        .provider(&ctx.client, key, &provider_spec, true)
        .await
    {
        Ok(provider) => provider.validate().await.map(|()| provider.kind()),
        Err(error) => Err(error),
    };
    let update = match &outcome {
        Ok(kind) => ConditionUpdate::ready(
            REASON_VALID,
            format!("authenticated to {kind} and listed or read successfully"),
        ),
        Err(error @ ProviderError::Config(_)) => {
            ConditionUpdate::not_ready(REASON_INVALID_CONFIG, error.to_string())
        }
        Err(error) => ConditionUpdate::not_ready(REASON_VALIDATION_FAILED, error.to_string()),
    };
    let ok = outcome.is_ok();
    let error_reason = (!ok).then_some(update.reason);
    ctx.metrics
        .reconciled("secretstore", started.elapsed(), error_reason);
    if let Err(error) = &outcome {
        tracing::info!(store = %key, %error, "store check failed");
    }
    let mut status = status.unwrap_or_default();
    let was_ready = conditions::is_true(&status.conditions, conditions::READY);
    let now = Time(jiff::Timestamp::now());
    let changed = conditions::set_condition(&mut status.conditions, update, generation, now);
    if changed || status.observed_generation != generation {
        status.observed_generation = generation;
        if let Err(error) = write_status(&ctx.client, key, &status.conditions, generation).await {
            tracing::warn!(store = %key, %error, "cannot write store status");
        }
    }
    Some(Checked {
        ok,
        generation,
        became_ready: ok && !was_ready,
    })
}

async fn write_status(
    client: &kube::Client,
    key: &StoreKey,
    conditions: &[Condition],
    generation: Option<i64>,
) -> Result<(), kube::Error> {
    let patch = serde_json::json!({
        "status": {"conditions": conditions, "observedGeneration": generation}
    });
    let params = PatchParams::default();
    match &key.namespace {
        Some(ns) => {
            let api: Api<SecretStore> = Api::namespaced(client.clone(), ns);
            api.patch_status(&key.name, &params, &Patch::Merge(&patch))
                .await?;
        }
        None => {
            let api: Api<ClusterSecretStore> = Api::all(client.clone());
            api.patch_status(&key.name, &params, &Patch::Merge(&patch))
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
pub mod mocked_api;

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn conditions_admit_namespaces_by_name_or_label() {
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(
            namespace_allowed(&[], "any", &labels(&[])),
            "no conditions: everyone"
        );
        let conditions = vec![
            ClusterSecretStoreCondition {
                namespaces: vec!["team-a".into()],
                namespace_selector: None,
            },
            ClusterSecretStoreCondition {
                namespaces: vec![],
                namespace_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([(
                        "sigil.dev/secrets".into(),
                        "allowed".into(),
                    )])),
                    match_expressions: None,
                }),
            },
        ];
        assert!(namespace_allowed(&conditions, "team-a", &labels(&[])));
        assert!(namespace_allowed(
            &conditions,
            "team-b",
            &labels(&[("sigil.dev/secrets", "allowed")])
        ));
        assert!(!namespace_allowed(
            &conditions,
            "team-b",
            &labels(&[("other", "x")])
        ));
    }

    #[test]
    fn not_ready_only_for_a_failed_check_of_the_current_generation() {
        let failed = |generation| SecretStoreStatus {
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: REASON_VALIDATION_FAILED.into(),
                message: "bad token".into(),
                observed_generation: Some(generation),
                last_transition_time: Time(jiff::Timestamp::UNIX_EPOCH),
            }],
            observed_generation: Some(generation),
        };
        assert_eq!(
            not_ready(Some(&failed(2)), Some(2)),
            Some("bad token".into())
        );
        assert_eq!(
            not_ready(Some(&failed(1)), Some(2)),
            None,
            "spec changed since"
        );
        assert_eq!(not_ready(None, Some(1)), None, "never checked");
    }
}
