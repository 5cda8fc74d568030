//! HashiCorp Vault's KV engine, version 1 or 2 (tested against OpenBao).
//!
//! On `vaultrs`, the Rust ecosystem's Vault client, over the store's own
//! `reqwest` client (rustls, the spec's CA bundle). It logs in once
//! and keeps the token for its lifetime: at two thirds of the token's TTL it
//! renews it (`auth/token/renew-self`) when the token is renewable and the
//! renewal still grants a useful TTL, and logs in again otherwise. A token that
//! stops working before its TTL (revoked) is noticed on the next `403`, checked
//! with `lookup-self`, and replaced by one new login.
//!
//! KV v2 paths get `/data/` (reads) or `/metadata/` (lists, tags) inserted
//! after the mount; keys may also be written with the mount (and `data/`)
//! prefix, as External Secrets Operator accepts. Keys that would leave the
//! mount (`..`, `?`, `#`, `%`) are refused before any request is sent.
//!
//! Plaintext copies outside sigil's zeroizing types (see SECURITY.md): reqwest
//! and rustify hold each response body in plain `Bytes`/`Vec<u8>` buffers that
//! are freed without wiping; vaultrs parses a secret into a `serde_json::Value`
//! (sigil wipes its strings once it has the bytes) and a login's secret id or
//! password into a request `String` that is freed without wiping. A token lives
//! in a [`SecretString`] until handed to vaultrs, whose two `String` copies
//! are wiped when the client holding them is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use http::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use vaultrs::api::{AuthInfo, EndpointMiddleware};
use vaultrs::client::{VaultClient, VaultClientSettings};
use zeroize::Zeroize;

mod leases;

pub use leases::lease_is_gone;

use super::metrics::StoreCalls;
use super::{FIND_LIMIT, FindQuery, Provider, ProviderError, RemoteKey, SecretValue};
use crate::api::secret_store::{VaultKvVersion, VaultProvider};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const PARALLEL_READS: usize = 4;
const MAX_LIST_DEPTH: usize = 16;
/// How often the renewal task looks at a token it cannot renew.
const IDLE_RECHECK: Duration = Duration::from_secs(30);

/// Renews the client's token in the background at two thirds of its TTL, so
/// a token stays valid between refreshes however far apart they are. Ends
/// when the client is dropped (the cache replaced it).
pub fn keep_alive(kv: &Arc<VaultKv>) {
    let weak = Arc::downgrade(kv);
    tokio::spawn(async move {
        loop {
            let wait = match weak.upgrade() {
                Some(kv) => kv.until_renewal().await,
                None => return,
            };
            tokio::time::sleep(wait.max(Duration::from_millis(200))).await;
            match weak.upgrade() {
                Some(kv) => kv.renew_if_due().await,
                None => return,
            }
        }
    });
}

pub use super::JwtSource;

/// How the provider gets its Vault token.
pub enum VaultLogin {
    /// A fixed token; it can be renewed but not replaced.
    Token(SecretString),
    AppRole {
        mount: String,
        role_id: String,
        secret_id: SecretString,
    },
    UserPass {
        mount: String,
        username: String,
        password: SecretString,
    },
    Kubernetes {
        mount: String,
        role: String,
        jwt: JwtSource,
    },
    /// The `jwt` auth method; `role` unset uses the method's `default_role`.
    Jwt {
        mount: String,
        role: Option<String>,
        jwt: JwtSource,
    },
}

impl VaultLogin {
    fn method(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "appRole",
            Self::UserPass { .. } => "userPass",
            Self::Kubernetes { .. } => "kubernetes",
            Self::Jwt { .. } => "jwt",
        }
    }
}

/// A vaultrs client bound to one token (or to none, for logins). vaultrs keeps
/// the token as a plain `String` in two places; both are wiped when it is dropped.
struct TokenClient(VaultClient);

impl Drop for TokenClient {
    fn drop(&mut self) {
        self.0.settings.token.zeroize();
        self.0.middle.token.zeroize();
    }
}

