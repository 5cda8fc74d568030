//! Manifests around sealing: a plaintext Secret in, a SealedSecret out, and back.

use std::collections::BTreeMap;

use age::x25519::Recipient;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use secrecy::{ExposeSecret, SecretSlice};
use serde::Deserialize;
use zeroize::{Zeroize, Zeroizing};

use super::binding::{Binding, InvalidName};
use super::sealed_data::{self, UnsealedData, is_valid_data_key};
use super::sealing::SealError;
use crate::api::common::TemplateMetadata;
use crate::api::sealed_secret::{Scope, SealedSecret, SealedSecretSpec, SecretTemplate};

/// Holds the whole previous object, including every plaintext value, so it is
/// never copied into a SealedSecret.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// The apiVersion of SealedSecret manifests.
pub const SEALED_API_VERSION: &str = "sigil.dev/v1alpha1";

/// A manifest that cannot be sealed or opened. Messages name the object and the
/// field, never a value.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error(transparent)]
    Yaml(#[from] crate::yaml::YamlError),
    #[error("expected a {expected} manifest, found kind {found:?}")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("{object}: {field}: {problem}")]
    Field {
        object: String,
        field: String,
        problem: String,
    },
    #[error("{object}: {error}")]
    Name { object: String, error: InvalidName },
    #[error("{object}: {error}")]
    Seal { object: String, error: SealError },
    #[error("no {0} found in the input")]
    Empty(&'static str),
}

/// A plaintext Secret read from a manifest. Values are wiped when dropped.
pub struct PlainSecret {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub type_: Option<String>,
    pub immutable: Option<bool>,
    pub data: BTreeMap<String, SecretSlice<u8>>,
}

impl std::fmt::Debug for PlainSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainSecret")
            .field("name", &self.name)
            .field("namespace", &self.namespace)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl PlainSecret {
    /// `Secret NAMESPACE/NAME` for messages.
    pub fn describe(&self) -> String {
        describe(
            "Secret",
            self.namespace.as_deref(),
            self.name.as_deref().unwrap_or("(unnamed)"),
        )
    }
}

/// `KIND namespace/name` (or `KIND name`) for messages.
pub fn describe(kind: &str, namespace: Option<&str>, name: &str) -> String {
    match namespace {
        Some(namespace) => format!("{kind} {namespace}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The Secret as parsed; wipes every value it still holds when dropped.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawSecret {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    data: Option<BTreeMap<String, String>>,
    #[serde(default)]
    string_data: Option<BTreeMap<String, String>>,
    #[serde(default, rename = "type")]
    type_: Option<String>,
    #[serde(default)]
    immutable: Option<bool>,
}

impl Drop for RawSecret {
    fn drop(&mut self) {
        for map in [&mut self.data, &mut self.string_data]
            .into_iter()
            .flatten()
        {
            map.values_mut().for_each(Zeroize::zeroize);
        }
        if let Some(annotations) = self.metadata.annotations.as_mut()
            && let Some(last_applied) = annotations.get_mut(LAST_APPLIED)
        {
            last_applied.zeroize();
        }
    }
}

/// Reads one Secret manifest (YAML or JSON) with `data` and/or `stringData`;
/// `stringData` wins for a key in both, as in Kubernetes.
pub fn parse_secret(text: &str) -> Result<PlainSecret, ManifestError> {
    let mut raw: RawSecret = crate::yaml::from_str(text)?;
    let kind = raw.kind.clone().unwrap_or_default();
    if kind != "Secret" {
        return Err(ManifestError::WrongKind {
            expected: "Secret",
            found: kind,
        });
    }
    let name = raw.metadata.name.clone();
    let namespace = raw.metadata.namespace.clone();
    let object = describe(
        "Secret",
        namespace.as_deref(),
        name.as_deref().unwrap_or("(unnamed)"),
    );
    let field_error = |field: String, problem: &str| ManifestError::Field {
        object: object.clone(),
        field,
        problem: problem.to_string(),
    };
    let mut data = BTreeMap::new();
    for (key, encoded) in raw.data.iter().flatten() {
        if !is_valid_data_key(key) {
            return Err(field_error(
                format!("data.{key}"),
                "invalid key (allowed: letters, digits, '-', '_', '.')",
            ));
        }
        let decoded = decode_base64(encoded)
            .ok_or_else(|| field_error(format!("data.{key}"), "not valid base64"))?;
        data.insert(key.clone(), decoded);
    }
    for (key, value) in raw.string_data.iter().flatten() {
        if !is_valid_data_key(key) {
            return Err(field_error(
                format!("stringData.{key}"),
                "invalid key (allowed: letters, digits, '-', '_', '.')",
            ));
        }
        data.insert(key.clone(), SecretSlice::from(value.as_bytes().to_vec()));
    }
    let labels = raw.metadata.labels.take().unwrap_or_default();
    let mut annotations = raw.metadata.annotations.take().unwrap_or_default();
    if let Some(mut last_applied) = annotations.remove(LAST_APPLIED) {
        last_applied.zeroize();
    }
    Ok(PlainSecret {
        name,
        namespace,
        labels,
        annotations,
        type_: raw.type_.clone(),
        immutable: raw.immutable,
        data,
    })
}

/// Decodes base64 (padding optional, whitespace ignored) into a wiped-on-drop buffer.
fn decode_base64(encoded: &str) -> Option<SecretSlice<u8>> {
    let compact: Zeroizing<String> = Zeroizing::new(
        encoded
            .chars()
            .filter(|c| !c.is_ascii_whitespace())
            .collect(),
    );
    let mut out = Zeroizing::new(Vec::with_capacity(compact.len()));
    BASE64.decode_vec(compact.as_bytes(), &mut out).ok()?;
    Some(SecretSlice::from(out.to_vec()))
}

/// Seals a Secret into a SealedSecret bound to `binding`; `namespace` and `name`
/// are those the SealedSecret is written with.
pub fn seal_secret(
    secret: &PlainSecret,
    namespace: &str,
    name: &str,
    binding: &Binding,
    recipients: &[Recipient],
) -> Result<SealedSecret, ManifestError> {
    let encrypted_data =
        sealed_data::seal_all(&secret.data, binding, recipients).map_err(|error| {
            ManifestError::Seal {
                object: describe("Secret", Some(namespace), name),
                error,
            }
        })?;
    let metadata =
        (!secret.labels.is_empty() || !secret.annotations.is_empty()).then(|| TemplateMetadata {
            labels: secret.labels.clone(),
            annotations: secret.annotations.clone(),
        });
    let template = (metadata.is_some() || secret.type_.is_some() || secret.immutable.is_some())
        .then(|| SecretTemplate {
            type_: secret.type_.clone(),
            metadata,
            immutable: secret.immutable,
        });
    let mut sealed = SealedSecret::new(
        name,
        SealedSecretSpec {
            encrypted_data,
            scope: binding.scope(),
            template,
        },
    );
    sealed.metadata.namespace = Some(namespace.to_string());
    Ok(sealed)
}

/// The binding a Secret is sealed with: `scope` for its namespace and name.
pub fn binding_for(
    scope: Scope,
    namespace: &str,
    name: &str,
    object: &str,
) -> Result<Binding, ManifestError> {
    Binding::new(scope, Some(namespace), Some(name)).map_err(|error| ManifestError::Name {
        object: object.to_string(),
        error,
    })
}

/// The namespace and name of a SealedSecret, which every value is checked against.
pub fn sealed_identity(sealed: &SealedSecret) -> Result<(String, String), ManifestError> {
    let name = sealed.metadata.name.clone().unwrap_or_default();
    let object = describe(
        "SealedSecret",
        sealed.metadata.namespace.as_deref(),
        if name.is_empty() { "(unnamed)" } else { &name },
    );
    if name.is_empty() {
        return Err(ManifestError::Field {
            object,
            field: "metadata.name".into(),
            problem: "missing".into(),
        });
    }
    let namespace = sealed
        .metadata
        .namespace
        .clone()
        .ok_or(ManifestError::Field {
            object,
            field: "metadata.namespace".into(),
            problem: "missing (the scope sealed in each value is checked against it)".into(),
        })?;
    Ok((namespace, name))
}

/// The Secret a SealedSecret describes, as a JSON manifest with base64 `data`.
/// The result holds plaintext (base64 is no protection): callers wipe what they
/// serialize it into.
pub fn secret_manifest(sealed: &SealedSecret, opened: &UnsealedData) -> serde_json::Value {
    let template = sealed.spec.template.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut metadata = serde_json::json!({
        "name": sealed.metadata.name,
        "namespace": sealed.metadata.namespace,
    });
    if !meta.labels.is_empty() {
        metadata["labels"] = serde_json::json!(meta.labels);
    }
    if !meta.annotations.is_empty() {
        metadata["annotations"] = serde_json::json!(meta.annotations);
    }
    let data: serde_json::Map<String, serde_json::Value> = opened
        .data
        .iter()
        .map(|(key, value)| {
            (
                key.clone(),
                serde_json::Value::String(BASE64.encode(value.expose_secret())),
            )
        })
        .collect();
    let mut secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": template.type_.unwrap_or_else(|| "Opaque".to_string()),
        "data": data,
    });
    if let Some(immutable) = template.immutable {
        secret["immutable"] = serde_json::Value::Bool(immutable);
    }
    secret
}

/// Wipes the base64 values of a Secret manifest built by [`secret_manifest`].
pub fn wipe_secret_manifest(secret: &mut serde_json::Value) {
    if let Some(data) = secret.get_mut("data").and_then(|d| d.as_object_mut()) {
        for value in data.values_mut() {
            if let serde_json::Value::String(text) = value {
                text.zeroize();
            }
        }
    }
}

/// Whether a parsed document is a SealedSecret.
pub fn is_sealed_secret(document: &serde_json::Value) -> bool {
    document["kind"] == "SealedSecret"
        && document["apiVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("sigil.dev/"))
}

/// Reads a SealedSecret from a parsed document.
pub fn sealed_from_document(document: &serde_json::Value) -> Result<SealedSecret, ManifestError> {
    if !is_sealed_secret(document) {
        return Err(ManifestError::WrongKind {
            expected: "SealedSecret",
            found: document["kind"].as_str().unwrap_or_default().to_string(),
        });
    }
    let name = document["metadata"]["name"].as_str().unwrap_or("(unnamed)");
    let namespace = document["metadata"]["namespace"].as_str();
    serde_json::from_value(document.clone()).map_err(|e| ManifestError::Field {
        object: describe("SealedSecret", namespace, name),
        field: "spec".into(),
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keyring::Keyring;

    const SECRET: &str = r#"
apiVersion: v1
kind: Secret
metadata:
  name: db
  namespace: prod
  labels: {app: db}
  annotations:
    note: kept
    kubectl.kubernetes.io/last-applied-configuration: '{"data":{"password":"aHVudGVyMg=="}}'
  uid: 1234
  resourceVersion: "99"
type: kubernetes.io/basic-auth
data:
  password: aHVudGVyMg==
  username: YWRtaW4=
stringData:
  username: root
"#;

    #[test]
    fn reads_data_and_string_data() {
        let secret = parse_secret(SECRET).expect("parses");
        assert_eq!(secret.name.as_deref(), Some("db"));
        assert_eq!(secret.namespace.as_deref(), Some("prod"));
        assert_eq!(secret.data["password"].expose_secret(), b"hunter2");
        assert_eq!(secret.data["username"].expose_secret(), b"root");
        assert!(!secret.annotations.contains_key(LAST_APPLIED));
        assert_eq!(secret.annotations["note"], "kept");
        assert!(!format!("{secret:?}").contains("hunter2"));
    }

    #[test]
    fn refuses_bad_manifests_naming_object_and_field() {
        let err = parse_secret("kind: ConfigMap\nmetadata: {name: x}\n").expect_err("refused");
        assert!(err.to_string().contains("ConfigMap"), "{err}");
        let err = parse_secret(
            "kind: Secret\nmetadata: {name: db, namespace: prod}\ndata: {password: '!!not base64'}\n",
        )
        .expect_err("refused");
        assert_eq!(
            err.to_string(),
            "Secret prod/db: data.password: not valid base64"
        );
        let err = parse_secret("kind: Secret\nmetadata: {name: db}\nstringData: {'a b': x}\n")
            .expect_err("refused");
        assert!(
            err.to_string().starts_with("Secret db: stringData.a b:"),
            "{err}"
        );
    }

    #[test]
    fn seals_and_describes_the_secret_back() {
        let identity = age::x25519::Identity::generate();
        let secret = parse_secret(SECRET).expect("parses");
        let binding = binding_for(Scope::Strict, "prod", "db", "Secret prod/db").expect("valid");
        let sealed =
            seal_secret(&secret, "prod", "db", &binding, &[identity.to_public()]).expect("seals");
        let text = serde_json::to_string(&sealed).expect("serializes");
        assert!(!text.contains("hunter2") && !text.contains("aHVudGVyMg"));
        assert!(!text.contains(LAST_APPLIED));
        let template = sealed.spec.template.clone().expect("template");
        assert_eq!(template.type_.as_deref(), Some("kubernetes.io/basic-auth"));

        let keyring = Keyring::from_identities(vec![identity], "test");
        let (namespace, name) = sealed_identity(&sealed).expect("named");
        let opened =
            sealed_data::open_all(&sealed.spec.encrypted_data, &keyring, &namespace, &name)
                .expect("opens");
        let manifest = secret_manifest(&sealed, &opened);
        assert_eq!(manifest["data"]["password"], "aHVudGVyMg==");
        assert_eq!(manifest["metadata"]["labels"]["app"], "db");
        assert_eq!(manifest["type"], "kubernetes.io/basic-auth");
    }
}
