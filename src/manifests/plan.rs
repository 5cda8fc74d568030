//! Every document checked before anything is applied: shape, known kind, no duplicate, no
//! plaintext Secret. The result is a [`Plan`]: objects with their namespace defaulted and the
//! owner's labels added, ordered CRDs → Namespaces → the rest. Any [`Problem`] fails the whole
//! revision: nothing is applied and nothing is pruned.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use super::client::ApiError;
use super::discovery::{Kind, Resolver};
use super::object::{Owner, describe, group_of};
use super::parse::{Manifest, ParseError};
use super::plaintext;
use crate::api::sync::InventoryEntry;

/// How documents become objects.
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Namespace of namespaced objects that name none (the Sync's own namespace).
    pub default_namespace: String,
    /// Overrides `default_namespace` (`spec.targetNamespace`).
    pub target_namespace: Option<String>,
    pub allow_plaintext_secrets: bool,
    /// Labels added to every object; None leaves objects unlabelled (`sigil diff` without a Sync).
    pub owner: Option<Owner>,
}

/// When an object is applied: definitions first, so what depends on them finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    CustomResourceDefinitions,
    Namespaces,
    Objects,
}

/// One object to apply.
#[derive(Clone, Debug)]
pub struct Desired {
    pub file: String,
    pub line: usize,
    pub kind: Kind,
    pub entry: InventoryEntry,
    pub object: Value,
    pub stage: Stage,
    /// JSON pointers of fields left to others (`spec.ignore[]`, see [`super::ignore`]).
    pub ignored: Vec<String>,
}

impl Desired {
    pub fn namespace(&self) -> Option<&str> {
        (!self.entry.namespace.is_empty()).then_some(self.entry.namespace.as_str())
    }

    pub fn describe(&self) -> String {
        describe(&self.entry)
    }

    pub fn is_crd(&self) -> bool {
        is_crd(&self.entry.api_version, &self.entry.kind)
    }
}

/// Validated, ordered objects.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub objects: Vec<Desired>,
}

impl Plan {
    /// The inventory this plan leaves when fully applied.
    pub fn entries(&self) -> Vec<InventoryEntry> {
        self.objects.iter().map(|d| d.entry.clone()).collect()
    }

    /// The objects of one stage.
    pub fn stage(&self, stage: Stage) -> impl Iterator<Item = &Desired> {
        self.objects.iter().filter(move |d| d.stage == stage)
    }
}

/// What is wrong with a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemKind {
    Plaintext,
    Decryption,
    Substitution,
    Parse,
    UnknownKind,
    Invalid,
    Duplicate,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    /// `file:line`.
    pub location: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Every problem of a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problems(pub Vec<Problem>);

impl Problems {
    /// The condition reason: the most important kind of problem present.
    pub fn reason(&self) -> &'static str {
        match self.0.iter().map(|p| p.kind).min() {
            Some(ProblemKind::Plaintext) => "PlaintextSecret",
            Some(ProblemKind::Decryption) => "DecryptionFailed",
            Some(ProblemKind::Substitution) => "SubstitutionFailed",
            Some(ProblemKind::Parse) => "ParseFailed",
            Some(ProblemKind::UnknownKind) => "UnknownKind",
            _ => "ValidationFailed",
        }
    }
}

const SHOWN_PROBLEMS: usize = 5;

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sorted = self.0.clone();
        sorted.sort_by_key(|p| p.kind);
        let shown: Vec<String> = sorted
            .iter()
            .take(SHOWN_PROBLEMS)
            .map(ToString::to_string)
            .collect();
        write!(f, "{}", shown.join("; "))?;
        if sorted.len() > SHOWN_PROBLEMS {
            write!(f, " (and {} more)", sorted.len() - SHOWN_PROBLEMS)?;
        }
        Ok(())
    }
}