/// The token in use and when it must be renewed.
#[derive(Default)]
struct Session {
    client: Option<Arc<TokenClient>>,
    obtained: Option<Instant>,
    /// Zero: the token never expires.
    ttl: Duration,
    renewable: bool,
    /// TTL granted at login; renewals granting much less mean max TTL is near.
    login_ttl: Duration,
    renewals_exhausted: bool,
}

impl Session {
    fn due(&self, now: Instant) -> bool {
        match (self.client.as_ref(), self.obtained) {
            (Some(_), Some(obtained)) => {
                !self.ttl.is_zero() && now.duration_since(obtained) >= self.ttl * 2 / 3
            }
            _ => true,
        }
    }
}

/// A long-lived KV client for one store, on `vaultrs`.
pub struct VaultKv {
    http: reqwest::Client,
    base: String,
    address: reqwest::Url,
    namespace: Option<String>,
    mount: String,
    version: VaultKvVersion,
    login: VaultLogin,
    session: tokio::sync::Mutex<Session>,
    logins: AtomicU64,
    calls: StoreCalls,
}

impl VaultKv {
    /// Builds the client; nothing is sent until the first call (which logs in).
    pub fn new(
        spec: &VaultProvider,
        login: VaultLogin,
        calls: StoreCalls,
    ) -> Result<Self, ProviderError> {
        let base = validate_server(&spec.server)?;
        let address = reqwest::Url::parse(&base).map_err(|e| {
            ProviderError::Config(format!("spec.provider.vault.server: {base:?}: {e}"))
        })?;
        let mount = spec.path.as_deref().unwrap_or("secret").trim_matches('/');
        check_segments(mount).map_err(|why| {
            ProviderError::Config(format!("spec.provider.vault.path: {mount:?}: {why}"))
        })?;
        let namespace = spec.namespace.clone().filter(|n| !n.is_empty());
        if let Some(namespace) = &namespace
            && http::HeaderValue::from_str(namespace).is_err()
        {
            return Err(ProviderError::Config(format!(
                "spec.provider.vault.namespace: {namespace:?} is not a valid header value"
            )));
        }
        // reqwest takes the process's rustls provider (ring, the only one compiled in).
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10));
        if let Some(bundle) = &spec.ca_bundle {
            let pem = decode_ca_bundle(bundle)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| ProviderError::Config(format!("spec.provider.vault.caBundle: {e}")))?;
            builder = builder.tls_certs_only(certs);
        } else if base.starts_with("http://") {
            // Plain HTTP needs no trust store; skip loading the platform's.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| ProviderError::Config(format!("spec.provider.vault: {e}")))?;
        Ok(Self {
            http,
            base,
            address,
            namespace,
            mount: mount.to_string(),
            version: spec.version,
            login,
            session: tokio::sync::Mutex::new(Session::default()),
            logins: AtomicU64::new(0),
            calls,
        })
    }

    /// Logins performed by this client so far.
    pub fn logins(&self) -> u64 {
        self.logins.load(Ordering::Relaxed)
    }

    /// A vaultrs client sending `token` (none for logins). It is built by hand rather than
    /// with `VaultClient::new`, which reads `VAULT_*` variables and takes CA files only:
    /// this one shares the store's HTTP client, with the CA bundle of the store's spec.
    fn client(&self, token: Option<&SecretString>) -> Result<TokenClient, ProviderError> {
        let token = token.map(|t| t.expose_secret()).unwrap_or_default();
        // vaultrs panics on a token that is not a valid header value: refuse it first.
        if http::HeaderValue::from_str(token).is_err() {
            return Err(ProviderError::Auth(
                "the Vault token is not a valid header value".into(),
            ));
        }
        Ok(TokenClient(VaultClient {
            http: rustify::clients::reqwest::Client::new(&self.base, self.http.clone()),
            middle: EndpointMiddleware {
                token: token.to_string(),
                version: "v1".into(),
                wrap: None,
                namespace: self.namespace.clone(),
            },
            settings: VaultClientSettings {
                address: self.address.clone(),
                ca_certs: Vec::new(),
                identity: None,
                timeout: Some(REQUEST_TIMEOUT),
                token: token.to_string(),
                verify: true,
                version: 1,
                wrapping: false,
                namespace: self.namespace.clone(),
                proxy: None,
            },
        }))
    }

    async fn login(&self, session: &mut Session) -> Result<(), ProviderError> {
        if let VaultLogin::Token(token) = &self.login {
            let client = Arc::new(self.client(Some(token))?);
            let (ttl, renewable) = self.lookup(&client).await?;
            *session = Session {
                client: Some(client),
                obtained: Some(Instant::now()),
                ttl,
                renewable,
                login_ttl: ttl,
                renewals_exhausted: false,
            };
            return Ok(());
        }
        let what = format!("Vault login ({})", self.login.method());
        let anonymous = self.client(None)?;
        self.logins.fetch_add(1, Ordering::Relaxed);
        let answer = match &self.login {
            VaultLogin::Token(_) => {
                return Err(ProviderError::Auth(format!(
                    "{what}: a static token has no login"
                )));
            }
            VaultLogin::AppRole {
                mount,
                role_id,
                secret_id,
            } => {
                vaultrs::auth::approle::login(
                    &anonymous.0,
                    mount.trim_matches('/'),
                    role_id,
                    secret_id.expose_secret(),
                )
                .await
            }
            VaultLogin::UserPass {
                mount,
                username,
                password,
            } => {
                vaultrs::auth::userpass::login(
                    &anonymous.0,
                    mount.trim_matches('/'),
                    username,
                    password.expose_secret(),
                )
                .await
            }
            VaultLogin::Kubernetes { mount, role, jwt } => {
                let jwt = jwt().await?;
                vaultrs::auth::kubernetes::login(
                    &anonymous.0,
                    mount.trim_matches('/'),
                    role,
                    jwt.expose_secret(),
                )
                .await
            }
            VaultLogin::Jwt { mount, role, jwt } => {
                let jwt = jwt().await?;
                vaultrs::auth::oidc::login(
                    &anonymous.0,
                    mount.trim_matches('/'),
                    jwt.expose_secret(),
                    role.clone(),
                )
                .await
            }
        };
        let auth = answer
            .map_err(|e| match client_error(e, &what) {
                // Vault answers bad credentials with 400 (userpass), 403 or 404 (unknown role).
                ProviderError::Denied { message, .. }
                | ProviderError::Value { message, .. }
                | ProviderError::NotFound { key: message } => {
                    ProviderError::Auth(format!("{what}: {message}"))
                }
                other => other,
            })
            .and_then(|auth| self.token_client(auth, &what));
        self.calls.record_login(&auth);
        let (client, ttl, renewable) = self.calls.observe(auth)?;
        *session = Session {
            client: Some(Arc::new(client)),
            obtained: Some(Instant::now()),
            ttl,
            renewable,
            login_ttl: ttl,
            renewals_exhausted: false,
        };
        tracing::debug!(
            method = self.login.method(),
            ttl_seconds = ttl.as_secs(),
            "logged in to Vault"
        );
        Ok(())
    }

    /// The client for the token of a login or renewal answer, its TTL and renewability.
    /// The token is moved out of vaultrs's answer, not copied.
    fn token_client(
        &self,
        mut auth: AuthInfo,
        what: &str,
    ) -> Result<(TokenClient, Duration, bool), ProviderError> {
        let token = SecretString::from(std::mem::take(&mut auth.client_token));
        auth.accessor.zeroize();
        if token.expose_secret().is_empty() {
            return Err(ProviderError::Auth(format!(
                "{what}: answer has no client token"
            )));
        }
        let client = self.client(Some(&token))?;
        Ok((
            client,
            Duration::from_secs(auth.lease_duration),
            auth.renewable,
        ))
    }

    /// `lookup-self`: the token's remaining TTL and whether it is renewable.
    async fn lookup(&self, client: &TokenClient) -> Result<(Duration, bool), ProviderError> {
        let what = "Vault token lookup-self";
        let answer =
            vaultrs::token::lookup_self(&client.0)
                .await
                .map_err(|e| match client_error(e, what) {
                    ProviderError::Denied { message, .. } => {
                        ProviderError::Auth(format!("{what}: {message}"))
                    }
                    other => other,
                });
        let mut answer = self.calls.observe(answer)?;
        // The answer repeats the token itself.
        answer.id.zeroize();
        Ok((
            Duration::from_secs(answer.ttl),
            answer.renewable.unwrap_or(false),
        ))
    }

    /// `renew-self`; false when the token could not usefully be renewed.
    async fn renew(&self, session: &mut Session) -> bool {
        let Some(current) = session.client.clone() else {
            return false;
        };
        let what = "Vault token renew-self";
        let auth = vaultrs::token::renew_self(&current.0, None)
            .await
            .map_err(|e| client_error(e, what))
            .map(|mut auth| {
                // Renewing keeps the token: keep the client that already holds it.
                auth.client_token.zeroize();
                auth.accessor.zeroize();
                (Duration::from_secs(auth.lease_duration), auth.renewable)
            });
        self.calls.record_renewal(&auth);
        let Ok((ttl, renewable)) = self.calls.observe(auth) else {
            // Not renewable after all (or no longer): log in again when due.
            session.renewable = false;
            return false;
        };
        session.obtained = Some(Instant::now());
        session.ttl = ttl;
        session.renewable = renewable;
        // Close to the token's max TTL, renewals shrink: log in again next time.
        session.renewals_exhausted = ttl < session.login_ttl / 3;
        true
    }

    /// How long until the token should be renewed; a while when it cannot be.
    async fn until_renewal(&self) -> Duration {
        let session = self.session.lock().await;
        match (session.obtained, session.client.is_some()) {
            (Some(obtained), true) if session.renewable && !session.ttl.is_zero() => {
                (obtained + session.ttl * 2 / 3).saturating_duration_since(Instant::now())
            }
            _ => IDLE_RECHECK,
        }
    }

    /// Renews the token if due and renewable; logging in is left to the next use.
    async fn renew_if_due(&self) {
        let mut session = self.session.lock().await;
        if session.due(Instant::now())
            && session.client.is_some()
            && session.renewable
            && !session.renewals_exhausted
        {
            self.renew(&mut session).await;
        }
    }

    /// The client of the current token, logging in or renewing first when due.
    async fn token(&self) -> Result<Arc<TokenClient>, ProviderError> {
        let mut session = self.session.lock().await;
        if session.due(Instant::now()) {
            let renewed = session.client.is_some()
                && session.renewable
                && !session.renewals_exhausted
                && self.renew(&mut session).await;
            if !renewed {
                self.login(&mut session).await?;
            }
        }
        session
            .client
            .clone()
            .ok_or_else(|| ProviderError::Auth("Vault login returned no token".into()))
    }

    /// After a 403: forget the token if Vault no longer knows it. True when a
    /// retry with a new token may succeed.
    async fn token_was_revoked(&self, used: &Arc<TokenClient>) -> bool {
        if matches!(self.login, VaultLogin::Token(_)) {
            return false;
        }
        let mut session = self.session.lock().await;
        if !session
            .client
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, used))
        {
            // Someone else already replaced it.
            return true;
        }
        match self.lookup(used).await {
            Err(ProviderError::Auth(_)) => {
                *session = Session::default();
                true
            }
            _ => false,
        }
    }

    /// One vaultrs call with the current token, retried once with a new token if the
    /// old one was revoked; every attempt is counted.
    async fn authed<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ProviderError>
    where
        F: Fn(Arc<TokenClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, vaultrs::error::ClientError>>,
    {
        let client = self.token().await?;
        let first = call(client.clone())
            .await
            .map_err(|e| client_error(e, what));
        let first = self.calls.observe(first);
        match first {
            Err(ProviderError::Denied { .. }) if self.token_was_revoked(&client).await => {
                let client = self.token().await?;
                let second = call(client).await.map_err(|e| client_error(e, what));
                self.calls.observe(second)
            }
            other => other,
        }
    }

    /// The path of a key inside the mount, without the mount (or `data/`) prefix.
    fn relative_path<'k>(&self, key: &'k str) -> Result<&'k str, ProviderError> {
        let mut path = key.trim_start_matches('/');
        if let Some(rest) = path
            .strip_prefix(self.mount.as_str())
            .and_then(|r| r.strip_prefix('/'))
        {
            path = rest;
            if self.version == VaultKvVersion::V2 {
                path = path.strip_prefix("data/").unwrap_or(path);
            }
        }
        let path = path.trim_end_matches('/');
        check_segments(path).map_err(|why| ProviderError::Value {
            key: key.to_string(),
            message: format!("invalid Vault path: {why}"),
        })?;
        Ok(path)
    }

    async fn read(&self, key: &RemoteKey) -> Result<SecretValue, ProviderError> {
        let path = self.relative_path(&key.key)?.to_string();
        let version = match (self.version, key.version.as_deref()) {
            (VaultKvVersion::V1, Some(_)) => {
                return Err(ProviderError::Value {
                    key: key.key.clone(),
                    message: "versions need KV version 2 (spec.provider.vault.version: v2)".into(),
                });
            }
            (_, None) => None,
            (VaultKvVersion::V2, Some(version)) => {
                Some(version.parse::<u64>().map_err(|_| ProviderError::Value {
                    key: key.key.clone(),
                    message: format!("version {version:?} is not a KV v2 version number"),
                })?)
            }
        };
        let mount = self.mount.as_str();
        let kv_version = self.version;
        let data = self
            .authed(&key.key, |client| {
                let path = path.clone();
                async move {
                    match (kv_version, version) {
                        (VaultKvVersion::V1, _) => vaultrs::kv1::get_raw(&client.0, mount, &path)
                            .await
                            .map(|answer| answer.data),
                        (VaultKvVersion::V2, None) => {
                            vaultrs::kv2::read::<Value>(&client.0, mount, &path).await
                        }
                        (VaultKvVersion::V2, Some(number)) => {
                            vaultrs::kv2::read_version::<Value>(&client.0, mount, &path, number)
                                .await
                        }
                    }
                }
            })
            .await
            .map_err(|e| match e {
                ProviderError::NotFound { .. } => ProviderError::NotFound {
                    key: key.to_string(),
                },
                other => other,
            })?;
        secret_data(data, &key.key)
    }

    /// Keys below the folder `start` (`""` or ending in `/`), recursively, relative to the mount.
    async fn list_recursive(&self, start: String) -> Result<Vec<String>, ProviderError> {
        let mut found = Vec::new();
        let mut folders = vec![(start, 0usize)];
        let mount = self.mount.as_str();
        let kv_version = self.version;
        while let Some((folder, depth)) = folders.pop() {
            let listing = self
                .authed("Vault LIST", |client| {
                    let folder = folder.clone();
                    async move {
                        match kv_version {
                            VaultKvVersion::V1 => vaultrs::kv1::list(&client.0, mount, &folder)
                                .await
                                .map(|answer| answer.data.keys),
                            VaultKvVersion::V2 => {
                                vaultrs::kv2::list(&client.0, mount, &folder).await
                            }
                        }
                    }
                })
                .await;
            let keys = match listing {
                Ok(keys) => keys,
                Err(ProviderError::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            };
            for entry in keys {
                let full = format!("{folder}{entry}");
                if full.ends_with('/') {
                    if depth + 1 < MAX_LIST_DEPTH
                        && check_segments(full.trim_end_matches('/')).is_ok()
                    {
                        folders.push((full, depth + 1));
                    }
                } else {
                    found.push(full);
                }
                if found.len() + folders.len() > FIND_LIMIT * 4 {
                    return Err(ProviderError::Config(format!(
                        "find: the mount holds more than {} entries; use a narrower store",
                        FIND_LIMIT * 4
                    )));
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// A KV v2 secret's custom metadata (keys and values are not secret; Vault shows them
    /// to anyone who may list).
    async fn custom_metadata(
        &self,
        path: &str,
    ) -> Result<std::collections::HashMap<String, String>, ProviderError> {
        let mount = self.mount.as_str();
        let metadata = self
            .authed(path, |client| async move {
                vaultrs::kv2::read_metadata(&client.0, mount, path).await
            })
            .await?;
        Ok(metadata.custom_metadata.unwrap_or_default())
    }

    async fn tags_match(&self, path: &str, query: &FindQuery) -> Result<bool, ProviderError> {
        let custom = self.custom_metadata(path).await?;
        Ok(query.tags.iter().all(|(k, v)| custom.get(k) == Some(v)))
    }

    /// The folder `find.path` names, relative to the mount, with a trailing `/`.
    fn find_folder(&self, path: Option<&str>) -> Result<String, ProviderError> {
        let Some(path) = path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) else {
            return Ok(String::new());
        };
        let relative = self.relative_path(path).map_err(|_| {
            ProviderError::Config(format!("find.path {path:?}: not a folder inside the mount"))
        })?;
        Ok(format!("{relative}/"))
    }
}

impl Provider for VaultKv {
    fn kind(&self) -> &'static str {
        "vault"
    }

    fn generator(&self) -> Option<&dyn super::generator::Generator> {
        Some(self)
    }

    fn get_metadata<'a>(
        &'a self,
        key: &'a RemoteKey,
    ) -> BoxFuture<'a, Result<SecretValue, ProviderError>> {
        Box::pin(async move {
            if self.version == VaultKvVersion::V1 {
                return Err(ProviderError::Config(format!(
                    "{key}: metadataPolicy Fetch needs KV version 2 (custom metadata)"
                )));
            }
            let path = self.relative_path(&key.key)?;
            let custom = self.custom_metadata(path).await.map_err(|e| match e {
                ProviderError::NotFound { .. } => ProviderError::NotFound {
                    key: key.to_string(),
                },
                other => other,
            })?;
            let json = serde_json::to_vec(&custom).map_err(|e| ProviderError::Value {
                key: key.to_string(),
                message: e.to_string(),
            })?;
            Ok(SecretValue::new(json))
        })
    }

    fn validate(&self) -> BoxFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let token = self.token().await?;
            self.lookup(&token).await.map(|_| ())
        })
    }

    fn get_many<'a>(
        &'a self,
        keys: &'a [RemoteKey],
    ) -> BoxFuture<'a, Vec<Result<SecretValue, ProviderError>>> {
        Box::pin(async move {
            let reads: Vec<_> = keys.iter().map(|key| self.read(key)).collect();
            futures::stream::iter(reads)
                .buffered(PARALLEL_READS)
                .collect()
                .await
        })
    }

    fn find_names<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<String>, ProviderError>> {
        Box::pin(async move {
            if !query.tags.is_empty() && self.version == VaultKvVersion::V1 {
                return Err(ProviderError::Config(
                    "find.tags needs KV version 2 (custom metadata)".into(),
                ));
            }
            let pattern = query.name_pattern()?;
            let folder = self.find_folder(query.path.as_deref())?;
            let mut names: Vec<String> = self
                .list_recursive(folder)
                .await?
                .into_iter()
                .filter(|p| pattern.as_ref().is_none_or(|re| re.is_match(p)))
                .collect();
            if !query.tags.is_empty() {
                let mut kept = Vec::new();
                for name in names {
                    if self.tags_match(&name, query).await? {
                        kept.push(name);
                    }
                }
                names = kept;
            }
            Ok(names)
        })
    }
}

