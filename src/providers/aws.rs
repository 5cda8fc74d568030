//! AWS Secrets Manager, and the SDK configuration and error mapping every AWS
//! provider shares ([`sdk_config`], [`map_error`]).
//!
//! Reads go through `BatchGetSecretValue`, up to [`BATCH_SIZE`] secrets per
//! request; a key pinned to a version or stage needs `GetSecretValue` (the batch
//! call only serves the current version). When a policy does not allow
//! `secretsmanager:BatchGetSecretValue`, the provider notices the first denial
//! and reads one secret per request from then on. `find` lists with
//! `ListSecrets` (tags filtered server-side, then checked exactly together with
//! the name pattern) and reads the matches in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_http_client::tls;
use futures::StreamExt;
use futures::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use super::metrics::StoreCalls;
use super::web_identity::WebIdentityCredentials;
use super::{FIND_LIMIT, FindQuery, JwtSource, Provider, ProviderError, RemoteKey, SecretValue};
use crate::api::secret_store::AwsProvider;

/// The most secrets `BatchGetSecretValue` accepts in one request.
pub const BATCH_SIZE: usize = 20;
const LIST_PAGE_SIZE: i32 = 100;
const MAX_LIST_PAGES: usize = 100;
const PARALLEL_SINGLE_READS: usize = 4;

/// Static credentials read from the store's credential Secrets.
pub struct StaticCredentials {
    pub access_key_id: SecretString,
    pub secret_access_key: SecretString,
    pub session_token: Option<SecretString>,
}

/// How a store authenticates to AWS.
pub enum AwsCredentials {
    /// The SDK's default chain (IRSA, instance role, environment); then `role` is assumed when set.
    DefaultChain,
    /// Keys read from the store's credential Secrets; then `role` is assumed when set.
    Static(StaticCredentials),
    /// A ServiceAccount's tokens exchanged with STS `AssumeRoleWithWebIdentity` for
    /// `role` (required); `account` is `namespace/name`, for messages.
    WebIdentity { account: String, token: JwtSource },
}

impl From<Option<StaticCredentials>> for AwsCredentials {
    fn from(credentials: Option<StaticCredentials>) -> Self {
        credentials.map_or(Self::DefaultChain, Self::Static)
    }
}

/// The SDK configuration every AWS service client of a store is built from:
/// static credentials, web identity, or the SDK's default chain; for the first
/// and last, `role` is then assumed when set. The endpoint override applies to
/// STS too (an emulator serves both); service clients apply it themselves.
pub async fn sdk_config(
    spec: &AwsProvider,
    credentials: AwsCredentials,
) -> Result<aws_config::SdkConfig, ProviderError> {
    if spec.region.trim().is_empty() {
        return Err(ProviderError::Config(
            "spec.provider.aws.region: must not be empty".into(),
        ));
    }
    if let Some(endpoint) = &spec.endpoint {
        validate_endpoint(endpoint)?;
    }
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(https_client())
        .region(aws_config::Region::new(spec.region.clone()));
    if let AwsCredentials::Static(creds) = &credentials {
        loader = loader.credentials_provider(Credentials::new(
            creds.access_key_id.expose_secret(),
            creds.secret_access_key.expose_secret(),
            creds
                .session_token
                .as_ref()
                .map(|t| t.expose_secret().to_string()),
            None,
            "sigil-secret-store",
        ));
    }
    let mut sdk_config = loader.load().await;
    match (credentials, &spec.role) {
        (AwsCredentials::WebIdentity { account, token }, Some(role)) => {
            let mut sts = aws_sdk_sts::config::Builder::from(&sdk_config);
            if let Some(endpoint) = &spec.endpoint {
                sts = sts.endpoint_url(endpoint);
            }
            let web_identity = WebIdentityCredentials::new(
                aws_sdk_sts::Client::from_conf(sts.build()),
                role,
                &account,
                token,
            );
            // The first exchange here, so a missing ServiceAccount or a refused
            // role fails the build with its own message.
            web_identity.credentials().await?;
            sdk_config = sdk_config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(web_identity))
                .build();
        }
        (AwsCredentials::WebIdentity { .. }, None) => {
            return Err(ProviderError::Config(
                "spec.provider.aws.role: required with auth.jwt (the role the ServiceAccount token is exchanged for)".into(),
            ));
        }
        (_, Some(role)) => {
            let assumed = aws_config::sts::AssumeRoleProvider::builder(role)
                .session_name("sigil")
                .configure(&sdk_config)
                .build()
                .await;
            sdk_config = sdk_config
                .into_builder()
                .credentials_provider(SharedCredentialsProvider::new(assumed))
                .build();
        }
        (_, None) => {}
    }
    Ok(sdk_config)
}

