//! Scope binding: where a sealed value may be opened.
//!
//! The binding is sealed *inside* every value (see [`super::envelope`]). On open,
//! the recorded binding is checked against the object the value actually sits
//! in; `spec.scope` and annotations never widen it.

use std::fmt;

use crate::api::sealed_secret::Scope;

/// The longest namespace Kubernetes accepts (a DNS-1123 label).
const MAX_NAMESPACE_LEN: usize = 63;
/// The longest Secret name Kubernetes accepts (a DNS-1123 subdomain).
const MAX_NAME_LEN: usize = 253;

/// A scope together with the namespace and name it binds.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    /// Only this namespace and name.
    Strict { namespace: String, name: String },
    /// Any name in this namespace.
    Namespace { namespace: String },
    /// Anywhere.
    Cluster,
}

/// A namespace or name that Kubernetes would not accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidName {
    #[error("a namespace is required for {0} scope")]
    MissingNamespace(Scope),
    #[error("a name is required for strict scope")]
    MissingName,
    #[error("invalid namespace {0:?}: must be a DNS-1123 label (lowercase letters, digits, '-')")]
    Namespace(String),
    #[error(
        "invalid name {0:?}: must be a DNS-1123 subdomain (lowercase letters, digits, '-', '.')"
    )]
    Name(String),
}

impl Binding {
    /// The binding for a value sealed with `scope` for the object `namespace`/`name`.
    /// Parts the scope does not bind are dropped; parts it binds must be present and valid.
    pub fn new(
        scope: Scope,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<Self, InvalidName> {
        let namespace = || -> Result<String, InvalidName> {
            let namespace = namespace
                .filter(|n| !n.is_empty())
                .ok_or(InvalidName::MissingNamespace(scope))?;
            if !is_dns_label(namespace) {
                return Err(InvalidName::Namespace(namespace.to_string()));
            }
            Ok(namespace.to_string())
        };
        match scope {
            Scope::Strict => {
                let namespace = namespace()?;
                let name = name
                    .filter(|n| !n.is_empty())
                    .ok_or(InvalidName::MissingName)?;
                if !is_dns_subdomain(name) {
                    return Err(InvalidName::Name(name.to_string()));
                }
                Ok(Self::Strict {
                    namespace,
                    name: name.to_string(),
                })
            }
            Scope::Namespace => Ok(Self::Namespace {
                namespace: namespace()?,
            }),
            Scope::Cluster => Ok(Self::Cluster),
        }
    }

    /// The scope this binding enforces.
    pub fn scope(&self) -> Scope {
        match self {
            Self::Strict { .. } => Scope::Strict,
            Self::Namespace { .. } => Scope::Namespace,
            Self::Cluster => Scope::Cluster,
        }
    }

    /// Whether a value with this binding may be opened in object `namespace`/`name`.
    pub fn permits(&self, namespace: &str, name: &str) -> bool {
        match self {
            Self::Strict {
                namespace: ns,
                name: n,
            } => ns == namespace && n == name,
            Self::Namespace { namespace: ns } => ns == namespace,
            Self::Cluster => true,
        }
    }

    /// The same scope moved to another object (used when re-sealing a value for
    /// the object it now belongs to, e.g. `reencrypt` keeps the scope).
    pub fn retarget(&self, namespace: &str, name: &str) -> Result<Self, InvalidName> {
        Self::new(self.scope(), Some(namespace), Some(name))
    }
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Strict { namespace, name } => write!(f, "strict scope {namespace}/{name}"),
            Self::Namespace { namespace } => write!(f, "namespace scope {namespace}"),
            Self::Cluster => write!(f, "cluster scope"),
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(scope_name(*self))
    }
}

/// The word a scope is written as, in the envelope and in `spec.scope`.
pub fn scope_name(scope: Scope) -> &'static str {
    match scope {
        Scope::Strict => "strict",
        Scope::Namespace => "namespace",
        Scope::Cluster => "cluster",
    }
}

/// Parses the word a scope is written as.
pub fn parse_scope(word: &str) -> Option<Scope> {
    match word {
        "strict" => Some(Scope::Strict),
        "namespace" => Some(Scope::Namespace),
        "cluster" => Some(Scope::Cluster),
        _ => None,
    }
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace.
pub fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAMESPACE_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// A DNS-1123 subdomain: what Kubernetes accepts as a Secret name.
pub fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_LEN
        && text.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_binds_namespace_and_name() {
        let binding = Binding::new(Scope::Strict, Some("prod"), Some("db")).expect("valid");
        assert!(binding.permits("prod", "db"));
        assert!(!binding.permits("prod", "other"));
        assert!(!binding.permits("dev", "db"));
    }

    #[test]
    fn namespace_binds_only_the_namespace() {
        let binding = Binding::new(Scope::Namespace, Some("prod"), Some("db")).expect("valid");
        assert_eq!(
            binding,
            Binding::Namespace {
                namespace: "prod".into()
            }
        );
        assert!(binding.permits("prod", "anything"));
        assert!(!binding.permits("dev", "db"));
    }

    #[test]
    fn cluster_binds_nothing() {
        let binding = Binding::new(Scope::Cluster, None, None).expect("valid");
        assert!(binding.permits("any", "thing"));
    }

    #[test]
    fn refuses_missing_or_invalid_names() {
        assert_eq!(
            Binding::new(Scope::Strict, Some("prod"), None),
            Err(InvalidName::MissingName)
        );
        assert_eq!(
            Binding::new(Scope::Namespace, None, Some("db")),
            Err(InvalidName::MissingNamespace(Scope::Namespace))
        );
        assert!(matches!(
            Binding::new(Scope::Strict, Some("Prod"), Some("db")),
            Err(InvalidName::Namespace(_))
        ));
        assert!(matches!(
            Binding::new(Scope::Strict, Some("prod"), Some("db name")),
            Err(InvalidName::Name(_))
        ));
        assert!(matches!(
            Binding::new(Scope::Strict, Some("a.b"), Some("db")),
            Err(InvalidName::Namespace(_))
        ));
    }

    #[test]
    fn dns_rules() {
        assert!(is_dns_subdomain("db.credentials-1"));
        assert!(!is_dns_subdomain("db..x"));
        assert!(!is_dns_subdomain("-db"));
        assert!(!is_dns_subdomain(&"a".repeat(254)));
        assert!(is_dns_label(&"a".repeat(63)));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