/// A secret's key/value map as JSON bytes; the parsed answer is wiped.
fn secret_data(mut data: Value, key: &str) -> Result<SecretValue, ProviderError> {
    let result = match &data {
        Value::Object(_) => Ok(SecretValue::new(
            serde_json::to_vec(&data).unwrap_or_default(),
        )),
        // KV v2 answers `data: null` for a deleted latest version.
        _ => Err(ProviderError::NotFound {
            key: key.to_string(),
        }),
    };
    scrub(&mut data);
    result
}

fn scrub(value: &mut Value) {
    match value {
        Value::String(text) => text.zeroize(),
        Value::Array(items) => items.iter_mut().for_each(scrub),
        Value::Object(map) => map.values_mut().for_each(scrub),
        _ => {}
    }
}

/// A vaultrs error as sigil's: Vault's own messages and status, or the transport's
/// cause; never a response body (vaultrs keeps unparsable ones in the error).
fn client_error(error: vaultrs::error::ClientError, what: &str) -> ProviderError {
    use rustify::errors::ClientError as Rest;
    use vaultrs::error::ClientError as Vault;
    match error {
        Vault::APIError { code, errors } => status_error(code, &errors, what),
        Vault::RestClientError { source } => match source {
            Rest::ServerResponseError { code, .. } => status_error(code, &[], what),
            Rest::RequestError { source, .. } | Rest::ResponseError { source } => {
                let cause = match source.downcast_ref::<reqwest::Error>() {
                    Some(reqwest) => without_url(reqwest),
                    None => source.to_string(),
                };
                ProviderError::Backend(format!("{what}: {cause}"))
            }
            Rest::ResponseParseError { .. } | Rest::ResponseConversionError { .. } => {
                ProviderError::Backend(format!("{what}: unexpected answer from Vault"))
            }
            other => ProviderError::Backend(format!("{what}: {other}")),
        },
        Vault::JsonParseError { .. } => {
            ProviderError::Backend(format!("{what}: unexpected answer from Vault"))
        }
        Vault::ResponseEmptyError | Vault::ResponseDataEmptyError => {
            ProviderError::Backend(format!("{what}: Vault sent an empty answer"))
        }
        other => ProviderError::Backend(format!("{what}: {other}")),
    }
}

