//! `moto_server` (AWS emulator) for the AWS Secrets Manager and Parameter
//! Store tests, and a counting proxy in front of it.
//!
//! [`Moto::start`] runs `moto_server -H 127.0.0.1 -p PORT` on a free port, waits
//! until it answers (bounded), and kills it by pid when dropped.
//! Put a [`super::counting_proxy::CountingProxy`] in front to count requests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::types::Tag;

use super::controller::free_port;
use super::tools::tool;

/// Region every test store uses.
pub const REGION: &str = "us-east-1";
/// Dummy credentials moto accepts.
pub const ACCESS_KEY_ID: &str = "testing";
pub const SECRET_ACCESS_KEY: &str = "testing";

/// A store's `provider.aws` for moto at `endpoint` (Secrets Manager unless `service` is changed).
pub fn store_spec(endpoint: &str) -> sigil::api::secret_store::AwsProvider {
    sigil::api::secret_store::AwsProvider {
        region: REGION.into(),
        endpoint: Some(endpoint.into()),
        ..Default::default()
    }
}

/// The dummy credentials, as a store's credential Secrets would give them.
pub fn static_credentials() -> Option<sigil::providers::aws::StaticCredentials> {
    Some(sigil::providers::aws::StaticCredentials {
        access_key_id: secrecy::SecretString::from(ACCESS_KEY_ID),
        secret_access_key: secrecy::SecretString::from(SECRET_ACCESS_KEY),
        session_token: None,
    })
}

/// A running moto_server.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub async fn start() -> Self {
        let port = free_port();
        let mut moto = Self {
            child: spawn(port),
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        moto.wait_up().await;
        moto
    }

    /// Kills the server (by pid): the endpoint refuses connections until [`Moto::restart`].
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a new server on the same port (an empty one: moto keeps its secrets in memory).
    pub async fn restart(&mut self) {
        self.stop();
        let port = self
            .endpoint
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("moto endpoint port");
        self.child = spawn(port);
        self.wait_up().await;
    }

    async fn wait_up(&mut self) {
        let http = crate::support::http::client();
        let url = format!("{}/moto-api/", self.endpoint);
        let up = kube_devserver::testing::poll(
            Duration::from_secs(30),
            Duration::from_millis(100),
            || async {
                let answer = http
                    .get(&url)
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .ok()?;
                answer.status().is_success().then_some(())
            },
        )
        .await;
        if up.is_none() {
            let exited = self.child.try_wait().ok().flatten();
            panic!(
                "moto_server did not answer on {} within 30s (exited: {exited:?})",
                self.endpoint
            );
        }
    }

    /// A Secrets Manager client for seeding and rotating values.
    pub async fn client(&self) -> Client {
        client_for(&self.endpoint).await
    }

    /// An SSM client for seeding and rotating parameters.
    pub async fn ssm(&self) -> aws_sdk_ssm::Client {
        ssm_for(&self.endpoint).await
    }
}

