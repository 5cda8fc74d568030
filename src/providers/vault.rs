//! HashiCorp Vault's KV engine, version 1 or 2.
//!
//! A small client over Vault's HTTP API (`reqwest`, rustls). It logs in once
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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::future::BoxFuture;
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;
use zeroize::{Zeroize, Zeroizing};

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
}

impl VaultLogin {
    fn method(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::AppRole { .. } => "appRole",
            Self::UserPass { .. } => "userPass",
            Self::Kubernetes { .. } => "kubernetes",
        }
    }
}

/// The token in use and when it must be renewed.
#[derive(Default)]
struct Session {
    token: Option<Arc<SecretString>>,
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
        match (self.token.as_ref(), self.obtained) {
            (Some(_), Some(obtained)) => {
                !self.ttl.is_zero() && now.duration_since(obtained) >= self.ttl * 2 / 3
            }
            _ => true,
        }
    }
}

/// A long-lived KV client for one store.
pub struct VaultKv {
    http: reqwest::Client,
    base: String,
    namespace: Option<String>,
    mount: String,
    version: VaultKvVersion,
    login: VaultLogin,
    session: tokio::sync::Mutex<Session>,
    logins: AtomicU64,
    calls: StoreCalls,
}

/// The part of a login or renewal answer sigil reads.
#[derive(Deserialize)]
struct AuthAnswer {
    auth: Option<AuthBlock>,
    /// RustyVault answers a failed login with 200 and `data.error`.
    #[serde(default)]
    data: Option<AuthErrorData>,
}

