//! **A test double**, not Vault: a small HTTP server implementing the parts of
//! HashiCorp Vault's documented HTTP API that sigil's Vault provider uses with
//! KV version 2, because RustyVault (the real Vault-compatible server the other
//! tests use) has no KV v2 engine.
//!
//! Implemented from Vault's API documentation:
//! * KV v2 (`/v1/{mount}/data/{path}` read with `?version=`, write, soft
//!   delete; `/v1/{mount}/metadata/{path}` read, `LIST`, custom metadata write),
//! * token auth (`auth/token/lookup-self`, `auth/token/renew-self` honouring
//!   the max TTL), AppRole login (`auth/approle/login`), userpass login
//!   (`auth/userpass/login/{user}`),
//! * errors as `{"errors": [...]}` with 403 for a missing, unknown or expired
//!   token and 404 for missing secrets.
//!
//! Tokens expire for real (TTL and max TTL), so tests can count logins and
//! renewals over time ([`VaultKv2::logins`], [`VaultKv2::renewals`]).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::response::{IntoResponse, Response};
use http::{Method, StatusCode};
use serde_json::{Value, json};

/// How the double hands out tokens.
#[derive(Clone, Debug)]
pub struct Kv2Config {
    pub mount: String,
    pub token_ttl: Duration,
    pub token_max_ttl: Duration,
    pub renewable: bool,
    pub role_id: String,
    pub secret_id: String,
    pub users: BTreeMap<String, String>,
    /// Accepted for every request and never expires.
    pub root_token: String,
}

impl Default for Kv2Config {
    fn default() -> Self {
        Self {
            mount: "secret".into(),
            token_ttl: Duration::from_secs(3600),
            token_max_ttl: Duration::from_secs(3600 * 24),
            renewable: true,
            role_id: "role-id".into(),
            secret_id: "secret-id".into(),
            users: BTreeMap::from([("alice".to_string(), "alice-password".to_string())]),
            root_token: "root".into(),
        }
    }
}

struct Version {
    data: Option<Value>,
    created: String,
}

#[derive(Default)]
struct Entry {
    versions: Vec<Version>,
    custom_metadata: BTreeMap<String, String>,
}

struct Token {
    issued: Instant,
    expires: Instant,
    renewable: bool,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<String, Entry>,
    tokens: BTreeMap<String, Token>,
    next_token: u64,
    logins: u64,
    renewals: u64,
    reads: u64,
}

/// A running KV v2 test double.
pub struct VaultKv2 {
    pub address: String,
    pub config: Kv2Config,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl VaultKv2 {
    pub async fn start(config: Kv2Config) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind KV v2 double");
        let address = format!("http://{}", listener.local_addr().expect("address"));
        let handler_state = state.clone();
        let handler_config = config.clone();
        let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
            let state = handler_state.clone();
            let config = handler_config.clone();
            async move { handle(&state, &config, request).await }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            address,
            config,
            state,
            task,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("double state")
    }

    /// Writes a new version of `path`; returns its version number.
    pub fn put(&self, path: &str, data: Value) -> usize {
        let mut state = self.state();
        let entry = state.entries.entry(path.to_string()).or_default();
        entry.versions.push(Version {
            data: Some(data),
            created: jiff::Timestamp::now().to_string(),
        });
        entry.versions.len()
    }

    /// Sets the custom metadata (tags) of `path`.
    pub fn set_custom_metadata(&self, path: &str, metadata: &[(&str, &str)]) {
        let mut state = self.state();
        let entry = state.entries.entry(path.to_string()).or_default();
        entry.custom_metadata = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
    }

    /// Logins so far (AppRole and userpass).
    pub fn logins(&self) -> u64 {
        self.state().logins
    }

    /// Successful `renew-self` calls so far.
    pub fn renewals(&self) -> u64 {
        self.state().renewals
    }

    /// KV reads so far.
    pub fn reads(&self) -> u64 {
        self.state().reads
    }

    /// Revokes every issued token (as `vault token revoke` would).
    pub fn revoke_all(&self) {
        self.state().tokens.clear();
    }
}

impl Drop for VaultKv2 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn errors(status: StatusCode, messages: &[&str]) -> Response {
    (status, axum::Json(json!({ "errors": messages }))).into_response()
}