fn spawn(port: u16) -> Child {
    Command::new(tool("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server starts")
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The SDK configuration with the dummy credentials, against `endpoint`.
async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(sigil::providers::aws::https_client())
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
        .await
}

/// A Secrets Manager client with the dummy credentials, against `endpoint`.
pub async fn client_for(endpoint: &str) -> Client {
    Client::new(&sdk_config(endpoint).await)
}

/// An SSM (Parameter Store) client with the dummy credentials, against `endpoint`.
pub async fn ssm_for(endpoint: &str) -> aws_sdk_ssm::Client {
    aws_sdk_ssm::Client::new(&sdk_config(endpoint).await)
}

/// Writes a parameter (`String`, `StringList` or `SecureString`), overwriting
/// (a new version) when it exists, optionally tagged (only on creation: AWS refuses both).
pub async fn put_parameter(
    client: &aws_sdk_ssm::Client,
    name: &str,
    value: &str,
    kind: aws_sdk_ssm::types::ParameterType,
    tags: &[(&str, &str)],
) {
    let tags: Vec<aws_sdk_ssm::types::Tag> = tags
        .iter()
        .map(|(k, v)| {
            aws_sdk_ssm::types::Tag::builder()
                .key(*k)
                .value(*v)
                .build()
                .expect("tag")
        })
        .collect();
    client
        .put_parameter()
        .name(name)
        .value(value)
        .r#type(kind)
        .set_overwrite(tags.is_empty().then_some(true))
        .set_tags((!tags.is_empty()).then_some(tags))
        .send()
        .await
        .unwrap_or_else(|e| panic!("put parameter {name}: {e:?}"));
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

/// Puts a new current version, creating the secret when it does not exist (a restarted moto).
pub async fn upsert(client: &Client, name: &str, value: &str) {
    let exists = client
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .is_ok();
    if exists {
        put(client, name, value).await;
    } else {
        create(client, name, value, &[]).await;
    }
}

/// Creates, in `namespace`, the Secret `aws-credentials` with the dummy credentials and the
/// SecretStore `aws` for the Secrets Manager at `endpoint` that signs with them.
pub async fn create_store(client: &kube::Client, namespace: &str, endpoint: &str) {
    use kube::api::{Api, PostParams};
    let credentials: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "aws-credentials", "namespace": namespace},
            "stringData": {"access-key": ACCESS_KEY_ID, "secret-key": SECRET_ACCESS_KEY}
        }))
        .expect("a Secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &credentials)
        .await
        .expect("create the credentials");
    let store: sigil::api::SecretStore = sigil::yaml::from_str(&format!(
        "apiVersion: sigil.dev/v1alpha1\nkind: SecretStore\nmetadata:\n  name: aws\n  namespace: {namespace}\nspec:\n  provider:\n    aws:\n      service: SecretsManager\n      region: {REGION}\n      endpoint: {endpoint}\n      auth:\n        secretRef:\n          accessKeyIDSecretRef: {{name: aws-credentials, key: access-key}}\n          secretAccessKeySecretRef: {{name: aws-credentials, key: secret-key}}\n",
    ))
    .expect("a SecretStore");
    Api::<sigil::api::SecretStore>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &store)
        .await
        .expect("create the SecretStore");
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

/// An `aws` stand-in for the Secrets Manager and Parameter Store calls of the
/// walk-through, forwarded to `AWS_ENDPOINT_URL` with boto3 (installed with moto).
pub fn aws_stand_in(bin: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let moto_server = std::fs::canonicalize(tool("moto_server")).expect("moto_server path");
    let python = moto_server.parent().expect("venv bin").join("python3");
    let script = format!(
        r#"#!{python}
import os, sys
import boto3
args = sys.argv[1:]
known = {{"secretsmanager": ["create-secret", "put-secret-value"], "ssm": ["put-parameter"]}}
if len(args) < 2 or args[1] not in known.get(args[0], []):
    sys.exit("this stand-in only knows: aws secretsmanager create-secret|put-secret-value, aws ssm put-parameter")
flags = {{"--overwrite"}}
options, rest = {{}}, args[2:]
while rest:
    if rest[0] in flags:
        options[rest.pop(0)] = True
    else:
        options[rest[0]] = rest[1]
        rest = rest[2:]
client = boto3.client(args[0], endpoint_url=os.environ["AWS_ENDPOINT_URL"],
                      region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
if args[1] == "create-secret":
    client.create_secret(Name=options["--name"], SecretString=options["--secret-string"])
elif args[1] == "put-secret-value":
    client.put_secret_value(SecretId=options["--secret-id"], SecretString=options["--secret-string"])
else:
    client.put_parameter(Name=options["--name"], Value=options["--value"], Type=options["--type"],
                         Overwrite=options.get("--overwrite", False))
"#,
        python = python.display()
    );
    std::fs::create_dir_all(bin).expect("bin dir");
    let path = bin.join("aws");
    std::fs::write(&path, script).expect("write aws stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}
