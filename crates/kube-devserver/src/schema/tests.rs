//! Pruning, defaulting and list semantics from the CustomResourceDefinition
//! documentation ("Specifying a structural schema", "Field pruning",
//! "Defaulting", "Listing and map types").

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinitionVersion, JSONSchemaProps,
};
use serde_json::{Value, json};

use super::*;
use crate::patch::{ApplyRequest, PatchError, server_side_apply};

fn schema(v: Value) -> JSONSchemaProps {
    serde_json::from_value(v).expect("valid JSONSchemaProps")
}

/// A CronTab-like schema, as in the CRD documentation.
fn crontab() -> JSONSchemaProps {
    schema(json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "cronSpec": {"type": "string"},
                    "image": {"type": "string"},
                    "replicas": {"type": "integer", "default": 1},
                    "policy": {
                        "type": "object",
                        "default": {},
                        "properties": {"restart": {"type": "string", "default": "Always"}}
                    },
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ports": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {"type": "object", "properties": {
                            "port": {"type": "integer"},
                            "protocol": {"type": "string", "default": "TCP"},
                            "name": {"type": "string"}
                        }}
                    },
                    "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                    "args": {"type": "array", "items": {"type": "string"}},
                    "selector": {
                        "type": "object", "x-kubernetes-map-type": "atomic",
                        "properties": {"app": {"type": "string"}, "tier": {"type": "string"}}
                    },
                    "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true,
                              "properties": {"known": {"type": "object", "properties": {"a": {"type": "string"}}}}},
                    "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                 "properties": {"spec": {"type": "object", "properties": {"x": {"type": "string"}}}}},
                    "nullableThing": {"type": "string", "nullable": true, "default": "d"},
                    "plainNull": {"type": "string", "default": "d"}
                }
            },
            "status": {
                "type": "object",
                "properties": {
                    "conditions": {
                        "type": "array",
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["type"],
                        "items": {"type": "object", "properties": {
                            "type": {"type": "string"}, "status": {"type": "string"}
                        }}
                    }
                }
            }
        }
    }))
}

#[test]
fn unknown_fields_are_pruned_but_resource_fields_stay() {
    let mut obj = json!({
        "apiVersion": "stable.example.com/v1", "kind": "CronTab",
        "metadata": {"name": "x", "labels": {"a": "b"}, "someRandomField": 42},
        "spec": {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image", "someRandomField": 42},
        "unknownTop": true
    });
    prune_unknown_fields(&mut obj, &crontab());
    assert_eq!(
        obj,
        json!({
            "apiVersion": "stable.example.com/v1", "kind": "CronTab",
            "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"cronSpec": "* * * * */5", "image": "my-awesome-cron-image"}
        })
    );
}

#[test]
fn preserve_unknown_fields_keeps_unknown_but_prunes_declared_children() {
    let mut obj =
        json!({"spec": {"extra": {"anything": {"deep": 1}, "known": {"a": "x", "b": "dropped"}}}});
    prune_unknown_fields(&mut obj, &crontab());
    assert_eq!(
        obj,
        json!({"spec": {"extra": {"anything": {"deep": 1}, "known": {"a": "x"}}}})
    );
}

#[test]
fn additional_properties_declare_every_map_key() {
    let mut obj = json!({"spec": {"labels": {"x": "1", "y": "2"}}});
    prune_unknown_fields(&mut obj, &crontab());
    assert_eq!(obj, json!({"spec": {"labels": {"x": "1", "y": "2"}}}));
}

#[test]
fn embedded_resources_keep_type_and_object_meta() {
    let mut obj = json!({"spec": {"template": {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "bogus": 1},
        "spec": {"x": "y", "z": 1},
        "other": 1
    }}});
    prune_unknown_fields(&mut obj, &crontab());
    assert_eq!(
        obj,
        json!({"spec": {"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": "y"}}}})
    );
}

#[test]
fn a_schema_without_properties_prunes_everything_but_the_resource_fields() {
    let mut obj =
        json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}, "spec": {"a": 1}});
    prune_unknown_fields(&mut obj, &schema(json!({"type": "object"})));
    assert_eq!(
        obj,
        json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"}})
    );
}

#[test]
fn defaults_fill_missing_and_non_nullable_null_fields() {
    let mut obj = json!({"spec": {"cronSpec": "x", "nullableThing": null, "plainNull": null}});
    apply_defaults(&mut obj, &crontab());
    assert_eq!(
        obj["spec"],
        json!({
            "cronSpec": "x", "replicas": 1,
            // A defaulted object is defaulted inside too.
            "policy": {"restart": "Always"},
            "nullableThing": null, "plainNull": "d"
        })
    );
}

