//! `moto_server` (AWS emulator) for the AWS Secrets Manager tests, and a
//! counting proxy in front of it.
//!
//! [`Moto::start`] runs `moto_server -H 127.0.0.1 -p PORT` on a free port, waits
//! until it answers (bounded), and kills it by pid when dropped.
//! Put a [`super::counting_proxy::CountingProxy`] in front to count requests.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;

use super::controller::free_port;
use super::tools::tool;

/// Region every test store uses.
pub const REGION: &str = "us-east-1";
/// Dummy credentials moto accepts.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// A running moto_server.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = free_port();
        let child = Command::new(tool("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = http
                .get(format!("{}/moto-api/", moto.endpoint))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {} within 30s",
                moto.endpoint
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// A Secrets Manager client for seeding and rotating values.
    pub async fn client(&self) -> Client {
        client_for(&self.endpoint).await
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Secrets Manager client with the dummy credentials, against `endpoint`.
pub async fn client_for(endpoint: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .credentials_provider(aws_credential_types::Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "test",
        ))
        .endpoint_url(endpoint)
        .load()
        .await;
    Client::new(&config)
}

/// Creates a string secret, optionally tagged.
pub async fn create(client: &Client, name: &str, value: &str, tags: &[(&str, &str)]) {
    let tags: Vec<Tag> = tags
        .iter()
        .map(|(k, v)| Tag::builder().key(*k).value(*v).build())
        .collect();
    client
        .create_secret()
        .name(name)
        .secret_string(value)
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create secret {name}: {e:?}"));
}

/// Creates a binary secret.
pub async fn create_binary(client: &Client, name: &str, value: &[u8]) {
    client
        .create_secret()
        .name(name)
        .secret_binary(aws_sdk_secretsmanager::primitives::Blob::new(value))
        .send()
        .await
        .unwrap_or_else(|e| panic!("create secret {name}: {e:?}"));
}

/// Puts a new current version.
pub async fn put(client: &Client, name: &str, value: &str) {
    client
        .put_secret_value()
        .secret_id(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("put secret {name}: {e:?}"));
}