fn ok(body: Value) -> Response {
    (StatusCode::OK, axum::Json(body)).into_response()
}

fn envelope(data: Value) -> Value {
    json!({
        "request_id": "00000000-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": data,
        "wrap_info": null,
        "warnings": null,
        "auth": null,
    })
}

fn issue(state: &mut State, config: &Kv2Config) -> Value {
    state.next_token += 1;
    state.logins += 1;
    let token = format!("hvs.double-{}", state.next_token);
    let now = Instant::now();
    state.tokens.insert(
        token.clone(),
        Token {
            issued: now,
            expires: now + config.token_ttl,
            renewable: config.renewable,
        },
    );
    json!({
        "request_id": "00000000-0000-0000-0000-000000000000",
        "lease_id": "",
        "renewable": false,
        "lease_duration": 0,
        "data": null,
        "wrap_info": null,
        "warnings": null,
        "auth": {
            "client_token": token,
            "accessor": format!("accessor-{}", state.next_token),
            "policies": ["default", "reader"],
            "token_policies": ["default", "reader"],
            "metadata": {},
            "lease_duration": config.token_ttl.as_secs(),
            "renewable": config.renewable,
            "entity_id": "",
            "token_type": "service",
            "orphan": true,
        },
    })
}

/// Whether the request's token is valid now; the token's name if so.
fn authorized(state: &State, config: &Kv2Config, headers: &http::HeaderMap) -> Option<String> {
    let token = headers.get("x-vault-token")?.to_str().ok()?;
    if token == config.root_token {
        return Some(token.to_string());
    }
    let known = state.tokens.get(token)?;
    (Instant::now() < known.expires).then(|| token.to_string())
}

fn version_metadata(version: usize, v: &Version, custom: &BTreeMap<String, String>) -> Value {
    json!({
        "created_time": v.created,
        "custom_metadata": if custom.is_empty() { Value::Null } else { json!(custom) },
        "deletion_time": if v.data.is_some() { "" } else { "2000-01-01T00:00:00Z" },
        "destroyed": false,
        "version": version,
    })
}