/// Planning failed.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("{0}")]
    Problems(Problems),
    #[error("discovery of {api_version} failed: {source}")]
    Discovery {
        api_version: String,
        source: ApiError,
    },
}

fn is_crd(api_version: &str, kind: &str) -> bool {
    group_of(api_version) == "apiextensions.k8s.io" && kind == "CustomResourceDefinition"
}

/// Kinds defined by CRDs among the manifests: (apiVersion, kind) → Kind.
fn kinds_defined(manifests: &[Manifest]) -> HashMap<(String, String), Kind> {
    let mut out = HashMap::new();
    for m in manifests
        .iter()
        .filter(|m| is_crd(m.api_version(), m.kind()))
    {
        let spec = &m.object["spec"];
        let (Some(group), Some(kind), Some(plural)) = (
            spec["group"].as_str(),
            spec.pointer("/names/kind").and_then(Value::as_str),
            spec.pointer("/names/plural").and_then(Value::as_str),
        ) else {
            continue;
        };
        let namespaced = spec["scope"].as_str() != Some("Cluster");
        for version in spec["versions"].as_array().into_iter().flatten() {
            let Some(version) = version["name"].as_str() else {
                continue;
            };
            let api_version = format!("{group}/{version}");
            out.insert(
                (api_version.clone(), kind.to_string()),
                Kind {
                    resource: kube::api::ApiResource {
                        group: group.to_string(),
                        version: version.to_string(),
                        api_version,
                        kind: kind.to_string(),
                        plural: plural.to_string(),
                    },
                    namespaced,
                },
            );
        }
    }
    out
}

/// The problems found before decryption: files that do not parse, and plaintext Secrets as
/// Git holds them.
pub fn source_problems(
    manifests: &[Manifest],
    parse_errors: Vec<ParseError>,
    options: &PlanOptions,
) -> Vec<Problem> {
    let mut problems: Vec<Problem> = parse_errors
        .into_iter()
        .map(|e| Problem {
            kind: ProblemKind::Parse,
            location: format!("{}:{}", e.file, e.line),
            message: e.message,
        })
        .collect();
    if !options.allow_plaintext_secrets {
        problems.extend(plaintext::find(manifests).into_iter().map(|p| Problem {
            kind: ProblemKind::Plaintext,
            location: format!("{}:{}", p.file, p.line),
            message: format!(
                "plaintext Secret {}{} refused: data/stringData must not be in Git (seal it with `sigil seal`, or set spec.allowPlaintextSecrets)",
                p.namespace.map(|ns| format!("{ns}/")).unwrap_or_default(),
                p.name
            ),
        }));
    }
    problems
}

