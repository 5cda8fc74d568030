//! ExternalSecrets whose values come from a generator
//! (`spec.dataFrom[].sourceRef.generatorRef`, a `VaultDynamicSecret`): new
//! credentials under a lease, which this controller keeps for as long as the
//! ExternalSecret exists.
//!
//! * The lease (id, issue time, expiry, the max TTL once known) lives in the
//!   ExternalSecret's `status.lease`, written *before* the credentials reach
//!   the Secret: a restarted controller renews the same lease and never loses
//!   one it issued.
//! * It is renewed (`sys/leases/renew`) and, a lead time (`rotateBefore`)
//!   before its end, replaced: new credentials are issued, recorded, written
//!   to the Secret, and only then is the old lease revoked
//!   (`sys/leases/revoke`). A lease waiting for revocation stays in
//!   `status.retiringLeases` until Vault confirmed it. See [`schedule`].
//! * New credentials are also issued when the target Secret was deleted or
//!   edited, or the ExternalSecret's spec changed (the credentials cannot be
//!   read again; the old lease is revoked).
//! * The finalizer [`FINALIZER`] revokes every lease before the ExternalSecret
//!   goes away.
//!
//! The store loop of the other ExternalSecrets skips these ([`uses_generator`]).

pub mod active;
pub mod lease;
pub mod schedule;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};

use super::desired::{self, BuildError};
use super::hmac::DataHmac;
use super::status::{self, Verdict, Written};
use super::target::{self, OWNER_ANNOTATION, Ownership};
use crate::api::duration;
use crate::api::external_secret::{
    CreationPolicy, ExternalSecret, ExternalSecretStatus, LeaseStatus, RetiringLease,
};
use crate::api::secret_store::Provider as ProviderSpec;
use crate::api::vault_dynamic_secret::VaultDynamicSecret;
use crate::controller::backoff::Failures;
use crate::controller::status::{StatusError, patch_status};
use crate::controller::{Context, runner};
use crate::crypto::manifest;
use crate::providers::credentials::StoreKey;
use crate::providers::generator::{GenerateRequest, Generator};
use crate::providers::vault::lease_is_gone;
use crate::providers::{ClientCache, Provider, ProviderError};

/// Revokes an ExternalSecret's leases before it is deleted.
pub const FINALIZER: &str = "sigil.dev/revoke-leases";
const CONTROLLER: &str = "externalsecret-leases";
const GENERATOR_KIND: &str = "VaultDynamicSecret";
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Whether the ExternalSecret reads a generator (and so is this controller's).
pub fn uses_generator(es: &ExternalSecret) -> bool {
    es.spec.generator_refs().next().is_some()
}

/// Runs the lease controller until shutdown.
pub async fn run(ctx: Arc<Context>, providers: Arc<ClientCache>, hmac: DataHmac) {
    let externals: Api<ExternalSecret> = ctx.watched();
    let secrets: Api<PartialObjectMeta<Secret>> = ctx.watched();
    // A deleted or edited target Secret wakes its ExternalSecret (new credentials).
    let controller = Controller::new(externals, watcher::Config::default()).watches(
        secrets,
        watcher::Config::default().labels(&target::managed_selector()),
        |secret| {
            let namespace = secret.namespace()?;
            let owner = secret.annotations().get(OWNER_ANNOTATION)?;
            Some(ObjectRef::<ExternalSecret>::new(owner).within(&namespace))
        },
    );
    let state = Arc::new(State {
        ctx: ctx.clone(),
        hmac,
        failures: Failures::new(FIRST_BACKOFF, MAX_BACKOFF),
        active: active::ActiveLeases::new(providers.calls().clone()),
        providers,
    });
    runner::run_retrying_soon(&ctx, CONTROLLER, controller, reconcile, state).await;
}

struct State {
    ctx: Arc<Context>,
    hmac: DataHmac,
    providers: Arc<ClientCache>,
    failures: Failures<ObjectRef<ExternalSecret>>,
    active: active::ActiveLeases,
}

/// Why a reconcile did not reach a Secret in sync.
struct Failure {
    verdict: Verdict,
    /// Retrying without a change may help.
    retry: bool,
}

impl Failure {
    fn retry(reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::failed(reason, message),
            retry: true,
        }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::failed(status::INVALID_SPEC, message),
            retry: false,
        }
    }
}

