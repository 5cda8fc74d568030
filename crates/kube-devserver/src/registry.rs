//! The resources the server serves: the built-in kinds and those CRDs add.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps;
use serde_json::Value;

use super::names::NameRule;
use super::schema::CrdSchema;
use super::status::GroupResource;

/// The built-in kinds the server stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Builtin {
    Namespace,
    Secret,
    ConfigMap,
    ServiceAccount,
    Service,
    CoreEvent,
    EventsV1,
    Deployment,
    StatefulSet,
    DaemonSet,
    /// `policy/v1` and `networking.k8s.io/v1`: stored as data (nothing evicts or filters).
    PodDisruptionBudget,
    NetworkPolicy,
    Lease,
    Role,
    RoleBinding,
    ClusterRole,
    ClusterRoleBinding,
    Crd,
    /// `authorization.k8s.io/v1` reviews: create-only, answered, never stored.
    SelfSubjectAccessReview,
    SubjectAccessReview,
    /// `authentication.k8s.io/v1` TokenReview: create-only, answered, never stored.
    TokenReview,
}

/// What a CRD declares for one served version.
#[derive(Clone, Debug)]
pub struct CustomInfo {
    pub crd_name: String,
    /// `openAPIV3Schema` of this version, if any.
    pub schema: Option<Value>,
    /// The same schema, parsed, for pruning, defaulting and list semantics.
    pub structural: Option<Arc<JSONSchemaProps>>,
    /// List semantics for strategic merge patch and server-side apply.
    pub lists: Arc<CrdSchema>,
    pub printer_columns: Vec<Value>,
    /// `spec.preserveUnknownFields` (v1 allows only false).
    pub preserve_unknown_fields: bool,
    /// JSON paths of `selectableFields` (without the leading dot).
    pub selectable_fields: Vec<String>,
}

#[derive(Clone, Debug)]
pub enum Flavor {
    Builtin(Builtin),
    Custom(CustomInfo),
}

/// Where objects of a resource live in the store, shared by all its versions.
pub type StorageKey = (String, String);

