//! Defaulting of built-in kinds, as the real server's `SetDefaults_*` functions
//! do for the fields most manifests leave out.

use serde_json::{Map, Value, json};

fn obj_at<'a>(v: &'a mut Value, key: &str) -> Option<&'a mut Map<String, Value>> {
    let map = v.as_object_mut()?;
    let entry = map.entry(key).or_insert_with(|| json!({}));
    entry.as_object_mut()
}

fn default_field(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

/// `imagePullPolicy`: Always for `:latest` or untagged images, IfNotPresent otherwise.
fn pull_policy(image: &str) -> &'static str {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    if image.contains('@') {
        return "IfNotPresent";
    }
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn default_container(c: &mut Value) {
    let Some(map) = c.as_object_mut() else { return };
    default_field(map, "terminationMessagePath", json!("/dev/termination-log"));
    default_field(map, "terminationMessagePolicy", json!("File"));
    let image = map
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    default_field(map, "imagePullPolicy", json!(pull_policy(&image)));
    default_field(map, "resources", json!({}));
    if let Some(ports) = map.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                default_field(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Defaults of a pod template (`spec.template`).
pub fn pod_template(template: &mut Value) {
    let Some(spec) = obj_at(template, "spec") else {
        return;
    };
    default_field(spec, "restartPolicy", json!("Always"));
    default_field(spec, "terminationGracePeriodSeconds", json!(30));
    default_field(spec, "dnsPolicy", json!("ClusterFirst"));
    default_field(spec, "securityContext", json!({}));
    default_field(spec, "schedulerName", json!("default-scheduler"));
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            cs.iter_mut().for_each(default_container);
        }
    }
}

/// A strategy field: `type` defaults to RollingUpdate, whose parameters default to `defaults`.
fn rolling_update(spec: &mut Map<String, Value>, field: &str, defaults: Value) {
    default_field(spec, field, json!({}));
    let Some(strategy) = spec.get_mut(field).and_then(Value::as_object_mut) else {
        return;
    };
    default_field(strategy, "type", json!("RollingUpdate"));
    if strategy.get("type").and_then(Value::as_str) != Some("RollingUpdate") {
        return;
    }
    default_field(strategy, "rollingUpdate", json!({}));
    if let (Some(ru), Some(d)) = (
        strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut),
        defaults.as_object(),
    ) {
        for (k, v) in d {
            default_field(ru, k, v.clone());
        }
    }
}

pub fn deployment(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    default_field(spec, "replicas", json!(1));
    default_field(spec, "revisionHistoryLimit", json!(10));
    default_field(spec, "progressDeadlineSeconds", json!(600));
    rolling_update(
        spec,
        "strategy",
        json!({"maxSurge": "25%", "maxUnavailable": "25%"}),
    );
    if let Some(t) = spec.get_mut("template") {
        pod_template(t);
    }
}

pub fn stateful_set(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    default_field(spec, "replicas", json!(1));
    default_field(spec, "revisionHistoryLimit", json!(10));
    default_field(spec, "podManagementPolicy", json!("OrderedReady"));
    rolling_update(spec, "updateStrategy", json!({"partition": 0}));
    default_field(
        spec,
        "persistentVolumeClaimRetentionPolicy",
        json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
    );
    if let Some(t) = spec.get_mut("template") {
        pod_template(t);
    }
}

pub fn daemon_set(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    default_field(spec, "revisionHistoryLimit", json!(10));
    rolling_update(
        spec,
        "updateStrategy",
        json!({"maxUnavailable": 1, "maxSurge": 0}),
    );
    if let Some(t) = spec.get_mut("template") {
        pod_template(t);
    }
}

/// Service defaults that do not need allocation (IPs and node ports are allocated by the strategy).
pub fn service(obj: &mut Value) {
    let Some(spec) = obj_at(obj, "spec") else {
        return;
    };
    default_field(spec, "type", json!("ClusterIP"));
    default_field(spec, "sessionAffinity", json!("None"));
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        default_field(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        default_field(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if ty == "LoadBalancer" {
        default_field(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports {
            if let Some(p) = p.as_object_mut() {
                default_field(p, "protocol", json!("TCP"));
                if let Some(port) = p.get("port").cloned() {
                    default_field(p, "targetPort", port);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_kube_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}});
        deployment(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(pull_policy("nginx"), "Always");
        assert_eq!(pull_policy("nginx:latest"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(pull_policy("localhost:5000/nginx:1"), "IfNotPresent");
    }
}
