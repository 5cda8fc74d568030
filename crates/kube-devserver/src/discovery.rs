//! Discovery documents: `/version`, `/api`, `/apis`, group versions, and the
//! aggregated discovery form (`apidiscovery.k8s.io/v2`) kubectl asks for first.

use std::sync::Arc;

use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::registry::{Builtin, Registry, ResourceType};

pub const KUBE_VERSION: &str = "v1.35.0";

const SUB_VERBS: &[&str] = &["get", "patch", "update"];

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "35",
        "emulationMajor": "1",
        "emulationMinor": "35",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "34",
        "gitVersion": KUBE_VERSION,
        "gitCommit": "kube-devserver",
        "gitTreeState": "clean",
        "buildDate": "2025-01-01T00:00:00Z",
        "goVersion": "go1.25",
        "compiler": "gc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    })
}

/// `discovery.StorageVersionHash`: base64 of the first 8 bytes of sha256("group/version/kind").
fn storage_version_hash(t: &ResourceType) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", t.group, t.version, t.kind).as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&digest[..8])
}

/// One served subresource; `kind` is `(group, version, kind)` when it answers with
/// another kind than its resource (`serviceaccounts/token` answers TokenRequest).
struct Subresource {
    name: &'static str,
    verbs: &'static [&'static str],
    kind: Option<(&'static str, &'static str, &'static str)>,
}

fn subresources(t: &ResourceType) -> Vec<Subresource> {
    let mut subs = Vec::new();
    if t.status {
        subs.push(Subresource {
            name: "status",
            verbs: SUB_VERBS,
            kind: None,
        });
    }
    if t.is(Builtin::Namespace) {
        subs.push(Subresource {
            name: "finalize",
            verbs: &["update"],
            kind: None,
        });
    }
    if t.is(Builtin::ServiceAccount) {
        subs.push(Subresource {
            name: "token",
            verbs: &["create"],
            kind: Some(("authentication.k8s.io", "v1", "TokenRequest")),
        });
    }
    subs
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[String]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

/// `GET /apis`.
pub fn api_group_list(reg: &Registry) -> Value {
    let groups: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, v)| group_entry(g, v))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/{group}`.
pub fn api_group(reg: &Registry, group: &str) -> Option<Value> {
    let (g, v) = reg
        .groups()
        .iter()
        .find(|(g, _)| g == group && !g.is_empty())?;
    let mut entry = group_entry(g, v);
    if let Some(m) = entry.as_object_mut() {
        m.insert("kind".into(), "APIGroup".into());
        m.insert("apiVersion".into(), "v1".into());
    }
    Some(entry)
}

/// `GET /api/v1`, `/apis/{group}/{version}`.
pub fn api_resource_list(types: &[Arc<ResourceType>], group: &str, version: &str) -> Value {
    let mut resources = Vec::new();
    for t in types {
        let mut r = json!({
            "name": t.resource,
            "singularName": t.singular,
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": t.verbs(),
            "storageVersionHash": storage_version_hash(t),
        });
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        for sub in subresources(t) {
            let mut entry = json!({
                "name": format!("{}/{}", t.resource, sub.name),
                "singularName": "",
                "namespaced": t.namespaced,
                "kind": t.kind,
                "verbs": sub.verbs,
            });
            if let Some((group, version, kind)) = sub.kind {
                entry["group"] = json!(group);
                entry["version"] = json!(version);
                entry["kind"] = json!(kind);
            }
            resources.push(entry);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let kind = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let mut r = json!({
        "resource": t.resource,
        "responseKind": kind,
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs(),
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let subs: Vec<Value> = subresources(t)
        .into_iter()
        .map(|sub| {
            let response_kind = match sub.kind {
                Some((group, version, kind)) => {
                    json!({"group": group, "version": version, "kind": kind})
                }
                None => kind.clone(),
            };
            json!({"subresource": sub.name, "responseKind": response_kind, "verbs": sub.verbs})
        })
        .collect();
    if !subs.is_empty() {
        r["subresources"] = Value::Array(subs);
    }
    r
}

/// Aggregated discovery for `/api` (legacy) or `/apis`.
pub fn aggregated(reg: &Registry, legacy: bool) -> Value {
    let items: Vec<Value> = reg
        .groups()
        .iter()
        .filter(|(g, _)| g.is_empty() == legacy)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = reg
                        .group_version(g, v)
                        .iter()
                        .map(|t| aggregated_resource(t))
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let mut metadata = json!({"creationTimestamp": null});
            if !g.is_empty() {
                metadata["name"] = json!(g);
            }
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// The content type of an aggregated discovery answer.
pub const AGGREGATED_V2: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether an Accept header asks for aggregated discovery v2 (before plain JSON).
pub fn wants_aggregated(accept: &str) -> bool {
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        let is_json = params.first().is_some_and(|m| *m == "application/json");
        let has = |p: &str| params.iter().any(|x| x.replace(' ', "") == p);
        if is_json && has("g=apidiscovery.k8s.io") && has("v=v2") && has("as=APIGroupDiscoveryList")
        {
            return true;
        }
        if params
            .first()
            .is_some_and(|m| *m == "application/json" || *m == "*/*")
            && !has("as=APIGroupDiscoveryList")
        {
            return false;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_is_chosen_only_when_asked_first() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        assert!(!wants_aggregated("application/json, */*"));
        assert!(!wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
    }

    #[test]
    fn resource_lists_have_subresources() {
        let reg = Registry::with_builtins();
        let list = api_resource_list(&reg.group_version("apps", "v1"), "apps", "v1");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("array")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert!(names.contains(&"deployments/status"));
        let agg = aggregated(&reg, false);
        assert!(
            agg["items"]
                .as_array()
                .expect("array")
                .iter()
                .any(|g| g["metadata"]["name"] == "apps")
        );
        assert_eq!(
            storage_version_hash(&reg.lookup("", "v1", "configmaps").expect("cm")).len(),
            12
        );
    }
}
