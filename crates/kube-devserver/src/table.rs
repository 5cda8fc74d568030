//! Server-side printing: `meta.k8s.io` Tables for `kubectl get`, and
//! `PartialObjectMetadata` for metadata-only clients.

use serde_json::{Value, json};

use super::clock::{human_duration, seconds_since};
use super::jsonpath;
use super::object;
use super::registry::{Builtin, ResourceType};

/// How a response body is shaped, from the Accept header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Object,
    /// `meta.k8s.io/{version}` Table.
    Table(&'static str),
    /// `meta.k8s.io/{version}` PartialObjectMetadata(List).
    Metadata(&'static str),
}

/// `includeObject` of a Table request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Include {
    None,
    Metadata,
    Object,
}

impl Include {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Picks the response shape from an Accept header; None when nothing offered is acceptable.
pub fn negotiate(accept: Option<&str>) -> Option<Output> {
    let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
        return Some(Output::Object);
    };
    for entry in accept.split(',') {
        let params: Vec<String> = entry
            .split(';')
            .map(|p| p.trim().replace(' ', ""))
            .collect();
        let media = params.first().map(String::as_str).unwrap_or("");
        let param = |k: &str| {
            params
                .iter()
                .find_map(|p| p.strip_prefix(&format!("{k}=")).map(String::from))
        };
        match media {
            "application/json" | "application/yaml" | "*/*" | "application/*" => {}
            _ => continue,
        }
        let version = match param("v").as_deref() {
            Some("v1beta1") => "v1beta1",
            _ => "v1",
        };
        match (param("as").as_deref(), param("g").as_deref()) {
            (None, _) => return Some(Output::Object),
            (Some("Table"), Some("meta.k8s.io")) => return Some(Output::Table(version)),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io")) => {
                return Some(Output::Metadata(version));
            }
            _ => continue,
        }
    }
    None
}

struct Column {
    name: &'static str,
    ty: &'static str,
    format: &'static str,
    description: &'static str,
    priority: i64,
}

const fn col(
    name: &'static str,
    ty: &'static str,
    description: &'static str,
    priority: i64,
) -> Column {
    Column {
        name,
        ty,
        format: "",
        description,
        priority,
    }
}

const NAME: Column = Column {
    name: "Name",
    ty: "string",
    format: "name",
    description: "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names",
    priority: 0,
};
const AGE: Column = col(
    "Age",
    "string",
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
    0,
);
const CREATED_AT: Column = Column {
    name: "Created At",
    ty: "date",
    format: "",
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
    priority: 0,
};