/// A long-lived Secrets Manager client for one store.
pub struct AwsSecretsManager {
    client: Client,
    calls: StoreCalls,
    batch_denied: AtomicBool,
}

impl AwsSecretsManager {
    /// Builds the client (see [`sdk_config`]).
    pub async fn new(
        spec: &AwsProvider,
        credentials: impl Into<AwsCredentials>,
        calls: StoreCalls,
    ) -> Result<Self, ProviderError> {
        let sdk_config = sdk_config(spec, credentials.into()).await?;
        let mut config = aws_sdk_secretsmanager::config::Builder::from(&sdk_config);
        if let Some(endpoint) = &spec.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Ok(Self {
            client: Client::from_conf(config.build()),
            calls,
            batch_denied: AtomicBool::new(false),
        })
    }

    async fn get_one(&self, key: &RemoteKey) -> Result<SecretValue, ProviderError> {
        let mut request = self.client.get_secret_value().secret_id(&key.key);
        if let Some(version) = key.version.as_deref() {
            request = match version_id(version) {
                Some(id) => request.version_id(id),
                None => request.version_stage(version),
            };
        }
        let result = request
            .send()
            .await
            .map_err(|e| map_error(&e, &key.key))
            .and_then(|out| {
                value_of(
                    out.secret_string(),
                    out.secret_binary().map(|b| b.as_ref()),
                    &key.key,
                )
            });
        self.calls.observe(result)
    }

    /// One `BatchGetSecretValue` for at most [`BATCH_SIZE`] ids (following pages).
    async fn get_batch(&self, ids: &[&str]) -> Vec<Result<SecretValue, ProviderError>> {
        let mut found: HashMap<String, SecretValue> = HashMap::new();
        let mut failed: HashMap<String, ProviderError> = HashMap::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let response = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.iter().map(|s| s.to_string()).collect()))
                .set_next_token(next_token.take())
                .send()
                .await;
            let output = match response {
                Ok(output) => {
                    self.calls.record("success");
                    output
                }
                Err(error) => {
                    let mapped = map_error(&error, &ids.join(", "));
                    self.calls.record(mapped.outcome());
                    if matches!(mapped, ProviderError::Denied { .. }) {
                        tracing::info!(
                            "BatchGetSecretValue denied; reading secrets one by one from now on"
                        );
                        self.batch_denied.store(true, Ordering::Relaxed);
                        return self.get_each(ids).await;
                    }
                    return ids.iter().map(|_| Err(mapped.clone())).collect();
                }
            };
            for entry in output.secret_values() {
                let value = value_of(
                    entry.secret_string(),
                    entry.secret_binary().map(|b| b.as_ref()),
                    entry.name().unwrap_or_default(),
                );
                for id in ids {
                    if entry.name() == Some(*id) || entry.arn() == Some(*id) {
                        match &value {
                            Ok(v) => {
                                found.insert(id.to_string(), v.clone());
                            }
                            Err(e) => {
                                failed.insert(id.to_string(), e.clone());
                            }
                        }
                    }
                }
            }
            for error in output.errors() {
                let id = error.secret_id().unwrap_or_default().to_string();
                let mapped = map_code(error.error_code(), error.message().unwrap_or_default(), &id);
                failed.insert(id, mapped);
            }
            next_token = output.next_token().map(str::to_string);
            if next_token.is_none() {
                break;
            }
        }
        ids.iter()
            .map(|id| match found.get(*id) {
                Some(value) => Ok(value.clone()),
                None => Err(failed
                    .remove(*id)
                    .unwrap_or_else(|| ProviderError::NotFound {
                        key: id.to_string(),
                    })),
            })
            .collect()
    }

    async fn get_each(&self, ids: &[&str]) -> Vec<Result<SecretValue, ProviderError>> {
        let keys: Vec<RemoteKey> = ids.iter().map(|id| RemoteKey::new(*id, None)).collect();
        let reads: Vec<_> = keys.iter().map(|key| self.get_one(key)).collect();
        futures::stream::iter(reads)
            .buffered(PARALLEL_SINGLE_READS)
            .collect()
            .await
    }

    async fn list(&self, query: &FindQuery) -> Result<Vec<String>, ProviderError> {
        let pattern = query.name_pattern()?;
        let mut filters = Vec::new();
        if let Some(path) = &query.path {
            // A prefix match, case-insensitive: names are checked exactly below.
            filters.push(filter(FilterNameStringType::Name, path));
        }
        for (key, value) in &query.tags {
            filters.push(filter(FilterNameStringType::TagKey, key));
            filters.push(filter(FilterNameStringType::TagValue, value));
        }
        let mut names = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self
                .client
                .list_secrets()
                .max_results(LIST_PAGE_SIZE)
                .set_filters((!filters.is_empty()).then(|| filters.clone()))
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| map_error(&e, "ListSecrets"));
            let page = self.calls.observe(page)?;
            for entry in page.secret_list() {
                let Some(name) = entry.name() else { continue };
                let tags_match = query.tags.iter().all(|(k, v)| {
                    entry
                        .tags()
                        .iter()
                        .any(|t| t.key() == Some(k.as_str()) && t.value() == Some(v.as_str()))
                });
                let name_matches = pattern.as_ref().is_none_or(|p| p.is_match(name));
                let below_path = query.path.as_deref().is_none_or(|p| name.starts_with(p));
                if tags_match && name_matches && below_path {
                    names.push(name.to_string());
                }
            }
            if names.len() > FIND_LIMIT {
                return Err(ProviderError::Config(format!(
                    "find matches more than {FIND_LIMIT} secrets; narrow the name or tags"
                )));
            }
            next_token = page.next_token().map(str::to_string);
            if next_token.is_none() {
                break;
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}

