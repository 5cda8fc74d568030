//! AWS Systems Manager Parameter Store (`spec.provider.aws.service: ParameterStore`).
//!
//! Reads go through `GetParameters`, up to [`BATCH_SIZE`] parameters per
//! request, always decrypted (SecureStrings arrive in plaintext). A version or
//! label is a selector on the name (`/app/db:3`, `/app/db:prod`), as Parameter
//! Store addresses it, so pinned reads batch too. When a policy does not allow
//! `ssm:GetParameters`, the provider notices the first denial and reads with
//! `GetParameter` one by one from then on. `find` with a `path` alone reads the
//! tree with `GetParametersByPath` (names and values in one paged call);
//! with tags (or no path), it lists with `DescribeParameters` (path and tags
//! filtered server-side) and reads the matches in batches.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_ssm::Client;
use aws_sdk_ssm::types::{Parameter, ParameterStringFilter};
use futures::StreamExt;
use futures::future::BoxFuture;

use super::aws::{AwsCredentials, credentials_accepted, map_error, sdk_config};
use super::metrics::StoreCalls;
use super::{FIND_LIMIT, FindQuery, Provider, ProviderError, RemoteKey, SecretValue, read_listed};
use crate::api::secret_store::AwsProvider;

/// The most names `GetParameters` accepts in one request.
pub const BATCH_SIZE: usize = 10;
/// The most parameters one `GetParametersByPath` page holds.
const PATH_PAGE_SIZE: i32 = 10;
/// The most parameters one `DescribeParameters` page holds.
const DESCRIBE_PAGE_SIZE: i32 = 50;
const MAX_PAGES: usize = FIND_LIMIT / PATH_PAGE_SIZE as usize + 1;
const PARALLEL_SINGLE_READS: usize = 4;

/// A long-lived Parameter Store client for one store.
pub struct AwsParameterStore {
    client: Client,
    calls: StoreCalls,
    batch_denied: AtomicBool,
}

/// The name a key is requested by: `name` or `name:version` (a version number or label).
fn request_name(key: &RemoteKey) -> String {
    match key.version.as_deref() {
        Some(version) => format!("{}:{version}", key.key),
        None => key.key.clone(),
    }
}

/// Splits keys into `GetParameters` requests of at most [`BATCH_SIZE`] names,
/// each parameter at most once per request: an answer names the parameter but
/// not always the selector it was read by, so two versions of one parameter
/// could not be told apart in one answer.
fn requests(keys: &[RemoteKey]) -> Vec<Vec<usize>> {
    let mut requests: Vec<Vec<usize>> = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let open = requests.iter_mut().find(|request| {
            request.len() < BATCH_SIZE && request.iter().all(|&j| keys[j].key != key.key)
        });
        match open {
            Some(request) => request.push(i),
            None => requests.push(vec![i]),
        }
    }
    requests
}

/// Whether an answered parameter is the one requested as `key` (a name or an ARN).
fn answers(parameter: &Parameter, key: &str) -> bool {
    parameter.name() == Some(key) || parameter.arn() == Some(key)
}

fn value_of(parameter: &Parameter, key: &str) -> Result<SecretValue, ProviderError> {
    parameter
        .value()
        .map(|value| SecretValue::new(value.as_bytes().to_vec()))
        .ok_or_else(|| ProviderError::Value {
            key: key.to_string(),
            message: "the parameter has no value".into(),
        })
}

fn string_filter(
    key: &str,
    option: &str,
    value: &str,
) -> Result<ParameterStringFilter, ProviderError> {
    ParameterStringFilter::builder()
        .key(key)
        .option(option)
        .values(value)
        .build()
        .map_err(|e| ProviderError::Config(format!("find: {e}")))
}

fn check_path(path: &str) -> Result<(), ProviderError> {
    if path.starts_with('/') {
        Ok(())
    } else {
        Err(ProviderError::Config(format!(
            "find.path {path:?}: Parameter Store paths start with '/'"
        )))
    }
}

