//! The contract between the CLI, the controller's HTTP port and the sealing-keys controller: where
//! the recipients are published, the HTTP routes the CLI calls, and what they answer. Both sides
//! take these from here, so neither reaches into the other's internals.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::{Api, Client};
use serde::{Deserialize, Serialize};

use crate::api::sealed_secret::SealedSecret;
use crate::crypto::Keyring;
use crate::crypto::sealed_data;

/// ConfigMap (in the controller's namespace) publishing the recipients to seal to.
pub const RECIPIENTS_CONFIGMAP: &str = "sigil-recipients";
/// Its data key: one `age1…` per line, the active key first, then recovery recipients.
pub const RECIPIENTS_KEY: &str = "recipients";

/// `GET`: the recipients to seal to, one per line (text/plain).
pub const RECIPIENTS_ROUTE: &str = "/v1/recipients";
/// `POST` a SealedSecret (JSON): a [`VerifyResponse`].
pub const VERIFY_ROUTE: &str = "/v1/verify";
/// `POST` a SealedSecret (JSON): the same object re-sealed to the published recipients.
pub const ROTATE_ROUTE: &str = "/v1/rotate";

/// The recipients text published in the ConfigMap, if it exists.
pub async fn read_published_recipients(
    client: &Client,
    namespace: &str,
) -> Result<Option<String>, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .get_opt(RECIPIENTS_CONFIGMAP)
        .await?
        .and_then(|cm| cm.data)
        .and_then(|mut data| data.remove(RECIPIENTS_KEY)))
}

/// The answer of `POST /v1/verify`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// Every value opens where the object sits.
    pub opened: bool,
    /// `DecryptFailed` or `ScopeMismatch` when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Which value failed and why (no value content).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Fingerprints of the keys that opened the values, oldest first.
    #[serde(default)]
    pub keys: Vec<String>,
}

impl VerifyResponse {
    /// Whether every value of `sealed` opens with `keyring` in `namespace`/`name`.
    pub fn check(sealed: &SealedSecret, keyring: &Keyring, namespace: &str, name: &str) -> Self {
        match sealed_data::open_all(&sealed.spec.encrypted_data, keyring, namespace, name) {
            Ok(opened) => Self {
                opened: true,
                reason: None,
                message: String::new(),
                keys: opened.fingerprints.clone(),
            },
            Err(e) => Self {
                opened: false,
                reason: Some(e.error.reason().to_string()),
                message: e.to_string(),
                keys: Vec::new(),
            },
        }
    }
}