impl Provider for AwsSecretsManager {
    fn kind(&self) -> &'static str {
        "aws"
    }

    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn validate(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let result = self
                .client
                .list_secrets()
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_error(&e, "ListSecrets"));
            credentials_accepted(&self.calls, result)
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [RemoteKey],
    ) -> BoxFuture<'a, Vec<Result<SecretValue, ProviderError>>> {
        Box::pin(async move {
            let mut results: Vec<Option<Result<SecretValue, ProviderError>>> =
                keys.iter().map(|_| None).collect();
            let batched: Vec<usize> = (0..keys.len())
                .filter(|&i| keys[i].version.is_none())
                .collect();
            if !self.batch_denied.load(Ordering::Relaxed) {
                for chunk in batched.chunks(BATCH_SIZE) {
                    let ids: Vec<&str> = chunk.iter().map(|&i| keys[i].key.as_str()).collect();
                    for (&i, result) in chunk.iter().zip(self.get_batch(&ids).await) {
                        results[i] = Some(result);
                    }
                }
            }
            let single: Vec<usize> = (0..keys.len()).filter(|&i| results[i].is_none()).collect();
            let reads: Vec<_> = single.iter().map(|&i| self.get_one(&keys[i])).collect();
            let reads = futures::stream::iter(reads)
                .buffered(PARALLEL_SINGLE_READS)
                .collect::<Vec<_>>()
                .await;
            for (&i, result) in single.iter().zip(reads) {
                results[i] = Some(result);
            }
            results
                .into_iter()
                .zip(keys)
                .map(|(result, key)| {
                    result.unwrap_or_else(|| {
                        Err(ProviderError::Backend(format!("{key}: no result returned")))
                    })
                })
                .collect()
        })
    }

    fn find_names<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, ProviderError>> {
        Box::pin(self.list(query))
    }
}

/// The SDK's HTTPS client on rustls with ring, the crypto provider kube and reqwest use too (the
/// SDK's default client would compile aws-lc-rs beside it). Every AWS client sigil makes takes it.
pub fn https_client() -> aws_sdk_secretsmanager::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https()
}

/// The outcome of a store check's listing call, counted: a denial still proves
/// the credentials (the signature was accepted; the policy only forbids listing).
pub(super) fn credentials_accepted(
    calls: &StoreCalls,
    result: Result<(), ProviderError>,
) -> Result<(), ProviderError> {
    match calls.observe(result) {
        Err(ProviderError::Denied { .. }) => Ok(()),
        other => other,
    }
}

