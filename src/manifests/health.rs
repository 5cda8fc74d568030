//! Whether a live object has reached the state its spec asks for, by the kstatus rules
//! (sigs.k8s.io/cli-utils/pkg/kstatus, which Flux's `wait` uses): rollouts of Deployments,
//! StatefulSets and DaemonSets, Jobs, PersistentVolumeClaims, CRDs, LoadBalancer Services, Pods,
//! and any object that reports `Ready`/`Reconciling`/`Stalled` conditions (sigil's own kinds).
//! Objects with no rule and no such conditions are current once they exist.

use std::fmt;

use serde_json::Value;

use super::object::group_of;

/// What an object's status says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Reconciled: what the spec asks for is there.
    Current(String),
    /// Still getting there (a rollout, a pending claim, ...).
    InProgress(String),
    /// Will not get there without a change (deadline exceeded, Job failed, Stalled, Ready=False).
    Failed(String),
}

impl Health {
    pub fn is_current(&self) -> bool {
        matches!(self, Health::Current(_))
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Health::Failed(_))
    }

    /// The explanation, whatever the state.
    pub fn message(&self) -> &str {
        match self {
            Health::Current(m) | Health::InProgress(m) | Health::Failed(m) => m,
        }
    }

    /// `Current`, `InProgress` or `Failed` (kstatus's names).
    pub fn label(&self) -> &'static str {
        match self {
            Health::Current(_) => "Current",
            Health::InProgress(_) => "InProgress",
            Health::Failed(_) => "Failed",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.label(), self.message())
    }
}

/// The health of a live object (`None`: it does not exist → in progress).
pub fn assess(object: Option<&Value>) -> Health {
    let Some(object) = object else {
        return Health::InProgress("not found".into());
    };
    if let Some(health) = generic(object) {
        return health;
    }
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match (group_of(api_version), kind) {
        ("apps", "Deployment") => deployment(object),
        ("apps", "StatefulSet") => stateful_set(object),
        ("apps", "DaemonSet") => daemon_set(object),
        ("batch", "Job") => job(object),
        ("", "PersistentVolumeClaim") => claim(object),
        ("", "Service") => service(object),
        ("", "Pod") => pod(object),
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crd(object),
        _ => conditions_only(object),
    }
}

fn int(object: &Value, pointer: &str) -> Option<i64> {
    object.pointer(pointer).and_then(Value::as_i64)
}

fn text<'a>(object: &'a Value, pointer: &str) -> Option<&'a str> {
    object.pointer(pointer).and_then(Value::as_str)
}

/// A condition of `status.conditions` by type.
fn condition<'a>(object: &'a Value, type_: &str) -> Option<&'a Value> {
    object
        .pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

fn condition_status<'a>(object: &'a Value, type_: &str) -> Option<&'a str> {
    condition(object, type_)?.get("status")?.as_str()
}