/// Leases that could not be revoked (deletion waits for them).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Unrevoked(String);

/// A generator's client and names.
struct Source {
    generator: VaultDynamicSecret,
    /// `VaultDynamicSecret/NAME`, as leases record it.
    label: String,
    provider: Arc<dyn Provider>,
}

impl Source {
    fn client(&self) -> Result<&dyn Generator, Failure> {
        self.provider.generator().ok_or_else(|| {
            Failure::invalid(format!("{}: its provider issues no leases", self.label))
        })
    }

    /// `rotateBefore`, resolved against a lease's first duration.
    fn lead(&self, lease: &LeaseStatus) -> Duration {
        let configured = self
            .generator
            .spec
            .rotate_before
            .as_deref()
            .and_then(|text| duration::parse(text).ok());
        schedule::rotation_lead(configured, lease::duration(lease))
    }
}

fn label_of(name: &str) -> String {
    format!("{GENERATOR_KIND}/{name}")
}

fn store_key(namespace: &str, name: &str) -> StoreKey {
    StoreKey::generator(GENERATOR_KIND, namespace, name)
}

async fn reconcile(es: Arc<ExternalSecret>, state: Arc<State>) -> Result<Action, StatusError> {
    let ctx = &state.ctx;
    let holds = es.finalizers().iter().any(|f| f == FINALIZER);
    if !ctx.owns(es.as_ref()) || (!uses_generator(&es) && !holds) {
        return Ok(Action::await_change());
    }
    let started = Instant::now();
    let namespace = es.namespace().unwrap_or_default();
    let api: Api<ExternalSecret> = Api::namespaced(ctx.client.clone(), &namespace);
    let reference = ObjectRef::from_obj(es.as_ref());
    // The status names the leases held: read it fresh, never from a watch cache
    // that may not show the lease the last reconcile recorded.
    let es = match api.get_opt(&es.name_any()).await {
        Ok(Some(fresh)) => Arc::new(fresh),
        Ok(None) => return Ok(Action::await_change()),
        Err(source) => {
            return Err(StatusError {
                object: format!("ExternalSecret {namespace}/{}", es.name_any()),
                source,
            });
        }
    };
    let result = finalizer::finalizer(&api, FINALIZER, es.clone(), |event| async {
        match event {
            FinalizerEvent::Apply(es) => Ok(state.apply(&es).await),
            FinalizerEvent::Cleanup(es) => state.revoke_all(&es).await.map(|()| {
                state.track(&es, None);
                state.failures.succeeded(&reference);
                Action::await_change()
            }),
        }
    })
    .await;
    let (action, reason) = match result {
        Ok(action) => (Ok(action), None),
        Err(finalizer::Error::CleanupFailed(error)) => {
            tracing::warn!(controller = CONTROLLER, es = %reference, %error, "leases not revoked yet");
            (
                Ok(Action::requeue(state.failures.retry_after(&reference))),
                Some("RevokeFailed"),
            )
        }
        Err(finalizer::Error::AddFinalizer(source) | finalizer::Error::RemoveFinalizer(source)) => {
            (
                Err(StatusError {
                    object: format!("ExternalSecret {namespace}/{}", es.name_any()),
                    source,
                }),
                Some("FinalizerFailed"),
            )
        }
        Err(other) => {
            tracing::warn!(controller = CONTROLLER, es = %reference, error = %other, "reconcile failed");
            (Ok(Action::requeue(MAX_BACKOFF)), Some("Failed"))
        }
    };
    ctx.metrics
        .reconciled(CONTROLLER, started.elapsed(), reason);
    action
}

impl State {
    /// Keeps the ExternalSecret's lease; returns when to look again.
    async fn apply(&self, es: &ExternalSecret) -> Action {
        let reference = ObjectRef::from_obj(es);
        if !uses_generator(es) {
            // No longer reading a generator: the store loop writes the Secret now.
            return match self.revoke_all(es).await {
                Ok(()) => {
                    self.track(es, None);
                    self.clear_leases(es).await;
                    Action::await_change()
                }
                Err(error) => {
                    tracing::warn!(controller = CONTROLLER, es = %reference, %error, "leases not revoked yet");
                    Action::requeue(self.failures.retry_after(&reference))
                }
            };
        }
        match self.sync(es).await {
            Ok(wait) => {
                self.failures.succeeded(&reference);
                wait.map_or_else(Action::await_change, Action::requeue)
            }
            Err(failure) => {
                status::publish(&self.ctx, es, &failure.verdict, Duration::ZERO).await;
                if failure.retry {
                    Action::requeue(self.failures.retry_after(&reference))
                } else {
                    Action::await_change()
                }
            }
        }
    }