pub(super) fn validate_endpoint(endpoint: &str) -> Result<(), ProviderError> {
    let parsed: http::Uri = endpoint.parse().map_err(|e| {
        ProviderError::Config(format!("spec.provider.aws.endpoint: {endpoint:?}: {e}"))
    })?;
    match parsed.scheme_str() {
        Some("http" | "https") if parsed.host().is_some() => Ok(()),
        _ => Err(ProviderError::Config(format!(
            "spec.provider.aws.endpoint: {endpoint:?}: expected an http(s) URL"
        ))),
    }
}

/// `uuid:<id>` (or External Secrets Operator's `uuid/<id>`) selects a version id;
/// anything else is a stage such as `AWSCURRENT` or `AWSPREVIOUS`.
fn version_id(version: &str) -> Option<&str> {
    version
        .strip_prefix("uuid:")
        .or_else(|| version.strip_prefix("uuid/"))
}

fn filter(key: FilterNameStringType, value: &str) -> Filter {
    Filter::builder().key(key).values(value).build()
}

fn value_of(
    string: Option<&str>,
    binary: Option<&[u8]>,
    key: &str,
) -> Result<SecretValue, ProviderError> {
    match (string, binary) {
        (Some(text), _) => Ok(SecretValue::new(text.as_bytes().to_vec())),
        (None, Some(bytes)) => Ok(SecretValue::new(bytes.to_vec())),
        (None, None) => Err(ProviderError::Value {
            key: key.to_string(),
            message: "the secret has neither SecretString nor SecretBinary".into(),
        }),
    }
}

pub(super) fn map_error<E>(error: &E, key: &str) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match error.code() {
        Some(code) => map_code(Some(code), error.message().unwrap_or_default(), key),
        None => ProviderError::Backend(format!("{key}: {}", DisplayErrorContext(error))),
    }
}

pub(super) fn map_code(code: Option<&str>, message: &str, key: &str) -> ProviderError {
    let code = code.unwrap_or("Unknown");
    let detail = if message.is_empty() {
        code.to_string()
    } else {
        format!("{code}: {message}")
    };
    match code {
        // Parameter Store: a missing parameter, or a version or label it does not have.
        "ResourceNotFoundException" | "ParameterNotFound" | "ParameterVersionNotFound" => {
            ProviderError::NotFound {
                key: key.to_string(),
            }
        }
        // InvalidKeyId: Parameter Store cannot use the SecureString's KMS key.
        "AccessDeniedException" | "AccessDenied" | "DecryptionFailure" | "InvalidKeyId" => {
            ProviderError::Denied {
                key: key.to_string(),
                message: detail,
            }
        }
        "UnrecognizedClientException"
        | "InvalidClientTokenId"
        | "InvalidSignatureException"
        | "SignatureDoesNotMatch"
        | "IncompleteSignature"
        | "ExpiredTokenException"
        | "ExpiredToken"
        | "MissingAuthenticationToken" => ProviderError::Auth(detail),
        "ThrottlingException"
        | "Throttling"
        | "RequestLimitExceeded"
        | "TooManyRequestsException" => ProviderError::Throttled(detail),
        "InvalidParameterException"
        | "InvalidRequestException"
        | "ValidationException"
        | "InvalidFilterKey"
        | "InvalidFilterOption"
        | "InvalidFilterValue" => ProviderError::Value {
            key: key.to_string(),
            message: detail,
        },
        _ => ProviderError::Backend(format!("{key}: {detail}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_select_ids_or_stages() {
        assert_eq!(version_id("uuid:1234"), Some("1234"));
        assert_eq!(version_id("uuid/1234"), Some("1234"));
        assert_eq!(version_id("AWSPREVIOUS"), None);
    }

    #[test]
    fn error_codes_map_to_kinds() {
        assert!(matches!(
            map_code(Some("ResourceNotFoundException"), "gone", "db"),
            ProviderError::NotFound { key } if key == "db"
        ));
        assert!(matches!(
            map_code(Some("UnrecognizedClientException"), "bad token", "db"),
            ProviderError::Auth(_)
        ));
        assert!(map_code(Some("ThrottlingException"), "", "db").is_transient());
        assert!(!map_code(Some("AccessDeniedException"), "", "db").is_transient());
    }

    #[test]
    fn endpoints_must_be_http_urls() {
        assert!(validate_endpoint("http://127.0.0.1:4566").is_ok());
        assert!(validate_endpoint("https://secretsmanager.eu-west-1.amazonaws.com").is_ok());
        assert!(validate_endpoint("ftp://x").is_err());
        assert!(validate_endpoint("not a url").is_err());
    }
}
