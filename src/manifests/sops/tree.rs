//! Opening a whole SOPS file: its metadata (the `sops` key of every document, the same in
//! each), the data key, every encrypted value, and the MAC — a SHA-512 over the values of all
//! documents in document order (Go's `Tree.Decrypt`), stored encrypted with `lastmodified` as
//! additional data — which is always recomputed and compared.

use std::collections::HashMap;

use sha2::{Digest, Sha512};

use super::SopsError;
use super::cipher::{DataKey, open_data_key, open_value};
use super::node::Node;

/// `sha256("sops")`: SOPS starts the MAC with it when `mac_only_encrypted` is set.
const MAC_ONLY_ENCRYPTED_INIT: [u8; 32] = [
    0x8a, 0x3f, 0xd2, 0xad, 0x54, 0xce, 0x66, 0x52, 0x7b, 0x10, 0x34, 0xf3, 0xd1, 0x47, 0xbe, 0x0b,
    0x0b, 0x97, 0x5b, 0x3b, 0xf4, 0x4f, 0x72, 0xc6, 0xfd, 0xad, 0xec, 0x81, 0x76, 0xf2, 0x7d, 0x69,
];
const DEFAULT_UNENCRYPTED_SUFFIX: &str = "_unencrypted";

/// Which values SOPS encrypted (at most one rule; `_unencrypted` suffix when none is set).
enum Rule {
    UnencryptedSuffix(String),
    EncryptedSuffix(String),
    UnencryptedRegex(regex::Regex),
    EncryptedRegex(regex::Regex),
}

impl Rule {
    fn of(metadata: &Node) -> Result<Self, SopsError> {
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(Node::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        for key in ["unencrypted_comment_regex", "encrypted_comment_regex"] {
            if text(key).is_some() {
                return Err(SopsError::Unsupported(
                    "comment-based rules (unencrypted_comment_regex, encrypted_comment_regex)",
                ));
            }
        }
        let regex =
            |r: String| regex::Regex::new(&r).map_err(|_| SopsError::Metadata("an invalid regex"));
        let rules = [
            text("unencrypted_suffix").map(|s| Ok(Rule::UnencryptedSuffix(s))),
            text("encrypted_suffix").map(|s| Ok(Rule::EncryptedSuffix(s))),
            text("unencrypted_regex").map(|r| regex(r).map(Rule::UnencryptedRegex)),
            text("encrypted_regex").map(|r| regex(r).map(Rule::EncryptedRegex)),
        ];
        let mut set = rules.into_iter().flatten();
        let rule = set.next().transpose()?;
        if set.next().is_some() {
            return Err(SopsError::Metadata(
                "more than one of unencrypted_suffix, encrypted_suffix, unencrypted_regex, encrypted_regex",
            ));
        }
        Ok(rule.unwrap_or_else(|| Rule::UnencryptedSuffix(DEFAULT_UNENCRYPTED_SUFFIX.into())))
    }

    /// Go's `Tree.shouldBeEncrypted` for the value at `path`.
    fn encrypts(&self, path: &[String]) -> bool {
        match self {
            Rule::UnencryptedSuffix(s) => !path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::EncryptedSuffix(s) => path.iter().any(|p| p.ends_with(s.as_str())),
            Rule::UnencryptedRegex(r) => !path.iter().any(|p| r.is_match(p)),
            Rule::EncryptedRegex(r) => path.iter().any(|p| r.is_match(p)),
        }
    }
}

/// The opened values of MAC-verified SOPS documents: (key path with each key followed by `:`,
/// the `ENC[…]` text) → the value.
pub type Opened = HashMap<(String, String), Node>;

/// Opens the documents of one SOPS file (those sharing one `sops` metadata), verifying its
/// MAC, and adds every value it opened to `opened`.
pub fn open(
    documents: Vec<Node>,
    identities: &[age::x25519::Identity],
    opened: &mut Opened,
) -> Result<(), SopsError> {
    let mut metadata = None;
    let mut bodies = Vec::with_capacity(documents.len());
    for document in documents {
        let Node::Map(entries) = document else {
            if document == Node::Null {
                continue;
            }
            return Err(SopsError::Metadata("a document that is not a map"));
        };
        let (found, body): (Vec<_>, Vec<_>) = entries.into_iter().partition(|(k, _)| k == "sops");
        if metadata.is_none() {
            metadata = found.into_iter().next().map(|(_, v)| v);
        }
        bodies.push(Node::Map(body));
    }
    let metadata = metadata.ok_or(SopsError::Metadata("no sops key"))?;
    let key = data_key(&metadata, identities)?;
    let rule = Rule::of(&metadata)?;
    let mac_only_encrypted = metadata.get("mac_only_encrypted") == Some(&Node::Bool(true));
    let mut walker = Walker {
        key: &key,
        rule: &rule,
        mac_only_encrypted,
        hash: Sha512::new(),
        path: Vec::new(),
        opened: Opened::new(),
    };
    if mac_only_encrypted {
        walker.hash.update(MAC_ONLY_ENCRYPTED_INIT);
    }
    for body in bodies {
        walker.walk(body)?;
    }
    let computed = hex::encode_upper(walker.hash.finalize());
    let text = |key: &'static str| {
        metadata
            .get(key)
            .and_then(Node::as_str)
            .ok_or(SopsError::Metadata(key))
    };
    let stored = open_value(text("mac")?, &key, text("lastmodified")?)
        .map_err(|_| SopsError::MacMismatch)?;
    if stored.as_str() != Some(computed.as_str()) {
        return Err(SopsError::MacMismatch);
    }
    opened.extend(walker.opened);
    Ok(())
}

