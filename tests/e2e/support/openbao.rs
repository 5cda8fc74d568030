//! OpenBao (`bao server -dev`), the open-source Vault: the real Vault HTTP API.
//!
//! [`OpenBao::start`] runs a dev server (in-memory, unsealed, a known root
//! token) on a free 127.0.0.1 port, waits (bounded) until `sys/health`
//! answers, and kills it by pid when dropped, also when the test fails.
//! Dev mode mounts KV version 2 at `secret/`; the support adds KV version 1 at
//! `kv1/` and a `reader` policy that every token and role below gets.
//! [`OpenBao::start_tls`] serves HTTPS with a CA of its own (`-dev-tls`).
//! [`OpenBao::start_persistent`] runs a real (non-dev) server whose state survives
//! [`OpenBao::kill`] and [`OpenBao::restart`]: integrated (raft) storage in its temp folder and a
//! static seal key, so a restarted server unseals itself, with the same data and tokens.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::controller::free_port;
use super::tools::tool;

/// What tokens issued for tests may do: read KV, read dynamic credentials and manage their leases.
const READER_POLICY: &str = r#"
path "kv1/*" { capabilities = ["read", "list"] }
path "secret/*" { capabilities = ["read", "list"] }
path "database/creds/*" { capabilities = ["read"] }
path "sys/leases/renew" { capabilities = ["update"] }
path "sys/leases/revoke" { capabilities = ["update"] }
"#;

pub const ROOT_TOKEN: &str = "sigil-test-root";

/// A running OpenBao dev server.
pub struct OpenBao {
    child: Child,
    dir: tempfile::TempDir,
    pub address: String,
    pub root_token: String,
    /// The CA that signed the server's certificate (TLS servers only), PEM.
    pub ca_pem: Option<String>,
    http: reqwest::Client,
    /// The configuration file of a persistent server.
    config: Option<std::path::PathBuf>,
}

impl OpenBao {
    pub async fn start() -> Self {
        Self::launch(false).await
    }

    pub async fn start_tls() -> Self {
        Self::launch(true).await
    }