#[test]
fn defaults_apply_inside_list_items_and_keep_set_values() {
    let mut obj =
        json!({"spec": {"replicas": 3, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}});
    apply_defaults(&mut obj, &crontab());
    assert_eq!(obj["spec"]["replicas"], 3);
    assert_eq!(
        obj["spec"]["ports"],
        json!([{"port": 80, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}])
    );
    assert!(obj.get("status").is_none(), "no default creates status");
}

#[test]
fn list_semantics_come_from_the_annotations() {
    let s = CrdSchema::new(&crontab(), true);
    assert_eq!(
        s.list_type(&["spec", "ports"]),
        ListType::Map(vec!["port".into(), "protocol".into()])
    );
    assert_eq!(s.list_type(&["spec", "tags"]), ListType::Set);
    assert_eq!(s.list_type(&["spec", "args"]), ListType::Atomic);
    assert_eq!(
        s.list_type(&["status", "conditions"]),
        ListType::Map(vec!["type".into()])
    );
    assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
    assert_eq!(
        s.list_type(&["metadata", "ownerReferences"]),
        ListType::Map(vec!["uid".into()])
    );
    assert_eq!(s.list_type(&["spec", "unknown"]), ListType::Atomic);
    assert!(s.map_is_atomic(&["spec", "selector"]));
    assert!(!s.map_is_atomic(&["spec", "policy"]));
    assert_eq!(
        s.key_default(&["spec", "ports"], "protocol"),
        Some(json!("TCP"))
    );
    assert_eq!(s.key_default(&["spec", "ports"], "port"), None);
    assert!(s.status_is_subresource());
}

#[test]
fn from_version_reads_schema_and_status_subresource() {
    let version: CustomResourceDefinitionVersion = serde_json::from_value(json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": crontab()},
        "subresources": {"status": {}}
    }))
    .expect("valid version");
    let s = CrdSchema::from_version(&version);
    assert!(s.status_is_subresource());
    assert_eq!(s.list_type(&["spec", "tags"]), ListType::Set);

    let without: CustomResourceDefinitionVersion = serde_json::from_value(json!({
        "name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": crontab()}
    }))
    .expect("valid version");
    assert!(!CrdSchema::from_version(&without).status_is_subresource());
}

#[test]
fn structural_check_requires_types() {
    assert!(
        structural_errors(&crontab()).is_empty(),
        "{:?}",
        structural_errors(&crontab())
    );
    let bad = schema(
        json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
    );
    let errors = structural_errors(&bad);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].starts_with("properties[spec].type"), "{errors:?}");
}

fn cr(spec: Value) -> Value {
    json!({"apiVersion": "stable.example.com/v1", "kind": "CronTab",
           "metadata": {"name": "c", "namespace": "default"}, "spec": spec})
}

/// Server-side apply on a custom resource uses the schema's list types:
/// ports keyed by port and protocol (defaulted), tags as a set.
#[test]
fn server_side_apply_on_a_custom_resource_uses_its_list_types() {
    let s = CrdSchema::new(&crontab(), true);
    let req = |manager| ApplyRequest {
        manager,
        force: false,
        subresource: None,
        lists: &s,
        now: "2024-05-01T10:00:00Z",
    };
    let live = server_side_apply(
        None,
        &cr(json!({"ports": [{"port": 80, "name": "http"}], "tags": ["a"], "args": ["x"]})),
        &req("alice"),
    )
    .expect("create");
    let f = &live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"];
    assert!(
        f["f:ports"]
            .get("k:{\"port\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "{f}"
    );
    assert_eq!(f["f:tags"], json!({"v:\"a\"": {}}));
    assert_eq!(f["f:args"], json!({}));

    let both = server_side_apply(
        Some(&live),
        &cr(json!({"ports": [{"port": 443}], "tags": ["b"]})),
        &req("bob"),
    )
    .expect("bob adds his items");
    assert_eq!(both["spec"]["tags"], json!(["a", "b"]));
    assert_eq!(
        both["spec"]["ports"],
        json!([{"port": 80, "name": "http"}, {"port": 443}])
    );

    match server_side_apply(Some(&both), &cr(json!({"args": ["y"]})), &req("bob")) {
        Err(PatchError::Conflict(c)) => assert_eq!(c[0].field, ".spec.args"),
        other => panic!("expected a conflict on the atomic list, got {other:?}"),
    }
}
