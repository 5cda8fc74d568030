//! Cases from kube-apiserver's `strategicpatch/patch_test.go` (the
//! `MergeItem` test type) plus the patches kubectl sends for real kinds.

use serde_json::{Value, json};

use super::super::{ListSemantics, ListType, builtin_list_semantics};
use super::apply;

/// The `MergeItem` test type: merge lists keyed by `name`, merged int lists,
/// everything else replaced.
struct MergeItem;

impl ListSemantics for MergeItem {
    fn list_type(&self, path: &[&str]) -> ListType {
        match path.last() {
            Some(&"mergingList" | &"retainKeysMergingList") => ListType::Map(vec!["name".into()]),
            Some(&"mergingIntList") => ListType::Set,
            _ => ListType::Atomic,
        }
    }
}

fn patch(original: Value, p: Value) -> Value {
    apply(&original, &p, &MergeItem).expect("patch applies")
}

fn patch_err(original: Value, p: Value) -> String {
    apply(&original, &p, &MergeItem).expect_err("patch is refused")
}

#[test]
fn null_deletes_and_maps_merge() {
    assert_eq!(
        patch(
            json!({"name": 1, "other": "a", "simpleMap": {"key1": 1, "key2": 1}}),
            json!({"name": null, "value": 1, "simpleMap": {"key2": null, "key3": 3}})
        ),
        json!({"value": 1, "other": "a", "simpleMap": {"key1": 1, "key3": 3}})
    );
}

#[test]
fn nulls_for_absent_fields_are_dropped_not_stored() {
    assert_eq!(
        patch(
            json!({"name": "a"}),
            json!({"value": null, "simpleMap": {"k": null, "j": 1}})
        ),
        json!({"name": "a", "simpleMap": {"j": 1}})
    );
}

#[test]
fn map_patch_directives() {
    assert_eq!(
        patch(
            json!({"simpleMap": {"key1": 1, "key2": 1}}),
            json!({"simpleMap": {"$patch": "delete"}})
        ),
        json!({"simpleMap": {}})
    );
    assert_eq!(
        patch(
            json!({"name": 1, "value": 1}),
            json!({"other": "a", "$patch": "replace"})
        ),
        json!({"other": "a"})
    );
    assert!(
        patch_err(
            json!({"simpleMap": {"a": 1}}),
            json!({"simpleMap": {"$patch": "merge"}})
        )
        .contains("unknown patch type: merge")
    );
}

#[test]
fn merging_lists_merge_by_key_and_keep_patch_order() {
    // "preserve the order from the patch in a merging list"
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "other": "x"}]})
        ),
        json!({"mergingList": [
            {"name": 3, "value": "c"}, {"name": 1, "value": "a"}, {"name": 2, "value": "b", "other": "x"}
        ]})
    );
    // "preserve the order from the patch in a merging list 2"
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}, {"name": 2, "value": "b"}, {"name": 3}]}),
            json!({"mergingList": [{"name": 3, "value": "c"}, {"name": 1, "value": "a"}]})
        ),
        json!({"mergingList": [{"name": 2, "value": "b"}, {"name": 3, "value": "c"}, {"name": 1, "value": "a"}]})
    );
}

#[test]
fn merging_list_item_directives() {
    // "delete all duplicate entries in a merging list"
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}, {"name": 1}, {"name": 2, "value": "a"}, {"name": 3}, {"name": 3}]}),
            json!({"mergingList": [{"name": 1, "$patch": "delete"}, {"name": 3, "$patch": "delete"}]})
        ),
        json!({"mergingList": [{"name": 2, "value": "a"}]})
    );
    // "delete all items from merging list"
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"$patch": "replace"}]})
        ),
        json!({"mergingList": []})
    );
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}, {"name": 2}]}),
            json!({"mergingList": [{"name": 5}, {"$patch": "replace"}]})
        ),
        json!({"mergingList": [{"name": 5}]})
    );
    assert!(
        patch_err(
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"$patch": "merge"}]})
        )
        .contains("merging lists cannot yet be specified")
    );
    assert!(
        patch_err(
            json!({"mergingList": [{"name": 1, "value": "a"}]}),
            json!({"mergingList": [{"value": "b"}]})
        )
        .contains("does not contain declared merge key")
    );
}

