//! SOPS-encrypted documents, opened in-process with the Sync's age identities: the data key
//! never leaves sigil (no child process sees it), every value is authenticated with its key
//! path, and the MAC over the whole file is always verified. Only age recipients are
//! supported. A file is opened whole because its MAC covers all of its documents.

mod cipher;
mod keys;
mod node;
mod tree;

use std::collections::HashSet;
use std::fmt;

use serde_json::Value;

use self::node::Node;
use super::parse::Manifest;
use super::source::SourceFile;
pub use keys::{KeysError, keys_of};

/// Why a SOPS file could not be opened. Never holds a decrypted value.
#[derive(Debug, thiserror::Error)]
pub enum SopsError {
    #[error(
        "is SOPS-encrypted, but the Sync has no spec.decryption: set spec.decryption {{provider: sops, secretRef: {{name: <Secret with *.agekey entries>}}}} to decrypt it"
    )]
    NotConfigured,
    #[error("{0} are not supported (sigil opens SOPS files encrypted to age recipients)")]
    Unsupported(&'static str),
    #[error("none of the configured age identities opens its SOPS data key")]
    NoKey,
    #[error("the SOPS MAC does not match: the file was changed after it was encrypted")]
    MacMismatch,
    #[error("SOPS value at {path} {why}")]
    Value { path: String, why: &'static str },
    #[error("invalid SOPS metadata: {0}")]
    Metadata(&'static str),
    #[error("cannot read it as YAML or JSON: {0}")]
    Parse(String),
}

/// The age identities a Sync decrypts with. `Debug` never shows them.
#[derive(Clone, Default)]
pub struct Keys(Vec<age::x25519::Identity>);

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keys({} age identities)", self.0.len())
    }
}

impl Keys {
    pub fn new(identities: Vec<age::x25519::Identity>) -> Self {
        Self(identities)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn extend(&mut self, other: Keys) {
        self.0.extend(other.0);
    }
}

/// Whether a document carries SOPS metadata.
pub fn is_sops(document: &Value) -> bool {
    mac_of(document).is_some()
}

/// The `sops.mac` of a document: the same in every document of one SOPS file.
fn mac_of(document: &Value) -> Option<&str> {
    document.pointer("/sops/mac").and_then(Value::as_str)
}

/// Whether a file may hold a SOPS document (a cheap test before parsing it).
pub fn may_hold_sops(content: &[u8]) -> bool {
    content.windows(4).any(|w| w == b"sops")
}

/// Why the SOPS documents of a revision could not all be opened.
#[derive(Debug)]
pub struct Unopened {
    /// `file:line` of the document, or the SOPS file that could not be verified.
    pub location: String,
    pub error: SopsError,
}

/// Opens and verifies, among `sources`, the SOPS files whose MAC is one of `macs`.
fn verify(
    sources: &[SourceFile],
    macs: &HashSet<&str>,
    keys: &Keys,
) -> Result<tree::Opened, Unopened> {
    let mut opened = tree::Opened::new();
    for file in sources {
        let text = String::from_utf8_lossy(&file.content);
        if !macs.iter().any(|mac| text.contains(mac)) {
            continue;
        }
        let failed = |error| Unopened {
            location: file.path.clone(),
            error,
        };
        let documents: Vec<Node> = if file.path.to_ascii_lowercase().ends_with(".json") {
            vec![serde_json::from_str(&text).map_err(|e| failed(SopsError::Parse(e.to_string())))?]
        } else {
            crate::yaml::documents_as(&text).map_err(|e| failed(SopsError::Parse(e.to_string())))?
        };
        let mut groups: Vec<(String, Vec<Node>)> = Vec::new();
        for document in documents {
            let Some(mac) = document
                .get("sops")
                .and_then(|m| m.get("mac"))
                .and_then(Node::as_str)
            else {
                continue;
            };
            let mac = mac.to_string();
            match groups.iter_mut().find(|(m, _)| *m == mac) {
                Some((_, members)) => members.push(document),
                None => groups.push((mac, vec![document])),
            }
        }
        for (mac, documents) in groups {
            if macs.contains(mac.as_str()) {
                tree::open(documents, &keys.0, &mut opened).map_err(failed)?;
            }
        }
    }
    Ok(opened)
}

/// A document's values opened from `opened`, without its `sops` metadata. Every `ENC[…]`
/// value must be one a verified file holds at the same key path.
fn open_document(mut document: Value, opened: &tree::Opened) -> Result<Value, SopsError> {
    fn walk(
        value: &mut Value,
        path: &mut Vec<String>,
        opened: &tree::Opened,
    ) -> Result<(), SopsError> {
        match value {
            Value::Object(map) => map.iter_mut().try_for_each(|(key, value)| {
                path.push(key.clone());
                let walked = walk(value, path, opened);
                path.pop();
                walked
            }),
            Value::Array(items) => items
                .iter_mut()
                .try_for_each(|item| walk(item, path, opened)),
            Value::String(text) if text.starts_with("ENC[") => {
                let additional = format!("{}:", path.join(":"));
                let plain = opened
                    .get(&(additional, std::mem::take(text)))
                    .ok_or_else(|| SopsError::Value {
                        path: path.join("."),
                        why: "is not a value of a SOPS file whose MAC was verified",
                    })?;
                *value = plain.clone().into_json();
                Ok(())
            }
            _ => Ok(()),
        }
    }
    if let Some(map) = document.as_object_mut() {
        map.remove("sops");
    }
    walk(&mut document, &mut Vec::new(), opened)?;
    Ok(document)
}

/// The pipeline's decrypt stage: every SOPS document among `manifests` is replaced by its
/// opened form, once the SOPS file it comes from (found among `sources`: the folder's files,
/// or for rendered output the repository's) has been opened whole and its MAC verified.
/// Rendered documents may differ from their file where the renderer changed them (names,
/// labels, key order), but every encrypted value must be one the verified file holds at the
/// same path.
pub fn open_manifests(
    manifests: Vec<Manifest>,
    sources: &[SourceFile],
    keys: Option<&Keys>,
) -> (Vec<Manifest>, Vec<Unopened>) {
    let macs: HashSet<&str> = manifests.iter().filter_map(|m| mac_of(&m.object)).collect();
    if macs.is_empty() {
        return (manifests, Vec::new());
    }
    let opened = match keys {
        None => Err(None),
        Some(keys) => verify(sources, &macs, keys).map_err(Some),
    };
    let opened = match opened {
        Ok(opened) => opened,
        Err(failed) => {
            let failures = match failed {
                Some(failed) => vec![failed],
                None => manifests
                    .iter()
                    .filter(|m| is_sops(&m.object))
                    .map(|m| Unopened {
                        location: m.location(),
                        error: SopsError::NotConfigured,
                    })
                    .collect(),
            };
            return (Vec::new(), failures);
        }
    };
    let mut out = Vec::with_capacity(manifests.len());
    let mut failures = Vec::new();
    for manifest in manifests {
        if !is_sops(&manifest.object) {
            out.push(manifest);
            continue;
        }
        let location = manifest.location();
        match open_document(manifest.object.clone(), &opened) {
            Ok(object) => out.push(Manifest { object, ..manifest }),
            Err(error) => failures.push(Unopened { location, error }),
        }
    }
    (out, failures)
}