async fn handle(
    state: &Mutex<State>,
    config: &Kv2Config,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => return errors(StatusCode::BAD_REQUEST, &["invalid JSON body"]),
        }
    };
    let path = parts.uri.path().trim_start_matches("/v1/").to_string();
    let query = parts.uri.query().unwrap_or_default().to_string();
    let list = parts.method.as_str() == "LIST" || query.split('&').any(|q| q == "list=true");
    let mut state = state.lock().expect("double state");

    // Logins need no token.
    if parts.method == Method::POST && path == "auth/approle/login" {
        let matches = body["role_id"] == json!(config.role_id)
            && body["secret_id"] == json!(config.secret_id);
        return if matches {
            ok(issue(&mut state, config))
        } else {
            errors(StatusCode::BAD_REQUEST, &["invalid role or secret ID"])
        };
    }
    if parts.method == Method::POST
        && let Some(user) = path.strip_prefix("auth/userpass/login/")
    {
        let matches = config
            .users
            .get(user)
            .is_some_and(|p| body["password"] == json!(p));
        return if matches {
            ok(issue(&mut state, config))
        } else {
            errors(StatusCode::BAD_REQUEST, &["invalid username or password"])
        };
    }

    let Some(token) = authorized(&state, config, &parts.headers) else {
        return errors(StatusCode::FORBIDDEN, &["permission denied"]);
    };

    match (parts.method.as_str(), path.as_str()) {
        ("GET", "auth/token/lookup-self") => {
            let (ttl, renewable) = match state.tokens.get(&token) {
                Some(t) => (
                    t.expires
                        .saturating_duration_since(Instant::now())
                        .as_secs(),
                    t.renewable,
                ),
                None => (0, false),
            };
            return ok(envelope(
                json!({"id": token, "ttl": ttl, "renewable": renewable, "policies": ["default"]}),
            ));
        }
        ("POST" | "PUT", "auth/token/renew-self") => {
            let Some(known) = state.tokens.get_mut(&token) else {
                return errors(
                    StatusCode::BAD_REQUEST,
                    &["root tokens are not renewable here"],
                );
            };
            if !known.renewable {
                return errors(StatusCode::BAD_REQUEST, &["lease is not renewable"]);
            }
            let now = Instant::now();
            let cap = known.issued + config.token_max_ttl;
            known.expires = (now + config.token_ttl).min(cap);
            let ttl = known.expires.saturating_duration_since(now).as_secs();
            let renewable = known.renewable;
            state.renewals += 1;
            return ok(json!({
                "auth": {
                    "client_token": token, "accessor": "", "policies": ["default"],
                    "token_policies": ["default"], "metadata": {}, "lease_duration": ttl,
                    "renewable": renewable, "entity_id": "", "token_type": "service", "orphan": true
                }
            }));
        }
        _ => {}
    }

    let mount = format!("{}/", config.mount);
    let Some(rest) = path.strip_prefix(&mount) else {
        return errors(StatusCode::NOT_FOUND, &["no handler for route"]);
    };
    if let Some(secret) = rest.strip_prefix("data/") {
        let secret = secret.to_string();
        return match parts.method.as_str() {
            "GET" => {
                state.reads += 1;
                let wanted: Option<usize> = query
                    .split('&')
                    .find_map(|q| q.strip_prefix("version="))
                    .and_then(|v| v.parse().ok())
                    .filter(|v| *v > 0);
                let Some(entry) = state.entries.get(&secret) else {
                    return errors(StatusCode::NOT_FOUND, &[]);
                };
                let number = wanted.unwrap_or(entry.versions.len());
                match entry.versions.get(number.wrapping_sub(1)) {
                    Some(v) if v.data.is_some() => ok(envelope(json!({
                        "data": v.data,
                        "metadata": version_metadata(number, v, &entry.custom_metadata),
                    }))),
                    _ => errors(StatusCode::NOT_FOUND, &[]),
                }
            }
            "POST" | "PUT" => {
                let entry = state.entries.entry(secret).or_default();
                entry.versions.push(Version {
                    data: Some(body["data"].clone()),
                    created: jiff::Timestamp::now().to_string(),
                });
                let number = entry.versions.len();
                let v = &entry.versions[number - 1];
                ok(envelope(version_metadata(
                    number,
                    v,
                    &entry.custom_metadata,
                )))
            }
            "DELETE" => {
                if let Some(last) = state
                    .entries
                    .get_mut(&secret)
                    .and_then(|e| e.versions.last_mut())
                {
                    last.data = None;
                }
                StatusCode::NO_CONTENT.into_response()
            }
            _ => errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]),
        };
    }
    if let Some(secret) = rest.strip_prefix("metadata") {
        let secret = secret.trim_start_matches('/').to_string();
        if list {
            let prefix = if secret.is_empty() || secret.ends_with('/') {
                secret.clone()
            } else {
                format!("{secret}/")
            };
            let mut keys: Vec<String> = state
                .entries
                .keys()
                .filter_map(|k| k.strip_prefix(&prefix))
                .map(|k| match k.split_once('/') {
                    Some((folder, _)) => format!("{folder}/"),
                    None => k.to_string(),
                })
                .collect();
            keys.dedup();
            return if keys.is_empty() {
                errors(StatusCode::NOT_FOUND, &[])
            } else {
                ok(envelope(json!({ "keys": keys })))
            };
        }
        return match parts.method.as_str() {
            "GET" => match state.entries.get(&secret) {
                Some(entry) => {
                    let versions: serde_json::Map<String, Value> = entry
                        .versions
                        .iter()
                        .enumerate()
                        .map(|(i, v)| {
                            (
                                (i + 1).to_string(),
                                version_metadata(i + 1, v, &BTreeMap::new()),
                            )
                        })
                        .collect();
                    ok(envelope(json!({
                        "current_version": entry.versions.len(),
                        "custom_metadata": entry.custom_metadata,
                        "versions": versions,
                        "max_versions": 0,
                        "oldest_version": 0,
                    })))
                }
                None => errors(StatusCode::NOT_FOUND, &[]),
            },
            "POST" | "PUT" => {
                let entry = state.entries.entry(secret).or_default();
                if let Some(custom) = body["custom_metadata"].as_object() {
                    entry.custom_metadata = custom
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect();
                }
                StatusCode::NO_CONTENT.into_response()
            }
            _ => errors(StatusCode::METHOD_NOT_ALLOWED, &["unsupported operation"]),
        };
    }
    errors(StatusCode::NOT_FOUND, &["no handler for route"])
}