fn builtin_columns(b: Builtin) -> Vec<Column> {
    match b {
        Builtin::Namespace => vec![
            NAME,
            col("Status", "string", "The status of the namespace", 0),
            AGE,
        ],
        Builtin::ConfigMap => vec![
            NAME,
            col("Data", "integer", "Number of data entries", 0),
            AGE,
        ],
        Builtin::Secret => vec![
            NAME,
            col("Type", "string", "The type of the secret", 0),
            col("Data", "integer", "Number of data entries", 0),
            AGE,
        ],
        Builtin::ServiceAccount => vec![NAME, AGE],
        Builtin::Service => vec![
            NAME,
            col("Type", "string", "The type of the service", 0),
            col("Cluster-IP", "string", "The cluster IP of the service", 0),
            col(
                "External-IP",
                "string",
                "The external IPs of the service",
                0,
            ),
            col("Port(s)", "string", "The ports of the service", 0),
            AGE,
            col("Selector", "string", "The selector of the service", 1),
        ],
        Builtin::CoreEvent | Builtin::EventsV1 => vec![
            col(
                "Last Seen",
                "string",
                "Time since the event was last seen",
                0,
            ),
            col("Type", "string", "Type of this event", 0),
            col(
                "Reason",
                "string",
                "Short, machine understandable string that gives the reason for this event",
                0,
            ),
            col("Object", "string", "The object this event is about", 0),
            col(
                "Message",
                "string",
                "A human-readable description of the status of this operation",
                0,
            ),
        ],
        Builtin::Deployment => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state", 0),
            col(
                "Up-to-date",
                "string",
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
                0,
            ),
            col(
                "Available",
                "string",
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
                0,
            ),
            AGE,
            col(
                "Containers",
                "string",
                "Names of each container in the template.",
                1,
            ),
            col(
                "Images",
                "string",
                "Images referenced by each container in the template.",
                1,
            ),
            col("Selector", "string", "Label selector for pods.", 1),
        ],
        Builtin::StatefulSet => vec![
            NAME,
            col("Ready", "string", "Number of the pod with ready state", 0),
            AGE,
            col(
                "Containers",
                "string",
                "Names of each container in the template.",
                1,
            ),
            col(
                "Images",
                "string",
                "Images referenced by each container in the template.",
                1,
            ),
        ],
        Builtin::DaemonSet => vec![
            NAME,
            col(
                "Desired",
                "integer",
                "The total number of nodes that should be running the daemon pod.",
                0,
            ),
            col(
                "Current",
                "integer",
                "The number of nodes that are running at least 1 daemon pod.",
                0,
            ),
            col(
                "Ready",
                "integer",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
                0,
            ),
            col(
                "Up-to-date",
                "integer",
                "The total number of nodes that are running updated daemon pod",
                0,
            ),
            col(
                "Available",
                "integer",
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
                0,
            ),
            col(
                "Node Selector",
                "string",
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
                0,
            ),
            AGE,
        ],
        Builtin::PodDisruptionBudget => vec![
            NAME,
            col(
                "Min Available",
                "string",
                "The minimum number of pods that must be available simultaneously. This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
                0,
            ),
            col(
                "Max Unavailable",
                "string",
                "The maximum number of pods that may be unavailable. This can be either an integer or a string specifying a percentage, e.g. \"28%\".",
                0,
            ),
            col(
                "Allowed Disruptions",
                "integer",
                "Number of pod disruptions that are currently allowed.",
                0,
            ),
            AGE,
        ],
        Builtin::NetworkPolicy => vec![
            NAME,
            col(
                "Pod-Selector",
                "string",
                "Selector of the pods this policy applies to.",
                0,
            ),
            AGE,
        ],
        Builtin::Lease => vec![
            NAME,
            col("Holder", "string", "The holder of the lease", 0),
            AGE,
        ],
        Builtin::Role
        | Builtin::ClusterRole
        | Builtin::Crd
        | Builtin::SelfSubjectAccessReview
        | Builtin::SubjectAccessReview
        | Builtin::TokenReview => vec![NAME, CREATED_AT],
        Builtin::RoleBinding | Builtin::ClusterRoleBinding => vec![
            NAME,
            col("Role", "string", "Role referenced by this binding", 0),
            AGE,
            col("Users", "string", "Users in the binding", 1),
            col("Groups", "string", "Groups in the binding", 1),
            col(
                "ServiceAccounts",
                "string",
                "ServiceAccounts in the binding",
                1,
            ),
        ],
    }
}

fn age(obj: &Value) -> Value {
    match object::meta_str(obj, "creationTimestamp").and_then(seconds_since) {
        Some(s) => json!(human_duration(s)),
        None => json!("<unknown>"),
    }
}

fn count(obj: &Value, fields: &[&str]) -> Value {
    json!(
        fields
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .map(|m| m.len())
            .sum::<usize>()
    )
}

