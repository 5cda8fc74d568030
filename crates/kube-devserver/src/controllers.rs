//! The in-process stand-ins for kube-controller-manager and the apiextensions
//! controllers: garbage collection through ownerReferences (background, foreground,
//! orphan), namespace termination, CRD instance cleanup, and the per-namespace
//! `default` ServiceAccount and `kube-root-ca.crt` ConfigMap.
//!
//! Like the real ones they run asynchronously after the write that triggers them.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{Value, json};

use super::crd::CLEANUP_FINALIZER;
use super::delete::{self, DeleteOptions, FOREGROUND, ORPHAN, Propagation};
use super::object;
use super::owner_index::{ObjectKey, owner_uids};
use super::registry::{ResourceType, StorageKey};
use super::state::State;
use super::store::{Change, EventType};
use super::strategy::Sub;
use super::write::{self, WriteOptions};

const GC_MANAGER: &str = "generic-garbage-collector";
const NS_MANAGER: &str = "namespace-controller";

/// Runs every controller until nothing changes (bounded), on what changed after resourceVersion
/// `since` — or on everything when `since` is None or that history was compacted. Returns the
/// resourceVersion handled, to pass as `since` next time.
///
/// Like kube-controller-manager's garbage collector, which follows watch events through its
/// dependency graph, a pass looks only at the objects a change touched: a write costs the same
/// with 10 or 100,000 objects stored.
pub fn reconcile(st: &mut State, root_ca: &str, since: Option<u64>) -> u64 {
    let mut since = since;
    for _ in 0..64 {
        let touched = match since.map(|rv| st.store.changes_since(rv)) {
            Some(Ok(changes)) if changes.is_empty() => break,
            Some(Ok(changes)) => Touched::Changes(changes),
            None | Some(Err(_)) => Touched::Everything,
        };
        since = Some(st.store.current_rv());
        let changed = collect_garbage(st, &touched)
            | finalize_deleting_owners(st, &touched)
            | terminate_namespaces(st)
            | clean_up_crds(st)
            | namespace_defaults(st, root_ca);
        if !changed {
            break;
        }
    }
    since.unwrap_or_else(|| st.store.current_rv())
}

/// What a pass of the garbage collector looks at.
enum Touched {
    Everything,
    Changes(Vec<Arc<Change>>),
}

impl Touched {
    /// The current state of the objects in `keys`, once each.
    fn current(st: &State, keys: BTreeSet<ObjectKey>) -> Vec<(StorageKey, Arc<Value>)> {
        keys.into_iter()
            .filter_map(|(storage, namespace, name)| {
                let obj = st.store.get(&storage, &namespace, &name)?;
                Some((storage, obj))
            })
            .collect()
    }

    /// Stored objects that may have lost an owner: every dependent, or those changed and those
    /// of owners changed or removed.
    fn dependents(&self, st: &State) -> Vec<(StorageKey, Arc<Value>)> {
        let Touched::Changes(changes) = self else {
            return stored_where(st, has_owner_refs);
        };
        let mut keys = BTreeSet::new();
        for change in changes {
            if change.kind != EventType::Deleted && has_owner_refs(&change.object) {
                keys.insert(key_of(change));
            }
            if change.kind == EventType::Deleted || is_deleting(&change.object) {
                let uid = object::uid(&change.object);
                keys.extend(st.store.dependents_of(uid).into_iter().map(|(k, o)| {
                    (
                        k,
                        object::namespace(&o).to_string(),
                        object::name(&o).to_string(),
                    )
                }));
            }
        }
        Self::current(st, keys)
    }

    /// Stored owners being deleted with the orphan or foreground finalizer that may be ready to
    /// go: every one, or those changed and those whose dependents changed.
    fn finalizing_owners(&self, st: &State) -> Vec<(StorageKey, Arc<Value>)> {
        let finalizing = |o: &Value| {
            is_deleting(o) && (has_finalizer(o, ORPHAN) || has_finalizer(o, FOREGROUND))
        };
        let Touched::Changes(changes) = self else {
            return stored_where(st, finalizing);
        };
        let mut keys = BTreeSet::new();
        for change in changes {
            if change.kind != EventType::Deleted && finalizing(&change.object) {
                keys.insert(key_of(change));
            }
            let versions = std::iter::once(&change.object).chain(change.old.as_ref());
            for owner in versions.flat_map(|o| owner_uids(o)) {
                if let Some((storage, o)) = st.store.by_uid(owner)
                    && finalizing(&o)
                {
                    keys.insert((
                        storage,
                        object::namespace(&o).into(),
                        object::name(&o).into(),
                    ));
                }
            }
        }
        Self::current(st, keys)
    }
}