impl AwsParameterStore {
    /// Builds the client from the store's AWS configuration (see [`sdk_config`]).
    pub async fn new(
        spec: &AwsProvider,
        credentials: impl Into<AwsCredentials>,
        calls: StoreCalls,
    ) -> Result<Self, ProviderError> {
        let sdk_config = sdk_config(spec, credentials.into()).await?;
        let mut config = aws_sdk_ssm::config::Builder::from(&sdk_config);
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
        let result = self
            .client
            .get_parameter()
            .name(request_name(key))
            .with_decryption(true)
            .send()
            .await
            .map_err(|e| map_error(&e, &key.to_string()))
            .and_then(|out| match out.parameter() {
                Some(parameter) => value_of(parameter, &key.key),
                None => Err(ProviderError::NotFound {
                    key: key.to_string(),
                }),
            });
        self.calls.observe(result)
    }

    async fn get_each(&self, keys: &[RemoteKey]) -> Vec<Result<SecretValue, ProviderError>> {
        let reads: Vec<_> = keys.iter().map(|key| self.get_one(key)).collect();
        futures::stream::iter(reads)
            .buffered(PARALLEL_SINGLE_READS)
            .collect()
            .await
    }

    /// One `GetParameters` for at most [`BATCH_SIZE`] keys of distinct parameters.
    async fn get_batch(&self, keys: &[RemoteKey]) -> Vec<Result<SecretValue, ProviderError>> {
        let names: Vec<String> = keys.iter().map(request_name).collect();
        let response = self
            .client
            .get_parameters()
            .set_names(Some(names.clone()))
            .with_decryption(true)
            .send()
            .await;
        let output = match response {
            Ok(output) => {
                self.calls.record("success");
                output
            }
            Err(error) => {
                let mapped = map_error(&error, &names.join(", "));
                self.calls.record(mapped.outcome());
                if matches!(mapped, ProviderError::Denied { .. }) {
                    tracing::info!(
                        "GetParameters denied; reading parameters one by one with GetParameter from now on"
                    );
                    self.batch_denied.store(true, Ordering::Relaxed);
                    return self.get_each(keys).await;
                }
                return keys.iter().map(|_| Err(mapped.clone())).collect();
            }
        };
        keys.iter()
            .zip(&names)
            .map(
                |(key, name)| match output.parameters().iter().find(|p| answers(p, &key.key)) {
                    Some(parameter) => value_of(parameter, &key.key),
                    None if output.invalid_parameters().contains(name) => {
                        Err(ProviderError::NotFound {
                            key: key.to_string(),
                        })
                    }
                    None => Err(ProviderError::Backend(format!(
                        "{key}: missing from the GetParameters answer"
                    ))),
                },
            )
            .collect()
    }

    /// Every parameter below `path` with its value, through `GetParametersByPath`.
    async fn read_path(
        &self,
        path: &str,
        pattern: Option<&regex::Regex>,
    ) -> Result<Vec<(String, SecretValue)>, ProviderError> {
        let mut found = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(true)
                .max_results(PATH_PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| map_error(&e, &format!("GetParametersByPath {path}")));
            let page = self.calls.observe(page)?;
            for parameter in page.parameters() {
                let Some(name) = parameter.name() else {
                    continue;
                };
                if pattern.is_none_or(|p| p.is_match(name)) {
                    found.push((name.to_string(), value_of(parameter, name)?));
                }
            }
            if found.len() > FIND_LIMIT {
                return Err(too_many());
            }
            next_token = page.next_token().map(str::to_string);
            if next_token.is_none() {
                break;
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(found)
    }

    /// Names of the parameters below `query.path` carrying `query.tags`, through `DescribeParameters`.
    async fn describe(
        &self,
        query: &FindQuery,
        pattern: Option<&regex::Regex>,
    ) -> Result<Vec<String>, ProviderError> {
        let mut filters = Vec::new();
        if let Some(path) = &query.path {
            filters.push(string_filter("Path", "Recursive", path)?);
        }
        for (key, value) in &query.tags {
            filters.push(string_filter(&format!("tag:{key}"), "Equals", value)?);
        }
        let mut names = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .client
                .describe_parameters()
                .set_parameter_filters((!filters.is_empty()).then(|| filters.clone()))
                .max_results(DESCRIBE_PAGE_SIZE)
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| map_error(&e, "DescribeParameters"));
            let page = self.calls.observe(page)?;
            names.extend(
                page.parameters()
                    .iter()
                    .filter_map(|p| p.name())
                    .filter(|name| pattern.is_none_or(|p| p.is_match(name)))
                    .map(str::to_string),
            );
            if names.len() > FIND_LIMIT {
                return Err(too_many());
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

fn too_many() -> ProviderError {
    ProviderError::Config(format!(
        "find matches more than {FIND_LIMIT} parameters; narrow the path, name or tags"
    ))
}

impl Provider for AwsParameterStore {
    fn kind(&self) -> &'static str {
        "aws-ssm"
    }

    fn batch_size(&self) -> usize {
        BATCH_SIZE
    }

    fn validate(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let result = self
                .client
                .describe_parameters()
                .max_results(1)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| map_error(&e, "DescribeParameters"));
            credentials_accepted(&self.calls, result)
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [RemoteKey],
    ) -> BoxFuture<'a, Vec<Result<SecretValue, ProviderError>>> {
        Box::pin(async move {
            if self.batch_denied.load(Ordering::Relaxed) {
                return self.get_each(keys).await;
            }
            let mut results: HashMap<usize, Result<SecretValue, ProviderError>> = HashMap::new();
            for request in requests(keys) {
                let batch: Vec<RemoteKey> = request.iter().map(|&i| keys[i].clone()).collect();
                let answers = if self.batch_denied.load(Ordering::Relaxed) {
                    self.get_each(&batch).await
                } else {
                    self.get_batch(&batch).await
                };
                results.extend(request.into_iter().zip(answers));
            }
            (0..keys.len())
                .map(|i| {
                    results.remove(&i).unwrap_or_else(|| {
                        Err(ProviderError::Backend(format!(
                            "{}: no result returned",
                            keys[i]
                        )))
                    })
                })
                .collect()
        })
    }