/// One served group/version/resource.
#[derive(Clone, Debug)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub kind: String,
    pub singular: String,
    pub list_kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    /// A `status` subresource is served.
    pub status: bool,
    pub storage: StorageKey,
    pub flavor: Flavor,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn gr(&self) -> GroupResource {
        GroupResource::new(&self.group, &self.resource)
    }

    pub fn builtin(&self) -> Option<Builtin> {
        match self.flavor {
            Flavor::Builtin(b) => Some(b),
            Flavor::Custom(_) => None,
        }
    }

    pub fn custom(&self) -> Option<&CustomInfo> {
        match &self.flavor {
            Flavor::Custom(c) => Some(c),
            Flavor::Builtin(_) => None,
        }
    }

    pub fn is(&self, b: Builtin) -> bool {
        self.builtin() == Some(b)
    }

    /// `metadata.generation` is kept (set to 1 on create, bumped on spec changes).
    pub fn tracks_generation(&self) -> bool {
        match self.flavor {
            Flavor::Custom(_) => true,
            Flavor::Builtin(b) => matches!(
                b,
                Builtin::Deployment
                    | Builtin::StatefulSet
                    | Builtin::DaemonSet
                    | Builtin::PodDisruptionBudget
                    | Builtin::NetworkPolicy
                    | Builtin::Crd
            ),
        }
    }

    /// PUT on a missing object creates it (`AllowCreateOnUpdate`).
    pub fn create_on_update(&self) -> bool {
        matches!(
            self.builtin(),
            Some(
                Builtin::Service
                    | Builtin::CoreEvent
                    | Builtin::EventsV1
                    | Builtin::Lease
                    | Builtin::Role
                    | Builtin::RoleBinding
                    | Builtin::ClusterRole
                    | Builtin::ClusterRoleBinding
            )
        )
    }

    /// PUT without `metadata.resourceVersion` overwrites (`AllowUnconditionalUpdate`).
    pub fn unconditional_update(&self) -> bool {
        !matches!(self.flavor, Flavor::Custom(_)) && !self.is(Builtin::Lease)
    }

    /// DELETE answers with the deleted object rather than a `Status` (`ReturnDeletedObject`).
    pub fn returns_deleted_object(&self) -> bool {
        match self.flavor {
            Flavor::Custom(_) => true,
            Flavor::Builtin(b) => matches!(
                b,
                Builtin::Namespace | Builtin::ServiceAccount | Builtin::Service
            ),
        }
    }

    /// Whether this is an access or token review (create-only, not stored).
    pub fn is_review(&self) -> bool {
        matches!(
            self.builtin(),
            Some(
                Builtin::SelfSubjectAccessReview
                    | Builtin::SubjectAccessReview
                    | Builtin::TokenReview
            )
        )
    }

    /// The verbs discovery lists.
    pub fn verbs(&self) -> &'static [&'static str] {
        if self.is_review() {
            &["create"]
        } else {
            &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ]
        }
    }

    pub fn name_rule(&self) -> NameRule {
        match self.builtin() {
            Some(Builtin::Namespace) => NameRule::Label,
            Some(Builtin::Service) => NameRule::Dns1035,
            Some(
                Builtin::Role
                | Builtin::RoleBinding
                | Builtin::ClusterRole
                | Builtin::ClusterRoleBinding,
            ) => NameRule::PathSegment,
            _ => NameRule::Subdomain,
        }
    }

    /// Field selector labels the resource supports besides `metadata.name`/`metadata.namespace`.
    pub fn extra_field_labels(&self) -> Vec<String> {
        match &self.flavor {
            Flavor::Builtin(Builtin::Secret) => vec!["type".into()],
            Flavor::Builtin(Builtin::Namespace) => vec!["status.phase".into()],
            Flavor::Builtin(Builtin::CoreEvent) => [
                "involvedObject.kind",
                "involvedObject.namespace",
                "involvedObject.name",
                "involvedObject.uid",
                "involvedObject.apiVersion",
                "involvedObject.resourceVersion",
                "involvedObject.fieldPath",
                "reason",
                "reportingComponent",
                "source",
                "type",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            Flavor::Builtin(Builtin::EventsV1) => [
                "regarding.kind",
                "regarding.namespace",
                "regarding.name",
                "regarding.uid",
                "regarding.apiVersion",
                "reason",
                "reportingController",
                "type",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            Flavor::Custom(c) => c.selectable_fields.clone(),
            _ => Vec::new(),
        }
    }
}

/// How a resource is found: group, version, plural.
pub type Gvr = (String, String, String);

/// Every served resource, plus the order groups are listed in discovery.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    types: BTreeMap<Gvr, Arc<ResourceType>>,
    /// Groups in discovery order with their versions in preference order.
    groups: Vec<(String, Vec<String>)>,
}

impl Registry {
    pub fn with_builtins() -> Self {
        let mut r = Self::default();
        for t in builtin_types() {
            r.insert(t);
        }
        r
    }

    pub fn lookup(&self, group: &str, version: &str, resource: &str) -> Option<Arc<ResourceType>> {
        self.types
            .get(&(group.to_string(), version.to_string(), resource.to_string()))
            .cloned()
    }

    /// The preferred version's type for a storage key (what GC and namespace cleanup use).
    pub fn preferred_for_storage(&self, storage: &StorageKey) -> Option<Arc<ResourceType>> {
        let versions = self
            .groups
            .iter()
            .find(|(g, _)| *g == storage.0)
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        versions
            .iter()
            .find_map(|v| self.lookup(&storage.0, v, &storage.1))
    }

    /// One type per stored resource (preferred version), e.g. to sweep a namespace.
    pub fn storage_types(&self) -> Vec<Arc<ResourceType>> {
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for t in self.types.values() {
            if seen.insert(t.storage.clone())
                && let Some(p) = self.preferred_for_storage(&t.storage)
            {
                out.push(p);
            }
        }
        out
    }

    pub fn groups(&self) -> &[(String, Vec<String>)] {
        &self.groups
    }

