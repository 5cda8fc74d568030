//! Server-side apply, from the scenarios of the Kubernetes "Server-Side
//! Apply" documentation and kube-apiserver's field manager behaviour.

use serde_json::{Value, json};

use super::super::{
    ApplyRequest, AtomicLists, ListSemantics, PatchError, builtin_list_semantics,
    server_side_apply, track_update,
};

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

fn apply_as(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    lists: &dyn ListSemantics,
    now: &str,
) -> Result<Value, PatchError> {
    let req = ApplyRequest {
        manager,
        force,
        subresource: None,
        lists,
        now,
    };
    server_side_apply(live, applied, &req)
}

fn cm_apply(
    live: Option<&Value>,
    data: Value,
    manager: &str,
    force: bool,
) -> Result<Value, PatchError> {
    let applied = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default"},
        "data": data
    });
    let lists = builtin_list_semantics("", "ConfigMap");
    apply_as(live, &applied, manager, force, lists.as_ref(), T2)
}

fn entry<'a>(obj: &'a Value, manager: &str) -> Option<&'a Value> {
    obj["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager)
}

fn fields<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    &entry(obj, manager).unwrap_or_else(|| panic!("no entry for {manager} in {obj}"))["fieldsV1"]
}

fn conflicts(err: PatchError) -> Vec<(String, String)> {
    match err {
        PatchError::Conflict(list) => list.into_iter().map(|c| (c.manager, c.field)).collect(),
        other => panic!("expected a conflict, got {other}"),
    }
}

/// The documentation's first example: creating a ConfigMap with apply
/// records one Apply entry owning the label and the data key, and none of
/// the server-owned metadata.
#[test]
fn create_by_apply_records_the_documented_managed_fields() {
    let applied = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"},
                     "creationTimestamp": null},
        "data": {"key": "some value"}
    });
    let lists = builtin_list_semantics("", "ConfigMap");
    let obj = apply_as(None, &applied, "kubectl", false, lists.as_ref(), T1).expect("create");
    assert_eq!(obj["data"], json!({"key": "some value"}));
    assert_eq!(obj["metadata"]["labels"], json!({"test-label": "test"}));
    assert!(obj["metadata"].get("creationTimestamp").is_none());
    let mf = obj["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert_eq!(mf.len(), 1);
    assert_eq!(
        mf[0],
        json!({
            "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}}
        })
    );
}

#[test]
fn two_appliers_conflict_on_a_different_value() {
    let live = cm_apply(None, json!({"key": "a"}), "alice", false).expect("create");
    let err = cm_apply(Some(&live), json!({"key": "b"}), "bob", false).expect_err("conflict");
    let msg = err.to_string();
    assert_eq!(
        conflicts(err),
        vec![("alice".to_string(), ".data.key".to_string())]
    );
    assert_eq!(
        msg,
        r#"Apply failed with 1 conflict: conflict with "alice": .data.key"#
    );
}

#[test]
fn the_same_value_is_shared_and_a_later_change_by_either_conflicts() {
    let live = cm_apply(None, json!({"key": "a"}), "alice", false).expect("create");
    let shared = cm_apply(Some(&live), json!({"key": "a"}), "bob", false).expect("no conflict");
    assert_eq!(fields(&shared, "alice"), &json!({"f:data": {"f:key": {}}}));
    assert_eq!(fields(&shared, "bob"), &json!({"f:data": {"f:key": {}}}));
    // Nothing changed, so bob's entry has no time yet and alice keeps hers.
    assert!(entry(&shared, "bob").expect("bob")["time"].is_null());
    assert_eq!(entry(&shared, "alice").expect("alice")["time"], T2);

    let err =
        cm_apply(Some(&shared), json!({"key": "c"}), "alice", false).expect_err("bob co-owns");
    assert_eq!(
        conflicts(err),
        vec![("bob".to_string(), ".data.key".to_string())]
    );
}

#[test]
fn force_takes_ownership() {
    let live = cm_apply(None, json!({"key": "a", "other": "x"}), "alice", false).expect("create");
    let forced = cm_apply(Some(&live), json!({"key": "b"}), "bob", true).expect("forced");
    assert_eq!(forced["data"], json!({"key": "b", "other": "x"}));
    assert_eq!(fields(&forced, "bob"), &json!({"f:data": {"f:key": {}}}));
    assert_eq!(
        fields(&forced, "alice"),
        &json!({"f:data": {"f:other": {}}})
    );

    // A manager whose every field is taken disappears.
    let taken = cm_apply(Some(&forced), json!({"other": "y"}), "bob", true).expect("forced");
    assert!(entry(&taken, "alice").is_none(), "{taken}");
}