fn status_error(code: u16, messages: &[String], what: &str) -> ProviderError {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    let detail = if messages.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {}", messages.join("; "))
    };
    match status {
        StatusCode::NOT_FOUND => ProviderError::NotFound {
            key: what.to_string(),
        },
        StatusCode::FORBIDDEN => ProviderError::Denied {
            key: what.to_string(),
            message: detail,
        },
        StatusCode::UNAUTHORIZED => ProviderError::Auth(format!("{what}: {detail}")),
        StatusCode::TOO_MANY_REQUESTS => ProviderError::Throttled(format!("{what}: {detail}")),
        StatusCode::BAD_REQUEST => ProviderError::Value {
            key: what.to_string(),
            message: detail,
        },
        _ => ProviderError::Backend(format!("{what}: {detail}")),
    }
}

/// reqwest errors print the URL; keep the cause only (the path is already in `what`).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "<vault>");
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn validate_server(server: &str) -> Result<String, ProviderError> {
    let uri: http::Uri = server.parse().map_err(|e| {
        ProviderError::Config(format!("spec.provider.vault.server: {server:?}: {e}"))
    })?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(_)) => Ok(server.trim_end_matches('/').to_string()),
        _ => Err(ProviderError::Config(format!(
            "spec.provider.vault.server: {server:?}: expected an http(s) URL"
        ))),
    }
}

