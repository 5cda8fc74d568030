//! The SealedSecret controller: opens every value with the keyring and writes
//! the Secret of the same name with server-side apply.
//!
//! * It writes only when the live Secret differs from the desired one, and never
//!   touches a Secret it does not own unless that Secret is annotated
//!   `sigil.dev/managed: "true"`.
//! * Any failure leaves the live Secret as it is; the `Ready` condition says why
//!   and the object is retried with capped exponential backoff.
//! * Status is patched, and one Event published, only when something changed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, watcher};
use kube::{Api, Resource, ResourceExt};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use secrecy::ExposeSecret;

mod in_sync;

use in_sync::InSync;

use super::backoff::Failures;
use super::sealing_keys::KeyringHandle;
use super::status::{StatusError, patch_status, publish};
use super::{Context, runner};
use crate::api::conditions::{self, ConditionUpdate, READY};
use crate::api::sealed_secret::{SealedSecret, SealedSecretStatus};
use crate::crypto::keyring::Keyring;
use crate::crypto::manifest;
use crate::crypto::sealed_data::{self, UnsealedData, is_valid_data_key};

/// Name of this controller in metrics and logs.
pub const CONTROLLER: &str = "sealedsecret";
/// A Secret carrying this annotation with value `"true"` may be taken over.
pub const MANAGED_ANNOTATION: &str = "sigil.dev/managed";

/// `Ready` reasons.
pub mod reason {
    pub const UNSEALED: &str = "Unsealed";
    pub const DECRYPT_FAILED: &str = "DecryptFailed";
    pub const SCOPE_MISMATCH: &str = "ScopeMismatch";
    pub const SECRET_EXISTS: &str = "SecretExists";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const APPLY_FAILED: &str = "ApplyFailed";
    pub const NO_SEALING_KEY: &str = "NoSealingKey";
}

/// How often a healthy object is checked again without any event.
const RESYNC: Duration = Duration::from_secs(3600);
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Why a SealedSecret's Secret was not written. The message never holds a value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Failure {
    reason: &'static str,
    message: String,
}

/// What a successful sync did.
struct Synced {
    fingerprint: Option<String>,
    wrote: bool,
    /// The keyring the values were opened with.
    keyring: Arc<Keyring>,
    /// The resourceVersion of the Secret now in sync.
    secret_version: Option<String>,
}

struct State {
    ctx: Arc<Context>,
    keys: KeyringHandle,
    store: Store<SealedSecret>,
    failures: Failures<ObjectRef<SealedSecret>>,
    in_sync: Arc<InSync>,
}

/// Past this many failing objects, entries of deleted objects are dropped.
const FAILURES_PRUNE_AT: usize = 1024;

impl State {
    /// The next retry delay for a failing object: 1s, 2s, 4s … capped, forever.
    fn backoff(&self, object: &ObjectRef<SealedSecret>) -> Duration {
        self.failures.prune(FAILURES_PRUNE_AT, |reference| {
            self.store.get(reference).is_some()
        });
        self.failures.retry_after(object)
    }

    fn succeeded(&self, object: &ObjectRef<SealedSecret>) {
        self.failures.succeeded(object);
        self.in_sync
            .prune(|reference| self.store.get(reference).is_some());
    }
}

/// Runs the controller until shutdown. Starts once the keyring was loaded.
pub async fn run(ctx: Arc<Context>, keys: KeyringHandle) {
    tokio::select! {
        () = ctx.shutdown.cancelled() => return,
        loaded = keys.loaded() => if loaded.is_none() { return },
    }
    let sealed: Api<SealedSecret> = ctx.watched();
    let secrets: Api<PartialObjectMeta<Secret>> = ctx.watched();
    let in_sync = Arc::new(InSync::default());
    let written = in_sync.clone();
    // Every Secret event (metadata only) wakes the SealedSecret of the same name:
    // the Secrets it owns (drift, deletion), and also foreign ones that block it
    // (`SecretExists`) being deleted or annotated `sigil.dev/managed` — but not the
    // event of the write that brought it in sync.
    let controller = Controller::new(sealed, watcher::Config::default()).watches(
        secrets,
        watcher::Config::default(),
        move |secret| {
            let namespace = secret.namespace()?;
            let owner = ObjectRef::<SealedSecret>::new(&secret.name_any()).within(&namespace);
            written
                .secret_changed(&owner, secret.resource_version().as_deref())
                .then_some(owner)
        },
    );
    let store = controller.store();
    ctx.metrics.register(|registry| {
        registry.register_collector(Box::new(ByKey {
            store: store.clone(),
            shard: ctx.options.shard,
        }));
    });
    let keyring_changes = futures::stream::unfold(keys.subscribe(), |mut receiver| async move {
        receiver.changed().await.ok()?;
        Some(((), receiver))
    });
    let state = Arc::new(State {
        ctx: ctx.clone(),
        keys,
        store,
        failures: Failures::new(BACKOFF_BASE, BACKOFF_CAP),
        in_sync,
    });
    let controller = controller.reconcile_all_on(keyring_changes);
    runner::run(&ctx, CONTROLLER, controller, reconcile, error_policy, state).await;
}