#[test]
fn a_field_the_sole_owner_stops_applying_is_removed() {
    let live = cm_apply(None, json!({"a": "1", "b": "2"}), "alice", false).expect("create");
    let next = cm_apply(Some(&live), json!({"a": "1"}), "alice", false).expect("apply");
    assert_eq!(next["data"], json!({"a": "1"}));
    assert_eq!(fields(&next, "alice"), &json!({"f:data": {"f:a": {}}}));
}

#[test]
fn a_field_another_manager_shares_is_kept_when_one_stops_applying() {
    let live = cm_apply(None, json!({"a": "1", "b": "2"}), "alice", false).expect("create");
    let shared = cm_apply(Some(&live), json!({"b": "2"}), "bob", false).expect("share b");
    let next = cm_apply(Some(&shared), json!({"a": "1"}), "alice", false).expect("drop b");
    assert_eq!(next["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(fields(&next, "bob"), &json!({"f:data": {"f:b": {}}}));
}

#[test]
fn a_field_owned_by_an_updater_is_kept_when_the_applier_drops_it() {
    let live = cm_apply(None, json!({"a": "1", "b": "2"}), "alice", false).expect("create");
    let mut edited = live.clone();
    edited["data"]["b"] = json!("edited");
    track_update(Some(&live), &mut edited, "kubectl-edit", None, T2);
    let next = cm_apply(Some(&edited), json!({"a": "1"}), "alice", false).expect("apply");
    assert_eq!(next["data"], json!({"a": "1", "b": "edited"}));
}

#[test]
fn an_update_manager_conflicts_with_its_api_version() {
    let live = cm_apply(None, json!({"key": "a"}), "alice", false).expect("create");
    let mut edited = live.clone();
    edited["data"]["key"] = json!("edited");
    track_update(Some(&live), &mut edited, "kubectl-edit", None, T2);
    let err = cm_apply(Some(&edited), json!({"key": "a"}), "alice", false).expect_err("conflict");
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-edit" using v1: .data.key"#
    );
}

#[test]
fn fields_set_before_the_first_apply_belong_to_before_first_apply() {
    let live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "uid": "u1"},
        "data": {"key": "old"}
    });
    let err = cm_apply(Some(&live), json!({"key": "new"}), "alice", false).expect_err("conflict");
    assert_eq!(
        conflicts(err),
        vec![("before-first-apply".to_string(), ".data.key".to_string())]
    );
    let forced = cm_apply(Some(&live), json!({"key": "new"}), "alice", true).expect("forced");
    assert_eq!(forced["metadata"]["uid"], "u1");
    // It keeps the map it created (`f:data` with ".") but loses the key.
    assert_eq!(
        fields(&forced, "before-first-apply"),
        &json!({"f:data": {}})
    );
    assert_eq!(fields(&forced, "alice"), &json!({"f:data": {"f:key": {}}}));
}

#[test]
fn kubectl_upgrading_from_client_side_apply_does_not_conflict_with_itself() {
    let last_applied = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default"},
        "data": {"key": "a"}
    });
    let mut live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default",
                     "annotations": {"kubectl.kubernetes.io/last-applied-configuration": format!("{last_applied}\n")}},
        "data": {"key": "a"}
    });
    track_update(None, &mut live, "kubectl-client-side-apply", None, T1);

    let other = cm_apply(Some(&live), json!({"key": "b"}), "someone", false).expect_err("conflict");
    assert_eq!(conflicts(other)[0].0, "kubectl-client-side-apply");

    let upgraded = cm_apply(Some(&live), json!({"key": "b"}), "kubectl", false).expect("allowed");
    assert_eq!(upgraded["data"]["key"], "b");
    assert_eq!(
        fields(&upgraded, "kubectl"),
        &json!({"f:data": {"f:key": {}}})
    );
    let annotation =
        upgraded["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .expect("annotation kept current");
    let parsed: Value = serde_json::from_str(annotation).expect("JSON");
    assert_eq!(parsed["data"]["key"], "b");
}

fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

#[test]
fn map_list_items_are_keyed_and_removed_when_no_longer_applied() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let both = deployment(json!([
        {"name": "app", "image": "app:1", "ports": [{"containerPort": 80}]},
        {"name": "sidecar", "image": "side:1"}
    ]));
    let live = apply_as(None, &both, "deployer", false, lists.as_ref(), T1).expect("create");
    let f = fields(&live, "deployer");
    assert_eq!(
        f["f:spec"]["f:selector"],
        json!({}),
        "a LabelSelector is atomic"
    );
    let app = &f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
    assert_eq!(app["."], json!({}));
    assert_eq!(app["f:image"], json!({}));
    assert!(
        app["f:ports"]
            .get("k:{\"containerPort\":80,\"protocol\":\"TCP\"}")
            .is_some(),
        "protocol defaults to TCP in the key: {app}"
    );

    let one =
        deployment(json!([{"name": "app", "image": "app:2", "ports": [{"containerPort": 80}]}]));
    let next = apply_as(Some(&live), &one, "deployer", false, lists.as_ref(), T2).expect("apply");
    let containers = &next["spec"]["template"]["spec"]["containers"];
    assert_eq!(containers.as_array().map(Vec::len), Some(1));
    assert_eq!(containers[0]["image"], "app:2");
}

