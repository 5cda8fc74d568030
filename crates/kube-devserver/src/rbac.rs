//! RBAC authorization (`rbac.authorization.k8s.io/v1`) for impersonated users:
//! RoleBindings and ClusterRoleBindings resolved to Roles/ClusterRoles, rules matched
//! on verbs, API groups, resources (with subresources) and resource names.
//! Discovery, health and self-review endpoints are open to every authenticated user,
//! as the default `system:discovery`/`system:basic-user` bindings make them.

use serde_json::Value;

use super::auth::User;
use super::object;
use super::state::State;

/// What a request does, as authorization sees it.
#[derive(Clone, Debug)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// Why a request was refused, worded like the real authorizer.
pub fn forbidden_reason(user: &User, a: &Attributes<'_>) -> String {
    let resource = match a.subresource {
        Some(sub) => format!("{}/{sub}", a.resource),
        None => a.resource.to_string(),
    };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, a.verb, a.group
    )
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn subject_matches(subject: &Value, user: &User, binding_ns: &str) -> bool {
    let name = subject
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match subject
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
    {
        "User" => user.name == name,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = subject
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .unwrap_or(binding_ns);
            user.service_account() == Some((ns, name))
        }
        _ => false,
    }
}

fn covers(list: &[String], want: &str) -> bool {
    list.iter().any(|x| x == "*" || x == want)
}

fn resource_matches(resources: &[String], resource: &str, sub: Option<&str>) -> bool {
    let combined = match sub {
        Some(s) => format!("{resource}/{s}"),
        None => resource.to_string(),
    };
    resources.iter().any(|r| {
        r == "*"
            || *r == combined
            || sub.is_some_and(|s| *r == format!("*/{s}"))
            || (sub.is_some() && *r == format!("{resource}/*"))
    })
}

fn rule_allows(rule: &Value, a: &Attributes<'_>) -> bool {
    if !covers(&strings(rule, "verbs"), a.verb)
        || !covers(&strings(rule, "apiGroups"), a.group)
        || !resource_matches(&strings(rule, "resources"), a.resource, a.subresource)
    {
        return false;
    }
    let names = strings(rule, "resourceNames");
    names.is_empty() || (!a.name.is_empty() && names.iter().any(|n| n == a.name))
}

fn role_rules(st: &State, role_ref: &Value, binding_ns: &str) -> Vec<Value> {
    let kind = role_ref
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = role_ref
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let rbac = "rbac.authorization.k8s.io".to_string();
    let role = match kind {
        "Role" => st.store.get(&(rbac, "roles".into()), binding_ns, name),
        "ClusterRole" => st.store.get(&(rbac, "clusterroles".into()), "", name),
        _ => None,
    };
    role.and_then(|r| r.get("rules").and_then(Value::as_array).cloned())
        .unwrap_or_default()
}

/// Whether `user` may do `a`.
pub fn allowed(st: &State, user: &User, a: &Attributes<'_>) -> bool {
    if user.is_master() {
        return true;
    }
    if a.group == "authorization.k8s.io"
        && matches!(
            a.resource,
            "selfsubjectaccessreviews" | "selfsubjectrulesreviews"
        )
        && a.verb == "create"
    {
        return true;
    }
    let rbac = "rbac.authorization.k8s.io".to_string();
    for crb in st
        .store
        .list(&(rbac.clone(), "clusterrolebindings".into()), None)
    {
        let subjects = crb
            .get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, user, ""))
            && role_rules(st, &crb["roleRef"], "")
                .iter()
                .any(|r| rule_allows(r, a))
        {
            return true;
        }
    }
    if !a.namespace.is_empty() {
        for rb in st
            .store
            .list(&(rbac, "rolebindings".into()), Some(a.namespace))
        {
            let ns = object::namespace(&rb);
            let subjects = rb
                .get("subjects")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if subjects.iter().any(|s| subject_matches(s, user, ns))
                && role_rules(st, &rb["roleRef"], ns)
                    .iter()
                    .any(|r| rule_allows(r, a))
            {
                return true;
            }
        }
    }
    false
}

