//! Server-side apply, after structured-merge-diff's `merge.Updater.Apply`
//! wrapped the way kube-apiserver wraps it (strip server-owned metadata,
//! `before-first-apply`, kubectl's client-side-apply upgrade).

use serde_json::Value;

use super::fieldset::{FieldSet, Path};
use super::managed::{
    Entry, Managed, ManagerId, Operation, managed_fields_of, strip_managed_fields, strip_meta,
};
use super::typed::Typed;
use super::update::{Scope, api_version_of, empty_object, record_update};
use super::{ApplyRequest, PatchError};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Metadata the server owns; an applied configuration never changes it.
const SERVER_OWNED_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
];

enum ApplyError {
    Invalid(String),
    Conflicts(Vec<(ManagerId, Path)>),
}

impl From<ApplyError> for PatchError {
    fn from(e: ApplyError) -> Self {
        match e {
            ApplyError::Invalid(msg) => PatchError::Invalid(msg),
            ApplyError::Conflicts(list) => {
                PatchError::Conflict(list.iter().map(|(id, path)| id.conflict(path)).collect())
            }
        }
    }
}

pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    req: &ApplyRequest<'_>,
) -> Result<Value, PatchError> {
    validate(live, applied)?;
    let typed = Typed::new(req.lists);
    let scope = Scope::new(req.subresource, req.lists);
    let api_version = api_version_of(applied);

    let mut live_obj = live.cloned().unwrap_or_else(|| empty_object(applied));
    let mut managed = Managed::decode(&live_obj)
        .map_err(|e| PatchError::Invalid(format!("failed to decode managed fields: {e}")))?;
    strip_managed_fields(&mut live_obj);

    if managed.is_empty() && live.is_some() {
        // What was set before the first apply belongs to "before-first-apply",
        // so the first applier conflicts with it instead of silently taking over.
        let id = ManagerId::new(
            "before-first-apply",
            Operation::Update,
            &api_version,
            req.subresource,
        );
        let empty = empty_object(&live_obj);
        record_update(&typed, scope, &empty, &live_obj, &mut managed, id, req.now);
    }

    let ctx = Ctx {
        typed: &typed,
        scope,
        req,
        api_version: &api_version,
    };
    let outcome = match ctx.apply(&live_obj, applied, managed.clone(), req.force) {
        Err(ApplyError::Conflicts(conflicts)) if req.manager == "kubectl" => {
            // kubectl upgrading from client-side apply: fields its
            // last-applied annotation still describes are its own.
            match allowed_by_last_applied(&typed, &live_obj) {
                Some(allowed) => {
                    let remaining: Vec<_> = conflicts
                        .into_iter()
                        .filter(|(_, p)| !allowed.has(p))
                        .collect();
                    if remaining.is_empty() {
                        ctx.apply(&live_obj, applied, managed, true)
                    } else {
                        Err(ApplyError::Conflicts(remaining))
                    }
                }
                None => Err(ApplyError::Conflicts(conflicts)),
            }
        }
        other => other,
    };
    let (mut obj, managed) = outcome?;
    if req.manager == "kubectl" {
        sync_last_applied(&mut obj, applied);
    }
    managed.write_to(&mut obj);
    Ok(obj)
}

fn validate(live: Option<&Value>, applied: &Value) -> Result<(), PatchError> {
    let invalid = |m: String| Err(PatchError::Invalid(m));
    if !applied.is_object() {
        return invalid("the applied configuration must be a JSON object".into());
    }
    let field = |obj: &Value, f: &str| {
        obj.get(f)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if field(applied, "apiVersion").is_empty() {
        return invalid("Object 'apiVersion' is missing in the applied configuration".into());
    }
    if field(applied, "kind").is_empty() {
        return invalid("Object 'Kind' is missing in the applied configuration".into());
    }
    if managed_fields_of(applied).is_some() {
        return invalid("metadata.managedFields must be nil".into());
    }
    if let Some(live) = live {
        let (want, got) = (field(live, "apiVersion"), field(applied, "apiVersion"));
        if want != got {
            return invalid(format!(
                "Incorrect version specified in apply patch. Specified patch version: {got}, expected: {want}"
            ));
        }
        let (want, got) = (field(live, "kind"), field(applied, "kind"));
        if want != got {
            return invalid(format!(
                "the applied configuration has kind {got}, the object is a {want}"
            ));
        }
    }
    Ok(())
}

struct Ctx<'a> {
    typed: &'a Typed<'a>,
    scope: Scope,
    req: &'a ApplyRequest<'a>,
    api_version: &'a str,
}

