//! How the embedded API server changes objects: JSON patch, JSON merge patch,
//! strategic merge patch, server-side apply, and managedFields bookkeeping.
//!
//! Everything here is a pure function over `serde_json::Value`, so the rules
//! can be tested without a server. The rules follow kube-apiserver:
//! `k8s.io/apimachinery/pkg/util/strategicpatch` for strategic merge patch,
//! `sigs.k8s.io/structured-merge-diff` and
//! `k8s.io/apimachinery/pkg/util/managedfields` for server-side apply and
//! field ownership.
//!
//! Schema knowledge comes in through [`ListSemantics`]: use
//! [`builtin_list_semantics`] for built-in kinds and
//! [`crate::schema::CrdSchema`] for custom resources.
//!
//! Known differences from kube-apiserver: `Update` entries mark every map
//! a write creates with `"."` (the real server omits it for Go struct fields
//! that exist in a zero-valued object, e.g. a Deployment's `f:spec`);
//! schema-less map values that are themselves maps are treated as struct
//! fields when computing an applied field set; list items with duplicate
//! keys in a stored object keep only the first for merging.

mod apply;
mod builtin_lists;
mod fieldset;
mod managed;
mod strategic;
mod typed;
mod update;

use serde_json::Value;

pub use builtin_lists::builtin_list_semantics;
pub use fieldset::{FieldSet, PathElement};

/// How the items of a list merge, as the schema declares it
/// (`x-kubernetes-list-type` / strategic-merge `patchMergeKey`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole.
    Atomic,
    /// A set of scalars.
    Set,
    /// Items identified by these keys (for example `["name"]` for containers).
    /// Strategic merge patch merges on the first key (its `patchMergeKey`).
    Map(Vec<String>),
}

/// Schema knowledge the patch engine needs: how the list at a path merges.
/// `path` holds the field names from the object root, list items omitted
/// (for a Deployment's containers: `["spec", "template", "spec", "containers"]`).
///
/// The provided methods have defaults that suit a schema without the
/// annotation in question, so an implementation only needs `list_type`.
pub trait ListSemantics: Send + Sync {
    fn list_type(&self, path: &[&str]) -> ListType;

    /// Whether the object at `path` is replaced as a whole
    /// (`x-kubernetes-map-type: atomic`, Go `+structType=atomic`). For the
    /// items of a list, `path` is the list's path.
    fn map_is_atomic(&self, _path: &[&str]) -> bool {
        false
    }

    /// The value a missing key field of an associative-list item takes (the
    /// schema default, e.g. `protocol: TCP` for ports).
    fn key_default(&self, _list_path: &[&str], _key: &str) -> Option<Value> {
        None
    }

    /// Whether `status` is a subresource: then writes to the main resource
    /// never own or change `.status`, and writes to `/status` only `.status`.
    fn status_is_subresource(&self) -> bool {
        true
    }
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
    #[error("{}", conflict_message(.0))]
    Conflict(Vec<FieldConflict>),
}

/// One field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldConflict {
    pub manager: String,
    /// The field in kubectl's notation, e.g. `.data.key` or `.spec.containers[name="app"].image`.
    pub field: String,
    /// For a manager that wrote with an update (not an apply): the API
    /// version it used, printed as `using v1`.
    pub update_api_version: Option<String>,
    /// The subresource the owning manager wrote through, if any.
    pub subresource: Option<String>,
}

impl FieldConflict {
    /// How the real server names the owner: `"kubectl-edit" using v1`,
    /// `"ctrl" with subresource "status" using v1`, `"helm"`.
    pub fn owner(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if let Some(version) = &self.update_api_version {
            s.push_str(&format!(" using {version}"));
        }
        s
    }

    /// The `message` of the `FieldManagerConflict` status cause.
    pub fn cause_message(&self) -> String {
        format!("conflict with {}", self.owner())
    }
}

