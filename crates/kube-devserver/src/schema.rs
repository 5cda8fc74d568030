//! What a CRD version's `openAPIV3Schema` means for stored objects, as
//! apiextensions-apiserver applies it: pruning unknown fields, structural
//! defaulting, and the list/map semantics server-side apply and strategic
//! merge patch need.
//!
//! Order on a write, as the real server does it: [`prune_unknown_fields`],
//! then [`apply_defaults`].

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinitionVersion, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use serde_json::{Map, Value};

use crate::patch::{ListSemantics, ListType};

/// The fields of `metadata` (ObjectMeta) a custom resource keeps.
const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// The fields every resource keeps whatever its schema says.
const RESOURCE_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// One CRD version's schema, as [`ListSemantics`] for the patch engine.
#[derive(Clone, Debug, Default)]
pub struct CrdSchema {
    root: JSONSchemaProps,
    status_subresource: bool,
}

impl CrdSchema {
    /// From an `openAPIV3Schema`; `status_subresource` says whether the
    /// version declares `subresources.status`.
    pub fn new(schema: &JSONSchemaProps, status_subresource: bool) -> Self {
        CrdSchema {
            root: schema.clone(),
            status_subresource,
        }
    }

    /// From a CRD version (schema and subresources).
    pub fn from_version(version: &CustomResourceDefinitionVersion) -> Self {
        let root = version
            .schema
            .as_ref()
            .and_then(|s| s.open_api_v3_schema.clone())
            .unwrap_or_default();
        let status_subresource = version
            .subresources
            .as_ref()
            .is_some_and(|s| s.status.is_some());
        CrdSchema {
            root,
            status_subresource,
        }
    }

    pub fn schema(&self) -> &JSONSchemaProps {
        &self.root
    }

    /// The schema of the field at `path` (list items omitted).
    fn node(&self, path: &[&str]) -> Option<&JSONSchemaProps> {
        let mut cur = &self.root;
        for name in path {
            cur = items_of(cur).unwrap_or(cur);
            cur = child_schema(cur, name)?;
        }
        Some(cur)
    }
}

fn items_of(s: &JSONSchemaProps) -> Option<&JSONSchemaProps> {
    match s.items.as_ref()? {
        JSONSchemaPropsOrArray::Schema(s) => Some(s),
        JSONSchemaPropsOrArray::Schemas(list) => list.first(),
    }
}

fn child_schema<'s>(s: &'s JSONSchemaProps, name: &str) -> Option<&'s JSONSchemaProps> {
    if let Some(prop) = s.properties.as_ref().and_then(|p| p.get(name)) {
        return Some(prop);
    }
    match s.additional_properties.as_ref()? {
        JSONSchemaPropsOrBool::Schema(s) => Some(s),
        JSONSchemaPropsOrBool::Bool(_) => None,
    }
}

/// ObjectMeta lists, wherever an embedded object has metadata.
fn object_meta_list(path: &[&str]) -> Option<ListType> {
    match path {
        ["metadata", "ownerReferences"] | [.., "metadata", "ownerReferences"] => {
            Some(ListType::Map(vec!["uid".to_string()]))
        }
        ["metadata", "finalizers"] | [.., "metadata", "finalizers"] => Some(ListType::Set),
        _ => None,
    }
}

impl ListSemantics for CrdSchema {
    fn list_type(&self, path: &[&str]) -> ListType {
        if path.first() == Some(&"metadata") {
            return object_meta_list(path).unwrap_or(ListType::Atomic);
        }
        let Some(node) = self.node(path) else {
            return object_meta_list(path).unwrap_or(ListType::Atomic);
        };
        match node.x_kubernetes_list_type.as_deref() {
            Some("map") => {
                ListType::Map(node.x_kubernetes_list_map_keys.clone().unwrap_or_default())
            }
            Some("set") => ListType::Set,
            _ => ListType::Atomic,
        }
    }

    fn map_is_atomic(&self, path: &[&str]) -> bool {
        if path.first() == Some(&"metadata") {
            return path == ["metadata", "ownerReferences"];
        }
        let Some(node) = self.node(path) else {
            return false;
        };
        // For a list, `path` names its items.
        let node = items_of(node).unwrap_or(node);
        node.x_kubernetes_map_type.as_deref() == Some("atomic")
    }

    fn key_default(&self, list_path: &[&str], key: &str) -> Option<Value> {
        let items = items_of(self.node(list_path)?)?;
        let prop = items.properties.as_ref()?.get(key)?;
        prop.default.as_ref().map(|d| d.0.clone())
    }

    fn status_is_subresource(&self) -> bool {
        self.status_subresource
    }
}

/// Removes the fields the schema does not declare, as apiextensions-apiserver
/// does for structural schemas: `x-kubernetes-preserve-unknown-fields` keeps
/// unknown fields (while still pruning inside declared ones),
/// `additionalProperties` declares every key of a map, and the root and
/// `x-kubernetes-embedded-resource` objects keep `apiVersion`, `kind` and
/// `metadata`, whose unknown fields are dropped as ObjectMeta decoding
/// drops them.
pub fn prune_unknown_fields(obj: &mut Value, schema: &JSONSchemaProps) {
    prune(obj, Some(schema), true);
}

fn prune(x: &mut Value, s: Option<&JSONSchemaProps>, resource: bool) {
    if let Some(s) = s
        && s.x_kubernetes_preserve_unknown_fields == Some(true)
    {
        skip_prune(x, Some(s), resource);
        return;
    }
    match x {
        Value::Object(m) => {
            let Some(s) = s else {
                m.clear();
                return;
            };
            prune_map(m, s, resource, false);
        }
        Value::Array(items) => {
            let item_schema = s.and_then(items_of);
            for item in items {
                prune(item, item_schema, false);
            }
        }
        _ => {}
    }
}