fn condition_says(object: &Value, type_: &str, field: &str) -> String {
    condition(object, type_)
        .and_then(|c| c.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// `reason: message` of a condition (either may be empty).
fn condition_text(object: &Value, type_: &str) -> String {
    let reason = condition_says(object, type_, "reason");
    let message = condition_says(object, type_, "message");
    match (reason.is_empty(), message.is_empty()) {
        (false, false) => format!("{reason}: {message}"),
        (true, _) => message,
        (false, true) => reason,
    }
}

/// Not ready to be judged by any rule (kstatus's or an expression's): being deleted, or a
/// generation its controller has not observed yet.
pub fn pending(object: &Value) -> Option<Health> {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return Some(Health::InProgress("being deleted".into()));
    }
    if let (Some(generation), Some(observed)) = (
        int(object, "/metadata/generation"),
        int(object, "/status/observedGeneration"),
    ) && observed < generation
    {
        return Some(Health::InProgress(format!(
            "generation {generation} not yet observed (observedGeneration {observed})"
        )));
    }
    None
}

/// The rules that hold for every kind: [`pending`], and the kstatus abnormal-true conditions
/// `Stalled` and `Reconciling`.
fn generic(object: &Value) -> Option<Health> {
    if let Some(waiting) = pending(object) {
        return Some(waiting);
    }
    if condition_status(object, "Stalled") == Some("True") {
        return Some(Health::Failed(condition_text(object, "Stalled")));
    }
    if condition_status(object, "Reconciling") == Some("True") {
        return Some(Health::InProgress(condition_text(object, "Reconciling")));
    }
    None
}

/// Objects with no kind-specific rule: a `Ready` condition decides when there is one.
fn conditions_only(object: &Value) -> Health {
    match condition_status(object, "Ready") {
        Some("True") => Health::Current(non_empty(condition_text(object, "Ready"), "Ready")),
        Some("False") => Health::Failed(non_empty(condition_text(object, "Ready"), "not Ready")),
        Some(_) => Health::InProgress(non_empty(
            condition_text(object, "Ready"),
            "Ready is Unknown",
        )),
        None => Health::Current("exists".into()),
    }
}

fn non_empty(text: String, fallback: &str) -> String {
    if text.is_empty() {
        fallback.to_string()
    } else {
        text
    }
}

/// Workload controllers publish `status.observedGeneration`; until they do, the spec is unseen.
fn unobserved(object: &Value) -> Option<Health> {
    if object.pointer("/metadata/generation").is_some()
        && int(object, "/status/observedGeneration").is_none()
    {
        return Some(Health::InProgress(
            "the controller has not observed it yet (no status.observedGeneration)".into(),
        ));
    }
    None
}

fn deployment(object: &Value) -> Health {
    if let Some(waiting) = unobserved(object) {
        return waiting;
    }
    if condition_status(object, "Progressing").is_some()
        && condition_says(object, "Progressing", "reason") == "ProgressDeadlineExceeded"
    {
        return Health::Failed(format!(
            "rollout stuck: {}",
            non_empty(
                condition_says(object, "Progressing", "message"),
                "progress deadline exceeded"
            )
        ));
    }
    let wanted = int(object, "/spec/replicas").unwrap_or(1);
    let replicas = int(object, "/status/replicas").unwrap_or(0);
    let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
    let ready = int(object, "/status/readyReplicas").unwrap_or(0);
    let available = int(object, "/status/availableReplicas").unwrap_or(0);
    if wanted > replicas {
        return Health::InProgress(format!("replicas: {replicas}/{wanted}"));
    }
    if updated < wanted {
        return Health::InProgress(format!("updated replicas: {updated}/{wanted}"));
    }
    if replicas > updated {
        return Health::InProgress(format!(
            "pending termination: {} old replica(s)",
            replicas - updated
        ));
    }
    if available < wanted {
        return Health::InProgress(format!("available replicas: {available}/{wanted}"));
    }
    if ready < wanted {
        return Health::InProgress(format!("ready replicas: {ready}/{wanted}"));
    }
    let progressing = condition_status(object, "Progressing") == Some("True")
        && condition_says(object, "Progressing", "reason") == "NewReplicaSetAvailable";
    let available_condition = condition_status(object, "Available") == Some("True");
    if !progressing || !available_condition {
        return Health::InProgress(
            "waiting for conditions Progressing=True (NewReplicaSetAvailable) and Available=True"
                .into(),
        );
    }
    Health::Current(format!("rolled out, {available} replica(s) available"))
}

fn stateful_set(object: &Value) -> Health {
    if let Some(waiting) = unobserved(object) {
        return waiting;
    }
    if text(object, "/spec/updateStrategy/type") == Some("OnDelete") {
        return Health::Current("updateStrategy OnDelete: rollouts wait for deletions".into());
    }
    let wanted = int(object, "/spec/replicas").unwrap_or(1);
    let replicas = int(object, "/status/replicas").unwrap_or(0);
    let ready = int(object, "/status/readyReplicas").unwrap_or(0);
    let current = int(object, "/status/currentReplicas").unwrap_or(0);
    let updated = int(object, "/status/updatedReplicas").unwrap_or(0);
    if wanted > replicas {
        return Health::InProgress(format!("replicas: {replicas}/{wanted}"));
    }
    if replicas > wanted {
        return Health::InProgress(format!(
            "pending termination: {} replica(s)",
            replicas - wanted
        ));
    }
    if ready < wanted {
        return Health::InProgress(format!("ready replicas: {ready}/{wanted}"));
    }
    if let Some(partition) = int(object, "/spec/updateStrategy/rollingUpdate/partition")
        && partition > 0
    {
        let expected = (wanted - partition).max(0);
        if updated < expected {
            return Health::InProgress(format!("updated replicas: {updated}/{expected}"));
        }
        return Health::Current(format!("partitioned rollout complete: {updated} updated"));
    }
    if current < wanted {
        return Health::InProgress(format!("current replicas: {current}/{wanted}"));
    }
    if text(object, "/status/currentRevision") != text(object, "/status/updateRevision") {
        return Health::InProgress("waiting for the update revision to become current".into());
    }
    Health::Current(format!("rolled out, {ready} replica(s) ready"))
}

fn daemon_set(object: &Value) -> Health {
    if let Some(waiting) = unobserved(object) {
        return waiting;
    }
    let desired = int(object, "/status/desiredNumberScheduled").unwrap_or(0);
    for (field, what) in [
        ("currentNumberScheduled", "scheduled"),
        ("updatedNumberScheduled", "updated"),
        ("numberReady", "ready"),
        ("numberAvailable", "available"),
    ] {
        let have = int(object, &format!("/status/{field}")).unwrap_or(0);
        if have < desired {
            return Health::InProgress(format!("{what} pods: {have}/{desired}"));
        }
    }
    Health::Current(format!("rolled out on {desired} node(s)"))
}

fn job(object: &Value) -> Health {
    let succeeded = int(object, "/status/succeeded").unwrap_or(0);
    let failed = int(object, "/status/failed").unwrap_or(0);
    let active = int(object, "/status/active").unwrap_or(0);
    if condition_status(object, "Failed") == Some("True") {
        return Health::Failed(format!(
            "Job failed ({failed} failed pod(s)): {}",
            condition_text(object, "Failed")
        ));
    }
    if condition_status(object, "Complete") == Some("True") {
        return Health::Current(format!("Job complete, {succeeded} succeeded"));
    }
    Health::InProgress(format!(
        "Job running: {active} active, {succeeded} succeeded, {failed} failed"
    ))
}

fn claim(object: &Value) -> Health {
    match text(object, "/status/phase") {
        Some("Bound") => Health::Current("bound".into()),
        Some("Lost") => Health::Failed("claim lost its volume".into()),
        phase => Health::InProgress(format!("not bound (phase {})", phase.unwrap_or("none"))),
    }
}

fn service(object: &Value) -> Health {
    if text(object, "/spec/type") != Some("LoadBalancer") {
        return Health::Current("service".into());
    }
    let ingress = object
        .pointer("/status/loadBalancer/ingress")
        .and_then(Value::as_array)
        .is_some_and(|i| !i.is_empty());
    if ingress {
        Health::Current("load balancer ingress assigned".into())
    } else {
        Health::InProgress("waiting for a load balancer ingress".into())
    }
}

fn pod(object: &Value) -> Health {
    match text(object, "/status/phase") {
        Some("Succeeded") => Health::Current("pod succeeded".into()),
        Some("Failed") => Health::Failed(non_empty(
            text(object, "/status/message").unwrap_or_default().into(),
            "pod failed",
        )),
        Some("Running") if condition_status(object, "Ready") == Some("True") => {
            Health::Current("pod running and ready".into())
        }
        phase => Health::InProgress(format!("pod {}", phase.unwrap_or("pending"))),
    }
}

fn crd(object: &Value) -> Health {
    if condition_status(object, "NamesAccepted") == Some("False") {
        return Health::Failed(format!(
            "names not accepted: {}",
            condition_text(object, "NamesAccepted")
        ));
    }
    if condition_status(object, "Established") == Some("True") {
        return Health::Current("established".into());
    }
    Health::InProgress("not established yet".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment_with(status: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 2},
            "spec": {"replicas": 3}, "status": status})
    }

    fn rolled_out_conditions() -> Value {
        json!([
            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
        ])
    }

    #[test]
    fn a_deployment_is_current_only_when_its_rollout_is_done() {
        let unseen = deployment_with(json!({"observedGeneration": 1}));
        assert!(assess(Some(&unseen)).message().contains("generation 2"));
        let no_status = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 1}, "spec": {}});
        assert!(matches!(assess(Some(&no_status)), Health::InProgress(_)));
        let halfway = deployment_with(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 1, "readyReplicas": 3, "availableReplicas": 3}));
        assert_eq!(
            assess(Some(&halfway)),
            Health::InProgress("updated replicas: 1/3".into())
        );
        let old_left = deployment_with(json!({"observedGeneration": 2, "replicas": 4,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}));
        assert!(
            assess(Some(&old_left))
                .message()
                .contains("pending termination")
        );
        let unavailable = deployment_with(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 2}));
        assert_eq!(
            assess(Some(&unavailable)),
            Health::InProgress("available replicas: 2/3".into())
        );
        let counts_only = deployment_with(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3}));
        assert!(matches!(assess(Some(&counts_only)), Health::InProgress(_)));
        let done = deployment_with(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 3, "readyReplicas": 3, "availableReplicas": 3,
            "conditions": rolled_out_conditions()}));
        assert!(
            assess(Some(&done)).is_current(),
            "{:?}",
            assess(Some(&done))
        );
    }

    #[test]
    fn a_deployment_past_its_progress_deadline_failed() {
        let stuck = deployment_with(json!({"observedGeneration": 2, "replicas": 3,
            "updatedReplicas": 1, "conditions": [{"type": "Progressing", "status": "False",
            "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet \"web-7d\" has timed out progressing."}]}));
        let health = assess(Some(&stuck));
        assert!(health.is_failed());
        assert!(
            health.message().contains("timed out progressing"),
            "{health}"
        );
    }

    #[test]
    fn a_deployment_defaults_to_one_replica() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "generation": 1}, "spec": {},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1,
                "readyReplicas": 1, "availableReplicas": 1, "conditions": rolled_out_conditions()}});
        assert!(assess(Some(&object)).is_current());
    }

    #[test]
    fn stateful_sets_roll_out_by_revision_and_partition() {
        let base = |spec: Value, status: Value| {
            json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": {"name": "db", "generation": 1}, "spec": spec, "status": status})
        };
        let old_revision = base(
            json!({"replicas": 2}),
            json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                "currentReplicas": 2, "updatedReplicas": 0,
                "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        assert!(matches!(assess(Some(&old_revision)), Health::InProgress(_)));
        let done = base(
            json!({"replicas": 2}),
            json!({"observedGeneration": 1, "replicas": 2, "readyReplicas": 2,
                "currentReplicas": 2, "updatedReplicas": 2,
                "currentRevision": "db-2", "updateRevision": "db-2"}),
        );
        assert!(assess(Some(&done)).is_current());
        let partitioned = base(
            json!({"replicas": 3, "updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"partition": 2}}}),
            json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 3,
                "currentReplicas": 2, "updatedReplicas": 1,
                "currentRevision": "db-1", "updateRevision": "db-2"}),
        );
        assert!(assess(Some(&partitioned)).is_current());
        let not_ready = base(
            json!({"replicas": 3}),
            json!({"observedGeneration": 1, "replicas": 3, "readyReplicas": 1}),
        );
        assert_eq!(
            assess(Some(&not_ready)),
            Health::InProgress("ready replicas: 1/3".into())
        );
    }

    #[test]
    fn daemon_sets_wait_for_every_node() {
        let object = |ready: i64| {
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
                "metadata": {"name": "agent", "generation": 1},
                "status": {"observedGeneration": 1, "desiredNumberScheduled": 3,
                    "currentNumberScheduled": 3, "updatedNumberScheduled": 3,
                    "numberReady": ready, "numberAvailable": ready}})
        };
        assert_eq!(
            assess(Some(&object(2))),
            Health::InProgress("ready pods: 2/3".into())
        );
        assert!(assess(Some(&object(3))).is_current());
    }

    #[test]
    fn jobs_complete_or_fail() {
        let job = |conditions: Value| {
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "migrate"},
                "status": {"succeeded": 0, "failed": 2, "active": 1, "conditions": conditions}})
        };
        assert!(matches!(
            assess(Some(&job(json!([])))),
            Health::InProgress(_)
        ));
        let failed = assess(Some(&job(json!([{"type": "Failed", "status": "True",
            "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]))));
        assert!(failed.is_failed());
        assert!(
            failed.message().contains("BackoffLimitExceeded"),
            "{failed}"
        );
        assert!(assess(Some(&job(json!([{"type": "Complete", "status": "True"}])))).is_current());
    }

    #[test]
    fn claims_crds_services_and_pods() {
        let pvc = |phase: &str| {
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"}, "status": {"phase": phase}})
        };
        assert!(matches!(
            assess(Some(&pvc("Pending"))),
            Health::InProgress(_)
        ));
        assert!(assess(Some(&pvc("Bound"))).is_current());
        let crd = |conditions: Value| {
            json!({"apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.com"},
            "status": {"conditions": conditions}})
        };
        assert!(matches!(
            assess(Some(&crd(json!([])))),
            Health::InProgress(_)
        ));
        assert!(
            assess(Some(&crd(
                json!([{"type": "Established", "status": "True"}])
            )))
            .is_current()
        );
        assert!(
            assess(Some(&crd(
                json!([{"type": "NamesAccepted", "status": "False", "reason": "NameConflict"}])
            )))
            .is_failed()
        );
        let lb = |status: Value| {
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "edge"}, "spec": {"type": "LoadBalancer"}, "status": status})
        };
        assert!(matches!(
            assess(Some(&lb(json!({})))),
            Health::InProgress(_)
        ));
        assert!(
            assess(Some(&lb(
                json!({"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}})
            )))
            .is_current()
        );
        let cluster_ip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
            "spec": {"type": "ClusterIP"}});
        assert!(assess(Some(&cluster_ip)).is_current());
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "status": {"phase": "Failed", "message": "OOMKilled"}});
        assert_eq!(assess(Some(&pod)), Health::Failed("OOMKilled".into()));
    }

    #[test]
    fn objects_with_conditions_follow_ready_stalled_and_reconciling() {
        let with = |conditions: Value| {
            json!({"apiVersion": "sigil.dev/v1alpha1",
            "kind": "SealedSecret", "metadata": {"name": "db", "generation": 1},
            "status": {"observedGeneration": 1, "conditions": conditions}})
        };
        assert!(
            assess(Some(&with(
                json!([{"type": "Ready", "status": "True", "reason": "Unsealed"}])
            )))
            .is_current()
        );
        let refused = assess(Some(&with(json!([{"type": "Ready", "status": "False",
            "reason": "ScopeMismatch", "message": "sealed for another namespace"}]))));
        assert_eq!(
            refused,
            Health::Failed("ScopeMismatch: sealed for another namespace".into())
        );
        let stalled = with(json!([{"type": "Ready", "status": "False", "reason": "X"},
            {"type": "Stalled", "status": "True", "reason": "InvalidSpec", "message": "bad"}]));
        assert_eq!(
            assess(Some(&stalled)),
            Health::Failed("InvalidSpec: bad".into())
        );
        let retrying = with(json!([{"type": "Ready", "status": "False", "reason": "X"},
            {"type": "Reconciling", "status": "True", "reason": "ProgressingWithRetry"}]));
        assert!(matches!(assess(Some(&retrying)), Health::InProgress(_)));
        let configmap = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert!(assess(Some(&configmap)).is_current());
        assert_eq!(assess(None), Health::InProgress("not found".into()));
        let deleting = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "deletionTimestamp": "2025-01-01T00:00:00Z"}});
        assert!(matches!(assess(Some(&deleting)), Health::InProgress(_)));
    }
}