struct Walker<'a> {
    key: &'a DataKey,
    rule: &'a Rule,
    mac_only_encrypted: bool,
    hash: Sha512,
    path: Vec<String>,
    opened: Opened,
}

impl Walker<'_> {
    fn walk(&mut self, node: Node) -> Result<(), SopsError> {
        match node {
            Node::Map(entries) => {
                for (name, value) in entries {
                    self.path.push(name);
                    let walked = self.walk(value);
                    self.path.pop();
                    walked?;
                }
                Ok(())
            }
            Node::Seq(items) => items.into_iter().try_for_each(|item| self.walk(item)),
            Node::Null => Ok(()),
            leaf => {
                let encrypted = self.rule.encrypts(&self.path);
                let value = if encrypted {
                    let Node::Str(text) = leaf else {
                        return Err(self.invalid("is not an encrypted value"));
                    };
                    let additional = format!("{}:", self.path.join(":"));
                    let value = open_value(&text, self.key, &additional)
                        .map_err(|why| self.invalid(why))?;
                    self.opened.insert((additional, text), value.clone());
                    value
                } else {
                    leaf
                };
                if (!self.mac_only_encrypted || encrypted)
                    && let Some(bytes) = value.mac_bytes()
                {
                    self.hash.update(&bytes);
                }
                Ok(())
            }
        }
    }

    fn invalid(&self, why: &'static str) -> SopsError {
        SopsError::Value {
            path: self.path.join("."),
            why,
        }
    }
}

/// The data key, opened by the first identity that can. Recipients of other kinds get "not
/// supported" when no age recipient is there to open the file.
fn data_key(metadata: &Node, identities: &[age::x25519::Identity]) -> Result<DataKey, SopsError> {
    let groups = match metadata.get("key_groups") {
        Some(Node::Seq(groups)) if groups.len() > 1 => {
            return Err(SopsError::Unsupported("Shamir key groups"));
        }
        Some(Node::Seq(groups)) if groups.len() == 1 => &groups[0],
        _ => metadata,
    };
    let age: Vec<&str> = match groups.get("age") {
        Some(Node::Seq(items)) => items
            .iter()
            .filter_map(|stanza| stanza.get("enc").and_then(Node::as_str))
            .collect(),
        _ => Vec::new(),
    };
    if age.is_empty() {
        for (field, name) in [
            ("pgp", "PGP recipients"),
            ("kms", "AWS KMS recipients"),
            ("gcp_kms", "GCP KMS recipients"),
            ("azure_kv", "Azure Key Vault recipients"),
            ("hc_vault", "HashiCorp Vault Transit recipients"),
        ] {
            if matches!(groups.get(field), Some(Node::Seq(items)) if !items.is_empty()) {
                return Err(SopsError::Unsupported(name));
            }
        }
        return Err(SopsError::Metadata("no age recipient"));
    }
    open_data_key(&age, identities).ok_or(SopsError::NoKey)
}