#[test]
fn new_item_without_order_directive_goes_first() {
    // mergeSortedSlice puts patch items before server-only items it cannot place.
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}]}),
            json!({"mergingList": [{"name": 2}]})
        ),
        json!({"mergingList": [{"name": 2}, {"name": 1}]})
    );
}

#[test]
fn merged_int_lists_union_and_delete_from_primitive_list() {
    // "unique scalars when merging lists"
    assert_eq!(
        patch(
            json!({"mergingIntList": [1, 2]}),
            json!({"mergingIntList": [2, 3]})
        ),
        json!({"mergingIntList": [1, 2, 3]})
    );
    // "preserve the order from the patch in a merging int list"
    assert_eq!(
        patch(
            json!({"mergingIntList": [1, 2, 3]}),
            json!({"mergingIntList": [3, 1]})
        ),
        json!({"mergingIntList": [2, 3, 1]})
    );
    // "delete items in lists of scalars" (three-way result)
    assert_eq!(
        patch(
            json!({"mergingIntList": [1, 2, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]})
        ),
        json!({"mergingIntList": [1, 2, 4]})
    );
    // "delete all duplicate items in lists of scalars"
    assert_eq!(
        patch(
            json!({"mergingIntList": [1, 2, 3, 3, 4]}),
            json!({"$setElementOrder/mergingIntList": [1, 2], "$deleteFromPrimitiveList/mergingIntList": [3]})
        ),
        json!({"mergingIntList": [1, 2, 4]})
    );
}

#[test]
fn non_merging_lists_are_replaced() {
    assert_eq!(
        patch(
            json!({"nonMergingIntList": [1, 2]}),
            json!({"nonMergingIntList": [2, 3]})
        ),
        json!({"nonMergingIntList": [2, 3]})
    );
    assert_eq!(
        patch(
            json!({"nonMergingList": [{"name": 1, "value": 1}]}),
            json!({"nonMergingList": [{"name": 1}]})
        ),
        json!({"nonMergingList": [{"name": 1}]})
    );
}