fn error_policy(object: Arc<SealedSecret>, error: &StatusError, state: Arc<State>) -> Action {
    tracing::warn!(controller = CONTROLLER, %error, "reconcile failed");
    Action::requeue(state.backoff(&ObjectRef::from_obj(object.as_ref())))
}

async fn reconcile(object: Arc<SealedSecret>, state: Arc<State>) -> Result<Action, StatusError> {
    let ctx = &state.ctx;
    if !ctx.owns(object.as_ref()) || object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let reference = ObjectRef::from_obj(object.as_ref());
    // The event of our own status patch or Secret write: nothing changed since the last check.
    let generation = object.metadata.generation;
    if let Some(keyring) = state.keys.current()
        && state
            .in_sync
            .holds(&reference, generation, &keyring, RESYNC / 2)
    {
        return Ok(Action::requeue(RESYNC));
    }
    let started = Instant::now();
    let ticket = state.in_sync.ticket();
    let outcome = sync(&object, &state).await;
    let result = record(&object, &outcome, ctx).await;
    match (&outcome, &result) {
        (Ok(synced), Ok(())) => state.in_sync.record(
            ticket,
            &reference,
            generation,
            &synced.keyring,
            synced.secret_version.clone(),
        ),
        _ => state.in_sync.forget(&reference),
    }
    let error_reason = match (&outcome, &result) {
        (Err(failure), _) => Some(failure.reason),
        (Ok(_), Err(_)) => Some("StatusFailed"),
        (Ok(_), Ok(())) => None,
    };
    ctx.metrics
        .reconciled(CONTROLLER, started.elapsed(), error_reason);
    result?;
    match outcome {
        Ok(synced) => {
            state.succeeded(&reference);
            if synced.wrote {
                tracing::info!(
                    controller = CONTROLLER,
                    namespace = object.namespace().unwrap_or_default(),
                    name = object.name_any(),
                    key = synced.fingerprint.as_deref().unwrap_or_default(),
                    "Secret written"
                );
            }
            Ok(Action::requeue(RESYNC))
        }
        Err(failure) => {
            let delay = state.backoff(&reference);
            tracing::info!(
                controller = CONTROLLER,
                namespace = object.namespace().unwrap_or_default(),
                name = object.name_any(),
                reason = failure.reason,
                message = %failure.message,
                retry_in = ?delay,
                "not unsealed"
            );
            Ok(Action::requeue(delay))
        }
    }
}