fn s(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn int(obj: &Value, path: &str) -> i64 {
    object::get_path(obj, path)
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

fn or_na(v: String) -> String {
    if v.is_empty() { "N/A".into() } else { v }
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn containers(obj: &Value, field: &str) -> String {
    object::get_path(obj, "spec.template.spec.containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| s(c.get(field)))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default()
}

fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts = Vec::new();
    if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
        parts.extend(m.iter().map(|(k, v)| format!("{k}={}", s(Some(v)))));
    } else if let Some(m) = sel
        .as_object()
        .filter(|m| !m.contains_key("matchExpressions"))
    {
        parts.extend(m.iter().map(|(k, v)| format!("{k}={}", s(Some(v)))));
    }
    parts.join(",")
}

fn subjects(obj: &Value, kind: &str) -> String {
    obj.get("subjects")
        .and_then(Value::as_array)
        .map(|ss| {
            ss.iter()
                .filter(|x| x["kind"] == kind)
                .map(|x| match x.get("namespace").and_then(Value::as_str) {
                    Some(ns) if kind == "ServiceAccount" => format!("{ns}/{}", s(x.get("name"))),
                    _ => s(x.get("name")),
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn builtin_cells(b: Builtin, obj: &Value) -> Vec<Value> {
    let name = json!(object::name(obj));
    match b {
        Builtin::Namespace => vec![
            name,
            json!(s(object::get_path(obj, "status.phase"))),
            age(obj),
        ],
        Builtin::ConfigMap => vec![name, count(obj, &["data", "binaryData"]), age(obj)],
        Builtin::Secret => vec![
            name,
            json!(s(obj.get("type"))),
            count(obj, &["data"]),
            age(obj),
        ],
        Builtin::ServiceAccount => vec![name, age(obj)],
        Builtin::Service => {
            let ports = object::get_path(obj, "spec.ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| match p.get("nodePort").and_then(Value::as_i64) {
                            Some(np) => {
                                format!("{}:{np}/{}", s(p.get("port")), s(p.get("protocol")))
                            }
                            None => format!("{}/{}", s(p.get("port")), s(p.get("protocol"))),
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let external = object::get_path(obj, "status.loadBalancer.ingress")
                .and_then(Value::as_array)
                .map(|i| {
                    i.iter()
                        .map(|x| s(x.get("ip").or(x.get("hostname"))))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .filter(|x| !x.is_empty())
                .unwrap_or_else(|| {
                    if s(object::get_path(obj, "spec.type")) == "LoadBalancer" {
                        "<pending>".into()
                    } else {
                        "<none>".into()
                    }
                });
            vec![
                name,
                json!(s(object::get_path(obj, "spec.type"))),
                json!(or_none(s(object::get_path(obj, "spec.clusterIP")))),
                json!(external),
                json!(or_none(ports)),
                age(obj),
                json!(or_none(selector_string(object::get_path(
                    obj,
                    "spec.selector"
                )))),
            ]
        }
        Builtin::CoreEvent | Builtin::EventsV1 => {
            let last = ["lastTimestamp", "eventTime", "deprecatedLastTimestamp"]
                .iter()
                .find_map(|f| obj.get(*f).and_then(Value::as_str))
                .or(object::meta_str(obj, "creationTimestamp"))
                .and_then(seconds_since)
                .map(human_duration)
                .unwrap_or_else(|| "<unknown>".into());
            let regarding = obj.get("involvedObject").or(obj.get("regarding"));
            let object_ref = regarding
                .map(|r| format!("{}/{}", s(r.get("kind")).to_lowercase(), s(r.get("name"))))
                .unwrap_or_default();
            vec![
                json!(last),
                json!(s(obj.get("type"))),
                json!(s(obj.get("reason"))),
                json!(object_ref),
                json!(s(obj.get("message").or(obj.get("note")))),
            ]
        }
        Builtin::Deployment => vec![
            name,
            json!(format!(
                "{}/{}",
                int(obj, "status.readyReplicas"),
                int(obj, "spec.replicas")
            )),
            json!(int(obj, "status.updatedReplicas")),
            json!(int(obj, "status.availableReplicas")),
            age(obj),
            json!(containers(obj, "name")),
            json!(containers(obj, "image")),
            json!(selector_string(object::get_path(obj, "spec.selector"))),
        ],
        Builtin::StatefulSet => vec![
            name,
            json!(format!(
                "{}/{}",
                int(obj, "status.readyReplicas"),
                int(obj, "spec.replicas")
            )),
            age(obj),
            json!(containers(obj, "name")),
            json!(containers(obj, "image")),
        ],
        Builtin::DaemonSet => vec![
            name,
            json!(int(obj, "status.desiredNumberScheduled")),
            json!(int(obj, "status.currentNumberScheduled")),
            json!(int(obj, "status.numberReady")),
            json!(int(obj, "status.updatedNumberScheduled")),
            json!(int(obj, "status.numberAvailable")),
            json!(or_none(selector_string(object::get_path(
                obj,
                "spec.template.spec.nodeSelector"
            )))),
            age(obj),
        ],
        Builtin::PodDisruptionBudget => vec![
            name,
            json!(or_na(s(object::get_path(obj, "spec.minAvailable")))),
            json!(or_na(s(object::get_path(obj, "spec.maxUnavailable")))),
            json!(int(obj, "status.disruptionsAllowed")),
            age(obj),
        ],
        Builtin::NetworkPolicy => vec![
            name,
            json!(or_none(selector_string(object::get_path(
                obj,
                "spec.podSelector"
            )))),
            age(obj),
        ],
        Builtin::Lease => vec![
            name,
            json!(or_none(s(object::get_path(obj, "spec.holderIdentity")))),
            age(obj),
        ],
        Builtin::Role
        | Builtin::ClusterRole
        | Builtin::Crd
        | Builtin::SelfSubjectAccessReview
        | Builtin::SubjectAccessReview
        | Builtin::TokenReview => {
            vec![
                name,
                json!(object::meta_str(obj, "creationTimestamp").unwrap_or_default()),
            ]
        }
        Builtin::RoleBinding | Builtin::ClusterRoleBinding => vec![
            name,
            json!(format!(
                "{}/{}",
                s(object::get_path(obj, "roleRef.kind")),
                s(object::get_path(obj, "roleRef.name"))
            )),
            age(obj),
            json!(subjects(obj, "User")),
            json!(subjects(obj, "Group")),
            json!(subjects(obj, "ServiceAccount")),
        ],
    }
}

fn custom_cell(obj: &Value, column: &Value) -> Value {
    let path = column
        .get("jsonPath")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let values = jsonpath::find(obj, path);
    let Some(first) = values.first() else {
        return Value::Null;
    };
    let ty = column
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("string");
    if ty == "date" {
        return match first.as_str().and_then(seconds_since) {
            Some(secs) => json!(human_duration(secs)),
            None => Value::Null,
        };
    }
    if values.len() > 1 {
        return json!(
            values
                .iter()
                .map(|v| s(Some(v)))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    match (ty, first) {
        ("integer", Value::Number(n)) => json!(n),
        ("number", Value::Number(n)) => json!(n),
        ("boolean", Value::Bool(b)) => json!(b),
        ("string", v) => json!(s(Some(v))),
        (_, v) => (*v).clone(),
    }
}

fn column_json(c: &Column) -> Value {
    json!({"name": c.name, "type": c.ty, "format": c.format, "description": c.description, "priority": c.priority})
}

fn columns(rt: &ResourceType) -> Vec<Value> {
    match rt.builtin() {
        Some(b) => builtin_columns(b).iter().map(column_json).collect(),
        None => {
            let declared = rt
                .custom()
                .map(|c| c.printer_columns.clone())
                .unwrap_or_default();
            let mut out = vec![column_json(&NAME)];
            if declared.is_empty() {
                out.push(json!({"name": "Age", "type": "date", "format": "", "description": AGE.description, "priority": 0}));
            }
            for c in &declared {
                out.push(json!({
                    "name": c.get("name").cloned().unwrap_or(json!("")),
                    "type": c.get("type").cloned().unwrap_or(json!("string")),
                    "format": c.get("format").cloned().unwrap_or(json!("")),
                    "description": c.get("description").cloned().unwrap_or(json!("")),
                    "priority": c.get("priority").cloned().unwrap_or(json!(0)),
                }));
            }
            out
        }
    }
}

fn cells(rt: &ResourceType, obj: &Value) -> Vec<Value> {
    match rt.builtin() {
        Some(b) => builtin_cells(b, obj),
        None => {
            let declared = rt
                .custom()
                .map(|c| c.printer_columns.clone())
                .unwrap_or_default();
            let mut out = vec![json!(object::name(obj))];
            if declared.is_empty() {
                out.push(age(obj));
            }
            out.extend(declared.iter().map(|c| custom_cell(obj, c)));
            out
        }
    }
}

/// `PartialObjectMetadata` of an object.
pub fn partial_metadata(obj: &Value, version: &str) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A Table of objects (already in the client's version).
pub fn table(
    rt: &ResourceType,
    items: &[Value],
    include: Include,
    version: &str,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let mut row = json!({"cells": cells(rt, obj)});
            match include {
                Include::None => {}
                Include::Metadata => row["object"] = partial_metadata(obj, version),
                Include::Object => row["object"] = obj.clone(),
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": format!("meta.k8s.io/{version}"),
        "metadata": list_meta,
        "columnDefinitions": columns(rt),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

    #[test]
    fn accept_headers_pick_the_shape() {
        assert_eq!(
            negotiate(Some(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json"
            )),
            Some(Output::Table("v1"))
        );
        assert_eq!(
            negotiate(Some(
                "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
            )),
            Some(Output::Metadata("v1"))
        );
        assert_eq!(
            negotiate(Some("application/vnd.kubernetes.protobuf, */*")),
            Some(Output::Object)
        );
        assert_eq!(negotiate(Some("application/vnd.kubernetes.protobuf")), None);
        assert_eq!(negotiate(None), Some(Output::Object));
    }

    #[test]
    fn config_map_rows() {
        let reg = Registry::with_builtins();
        let cm = reg.lookup("", "v1", "configmaps").expect("cm");
        let obj = json!({"metadata": {"name": "a", "creationTimestamp": crate::clock::now()}, "data": {"x": "1", "y": "2"}});
        let t = table(
            &cm,
            &[obj],
            Include::Metadata,
            "v1",
            json!({"resourceVersion": "5"}),
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Data");
        assert_eq!(t["rows"][0]["cells"][0], "a");
        assert_eq!(t["rows"][0]["cells"][1], 2);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }
}
