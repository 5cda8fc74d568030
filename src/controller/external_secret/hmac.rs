//! Keyed fingerprints of Secret data.
//!
//! A Secret sigil writes carries `sigil.dev/data-hmac`: HMAC-SHA256 over its
//! data under a key only the controller knows. Comparing fingerprints tells
//! whether the data changed without keeping or logging plaintext, and the
//! fingerprint cannot be used to guess values offline (an unkeyed hash of a
//! short password could). The key lives in the Secret [`KEY_SECRET`] in the
//! controller's namespace, made on first start; it must survive restarts so a
//! restart never looks like a change (which would restart workloads).

use std::collections::BTreeMap;
use std::time::Duration;

use hmac::{Hmac, Mac};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use rand::RngCore;
use sha2::Sha256;
use zeroize::Zeroizing;

/// The Secret holding the HMAC key, in the controller's namespace.
pub const KEY_SECRET: &str = "sigil-data-hmac-key";
const KEY_FIELD: &str = "key";
const KEY_LEN: usize = 32;

/// Computes data fingerprints under the controller's key.
#[derive(Clone)]
pub struct DataHmac {
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for DataHmac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataHmac(<key redacted>)")
    }
}

/// The key could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum HmacKeyError {
    #[error("Secret {namespace}/{KEY_SECRET}: {source}")]
    Kube {
        namespace: String,
        source: kube::Error,
    },
    #[error("Secret {namespace}/{KEY_SECRET}: data.{KEY_FIELD} must hold {KEY_LEN} or more bytes")]
    Malformed { namespace: String },
}

impl DataHmac {
    pub fn from_key(key: Vec<u8>) -> Self {
        Self {
            key: Zeroizing::new(key),
        }
    }

    /// Reads the key Secret, creating it with a random key when missing.
    pub async fn load_or_create(
        client: &kube::Client,
        namespace: &str,
    ) -> Result<Self, HmacKeyError> {
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let kube_error = |source| HmacKeyError::Kube {
            namespace: namespace.to_string(),
            source,
        };
        if let Some(secret) = api.get_opt(KEY_SECRET).await.map_err(kube_error)? {
            return Self::from_secret(secret, namespace);
        }
        let mut key = Zeroizing::new(vec![0u8; KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(&mut key);
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(KEY_SECRET.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "sigil".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                KEY_FIELD.to_string(),
                ByteString(key.to_vec()),
            )])),
            type_: Some("Opaque".to_string()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &secret).await {
            Ok(_) => Ok(Self { key }),
            // Another replica made it first: use theirs.
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let secret = api.get(KEY_SECRET).await.map_err(kube_error)?;
                Self::from_secret(secret, namespace)
            }
            Err(e) => Err(kube_error(e)),
        }
    }

    /// [`Self::load_or_create`], retried with backoff until it works or `stop` fires.
    pub async fn load_with_retry(
        client: &kube::Client,
        namespace: &str,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Option<Self> {
        let mut delay = Duration::from_millis(200);
        loop {
            match Self::load_or_create(client, namespace).await {
                Ok(hmac) => return Some(hmac),
                Err(error) => tracing::warn!(%error, "cannot load the data HMAC key; retrying"),
            }
            tokio::select! {
                () = stop.cancelled() => return None,
                () = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
    }

    fn from_secret(mut secret: Secret, namespace: &str) -> Result<Self, HmacKeyError> {
        let key = secret
            .data
            .as_mut()
            .and_then(|d| d.remove(KEY_FIELD))
            .map(|b| Zeroizing::new(b.0))
            .filter(|k| k.len() >= KEY_LEN)
            .ok_or_else(|| HmacKeyError::Malformed {
                namespace: namespace.to_string(),
            })?;
        Ok(Self { key })
    }

    /// The fingerprint of a Secret's data (keys and values, order-independent).
    pub fn of<'a, V: AsRef<[u8]> + 'a>(
        &self,
        data: impl IntoIterator<Item = (&'a String, &'a V)>,
    ) -> String {
        let mut sorted: Vec<(&String, &V)> = data.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        // HMAC accepts keys of any length; this cannot fail.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) else {
            return String::new();
        };
        for (key, value) in sorted {
            let value = value.as_ref();
            mac.update(&(key.len() as u64).to_be_bytes());
            mac.update(key.as_bytes());
            mac.update(&(value.len() as u64).to_be_bytes());
            mac.update(value);
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn fingerprints_depend_on_key_data_and_boundaries() {
        let a = DataHmac::from_key(vec![1; 32]);
        let b = DataHmac::from_key(vec![2; 32]);
        let data = map(&[("user", "app"), ("password", "pw")]);
        assert_eq!(a.of(&data), a.of(&data));
        assert_eq!(a.of(&data).len(), 64);
        assert_ne!(a.of(&data), b.of(&data), "keyed");
        assert_ne!(
            a.of(&data),
            a.of(&map(&[("user", "app"), ("password", "pw2")]))
        );
        // Moving bytes between key and value must change the fingerprint.
        assert_ne!(a.of(&map(&[("ab", "c")])), a.of(&map(&[("a", "bc")])));
        assert!(!a.of(&data).contains("pw"));
        assert!(!format!("{a:?}").contains('\u{1}'));
    }
}
