//! Secret backends behind `SecretStore` / `ClusterSecretStore`.
//!
//! One trait, [`Provider`], with an implementation per backend: [`aws`] (AWS
//! Secrets Manager), [`parameter_store`] (AWS SSM Parameter Store) and
//! [`vault`] (HashiCorp Vault's KV engine). A provider is
//! a long-lived client: [`cache::ClientCache`] keeps one per store and builds a
//! new one only when the store's spec or its credential Secrets change.
//!
//! Values cross this module as [`SecretValue`] (zeroized on drop, redacted in
//! `Debug`); errors ([`ProviderError`]) name keys and fields, never values.

pub mod aws;
pub mod cache;
pub mod credentials;
pub mod generator;
pub mod metrics;
pub mod parameter_store;
pub mod property;
pub mod vault;
pub mod web_identity;

use std::collections::BTreeMap;
use std::fmt;

use futures::future::BoxFuture;
use secrecy::SecretString;
use zeroize::Zeroizing;

pub use cache::ClientCache;
pub use metrics::BackendCalls;

/// Fetches a fresh ServiceAccount token (Vault's Kubernetes auth, AWS web identity).
pub type JwtSource = std::sync::Arc<
    dyn Fn() -> BoxFuture<'static, Result<SecretString, ProviderError>> + Send + Sync,
>;

/// A value read from a backend: raw bytes (a secret string's UTF-8, a binary
/// secret's bytes, or a Vault secret's data as a JSON object).
#[derive(Clone)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The plaintext. Callers keep it in zeroizing buffers.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue(<redacted, {} bytes>)", self.0.len())
    }
}

/// One remote secret as a backend addresses it. Properties are picked out
/// after the read, so every ExternalSecret needing any property of the same
/// key and version shares one read.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteKey {
    /// Name, ARN or path of the secret.
    pub key: String,
    /// AWS version stage or `uuid:<version id>`; Vault KV v2 version number.
    pub version: Option<String>,
    /// Read the secret's custom metadata instead of its data (ESO's `metadataPolicy: Fetch`).
    pub metadata: bool,
}

impl RemoteKey {
    pub fn new(key: impl Into<String>, version: Option<String>) -> Self {
        Self {
            key: key.into(),
            version,
            metadata: false,
        }
    }

    /// The custom metadata of `key` (a JSON object of strings).
    pub fn metadata_of(key: impl Into<String>) -> Self {
        Self {
            metadata: true,
            ..Self::new(key, None)
        }
    }
}

impl fmt::Display for RemoteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{} (version {version})", self.key)?,
            None => f.write_str(&self.key)?,
        }
        if self.metadata {
            f.write_str(" (metadata)")?;
        }
        Ok(())
    }
}

/// Secrets to list: below a path, by name (a regular expression) and/or exact tags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FindQuery {
    pub path: Option<String>,
    pub name_regexp: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl FindQuery {
    /// `name_regexp` compiled; a bad pattern is a configuration error naming the field.
    pub fn name_pattern(&self) -> Result<Option<regex::Regex>, ProviderError> {
        self.name_regexp
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| ProviderError::Config(format!("find.name.regexp: {e}")))
    }
}

/// Reads the secrets a `find` listed, batched as the provider can; one deleted
/// between listing and reading is left out.
pub async fn read_listed<P: Provider + ?Sized>(
    provider: &P,
    names: Vec<String>,
) -> Result<Vec<(String, SecretValue)>, ProviderError> {
    let keys: Vec<RemoteKey> = names.iter().map(|n| RemoteKey::new(n, None)).collect();
    let values = provider.get_many(&keys).await;
    names
        .into_iter()
        .zip(values)
        .filter_map(|(name, value)| match value {
            Ok(value) => Some(Ok((name, value))),
            Err(ProviderError::NotFound { .. }) => None,
            Err(error) => Some(Err(error)),
        })
        .collect()
}

/// The most secrets one `find` returns; more is almost surely a mistaken pattern.
pub const FIND_LIMIT: usize = 1_000;