#[test]
fn set_element_order_orders_the_merged_list() {
    // "merge lists of maps" (three-way result)
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1, "other": "a"}, {"name": 2, "value": 2, "other": "b"}]}),
            json!({
                "$setElementOrder/mergingList": [{"name": 4}, {"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 4, "value": 4}, {"name": 3, "value": 3}]
            })
        ),
        json!({"mergingList": [
            {"name": 4, "value": 4}, {"name": 1, "other": "a"},
            {"name": 2, "value": 2, "other": "b"}, {"name": 3, "value": 3}
        ]})
    );
    // "$setElementOrder contains item that is not present in the list to be merged"
    assert_eq!(
        patch(
            json!({"mergingList": [{"name": 1}, {"name": 3}]}),
            json!({
                "$setElementOrder/mergingList": [{"name": 3}, {"name": 2}, {"name": 1}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]
            })
        ),
        json!({"mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]})
    );
    // "should check if order in $setElementOrder and patch list match"
    assert!(
        patch_err(
            json!({"mergingList": [{"name": 1}, {"name": 3}, {"name": 2}]}),
            json!({
                "$setElementOrder/mergingList": [{"name": 1}, {"name": 2}, {"name": 3}],
                "mergingList": [{"name": 3, "value": 3}, {"name": 1, "value": 1}]
            })
        )
        .contains("doesn't match")
    );
}

#[test]
fn retain_keys_clears_unlisted_fields() {
    assert_eq!(
        patch(
            json!({"retainKeysMap": {"name": "foo", "value": "a", "other": "b"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name", "value"], "value": "c"}})
        ),
        json!({"retainKeysMap": {"name": "foo", "value": "c"}})
    );
    assert!(
        patch_err(
            json!({"retainKeysMap": {"name": "foo"}}),
            json!({"retainKeysMap": {"$retainKeys": ["name"], "value": "c"}})
        )
        .contains("retainKeys")
    );
}

#[test]
fn directives_never_land_in_new_fields() {
    assert_eq!(
        patch(
            json!({}),
            json!({"mergingList": [{"name": 1, "value": null, "$setElementOrder/x": []}],
                   "simpleMap": {"$patch": "replace", "a": 1}})
        ),
        json!({"mergingList": [{"name": 1}]})
    );
}

/// `kubectl apply` (client-side) removing a field the user deleted from
/// the manifest: its three-way patch sends `null`.
#[test]
fn kubectl_apply_removes_an_omitted_field_with_null() {
    let live = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"}},
        "data": {"keep": "1", "drop": "2"}
    });
    let p = json!({
        "data": {"drop": null},
        "metadata": {"annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"keep\":\"1\"}}"}}
    });
    let lists = builtin_list_semantics("", "ConfigMap");
    let out = apply(&live, &p, lists.as_ref()).expect("patch applies");
    assert_eq!(out["data"], json!({"keep": "1"}));
    assert_eq!(
        out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
        "{\"data\":{\"keep\":\"1\"}}"
    );
}

/// `kubectl set image` / `kubectl patch` on a Deployment: containers merge
/// by name, env by name, and a container can be deleted with `$patch`.
#[test]
fn deployment_containers_merge_by_name() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "spec": {"template": {"spec": {
            "containers": [
                {"name": "app", "image": "app:1", "env": [{"name": "A", "value": "1"}]},
                {"name": "sidecar", "image": "side:1"}
            ],
            "tolerations": [{"key": "a"}]
        }}}
    });
    let p = json!({"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "app"}],
        "containers": [
            {"name": "app", "image": "app:2", "env": [{"name": "B", "value": "2"}]},
            {"name": "sidecar", "$patch": "delete"}
        ],
        "tolerations": [{"key": "b"}]
    }}}});
    let lists = builtin_list_semantics("apps", "Deployment");
    let out = apply(&live, &p, lists.as_ref()).expect("patch applies");
    assert_eq!(
        out["spec"]["template"]["spec"],
        json!({
            "containers": [{"name": "app", "image": "app:2",
                            "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]}],
            "tolerations": [{"key": "b"}]
        })
    );
}

#[test]
fn finalizers_merge_as_a_set_and_delete_by_value() {
    let lists = builtin_list_semantics("", "ConfigMap");
    let live = json!({"metadata": {"finalizers": ["a", "b"]}});
    let added = apply(
        &live,
        &json!({"metadata": {"finalizers": ["c"]}}),
        lists.as_ref(),
    )
    .expect("applies");
    assert_eq!(added["metadata"]["finalizers"], json!(["c", "a", "b"]));
    let removed = apply(
        &live,
        &json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        lists.as_ref(),
    )
    .expect("applies");
    assert_eq!(removed["metadata"]["finalizers"], json!(["b"]));
}

/// The three-way patch `kubectl apply` sends when a Deployment switches
/// strategy and a volume switches source: `$retainKeys` clears the old
/// union member.
#[test]
fn kubectl_apply_retain_keys_switches_union_members() {
    let live = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
            "template": {"spec": {
                "containers": [{"name": "app", "image": "app:1"}],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "other", "emptyDir": {}}]
            }}
        }
    });
    let p = json!({"spec": {
        "strategy": {"$retainKeys": ["type"], "rollingUpdate": null, "type": "Recreate"},
        "template": {"spec": {
            "$setElementOrder/volumes": [{"name": "data"}, {"name": "other"}],
            "volumes": [{"$retainKeys": ["configMap", "name"], "configMap": {"name": "cfg"}, "name": "data"}]
        }}
    }});
    let lists = builtin_list_semantics("apps", "Deployment");
    let out = apply(&live, &p, lists.as_ref()).expect("patch applies");
    assert_eq!(out["spec"]["strategy"], json!({"type": "Recreate"}));
    assert_eq!(
        out["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "data", "configMap": {"name": "cfg"}}, {"name": "other", "emptyDir": {}}])
    );
}