    async fn launch(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("bao.log")).expect("bao log");
        let mut command = Command::new(tool("bao"));
        command
            .arg("server")
            .arg("-dev")
            .arg(format!("-dev-root-token-id={ROOT_TOKEN}"))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg("-dev-no-store-token")
            // The dev server would otherwise write ~/.vault-token, shared by every test.
            .env("HOME", dir.path())
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log);
        if tls {
            command
                .arg("-dev-tls")
                .arg(format!("-dev-tls-cert-dir={}", dir.path().display()));
        }
        let child = command.spawn().expect("bao starts");
        let scheme = if tls { "https" } else { "http" };
        let mut vault = Self {
            child,
            dir,
            address: format!("{scheme}://127.0.0.1:{port}"),
            root_token: ROOT_TOKEN.into(),
            ca_pem: None,
            http: crate::support::http::client(),
            config: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if tls && vault.ca_pem.is_none() {
                // The file may be seen half-written: only a whole certificate counts.
                vault.ca_pem = std::fs::read_to_string(vault.dir.path().join("vault-ca.pem"))
                    .ok()
                    .filter(|pem| pem.contains("-----END CERTIFICATE-----"));
                if let Some(pem) = &vault.ca_pem {
                    let ca = reqwest::Certificate::from_pem(pem.as_bytes()).expect("bao CA");
                    vault.http = crate::support::http::builder()
                        .tls_certs_only([ca])
                        .build()
                        .expect("https client");
                }
            }
            if (!tls || vault.ca_pem.is_some()) && vault.healthy().await {
                break;
            }
            if let Ok(Some(status)) = vault.child.try_wait() {
                panic!("bao exited with {status}: {}", vault.log());
            }
            assert!(
                Instant::now() < deadline,
                "bao did not answer on {} within 30s: {}",
                vault.address,
                vault.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        vault.configure().await;
        vault
    }

    /// Mounts KV version 1 at `kv1/` and adds the `reader` policy.
    async fn configure(&self) {
        self.root(
            "POST",
            "sys/mounts/kv1",
            json!({"type": "kv", "options": {"version": "1"}}),
        )
        .await;
        self.root(
            "PUT",
            "sys/policies/acl/reader",
            json!({ "policy": READER_POLICY }),
        )
        .await;
    }

    /// A real server keeping its state (raft storage, static seal) across [`Self::restart`]:
    /// initialized once, `root_token` is the token init returned; KV v1 at `kv1/` as for dev
    /// servers (no KV v2 at `secret/`).
    pub async fn start_persistent() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, cluster_port) = (free_port(), free_port());
        let path = dir.path();
        std::fs::create_dir(path.join("raft")).expect("raft folder");
        // A test key: the data it protects lives and dies with the temp folder.
        std::fs::write(path.join("unseal.key"), [7u8; 32]).expect("seal key");
        let config = path.join("bao.hcl");
        std::fs::write(
            &config,
            format!(
                "storage \"raft\" {{\n  path = \"{raft}\"\n  node_id = \"sigil-test\"\n}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  cluster_address = \"127.0.0.1:{cluster_port}\"\n  tls_disable = true\n}}\n\
                 seal \"static\" {{\n  current_key_id = \"sigil-test-1\"\n  current_key = \"file://{key}\"\n}}\n\
                 api_addr = \"http://127.0.0.1:{port}\"\ncluster_addr = \"http://127.0.0.1:{cluster_port}\"\n",
                raft = path.join("raft").display(),
                key = path.join("unseal.key").display(),
            ),
        )
        .expect("bao config");
        let mut vault = Self {
            child: spawn_server(path, &config),
            dir,
            address: format!("http://127.0.0.1:{port}"),
            root_token: String::new(),
            ca_pem: None,
            http: crate::support::http::client(),
            config: Some(config),
        };
        vault.wait("answering", |answer| answer.is_some()).await;
        let init = vault
            .http
            .put(format!("{}/v1/sys/init", vault.address))
            .json(&json!({"recovery_shares": 1, "recovery_threshold": 1}))
            .send()
            .await
            .expect("sys/init");
        assert!(init.status().is_success(), "sys/init: {}", init.status());
        let init: Value = init.json().await.expect("sys/init answer");
        vault.root_token = init["root_token"].as_str().expect("root token").to_string();
        vault.wait_unsealed().await;
        vault.configure().await;
        vault
    }

    /// SIGKILLs the server, as a crash: its address refuses connections until [`Self::restart`].
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the persistent server again on its address and storage; returns once it unsealed
    /// itself and serves (its data and tokens are those it had).
    pub async fn restart(&mut self) {
        self.kill();
        let config = self
            .config
            .clone()
            .expect("only a persistent server restarts");
        self.child = spawn_server(self.dir.path(), &config);
        self.wait_unsealed().await;
    }

    async fn wait_unsealed(&mut self) {
        self.wait("unsealed and active", |answer| {
            answer.is_some_and(|status| status.is_success())
        })
        .await;
    }

    /// Waits (bounded) until `sys/health`'s answer (None: no connection) passes `check`.
    async fn wait(&mut self, what: &str, check: impl Fn(Option<http::StatusCode>) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .http
                .get(format!("{}/v1/sys/health", self.address))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .ok()
                .map(|a| a.status());
            if check(answer) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("bao exited with {status}: {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "bao on {} not {what} within 30s (last answer {answer:?}): {}",
                self.address,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn healthy(&self) -> bool {
        self.http
            .get(format!("{}/v1/sys/health", self.address))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|answer| answer.status().is_success())
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
    }

    /// A request as root; panics on a non-2xx answer. Returns the JSON (or Null).
    pub async fn root(&self, method: &str, path: &str, body: Value) -> Value {
        self.request(None, method, path, body).await
    }

    /// [`Self::root`] inside a Vault namespace.
    pub async fn root_in(&self, namespace: &str, method: &str, path: &str, body: Value) -> Value {
        self.request(Some(namespace), method, path, body).await
    }

    async fn request(
        &self,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Value,
    ) -> Value {
        let (status, text) = self.try_request(namespace, method, path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// A request as root whose answer the caller judges: (status, body).
    pub async fn try_request(
        &self,
        namespace: Option<&str>,
        method: &str,
        path: &str,
        body: Value,
    ) -> (http::StatusCode, String) {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", &self.root_token);
        if let Some(namespace) = namespace {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.status();
        (status, answer.text().await.unwrap_or_default())
    }

    /// Writes a KV v1 secret at `kv1/{path}`.
    pub async fn put_v1(&self, path: &str, data: Value) {
        self.root("PUT", &format!("kv1/{path}"), data).await;
    }

    /// Writes a new version of the KV v2 secret at `secret/{path}`.
    pub async fn put_v2(&self, path: &str, data: Value) {
        self.root(
            "POST",
            &format!("secret/data/{path}"),
            json!({ "data": data }),
        )
        .await;
    }

    /// Sets the custom metadata of the KV v2 secret at `secret/{path}`.
    pub async fn set_custom_metadata(&self, path: &str, metadata: Value) {
        self.root(
            "POST",
            &format!("secret/metadata/{path}"),
            json!({ "custom_metadata": metadata }),
        )
        .await;
    }

    /// A `reader` token with a TTL, as root would hand out.
    pub async fn create_token(&self, ttl: &str) -> String {
        let answer = self
            .root(
                "POST",
                "auth/token/create",
                json!({ "ttl": ttl, "policies": ["reader"] }),
            )
            .await;
        client_token(&answer)
    }

    /// Enables an auth method of `kind` at `auth/{mount}`.
    pub async fn enable_auth(&self, mount: &str, kind: &str) {
        self.root(
            "POST",
            &format!("sys/auth/{mount}"),
            json!({ "type": kind }),
        )
        .await;
    }

    /// Enables approle at `auth/{mount}` with role `name` issuing `reader` tokens of `ttl`
    /// (renewable up to `max_ttl`); returns (role_id, secret_id).
    pub async fn approle_at(
        &self,
        mount: &str,
        name: &str,
        ttl: &str,
        max_ttl: &str,
    ) -> (String, String) {
        self.enable_auth(mount, "approle").await;
        self.root(
            "POST",
            &format!("auth/{mount}/role/{name}"),
            json!({"token_ttl": ttl, "token_max_ttl": max_ttl, "token_policies": ["reader"]}),
        )
        .await;
        let role = self
            .root(
                "GET",
                &format!("auth/{mount}/role/{name}/role-id"),
                Value::Null,
            )
            .await;
        let secret = self
            .root(
                "POST",
                &format!("auth/{mount}/role/{name}/secret-id"),
                json!({}),
            )
            .await;
        (
            role["data"]["role_id"]
                .as_str()
                .expect("role id")
                .to_string(),
            secret["data"]["secret_id"]
                .as_str()
                .expect("secret id")
                .to_string(),
        )
    }

    /// Enables userpass and adds a `reader` user whose tokens live `ttl` (renewable up to `max_ttl`).
    pub async fn userpass(&self, user: &str, password: &str, ttl: &str, max_ttl: &str) {
        self.enable_auth("userpass", "userpass").await;
        self.root(
            "POST",
            &format!("auth/userpass/users/{user}"),
            json!({"password": password, "token_ttl": ttl, "token_max_ttl": max_ttl, "token_policies": ["reader"]}),
        )
        .await;
    }
}

/// `bao server -config=CONFIG` in `dir`, appending to `dir/bao.log`.
fn spawn_server(dir: &std::path::Path, config: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("bao.log"))
        .expect("bao log");
    Command::new(tool("bao"))
        .arg("server")
        .arg(format!("-config={}", config.display()))
        .env("HOME", dir)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("bao starts")
}

pub fn client_token(answer: &Value) -> String {
    answer["auth"]["client_token"]
        .as_str()
        .expect("client token")
        .to_string()
}

impl Drop for OpenBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
