//! How the embedded API server changes objects: JSON patch, JSON merge patch,
//! strategic merge patch, server-side apply, and managedFields bookkeeping.
//!
//! Everything here is a pure function over `serde_json::Value`, so the rules
//! can be tested without a server.

use serde_json::Value;

/// How the items of a list merge, as the schema declares it
/// (`x-kubernetes-list-type` / strategic-merge `patchMergeKey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// Items identified by these keys (for example `["name"]` for containers).
    Map(Vec<String>),
}

/// Schema knowledge the patch engine needs: how the list at a path merges.
/// `path` holds the field names from the object root, list items omitted
/// (for a Deployment's containers: `["spec", "template", "spec", "containers"]`).
pub trait ListSemantics: Send + Sync {
    fn list_type(&self, path: &[&str]) -> ListType;
}

/// Every list is atomic: the semantics of a CRD without list annotations.
pub struct AtomicLists;

impl ListSemantics for AtomicLists {
    fn list_type(&self, _path: &[&str]) -> ListType {
        ListType::Atomic
    }
}

/// A patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch document is malformed or does not apply (HTTP 422/400).
    #[error("{0}")]
    Invalid(String),
    /// Server-side apply found fields owned by other managers with other values (HTTP 409).
    #[error("Apply failed with {} conflict(s): {}", .0.len(), .0.iter().map(|c| format!("conflict with \"{}\": {}", c.manager, c.field)).collect::<Vec<_>>().join("; "))]
    Conflict(Vec<FieldConflict>),
}

/// One field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    pub manager: String,
    /// The field in kubectl's notation, e.g. `.data.key` or `.spec.containers[name="app"].image`.
    pub field: String,
}

/// What server-side apply needs besides the objects.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    /// `Some("status")` when applying to the status subresource.
    pub subresource: Option<&'a str>,
    pub lists: &'a dyn ListSemantics,
    /// RFC 3339 time recorded in managedFields.
    pub now: &'a str,
}

/// RFC 6902 JSON patch.
pub fn json_patch(live: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Invalid(e.to_string()))?;
    let mut out = live.clone();
    json_patch::patch(&mut out, &patch).map_err(|e| PatchError::Invalid(e.to_string()))?;
    Ok(out)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(live: &Value, patch: &Value) -> Value {
    let mut out = live.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
pub fn strategic_merge_patch(
    live: &Value,
    patch: &Value,
    _lists: &dyn ListSemantics,
) -> Result<Value, PatchError> {
    // Placeholder until the strategic rules land: plain merge semantics.
    Ok(merge_patch(live, patch))
}

/// Server-side apply of `applied` (the manager's full intent) onto `live`
/// (None when the object does not exist yet). Returns the new object with
/// `metadata.managedFields` updated.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    _req: &ApplyRequest<'_>,
) -> Result<Value, PatchError> {
    // Placeholder until field ownership lands: merge semantics.
    Ok(match live {
        Some(live) => merge_patch(live, applied),
        None => applied.clone(),
    })
}

/// Records in `new.metadata.managedFields` that `manager` set the fields that
/// differ between `old` and `new` with an `Update` operation (create, update,
/// and non-apply patches), taking them from other managers.
pub fn track_update(
    _old: Option<&Value>,
    _new: &mut Value,
    _manager: &str,
    _subresource: Option<&str>,
    _now: &str,
) {
}