/// Every stored object matching `wanted`.
fn stored_where(st: &State, wanted: impl Fn(&Value) -> bool) -> Vec<(StorageKey, Arc<Value>)> {
    st.store
        .iter()
        .filter(|(_, o)| wanted(o))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect()
}

fn key_of(change: &Change) -> ObjectKey {
    (
        change.storage.clone(),
        change.namespace.clone(),
        change.name.clone(),
    )
}

struct Owner {
    namespace: String,
    deleting_foreground: bool,
}

fn has_finalizer(obj: &Value, finalizer: &str) -> bool {
    object::meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == finalizer))
}

fn is_deleting(obj: &Value) -> bool {
    object::deletion_timestamp(obj).is_some()
}

fn has_owner_refs(obj: &Value) -> bool {
    owner_uids(obj).next().is_some()
}

/// The stored owner of this uid, if any.
fn owner(st: &State, uid: &str) -> Option<Owner> {
    let (_, o) = st.store.by_uid(uid)?;
    Some(Owner {
        namespace: object::namespace(&o).to_string(),
        deleting_foreground: is_deleting(&o) && has_finalizer(&o, FOREGROUND),
    })
}

fn type_of(st: &State, storage: &StorageKey) -> Option<Arc<ResourceType>> {
    st.preferred(storage)
}

fn delete_with(
    st: &mut State,
    storage: &StorageKey,
    obj: &Value,
    propagation: Propagation,
) -> bool {
    let Some(rt) = type_of(st, storage) else {
        return false;
    };
    let opts = DeleteOptions {
        propagation: Some(propagation),
        uid: Some(object::uid(obj).to_string()),
        ..Default::default()
    };
    delete::delete(st, &rt, object::namespace(obj), object::name(obj), &opts).is_ok()
}

fn set_owner_refs(st: &mut State, storage: &StorageKey, obj: &Value, refs: Vec<Value>) -> bool {
    let Some(rt) = type_of(st, storage) else {
        return false;
    };
    let mut new = obj.clone();
    let meta = object::meta_mut(&mut new);
    if refs.is_empty() {
        meta.remove("ownerReferences");
    } else {
        meta.insert("ownerReferences".into(), Value::Array(refs));
    }
    write::system_update(st, &rt, new, Sub::Main, GC_MANAGER)
}

/// Dependents whose owners are gone are deleted; references to missing owners are dropped
/// while another owner remains; dependents of foreground-deleting owners are deleted.
fn collect_garbage(st: &mut State, touched: &Touched) -> bool {
    let mut changed = false;
    for (storage, obj) in touched.dependents(st) {
        let refs = object::owner_references(&obj);
        if refs.is_empty() || is_deleting(&obj) {
            continue;
        }
        let ns = object::namespace(&obj).to_string();
        let mut solid = Vec::new();
        let mut waiting = 0usize;
        for r in &refs {
            let uid = r.get("uid").and_then(Value::as_str).unwrap_or_default();
            match owner(st, uid) {
                Some(o) if o.namespace.is_empty() || o.namespace == ns => {
                    if o.deleting_foreground {
                        waiting += 1;
                    } else {
                        solid.push(r.clone());
                    }
                }
                _ => {}
            }
        }
        if solid.len() == refs.len() {
            continue;
        }
        changed |= if !solid.is_empty() {
            set_owner_refs(st, &storage, &obj, solid)
        } else if waiting > 0 {
            delete_with(st, &storage, &obj, Propagation::Foreground)
        } else {
            let fins = object::finalizers(&obj);
            let policy = if fins.iter().any(|f| f == ORPHAN) {
                Propagation::Orphan
            } else if fins.iter().any(|f| f == FOREGROUND) {
                Propagation::Foreground
            } else {
                Propagation::Background
            };
            delete_with(st, &storage, &obj, policy)
        };
    }
    changed
}

