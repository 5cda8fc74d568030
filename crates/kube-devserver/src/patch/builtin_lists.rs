//! List and map semantics of the built-in kinds the embedded server stores,
//! from the `+listType`, `+listMapKey`, `+patchMergeKey`, `+structType` and
//! `+mapType` markers on the Kubernetes Go types. Lists without a marker are
//! atomic, as in the real OpenAPI schema.

use serde_json::Value;

use super::{ListSemantics, ListType};

/// The semantics of one built-in kind (`group` is empty for the core group).
pub fn builtin_list_semantics(group: &str, kind: &str) -> Box<dyn ListSemantics> {
    Box::new(BuiltinLists {
        group: group.to_string(),
        kind: kind.to_string(),
    })
}

struct BuiltinLists {
    group: String,
    kind: String,
}

fn map(keys: &[&str]) -> ListType {
    ListType::Map(keys.iter().map(|k| (*k).to_string()).collect())
}

const CONTAINER_LISTS: &[&str] = &["containers", "initContainers", "ephemeralContainers"];

impl BuiltinLists {
    /// Where the kind's PodSpec sits, if it has one.
    fn pod_spec_prefix(&self) -> Option<&'static [&'static str]> {
        match (self.group.as_str(), self.kind.as_str()) {
            ("", "Pod") => Some(&["spec"]),
            ("", "PodTemplate") => Some(&["template", "spec"]),
            ("", "ReplicationController")
            | ("apps", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet")
            | ("batch", "Job") => Some(&["spec", "template", "spec"]),
            ("batch", "CronJob") => Some(&["spec", "jobTemplate", "spec", "template", "spec"]),
            _ => None,
        }
    }

    /// The path inside the PodSpec, if `path` is inside it.
    fn in_pod_spec<'p>(&self, path: &'p [&'p str]) -> Option<&'p [&'p str]> {
        let prefix = self.pod_spec_prefix()?;
        path.strip_prefix(prefix)
    }

    fn has_label_selector_spec(&self) -> bool {
        matches!(
            (self.group.as_str(), self.kind.as_str()),
            (
                "apps",
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet"
            ) | ("batch", "Job")
                | ("policy", "PodDisruptionBudget")
                | ("", "Service" | "ReplicationController")
        )
    }
}

/// Lists inside a PodSpec.
fn pod_spec_list(rel: &[&str]) -> Option<ListType> {
    Some(match rel {
        [c] if CONTAINER_LISTS.contains(c) => map(&["name"]),
        [c, "ports"] if CONTAINER_LISTS.contains(c) => map(&["containerPort", "protocol"]),
        [c, "env"] if CONTAINER_LISTS.contains(c) => map(&["name"]),
        [c, "volumeMounts"] if CONTAINER_LISTS.contains(c) => map(&["mountPath"]),
        [c, "volumeDevices"] if CONTAINER_LISTS.contains(c) => map(&["devicePath"]),
        [c, "resources", "claims"] if CONTAINER_LISTS.contains(c) => map(&["name"]),
        ["volumes"] => map(&["name"]),
        ["imagePullSecrets"] => map(&["name"]),
        ["hostAliases"] => map(&["ip"]),
        ["topologySpreadConstraints"] => map(&["topologyKey", "whenUnsatisfiable"]),
        ["schedulingGates"] => map(&["name"]),
        ["resourceClaims"] => map(&["name"]),
        _ => return None,
    })
}

/// Atomic structs and maps inside a PodSpec.
fn pod_spec_atomic(rel: &[&str]) -> bool {
    match rel {
        ["nodeSelector"] | ["imagePullSecrets"] => true,
        [
            c,
            "env",
            "valueFrom",
            "configMapKeyRef" | "secretKeyRef" | "fieldRef" | "resourceFieldRef",
        ] if CONTAINER_LISTS.contains(c) => true,
        [.., "labelSelector" | "namespaceSelector"] => true,
        _ => false,
    }
}

impl ListSemantics for BuiltinLists {
    fn list_type(&self, path: &[&str]) -> ListType {
        // ObjectMeta, at the root and in templates.
        match path {
            [.., "metadata", "ownerReferences"] => return map(&["uid"]),
            [.., "metadata", "finalizers"] => return ListType::Set,
            // Every built-in status keys its conditions by type.
            ["status", "conditions"] => return map(&["type"]),
            _ => {}
        }
        if let Some(rel) = self.in_pod_spec(path)
            && let Some(lt) = pod_spec_list(rel)
        {
            return lt;
        }
        match (self.group.as_str(), self.kind.as_str(), path) {
            ("", "Service", ["spec", "ports"]) => map(&["port", "protocol"]),
            ("", "ServiceAccount", ["secrets" | "imagePullSecrets"]) => map(&["name"]),
            ("", "Node", ["status", "addresses"]) => map(&["type"]),
            _ => ListType::Atomic,
        }
    }

    fn map_is_atomic(&self, path: &[&str]) -> bool {
        match path {
            // OwnerReference is `+structType=atomic`.
            [.., "metadata", "ownerReferences"] => return true,
            ["spec", "selector"] if self.has_label_selector_spec() => return true,
            _ => {}
        }
        if let Some(rel) = self.in_pod_spec(path) {
            return pod_spec_atomic(rel);
        }
        matches!(
            (self.group.as_str(), self.kind.as_str(), path),
            ("", "ServiceAccount", ["secrets" | "imagePullSecrets"])
                | (
                    "batch",
                    "CronJob",
                    ["spec", "jobTemplate", "spec", "selector"]
                )
        )
    }

    fn key_default(&self, list_path: &[&str], key: &str) -> Option<Value> {
        if key != "protocol" {
            return None;
        }
        let is_ports = match self.in_pod_spec(list_path) {
            Some([c, "ports"]) => CONTAINER_LISTS.contains(c),
            _ => self.kind == "Service" && self.group.is_empty() && list_path == ["spec", "ports"],
        };
        is_ports.then(|| Value::String("TCP".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_pod_template_lists() {
        let d = builtin_list_semantics("apps", "Deployment");
        let p = |rest: &[&str]| {
            let mut full = vec!["spec", "template", "spec"];
            full.extend_from_slice(rest);
            d.list_type(&full)
        };
        assert_eq!(p(&["containers"]), ListType::Map(vec!["name".into()]));
        assert_eq!(p(&["initContainers"]), ListType::Map(vec!["name".into()]));
        assert_eq!(
            p(&["containers", "env"]),
            ListType::Map(vec!["name".into()])
        );
        assert_eq!(
            p(&["containers", "ports"]),
            ListType::Map(vec!["containerPort".into(), "protocol".into()])
        );
        assert_eq!(
            p(&["containers", "volumeMounts"]),
            ListType::Map(vec!["mountPath".into()])
        );
        assert_eq!(p(&["volumes"]), ListType::Map(vec!["name".into()]));
        assert_eq!(p(&["imagePullSecrets"]), ListType::Map(vec!["name".into()]));
        assert_eq!(p(&["tolerations"]), ListType::Atomic);
        assert_eq!(p(&["containers", "args"]), ListType::Atomic);
        assert_eq!(
            d.key_default(
                &["spec", "template", "spec", "containers", "ports"],
                "protocol"
            ),
            Some(Value::String("TCP".into()))
        );
        assert!(d.map_is_atomic(&["spec", "selector"]));
        assert!(!d.map_is_atomic(&["spec", "template", "metadata", "labels"]));
    }

    #[test]
    fn pod_and_cronjob_find_their_pod_spec() {
        let pod = builtin_list_semantics("", "Pod");
        assert_eq!(
            pod.list_type(&["spec", "containers"]),
            ListType::Map(vec!["name".into()])
        );
        let cj = builtin_list_semantics("batch", "CronJob");
        assert_eq!(
            cj.list_type(&[
                "spec",
                "jobTemplate",
                "spec",
                "template",
                "spec",
                "containers",
                "env"
            ]),
            ListType::Map(vec!["name".into()])
        );
    }

    #[test]
    fn metadata_and_status_lists_for_every_kind() {
        for (g, k) in [
            ("", "ConfigMap"),
            ("apps", "Deployment"),
            ("sigil.dev", "Anything"),
        ] {
            let s = builtin_list_semantics(g, k);
            assert_eq!(s.list_type(&["metadata", "finalizers"]), ListType::Set);
            assert_eq!(
                s.list_type(&["metadata", "ownerReferences"]),
                ListType::Map(vec!["uid".into()])
            );
            assert!(s.map_is_atomic(&["metadata", "ownerReferences"]));
            assert_eq!(
                s.list_type(&["status", "conditions"]),
                ListType::Map(vec!["type".into()])
            );
        }
    }

    #[test]
    fn service_ports_rbac_and_namespaces() {
        let svc = builtin_list_semantics("", "Service");
        assert_eq!(
            svc.list_type(&["spec", "ports"]),
            ListType::Map(vec!["port".into(), "protocol".into()])
        );
        assert_eq!(
            svc.key_default(&["spec", "ports"], "protocol"),
            Some(Value::String("TCP".into()))
        );
        assert!(svc.map_is_atomic(&["spec", "selector"]));
        let role = builtin_list_semantics("rbac.authorization.k8s.io", "Role");
        assert_eq!(role.list_type(&["rules"]), ListType::Atomic);
        let rb = builtin_list_semantics("rbac.authorization.k8s.io", "RoleBinding");
        assert_eq!(rb.list_type(&["subjects"]), ListType::Atomic);
        let ns = builtin_list_semantics("", "Namespace");
        assert_eq!(ns.list_type(&["spec", "finalizers"]), ListType::Atomic);
    }
}