    /// The types of one group/version, in name order.
    pub fn group_version(&self, group: &str, version: &str) -> Vec<Arc<ResourceType>> {
        self.types
            .values()
            .filter(|t| t.group == group && t.version == version)
            .cloned()
            .collect()
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ResourceType>> {
        self.types.values()
    }

    pub fn insert(&mut self, t: ResourceType) {
        match self.groups.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, versions)) => {
                if !versions.contains(&t.version) {
                    versions.push(t.version.clone());
                    versions.sort_by_key(|a| version_priority(a));
                }
            }
            None => self.groups.push((t.group.clone(), vec![t.version.clone()])),
        }
        self.types.insert(
            (t.group.clone(), t.version.clone(), t.resource.clone()),
            Arc::new(t),
        );
    }

    /// Removes every type a CRD added.
    pub fn remove_crd(&mut self, crd_name: &str) {
        self.types
            .retain(|_, t| t.custom().is_none_or(|c| c.crd_name != crd_name));
        let present: std::collections::BTreeSet<(String, String)> = self
            .types
            .values()
            .map(|t| (t.group.clone(), t.version.clone()))
            .collect();
        for (g, versions) in &mut self.groups {
            versions.retain(|v| present.contains(&(g.clone(), v.clone())));
        }
        self.groups.retain(|(_, v)| !v.is_empty());
    }

    /// Whether a plural, short name or kind is already taken in a group by another CRD or a built-in.
    pub fn name_taken(&self, group: &str, name: &str, except_crd: &str) -> bool {
        self.types.values().any(|t| {
            t.group == group
                && t.custom().is_none_or(|c| c.crd_name != except_crd)
                && (t.resource == name || t.short_names.iter().any(|s| s == name))
        })
    }
}

/// Sort key for Kubernetes version names: GA > beta > alpha, higher numbers first, others last.
pub fn version_priority(v: &str) -> (u8, i64, i64, String) {
    let parse = |s: &str| -> Option<(u8, i64, i64)> {
        let rest = s.strip_prefix('v')?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let major: i64 = digits.parse().ok()?;
        let tail = &rest[digits.len()..];
        if tail.is_empty() {
            return Some((0, -major, 0));
        }
        for (tag, rank) in [("beta", 1u8), ("alpha", 2u8)] {
            if let Some(n) = tail.strip_prefix(tag) {
                let minor: i64 = n.parse().ok()?;
                return Some((rank, -major, -minor));
            }
        }
        None
    };
    match parse(v) {
        Some((rank, major, minor)) => (rank, major, minor, String::new()),
        None => (3, 0, 0, v.to_string()),
    }
}

struct Spec {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    categories: &'static [&'static str],
    status: bool,
    builtin: Builtin,
}

