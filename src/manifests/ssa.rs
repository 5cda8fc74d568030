//! How one object is applied, as its manifest's annotations say (Flux's
//! `kustomize.toolkit.fluxcd.io/ssa` and `force`):
//! * `sigil.dev/ssa: Merge`: fields other managers own on the live object are left out of the
//!   apply, so sigil never takes them over;
//! * `sigil.dev/ssa: IfNotPresent`: created when absent, never updated;
//! * `sigil.dev/ssa: Ignore`: never applied;
//! * `sigil.dev/force: enabled`: an update the API server refuses because a field is immutable
//!   deletes the object and creates it again.
//!
//! Any other `ssa` value (or none) applies the whole manifest, taking over conflicting fields.

use serde_json::Value;

use super::client::ApiError;
use super::fields::without_others_fields;
use super::ignore::respect_live;
use super::object::annotation;
use super::plan::Desired;
use super::{FORCE_ANNOTATION, SSA_ANNOTATION};

/// The `sigil.dev/ssa` policy of a manifest.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Policy {
    #[default]
    Override,
    Merge,
    IfNotPresent,
    Ignore,
}

/// The manifest's policy (values case-insensitive).
pub fn policy(object: &Value) -> Policy {
    match annotation(object, SSA_ANNOTATION).map(str::to_ascii_lowercase) {
        Some(v) if v == "merge" => Policy::Merge,
        Some(v) if v == "ifnotpresent" => Policy::IfNotPresent,
        Some(v) if v == "ignore" => Policy::Ignore,
        _ => Policy::Override,
    }
}

/// `sigil.dev/force: enabled` (or `true`).
pub fn force(object: &Value) -> bool {
    annotation(object, FORCE_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("enabled") || v.eq_ignore_ascii_case("true"))
}

/// The API server's answer to a change of an immutable field (422 Invalid, "field is
/// immutable" or "may not change once set").
pub fn is_immutable_error(err: &ApiError) -> bool {
    err.code == 422
        && (err.message.contains("immutable") || err.message.contains("may not change once set"))
}

/// What is applied to the existing `live` object: the manifest with its ignored fields at their
/// live values and, with `Merge`, without the fields other managers own.
pub fn body_for_existing(desired: &Desired, live: &Value) -> Value {
    let mut body = desired.object.clone();
    respect_live(&mut body, live, &desired.ignored);
    if policy(&desired.object) == Policy::Merge {
        without_others_fields(&mut body, live, crate::api::FIELD_MANAGER);
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn annotations_choose_the_policy() {
        let with = |key: &str, value: &str| json!({"metadata": {"annotations": {key: value}}});
        assert_eq!(policy(&with(SSA_ANNOTATION, "Merge")), Policy::Merge);
        assert_eq!(
            policy(&with(SSA_ANNOTATION, "ifnotpresent")),
            Policy::IfNotPresent
        );
        assert_eq!(policy(&with(SSA_ANNOTATION, "Ignore")), Policy::Ignore);
        assert_eq!(policy(&with(SSA_ANNOTATION, "other")), Policy::Override);
        assert_eq!(policy(&json!({})), Policy::Override);
        assert!(force(&with(FORCE_ANNOTATION, "enabled")));
        assert!(!force(&with(FORCE_ANNOTATION, "disabled")));
        let refused = ApiError {
            code: 422,
            reason: "Invalid".into(),
            message: "Deployment.apps \"web\" is invalid: spec.selector: Invalid value: {}: field is immutable".into(),
        };
        assert!(is_immutable_error(&refused));
        assert!(!is_immutable_error(&ApiError {
            code: 409,
            ..refused
        }));
    }
}