#[test]
fn a_container_another_manager_added_survives_the_appliers_next_apply() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let live = apply_as(
        None,
        &deployment(json!([{"name": "app", "image": "app:1"}])),
        "deployer",
        false,
        lists.as_ref(),
        T1,
    )
    .expect("create");
    let injected = apply_as(
        Some(&live),
        &deployment(json!([{"name": "proxy", "image": "proxy:1"}])),
        "injector",
        false,
        lists.as_ref(),
        T2,
    )
    .expect("second manager adds a container");
    let names: Vec<&str> = injected["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "proxy"]);

    let again = apply_as(
        Some(&injected),
        &deployment(json!([{"name": "app", "image": "app:2"}])),
        "deployer",
        false,
        lists.as_ref(),
        T3,
    )
    .expect("apply");
    let names: Vec<&str> = again["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "proxy"]);
}

#[test]
fn status_subresource_apply_only_touches_status() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let live = apply_as(
        None,
        &deployment(json!([{"name": "app", "image": "app:1"}])),
        "deployer",
        false,
        lists.as_ref(),
        T1,
    )
    .expect("create");
    let status_apply = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 9},
        "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True"}]}
    });
    let req = ApplyRequest {
        manager: "controller",
        force: false,
        subresource: Some("status"),
        lists: lists.as_ref(),
        now: T2,
    };
    let out = server_side_apply(Some(&live), &status_apply, &req).expect("status apply");
    assert_eq!(out["status"]["replicas"], 1);
    assert!(
        out["spec"].get("replicas").is_none(),
        "spec untouched: {out}"
    );
    let e = entry(&out, "controller").expect("controller entry");
    assert_eq!(e["subresource"], "status");
    assert_eq!(
        e["fieldsV1"],
        json!({"f:status": {"f:replicas": {},
            "f:conditions": {"k:{\"type\":\"Available\"}": {".": {}, "f:type": {}, "f:status": {}}}}})
    );
    assert_eq!(fields(&out, "deployer"), fields(&live, "deployer"));
}

#[test]
fn main_resource_apply_neither_owns_nor_changes_status() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let mut with_status = deployment(json!([{"name": "app", "image": "app:1"}]));
    with_status["status"] = json!({"replicas": 3});
    let out = apply_as(None, &with_status, "deployer", false, lists.as_ref(), T1).expect("create");
    assert!(out.get("status").is_none());
    assert!(fields(&out, "deployer").get("f:status").is_none());
}

#[test]
fn a_noop_apply_keeps_the_object_and_its_time() {
    let live = cm_apply(None, json!({"key": "a"}), "alice", false).expect("create");
    let lists = builtin_list_semantics("", "ConfigMap");
    let applied = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default"}, "data": {"key": "a"}
    });
    let again = apply_as(Some(&live), &applied, "alice", false, lists.as_ref(), T3).expect("noop");
    assert_eq!(again, live);
}

#[test]
fn server_owned_metadata_is_kept_and_never_owned() {
    let mut live = cm_apply(None, json!({"key": "a"}), "alice", false).expect("create");
    live["metadata"]["uid"] = json!("u1");
    live["metadata"]["resourceVersion"] = json!("7");
    live["metadata"]["creationTimestamp"] = json!(T1);
    let applied = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "uid": "other",
                     "resourceVersion": "1", "creationTimestamp": null},
        "data": {"key": "a"}
    });
    let lists = builtin_list_semantics("", "ConfigMap");
    let out = apply_as(Some(&live), &applied, "alice", false, lists.as_ref(), T2).expect("apply");
    assert_eq!(out["metadata"]["uid"], "u1");
    assert_eq!(out["metadata"]["resourceVersion"], "7");
    assert_eq!(out["metadata"]["creationTimestamp"], T1);
    assert_eq!(fields(&out, "alice"), &json!({"f:data": {"f:key": {}}}));
}

#[test]
fn invalid_apply_requests_are_refused() {
    let live = cm_apply(None, json!({"key": "a"}), "alice", false).expect("create");
    let lists = AtomicLists;
    let with_mf = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "managedFields": []}});
    let err = apply_as(Some(&live), &with_mf, "x", false, &lists, T2).expect_err("refused");
    assert_eq!(err.to_string(), "metadata.managedFields must be nil");

    let other_version =
        json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "test-cm"}});
    let err = apply_as(Some(&live), &other_version, "x", false, &lists, T2).expect_err("refused");
    assert!(
        err.to_string()
            .starts_with("Incorrect version specified in apply patch"),
        "{err}"
    );

    let deploy_lists = builtin_list_semantics("apps", "Deployment");
    let no_key = deployment(json!([{"image": "app:1"}]));
    let err = apply_as(None, &no_key, "x", false, deploy_lists.as_ref(), T2).expect_err("refused");
    assert!(
        err.to_string().contains("omits key field \"name\""),
        "{err}"
    );
}