    fn find_names<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, ProviderError>> {
        Box::pin(async move {
            if let Some(path) = &query.path {
                check_path(path)?;
            }
            self.describe(query, query.name_pattern()?.as_ref()).await
        })
    }

    /// A path alone is read with `GetParametersByPath` (names and values together);
    /// otherwise the listed names are read in batches.
    fn find<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, SecretValue)>, ProviderError>> {
        Box::pin(async move {
            if let Some(path) = query.path.as_deref().filter(|_| query.tags.is_empty()) {
                check_path(path)?;
                return self.read_path(path, query.name_pattern()?.as_ref()).await;
            }
            let names = self.find_names(query).await?;
            read_listed(self, names).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::aws::map_code;

    #[test]
    fn versions_and_labels_are_selectors_on_the_name() {
        assert_eq!(request_name(&RemoteKey::new("/app/db", None)), "/app/db");
        assert_eq!(
            request_name(&RemoteKey::new("/app/db", Some("3".into()))),
            "/app/db:3"
        );
        assert_eq!(
            request_name(&RemoteKey::new("/app/db", Some("prod".into()))),
            "/app/db:prod"
        );
    }

    #[test]
    fn requests_hold_ten_names_and_each_parameter_once() {
        let keys: Vec<RemoteKey> = (0..25)
            .map(|i| RemoteKey::new(format!("/p/{i}"), None))
            .collect();
        let sizes: Vec<usize> = requests(&keys).iter().map(Vec::len).collect();
        assert_eq!(sizes, [10, 10, 5]);

        let versions = [
            RemoteKey::new("/db", None),
            RemoteKey::new("/db", Some("1".into())),
            RemoteKey::new("/other", None),
            RemoteKey::new("/db", Some("2".into())),
        ];
        assert_eq!(requests(&versions), [vec![0, 2], vec![1], vec![3]]);
    }

    #[test]
    fn parameter_store_error_codes_map_to_kinds() {
        assert!(matches!(
            map_code(Some("ParameterNotFound"), "gone", "/app/db"),
            ProviderError::NotFound { key } if key == "/app/db"
        ));
        assert!(matches!(
            map_code(Some("ParameterVersionNotFound"), "", "/app/db:9"),
            ProviderError::NotFound { .. }
        ));
        assert!(matches!(
            map_code(Some("InvalidKeyId"), "", "/app/db"),
            ProviderError::Denied { .. }
        ));
        assert!(check_path("/app").is_ok());
        assert!(check_path("app").is_err());
    }
}
