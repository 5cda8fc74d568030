//! Reading a store's credentials from Kubernetes: the Secrets its auth block
//! names, and ServiceAccount tokens (TokenRequest) for Vault's Kubernetes auth
//! and AWS web identity.
//!
//! A namespaced `SecretStore` reads credential Secrets of its own namespace
//! only; a `ClusterSecretStore` must name the namespace of every reference.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::api::{Api, PostParams};
use secrecy::SecretString;
use zeroize::{Zeroize, Zeroizing};

use super::JwtSource;
use super::ProviderError;
use super::aws::{AwsCredentials, StaticCredentials};
use super::vault::VaultLogin;
use crate::api::common::{SecretKeySelector, ServiceAccountSelector};
use crate::api::external_secret::StoreKind;
use crate::api::secret_store::Provider as ProviderSpec;

/// The audience AWS STS expects in web identity tokens (as EKS's IRSA sets it).
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";
/// The audience of ServiceAccount tokens for Vault's JWT auth when none is set (as ESO has it).
pub const VAULT_AUDIENCE: &str = "vault";

/// Names one store.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoreKey {
    pub kind: StoreKind,
    /// The namespace of a `SecretStore`; `None` for a `ClusterSecretStore`.
    pub namespace: Option<String>,
    pub name: String,
    /// The kind of a generator (`VaultDynamicSecret`) whose provider block is
    /// used as a namespaced store's is: credentials from its own namespace only.
    pub generator: Option<&'static str>,
}

impl StoreKey {
    pub fn secret_store(namespace: &str, name: &str) -> Self {
        Self {
            kind: StoreKind::SecretStore,
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
            generator: None,
        }
    }

    /// A generator of `kind` in `namespace`.
    pub fn generator(kind: &'static str, namespace: &str, name: &str) -> Self {
        Self {
            generator: Some(kind),
            ..Self::secret_store(namespace, name)
        }
    }

    pub fn cluster(name: &str) -> Self {
        Self {
            kind: StoreKind::ClusterSecretStore,
            namespace: None,
            name: name.to_string(),
            generator: None,
        }
    }
}

impl fmt::Display for StoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.generator {
            Some(generator) => generator.to_string(),
            None => format!("{:?}", self.kind),
        };
        match &self.namespace {
            Some(namespace) => write!(f, "{kind}/{namespace}/{}", self.name),
            None => write!(f, "{kind}/{}", self.name),
        }
    }
}

/// What a provider needs to authenticate, plus the versions it came from.
pub struct Resolved {
    /// `namespace/name uid resourceVersion` of every Secret read, sorted.
    pub versions: Vec<String>,
    pub material: Material,
}

/// Credentials for one backend.
pub enum Material {
    Aws(AwsCredentials),
    Vault(VaultLogin),
}

/// Reads the Secrets a store's auth block names (each Secret once).
struct SecretReader<'a> {
    kube: &'a kube::Client,
    store: &'a StoreKey,
    read: BTreeMap<(String, String), Secret>,
}

impl Drop for SecretReader<'_> {
    fn drop(&mut self) {
        for secret in self.read.values_mut() {
            for value in secret.data.iter_mut().flat_map(|d| d.values_mut()) {
                value.0.zeroize();
            }
        }
    }
}

impl<'a> SecretReader<'a> {
    fn new(kube: &'a kube::Client, store: &'a StoreKey) -> Self {
        Self {
            kube,
            store,
            read: BTreeMap::new(),
        }
    }

    /// The namespace a reference may read, per the store's kind.
    fn namespace_of(&self, requested: Option<&str>, field: &str) -> Result<String, ProviderError> {
        match (&self.store.namespace, requested) {
            (Some(own), None) => Ok(own.clone()),
            (Some(own), Some(asked)) if asked == own => Ok(own.clone()),
            (Some(own), Some(asked)) => Err(ProviderError::Config(format!(
                "{}: {field}.namespace: a SecretStore may only use Secrets and ServiceAccounts of its own namespace {own:?}, not {asked:?}",
                self.store
            ))),
            (None, Some(asked)) if !asked.is_empty() => Ok(asked.to_string()),
            (None, _) => Err(ProviderError::Config(format!(
                "{}: {field}.namespace: a ClusterSecretStore must name the namespace of its credential Secrets and ServiceAccounts",
                self.store
            ))),
        }
    }

