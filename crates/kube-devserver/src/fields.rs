//! Server-side field validation (`fieldValidation=Strict|Warn|Ignore`): the fields
//! of a request object its schema does not declare. Built-in kinds use the
//! k8s-openapi schemas, custom resources their CRD's structural schema.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::openapi;
use super::registry::{Builtin, ResourceType};

/// What to do about unknown fields.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    /// The default: the write succeeds with a `Warning` header per field.
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("") | Some("Warn") => Some(Self::Warn),
            Some("Ignore") => Some(Self::Ignore),
            Some("Strict") => Some(Self::Strict),
            Some(_) => None,
        }
    }
}

struct Schemas {
    defs: Map<String, Value>,
    roots: HashMap<Builtin, String>,
    object_meta: String,
}

static BUILTIN: LazyLock<Schemas> = LazyLock::new(|| {
    let (defs, roots, object_meta) = openapi::builtin_definitions();
    Schemas {
        defs,
        roots,
        object_meta,
    }
});

/// Follows `$ref` (and a single-element `allOf` wrapping one).
fn resolve<'a>(schema: &'a Value, defs: &'a Map<String, Value>) -> &'a Value {
    let mut cur = schema;
    for _ in 0..16 {
        if let Some(r) = cur.get("$ref").and_then(Value::as_str) {
            match r.rsplit('/').next().and_then(|name| defs.get(name)) {
                Some(next) => cur = next,
                None => return cur,
            }
        } else if let Some([only]) = cur
            .get("allOf")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
        {
            cur = only;
        } else {
            return cur;
        }
    }
    cur
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

struct Walk<'a> {
    defs: &'a Map<String, Value>,
    object_meta: &'a str,
    /// Remove unknown fields as they are found (built-in kinds decode into typed objects).
    remove: bool,
    out: Vec<String>,
}

impl Walk<'_> {
    fn check(&mut self, value: &mut Value, schema: &Value, path: &str, resource_root: bool) {
        let schema = resolve(schema, self.defs);
        match value {
            Value::Object(map) => {
                let preserve =
                    schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
                let embedded = resource_root
                    || schema.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
                let props = schema.get("properties").and_then(Value::as_object);
                let additional = schema.get("additionalProperties");
                if props.is_none() && additional.is_none_or(|a| !a.is_object()) {
                    // A free-form object (no declared fields): anything goes.
                    return;
                }
                let mut unknown = Vec::new();
                for (key, child) in map.iter_mut() {
                    let child_path = join(path, key);
                    if let Some(ps) = props.and_then(|p| p.get(key)) {
                        self.check(child, ps, &child_path, false);
                    } else if embedded && key == "metadata" {
                        let meta_ref = serde_json::json!({"$ref": format!("#/components/schemas/{}", self.object_meta)});
                        self.check(child, &meta_ref, &child_path, false);
                    } else if embedded && (key == "apiVersion" || key == "kind") {
                    } else if let Some(ap) = additional.filter(|a| a.is_object()) {
                        self.check(child, ap, &child_path, false);
                    } else if !(preserve || additional == Some(&Value::Bool(true))) {
                        self.out.push(child_path);
                        unknown.push(key.clone());
                    }
                }
                if self.remove {
                    for key in unknown {
                        map.remove(&key);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item_schema) = schema.get("items") {
                    for (i, item) in items.iter_mut().enumerate() {
                        self.check(item, item_schema, &format!("{path}[{i}]"), false);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The fields of `obj` (in `rt`'s version) its schema does not declare, as `spec.foo`
/// paths. Built-in kinds lose them, as decoding into the typed object drops them;
/// custom resources keep them for pruning by their structural schema.
pub fn unknown_fields(rt: &ResourceType, obj: &mut Value) -> Vec<String> {
    let schemas = &*BUILTIN;
    let mut walk = Walk {
        defs: &schemas.defs,
        object_meta: &schemas.object_meta,
        remove: rt.builtin().is_some(),
        out: Vec::new(),
    };
    match (rt.builtin(), rt.custom()) {
        (Some(b), _) => {
            let Some(root) = schemas.roots.get(&b).and_then(|n| schemas.defs.get(n)) else {
                return Vec::new();
            };
            walk.check(obj, root, "", true);
        }
        (None, Some(c)) => {
            if c.preserve_unknown_fields {
                return Vec::new();
            }
            match &c.schema {
                Some(schema) => walk.check(obj, schema, "", true),
                None => return Vec::new(),
            }
        }
        (None, None) => {}
    }
    walk.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use serde_json::json;

    #[test]
    fn typos_in_builtin_objects_are_found() {
        let reg = Registry::with_builtins();
        let d = reg
            .lookup("apps", "v1", "deployments")
            .expect("deployments");
        let mut obj = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"a": "b"}, "lables": {}},
            "spec": {"replica": 2, "template": {"spec": {"containers": [{"name": "c", "imagee": "x", "resources": {"limits": {"cpu": "1"}}}]}}}});
        assert_eq!(
            unknown_fields(&d, &mut obj),
            [
                "metadata.lables",
                "spec.replica",
                "spec.template.spec.containers[0].imagee"
            ]
        );
        assert!(
            obj["spec"].get("replica").is_none(),
            "built-ins drop unknown fields"
        );
        let cm = reg.lookup("", "v1", "configmaps").expect("configmaps");
        assert!(
            unknown_fields(
                &cm,
                &mut json!({"metadata": {"name": "x"}, "data": {"any-key": "v"}})
            )
            .is_empty()
        );
    }
}
