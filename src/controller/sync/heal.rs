//! Self-heal: watches the objects Syncs applied and re-applies one within about a second when
//! someone edits or deletes it, instead of waiting for the Sync's interval.
//!
//! One watch per resource type, over the objects carrying the `sigil.dev/sync-name` label.
//! Each event is compared with the fingerprint recorded when the object was last applied (or
//! found unchanged); only a difference (or a deletion, or the label being removed) leads to a
//! heal, which takes the Sync's lock, re-reads the object and applies it with the same dry-run
//! comparison as a full run. Objects saying `sigil.dev/reconcile: disabled` are left alone, and
//! fields `spec.ignore[]` leaves to other controllers are not in the fingerprint: their changes
//! are not drift.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{WatchStreamExt, watcher};

use crate::controller::Context;
use crate::controller::status::publish;
use crate::manifests::apply::{Mode, Outcome, apply_one};
use crate::manifests::object::{Owner, describe, fingerprint, fingerprint_dynamic, group_of};
use crate::manifests::{
    Desired, RECONCILE_ANNOTATION, SYNC_NAME_LABEL, SYNC_NAMESPACE_LABEL, Target,
};

/// (group, kind, namespace, name).
type ObjectKey = (String, String, String, String);

fn key_of(desired: &Desired) -> ObjectKey {
    (
        group_of(&desired.entry.api_version).to_string(),
        desired.entry.kind.clone(),
        desired.entry.namespace.clone(),
        desired.entry.name.clone(),
    )
}

struct TrackedObject {
    desired: Desired,
    fingerprint: Option<[u8; 32]>,
}

struct Tracked {
    owner: Owner,
    reference: ObjectReference,
    target: Target,
    objects: HashMap<ObjectKey, TrackedObject>,
}