    async fn value(
        &mut self,
        selector: &SecretKeySelector,
        field: &str,
    ) -> Result<SecretString, ProviderError> {
        let namespace = self.namespace_of(selector.namespace.as_deref(), field)?;
        let id = (namespace.clone(), selector.name.clone());
        if !self.read.contains_key(&id) {
            let api: Api<Secret> = Api::namespaced(self.kube.clone(), &namespace);
            let secret = api.get(&selector.name).await.map_err(|e| {
                let why = match &e {
                    kube::Error::Api(status) if status.code == 404 => "not found".to_string(),
                    kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
                    other => other.to_string(),
                };
                ProviderError::Config(format!(
                    "{}: {field}: Secret {namespace}/{}: {why}",
                    self.store, selector.name
                ))
            })?;
            self.read.insert(id.clone(), secret);
        }
        let secret = &self.read[&id];
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&selector.key))
            .ok_or_else(|| {
                ProviderError::Config(format!(
                    "{}: {field}: Secret {namespace}/{} has no key {:?}",
                    self.store, selector.name, selector.key
                ))
            })?;
        let text = Zeroizing::new(String::from_utf8(bytes.0.clone()).map_err(|_| {
            ProviderError::Config(format!(
                "{}: {field}: Secret {namespace}/{} key {:?} is not UTF-8",
                self.store, selector.name, selector.key
            ))
        })?);
        Ok(SecretString::from(text.trim().to_string()))
    }

    fn versions(&self) -> Vec<String> {
        self.read
            .iter()
            .map(|((namespace, name), secret)| {
                format!(
                    "{namespace}/{name} {} {}",
                    secret.metadata.uid.as_deref().unwrap_or_default(),
                    secret
                        .metadata
                        .resource_version
                        .as_deref()
                        .unwrap_or_default()
                )
            })
            .collect()
    }
}

/// Reads every credential the store's provider block needs.
pub async fn resolve(
    kube: &kube::Client,
    store: &StoreKey,
    spec: &ProviderSpec,
) -> Result<Resolved, ProviderError> {
    let mut reader = SecretReader::new(kube, store);
    let material = match (&spec.aws, &spec.vault) {
        (Some(aws), None) => {
            let auth = aws.auth.as_ref();
            let jwt = auth.and_then(|a| a.jwt.as_ref());
            let secret_ref = auth.and_then(|a| a.secret_ref.as_ref());
            match (secret_ref, jwt) {
                (Some(_), Some(_)) => {
                    return Err(ProviderError::Config(format!(
                        "{store}: spec.provider.aws.auth: set at most one of secretRef, jwt"
                    )));
                }
                (None, None) => Material::Aws(AwsCredentials::DefaultChain),
                (None, Some(jwt)) => {
                    let field = "spec.provider.aws.auth.jwt.serviceAccountRef";
                    let mut account = jwt.service_account_ref.clone();
                    let namespace = reader.namespace_of(account.namespace.as_deref(), field)?;
                    if account.audiences.is_empty() {
                        account.audiences = vec![STS_AUDIENCE.to_string()];
                    }
                    Material::Aws(AwsCredentials::WebIdentity {
                        account: format!("{namespace}/{}", account.name),
                        token: token_request_source(
                            kube.clone(),
                            format!("{store}: {field}"),
                            namespace,
                            account,
                            None,
                        ),
                    })
                }
                (Some(refs), None) => {
                    let field = "spec.provider.aws.auth.secretRef";
                    let access_key_id = reader
                        .value(
                            &refs.access_key_id_secret_ref,
                            &format!("{field}.accessKeyIDSecretRef"),
                        )
                        .await?;
                    let secret_access_key = reader
                        .value(
                            &refs.secret_access_key_secret_ref,
                            &format!("{field}.secretAccessKeySecretRef"),
                        )
                        .await?;
                    let session_token = match &refs.session_token_secret_ref {
                        Some(selector) => Some(
                            reader
                                .value(selector, &format!("{field}.sessionTokenSecretRef"))
                                .await?,
                        ),
                        None => None,
                    };
                    Material::Aws(AwsCredentials::Static(StaticCredentials {
                        access_key_id,
                        secret_access_key,
                        session_token,
                    }))
                }
            }
        }
        (None, Some(vault)) => {
            let auth = &vault.auth;
            let field = "spec.provider.vault.auth";
            let chosen = [
                auth.token_secret_ref.is_some(),
                auth.app_role.is_some(),
                auth.kubernetes.is_some(),
                auth.user_pass.is_some(),
                auth.jwt.is_some(),
            ]
            .iter()
            .filter(|set| **set)
            .count();
            if chosen != 1 {
                return Err(ProviderError::Config(format!(
                    "{store}: {field}: set exactly one of tokenSecretRef, appRole, kubernetes, userPass, jwt"
                )));
            }
            let login = if let Some(selector) = &auth.token_secret_ref {
                VaultLogin::Token(
                    reader
                        .value(selector, &format!("{field}.tokenSecretRef"))
                        .await?,
                )
            } else if let Some(app_role) = &auth.app_role {
                VaultLogin::AppRole {
                    mount: app_role.path.clone().unwrap_or_else(|| "approle".into()),
                    role_id: app_role.role_id.clone(),
                    secret_id: reader
                        .value(&app_role.secret_ref, &format!("{field}.appRole.secretRef"))
                        .await?,
                }
            } else if let Some(user_pass) = &auth.user_pass {
                VaultLogin::UserPass {
                    mount: user_pass.path.clone().unwrap_or_else(|| "userpass".into()),
                    username: user_pass.username.clone(),
                    password: reader
                        .value(
                            &user_pass.secret_ref,
                            &format!("{field}.userPass.secretRef"),
                        )
                        .await?,
                }
            } else if let Some(kubernetes) = &auth.kubernetes {
                let jwt = match &kubernetes.service_account_ref {
                    Some(account) => {
                        let account_field = format!("{field}.kubernetes.serviceAccountRef");
                        let namespace =
                            reader.namespace_of(account.namespace.as_deref(), &account_field)?;
                        token_request_source(
                            kube.clone(),
                            format!("{store}: {account_field}"),
                            namespace,
                            account.clone(),
                            None,
                        )
                    }
                    None => own_token_source(),
                };
                VaultLogin::Kubernetes {
                    mount: kubernetes
                        .mount_path
                        .clone()
                        .unwrap_or_else(|| "kubernetes".into()),
                    role: kubernetes.role.clone(),
                    jwt,
                }
            } else if let Some(jwt) = &auth.jwt {
                let jwt_field = format!("{field}.jwt");
                let source = match (&jwt.secret_ref, &jwt.kubernetes_service_account_token) {
                    (Some(selector), None) => fixed_source(
                        reader
                            .value(selector, &format!("{jwt_field}.secretRef"))
                            .await?,
                    ),
                    (None, Some(token)) => {
                        let account_field =
                            format!("{jwt_field}.kubernetesServiceAccountToken.serviceAccountRef");
                        let mut account = token.service_account_ref.clone();
                        let namespace =
                            reader.namespace_of(account.namespace.as_deref(), &account_field)?;
                        if let Some(audiences) = &token.audiences {
                            account.audiences = audiences.clone();
                        }
                        if account.audiences.is_empty() {
                            account.audiences = vec![VAULT_AUDIENCE.to_string()];
                        }
                        token_request_source(
                            kube.clone(),
                            format!("{store}: {account_field}"),
                            namespace,
                            account,
                            token.expiration_seconds,
                        )
                    }
                    _ => {
                        return Err(ProviderError::Config(format!(
                            "{store}: {jwt_field}: set exactly one of secretRef, kubernetesServiceAccountToken"
                        )));
                    }
                };
                VaultLogin::Jwt {
                    mount: jwt.path.clone().unwrap_or_else(|| "jwt".into()),
                    role: jwt.role.clone(),
                    jwt: source,
                }
            } else {
                return Err(ProviderError::Config(format!(
                    "{store}: {field}: no method set"
                )));
            };
            Material::Vault(login)
        }
        _ => {
            return Err(ProviderError::Config(format!(
                "{store}: spec.provider: set exactly one of aws, vault"
            )));
        }
    };
    Ok(Resolved {
        versions: reader.versions(),
        material,
    })
}

