//! CustomResourceDefinitions: validation, defaulting, the resources a CRD
//! serves, its status conditions, and defaulting of custom objects from the schema.

use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::{Map, Value, json};

use super::names::{NameRule, name_problems};
use super::object;
use super::registry::{CustomInfo, Flavor, Registry, ResourceType, version_priority};
use super::schema::{CrdSchema, structural_errors};
use super::status::FieldError;

pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    object::get_path(v, path)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `SetDefaults_CustomResourceDefinition`: singular, listKind, conversion strategy.
pub fn set_defaults(crd: &mut Value) {
    let kind = str_at(crd, "spec.names.kind").to_string();
    if let Some(names) = crd
        .get_mut("spec")
        .and_then(|s| s.get_mut("names"))
        .and_then(Value::as_object_mut)
    {
        if names
            .get("singular")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            names.insert("singular".into(), kind.to_lowercase().into());
        }
        if names
            .get("listKind")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && !kind.is_empty()
        {
            names.insert("listKind".into(), format!("{kind}List").into());
        }
    }
    if let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) {
        spec.entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
    }
}

/// `ValidateCustomResourceDefinition` (the parts clients run into).
pub fn validate(crd: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = str_at(crd, "spec.group");
    let plural = str_at(crd, "spec.names.plural");
    let kind = str_at(crd, "spec.names.kind");
    let name = object::name(crd);
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        for p in name_problems(NameRule::Subdomain, group) {
            errs.push(FieldError::invalid("spec.group", group, p));
        }
        if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    } else {
        for p in name_problems(NameRule::Label, plural) {
            errs.push(FieldError::invalid("spec.names.plural", plural, p));
        }
    }
    if kind.is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    let scope = str_at(crd, "spec.scope");
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(FieldError::not_supported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }
    let versions = object::get_path(crd, "spec.versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            json!([]),
            "must have exactly one version marked as storage version",
        ));
    } else {
        let storage = versions
            .iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .count();
        if storage != 1 {
            errs.push(FieldError::invalid(
                "spec.versions",
                json!(
                    versions
                        .iter()
                        .map(|v| v["name"].clone())
                        .collect::<Vec<_>>()
                ),
                "must have exactly one version marked as storage version",
            ));
        }
        if !versions
            .iter()
            .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        {
            errs.push(FieldError::invalid(
                "spec.versions",
                json!(
                    versions
                        .iter()
                        .map(|v| v["name"].clone())
                        .collect::<Vec<_>>()
                ),
                "must have at least one served version",
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, v) in versions.iter().enumerate() {
            let vname = v.get("name").and_then(Value::as_str).unwrap_or("");
            if vname.is_empty() {
                errs.push(FieldError::required(
                    &format!("spec.versions[{i}].name"),
                    "",
                ));
            } else if !name_problems(NameRule::Label, vname).is_empty() {
                errs.push(FieldError::invalid(
                    &format!("spec.versions[{i}].name"),
                    vname,
                    "a DNS-1035 label must consist of lower case alphanumeric characters or '-'",
                ));
            } else if !seen.insert(vname.to_string()) {
                errs.push(FieldError::duplicate(
                    &format!("spec.versions[{i}].name"),
                    vname,
                ));
            }
            match object::get_path(v, "schema.openAPIV3Schema") {
                None => errs.push(FieldError::required(
                    &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "schemas are required",
                )),
                Some(schema) => match serde_json::from_value::<JSONSchemaProps>(schema.clone()) {
                    Err(e) => errs.push(FieldError::invalid(
                        &format!("spec.versions[{i}].schema.openAPIV3Schema"),
                        Value::Null,
                        e.to_string(),
                    )),
                    Ok(parsed) => {
                        for problem in structural_errors(&parsed) {
                            errs.push(structural_error(i, &problem));
                        }
                    }
                },
            }
        }
    }
    if let Some(old) = old {
        for (field, path) in [("spec.group", "spec.group"), ("spec.scope", "spec.scope")] {
            if str_at(old, path) != str_at(crd, path) {
                errs.push(FieldError::invalid(
                    field,
                    str_at(crd, path),
                    "field is immutable",
                ));
            }
        }
    }
    errs
}

/// One message of `schema::structural_errors` as a field error under the version's schema.
fn structural_error(version: usize, problem: &str) -> FieldError {
    let base = format!("spec.versions[{version}].schema.openAPIV3Schema");
    let (path, rest) = problem.split_once(": ").unwrap_or((problem, ""));
    let path = path
        .strip_prefix("<root>")
        .unwrap_or(path)
        .trim_start_matches('.');
    let field = if path.is_empty() {
        base
    } else {
        format!("{base}.{path}")
    };
    match rest.strip_prefix("Required value: ") {
        Some(detail) => FieldError::required(&field, detail),
        None => FieldError::forbidden(&field, rest),
    }
}

/// The resources a CRD serves (its served versions), preferred version first.
pub fn resource_types(crd: &Value) -> Vec<ResourceType> {
    let group = str_at(crd, "spec.group").to_string();
    let names = object::get_path(crd, "spec.names")
        .cloned()
        .unwrap_or(json!({}));
    let strings = |key: &str| -> Vec<String> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let mut versions = object::get_path(crd, "spec.versions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    versions.sort_by_key(|v| version_priority(v["name"].as_str().unwrap_or_default()));
    versions
        .into_iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .map(|v| {
            let structural: Option<Arc<JSONSchemaProps>> =
                object::get_path(&v, "schema.openAPIV3Schema")
                    .and_then(|s| serde_json::from_value(s.clone()).ok())
                    .map(Arc::new);
            let has_status = object::get_path(&v, "subresources.status").is_some();
            ResourceType {
                group: group.clone(),
                version: v["name"].as_str().unwrap_or_default().to_string(),
                resource: plural.clone(),
                kind: kind.clone(),
                singular: names["singular"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| kind.to_lowercase()),
                list_kind: names["listKind"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("{kind}List")),
                namespaced: str_at(crd, "spec.scope") == "Namespaced",
                short_names: strings("shortNames"),
                categories: strings("categories"),
                status: has_status,
                storage: (group.clone(), plural.clone()),
                flavor: Flavor::Custom(CustomInfo {
                    crd_name: object::name(crd).to_string(),
                    schema: object::get_path(&v, "schema.openAPIV3Schema").cloned(),
                    structural: structural.clone(),
                    lists: Arc::new(match &structural {
                        Some(s) => CrdSchema::new(s, has_status),
                        None => CrdSchema::default(),
                    }),
                    printer_columns: v
                        .get("additionalPrinterColumns")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                    preserve_unknown_fields: object::get_path(crd, "spec.preserveUnknownFields")
                        .and_then(Value::as_bool)
                        .unwrap_or(false),
                    selectable_fields: v
                        .get("selectableFields")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(|f| f["jsonPath"].as_str())
                                .map(|p| p.trim_start_matches('.').to_string())
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
            }
        })
        .collect()
}

/// Name conflicts with what is already served (other CRDs and built-ins), as a condition message.
pub fn name_conflict(crd: &Value, registry: &Registry) -> Option<(String, String)> {
    let group = str_at(crd, "spec.group");
    let me = object::name(crd);
    let plural = str_at(crd, "spec.names.plural");
    if registry.name_taken(group, plural, me) {
        return Some((
            "PluralConflict".into(),
            format!("\"{plural}\" is already in use"),
        ));
    }
    let shorts: Vec<String> = object::get_path(crd, "spec.names.shortNames")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    for s in shorts {
        if registry.name_taken(group, &s, me) {
            return Some((
                "ShortNamesConflict".into(),
                format!("\"{s}\" is already in use"),
            ));
        }
    }
    let kind = str_at(crd, "spec.names.kind");
    if registry
        .all()
        .any(|t| t.group == group && t.kind == kind && t.custom().is_none_or(|c| c.crd_name != me))
    {
        return Some((
            "KindConflict".into(),
            format!("\"{kind}\" is already in use"),
        ));
    }
    None
}

fn condition(
    old: &[Value],
    ty: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: &str,
) -> Value {
    let previous = old.iter().find(|c| c["type"] == ty);
    let since = match previous {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    json!({"type": ty, "status": status, "lastTransitionTime": since, "reason": reason, "message": message})
}

/// The status the apiextensions controllers would write: accepted names,
/// `NamesAccepted`/`Established` (and `Terminating` while deleting), stored versions.
pub fn compute_status(crd: &Value, conflict: Option<&(String, String)>, now: &str) -> Value {
    let old_status = crd.get("status").cloned().unwrap_or(json!({}));
    let old_conditions = old_status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut status = Map::new();
    let mut conditions = Vec::new();
    match conflict {
        None => {
            let mut names = object::get_path(crd, "spec.names")
                .cloned()
                .unwrap_or(json!({}));
            if let Some(n) = names.as_object_mut() {
                n.retain(|_, v| !v.is_null());
            }
            status.insert("acceptedNames".into(), names);
            conditions.push(condition(
                &old_conditions,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
                now,
            ));
            conditions.push(condition(
                &old_conditions,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
                now,
            ));
        }
        Some((reason, message)) => {
            status.insert(
                "acceptedNames".into(),
                old_status
                    .get("acceptedNames")
                    .cloned()
                    .unwrap_or(json!({"plural": "", "kind": ""})),
            );
            conditions.push(condition(
                &old_conditions,
                "NamesAccepted",
                "False",
                reason,
                message,
                now,
            ));
            conditions.push(condition(
                &old_conditions,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
                now,
            ));
        }
    }
    if object::deletion_timestamp(crd).is_some() {
        conditions.push(condition(
            &old_conditions,
            "Terminating",
            "True",
            "InstanceDeletionInProgress",
            "CustomResource deletion is in progress",
            now,
        ));
    }
    status.insert("conditions".into(), Value::Array(conditions));
    let mut stored: Vec<Value> = old_status["storedVersions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if let Some(storage) = object::get_path(crd, "spec.versions")
        .and_then(Value::as_array)
        .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
        .and_then(|v| v.get("name"))
        && !stored.contains(storage)
    {
        stored.push(storage.clone());
    }
    status.insert("storedVersions".into(), Value::Array(stored));
    Value::Object(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {
                "group": "example.com",
                "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1alpha1", "served": true, "storage": false, "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer", "default": 3}}}}}}}
                ]
            }
        })
    }

    #[test]
    fn served_versions_become_resources_preferred_first() {
        let mut c = crd();
        set_defaults(&mut c);
        assert!(validate(&c, None).is_empty(), "{:?}", validate(&c, None));
        let types = resource_types(&c);
        assert_eq!(types.len(), 2);
        assert_eq!(types[0].version, "v1");
        assert!(types[0].status && !types[1].status);
        assert_eq!(types[0].list_kind, "WidgetList");
        assert_eq!(types[0].singular, "widget");
    }

    #[test]
    fn invalid_crds_are_refused() {
        let mut c = crd();
        c["metadata"]["name"] = json!("wrong.example.com");
        c["spec"]["versions"][0]["storage"] = json!(true);
        let errs = validate(&c, None);
        assert_eq!(errs.len(), 2, "{errs:?}");
    }

    #[test]
    fn status_reports_established() {
        let s = compute_status(&crd(), None, "2024-01-01T00:00:00Z");
        assert_eq!(s["conditions"][1]["type"], "Established");
        assert_eq!(s["conditions"][1]["status"], "True");
        assert_eq!(s["storedVersions"], json!(["v1"]));
    }
}
