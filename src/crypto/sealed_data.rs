//! Every value of a SealedSecret at once: open all of them, or seal a whole map.

use std::collections::BTreeMap;

use age::x25519::Recipient;
use secrecy::{ExposeSecret, SecretSlice};

use super::binding::Binding;
use super::keyring::Keyring;
use super::sealing::{self, OpenError, SealError};

/// The longest key a Secret's `data` accepts.
const MAX_DATA_KEY_LEN: usize = 253;

/// One value of `spec.encryptedData` was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("spec.encryptedData.{key}: {error}")]
pub struct FieldError {
    pub key: String,
    pub error: OpenError,
}

/// The opened values of a SealedSecret and which keys opened them.
pub struct UnsealedData {
    pub data: BTreeMap<String, SecretSlice<u8>>,
    /// The scope recorded inside each value.
    pub bindings: BTreeMap<String, Binding>,
    /// Fingerprints of the keys that opened the values, oldest key first.
    pub fingerprints: Vec<String>,
}

impl UnsealedData {
    /// The oldest key any value needed: the one that matters for `sigil reencrypt`.
    pub fn oldest_key(&self) -> Option<&str> {
        self.fingerprints.first().map(String::as_str)
    }
}

impl std::fmt::Debug for UnsealedData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnsealedData")
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .field("fingerprints", &self.fingerprints)
            .finish_non_exhaustive()
    }
}

/// Opens every value for object `namespace`/`name`; the first refusal (in key
/// order) is returned, naming its field.
pub fn open_all(
    encrypted: &BTreeMap<String, String>,
    keyring: &Keyring,
    namespace: &str,
    name: &str,
) -> Result<UnsealedData, FieldError> {
    let mut data = BTreeMap::new();
    let mut bindings = BTreeMap::new();
    let mut fingerprints: Vec<String> = Vec::new();
    for (key, armored) in encrypted {
        let opened = keyring
            .open(armored, namespace, name)
            .map_err(|error| FieldError {
                key: key.clone(),
                error,
            })?;
        if !fingerprints.contains(&opened.fingerprint) {
            fingerprints.push(opened.fingerprint);
        }
        data.insert(key.clone(), opened.opened.value);
        bindings.insert(key.clone(), opened.opened.binding);
    }
    fingerprints.sort_by_key(|fp| keyring.age_rank(fp));
    Ok(UnsealedData {
        data,
        bindings,
        fingerprints,
    })
}

/// Seals every value of a map for the same binding and recipients.
pub fn seal_all(
    data: &BTreeMap<String, SecretSlice<u8>>,
    binding: &Binding,
    recipients: &[Recipient],
) -> Result<BTreeMap<String, String>, SealError> {
    data.iter()
        .map(|(key, value)| {
            Ok((
                key.clone(),
                sealing::seal(value.expose_secret(), binding, recipients)?,
            ))
        })
        .collect()
}

/// A value could not be re-sealed.
#[derive(Debug, thiserror::Error)]
pub enum ResealError {
    #[error(transparent)]
    Open(#[from] FieldError),
    #[error("spec.encryptedData.{key}: {error}")]
    Seal { key: String, error: SealError },
}

/// Opens every value (checking its scope against `namespace`/`name`) and seals
/// it again to `recipients`, keeping the scope recorded inside it.
pub fn reseal_all(
    encrypted: &BTreeMap<String, String>,
    keyring: &Keyring,
    namespace: &str,
    name: &str,
    recipients: &[Recipient],
) -> Result<BTreeMap<String, String>, ResealError> {
    let opened = open_all(encrypted, keyring, namespace, name)?;
    opened
        .data
        .iter()
        .map(|(key, value)| {
            let binding = &opened.bindings[key];
            let armored =
                sealing::seal(value.expose_secret(), binding, recipients).map_err(|error| {
                    ResealError::Seal {
                        key: key.clone(),
                        error,
                    }
                })?;
            Ok((key.clone(), armored))
        })
        .collect()
}

/// Whether `key` is a valid key of a Secret's `data` (`[-._a-zA-Z0-9]+`).
pub fn is_valid_data_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_DATA_KEY_LEN
        && key != "."
        && key != ".."
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
}