/// Pruning below `x-kubernetes-preserve-unknown-fields`: unknown fields
/// stay, declared ones are still pruned inside.
fn skip_prune(x: &mut Value, s: Option<&JSONSchemaProps>, resource: bool) {
    let Some(s) = s else {
        return;
    };
    match x {
        Value::Object(m) => prune_map(m, s, resource, true),
        Value::Array(items) => {
            for item in items {
                skip_prune(item, items_of(s), false);
            }
        }
        _ => {}
    }
}

fn prune_map(m: &mut Map<String, Value>, s: &JSONSchemaProps, resource: bool, keep_unknown: bool) {
    let embedded = resource || s.x_kubernetes_embedded_resource == Some(true);
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if embedded && RESOURCE_FIELDS.contains(&k.as_str()) {
            if k == "metadata"
                && let Some(meta) = m.get_mut("metadata")
            {
                prune_object_meta(meta);
            }
            continue;
        }
        let declared = s.properties.as_ref().and_then(|p| p.get(&k));
        match (declared, s.additional_properties.as_ref()) {
            (Some(prop), _) => {
                if let Some(v) = m.get_mut(&k) {
                    prune(v, Some(prop), false);
                }
            }
            (None, Some(JSONSchemaPropsOrBool::Schema(ap))) => {
                if let Some(v) = m.get_mut(&k) {
                    prune(v, Some(ap), false);
                }
            }
            (None, Some(JSONSchemaPropsOrBool::Bool(true))) => {}
            _ if keep_unknown => {}
            _ => {
                m.remove(&k);
            }
        }
    }
}

/// Keeps only ObjectMeta's fields.
fn prune_object_meta(meta: &mut Value) {
    if let Value::Object(m) = meta {
        m.retain(|k, _| OBJECT_META_FIELDS.contains(&k.as_str()));
    }
}

/// Applies `default:` values, as apiextensions-apiserver's structural
/// defaulting does: a missing property (or a `null` one that is not
/// `nullable`) takes its default, and defaulting continues inside values,
/// including the defaults just set.
pub fn apply_defaults(obj: &mut Value, schema: &JSONSchemaProps) {
    default(obj, schema);
}

fn default_of(s: &JSONSchemaProps) -> Option<&Value> {
    s.default.as_ref().map(|d| &d.0)
}

fn non_nullable_null(v: &Value, s: &JSONSchemaProps) -> bool {
    v.is_null() && s.nullable != Some(true) && default_of(s).is_some()
}

fn default(x: &mut Value, s: &JSONSchemaProps) {
    match x {
        Value::Object(m) => {
            if let Some(props) = &s.properties {
                for (k, prop) in props {
                    let Some(d) = default_of(prop) else {
                        continue;
                    };
                    let missing = m.get(k).is_none_or(|v| non_nullable_null(v, prop));
                    if missing {
                        m.insert(k.clone(), d.clone());
                    }
                }
            }
            let additional = match &s.additional_properties {
                Some(JSONSchemaPropsOrBool::Schema(ap)) => Some(ap.as_ref()),
                _ => None,
            };
            for (k, v) in m.iter_mut() {
                if let Some(prop) = s.properties.as_ref().and_then(|p| p.get(k)) {
                    default(v, prop);
                } else if let Some(ap) = additional {
                    if non_nullable_null(v, ap)
                        && let Some(d) = default_of(ap)
                    {
                        *v = d.clone();
                    }
                    default(v, ap);
                }
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = items_of(s) else {
                return;
            };
            for item in items {
                if non_nullable_null(item, item_schema)
                    && let Some(d) = default_of(item_schema)
                {
                    *item = d.clone();
                }
                default(item, item_schema);
            }
        }
        _ => {}
    }
}

/// Where a schema is not structural (apiextensions.k8s.io/v1 refuses such
/// CRDs): every node needs a `type`, unless it is `x-kubernetes-int-or-string`
/// or preserves unknown fields. Empty when the schema is structural.
pub fn structural_errors(schema: &JSONSchemaProps) -> Vec<String> {
    let mut errors = Vec::new();
    check_structural(schema, &mut Vec::new(), true, &mut errors);
    errors
}

fn check_structural(
    s: &JSONSchemaProps,
    path: &mut Vec<String>,
    root: bool,
    errors: &mut Vec<String>,
) {
    let here = if path.is_empty() {
        "<root>".to_string()
    } else {
        path.join(".")
    };
    let typed = s.type_.as_deref().is_some_and(|t| !t.is_empty());
    let exempt = s.x_kubernetes_int_or_string == Some(true)
        || s.x_kubernetes_preserve_unknown_fields == Some(true)
        || (root && s.type_.is_none() && s.properties.is_none());
    if !typed && !exempt {
        errors.push(format!(
            "{here}.type: Required value: must not be empty for specified object fields"
        ));
    }
    if s.properties.is_some()
        && matches!(
            s.additional_properties,
            Some(JSONSchemaPropsOrBool::Schema(_))
        )
    {
        errors.push(format!(
            "{here}: properties and additionalProperties are mutually exclusive"
        ));
    }
    for (name, prop) in s.properties.iter().flatten() {
        path.push(format!("properties[{name}]"));
        check_structural(prop, path, false, errors);
        path.pop();
    }
    if let Some(items) = items_of(s) {
        path.push("items".to_string());
        check_structural(items, path, false, errors);
        path.pop();
    }
    if let Some(JSONSchemaPropsOrBool::Schema(ap)) = &s.additional_properties {
        path.push("additionalProperties".to_string());
        check_structural(ap, path, false, errors);
        path.pop();
    }
}

#[cfg(test)]
mod tests;
