//! `spec.ignore[]`: fields left to other controllers. Each rule names JSON pointers (RFC 6901)
//! and optionally which objects they apply to (kustomize's selector, as Flux HelmRelease's
//! `driftDetection.ignore`). For an object that exists, an ignored field is applied with its
//! live value, or not at all when it is not set live — so sigil never changes it and never
//! takes it away from whoever set it (Argo CD's `RespectIgnoreDifferences`) — and it is left
//! out of the fingerprint self-heal compares, so a change of it is not drift. A new object is
//! created with the whole manifest.

use regex::Regex;
use serde_json::Value;

use super::plan::{Desired, Plan};
use super::pointer::{remove, set};
use super::selector::Selector;
use crate::api::render::PatchTarget;
use crate::api::sync::IgnoreRule;

/// Which objects a rule applies to.
struct Matcher {
    group: Option<String>,
    version: Option<String>,
    kind: Option<String>,
    name: Option<Regex>,
    namespace: Option<Regex>,
    labels: Option<Selector>,
    annotations: Option<Selector>,
}

/// A rule checked once per revision.
struct Compiled {
    paths: Vec<String>,
    target: Option<Matcher>,
}

/// A kustomize name or namespace pattern: a regular expression matching the whole value.
fn anchored(field: &str, pattern: &Option<String>) -> Result<Option<Regex>, String> {
    pattern
        .as_deref()
        .map(|p| Regex::new(&format!("^(?:{p})$")).map_err(|e| format!("target.{field}: {e}")))
        .transpose()
}

fn selector(field: &str, text: &Option<String>) -> Result<Option<Selector>, String> {
    text.as_deref()
        .map(|t| Selector::parse(t).map_err(|e| format!("target.{field}: {e}")))
        .transpose()
}

fn matcher(target: &PatchTarget) -> Result<Matcher, String> {
    Ok(Matcher {
        group: target.group.clone(),
        version: target.version.clone(),
        kind: target.kind.clone(),
        name: anchored("name", &target.name)?,
        namespace: anchored("namespace", &target.namespace)?,
        labels: selector("labelSelector", &target.label_selector)?,
        annotations: selector("annotationSelector", &target.annotation_selector)?,
    })
}

fn compile(rules: &[IgnoreRule]) -> Result<Vec<Compiled>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let at = |e: String| format!("spec.ignore[{i}]: {e}");
            if rule.paths.is_empty() {
                return Err(at("paths is empty".to_string()));
            }
            if let Some(bad) = rule.paths.iter().find(|p| !p.starts_with('/')) {
                return Err(at(format!(
                    "{bad:?} is not a JSON pointer (it starts with /)"
                )));
            }
            Ok(Compiled {
                paths: rule.paths.clone(),
                target: rule.target.as_ref().map(matcher).transpose().map_err(at)?,
            })
        })
        .collect()
}

impl Matcher {
    fn matches(&self, desired: &Desired) -> bool {
        let entry = &desired.entry;
        let (group, version) = match entry.api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", entry.api_version.as_str()),
        };
        let metadata = |field: &str| {
            desired
                .object
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_object)
        };
        self.group.as_deref().is_none_or(|g| g == group)
            && self.version.as_deref().is_none_or(|v| v == version)
            && self.kind.as_deref().is_none_or(|k| k == entry.kind)
            && self.name.as_ref().is_none_or(|r| r.is_match(&entry.name))
            && self
                .namespace
                .as_ref()
                .is_none_or(|r| r.is_match(&entry.namespace))
            && self
                .labels
                .as_ref()
                .is_none_or(|s| s.matches(metadata("labels")))
            && self
                .annotations
                .as_ref()
                .is_none_or(|s| s.matches(metadata("annotations")))
    }
}