#[test]
fn finalizers_are_a_set_owned_item_by_item() {
    let lists = builtin_list_semantics("", "ConfigMap");
    let with = |finalizers: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "test-cm", "finalizers": finalizers}})
    };
    let live = apply_as(
        None,
        &with(json!(["a/x"])),
        "alice",
        false,
        lists.as_ref(),
        T1,
    )
    .expect("create");
    let both = apply_as(
        Some(&live),
        &with(json!(["b/y"])),
        "bob",
        false,
        lists.as_ref(),
        T2,
    )
    .expect("apply");
    assert_eq!(both["metadata"]["finalizers"], json!(["a/x", "b/y"]));
    assert_eq!(
        fields(&both, "bob"),
        &json!({"f:metadata": {"f:finalizers": {"v:\"b/y\"": {}}}})
    );
    let released = apply_as(
        Some(&both),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "test-cm"}}),
        "alice",
        false,
        lists.as_ref(),
        T3,
    )
    .expect("apply");
    assert_eq!(released["metadata"]["finalizers"], json!(["b/y"]));
}

/// kube-apiserver's `TestApplyCanRemoveMapItemsContributedToByControllers`:
/// a container the applier drops goes even though an updater set a field
/// inside it.
#[test]
fn a_dropped_list_item_goes_even_when_an_updater_changed_a_field_in_it() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let live = apply_as(
        None,
        &deployment(json!([{"name": "nginx", "image": "nginx:latest"}])),
        "test_applier",
        false,
        lists.as_ref(),
        T1,
    )
    .expect("create");
    let mut updated = live.clone();
    updated["spec"]["template"]["spec"]["containers"][0]["workingDir"] = json!("/home/replacement");
    track_update(Some(&live), &mut updated, "test_updater", None, T2);
    let next = apply_as(
        Some(&updated),
        &deployment(json!([{"name": "other-container", "image": "nginx:latest"}])),
        "test_applier",
        false,
        lists.as_ref(),
        T3,
    )
    .expect("apply");
    let containers = next["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "{containers:?}");
    assert_eq!(containers[0]["name"], "other-container");
    assert!(
        entry(&next, "test_updater").is_none(),
        "the updater's field went with the item"
    );
}

/// kube-apiserver's `TestApplyCanTransferFieldOwnershipToController`.
#[test]
fn a_field_a_controller_took_over_persists_when_the_applier_omits_it() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let mut with_replicas = deployment(json!([{"name": "nginx", "image": "nginx:latest"}]));
    with_replicas["spec"]["replicas"] = json!(3);
    let live = apply_as(
        None,
        &with_replicas,
        "test_applier",
        false,
        lists.as_ref(),
        T1,
    )
    .expect("create");
    let mut scaled = live.clone();
    scaled["spec"]["replicas"] = json!(4);
    track_update(Some(&live), &mut scaled, "test_updater", None, T2);
    let next = apply_as(
        Some(&scaled),
        &deployment(json!([{"name": "nginx", "image": "nginx:latest"}])),
        "test_applier",
        false,
        lists.as_ref(),
        T3,
    )
    .expect("apply");
    assert_eq!(next["spec"]["replicas"], 4);
}

/// kube-apiserver's `TestDefaultMissingKeys`: a port applied without its
/// protocol is the same item as one applied with `protocol: TCP`.
#[test]
fn missing_key_fields_take_their_default() {
    let lists = builtin_list_semantics("apps", "Deployment");
    let live = apply_as(
        None,
        &deployment(json!([{"name": "nginx", "image": "nginx:latest",
                             "ports": [{"name": "foo", "containerPort": 80}]}])),
        "test_applier",
        false,
        lists.as_ref(),
        T1,
    )
    .expect("create");
    let err = apply_as(
        Some(&live),
        &deployment(json!([{"name": "nginx", "image": "nginx:latest",
                             "ports": [{"name": "bar", "containerPort": 80, "protocol": "TCP"}]}])),
        "test_applier_conflict",
        false,
        lists.as_ref(),
        T2,
    )
    .expect_err("conflict");
    assert_eq!(
        conflicts(err),
        vec![(
            "test_applier".to_string(),
            r#".spec.template.spec.containers[name="nginx"].ports[containerPort=80,protocol="TCP"].name"#
                .to_string()
        )]
    );
}
