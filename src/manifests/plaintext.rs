//! The guard against plaintext in Git: a core `kind: Secret` carrying `data` or `stringData`.
//! (Base64 is an encoding, not encryption.) SealedSecret and ExternalSecret are what belongs
//! in Git instead.

use std::fmt;

use serde_json::Value;

use super::Manifest;

/// A Secret with values, found in a manifest. Holds where it is, never a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlaintextSecret {
    pub file: String,
    pub line: usize,
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for PlaintextSecret {
    /// `file:line Secret/name` (the format `sigil scan` prints).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{} Secret/{}", self.file, self.line, self.name)?;
        if let Some(ns) = &self.namespace {
            write!(f, " (namespace {ns})")?;
        }
        Ok(())
    }
}

fn has_values(field: Option<&Value>) -> bool {
    match field {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => !map.is_empty(),
        // Anything else is malformed, and still not something to let through.
        Some(_) => true,
    }
}

/// Whether any value under `field` is in the clear: for a SOPS document, a value that is not
/// `ENC[…]` (SOPS leaves the empty string as it is).
fn has_clear_values(field: Option<&Value>) -> bool {
    match field {
        None | Some(Value::Null) => false,
        Some(Value::Object(map)) => map.values().any(|v| match v {
            Value::String(s) => !s.is_empty() && !s.starts_with("ENC[AES256_GCM,"),
            _ => true,
        }),
        Some(_) => true,
    }
}

/// Whether a document is a core Secret with values in the clear (a SOPS-encrypted Secret is
/// not, unless SOPS left some of its values unencrypted).
pub fn is_plaintext_secret(object: &Value) -> bool {
    let api_version = object.get("apiVersion").and_then(Value::as_str);
    let kind = object.get("kind").and_then(Value::as_str);
    let values = if super::sops::is_sops(object) {
        has_clear_values
    } else {
        has_values
    };
    api_version == Some("v1")
        && kind == Some("Secret")
        && (values(object.get("data")) || values(object.get("stringData")))
}

/// Every plaintext Secret among the manifests, in order.
pub fn find(manifests: &[Manifest]) -> Vec<PlaintextSecret> {
    manifests
        .iter()
        .filter(|m| is_plaintext_secret(&m.object))
        .map(|m| PlaintextSecret {
            file: m.file.clone(),
            line: m.line,
            namespace: m.namespace().map(str::to_string),
            name: m.name().to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(object: Value) -> Manifest {
        Manifest {
            file: "clusters/dev/db.yaml".into(),
            line: 3,
            object,
        }
    }

    #[test]
    fn secrets_with_values_are_plaintext() {
        let found = find(&[
            manifest(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "apps"}, "stringData": {"password": "hunter2"}}),
            ),
            manifest(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b64"}, "data": {"k": "dg=="}}),
            ),
            manifest(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "empty"}, "data": {}}),
            ),
            manifest(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "typed"}, "type": "kubernetes.io/service-account-token"}),
            ),
            manifest(
                json!({"apiVersion": "sigil.dev/v1alpha1", "kind": "SealedSecret", "metadata": {"name": "s"}, "spec": {"encryptedData": {"k": "age"}}}),
            ),
            manifest(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}),
            ),
            manifest(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sops"}, "stringData": {"k": "ENC[AES256_GCM,data:eA==,iv:aQ==,tag:dA==,type:str]", "e": ""}, "sops": {"mac": "ENC[AES256_GCM,data:bQ==,iv:aQ==,tag:dA==,type:str]"}}),
            ),
            manifest(
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "half-sops"}, "stringData": {"k": "ENC[AES256_GCM,data:eA==,iv:aQ==,tag:dA==,type:str]", "clear": "hunter2"}, "sops": {"mac": "ENC[AES256_GCM,data:bQ==,iv:aQ==,tag:dA==,type:str]"}}),
            ),
        ]);
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "clusters/dev/db.yaml:3 Secret/db (namespace apps)",
                "clusters/dev/db.yaml:3 Secret/b64",
                "clusters/dev/db.yaml:3 Secret/half-sops"
            ]
        );
        assert!(!format!("{found:?}").contains("hunter2"));
    }
}