/// Opens the values and brings the Secret in line; the Secret is untouched on any failure.
async fn sync(object: &SealedSecret, state: &State) -> Result<Synced, Failure> {
    let ctx = &state.ctx;
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    for key in object.spec.encrypted_data.keys() {
        if !is_valid_data_key(key) {
            return Err(Failure {
                reason: reason::INVALID_SPEC,
                message: format!(
                    "spec.encryptedData.{key}: invalid key (allowed: letters, digits, '-', '_', '.')"
                ),
            });
        }
    }
    let keyring = state
        .keys
        .current()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| Failure {
            reason: reason::NO_SEALING_KEY,
            message: "no sealing key loaded yet".into(),
        })?;
    let opened = sealed_data::open_all(&object.spec.encrypted_data, &keyring, &namespace, &name)
        .map_err(|e| Failure {
            reason: if e.error.reason() == reason::SCOPE_MISMATCH {
                reason::SCOPE_MISMATCH
            } else {
                reason::DECRYPT_FAILED
            },
            message: e.to_string(),
        })?;
    crate::secret_size::check(
        "spec.encryptedData",
        opened
            .data
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose_secret().len())),
    )
    .map_err(|e| Failure {
        reason: reason::INVALID_SPEC,
        message: e.to_string(),
    })?;
    let fingerprint = opened.oldest_key().map(str::to_string);

    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let live = api.get_opt(&name).await.map_err(|e| Failure {
        reason: reason::APPLY_FAILED,
        message: format!("cannot read Secret {namespace}/{name}: {e}"),
    })?;
    let mut desired = desired_secret(object, &opened);
    // The live data's fingerprint, so that a write replacing it can roll the workloads using it.
    let mut replaced_fingerprint = None;
    let mut secret_version = live
        .as_ref()
        .and_then(|l| l.metadata.resource_version.clone());
    let wrote = match live {
        Some(mut live) => {
            let decision = decide(object, &live, &desired, &opened);
            if matches!(decision, Decision::Apply | Decision::Recreate) {
                let live_data = live.data.iter().flatten().map(|(k, v)| (k, v.0.as_slice()));
                replaced_fingerprint = Some(ctx.reloader.fingerprint(live_data));
            }
            manifest::wipe_secret(&mut live);
            match decision {
                Decision::NotOurs => {
                    manifest::wipe_secret_manifest(&mut desired);
                    return Err(Failure {
                        reason: reason::SECRET_EXISTS,
                        message: format!(
                            "Secret {namespace}/{name} exists and is not managed by this SealedSecret; annotate it {MANAGED_ANNOTATION}=\"true\" to let sigil take it over"
                        ),
                    });
                }
                Decision::InSync => false,
                Decision::Apply => true,
                Decision::Recreate => {
                    recreate_first(&api, &live).await.map_err(|e| Failure {
                        reason: reason::APPLY_FAILED,
                        message: format!(
                            "cannot replace Secret {namespace}/{name} (its type or immutability changes): {e}"
                        ),
                    })?;
                    true
                }
            }
        }
        None => true,
    };
    let applied = if wrote {
        apply(&api, &name, &desired).await.map(Some)
    } else {
        Ok(None)
    };
    manifest::wipe_secret_manifest(&mut desired);
    if let Some(version) = applied.map_err(|e| Failure {
        reason: reason::APPLY_FAILED,
        message: format!("cannot apply Secret {namespace}/{name}: {e}"),
    })? {
        secret_version = version;
    }
    if let Some(before) = replaced_fingerprint {
        let after = ctx
            .reloader
            .fingerprint(opened.data.iter().map(|(k, v)| (k, v.expose_secret())));
        if after != before {
            ctx.reloader.secret_changed(&namespace, &name, &after);
        }
    }
    Ok(Synced {
        fingerprint,
        wrote,
        keyring,
        secret_version,
    })
}

/// Deletes the live Secret (only that exact version of it) so it can be created
/// again: its `type` cannot change, nor anything of an immutable Secret.
async fn recreate_first(api: &Api<Secret>, live: &Secret) -> Result<(), kube::Error> {
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.metadata.uid.clone(),
            resource_version: live.metadata.resource_version.clone(),
        }),
        ..DeleteParams::default()
    };
    match api.delete(&live.name_any(), &params).await {
        Ok(deleted) => {
            if let Some(mut secret) = deleted.left() {
                manifest::wipe_secret(&mut secret);
            }
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Applies the Secret; returns the resourceVersion written.
async fn apply(
    api: &Api<Secret>,
    name: &str,
    desired: &serde_json::Value,
) -> Result<Option<String>, kube::Error> {
    let mut written = api
        .patch(
            name,
            &PatchParams::apply(crate::api::FIELD_MANAGER).force(),
            &Patch::Apply(desired),
        )
        .await?;
    manifest::wipe_secret(&mut written);
    Ok(written.metadata.resource_version)
}

/// The Secret to apply: data, template and the controller ownerReference.
fn desired_secret(object: &SealedSecret, opened: &UnsealedData) -> serde_json::Value {
    let mut secret = manifest::secret_manifest(object, opened);
    if let Some(owner) = owner_reference(object) {
        secret["metadata"]["ownerReferences"] = serde_json::json!([owner]);
    }
    secret
}

fn owner_reference(object: &SealedSecret) -> Option<OwnerReference> {
    let mut owner = object.controller_owner_ref(&())?;
    owner.block_owner_deletion = Some(true);
    Some(owner)
}

enum Decision {
    NotOurs,
    InSync,
    Apply,
    /// Delete, then apply: the type changes, or the Secret is immutable and differs.
    Recreate,
}

/// Whether the live Secret is ours, and whether it already holds what we want.
fn decide(
    object: &SealedSecret,
    live: &Secret,
    desired: &serde_json::Value,
    opened: &UnsealedData,
) -> Decision {
    let owners = live
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default();
    let ours = owners.iter().any(|o| {
        o.controller == Some(true)
            && o.kind == SealedSecret::kind(&())
            && o.api_version.starts_with("sigil.dev/")
            && o.name == object.name_any()
    });
    let adoptable = live
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MANAGED_ANNOTATION))
        .is_some_and(|v| v == "true");
    if !ours && !adoptable {
        return Decision::NotOurs;
    }
    if in_sync(object, live, desired, opened) {
        return Decision::InSync;
    }
    let type_changes = desired["type"].as_str() != Some(live.type_.as_deref().unwrap_or("Opaque"));
    if type_changes || live.immutable == Some(true) {
        Decision::Recreate
    } else {
        Decision::Apply
    }
}