    /// The generator `name` of the ExternalSecret's namespace and its client.
    async fn source(&self, es: &ExternalSecret, name: &str) -> Result<Source, Failure> {
        let namespace = es.namespace().unwrap_or_default();
        let label = label_of(name);
        let api: Api<VaultDynamicSecret> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let generator = api
            .get_opt(name)
            .await
            .map_err(|e| {
                Failure::retry(status::SECRET_SYNC_ERROR, format!("reading {label}: {e}"))
            })?
            .ok_or_else(|| {
                Failure::retry(
                    status::GENERATOR_NOT_FOUND,
                    format!("{label} not found in namespace {namespace}"),
                )
            })?;
        let spec = ProviderSpec {
            aws: None,
            vault: Some(generator.spec.provider.clone()),
        };
        let key = store_key(&namespace, name);
        let provider = self
            .providers
            .provider(&self.ctx.client, &key, &spec, false)
            .await
            .map_err(|e| {
                let reason = match &e {
                    ProviderError::Config(_) | ProviderError::Auth(_) => status::STORE_NOT_READY,
                    _ => status::SECRET_SYNC_ERROR,
                };
                Failure::retry(reason, format!("{key}: {e}"))
            })?;
        Ok(Source {
            generator,
            label,
            provider,
        })
    }

    async fn sync(&self, es: &ExternalSecret) -> Result<Option<Duration>, Failure> {
        desired::validate_generated(&es.spec).map_err(|e| match e {
            BuildError::Invalid(message) => Failure::invalid(message),
            other => Failure::invalid(format!("{other:?}")),
        })?;
        let Some(reference) = es.spec.generator_refs().next() else {
            return Err(Failure::invalid("spec.dataFrom: no generatorRef"));
        };
        let source = self.source(es, &reference.name).await?;
        if let Some(text) = &source.generator.spec.rotate_before
            && let Err(e) = duration::parse(text)
        {
            return Err(Failure::invalid(format!(
                "{}: spec.rotateBefore: {e}",
                source.label
            )));
        }
        let status = es.status.clone().unwrap_or_default();
        let name = target::target_name(es);
        let mut live = target::get(&self.ctx.client, es).await.map_err(|e| {
            Failure::retry(
                status::SECRET_SYNC_ERROR,
                format!("reading Secret {name}: {e}"),
            )
        })?;
        let owner = target::ownership(
            live.as_ref(),
            &es.name_any(),
            es.spec.target.creation_policy,
        );
        let serves = status
            .lease
            .as_ref()
            .filter(|lease| serves(lease, es, live.as_ref(), &source.label, Timestamp::now()))
            .cloned();
        if let Some(live) = live.as_mut() {
            manifest::wipe_secret(live);
        }
        match owner {
            Ownership::Foreign(message) => {
                return Err(Failure::retry(status::SECRET_CONFLICT, message));
            }
            Ownership::Absent if es.spec.target.creation_policy == CreationPolicy::Merge => {
                return Err(Failure::retry(
                    status::SECRET_SYNC_ERROR,
                    format!("creationPolicy Merge: Secret {name} does not exist"),
                ));
            }
            Ownership::Absent | Ownership::Ours => {}
        }
        let Some(current) = serves else {
            // First credentials, or the Secret no longer holds the lease's.
            return self.issue(es, &source, live.is_none()).await;
        };
        let mut revoked;
        let es = if status.retiring_leases.is_empty() {
            es
        } else {
            // Replaced before a restart and not revoked yet.
            let left = self
                .retire(es, &source, status.retiring_leases.clone())
                .await;
            revoked = es.clone();
            revoked.status = Some(ExternalSecretStatus {
                retiring_leases: left,
                ..status.clone()
            });
            if let Some(now) = &revoked.status
                && let Err(error) =
                    patch_status(&self.ctx.client, es, &status::clearing_leases(now)).await
            {
                tracing::warn!(%error, "cannot write status");
            }
            &revoked
        };
        if !lease::is_scheduled(&current) {
            self.track(es, None);
            return Ok(None);
        }
        self.track(es, Some(&source));
        let lead = source.lead(&current);
        let now = Timestamp::now();
        match schedule::next(&lease::clock(&current), lead) {
            schedule::Next::Renew(at) if at <= now => self.renew(es, &source, &current, lead).await,
            schedule::Next::Rotate(at) if at <= now => self.issue(es, &source, false).await,
            next => Ok(Some(schedule::wait_until(now, next.at()))),
        }
    }