/// Checks every document and builds the plan; any problem fails the whole revision.
pub async fn plan(
    manifests: Vec<Manifest>,
    mut problems: Vec<Problem>,
    resolver: &Resolver,
    options: &PlanOptions,
) -> Result<Plan, PlanError> {
    let defined = kinds_defined(&manifests);
    let mut seen: HashMap<(String, String, String, String), String> = HashMap::new();
    let mut objects = Vec::new();
    for manifest in manifests {
        let invalid = |message: String| Problem {
            kind: ProblemKind::Invalid,
            location: manifest.location(),
            message,
        };
        if !manifest.object.is_object() {
            problems.push(invalid("a manifest must be a mapping".to_string()));
            continue;
        }
        let (api_version, kind, name) = (
            manifest.api_version().to_string(),
            manifest.kind().to_string(),
            manifest.name().to_string(),
        );
        let mut missing = Vec::new();
        if api_version.is_empty() {
            missing.push("apiVersion");
        }
        if kind.is_empty() {
            missing.push("kind");
        }
        if name.is_empty() {
            missing.push("metadata.name");
        }
        if !missing.is_empty() {
            problems.push(invalid(format!(
                "{} is required (generateName is not supported)",
                missing.join(", ")
            )));
            continue;
        }
        let resolved = match resolver.resolve(&api_version, &kind).await {
            Ok(Some(k)) => Some(k),
            Ok(None) => defined.get(&(api_version.clone(), kind.clone())).cloned(),
            Err(source) => {
                return Err(PlanError::Discovery {
                    api_version,
                    source,
                });
            }
        };
        let Some(resolved) = resolved else {
            problems.push(Problem {
                kind: ProblemKind::UnknownKind,
                location: manifest.location(),
                message: format!(
                    "{kind} {name}: unknown kind {kind} in {api_version} (the server does not serve it and no CRD in the source defines it)"
                ),
            });
            continue;
        };
        let mut object = manifest.object.clone();
        let namespace = if resolved.namespaced {
            let ns = manifest
                .namespace()
                .map(str::to_string)
                .or_else(|| options.target_namespace.clone())
                .unwrap_or_else(|| options.default_namespace.clone());
            object["metadata"]["namespace"] = Value::String(ns.clone());
            ns
        } else {
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("namespace");
            }
            String::new()
        };
        let key = (
            group_of(&api_version).to_string(),
            kind.clone(),
            namespace.clone(),
            name.clone(),
        );
        if let Some(first) = seen.get(&key) {
            problems.push(Problem {
                kind: ProblemKind::Duplicate,
                location: manifest.location(),
                message: format!(
                    "{kind} {}{name} is also defined at {first}",
                    if namespace.is_empty() {
                        String::new()
                    } else {
                        format!("{namespace}/")
                    }
                ),
            });
            continue;
        }
        seen.insert(key, manifest.location());
        if let Some(owner) = &options.owner {
            owner.label(&mut object);
        }
        let stage = if is_crd(&api_version, &kind) {
            Stage::CustomResourceDefinitions
        } else if api_version == "v1" && kind == "Namespace" {
            Stage::Namespaces
        } else {
            Stage::Objects
        };
        objects.push(Desired {
            file: manifest.file.clone(),
            line: manifest.line,
            entry: InventoryEntry {
                api_version,
                kind,
                namespace,
                name,
            },
            kind: resolved,
            object,
            stage,
            ignored: Vec::new(),
        });
    }
    if !problems.is_empty() {
        return Err(PlanError::Problems(Problems(problems)));
    }
    objects.sort_by_key(|d| d.stage);
    Ok(Plan { objects })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(kind: ProblemKind, n: usize) -> Problem {
        Problem {
            kind,
            location: format!("f.yaml:{n}"),
            message: format!("problem {n}"),
        }
    }

    #[test]
    fn the_most_important_problem_gives_the_reason() {
        let problems = Problems(vec![
            problem(ProblemKind::Invalid, 1),
            problem(ProblemKind::Plaintext, 2),
        ]);
        assert_eq!(problems.reason(), "PlaintextSecret");
        assert_eq!(
            problems.to_string(),
            "f.yaml:2: problem 2; f.yaml:1: problem 1"
        );
        let many = Problems((0..7).map(|n| problem(ProblemKind::Parse, n)).collect());
        assert!(many.to_string().ends_with("(and 2 more)"), "{many}");
        assert_eq!(many.reason(), "ParseFailed");
    }

    #[test]
    fn crds_in_the_source_define_kinds() {
        let crd = Manifest {
            file: "crd.yaml".into(),
            line: 1,
            object: serde_json::json!({
                "apiVersion": "apiextensions.k8s.io/v1",
                "kind": "CustomResourceDefinition",
                "metadata": {"name": "widgets.example.com"},
                "spec": {"group": "example.com", "scope": "Cluster",
                         "names": {"kind": "Widget", "plural": "widgets"},
                         "versions": [{"name": "v1", "served": true, "storage": true}]}
            }),
        };
        let kinds = kinds_defined(&[crd]);
        let widget = &kinds[&("example.com/v1".to_string(), "Widget".to_string())];
        assert_eq!(widget.resource.plural, "widgets");
        assert!(!widget.namespaced);
    }
}