fn in_sync(
    object: &SealedSecret,
    live: &Secret,
    desired: &serde_json::Value,
    opened: &UnsealedData,
) -> bool {
    let uid = object.metadata.uid.as_deref();
    let owned_by_this = live
        .metadata
        .owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|o| o.controller == Some(true) && Some(o.uid.as_str()) == uid);
    if !owned_by_this {
        return false;
    }
    let live_type = live.type_.as_deref().unwrap_or("Opaque");
    if desired["type"].as_str() != Some(live_type) {
        return false;
    }
    if let Some(immutable) = desired["immutable"].as_bool()
        && live.immutable.unwrap_or(false) != immutable
    {
        return false;
    }
    let data_matches = opened.data.iter().all(|(key, value)| {
        live.data
            .as_ref()
            .and_then(|data| data.get(key))
            .is_some_and(|live_value| live_value.0.as_slice() == value.expose_secret())
    });
    if !data_matches {
        return false;
    }
    let contains = |live: Option<&BTreeMap<String, String>>, wanted: &serde_json::Value| {
        wanted.as_object().is_none_or(|wanted| {
            wanted
                .iter()
                .all(|(k, v)| live.and_then(|l| l.get(k)).map(String::as_str) == v.as_str())
        })
    };
    if !contains(
        live.metadata.labels.as_ref(),
        &desired["metadata"]["labels"],
    ) || !contains(
        live.metadata.annotations.as_ref(),
        &desired["metadata"]["annotations"],
    ) {
        return false;
    }
    // Fields sigil applied before but no longer wants must be removed by an apply.
    let owned = applied_fields(live);
    let stale = |set: &BTreeSet<String>, wanted: &serde_json::Value| {
        set.iter().any(|k| wanted.get(k).is_none())
    };
    !(stale(&owned.data, &desired["data"])
        || stale(&owned.labels, &desired["metadata"]["labels"])
        || stale(&owned.annotations, &desired["metadata"]["annotations"]))
}

/// The data, label and annotation keys sigil's last apply owns (from managedFields).
#[derive(Default)]
struct AppliedFields {
    data: BTreeSet<String>,
    labels: BTreeSet<String>,
    annotations: BTreeSet<String>,
}