/// Records on each planned object the paths `rules` ignore on it; an invalid rule (a bad
/// pointer, pattern or selector) is an error naming it.
pub fn resolve(rules: &[IgnoreRule], plan: &mut Plan) -> Result<(), String> {
    let compiled = compile(rules)?;
    for desired in &mut plan.objects {
        desired.ignored = compiled
            .iter()
            .filter(|rule| rule.target.as_ref().is_none_or(|t| t.matches(desired)))
            .flat_map(|rule| rule.paths.iter().cloned())
            .collect();
    }
    Ok(())
}

/// The body to apply to the existing `live` object: each ignored field at its live value, or
/// left out when it is not set live.
pub fn respect_live(body: &mut Value, live: &Value, ignored: &[String]) {
    for pointer in ignored {
        match live.pointer(pointer) {
            Some(value) => set(body, pointer, value.clone()),
            None => remove(body, pointer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sync::InventoryEntry;
    use crate::manifests::discovery::Kind;
    use crate::manifests::object::group_of;
    use crate::manifests::plan::Stage;
    use kube::api::ApiResource;
    use serde_json::json;

    fn desired(api_version: &str, kind: &str, name: &str, labels: Value) -> Desired {
        let entry = InventoryEntry::new(api_version, kind, "apps", name);
        Desired {
            file: "a.yaml".into(),
            line: 1,
            kind: Kind {
                resource: ApiResource {
                    group: group_of(api_version).into(),
                    version: "v1".into(),
                    api_version: api_version.into(),
                    kind: kind.into(),
                    plural: format!("{}s", kind.to_lowercase()),
                },
                namespaced: true,
            },
            entry,
            object: json!({"apiVersion": api_version, "kind": kind,
                "metadata": {"name": name, "namespace": "apps", "labels": labels},
                "spec": {"replicas": 2}}),
            stage: Stage::Objects,
            ignored: Vec::new(),
        }
    }

    fn rule(paths: &[&str], target: Option<Value>) -> IgnoreRule {
        IgnoreRule {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            target: target.map(|t| serde_json::from_value(t).expect("target")),
        }
    }

    #[test]
    fn rules_select_objects_by_kind_name_and_labels() {
        let mut plan = Plan {
            objects: vec![
                desired("apps/v1", "Deployment", "web", json!({"scale": "hpa"})),
                desired("apps/v1", "Deployment", "worker", json!({})),
                desired("v1", "ConfigMap", "web", json!({})),
            ],
        };
        let rules = [
            rule(
                &["/spec/replicas"],
                Some(json!({"group": "apps", "kind": "Deployment", "labelSelector": "scale=hpa"})),
            ),
            rule(&["/metadata/annotations/x"], None),
            rule(
                &["/data/y"],
                Some(json!({"kind": "ConfigMap", "name": "w.*"})),
            ),
        ];
        resolve(&rules, &mut plan).expect("valid rules");
        let ignored: Vec<Vec<String>> = plan.objects.iter().map(|d| d.ignored.clone()).collect();
        assert_eq!(
            ignored,
            [
                vec!["/spec/replicas", "/metadata/annotations/x"],
                vec!["/metadata/annotations/x"],
                vec!["/metadata/annotations/x", "/data/y"],
            ]
        );
        let bad = [rule(&["spec/replicas"], None)];
        assert!(
            resolve(&bad, &mut plan)
                .expect_err("not a pointer")
                .contains("spec.ignore[0]")
        );
        let bad = [rule(&["/a"], Some(json!({"name": "("})))];
        assert!(resolve(&bad, &mut plan).is_err());
    }

    #[test]
    fn ignored_fields_keep_their_live_values() {
        let mut body = json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "a"}]}}},
            "metadata": {"annotations": {"keep": "git"}}});
        let live = json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}},
            "metadata": {"labels": {"a/b": "live"}}});
        respect_live(
            &mut body,
            &live,
            &[
                "/spec/replicas".into(),
                "/metadata/annotations/keep".into(),
                "/metadata/labels/a~1b".into(),
                "/spec/template/spec/containers/0/image".into(),
            ],
        );
        assert_eq!(
            body,
            json!({"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "web", "image": "b"}]}}},
                "metadata": {"annotations": {}, "labels": {"a/b": "live"}}})
        );
    }
}