fn builtin_types() -> Vec<ResourceType> {
    use Builtin::*;
    let specs = [
        Spec {
            group: "",
            version: "v1",
            resource: "namespaces",
            kind: "Namespace",
            namespaced: false,
            short: &["ns"],
            categories: &[],
            status: true,
            builtin: Namespace,
        },
        Spec {
            group: "",
            version: "v1",
            resource: "secrets",
            kind: "Secret",
            namespaced: true,
            short: &[],
            categories: &[],
            status: false,
            builtin: Secret,
        },
        Spec {
            group: "",
            version: "v1",
            resource: "configmaps",
            kind: "ConfigMap",
            namespaced: true,
            short: &["cm"],
            categories: &[],
            status: false,
            builtin: ConfigMap,
        },
        Spec {
            group: "",
            version: "v1",
            resource: "serviceaccounts",
            kind: "ServiceAccount",
            namespaced: true,
            short: &["sa"],
            categories: &[],
            status: false,
            builtin: ServiceAccount,
        },
        Spec {
            group: "",
            version: "v1",
            resource: "services",
            kind: "Service",
            namespaced: true,
            short: &["svc"],
            categories: &["all"],
            status: true,
            builtin: Service,
        },
        Spec {
            group: "",
            version: "v1",
            resource: "events",
            kind: "Event",
            namespaced: true,
            short: &["ev"],
            categories: &[],
            status: false,
            builtin: CoreEvent,
        },
        Spec {
            group: "events.k8s.io",
            version: "v1",
            resource: "events",
            kind: "Event",
            namespaced: true,
            short: &["ev"],
            categories: &[],
            status: false,
            builtin: EventsV1,
        },
        Spec {
            group: "apps",
            version: "v1",
            resource: "deployments",
            kind: "Deployment",
            namespaced: true,
            short: &["deploy"],
            categories: &["all"],
            status: true,
            builtin: Deployment,
        },
        Spec {
            group: "apps",
            version: "v1",
            resource: "statefulsets",
            kind: "StatefulSet",
            namespaced: true,
            short: &["sts"],
            categories: &["all"],
            status: true,
            builtin: StatefulSet,
        },
        Spec {
            group: "apps",
            version: "v1",
            resource: "daemonsets",
            kind: "DaemonSet",
            namespaced: true,
            short: &["ds"],
            categories: &["all"],
            status: true,
            builtin: DaemonSet,
        },
        Spec {
            group: "policy",
            version: "v1",
            resource: "poddisruptionbudgets",
            kind: "PodDisruptionBudget",
            namespaced: true,
            short: &["pdb"],
            categories: &[],
            status: true,
            builtin: PodDisruptionBudget,
        },
        Spec {
            group: "networking.k8s.io",
            version: "v1",
            resource: "networkpolicies",
            kind: "NetworkPolicy",
            namespaced: true,
            short: &["netpol"],
            categories: &[],
            status: false,
            builtin: NetworkPolicy,
        },
        Spec {
            group: "coordination.k8s.io",
            version: "v1",
            resource: "leases",
            kind: "Lease",
            namespaced: true,
            short: &[],
            categories: &[],
            status: false,
            builtin: Lease,
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            resource: "roles",
            kind: "Role",
            namespaced: true,
            short: &[],
            categories: &[],
            status: false,
            builtin: Role,
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            resource: "rolebindings",
            kind: "RoleBinding",
            namespaced: true,
            short: &[],
            categories: &[],
            status: false,
            builtin: RoleBinding,
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            resource: "clusterroles",
            kind: "ClusterRole",
            namespaced: false,
            short: &[],
            categories: &[],
            status: false,
            builtin: ClusterRole,
        },
        Spec {
            group: "rbac.authorization.k8s.io",
            version: "v1",
            resource: "clusterrolebindings",
            kind: "ClusterRoleBinding",
            namespaced: false,
            short: &[],
            categories: &[],
            status: false,
            builtin: ClusterRoleBinding,
        },
        Spec {
            group: "apiextensions.k8s.io",
            version: "v1",
            resource: "customresourcedefinitions",
            kind: "CustomResourceDefinition",
            namespaced: false,
            short: &["crd", "crds"],
            categories: &["api-extensions"],
            status: true,
            builtin: Crd,
        },
        Spec {
            group: "authorization.k8s.io",
            version: "v1",
            resource: "selfsubjectaccessreviews",
            kind: "SelfSubjectAccessReview",
            namespaced: false,
            short: &[],
            categories: &[],
            status: false,
            builtin: SelfSubjectAccessReview,
        },
        Spec {
            group: "authorization.k8s.io",
            version: "v1",
            resource: "subjectaccessreviews",
            kind: "SubjectAccessReview",
            namespaced: false,
            short: &[],
            categories: &[],
            status: false,
            builtin: SubjectAccessReview,
        },
        Spec {
            group: "authentication.k8s.io",
            version: "v1",
            resource: "tokenreviews",
            kind: "TokenReview",
            namespaced: false,
            short: &[],
            categories: &[],
            status: false,
            builtin: TokenReview,
        },
    ];
    specs
        .into_iter()
        .map(|s| ResourceType {
            group: s.group.into(),
            version: s.version.into(),
            resource: s.resource.into(),
            kind: s.kind.into(),
            singular: s.kind.to_lowercase(),
            list_kind: format!("{}List", s.kind),
            namespaced: s.namespaced,
            short_names: s.short.iter().map(|x| x.to_string()).collect(),
            categories: s.categories.iter().map(|x| x.to_string()).collect(),
            status: s.status,
            // Both Event APIs share one storage, as in the real server.
            storage: if s.builtin == EventsV1 {
                (String::new(), "events".into())
            } else {
                (s.group.into(), s.resource.into())
            },
            flavor: Flavor::Builtin(s.builtin),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_like_kube() {
        let mut v = vec![
            "v1alpha1", "v2", "v1beta2", "v1", "foo", "v1beta1", "v2beta1",
        ];
        v.sort_by_key(|a| version_priority(a));
        assert_eq!(
            v,
            [
                "v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"
            ]
        );
    }

    #[test]
    fn builtins_are_served() {
        let r = Registry::with_builtins();
        let cm = r.lookup("", "v1", "configmaps").expect("configmaps");
        assert!(cm.namespaced && cm.short_names == ["cm"]);
        let ev = r.lookup("events.k8s.io", "v1", "events").expect("events");
        assert_eq!(ev.storage, (String::new(), "events".to_string()));
        assert_eq!(r.groups()[0].0, "");
    }
}