/// Answers a SelfSubjectAccessReview (for `requester`) or a SubjectAccessReview
/// (for the user the spec names): `status.allowed` from the same rules as requests.
pub fn review(st: &State, requester: &User, mut review: Value, self_review: bool) -> Value {
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let user = if self_review {
        requester.clone()
    } else {
        User {
            name: spec
                .get("user")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            groups: strings(&spec, "groups"),
        }
    };
    let allowed = if let Some(ra) = spec.get("resourceAttributes") {
        let s = |k: &str| {
            ra.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (verb, group, resource, sub, ns, name) = (
            s("verb"),
            s("group"),
            s("resource"),
            s("subresource"),
            s("namespace"),
            s("name"),
        );
        let attrs = Attributes {
            verb: &verb,
            group: &group,
            resource: &resource,
            subresource: (!sub.is_empty()).then_some(sub.as_str()),
            namespace: &ns,
            name: &name,
        };
        allowed(st, &user, &attrs)
    } else if let Some(nra) = spec.get("nonResourceAttributes") {
        let verb = nra.get("verb").and_then(Value::as_str).unwrap_or_default();
        let path = nra.get("path").and_then(Value::as_str).unwrap_or_default();
        allowed_path(st, &user, verb, path)
    } else {
        false
    };
    if let Some(obj) = review.as_object_mut() {
        obj.insert("status".into(), serde_json::json!({"allowed": allowed}));
    }
    review
}

/// Non-resource URLs every authenticated user may GET, plus what bindings grant.
pub fn allowed_path(st: &State, user: &User, verb: &str, path: &str) -> bool {
    if user.is_master() {
        return true;
    }
    const OPEN: &[&str] = &[
        "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi",
    ];
    if verb == "get"
        && OPEN
            .iter()
            .any(|p| path == *p || path.starts_with(&format!("{p}/")))
    {
        return true;
    }
    let rbac = "rbac.authorization.k8s.io".to_string();
    st.store
        .list(&(rbac, "clusterrolebindings".into()), None)
        .iter()
        .filter(|crb| {
            crb.get("subjects")
                .and_then(Value::as_array)
                .is_some_and(|s| s.iter().any(|s| subject_matches(s, user, "")))
        })
        .flat_map(|crb| role_rules(st, &crb["roleRef"], ""))
        .any(|rule| {
            covers(&strings(&rule, "verbs"), verb)
                && strings(&rule, "nonResourceURLs").iter().any(|u| {
                    u == "*"
                        || u == path
                        || u.strip_suffix('*').is_some_and(|p| path.starts_with(p))
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{WriteOptions, create};
    use serde_json::json;

    fn sa() -> User {
        User {
            name: "system:serviceaccount:apps:deployer".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
        }
    }

    fn attrs<'a>(verb: &'a str, resource: &'a str, ns: &'a str, name: &'a str) -> Attributes<'a> {
        Attributes {
            verb,
            group: "",
            resource,
            subresource: None,
            namespace: ns,
            name,
        }
    }

    fn state() -> State {
        let mut st = State::new(100, 16);
        let o = WriteOptions::new("t");
        let ns = st.registry.lookup("", "v1", "namespaces").expect("served");
        create(&mut st, &ns, "", json!({"metadata": {"name": "apps"}}), &o).expect("ns");
        let role = st
            .registry
            .lookup("rbac.authorization.k8s.io", "v1", "roles")
            .expect("served");
        create(&mut st, &role, "apps", json!({"metadata": {"name": "cm-editor"}, "rules": [
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "update"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["only-this"], "verbs": ["get"]}
        ]}), &o).expect("role");
        let rb = st
            .registry
            .lookup("rbac.authorization.k8s.io", "v1", "rolebindings")
            .expect("served");
        create(&mut st, &rb, "apps", json!({"metadata": {"name": "bind"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-editor"},
            "subjects": [{"kind": "ServiceAccount", "name": "deployer", "namespace": "apps"}]}), &o).expect("binding");
        st
    }

    #[test]
    fn role_bindings_grant_what_the_role_says() {
        let st = state();
        assert!(allowed(
            &st,
            &sa(),
            &attrs("get", "configmaps", "apps", "x")
        ));
        assert!(!allowed(
            &st,
            &sa(),
            &attrs("delete", "configmaps", "apps", "x")
        ));
        assert!(!allowed(
            &st,
            &sa(),
            &attrs("get", "configmaps", "other", "x")
        ));
        assert!(allowed(
            &st,
            &sa(),
            &attrs("get", "secrets", "apps", "only-this")
        ));
        assert!(!allowed(
            &st,
            &sa(),
            &attrs("get", "secrets", "apps", "other")
        ));
        assert!(!allowed(&st, &sa(), &attrs("list", "secrets", "apps", "")));
        assert!(allowed(
            &st,
            &User::admin(),
            &attrs("delete", "secrets", "kube-system", "x")
        ));
    }

    #[test]
    fn reasons_read_like_the_real_authorizer() {
        let r = forbidden_reason(&sa(), &attrs("list", "secrets", "", ""));
        assert_eq!(
            r,
            "User \"system:serviceaccount:apps:deployer\" cannot list resource \"secrets\" in API group \"\" at the cluster scope"
        );
    }
}