fn decode_ca_bundle(bundle: &str) -> Result<Vec<u8>, ProviderError> {
    use base64::Engine;
    let trimmed = bundle.trim();
    if trimmed.starts_with("-----BEGIN") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(trimmed)
        .map_err(|e| {
            ProviderError::Config(format!("spec.provider.vault.caBundle: not base64 PEM: {e}"))
        })
}

/// Refuses paths that could step out of the mount or change the request.
fn check_segments(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("empty");
    }
    if path
        .chars()
        .any(|c| c.is_control() || matches!(c, '?' | '#' | '%' | '\\'))
    {
        return Err("contains ?, #, %, \\ or a control character");
    }
    if path
        .split('/')
        .any(|segment| segment.is_empty() || segment == "." || segment == "..")
    {
        return Err("has an empty, `.` or `..` segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::BackendCalls;

    fn kv(version: VaultKvVersion) -> VaultKv {
        VaultKv::new(
            &VaultProvider {
                server: "http://127.0.0.1:8200".into(),
                path: Some("kv".into()),
                version,
                ..Default::default()
            },
            VaultLogin::Token(SecretString::from("t")),
            BackendCalls::default().for_store("test", "vault"),
        )
        .expect("valid spec")
    }

    #[test]
    fn keys_may_carry_the_mount_and_data_prefix() {
        let v2 = kv(VaultKvVersion::V2);
        assert_eq!(v2.relative_path("app/db").expect("plain"), "app/db");
        assert_eq!(
            v2.relative_path("/kv/data/app/db").expect("with data"),
            "app/db"
        );
        assert_eq!(v2.relative_path("kv/app/db").expect("with mount"), "app/db");
        let v1 = kv(VaultKvVersion::V1);
        assert_eq!(
            v1.relative_path("kv/data/app").expect("v1 keeps data/"),
            "data/app"
        );
    }

    #[test]
    fn keys_cannot_leave_the_mount() {
        let v2 = kv(VaultKvVersion::V2);
        for bad in [
            "../sys/seal",
            "app/../../auth",
            "app?list=true",
            "a#b",
            "a%2e%2e",
            "",
            "a//b",
        ] {
            assert!(v2.relative_path(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn servers_and_mounts_are_validated() {
        assert!(validate_server("https://vault.example:8200/").is_ok());
        assert!(validate_server("vault:8200").is_err());
        let spec = VaultProvider {
            server: "http://127.0.0.1:1".into(),
            path: Some("../sys".into()),
            ..Default::default()
        };
        let calls = BackendCalls::default().for_store("s", "vault");
        assert!(VaultKv::new(&spec, VaultLogin::Token(SecretString::from("t")), calls).is_err());
    }

    #[test]
    fn data_must_be_an_object() {
        let value = secret_data(serde_json::json!({"user": "app"}), "k").expect("object");
        assert_eq!(value.expose(), br#"{"user":"app"}"#);
        // KV v2's answer for a deleted latest version.
        assert!(matches!(
            secret_data(Value::Null, "k"),
            Err(ProviderError::NotFound { .. })
        ));
    }

    #[test]
    fn errors_carry_vault_messages_and_map_statuses() {
        let error = client_error(
            vaultrs::error::ClientError::APIError {
                code: 403,
                errors: vec!["permission denied".into()],
            },
            "app/db",
        );
        assert!(matches!(&error, ProviderError::Denied { .. }));
        assert!(error.to_string().contains("permission denied"), "{error}");
        let error = status_error(503, &["Vault is sealed".into()], "x");
        assert!(error.is_transient() && error.to_string().contains("sealed"));
        let unparsable = client_error(
            vaultrs::error::ClientError::RestClientError {
                source: rustify::errors::ClientError::ResponseParseError {
                    source: anyhow::anyhow!("invalid type: string \"hunter2\""),
                    content: Some(r#"{"data":{"password":"hunter2"}}"#.into()),
                },
            },
            "app/db",
        );
        assert!(!unparsable.to_string().contains("hunter2"), "{unparsable}");
    }

    #[test]
    fn sessions_are_due_at_two_thirds_of_the_ttl() {
        let start = Instant::now();
        let session = Session {
            client: Some(Arc::new(
                kv(VaultKvVersion::V2)
                    .client(Some(&SecretString::from("t")))
                    .expect("client"),
            )),
            obtained: Some(start),
            ttl: Duration::from_secs(30),
            ..Default::default()
        };
        assert!(!session.due(start + Duration::from_secs(19)));
        assert!(session.due(start + Duration::from_secs(20)));
        let forever = Session {
            ttl: Duration::ZERO,
            ..session
        };
        assert!(!forever.due(start + Duration::from_secs(1_000_000)));
        assert!(Session::default().due(start));
    }
}