impl Ctx<'_> {
    /// One apply: merge, take the configured fields, prune what this manager
    /// stopped applying, and check that no other owner's field changes.
    fn apply(
        &self,
        live: &Value,
        config: &Value,
        mut managed: Managed,
        force: bool,
    ) -> Result<(Value, Managed), ApplyError> {
        let id = ManagerId::new(
            self.req.manager,
            Operation::Apply,
            self.api_version,
            self.req.subresource,
        );
        let config_set = self
            .typed
            .to_field_set(config, true)
            .map_err(ApplyError::Invalid)?;
        let merged = self
            .typed
            .merge(live, config)
            .map_err(ApplyError::Invalid)?;
        let previous = managed.entries.remove(&id);
        let last = previous.as_ref().map(|e| e.set.clone());
        managed.entries.insert(
            id.clone(),
            Entry {
                set: self.scope.filter(&config_set),
                api_version: self.api_version.to_string(),
                time: previous.and_then(|e| e.time),
            },
        );
        let pruned = self.prune(merged, &managed, last);
        let new = restore_server_metadata(live, self.scope.reset(live, pruned));
        self.take_ownership(live, &new, &mut managed, &id, force)?;

        if let Some(entry) = managed.entries.get_mut(&id) {
            entry.set = strip_meta(&entry.set);
        }
        managed.drop_empty();
        if new == *live {
            return Ok((live.clone(), managed));
        }
        if let Some(entry) = managed.entries.get_mut(&id) {
            entry.time = Some(self.req.now.to_string());
        }
        Ok((new, managed))
    }

    /// Removes what the manager applied last time and no longer applies,
    /// unless someone else owns it (structured-merge-diff's `prune` with
    /// `addBackOwnedItems` and `addBackDanglingItems`).
    fn prune(&self, merged: Value, managed: &Managed, last: Option<FieldSet>) -> Value {
        let Some(last) = last.filter(|s| !s.is_empty()) else {
            return merged;
        };
        let t = self.typed;
        let set_of = |v: &Value| {
            t.to_field_set(v, false)
                .unwrap_or_default()
                .ensure_named_fields_are_members()
        };
        let last = last.ensure_named_fields_are_members();
        let owned = managed
            .entries
            .values()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.set))
            .ensure_named_fields_are_members();
        let merged_set = set_of(&merged);

        let pruned = t.remove_items(&merged, &last);
        let pruned_set = set_of(&pruned);
        let pruned = t.remove_items(&merged, &merged_set.difference(&pruned_set.union(&owned)));
        let pruned_set = set_of(&pruned);
        t.remove_items(
            &merged,
            &merged_set.difference(&pruned_set).intersection(&last),
        )
    }

    /// Other owners of fields whose value changes either conflict or, with
    /// `force`, lose them; removed fields leave every other owner.
    fn take_ownership(
        &self,
        live: &Value,
        new: &Value,
        managed: &mut Managed,
        id: &ManagerId,
        force: bool,
    ) -> Result<(), ApplyError> {
        let filter = |s: &FieldSet| self.scope.filter(s);
        let cmp = self.typed.compare(live, new).exclude(&filter);
        let changed = cmp.modified_or_added();
        let mut conflicts: Vec<(ManagerId, FieldSet)> = Vec::new();
        for (other, entry) in &managed.entries {
            if other == id {
                continue;
            }
            let overlap = entry.set.intersection(&changed);
            if !overlap.is_empty() {
                conflicts.push((other.clone(), overlap));
            }
        }
        if !force && !conflicts.is_empty() {
            return Err(ApplyError::Conflicts(
                conflicts
                    .iter()
                    .flat_map(|(other, set)| set.paths().into_iter().map(|p| (other.clone(), p)))
                    .collect(),
            ));
        }
        for (other, overlap) in conflicts {
            if let Some(entry) = managed.entries.get_mut(&other) {
                entry.set = entry.set.difference(&overlap);
            }
        }
        for (other, entry) in managed.entries.iter_mut() {
            if other != id {
                entry.set = entry.set.difference(&cmp.removed);
            }
        }
        managed.drop_empty();
        Ok(())
    }
}

/// Keeps uid, resourceVersion, creationTimestamp and the other fields only
/// the server sets as they are on the live object.
fn restore_server_metadata(live: &Value, mut new: Value) -> Value {
    let live_meta = live.get("metadata").and_then(Value::as_object);
    let Some(Value::Object(meta)) = new.get_mut("metadata") else {
        return new;
    };
    for field in SERVER_OWNED_METADATA {
        match live_meta.and_then(|m| m.get(*field)) {
            Some(v) => {
                meta.insert((*field).to_string(), v.clone());
            }
            None => {
                meta.remove(*field);
            }
        }
    }
    new
}

/// The fields kubectl's client-side-apply annotation describes that still
/// hold their annotated value (kube-apiserver's `lastAppliedManager`).
fn allowed_by_last_applied(typed: &Typed<'_>, live: &Value) -> Option<FieldSet> {
    let text = live
        .get("metadata")?
        .get("annotations")?
        .get(LAST_APPLIED)?
        .as_str()?;
    if text.is_empty() {
        return None;
    }
    let last: Value = serde_json::from_str(text).ok()?;
    if last.get("apiVersion") != live.get("apiVersion") {
        return None;
    }
    let set = typed.to_field_set(&last, false).ok()?;
    let cmp = typed.compare(&last, live);
    Some(
        set.difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// kubectl's server-side apply keeps an existing client-side-apply
/// annotation current, so switching back to client-side apply works
/// (kube-apiserver's `lastAppliedUpdater`).
fn sync_last_applied(obj: &mut Value, applied: &Value) {
    let has = obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(LAST_APPLIED))
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    if !has {
        return;
    }
    let mut config = applied.clone();
    if let Some(Value::Object(annotations)) = config
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        annotations.remove(LAST_APPLIED);
    }
    let text = format!("{config}\n");
    if let Some(Value::Object(annotations)) = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
    {
        annotations.insert(LAST_APPLIED.to_string(), Value::String(text));
    }
}

#[cfg(test)]
mod tests;