#[derive(Deserialize)]
struct AuthErrorData {
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct AuthBlock {
    client_token: Option<String>,
    #[serde(default)]
    lease_duration: u64,
    #[serde(default)]
    renewable: bool,
}

impl Drop for AuthBlock {
    fn drop(&mut self) {
        if let Some(token) = self.client_token.as_mut() {
            token.zeroize();
        }
    }
}

impl VaultKv {
    /// Builds the client; nothing is sent until the first call (which logs in).
    pub fn new(
        spec: &VaultProvider,
        login: VaultLogin,
        calls: StoreCalls,
    ) -> Result<Self, ProviderError> {
        let base = validate_server(&spec.server)?;
        let mount = spec.path.as_deref().unwrap_or("secret").trim_matches('/');
        check_segments(mount).map_err(|why| {
            ProviderError::Config(format!("spec.provider.vault.path: {mount:?}: {why}"))
        })?;
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
            namespace: spec.namespace.clone().filter(|n| !n.is_empty()),
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

    /// Sends one request; `Ok` carries the JSON answer (`Null` for an empty one).
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<Zeroizing<Vec<u8>>>,
        what: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let url = format!("{}/v1/{}", self.base, path);
        let mut request = self.http.request(method, &url);
        if let Some(token) = token {
            let mut value = http::HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                ProviderError::Auth(format!("{what}: the token is not a valid header value"))
            })?;
            value.set_sensitive(true);
            request = request.header("X-Vault-Token", value);
        }
        if let Some(namespace) = &self.namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_vec());
        }
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::Backend(format!("{what}: {}", without_url(&e))))?;
        let status = response.status();
        let bytes = Zeroizing::new(
            response
                .bytes()
                .await
                .map_err(|e| ProviderError::Backend(format!("{what}: {}", without_url(&e))))?
                .to_vec(),
        );
        if status.is_success() {
            return Ok(bytes);
        }
        Err(status_error(status, &bytes, what))
    }

    async fn login(&self, session: &mut Session) -> Result<(), ProviderError> {
        let (path, body) = match &self.login {
            VaultLogin::Token(token) => {
                let (ttl, renewable) = self.lookup(token).await?;
                *session = Session {
                    token: Some(Arc::new(token.clone())),
                    obtained: Some(Instant::now()),
                    ttl,
                    renewable,
                    login_ttl: ttl,
                    renewals_exhausted: false,
                };
                return Ok(());
            }
            VaultLogin::AppRole {
                mount,
                role_id,
                secret_id,
            } => (
                format!("auth/{}/login", mount.trim_matches('/')),
                json_body(serde_json::json!({
                    "role_id": role_id,
                    "secret_id": secret_id.expose_secret(),
                })),
            ),
            VaultLogin::UserPass {
                mount,
                username,
                password,
            } => (
                format!("auth/{}/login/{username}", mount.trim_matches('/')),
                json_body(serde_json::json!({ "password": password.expose_secret() })),
            ),
            VaultLogin::Kubernetes { mount, role, jwt } => {
                let jwt = jwt().await?;
                (
                    format!("auth/{}/login", mount.trim_matches('/')),
                    json_body(serde_json::json!({ "role": role, "jwt": jwt.expose_secret() })),
                )
            }
        };
        let what = format!("Vault login ({})", self.login.method());
        self.logins.fetch_add(1, Ordering::Relaxed);
        let answer = self
            .send(Method::POST, &path, None, Some(body), &what)
            .await
            .map_err(|e| match e {
                // Vault answers bad credentials with 400 (userpass), 403 or 404 (unknown role).
                ProviderError::Denied { message, .. }
                | ProviderError::Value { message, .. }
                | ProviderError::NotFound { key: message } => {
                    ProviderError::Auth(format!("{what}: {message}"))
                }
                other => other,
            });
        let auth = answer.and_then(|answer| parse_auth(&answer, &what));
        self.calls.record_login(&auth);
        let auth = self.calls.observe(auth)?;
        let ttl = Duration::from_secs(auth.lease_duration);
        *session = Session {
            token: auth
                .client_token
                .as_deref()
                .map(|t| Arc::new(SecretString::from(t))),
            obtained: Some(Instant::now()),
            ttl,
            renewable: auth.renewable,
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

    /// `lookup-self`: the token's remaining TTL and whether it is renewable.
    async fn lookup(&self, token: &SecretString) -> Result<(Duration, bool), ProviderError> {
        #[derive(Deserialize)]
        struct Lookup {
            data: LookupData,
        }
        #[derive(Deserialize)]
        struct LookupData {
            #[serde(default)]
            ttl: u64,
            #[serde(default)]
            renewable: bool,
        }
        let what = "Vault token lookup-self";
        let answer = self
            .send(
                Method::GET,
                "auth/token/lookup-self",
                Some(token),
                None,
                what,
            )
            .await
            .map_err(|e| match e {
                ProviderError::Denied { message, .. } => {
                    ProviderError::Auth(format!("{what}: {message}"))
                }
                other => other,
            });
        let answer = self.calls.observe(answer)?;
        let lookup: Lookup = serde_json::from_slice(&answer)
            .map_err(|e| ProviderError::Backend(format!("{what}: unexpected answer: {e}")))?;
        Ok((Duration::from_secs(lookup.data.ttl), lookup.data.renewable))
    }

    /// `renew-self`; false when the token could not usefully be renewed.
    async fn renew(&self, session: &mut Session) -> bool {
        let Some(token) = session.token.clone() else {
            return false;
        };
        let what = "Vault token renew-self";
        let answer = self
            .send(
                Method::POST,
                "auth/token/renew-self",
                Some(&token),
                Some(json_body(serde_json::json!({}))),
                what,
            )
            .await;
        let auth = answer.and_then(|answer| parse_auth(&answer, what));
        self.calls.record_renewal(&auth);
        let Ok(auth) = self.calls.observe(auth) else {
            // Not renewable after all (or no longer): log in again when due.
            session.renewable = false;
            return false;
        };
        let ttl = Duration::from_secs(auth.lease_duration);
        session.obtained = Some(Instant::now());
        session.ttl = ttl;
        session.renewable = auth.renewable;
        // Close to the token's max TTL, renewals shrink: log in again next time.
        session.renewals_exhausted = ttl < session.login_ttl / 3;
        true
    }

    /// How long until the token should be renewed; a while when it cannot be.
    async fn until_renewal(&self) -> Duration {
        let session = self.session.lock().await;
        match (session.obtained, session.token.is_some()) {
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
            && session.token.is_some()
            && session.renewable
            && !session.renewals_exhausted
        {
            self.renew(&mut session).await;
        }
    }

    /// The current token, logging in or renewing first when due.
    async fn token(&self) -> Result<Arc<SecretString>, ProviderError> {
        let mut session = self.session.lock().await;
        if session.due(Instant::now()) {
            let renewed = session.token.is_some()
                && session.renewable
                && !session.renewals_exhausted
                && self.renew(&mut session).await;
            if !renewed {
                self.login(&mut session).await?;
            }
        }
        session
            .token
            .clone()
            .ok_or_else(|| ProviderError::Auth("Vault login returned no token".into()))
    }

    /// After a 403: forget the token if Vault no longer knows it. True when a
    /// retry with a new token may succeed.
    async fn token_was_revoked(&self, used: &Arc<SecretString>) -> bool {
        if matches!(self.login, VaultLogin::Token(_)) {
            return false;
        }
        let mut session = self.session.lock().await;
        if !session
            .token
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

    /// An authenticated request, retried once with a new token if the old one was revoked.
    async fn authed(
        &self,
        method: Method,
        path: &str,
        what: &str,
    ) -> Result<Zeroizing<Vec<u8>>, ProviderError> {
        let token = self.token().await?;
        let first = self
            .send(method.clone(), path, Some(&token), None, what)
            .await;
        let first = self.calls.observe(first);
        match first {
            Err(ProviderError::Denied { .. }) if self.token_was_revoked(&token).await => {
                let token = self.token().await?;
                let second = self.send(method, path, Some(&token), None, what).await;
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
        let path = self.relative_path(&key.key)?;
        let url_path = match (self.version, key.version.as_deref()) {
            (VaultKvVersion::V1, None) => format!("{}/{path}", self.mount),
            (VaultKvVersion::V1, Some(_)) => {
                return Err(ProviderError::Value {
                    key: key.key.clone(),
                    message: "versions need KV version 2 (spec.provider.vault.version: v2)".into(),
                });
            }
            (VaultKvVersion::V2, None) => format!("{}/data/{path}", self.mount),
            (VaultKvVersion::V2, Some(version)) => {
                let number: u64 = version.parse().map_err(|_| ProviderError::Value {
                    key: key.key.clone(),
                    message: format!("version {version:?} is not a KV v2 version number"),
                })?;
                format!("{}/data/{path}?version={number}", self.mount)
            }
        };
        let answer = self
            .authed(Method::GET, &url_path, &key.key)
            .await
            .map_err(|e| match e {
                ProviderError::NotFound { .. } => ProviderError::NotFound {
                    key: key.to_string(),
                },
                other => other,
            })?;
        secret_data(&answer, self.version, &key.key)
    }

    /// Keys below `path` (recursively), relative to the mount.
    async fn list_recursive(&self) -> Result<Vec<String>, ProviderError> {
        #[derive(Deserialize)]
        struct Listing {
            data: ListingData,
        }
        #[derive(Deserialize)]
        struct ListingData {
            #[serde(default)]
            keys: Vec<String>,
        }
        let list_method = Method::from_bytes(b"LIST").unwrap_or(Method::GET);
        let mut found = Vec::new();
        let mut folders = vec![(String::new(), 0usize)];
        while let Some((folder, depth)) = folders.pop() {
            let url_path = match self.version {
                VaultKvVersion::V1 => format!("{}/{folder}", self.mount),
                VaultKvVersion::V2 => format!("{}/metadata/{folder}", self.mount),
            };
            let answer = match self
                .authed(list_method.clone(), &url_path, "Vault LIST")
                .await
            {
                Ok(answer) => answer,
                Err(ProviderError::NotFound { .. }) => continue,
                Err(error) => return Err(error),
            };
            let listing: Listing = serde_json::from_slice(&answer).map_err(|e| {
                ProviderError::Backend(format!("Vault LIST {folder:?}: unexpected answer: {e}"))
            })?;
            for entry in listing.data.keys {
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

    async fn tags_match(&self, path: &str, query: &FindQuery) -> Result<bool, ProviderError> {
        #[derive(Deserialize)]
        struct Metadata {
            data: MetadataData,
        }
        #[derive(Deserialize)]
        struct MetadataData {
            #[serde(default)]
            custom_metadata: Option<std::collections::BTreeMap<String, String>>,
        }
        let answer = self
            .authed(
                Method::GET,
                &format!("{}/metadata/{path}", self.mount),
                path,
            )
            .await?;
        let metadata: Metadata = serde_json::from_slice(&answer).map_err(|e| {
            ProviderError::Backend(format!("{path}: unexpected metadata answer: {e}"))
        })?;
        let custom = metadata.data.custom_metadata.unwrap_or_default();
        Ok(query.tags.iter().all(|(k, v)| custom.get(k) == Some(v)))
    }
}

impl Provider for VaultKv {
    fn kind(&self) -> &'static str {
        "vault"
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

    fn find<'a>(
        &'a self,
        query: &'a FindQuery,
    ) -> BoxFuture<'a, Result<Vec<(String, SecretValue)>, ProviderError>> {
        Box::pin(async move {
            if !query.tags.is_empty() && self.version == VaultKvVersion::V1 {
                return Err(ProviderError::Config(
                    "find.tags needs KV version 2 (custom metadata)".into(),
                ));
            }
            let pattern = query
                .name_regexp
                .as_deref()
                .map(regex::Regex::new)
                .transpose()
                .map_err(|e| ProviderError::Config(format!("find.name.regexp: {e}")))?;
            let mut names: Vec<String> = self
                .list_recursive()
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
            if names.len() > FIND_LIMIT {
                return Err(ProviderError::Config(format!(
                    "find matches more than {FIND_LIMIT} secrets; narrow the name or tags"
                )));
            }
            let keys: Vec<RemoteKey> = names.iter().map(|n| RemoteKey::new(n, None)).collect();
            let values = self.get_many(&keys).await;
            names
                .into_iter()
                .zip(values)
                .filter_map(|(name, value)| match value {
                    Ok(value) => Some(Ok((name, value))),
                    Err(ProviderError::NotFound { .. }) => None,
                    Err(error) => Some(Err(error)),
                })
                .collect()
        })
    }
}

fn json_body(value: Value) -> Zeroizing<Vec<u8>> {
    let mut value = value;
    let bytes = Zeroizing::new(serde_json::to_vec(&value).unwrap_or_default());
    if let Value::Object(map) = &mut value {
        for v in map.values_mut() {
            if let Value::String(s) = v {
                s.zeroize();
            }
        }
    }
    bytes
}

fn parse_auth(answer: &[u8], what: &str) -> Result<AuthBlock, ProviderError> {
    let parsed: AuthAnswer = serde_json::from_slice(answer)
        .map_err(|e| ProviderError::Auth(format!("{what}: unexpected answer: {e}")))?;
    let Some(auth) = parsed.auth else {
        let why = parsed
            .data
            .and_then(|d| d.error)
            .unwrap_or_else(|| "answer has no auth block".into());
        return Err(ProviderError::Auth(format!("{what}: {why}")));
    };
    if auth.client_token.as_deref().is_none_or(str::is_empty) {
        return Err(ProviderError::Auth(format!(
            "{what}: answer has no client token"
        )));
    }
    Ok(auth)
}

/// The secret's key/value map as JSON bytes.
fn secret_data(
    answer: &[u8],
    version: VaultKvVersion,
    key: &str,
) -> Result<SecretValue, ProviderError> {
    let mut parsed: Value = serde_json::from_slice(answer).map_err(|e| {
        ProviderError::Backend(format!(
            "{key}: unexpected answer from Vault (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let data = match version {
        VaultKvVersion::V1 => parsed.get("data"),
        VaultKvVersion::V2 => parsed.get("data").and_then(|d| d.get("data")),
    };
    let result = match data {
        Some(data @ Value::Object(_)) => Ok(SecretValue::new(
            serde_json::to_vec(data).unwrap_or_default(),
        )),
        // KV v2 answers `data: null` for a deleted latest version.
        _ => Err(ProviderError::NotFound {
            key: key.to_string(),
        }),
    };
    scrub(&mut parsed);
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

fn status_error(status: StatusCode, body: &[u8], what: &str) -> ProviderError {
    #[derive(Deserialize, Default)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
        #[serde(default)]
        error: Option<String>,
    }
    let parsed: Errors = serde_json::from_slice(body).unwrap_or_default();
    let mut messages = parsed.errors;
    messages.extend(parsed.error);
    let detail = if messages.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        format!("HTTP {}: {}", status.as_u16(), messages.join("; "))
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
    fn data_is_read_from_v1_and_v2_answers() {
        let v1 = br#"{"data":{"user":"app"},"lease_duration":3600}"#;
        let value = secret_data(v1, VaultKvVersion::V1, "k").expect("v1");
        assert_eq!(value.expose(), br#"{"user":"app"}"#);
        let v2 = br#"{"data":{"data":{"user":"app"},"metadata":{"version":3}}}"#;
        let value = secret_data(v2, VaultKvVersion::V2, "k").expect("v2");
        assert_eq!(value.expose(), br#"{"user":"app"}"#);
        let deleted = br#"{"data":{"data":null,"metadata":{"version":3,"deletion_time":"x"}}}"#;
        assert!(matches!(
            secret_data(deleted, VaultKvVersion::V2, "k"),
            Err(ProviderError::NotFound { .. })
        ));
    }

    #[test]
    fn errors_carry_vault_messages_and_map_statuses() {
        let error = status_error(
            StatusCode::FORBIDDEN,
            br#"{"errors":["permission denied"]}"#,
            "app/db",
        );
        assert!(matches!(&error, ProviderError::Denied { .. }));
        assert!(error.to_string().contains("permission denied"), "{error}");
        let error = status_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            br#"{"error":"sealed"}"#,
            "x",
        );
        assert!(error.is_transient() && error.to_string().contains("sealed"));
    }

    #[test]
    fn sessions_are_due_at_two_thirds_of_the_ttl() {
        let start = Instant::now();
        let session = Session {
            token: Some(Arc::new(SecretString::from("t"))),
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