fn remove_finalizer(st: &mut State, storage: &StorageKey, obj: &Value, finalizer: &str) -> bool {
    let Some(rt) = type_of(st, storage) else {
        return false;
    };
    let fins: Vec<String> = object::finalizers(obj)
        .into_iter()
        .filter(|f| f != finalizer)
        .collect();
    let mut new = obj.clone();
    object::set_finalizers(&mut new, &fins);
    write::system_update(st, &rt, new, Sub::Main, GC_MANAGER)
}

/// Owners deleted with `orphan` release their dependents; owners deleted in the
/// foreground go once no dependent blocks them.
fn finalize_deleting_owners(st: &mut State, touched: &Touched) -> bool {
    let mut changed = false;
    for (storage, obj) in &touched.finalizing_owners(st) {
        let fins = object::finalizers(obj);
        let uid = object::uid(obj).to_string();
        let dependents = st.store.dependents_of(&uid);
        if fins.iter().any(|f| f == ORPHAN) {
            for (dstorage, current) in &dependents {
                let refs: Vec<Value> = object::owner_references(current)
                    .into_iter()
                    .filter(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()))
                    .collect();
                changed |= set_owner_refs(st, dstorage, current, refs);
            }
            changed |= remove_finalizer(st, storage, obj, ORPHAN);
        } else if fins.iter().any(|f| f == FOREGROUND) {
            let blocking = dependents.iter().any(|(_, d)| {
                object::owner_references(d).iter().any(|r| {
                    r.get("uid").and_then(Value::as_str) == Some(uid.as_str())
                        && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                })
            });
            if !blocking {
                changed |= remove_finalizer(st, storage, obj, FOREGROUND);
            }
        }
    }
    changed
}

/// Terminating namespaces lose their content, then the `kubernetes` finalizer, then themselves.
fn terminate_namespaces(st: &mut State) -> bool {
    let ns_key: StorageKey = (String::new(), "namespaces".into());
    let terminating: Vec<Arc<Value>> = st
        .store
        .list(&ns_key, None)
        .into_iter()
        .filter(|n| object::deletion_timestamp(n).is_some())
        .collect();
    let mut changed = false;
    for ns in terminating {
        let name = object::name(&ns).to_string();
        let mut remaining = 0usize;
        let mut by_resource: Vec<(String, usize)> = Vec::new();
        let mut by_finalizer: std::collections::BTreeMap<String, usize> = Default::default();
        for rt in st.registry.storage_types() {
            if !rt.namespaced {
                continue;
            }
            let objects = st.store.list(&rt.storage, Some(&name));
            for obj in &objects {
                remaining += 1;
                if object::deletion_timestamp(obj).is_none() {
                    let opts = DeleteOptions::default();
                    changed |= delete::delete(st, &rt, &name, object::name(obj), &opts).is_ok();
                }
            }
            // What is still there after this round waits for finalizers.
            let left: Vec<Arc<Value>> = st.store.list(&rt.storage, Some(&name));
            if !left.is_empty() {
                by_resource.push((rt.gr().to_string(), left.len()));
            }
            for obj in &left {
                for f in object::finalizers(obj) {
                    *by_finalizer.entry(f).or_default() += 1;
                }
            }
        }
        if remaining > 0 {
            if let Some(ns_type) = type_of(st, &ns_key)
                && let Some(current) = st.store.get(&ns_key, "", &name)
            {
                let mut new = (*current).clone();
                new["status"]["conditions"] =
                    termination_conditions(&current, &by_resource, &by_finalizer);
                changed |= write::system_update(st, &ns_type, new, Sub::Status, NS_MANAGER);
            }
            continue;
        }
        let Some(ns_type) = type_of(st, &ns_key) else {
            continue;
        };
        let spec_fins: Vec<Value> = object::get_path(&ns, "spec.finalizers")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if spec_fins.iter().any(|f| f == "kubernetes") {
            let mut new = (*ns).clone();
            let kept: Vec<Value> = spec_fins
                .into_iter()
                .filter(|f| f != "kubernetes")
                .collect();
            new["spec"]["finalizers"] = Value::Array(kept);
            changed |= write::system_update(st, &ns_type, new, Sub::Finalize, NS_MANAGER);
            continue;
        }
        let spec_empty = spec_fins.is_empty();
        if spec_empty && object::finalizers(&ns).is_empty() {
            changed |= delete::delete(st, &ns_type, "", &name, &DeleteOptions::default()).is_ok();
        }
    }
    changed
}

