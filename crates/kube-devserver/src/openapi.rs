//! OpenAPI v3 (`/openapi/v3` and one document per group/version), as far as
//! kubectl uses it: `explain`, server-side field validation detection (the
//! `fieldValidation` parameter on PATCH operations) and patch-type detection.
//!
//! Built-in schemas come from k8s-openapi's schemars implementations; custom
//! resources use their CRD's `openAPIV3Schema`. PATCH operations of built-ins do
//! not list strategic merge patch: the generated schemas carry no patch-merge-key
//! metadata, so kubectl falls back to its compiled-in types, which do.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::{apps, authorization, coordination, core, events, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::discovery::KUBE_VERSION;
use super::registry::{Builtin, Flavor, Registry, ResourceType};

fn add<T: JsonSchema>(generator: &mut SchemaGenerator) -> String {
    generator.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// Adds a built-in kind's schema (and what it references) to the generator; returns its name.
fn builtin_schema(b: Builtin, g: &mut SchemaGenerator) -> String {
    match b {
        Builtin::Namespace => add::<core::v1::Namespace>(g),
        Builtin::Secret => add::<core::v1::Secret>(g),
        Builtin::ConfigMap => add::<core::v1::ConfigMap>(g),
        Builtin::ServiceAccount => add::<core::v1::ServiceAccount>(g),
        Builtin::Service => add::<core::v1::Service>(g),
        Builtin::CoreEvent => add::<core::v1::Event>(g),
        Builtin::EventsV1 => add::<events::v1::Event>(g),
        Builtin::Deployment => add::<apps::v1::Deployment>(g),
        Builtin::StatefulSet => add::<apps::v1::StatefulSet>(g),
        Builtin::DaemonSet => add::<apps::v1::DaemonSet>(g),
        Builtin::PodDisruptionBudget => add::<policy::v1::PodDisruptionBudget>(g),
        Builtin::NetworkPolicy => add::<networking::v1::NetworkPolicy>(g),
        Builtin::Lease => add::<coordination::v1::Lease>(g),
        Builtin::Role => add::<rbac::v1::Role>(g),
        Builtin::RoleBinding => add::<rbac::v1::RoleBinding>(g),
        Builtin::ClusterRole => add::<rbac::v1::ClusterRole>(g),
        Builtin::ClusterRoleBinding => add::<rbac::v1::ClusterRoleBinding>(g),
        Builtin::Crd => add::<CustomResourceDefinition>(g),
        Builtin::SelfSubjectAccessReview => add::<authorization::v1::SelfSubjectAccessReview>(g),
        Builtin::SubjectAccessReview => add::<authorization::v1::SubjectAccessReview>(g),
        Builtin::TokenReview => add::<k8s_openapi::api::authentication::v1::TokenReview>(g),
    }
}

/// Every built-in kind's schema: the definitions, each kind's root definition name, and ObjectMeta's.
pub fn builtin_definitions() -> (
    Map<String, Value>,
    std::collections::HashMap<Builtin, String>,
    String,
) {
    use Builtin::*;
    let mut generator = SchemaSettings::openapi3().into_generator();
    let meta = add::<ObjectMeta>(&mut generator);
    let roots = [
        Namespace,
        Secret,
        ConfigMap,
        ServiceAccount,
        Service,
        CoreEvent,
        EventsV1,
        Deployment,
        StatefulSet,
        DaemonSet,
        Lease,
        Role,
        RoleBinding,
        ClusterRole,
        ClusterRoleBinding,
        Crd,
        SelfSubjectAccessReview,
        SubjectAccessReview,
        TokenReview,
    ]
    .into_iter()
    .map(|b| (b, builtin_schema(b, &mut generator)))
    .collect();
    (generator.take_definitions(true), roots, meta)
}

/// `com.example.v1.Widget` for group `example.com`.
fn custom_schema_name(t: &ResourceType) -> String {
    let reversed: Vec<&str> = t.group.split('.').rev().collect();
    format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
}

fn custom_schema(schema: Option<&Value>, meta_ref: &str) -> Value {
    let mut s = schema.cloned().unwrap_or_else(|| json!({"type": "object"}));
    if let Some(obj) = s.as_object_mut() {
        let props = obj.entry("properties").or_insert_with(|| json!({}));
        if let Some(props) = props.as_object_mut() {
            props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources"}));
            props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds"}));
            props.insert("metadata".into(), json!({"allOf": [{"$ref": meta_ref}], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
        }
    }
    s
}

fn gvk(t: &ResourceType) -> Value {
    json!({"group": t.group, "version": t.version, "kind": t.kind})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params(patch: bool) -> Vec<Value> {
    let mut p = vec![
        query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted. Valid values are: - All: all dry run stages will be processed",
        ),
        query_param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
        ),
    ];
    if patch {
        p.push(json!({"name": "force", "in": "query", "description": "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people.", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    p
}

fn operation(
    t: &ResourceType,
    action: &str,
    id: &str,
    schema_ref: &str,
    body: Option<Vec<&str>>,
    params: Vec<Value>,
) -> Value {
    let mut op = json!({
        "operationId": id,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(t),
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": schema_ref}}}}},
    });
    if !params.is_empty() {
        op["parameters"] = Value::Array(params);
    }
    if let Some(types) = body {
        let content: Map<String, Value> = types
            .into_iter()
            .map(|ct| (ct.to_string(), json!({"schema": {"$ref": schema_ref}})))
            .collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

fn paths_for(t: &ResourceType, schema_ref: &str, paths: &mut Map<String, Value>) {
    let base = if t.group.is_empty() {
        format!("/api/{}", t.version)
    } else {
        format!("/apis/{}/{}", t.group, t.version)
    };
    let name_param =
        json!({"name": "name", "in": "path", "required": true, "schema": {"type": "string"}});
    let ns_param =
        json!({"name": "namespace", "in": "path", "required": true, "schema": {"type": "string"}});
    let (collection, mut common) = if t.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", t.resource),
            vec![ns_param],
        )
    } else {
        (format!("{base}/{}", t.resource), vec![])
    };
    let id = format!("{}{}", t.kind, t.version);
    let patch_types = vec![
        "application/json-patch+json",
        "application/merge-patch+json",
        "application/apply-patch+yaml",
    ];
    paths.insert(
        collection.clone(),
        json!({
            "get": operation(t, "list", &format!("list{id}"), schema_ref, None, vec![]),
            "post": operation(t, "post", &format!("create{id}"), schema_ref, Some(vec!["*/*"]), write_params(false)),
            "delete": operation(t, "deletecollection", &format!("deleteCollection{id}"), schema_ref, None, vec![]),
            "parameters": common.clone(),
        }),
    );
    common.push(name_param);
    paths.insert(
        format!("{collection}/{{name}}"),
        json!({
            "get": operation(t, "get", &format!("read{id}"), schema_ref, None, vec![]),
            "put": operation(t, "put", &format!("replace{id}"), schema_ref, Some(vec!["*/*"]), write_params(false)),
            "patch": operation(t, "patch", &format!("patch{id}"), schema_ref, Some(patch_types.clone()), write_params(true)),
            "delete": operation(t, "delete", &format!("delete{id}"), schema_ref, None, vec![]),
            "parameters": common.clone(),
        }),
    );
    if t.status {
        paths.insert(
            format!("{collection}/{{name}}/status"),
            json!({
                "get": operation(t, "get", &format!("read{id}Status"), schema_ref, None, vec![]),
                "put": operation(t, "put", &format!("replace{id}Status"), schema_ref, Some(vec!["*/*"]), write_params(false)),
                "patch": operation(t, "patch", &format!("patch{id}Status"), schema_ref, Some(patch_types), write_params(true)),
                "parameters": common,
            }),
        );
    }
    if t.namespaced {
        paths.insert(
            format!("{base}/{}", t.resource),
            json!({"get": operation(t, "list", &format!("list{id}ForAllNamespaces"), schema_ref, None, vec![])}),
        );
    }
}

/// The OpenAPI v3 document of one group/version.
pub fn document(types: &[Arc<ResourceType>]) -> Value {
    let mut generator = SchemaSettings::openapi3().into_generator();
    let meta_name = add::<ObjectMeta>(&mut generator);
    let meta_ref = format!("#/components/schemas/{meta_name}");
    let mut kinds: BTreeMap<String, Value> = BTreeMap::new();
    let mut customs: BTreeMap<String, Value> = BTreeMap::new();
    let mut paths = Map::new();
    for t in types {
        let name = match &t.flavor {
            Flavor::Builtin(b) => builtin_schema(*b, &mut generator),
            Flavor::Custom(c) => {
                let name = custom_schema_name(t);
                customs.insert(name.clone(), custom_schema(c.schema.as_ref(), &meta_ref));
                name
            }
        };
        if let Some(list) = kinds
            .entry(name.clone())
            .or_insert_with(|| json!([]))
            .as_array_mut()
        {
            list.push(gvk(t));
        }
        paths_for(t, &format!("#/components/schemas/{name}"), &mut paths);
    }
    let mut schemas = generator.take_definitions(true);
    schemas.extend(customs);
    for (name, gvks) in kinds {
        if let Some(s) = schemas.get_mut(&name).and_then(Value::as_object_mut) {
            s.insert("x-kubernetes-group-version-kind".into(), gvks);
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

/// The URL path part (`api/v1`, `apis/apps/v1`) of a group/version.
pub fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

pub fn hash(doc: &Value) -> String {
    let digest = Sha256::digest(serde_json::to_vec(doc).unwrap_or_default());
    hex::encode_upper(&digest[..32])
}

/// `/openapi/v3`: one entry per group/version, with a content hash in the URL.
pub fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (group, versions) in reg.groups() {
        for v in versions {
            let doc = document(&reg.group_version(group, v));
            let p = gv_path(group, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
            );
        }
    }
    json!({"paths": paths})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_declare_field_validation_on_patch() {
        let reg = Registry::with_builtins();
        let doc = document(&reg.group_version("", "v1"));
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/configmaps/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "ConfigMap"
        );
        let params = patch["parameters"].as_array().expect("params");
        assert!(
            params
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        let cm = &doc["components"]["schemas"]["io.k8s.api.core.v1.ConfigMap"];
        assert_eq!(
            cm["x-kubernetes-group-version-kind"][0]["kind"],
            "ConfigMap"
        );
        assert!(cm["properties"]["data"].is_object());
        assert!(
            doc["components"]["schemas"]["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]
                .is_object()
        );
        let idx = index(&reg);
        assert!(
            idx["paths"]["apis/apps/v1"]["serverRelativeURL"]
                .as_str()
                .expect("url")
                .starts_with("/openapi/v3/apis/apps/v1?hash=")
        );
    }
}