    async fn renew(
        &self,
        es: &ExternalSecret,
        source: &Source,
        current: &LeaseStatus,
        lead: Duration,
    ) -> Result<Option<Duration>, Failure> {
        let asked = schedule::renewal_increment(lease::duration(current), lead);
        let now = Timestamp::now();
        let answer = match source.client()?.renew(&current.id, asked).await {
            Ok(answer) => answer,
            Err(error) if lease_is_gone(&error) => {
                tracing::info!(es = %ObjectRef::from_obj(es), "lease gone in Vault; issuing new credentials");
                return self.issue(es, source, false).await;
            }
            Err(error) => {
                return Err(Failure::retry(
                    status::SECRET_SYNC_ERROR,
                    format!("{}: renewing the lease: {error}", source.label),
                ));
            }
        };
        let renewed = lease::renewed(current, now, asked, answer);
        let verdict = Verdict::ready(
            status::SECRET_SYNCED,
            format!("Secret {} is in sync", target::target_name(es)),
        );
        let next = schedule::next(&lease::clock(&renewed), lead);
        let kept = renewed.clone();
        status::publish_with(&self.ctx, es, &verdict, Duration::ZERO, move |status| {
            status.lease = Some(kept);
        })
        .await;
        Ok(Some(schedule::wait_until(Timestamp::now(), next.at())))
    }

    /// Issues new credentials, records their lease, writes the Secret, then
    /// revokes the lease they replace.
    async fn issue(
        &self,
        es: &ExternalSecret,
        source: &Source,
        creating: bool,
    ) -> Result<Option<Duration>, Failure> {
        let spec = &source.generator.spec;
        let request = GenerateRequest {
            path: spec.path.clone(),
            method: spec.method,
            parameters: spec.parameters.clone(),
            result: spec.result_type,
        };
        let issued = source.client()?.issue(&request).await.map_err(|e| {
            Failure::retry(status::SECRET_SYNC_ERROR, format!("{}: {e}", source.label))
        })?;
        let now = Timestamp::now();
        let desired = match desired::from_generated(&es.spec, &issued.data, &source.label) {
            Ok(desired) => desired,
            Err(error) => {
                if let Some(grant) = &issued.lease {
                    self.revoke_quietly(source, &grant.id).await;
                }
                return Err(match error {
                    BuildError::Invalid(message) => Failure::invalid(message),
                    BuildError::Failed { message, .. } | BuildError::AllMissing(message) => {
                        Failure::retry(status::SECRET_SYNC_ERROR, message)
                    }
                });
            }
        };
        drop(issued.data);
        let fingerprint = self.hmac.of(desired.data.iter());
        let new_lease = lease::issued(
            &source.label,
            issued.lease.as_ref(),
            now,
            fingerprint.clone(),
            es.meta().generation.unwrap_or_default(),
        );
        let old = es.status.clone().unwrap_or_default();
        let mut retiring = old.retiring_leases.clone();
        if let Some(previous) = old.lease.as_ref().filter(|l| !l.id.is_empty()) {
            retiring.push(RetiringLease {
                generator: previous.generator.clone(),
                id: previous.id.clone(),
            });
        }
        // Recorded before the credentials reach the Secret: no restart can lose the lease.
        let recorded = ExternalSecretStatus {
            lease: Some(new_lease.clone()),
            retiring_leases: retiring.clone(),
            ..old.clone()
        };
        if let Err(error) =
            patch_status(&self.ctx.client, es, &status::clearing_leases(&recorded)).await
        {
            self.revoke_quietly(source, &new_lease.id).await;
            return Err(Failure::retry(
                status::SECRET_SYNC_ERROR,
                format!("recording the new lease: {error}"),
            ));
        }
        let name = target::target_name(es);
        let written = target::apply(&self.ctx.client, es, Some(&desired), &fingerprint).await;
        drop(desired);
        let resource_version = match written {
            Ok(rv) => rv,
            Err(error) => {
                // The credentials reached no one: revoke them, keep the old lease.
                self.revoke_quietly(source, &new_lease.id).await;
                if let Err(e) =
                    patch_status(&self.ctx.client, es, &status::clearing_leases(&old)).await
                {
                    tracing::warn!(error = %e, "cannot write status");
                }
                return Err(Failure::retry(
                    status::SECRET_SYNC_ERROR,
                    format!("writing Secret {name}: {error}"),
                ));
            }
        };
        if !creating {
            let namespace = es.namespace().unwrap_or_default();
            self.ctx
                .reloader
                .secret_changed(&namespace, &name, &fingerprint);
        }
        let still_retiring = self.retire(es, source, retiring).await;
        let (kind, note) = if creating {
            (Written::Created, format!("Secret {name} created"))
        } else {
            (
                Written::Updated,
                format!(
                    "Secret {name} updated with new credentials from {}",
                    source.label
                ),
            )
        };
        let mut verdict =
            Verdict::ready(status::SECRET_SYNCED, format!("Secret {name} is in sync"));
        verdict.synced_resource_version = resource_version;
        verdict.written = Some((kind, note));
        let wait = lease::is_scheduled(&new_lease).then(|| {
            let next = schedule::next(&lease::clock(&new_lease), source.lead(&new_lease));
            schedule::wait_until(Timestamp::now(), next.at())
        });
        self.track(es, lease::is_scheduled(&new_lease).then_some(source));
        status::publish_with(&self.ctx, es, &verdict, Duration::ZERO, move |status| {
            status.lease = Some(new_lease);
            status.retiring_leases = still_retiring;
        })
        .await;
        Ok(wait)
    }