/// The conditions the namespace controller reports while content remains.
fn termination_conditions(
    ns: &Value,
    by_resource: &[(String, usize)],
    by_finalizer: &std::collections::BTreeMap<String, usize>,
) -> Value {
    let old = ns["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let now = super::clock::now();
    let condition = |ty: &str, status: &str, reason: &str, message: String| {
        let since = old
            .iter()
            .find(|c| c["type"] == ty && c["status"] == status)
            .map(|c| c["lastTransitionTime"].clone())
            .unwrap_or_else(|| json!(now));
        json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
    };
    let content = if by_resource.is_empty() {
        condition(
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed".into(),
        )
    } else {
        let list: Vec<String> = by_resource
            .iter()
            .map(|(r, n)| format!("{r} has {n} resource instances"))
            .collect();
        condition(
            "NamespaceContentRemaining",
            "True",
            "SomeResourcesRemain",
            format!("Some resources are remaining: {}", list.join(", ")),
        )
    };
    let finalizers = if by_finalizer.is_empty() {
        condition(
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".into(),
        )
    } else {
        let list: Vec<String> = by_finalizer
            .iter()
            .map(|(f, n)| format!("{f} in {n} resource instances"))
            .collect();
        condition(
            "NamespaceFinalizersRemaining",
            "True",
            "SomeFinalizersRemain",
            format!(
                "Some content in the namespace has finalizers remaining: {}",
                list.join(", ")
            ),
        )
    };
    json!([
        condition(
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered".into()
        ),
        condition(
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".into()
        ),
        condition(
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".into()
        ),
        content,
        finalizers,
    ])
}

/// Deleting CRDs lose their custom objects, then their cleanup finalizer.
fn clean_up_crds(st: &mut State) -> bool {
    let crd_key: StorageKey = (
        "apiextensions.k8s.io".into(),
        "customresourcedefinitions".into(),
    );
    let deleting: Vec<Arc<Value>> = st
        .store
        .list(&crd_key, None)
        .into_iter()
        .filter(|c| {
            object::deletion_timestamp(c).is_some()
                && object::finalizers(c).iter().any(|f| f == CLEANUP_FINALIZER)
        })
        .collect();
    let mut changed = false;
    for crd in deleting {
        let group = object::get_path(&crd, "spec.group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let plural = object::get_path(&crd, "spec.names.plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let storage: StorageKey = (group, plural);
        let objects = st.store.list(&storage, None);
        if let Some(rt) = type_of(st, &storage) {
            for obj in &objects {
                if object::deletion_timestamp(obj).is_none() {
                    changed |= delete::delete(
                        st,
                        &rt,
                        object::namespace(obj),
                        object::name(obj),
                        &DeleteOptions::default(),
                    )
                    .is_ok();
                }
            }
        }
        if objects.is_empty() {
            changed |= remove_finalizer(st, &crd_key, &crd, CLEANUP_FINALIZER);
        }
    }
    changed
}

/// The ServiceAccount controller's `default` account and the root-CA publisher's ConfigMap.
fn namespace_defaults(st: &mut State, root_ca: &str) -> bool {
    let active: Vec<String> = st
        .store
        .list(&(String::new(), "namespaces".into()), None)
        .into_iter()
        .filter(|n| object::deletion_timestamp(n).is_none())
        .map(|n| object::name(&n).to_string())
        .collect();
    let mut changed = false;
    let sa_key: StorageKey = (String::new(), "serviceaccounts".into());
    let cm_key: StorageKey = (String::new(), "configmaps".into());
    for ns in active {
        if st.store.get(&sa_key, &ns, "default").is_none()
            && let Some(rt) = type_of(st, &sa_key)
        {
            let body = json!({"metadata": {"name": "default"}});
            changed |= write::create(
                st,
                &rt,
                &ns,
                body,
                &WriteOptions::new("kube-controller-manager"),
            )
            .is_ok();
        }
        if st.store.get(&cm_key, &ns, "kube-root-ca.crt").is_none()
            && let Some(rt) = type_of(st, &cm_key)
        {
            let body = json!({
                "metadata": {"name": "kube-root-ca.crt", "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                "data": {"ca.crt": root_ca},
            });
            changed |= write::create(
                st,
                &rt,
                &ns,
                body,
                &WriteOptions::new("kube-controller-manager"),
            )
            .is_ok();
        }
    }
    changed
}

/// The built-in objects a fresh cluster has.
pub fn bootstrap(st: &mut State) {
    let opts = WriteOptions::new("kube-apiserver");
    if let Some(ns) = st.registry.lookup("", "v1", "namespaces") {
        for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let _ = write::create(st, &ns, "", json!({"metadata": {"name": name}}), &opts);
        }
    }
    if let Some(cr) = st
        .registry
        .lookup("rbac.authorization.k8s.io", "v1", "clusterroles")
    {
        let body = json!({
            "metadata": {"name": "cluster-admin", "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
            "rules": [
                {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                {"nonResourceURLs": ["*"], "verbs": ["*"]}
            ]
        });
        let _ = write::create(st, &cr, "", body, &opts);
    }
    if let Some(svc) = st.registry.lookup("", "v1", "services") {
        let body = json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
        });
        let _ = write::create(st, &svc, "default", body, &opts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT_CA: &str = "ca";

    fn configmap(st: &mut State, name: &str, owner: Option<&Value>) -> Value {
        let rt = st
            .registry
            .lookup("", "v1", "configmaps")
            .expect("configmaps are served");
        let mut body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}});
        if let Some(owner) = owner {
            body["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "v1", "kind": "ConfigMap",
                "name": object::name(owner), "uid": object::uid(owner),
            }]);
        }
        write::create(st, &rt, "default", body, &WriteOptions::new("test")).expect("created")
    }

    fn exists(st: &State, name: &str) -> bool {
        st.store
            .get(&(String::new(), "configmaps".into()), "default", name)
            .is_some()
    }

    fn cluster(history: usize) -> (State, u64) {
        let mut st = State::new(history, 16);
        bootstrap(&mut st);
        let handled = reconcile(&mut st, ROOT_CA, None);
        (st, handled)
    }

    #[test]
    fn a_pass_after_a_write_collects_the_dependents_of_a_deleted_owner() {
        let (mut st, mut handled) = cluster(10_000);
        let owner = configmap(&mut st, "owner", None);
        configmap(&mut st, "dependent", Some(&owner));
        for i in 0..50 {
            configmap(&mut st, &format!("unrelated-{i}"), None);
        }
        handled = reconcile(&mut st, ROOT_CA, Some(handled));
        assert!(exists(&st, "dependent"), "its owner is there");

        let rt = st.registry.lookup("", "v1", "configmaps").expect("served");
        delete::delete(&mut st, &rt, "default", "owner", &DeleteOptions::default())
            .expect("owner deleted");
        reconcile(&mut st, ROOT_CA, Some(handled));
        assert!(!exists(&st, "dependent"));
        assert!(exists(&st, "unrelated-0"));
    }

    #[test]
    fn a_dependent_created_for_a_missing_owner_is_collected() {
        let (mut st, handled) = cluster(10_000);
        let ghost = json!({"metadata": {"name": "ghost", "uid": "no-such-uid"}});
        configmap(&mut st, "orphaned", Some(&ghost));
        reconcile(&mut st, ROOT_CA, Some(handled));
        assert!(!exists(&st, "orphaned"));
    }

    #[test]
    fn a_pass_whose_history_was_compacted_looks_at_everything() {
        let (mut st, handled) = cluster(4);
        let owner = configmap(&mut st, "owner", None);
        configmap(&mut st, "dependent", Some(&owner));
        let rt = st.registry.lookup("", "v1", "configmaps").expect("served");
        delete::delete(&mut st, &rt, "default", "owner", &DeleteOptions::default())
            .expect("owner deleted");
        for i in 0..10 {
            configmap(&mut st, &format!("later-{i}"), None);
        }
        assert!(st.store.changes_since(handled).is_err(), "compacted");
        reconcile(&mut st, ROOT_CA, Some(handled));
        assert!(!exists(&st, "dependent"));
    }
}
