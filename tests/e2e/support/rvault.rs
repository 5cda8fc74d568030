//! RustyVault (`rvault server`), a Vault-compatible server: KV version 1 at
//! `secret/`, token auth, and approle / userpass once enabled.
//!
//! [`RustyVault::start`] writes an HCL config into a temporary directory, runs
//! the server on a free 127.0.0.1 port, initialises it with one key share,
//! unseals it, and kills it by pid when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::controller::free_port;
use super::tools::tool;

/// A running, unsealed RustyVault.
pub struct RustyVault {
    child: Child,
    _dir: tempfile::TempDir,
    pub address: String,
    pub root_token: String,
    http: reqwest::Client,
}

impl RustyVault {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let config = dir.path().join("config.hcl");
        std::fs::write(
            &config,
            format!(
                "storage \"file\" {{\n  path = \"{data}\"\n}}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  tls_disable = true\n}}\n\
                 api_addr = \"http://127.0.0.1:{port}\"\n\
                 log_level = \"warn\"\n\
                 pid_file = \"{pid}\"\n",
                data = dir.path().join("data").display(),
                pid = dir.path().join("rvault.pid").display(),
            ),
        )
        .expect("write config");
        let child = Command::new(tool("rvault"))
            .arg("server")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rvault starts");
        let mut vault = Self {
            child,
            _dir: dir,
            address: format!("http://127.0.0.1:{port}"),
            root_token: String::new(),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let init = loop {
            let answer = vault
                .http
                .put(format!("{}/v1/sys/init", vault.address))
                .json(&json!({"secret_shares": 1, "secret_threshold": 1}))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if let Ok(answer) = answer
                && answer.status().is_success()
            {
                break answer.json::<Value>().await.expect("init answer");
            }
            assert!(
                Instant::now() < deadline,
                "rvault did not answer on {} within 30s",
                vault.address
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let key = init["keys"][0].as_str().expect("unseal key").to_string();
        vault.root_token = init["root_token"].as_str().expect("root token").to_string();
        let unseal: Value = vault
            .http
            .put(format!("{}/v1/sys/unseal", vault.address))
            .json(&json!({ "key": key }))
            .send()
            .await
            .expect("unseal")
            .json()
            .await
            .expect("unseal answer");
        assert_eq!(unseal["sealed"], json!(false), "unsealed: {unseal}");
        vault
    }

    /// A request as root; panics on a non-2xx answer. Returns the JSON (or Null).
    pub async fn root(&self, method: &str, path: &str, body: Value) -> Value {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.address))
            .header("X-Vault-Token", &self.root_token);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = answer.status();
        let text = answer.text().await.unwrap_or_default();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Writes a KV v1 secret at `secret/{path}`.
    pub async fn put(&self, path: &str, data: Value) {
        self.root("PUT", &format!("secret/{path}"), data).await;
    }

    /// A token with a TTL, as root would hand out.
    pub async fn create_token(&self, ttl: &str) -> String {
        let answer = self
            .root(
                "POST",
                "auth/token/create",
                json!({ "ttl": ttl, "policies": ["reader"] }),
            )
            .await;
        answer["auth"]["client_token"]
            .as_str()
            .expect("client token")
            .to_string()
    }

    /// Enables approle and makes role `name` issuing tokens of `ttl`; returns (role_id, secret_id).
    pub async fn approle(&self, name: &str, ttl: &str) -> (String, String) {
        self.approle_at("approle", name, ttl).await
    }

    /// [`Self::approle`] with the method mounted at `auth/{mount}`.
    pub async fn approle_at(&self, mount: &str, name: &str, ttl: &str) -> (String, String) {
        self.root(
            "POST",
            &format!("sys/auth/{mount}"),
            json!({"type": "approle"}),
        )
        .await;
        self.root(
            "POST",
            &format!("auth/{mount}/role/{name}"),
            json!({"token_ttl": ttl, "token_max_ttl": "1h", "secret_id_ttl": "0"}),
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

    /// Enables userpass and adds a user whose tokens live `ttl`.
    pub async fn userpass(&self, user: &str, password: &str, ttl: &str) {
        self.root("POST", "sys/auth/userpass", json!({"type": "userpass"}))
            .await;
        self.root(
            "POST",
            &format!("auth/userpass/users/{user}"),
            json!({"password": password, "token_ttl": ttl}),
        )
        .await;
    }
}

impl Drop for RustyVault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