/// The message kube-apiserver puts in the 409 `Status`.
fn conflict_message(conflicts: &[FieldConflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.cause_message(),
            only.field
        );
    }
    let mut by_owner: std::collections::BTreeMap<String, Vec<&str>> = Default::default();
    for c in conflicts {
        by_owner.entry(c.owner()).or_default().push(&c.field);
    }
    let mut lines = Vec::new();
    for (owner, fields) in by_owner {
        lines.push(format!("conflicts with {owner}:"));
        lines.extend(fields.iter().map(|f| format!("- {f}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
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

/// RFC 6902 JSON patch, as the API server applies it: a `test` expecting
/// `null` passes on a missing path (Kubernetes' json-patch library treats a
/// missing value as null; kube-runtime's finalizer helper relies on it).
pub fn json_patch(live: &Value, patch: &Value) -> Result<Value, PatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(|e| PatchError::Invalid(e.to_string()))?;
    let mut out = live.clone();
    for operation in patch.0 {
        if let json_patch::PatchOperation::Test(test) = &operation
            && test.value.is_null()
            && out.pointer(test.path.as_str()).is_none()
        {
            continue;
        }
        json_patch::patch(&mut out, &[operation])
            .map_err(|e| PatchError::Invalid(e.to_string()))?;
    }
    Ok(out)
}

/// RFC 7386 JSON merge patch.
pub fn merge_patch(live: &Value, patch: &Value) -> Value {
    let mut out = live.clone();
    json_patch::merge(&mut out, patch);
    out
}

/// Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
///
/// Maps merge recursively and `null` deletes; lists merge as `lists` says
/// (`Map` by the first key, `Set` as a union, `Atomic` replaced); the
/// directives `$patch: replace|delete`, `$retainKeys`,
/// `$setElementOrder/<field>` and `$deleteFromPrimitiveList/<field>` are
/// honoured. Like kube-apiserver, `$patch: merge` is refused (the server has
/// never implemented it).
pub fn strategic_merge_patch(
    live: &Value,
    patch: &Value,
    lists: &dyn ListSemantics,
) -> Result<Value, PatchError> {
    strategic::apply(live, patch, lists).map_err(PatchError::Invalid)
}

/// Server-side apply of `applied` (the manager's full intent) onto `live`
/// (None when the object does not exist yet). Returns the new object with
/// `metadata.managedFields` updated.
pub fn server_side_apply(
    live: Option<&Value>,
    applied: &Value,
    req: &ApplyRequest<'_>,
) -> Result<Value, PatchError> {
    apply::server_side_apply(live, applied, req)
}

/// Records in `new.metadata.managedFields` that `manager` set the fields that
/// differ between `old` and `new` with an `Update` operation (create, update,
/// and non-apply patches), taking them from other managers.
///
/// `new.metadata.managedFields` as the client sent it is honoured the way
/// kube-apiserver does: a valid non-empty list replaces the stored one, `[]`
/// or `[{}]` resets ownership, anything else falls back to `old`'s. An update
/// of an object that has no managedFields does not start tracking (only
/// create and apply do).
///
/// This uses [`builtin_list_semantics`] for the object's kind; call
/// [`track_update_with`] to pass a CRD's schema.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
) {
    let (group, kind) = group_kind(new);
    let lists = builtin_list_semantics(&group, &kind);
    track_update_with(old, new, manager, subresource, now, lists.as_ref());
}

/// [`track_update`] with explicit schema knowledge.
pub fn track_update_with(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
    now: &str,
    lists: &dyn ListSemantics,
) {
    update::track_update(old, new, manager, subresource, now, lists);
}

/// The API group (empty for the core group) and kind of an object.
fn group_kind(obj: &Value) -> (String, String) {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let group = api_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    (group.to_string(), kind.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_patch_tests_for_null_pass_on_missing_paths() {
        let live = serde_json::json!({"metadata": {"name": "a"}});
        let patch = serde_json::json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["x"]}
        ]);
        let out = super::json_patch(&live, &patch).expect("applies");
        assert_eq!(out["metadata"]["finalizers"][0], "x");
        let fails = serde_json::json!([{"op": "test", "path": "/metadata/name", "value": null}]);
        assert!(
            super::json_patch(&live, &fails).is_err(),
            "a present value is not null"
        );
    }

    use super::*;

    fn conflict(manager: &str, field: &str, version: Option<&str>) -> FieldConflict {
        FieldConflict {
            manager: manager.to_string(),
            field: field.to_string(),
            update_api_version: version.map(str::to_string),
            subresource: None,
        }
    }

    #[test]
    fn one_conflict_message_matches_kube_apiserver() {
        let err = PatchError::Conflict(vec![conflict("kubectl-edit", ".data.key", Some("v1"))]);
        assert_eq!(
            err.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.key"#
        );
    }

    #[test]
    fn several_conflicts_are_grouped_by_manager() {
        let err = PatchError::Conflict(vec![
            conflict("b", ".data.x", None),
            conflict("a", ".data.y", None),
            conflict("b", ".data.z", None),
        ]);
        assert_eq!(
            err.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .data.y\nconflicts with \"b\":\n- .data.x\n- .data.z"
        );
    }

    #[test]
    fn group_kind_splits_api_version() {
        let d = serde_json::json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        assert_eq!(
            group_kind(&d),
            ("apps".to_string(), "Deployment".to_string())
        );
        let c = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(group_kind(&c), (String::new(), "ConfigMap".to_string()));
    }
}