/// One async lock per Sync, shared by full runs and heals so they never interleave.
#[derive(Default)]
pub struct Locks {
    map: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Locks {
    pub fn get(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

/// The self-heal watches and what they compare against.
pub struct Healer {
    ctx: Arc<Context>,
    locks: Arc<Locks>,
    syncs: Mutex<HashMap<String, Tracked>>,
    watched: Mutex<HashSet<(String, String)>>,
    pending: Mutex<HashSet<(String, ObjectKey)>>,
}

/// What a full run hands over for one Sync.
pub struct Tracking {
    pub owner: Owner,
    pub reference: ObjectReference,
    pub target: Target,
    /// Applied objects with the fingerprint of their live state.
    pub objects: Vec<(Desired, Option<[u8; 32]>)>,
}

impl Healer {
    pub fn new(ctx: Arc<Context>, locks: Arc<Locks>) -> Arc<Self> {
        Arc::new(Self {
            ctx,
            locks,
            syncs: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashSet::new()),
            pending: Mutex::new(HashSet::new()),
        })
    }

    /// Watches a Sync's objects: `replace` drops what was tracked before (a full success),
    /// otherwise the objects are added (a partial apply).
    pub fn track(self: &Arc<Self>, sync: &str, tracking: Tracking, replace: bool) {
        let resources: Vec<(ApiResource, bool)> = tracking
            .objects
            .iter()
            .map(|(d, _)| (d.kind.resource.clone(), d.kind.namespaced))
            .collect();
        {
            let mut syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
            let entry = syncs.entry(sync.to_string()).or_insert_with(|| Tracked {
                owner: tracking.owner.clone(),
                reference: tracking.reference.clone(),
                target: tracking.target.clone(),
                objects: HashMap::new(),
            });
            entry.owner = tracking.owner;
            entry.reference = tracking.reference;
            entry.target = tracking.target;
            if replace {
                entry.objects.clear();
            }
            for (desired, fingerprint) in tracking.objects {
                entry.objects.insert(
                    key_of(&desired),
                    TrackedObject {
                        desired,
                        fingerprint,
                    },
                );
            }
        }
        for (resource, namespaced) in resources {
            self.ensure_watch(resource, namespaced);
        }
    }

    /// Stops healing a Sync (deleted, suspended, or self-heal turned off).
    pub fn untrack(&self, sync: &str) {
        self.syncs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(sync);
    }

    /// Starts the watch of a resource type unless running. A controller limited to one
    /// namespace (`--watch-namespace`) watches namespaced kinds only there.
    fn ensure_watch(self: &Arc<Self>, resource: ApiResource, namespaced: bool) {
        let id = (resource.api_version.clone(), resource.kind.clone());
        if !self
            .watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id)
        {
            return;
        }
        let healer = self.clone();
        let shutdown = self.ctx.shutdown.clone();
        tokio::spawn(async move {
            let client = healer.ctx.client.clone();
            let api = match &healer.ctx.options.watch_namespace {
                Some(ns) if namespaced => {
                    Api::<DynamicObject>::namespaced_with(client, ns, &resource)
                }
                _ => Api::<DynamicObject>::all_with(client, &resource),
            };
            let events = watcher(api, watcher::Config::default().labels(SYNC_NAME_LABEL))
                .default_backoff()
                .take_until(shutdown.cancelled_owned());
            futures::pin_mut!(events);
            while let Some(event) = events.next().await {
                match event {
                    Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                        healer.observe(&resource, &object, false)
                    }
                    Ok(watcher::Event::Delete(object)) => healer.observe(&resource, &object, true),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::debug!(kind = %resource.kind, error = %err, "self-heal watch")
                    }
                }
            }
        });
    }

    fn observe(self: &Arc<Self>, resource: &ApiResource, object: &DynamicObject, deleted: bool) {
        let labels = object.metadata.labels.clone().unwrap_or_default();
        let (Some(name), Some(namespace)) = (
            labels.get(SYNC_NAME_LABEL),
            labels.get(SYNC_NAMESPACE_LABEL),
        ) else {
            return;
        };
        let sync = format!("{namespace}/{name}");
        let key: ObjectKey = (
            resource.group.clone(),
            resource.kind.clone(),
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        let disabled = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(RECONCILE_ANNOTATION))
            .is_some_and(|v| v.eq_ignore_ascii_case("disabled"));
        {
            let syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
            let Some(tracked) = syncs.get(&sync).and_then(|t| t.objects.get(&key)) else {
                return;
            };
            if !deleted
                && (disabled
                    || tracked.fingerprint
                        == Some(fingerprint_dynamic(object, &tracked.desired.ignored)))
            {
                return;
            }
        }
        if !self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((sync.clone(), key.clone()))
        {
            return;
        }
        let healer = self.clone();
        tokio::spawn(async move { healer.heal(sync, key).await });
    }

    async fn heal(self: Arc<Self>, sync: String, key: ObjectKey) {
        let lock = self.locks.get(&sync);
        let _guard = lock.lock().await;
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(sync.clone(), key.clone()));
        let found = {
            let syncs = self.syncs.lock().unwrap_or_else(|e| e.into_inner());
            syncs.get(&sync).and_then(|t| {
                t.objects.get(&key).map(|o| {
                    (
                        t.owner.clone(),
                        t.reference.clone(),
                        t.target.clone(),
                        o.desired.clone(),
                        o.fingerprint,
                    )
                })
            })
        };
        let Some((owner, reference, target, desired, recorded)) = found else {
            return;
        };
        let live = match target
            .get(
                &desired.kind.resource,
                desired.namespace(),
                &desired.entry.name,
            )
            .await
        {
            Ok(live) => live,
            Err(err) => {
                tracing::warn!(sync = %sync, object = %desired.describe(), error = %err, "self-heal cannot read the object");
                return;
            }
        };
        if let Some(live) = &live
            && (recorded == Some(fingerprint(live, &desired.ignored))
                || crate::manifests::object::reconcile_disabled(live))
        {
            return;
        }
        let existed = live.is_some();
        match apply_one(&target, &desired, Some(&owner), Mode::Apply, Some(live)).await {
            Ok(applied) => {
                if let Some(tracked) = self
                    .syncs
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get_mut(&sync)
                    .and_then(|t| t.objects.get_mut(&key))
                {
                    tracked.fingerprint = applied.fingerprint;
                }
                if matches!(applied.outcome, Outcome::Created | Outcome::Configured) {
                    let what = if existed { "changed" } else { "deleted" };
                    let note = format!(
                        "{} was {what} outside Git; re-applied from {}:{}",
                        describe(&applied.entry),
                        desired.file,
                        desired.line
                    );
                    tracing::info!(sync = %sync, "{note}");
                    let event = Event {
                        type_: EventType::Normal,
                        reason: "Healed".to_string(),
                        note: Some(note),
                        action: "SelfHeal".to_string(),
                        secondary: None,
                    };
                    publish(&self.ctx, event, &reference).await;
                }
            }
            Err(failure) => {
                tracing::warn!(sync = %sync, error = %failure, "self-heal failed");
            }
        }
    }
}
