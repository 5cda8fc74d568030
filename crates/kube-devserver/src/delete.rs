//! DELETE: preconditions, finalizers and `deletionTimestamp`, garbage-collection
//! finalizers (`orphan`, `foregroundDeletion`), and the namespace and CRD deletion rules.

use serde_json::{Value, json};

use super::clock;
use super::convert::from_storage;
use super::crd;
use super::object;
use super::registry::{Builtin, ResourceType};
use super::state::State;
use super::status::{ApiError, GroupResource, delete_success};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Orphan,
    Background,
    Foreground,
}

impl Propagation {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Orphan" => Some(Self::Orphan),
            "Background" => Some(Self::Background),
            "Foreground" => Some(Self::Foreground),
            _ => None,
        }
    }
}

/// `metav1.DeleteOptions`, as far as the server honours them.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub orphan_dependents: Option<bool>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
}

/// The answer to a delete.
#[derive(Debug)]
pub struct Deleted {
    pub body: Value,
    pub code: u16,
}

/// Which GC finalizers the object should carry after this delete (`deletionFinalizersForGarbageCollection`).
fn gc_finalizers(existing: &[String], opts: &DeleteOptions) -> (bool, Vec<String>) {
    // Without options, the first GC finalizer the object already carries decides.
    let first_gc = existing.iter().find(|f| *f == ORPHAN || *f == FOREGROUND);
    let orphan = match (opts.orphan_dependents, opts.propagation) {
        (Some(o), _) => o,
        (None, Some(p)) => p == Propagation::Orphan,
        (None, None) => first_gc.is_some_and(|f| f == ORPHAN),
    };
    let foreground = match (opts.orphan_dependents, opts.propagation) {
        (Some(_), _) => false,
        (None, Some(p)) => p == Propagation::Foreground,
        (None, None) => first_gc.is_some_and(|f| f == FOREGROUND),
    };
    let mut out: Vec<String> = existing
        .iter()
        .filter(|f| *f != ORPHAN && *f != FOREGROUND)
        .cloned()
        .collect();
    if orphan {
        out.push(ORPHAN.into());
    }
    if foreground {
        out.push(FOREGROUND.into());
    }
    let before: std::collections::BTreeSet<&String> = existing.iter().collect();
    let after: std::collections::BTreeSet<&String> = out.iter().collect();
    (before != after, out)
}

/// `markAsDeleting`: deletionTimestamp (kept if set), grace period 0, generation bump on first deletion.
fn mark_as_deleting(obj: &mut Value, now: &str) {
    let first = object::deletion_timestamp(obj).is_none();
    let generation = object::generation(obj);
    let meta = object::meta_mut(obj);
    if first && generation > 0 {
        meta.insert("generation".into(), json!(generation + 1));
    }
    if first {
        meta.insert("deletionTimestamp".into(), now.into());
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(0));
}

fn kind_conflict(rt: &ResourceType, name: &str, why: String) -> ApiError {
    // BeforeDelete names the kind where other errors name the resource.
    ApiError::conflict(&GroupResource::new(&rt.group, &rt.kind), name, &why)
}

fn check_preconditions(
    rt: &ResourceType,
    old: &Value,
    opts: &DeleteOptions,
) -> Result<(), ApiError> {
    let name = object::name(old);
    if let Some(uid) = &opts.uid
        && uid != object::uid(old)
    {
        return Err(kind_conflict(
            rt,
            name,
            format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({}). The object might have been deleted and then recreated",
                object::uid(old)
            ),
        ));
    }
    if let Some(rv) = &opts.resource_version
        && rv != object::resource_version(old)
    {
        return Err(kind_conflict(
            rt,
            name,
            format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                object::resource_version(old)
            ),
        ));
    }
    Ok(())
}

fn write(st: &mut State, rt: &ResourceType, old: &Value, new: Value, dry_run: bool) -> Value {
    if dry_run || new == *old {
        return from_storage(rt, &new);
    }
    let stored = st.store.update(&rt.storage, new);
    from_storage(rt, &stored)
}