    /// Revokes `leases`; returns those Vault did not confirm (tried again next time).
    async fn retire(
        &self,
        es: &ExternalSecret,
        source: &Source,
        leases: Vec<RetiringLease>,
    ) -> Vec<RetiringLease> {
        let mut left = Vec::new();
        for lease in leases {
            let result = if lease.generator == source.label {
                self.revoke(source, &lease.id).await
            } else {
                self.revoke_elsewhere(es, &lease).await
            };
            if let Err(error) = result {
                tracing::warn!(es = %ObjectRef::from_obj(es), lease = %lease.id, %error, "lease not revoked yet");
                left.push(lease);
            }
        }
        left
    }

    async fn revoke(&self, source: &Source, id: &str) -> Result<(), String> {
        source
            .client()
            .map_err(|f| f.verdict.message)?
            .revoke(id)
            .await
            .map_err(|e| format!("{}: revoking a lease: {e}", source.label))
    }

    /// Revokes a lease of another generator than the one in use now. A
    /// generator that no longer exists cannot revoke: its lease expires at its TTL.
    async fn revoke_elsewhere(
        &self,
        es: &ExternalSecret,
        lease: &RetiringLease,
    ) -> Result<(), String> {
        let name = lease
            .generator
            .strip_prefix(&format!("{GENERATOR_KIND}/"))
            .unwrap_or(&lease.generator);
        match self.source(es, name).await {
            Ok(other) => self.revoke(&other, &lease.id).await,
            Err(failure) if failure.verdict.reason == status::GENERATOR_NOT_FOUND => {
                tracing::warn!(
                    es = %ObjectRef::from_obj(es),
                    lease = %lease.id,
                    generator = %lease.generator,
                    "generator gone: the lease ends at its TTL"
                );
                Ok(())
            }
            Err(failure) => Err(failure.verdict.message),
        }
    }

    async fn revoke_quietly(&self, source: &Source, id: &str) {
        if id.is_empty() {
            return;
        }
        if let Err(error) = self.revoke(source, id).await {
            tracing::warn!(lease = %id, %error, "cannot revoke unused credentials; they end at their TTL");
        }
    }

    /// Revokes every lease the status names (deletion, or the generator removed from the spec).
    async fn revoke_all(&self, es: &ExternalSecret) -> Result<(), Unrevoked> {
        let status = es.status.clone().unwrap_or_default();
        let mut leases = status.retiring_leases;
        if let Some(current) = status.lease.filter(|l| !l.id.is_empty()) {
            leases.push(RetiringLease {
                generator: current.generator,
                id: current.id,
            });
        }
        let mut failed = Vec::new();
        for lease in &leases {
            if let Err(error) = self.revoke_elsewhere(es, lease).await {
                failed.push(error);
            }
        }
        if failed.is_empty() {
            Ok(())
        } else {
            Err(Unrevoked(failed.join("; ")))
        }
    }