fn applied_fields(live: &Secret) -> AppliedFields {
    let mut out = AppliedFields::default();
    let entries = live.metadata.managed_fields.as_deref().unwrap_or_default();
    let keys = |value: Option<&serde_json::Value>| -> BTreeSet<String> {
        value
            .and_then(|v| v.as_object())
            .map(|o| {
                o.keys()
                    .filter_map(|k| k.strip_prefix("f:").map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    for entry in entries {
        if entry.manager.as_deref() != Some(crate::api::FIELD_MANAGER)
            || entry.operation.as_deref() != Some("Apply")
        {
            continue;
        }
        let Some(fields) = entry.fields_v1.as_ref().map(|f| &f.0) else {
            continue;
        };
        out.data.extend(keys(fields.get("f:data")));
        out.labels
            .extend(keys(fields.pointer("/f:metadata/f:labels")));
        out.annotations
            .extend(keys(fields.pointer("/f:metadata/f:annotations")));
    }
    out
}

/// Writes the status when it changed, and publishes an Event when the `Ready`
/// condition's status, reason or message changed.
async fn record(
    object: &SealedSecret,
    outcome: &Result<Synced, Failure>,
    ctx: &Context,
) -> Result<(), StatusError> {
    let previous = object.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let generation = object.metadata.generation;
    let update = match outcome {
        Ok(synced) => {
            status.key_fingerprint = synced.fingerprint.clone();
            ConditionUpdate::ready(
                reason::UNSEALED,
                format!(
                    "Secret written from {} sealed values",
                    object.spec.encrypted_data.len()
                ),
            )
        }
        Err(failure) => ConditionUpdate::not_ready(failure.reason, failure.message.clone()),
    };
    let before = conditions::find(&previous.conditions, READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    conditions::set_condition(
        &mut status.conditions,
        update,
        generation,
        conditions::now(),
    );
    status.observed_generation = generation;
    let after = conditions::find(&status.conditions, READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()));
    if status == previous {
        return Ok(());
    }
    patch_status(&ctx.client, object, &status_json(&status)).await?;
    if before != after
        && let Some((status_text, reason, message)) = after
    {
        let event = Event {
            type_: if status_text == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason,
            note: Some(message),
            action: "Unseal".into(),
            secondary: None,
        };
        publish(ctx, event, &object.object_ref(&())).await;
    }
    Ok(())
}

/// The status as a merge patch: absent fields are sent as null so they are cleared.
fn status_json(status: &SealedSecretStatus) -> serde_json::Value {
    serde_json::json!({
        "conditions": status.conditions,
        "observedGeneration": status.observed_generation,
        "keyFingerprint": status.key_fingerprint,
    })
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    key: String,
}

/// `sigil_sealedsecrets{key}`: SealedSecrets per sealing key that opened them,
/// counted from the controller's cache at scrape time.
#[derive(Debug)]
struct ByKey {
    store: Store<SealedSecret>,
    /// Only this process's shard counts, so that the shards' series add up.
    shard: crate::controller::Shard,
}

impl Collector for ByKey {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts: BTreeMap<String, i64> = BTreeMap::new();
        for object in self.store.state() {
            if !self.shard.owns_object(object.as_ref()) {
                continue;
            }
            let key = object
                .status
                .as_ref()
                .and_then(|s| s.key_fingerprint.clone())
                .unwrap_or_else(|| "none".to_string());
            *counts.entry(key).or_default() += 1;
        }
        let family = Family::<KeyLabels, Gauge>::default();
        for (key, count) in counts {
            family.get_or_create(&KeyLabels { key }).set(count);
        }
        let metric = encoder.encode_descriptor(
            "sealedsecrets",
            "SealedSecrets by the fingerprint of the sealing key that opened them (none: not opened)",
            None,
            family.metric_type(),
        )?;
        family.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    use super::*;
    use crate::api::sealed_secret::{SealedSecretSpec, SecretTemplate};
    use crate::crypto::keyring::Keyring;
    use crate::crypto::manifest::binding_for;

    struct Fixture {
        object: SealedSecret,
        keyring: Keyring,
        opened: UnsealedData,
        desired: serde_json::Value,
    }

    fn fixture() -> Fixture {
        let identity = age::x25519::Identity::generate();
        let binding = binding_for(
            crate::api::sealed_secret::Scope::Strict,
            "prod",
            "db",
            "test",
        )
        .expect("valid");
        let value =
            crate::crypto::seal(b"s3cret", &binding, &[identity.to_public()]).expect("seals");
        let mut object = SealedSecret::new(
            "db",
            SealedSecretSpec {
                encrypted_data: BTreeMap::from([("password".to_string(), value)]),
                template: Some(SecretTemplate {
                    type_: None,
                    metadata: Some(crate::api::common::TemplateMetadata {
                        labels: BTreeMap::from([("app".to_string(), "db".to_string())]),
                        annotations: BTreeMap::new(),
                    }),
                    immutable: None,
                }),
                ..SealedSecretSpec::default()
            },
        );
        object.metadata.namespace = Some("prod".into());
        object.metadata.uid = Some("uid-1".into());
        let keyring = Keyring::from_identities(vec![identity], "test");
        let opened = sealed_data::open_all(&object.spec.encrypted_data, &keyring, "prod", "db")
            .expect("opens");
        let desired = desired_secret(&object, &opened);
        Fixture {
            object,
            keyring,
            opened,
            desired,
        }
    }

    /// The Secret as the API server would return it after sigil's apply.
    fn applied(fixture: &Fixture) -> Secret {
        let mut secret: Secret = serde_json::from_value(fixture.desired.clone()).expect("a Secret");
        secret.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some("sigil".into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(serde_json::json!({
                "f:data": {"f:password": {}},
                "f:metadata": {"f:labels": {"f:app": {}}, "f:ownerReferences": {}},
                "f:type": {},
            }))),
            ..ManagedFieldsEntry::default()
        }]);
        secret
    }

    fn decision(fixture: &Fixture, live: &Secret) -> &'static str {
        match decide(&fixture.object, live, &fixture.desired, &fixture.opened) {
            Decision::NotOurs => "not ours",
            Decision::InSync => "in sync",
            Decision::Apply => "apply",
            Decision::Recreate => "recreate",
        }
    }

    #[test]
    fn desired_secret_is_owned_by_the_sealed_secret() {
        let fixture = fixture();
        let owner = &fixture.desired["metadata"]["ownerReferences"][0];
        assert_eq!(owner["kind"], "SealedSecret");
        assert_eq!(owner["uid"], "uid-1");
        assert_eq!(owner["controller"], true);
        assert_eq!(fixture.desired["data"]["password"], "czNjcmV0");
    }

    #[test]
    fn an_applied_secret_is_in_sync() {
        let fixture = fixture();
        assert_eq!(decision(&fixture, &applied(&fixture)), "in sync");
    }

    #[test]
    fn hand_edits_are_reverted() {
        let fixture = fixture();
        let mut edited = applied(&fixture);
        edited.data.as_mut().expect("data").insert(
            "password".into(),
            k8s_openapi::ByteString(b"changed".to_vec()),
        );
        assert_eq!(decision(&fixture, &edited), "apply");
        let mut relabelled = applied(&fixture);
        relabelled.metadata.labels = None;
        assert_eq!(decision(&fixture, &relabelled), "apply");
    }

    #[test]
    fn keys_sigil_no_longer_wants_are_removed() {
        let fixture = fixture();
        let mut stale = applied(&fixture);
        stale
            .data
            .as_mut()
            .expect("data")
            .insert("old".into(), k8s_openapi::ByteString(b"x".to_vec()));
        // A key someone else added is left alone...
        assert_eq!(decision(&fixture, &stale), "in sync");
        // ...but one sigil applied before is removed.
        if let Some(entry) = stale
            .metadata
            .managed_fields
            .as_mut()
            .and_then(|m| m.first_mut())
        {
            entry.fields_v1 = Some(FieldsV1(
                serde_json::json!({"f:data": {"f:password": {}, "f:old": {}}}),
            ));
        }
        assert_eq!(decision(&fixture, &stale), "apply");
    }

    #[test]
    fn foreign_secrets_are_never_taken_unless_annotated() {
        let fixture = fixture();
        let mut foreign = applied(&fixture);
        foreign.metadata.owner_references = None;
        assert_eq!(decision(&fixture, &foreign), "not ours");
        foreign.metadata.annotations = Some(BTreeMap::from([(
            MANAGED_ANNOTATION.to_string(),
            "true".to_string(),
        )]));
        assert_eq!(decision(&fixture, &foreign), "apply");
        foreign.type_ = Some("kubernetes.io/tls".into());
        assert_eq!(decision(&fixture, &foreign), "recreate");
    }

    #[test]
    fn an_immutable_secret_that_differs_is_recreated() {
        let fixture = fixture();
        let mut immutable = applied(&fixture);
        immutable.immutable = Some(true);
        assert_eq!(decision(&fixture, &immutable), "in sync");
        immutable
            .data
            .as_mut()
            .expect("data")
            .insert("password".into(), k8s_openapi::ByteString(b"old".to_vec()));
        assert_eq!(decision(&fixture, &immutable), "recreate");
    }

    #[test]
    fn a_secret_of_a_previous_incarnation_is_adopted() {
        let fixture = fixture();
        let mut previous = applied(&fixture);
        if let Some(owner) = previous
            .metadata
            .owner_references
            .as_mut()
            .and_then(|o| o.first_mut())
        {
            owner.uid = "uid-0".into();
        }
        assert_eq!(decision(&fixture, &previous), "apply");
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_never_stops() {
        let failures: Failures<&str> = Failures::new(BACKOFF_BASE, BACKOFF_CAP);
        assert_eq!(failures.delay(1), Duration::from_secs(1));
        assert_eq!(failures.delay(2), Duration::from_secs(2));
        assert_eq!(failures.delay(6), Duration::from_secs(32));
        assert_eq!(failures.delay(10), BACKOFF_CAP);
        assert_eq!(failures.delay(u32::MAX), BACKOFF_CAP);
    }

    mod mocked_api {
        use http::Method;
        use serde_json::json;

        use super::*;
        use crate::controller::test_api::{self, Started};

        const SECRET: &str = "/api/v1/namespaces/prod/secrets/db";
        const STATUS: &str = "/apis/sigil.dev/v1alpha1/namespaces/prod/sealedsecrets/db/status";
        const WRITTEN_VERSION: &str = "5";

        /// What outlives one reconcile: the loaded keyring and the in-sync record.
        struct Shared {
            keys: KeyringHandle,
            in_sync: Arc<InSync>,
        }

        impl Shared {
            fn new(fixture: &Fixture) -> Self {
                let keys = KeyringHandle::default();
                keys.publish(fixture.keyring.clone());
                Self {
                    keys,
                    in_sync: Arc::default(),
                }
            }
        }

        /// Reconciles `object` on a mocked API, with the fixture's sealing key loaded.
        fn start(fixture: &Fixture, object: &SealedSecret) -> Started<Result<Action, StatusError>> {
            start_shared(&Shared::new(fixture), object)
        }

        fn start_shared(
            shared: &Shared,
            object: &SealedSecret,
        ) -> Started<Result<Action, StatusError>> {
            let object = Arc::new(object.clone());
            let keys = shared.keys.clone();
            let in_sync = shared.in_sync.clone();
            test_api::spawn(|ctx| {
                let (store, _) = kube::runtime::reflector::store();
                let failures = Failures::new(BACKOFF_BASE, BACKOFF_CAP);
                let state = State {
                    ctx,
                    keys,
                    store,
                    failures,
                    in_sync,
                };
                reconcile(object, Arc::new(state))
            })
        }

        fn assert_no_value(what: &str, json: &serde_json::Value) {
            let text = json.to_string();
            assert!(
                !text.contains("s3cret") && !text.contains("czNjcmV0"),
                "{what} holds the value: {text}"
            );
        }

        /// Asserts the `Ready` condition of a status patch and returns the status it writes.
        fn ready_condition(
            patch: &test_api::Call,
            status: &str,
            reason: &str,
        ) -> SealedSecretStatus {
            assert_no_value("the status", &patch.body);
            let written: SealedSecretStatus =
                serde_json::from_value(patch.body["status"].clone()).expect("a status");
            let ready = conditions::find(&written.conditions, READY).expect("Ready");
            assert_eq!(
                (ready.status.as_str(), ready.reason.as_str()),
                (status, reason)
            );
            written
        }

        fn assert_event(event: &serde_json::Value, type_: &str, reason: &str) {
            assert_no_value("the event", event);
            assert_eq!(event["type"], type_);
            assert_eq!(event["reason"], reason);
            assert_eq!(event["regarding"]["kind"], "SealedSecret");
            assert_eq!(event["regarding"]["name"], "db");
        }

        /// A first reconcile: read, apply, status, event. Returns the status it wrote.
        async fn first_reconcile(fixture: &Fixture, shared: &Shared) -> SealedSecretStatus {
            let (mut api, run) = start_shared(shared, &fixture.object);
            api.expect(Method::GET, SECRET).await.not_found();
            let apply = api.expect_apply(SECRET).await;
            assert_eq!(apply.body["apiVersion"], "v1");
            assert_eq!(apply.body["kind"], "Secret");
            assert_eq!(apply.body["metadata"]["name"], "db");
            assert_eq!(apply.body["metadata"]["namespace"], "prod");
            assert_eq!(apply.body["metadata"]["labels"], json!({"app": "db"}));
            assert_eq!(apply.body["data"], json!({"password": "czNjcmV0"}));
            assert_eq!(
                apply.body["metadata"]["ownerReferences"],
                json!([{
                    "apiVersion": "sigil.dev/v1alpha1",
                    "kind": "SealedSecret",
                    "name": "db",
                    "uid": "uid-1",
                    "controller": true,
                    "blockOwnerDeletion": true,
                }])
            );
            let mut written = apply.body.clone();
            written["metadata"]["resourceVersion"] = json!(WRITTEN_VERSION);
            apply.ok(&written);
            let patch = api.expect_merge_patch(STATUS).await;
            let written = ready_condition(&patch, "True", reason::UNSEALED);
            assert_eq!(
                written.key_fingerprint.as_deref(),
                Some(fixture.keyring.keys()[0].fingerprint())
            );
            patch.merged_into(&fixture.object);
            let event = api.expect_event("prod").await;
            assert_event(&event, "Normal", reason::UNSEALED);
            let action = api.finish(run).await.expect("reconciled");
            assert_eq!(action, Action::requeue(RESYNC));
            written
        }

        #[tokio::test]
        async fn a_new_sealed_secret_is_applied_owned_and_reported_without_its_value() {
            let fixture = fixture();
            first_reconcile(&fixture, &Shared::new(&fixture)).await;
        }

        #[tokio::test]
        async fn the_events_of_its_own_writes_cost_no_request() {
            let mut fixture = fixture();
            fixture.object.metadata.generation = Some(1);
            let shared = Shared::new(&fixture);
            let status = first_reconcile(&fixture, &shared).await;
            fixture.object.status = Some(status);
            let reference = ObjectRef::from_obj(&fixture.object);
            // The status patch and the Secret write come back as events: no request at all.
            assert!(
                !shared
                    .in_sync
                    .secret_changed(&reference, Some(WRITTEN_VERSION))
            );
            let (mut api, run) = start_shared(&shared, &fixture.object);
            let action = api.finish(run).await.expect("reconciled");
            assert_eq!(action, Action::requeue(RESYNC));
            // Someone else changed the Secret: read and compared again.
            assert!(shared.in_sync.secret_changed(&reference, Some("6")));
            let (mut api, run) = start_shared(&shared, &fixture.object);
            let live = serde_json::to_value(applied(&fixture)).expect("JSON");
            api.expect(Method::GET, SECRET).await.ok(&live);
            api.finish(run).await.expect("reconciled");
            // A new generation: read and compared again.
            fixture.object.metadata.generation = Some(2);
            let (mut api, run) = start_shared(&shared, &fixture.object);
            api.expect(Method::GET, SECRET).await.ok(&live);
            api.expect_merge_patch(STATUS)
                .await
                .merged_into(&fixture.object);
            api.finish(run).await.expect("reconciled");
        }

        #[tokio::test]
        async fn a_secret_already_in_sync_costs_one_read_and_no_write() {
            let mut fixture = fixture();
            let status = first_reconcile(&fixture, &Shared::new(&fixture)).await;
            fixture.object.status = Some(status);
            let (mut api, run) = start(&fixture, &fixture.object);
            let live = serde_json::to_value(applied(&fixture)).expect("JSON");
            api.expect(Method::GET, SECRET).await.ok(&live);
            let action = api.finish(run).await.expect("reconciled");
            assert_eq!(action, Action::requeue(RESYNC));
        }

        #[tokio::test]
        async fn a_value_the_keys_cannot_open_writes_no_secret() {
            let fixture = fixture();
            let sealed_to_another_key = super::fixture().object;
            let (mut api, run) = start(&fixture, &sealed_to_another_key);
            let patch = api.expect_merge_patch(STATUS).await;
            let written = ready_condition(&patch, "False", reason::DECRYPT_FAILED);
            assert_eq!(written.key_fingerprint, None);
            patch.merged_into(&sealed_to_another_key);
            let event = api.expect_event("prod").await;
            assert_event(&event, "Warning", reason::DECRYPT_FAILED);
            // No read and no write of the Secret: `finish` fails on any further request.
            let action = api.finish(run).await.expect("reconciled");
            assert_eq!(action, Action::requeue(BACKOFF_BASE));
        }

        #[tokio::test]
        async fn a_secret_someone_else_owns_is_not_overwritten() {
            let fixture = fixture();
            let mut foreign = applied(&fixture);
            foreign.metadata.owner_references = None;
            let (mut api, run) = start(&fixture, &fixture.object);
            let live = serde_json::to_value(&foreign).expect("JSON");
            api.expect(Method::GET, SECRET).await.ok(&live);
            let patch = api.expect_merge_patch(STATUS).await;
            ready_condition(&patch, "False", reason::SECRET_EXISTS);
            patch.merged_into(&fixture.object);
            let event = api.expect_event("prod").await;
            assert_event(&event, "Warning", reason::SECRET_EXISTS);
            let action = api.finish(run).await.expect("reconciled");
            assert_eq!(action, Action::requeue(BACKOFF_BASE));
        }
    }
}