/// DELETE of one object.
pub fn delete(
    st: &mut State,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    opts: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    let Some(old) = st.store.get(&rt.storage, ns, name) else {
        return Err(ApiError::not_found(&rt.gr(), name));
    };
    let old: Value = (*old).clone();
    let now = clock::now();
    match rt.builtin() {
        Some(Builtin::Namespace) => {
            if let Some(uid) = &opts.uid
                && uid != object::uid(&old)
            {
                return Err(ApiError::conflict(
                    &rt.gr(),
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::uid(&old)
                    ),
                ));
            }
            if object::deletion_timestamp(&old).is_none() {
                let mut new = old.clone();
                object::meta_mut(&mut new).insert("deletionTimestamp".into(), now.into());
                new["status"]["phase"] = json!("Terminating");
                if opts.orphan_dependents == Some(false) {
                    let fins: Vec<String> = object::finalizers(&new)
                        .into_iter()
                        .filter(|f| f != ORPHAN)
                        .collect();
                    object::set_finalizers(&mut new, &fins);
                }
                let body = write(st, rt, &old, new, opts.dry_run);
                return Ok(Deleted { body, code: 200 });
            }
            let spec_finalizers = object::get_path(&old, "spec.finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
            if spec_finalizers {
                return Err(ApiError::conflict(
                    &rt.gr(),
                    name,
                    "The system is ensuring all content is removed from this namespace.  Upon completion, this namespace will automatically be purged by the system.",
                ));
            }
        }
        Some(Builtin::Crd) => {
            check_preconditions(rt, &old, opts)?;
            if object::deletion_timestamp(&old).is_none() {
                let mut new = old.clone();
                object::meta_mut(&mut new).insert("deletionTimestamp".into(), now.clone().into());
                let mut fins = object::finalizers(&new);
                if !fins.iter().any(|f| f == crd::CLEANUP_FINALIZER) {
                    fins.push(crd::CLEANUP_FINALIZER.into());
                }
                object::set_finalizers(&mut new, &fins);
                let conflict = crd::name_conflict(&new, &st.registry);
                new["status"] = crd::compute_status(&new, conflict.as_ref(), &now);
                let body = write(st, rt, &old, new, opts.dry_run);
                return Ok(Deleted { body, code: 200 });
            }
        }
        _ => {}
    }
    check_preconditions(rt, &old, opts)?;
    let existing = object::finalizers(&old);
    let (changed, finalizers) = gc_finalizers(&existing, opts);
    if !existing.is_empty() || changed {
        let mut new = old.clone();
        object::set_finalizers(&mut new, &finalizers);
        if !finalizers.is_empty() {
            mark_as_deleting(&mut new, &now);
            let body = write(st, rt, &old, new, opts.dry_run);
            let code = if opts.orphan_dependents == Some(false) {
                202
            } else {
                200
            };
            return Ok(Deleted { body, code });
        }
    }
    if opts.dry_run {
        return Ok(Deleted {
            body: deleted_body(rt, &old),
            code: 200,
        });
    }
    let last = st
        .store
        .remove(&rt.storage, ns, name)
        .ok_or_else(|| ApiError::not_found(&rt.gr(), name))?;
    if rt.is(Builtin::Crd) {
        st.sync_crd(name);
    }
    Ok(Deleted {
        body: deleted_body(rt, &last),
        code: 200,
    })
}

fn deleted_body(rt: &ResourceType, last: &Value) -> Value {
    if rt.returns_deleted_object() {
        from_storage(rt, last)
    } else {
        delete_success(&rt.gr(), object::name(last), object::uid(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{WriteOptions, create};

    fn state_with(obj: Value) -> (State, std::sync::Arc<ResourceType>) {
        let mut st = State::new(100, 16);
        let ns = st.registry.lookup("", "v1", "namespaces").expect("served");
        create(
            &mut st,
            &ns,
            "",
            json!({"metadata": {"name": "default"}}),
            &WriteOptions::new("t"),
        )
        .expect("ns");
        let cm = st.registry.lookup("", "v1", "configmaps").expect("served");
        create(&mut st, &cm, "default", obj, &WriteOptions::new("t")).expect("cm");
        (st, cm)
    }

    #[test]
    fn finalizers_defer_deletion() {
        let (mut st, cm) =
            state_with(json!({"metadata": {"name": "c", "finalizers": ["example.com/keep"]}}));
        let d = delete(&mut st, &cm, "default", "c", &DeleteOptions::default()).expect("deleting");
        assert!(object::deletion_timestamp(&d.body).is_some());
        assert_eq!(d.body["metadata"]["deletionGracePeriodSeconds"], 0);
        assert!(st.store.get(&cm.storage, "default", "c").is_some());
    }

    #[test]
    fn plain_delete_answers_a_status() {
        let (mut st, cm) = state_with(json!({"metadata": {"name": "c"}}));
        let d = delete(&mut st, &cm, "default", "c", &DeleteOptions::default()).expect("deleted");
        assert_eq!(d.body["kind"], "Status");
        assert_eq!(d.body["details"]["kind"], "configmaps");
        assert!(st.store.get(&cm.storage, "default", "c").is_none());
    }

    #[test]
    fn orphan_and_foreground_add_gc_finalizers() {
        let (mut st, cm) = state_with(json!({"metadata": {"name": "c"}}));
        let opts = DeleteOptions {
            propagation: Some(Propagation::Foreground),
            ..Default::default()
        };
        let d = delete(&mut st, &cm, "default", "c", &opts).expect("deleting");
        assert_eq!(object::finalizers(&d.body), vec![FOREGROUND.to_string()]);
        let (changed, f) = gc_finalizers(
            &[FOREGROUND.into()],
            &DeleteOptions {
                propagation: Some(Propagation::Orphan),
                ..Default::default()
            },
        );
        assert!(changed);
        assert_eq!(f, vec![ORPHAN.to_string()]);
    }

    #[test]
    fn preconditions_conflict() {
        let (mut st, cm) = state_with(json!({"metadata": {"name": "c"}}));
        let opts = DeleteOptions {
            uid: Some("other".into()),
            ..Default::default()
        };
        let e = delete(&mut st, &cm, "default", "c", &opts).expect_err("conflict");
        assert_eq!(e.code, 409);
    }
}