    async fn clear_leases(&self, es: &ExternalSecret) {
        let Some(status) = es.status.as_ref() else {
            return;
        };
        if status.lease.is_none() && status.retiring_leases.is_empty() {
            return;
        }
        let cleared = ExternalSecretStatus {
            lease: None,
            retiring_leases: Vec::new(),
            ..status.clone()
        };
        if let Err(error) =
            patch_status(&self.ctx.client, es, &status::clearing_leases(&cleared)).await
        {
            tracing::warn!(%error, "cannot write status");
        }
    }

    /// Notes whether the ExternalSecret holds a lease of `source` now (the gauge).
    fn track(&self, es: &ExternalSecret, source: Option<&Source>) {
        let namespace = es.namespace().unwrap_or_default();
        let store = source.map(|s| store_key(&namespace, &s.generator.name_any()).to_string());
        self.active.set(ObjectRef::from_obj(es), store);
    }
}

/// Whether `lease` still backs the Secret: issued by `generator` for this
/// generation, not expired, and the Secret holds what was written from it.
fn serves(
    lease: &LeaseStatus,
    es: &ExternalSecret,
    live: Option<&Secret>,
    generator: &str,
    now: Timestamp,
) -> bool {
    let expired = lease::is_scheduled(lease) && lease.expire_time.0 <= now;
    lease.generator == generator
        && Some(lease.generation) == es.meta().generation
        && !expired
        && live.is_some_and(|secret| {
            let annotations = secret.annotations();
            annotations.get(target::HMAC_ANNOTATION) == Some(&lease.data_hmac)
                && annotations.get(OWNER_ANNOTATION) == Some(&es.name_any())
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::external_secret::{
        DataFromSourceRef, ExternalSecretDataFrom, ExternalSecretSpec, GeneratorRef,
    };
    use crate::providers::generator::LeaseGrant;
    use kube::api::ObjectMeta;

    fn es() -> ExternalSecret {
        let mut es = ExternalSecret::new(
            "db",
            ExternalSecretSpec {
                data_from: vec![ExternalSecretDataFrom {
                    source_ref: Some(DataFromSourceRef {
                        generator_ref: Some(GeneratorRef {
                            api_version: "sigil.dev/v1alpha1".into(),
                            kind: GENERATOR_KIND.into(),
                            name: "pg".into(),
                        }),
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
        );
        es.metadata.namespace = Some("app".into());
        es.metadata.generation = Some(1);
        es
    }

    fn secret(hmac: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                annotations: Some(
                    [
                        (target::HMAC_ANNOTATION.to_string(), hmac.to_string()),
                        (OWNER_ANNOTATION.to_string(), "db".to_string()),
                    ]
                    .into(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn a_lease_serves_only_while_its_secret_and_generation_hold() {
        let es = es();
        assert!(uses_generator(&es));
        let now = Timestamp::now();
        let grant = LeaseGrant {
            id: "database/creds/app/x".into(),
            duration: Duration::from_secs(60),
            renewable: true,
        };
        let lease = lease::issued("VaultDynamicSecret/pg", Some(&grant), now, "h1".into(), 1);
        assert!(serves(
            &lease,
            &es,
            Some(&secret("h1")),
            "VaultDynamicSecret/pg",
            now
        ));
        assert!(
            !serves(&lease, &es, None, "VaultDynamicSecret/pg", now),
            "Secret deleted"
        );
        assert!(
            !serves(
                &lease,
                &es,
                Some(&secret("h2")),
                "VaultDynamicSecret/pg",
                now
            ),
            "Secret edited"
        );
        assert!(
            !serves(
                &lease,
                &es,
                Some(&secret("h1")),
                "VaultDynamicSecret/other",
                now
            ),
            "generator changed"
        );
        let mut changed = es.clone();
        changed.metadata.generation = Some(2);
        assert!(!serves(
            &lease,
            &changed,
            Some(&secret("h1")),
            "VaultDynamicSecret/pg",
            now
        ));
        let later = now + jiff::SignedDuration::from_secs(61);
        assert!(
            !serves(
                &lease,
                &es,
                Some(&secret("h1")),
                "VaultDynamicSecret/pg",
                later
            ),
            "expired"
        );
    }
}