/// Why a backend call failed. Messages name keys and causes, never values or credentials.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("{key}: not found in the store")]
    NotFound { key: String },
    #[error("{key}: access denied: {message}")]
    Denied { key: String, message: String },
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("backend throttled the request: {0}")]
    Throttled(String),
    #[error("backend error: {0}")]
    Backend(String),
    #[error("invalid store configuration: {0}")]
    Config(String),
    #[error("{key}: {message}")]
    Value { key: String, message: String },
}

impl ProviderError {
    /// A fixed word for metric labels and condition reasons.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "not_found",
            Self::Denied { .. } => "denied",
            Self::Auth(_) => "auth_error",
            Self::Throttled(_) => "throttled",
            Self::Backend(_) => "error",
            Self::Config(_) => "config_error",
            Self::Value { .. } => "invalid_value",
        }
    }

    /// Whether trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Backend(_) | Self::Auth(_))
    }
}

/// A secret backend. Implementations are long-lived and shared: they keep their
/// HTTP connections and (for Vault) their token between calls.
pub trait Provider: Send + Sync {
    /// `aws`, `aws-ssm` or `vault`, for metrics and messages.
    fn kind(&self) -> &'static str;

    /// How many keys one backend request can read (1 without batching).
    fn batch_size(&self) -> usize {
        1
    }

    /// A real round trip proving the credentials work (store `Ready`).
    fn validate(&self) -> BoxFuture<'_, Result<(), ProviderError>>;

    /// Reads several secrets at once; the answer has one result per key, in order.
    /// Implementations batch where the backend can.
    fn get_many<'a>(
        &'a self,
        keys: &'a [RemoteKey],
    ) -> BoxFuture<'a, Vec<Result<SecretValue, ProviderError>>>;

    /// The names of the secrets matching a query.
    fn find_names<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, ProviderError>>;

    /// Secrets matching a query, as (name, value), at most [`FIND_LIMIT`]: the names, then
    /// their values read as [`Provider::get_many`] reads (batched where the backend can).
    fn find<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, SecretValue)>, ProviderError>> {
        Box::pin(async move {
            let names = self.find_names(query).await?;
            if names.len() > FIND_LIMIT {
                return Err(ProviderError::Config(format!(
                    "find matches more than {FIND_LIMIT} secrets; narrow the name or tags"
                )));
            }
            read_listed(self, names).await
        })
    }

    /// The custom metadata of a secret, as a JSON object (`metadataPolicy: Fetch`).
    fn get_metadata<'a>(
        &'a self,
        key: &'a RemoteKey,
    ) -> BoxFuture<'a, Result<SecretValue, ProviderError>> {
        Box::pin(async move {
            Err(ProviderError::Config(format!(
                "{key}: metadataPolicy Fetch needs a Vault KV v2 store; {} stores keep no custom metadata to read",
                self.kind()
            )))
        })
    }

    /// The provider as a generator of leased credentials, if it is one (Vault).
    fn generator(&self) -> Option<&dyn generator::Generator> {
        None
    }

    /// Reads one secret.
    fn get<'a>(&'a self, key: &'a RemoteKey) -> BoxFuture<'a, Result<SecretValue, ProviderError>> {
        Box::pin(async move {
            self.get_many(std::slice::from_ref(key))
                .await
                .pop()
                .unwrap_or_else(|| {
                    Err(ProviderError::Backend(format!("{key}: no result returned")))
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_are_redacted_in_debug() {
        let value = SecretValue::new(b"hunter2".to_vec());
        let shown = format!("{value:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("7 bytes"), "{shown}");
    }

    #[test]
    fn remote_keys_display_their_version() {
        assert_eq!(RemoteKey::new("db", None).to_string(), "db");
        assert_eq!(
            RemoteKey::new("db", Some("AWSPREVIOUS".into())).to_string(),
            "db (version AWSPREVIOUS)"
        );
    }
}