/// Tokens of a named ServiceAccount, from the TokenRequest API (`expiration`
/// seconds each, 10 minutes by default). `field` (`{store}: spec...serviceAccountRef`)
/// starts every error message; a missing ServiceAccount is a configuration error.
fn token_request_source(
    kube: kube::Client,
    field: String,
    namespace: String,
    account: ServiceAccountSelector,
    expiration: Option<i64>,
) -> JwtSource {
    Arc::new(move || {
        let kube = kube.clone();
        let field = field.clone();
        let namespace = namespace.clone();
        let account = account.clone();
        Box::pin(async move {
            let api: Api<ServiceAccount> = Api::namespaced(kube, &namespace);
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: account.audiences.clone(),
                    expiration_seconds: Some(expiration.unwrap_or(600)),
                    ..Default::default()
                },
                ..Default::default()
            };
            let mut answer = api
                .create_token_request(&account.name, &PostParams::default(), &request)
                .await
                .map_err(|e| match e {
                    kube::Error::Api(status) if status.code == 404 => {
                        ProviderError::Config(format!(
                            "{field}: ServiceAccount {namespace}/{}: not found",
                            account.name
                        ))
                    }
                    other => ProviderError::Auth(format!(
                        "{field}: token for ServiceAccount {namespace}/{}: {other}",
                        account.name
                    )),
                })?;
            let token = answer
                .status
                .as_mut()
                .map(|s| std::mem::take(&mut s.token))
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    ProviderError::Auth(format!(
                        "{field}: token for ServiceAccount {namespace}/{}: empty answer",
                        account.name
                    ))
                })?;
            Ok(SecretString::from(token))
        })
    })
}

/// A JWT read once from a Secret (the store is rebuilt when the Secret changes).
fn fixed_source(jwt: SecretString) -> JwtSource {
    Arc::new(move || {
        let jwt = jwt.clone();
        Box::pin(async move { Ok(jwt) })
    })
}

/// The controller's own projected ServiceAccount token.
fn own_token_source() -> JwtSource {
    const PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
    Arc::new(|| {
        Box::pin(async {
            let token = Zeroizing::new(
                tokio::fs::read_to_string(PATH)
                    .await
                    .map_err(|e| ProviderError::Auth(format!("reading {PATH}: {e}")))?,
            );
            Ok(SecretString::from(token.trim().to_string()))
        })
    })
}
