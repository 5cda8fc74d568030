//! Writing the target Secret: ownership rules, the "changed?" test, and
//! server-side apply as field manager `sigil`.
//!
//! A Secret sigil manages carries the label [`MANAGED_LABEL`] (the controller
//! watches only Secrets with it), the annotation [`OWNER_ANNOTATION`] naming
//! its ExternalSecret, and [`HMAC_ANNOTATION`], the keyed fingerprint of the
//! data it wrote. Creation policies follow External Secrets Operator:
//! * `Owner`: sigil creates the Secret with an ownerReference to the
//!   ExternalSecret (deleted with it by garbage collection);
//! * `Orphan`: the same without an ownerReference;
//! * `Merge`: only our keys go into an existing Secret, which must exist.
//!
//! A Secret that exists but is not ours is never silently adopted: `Owner` and
//! `Orphan` refuse it, and no policy takes over a Secret another
//! ExternalSecret manages.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use zeroize::Zeroize;

use super::desired::Desired;
use super::hmac::DataHmac;
use crate::api::FIELD_MANAGER;
use crate::api::external_secret::{CreationPolicy, ExternalSecret};
use crate::crypto::manifest::wipe_secret;

/// Label on every Secret the ExternalSecret controller writes.
pub const MANAGED_LABEL: &str = "sigil.dev/managed-by";
pub const MANAGED_VALUE: &str = "external-secret";
/// Names the ExternalSecret (same namespace) that writes the Secret.
pub const OWNER_ANNOTATION: &str = "sigil.dev/external-secret";
/// Keyed fingerprint of the data sigil wrote.
pub const HMAC_ANNOTATION: &str = "sigil.dev/data-hmac";

/// The label selector of the Secret watch.
pub fn managed_selector() -> String {
    format!("{MANAGED_LABEL}={MANAGED_VALUE}")
}

/// The Secret's name: `spec.target.name`, else the ExternalSecret's.
pub fn target_name(es: &ExternalSecret) -> String {
    es.spec
        .target
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| es.name_any())
}

/// Whether the ExternalSecret may write the Secret as it is.
#[derive(Debug, PartialEq, Eq)]
pub enum Ownership {
    /// No Secret yet.
    Absent,
    /// Ours (or, for `Merge`, an existing Secret no one else manages).
    Ours,
    /// Someone else's; the reason says whose.
    Foreign(String),
}

pub fn ownership(live: Option<&Secret>, es_name: &str, policy: CreationPolicy) -> Ownership {
    let Some(live) = live else {
        return Ownership::Absent;
    };
    let managed_by = live.annotations().get(OWNER_ANNOTATION).map(String::as_str);
    match managed_by {
        Some(name) if name == es_name => Ownership::Ours,
        Some(other) => Ownership::Foreign(format!(
            "Secret {} is managed by ExternalSecret {other:?}",
            live.name_any()
        )),
        None if policy == CreationPolicy::Merge => Ownership::Ours,
        None => Ownership::Foreign(format!(
            "Secret {} already exists and is not managed by sigil; delete it or use creationPolicy: Merge",
            live.name_any()
        )),
    }
}

/// Whether the live Secret already holds exactly what we would write. With
/// `hmac`, the data itself is compared too; without, only the markers and
/// metadata (for a Secret whose data was already verified at this version).
pub fn up_to_date(
    live: &Secret,
    es: &ExternalSecret,
    desired: &Desired,
    fingerprint: &str,
    hmac: Option<&DataHmac>,
) -> bool {
    let policy = es.spec.target.creation_policy;
    if live.annotations().get(HMAC_ANNOTATION).map(String::as_str) != Some(fingerprint)
        || live.annotations().get(OWNER_ANNOTATION) != Some(&es.name_any())
        || live.labels().get(MANAGED_LABEL).map(String::as_str) != Some(MANAGED_VALUE)
    {
        return false;
    }
    if let Some(hmac) = hmac {
        let empty = BTreeMap::new();
        let live_data = live.data.as_ref().unwrap_or(&empty);
        let mut ours = Vec::with_capacity(desired.data.len());
        for key in desired.data.keys() {
            match live_data.get(key) {
                Some(value) => ours.push((key, &value.0)),
                None => return false,
            }
        }
        if hmac.of(ours) != fingerprint {
            return false;
        }
    }
    let subset = |want: &BTreeMap<String, String>, have: &BTreeMap<String, String>| {
        want.iter().all(|(k, v)| have.get(k) == Some(v))
    };
    if !subset(&desired.labels, live.labels()) || !subset(&desired.annotations, live.annotations())
    {
        return false;
    }
    match policy {
        CreationPolicy::Merge => true,
        CreationPolicy::Orphan => live.type_.as_deref().unwrap_or("Opaque") == desired.type_,
        CreationPolicy::Owner => {
            live.type_.as_deref().unwrap_or("Opaque") == desired.type_
                && live
                    .owner_references()
                    .iter()
                    .any(|r| Some(&r.uid) == es.meta().uid.as_ref() && r.controller == Some(true))
        }
    }
}

/// The server-side apply document (data base64-encoded; the caller wipes it).
pub fn apply_document(es: &ExternalSecret, desired: Option<&Desired>, fingerprint: &str) -> Value {
    let policy = es.spec.target.creation_policy;
    let mut labels = desired.map(|d| d.labels.clone()).unwrap_or_default();
    labels.insert(MANAGED_LABEL.to_string(), MANAGED_VALUE.to_string());
    let mut annotations = desired.map(|d| d.annotations.clone()).unwrap_or_default();
    annotations.insert(OWNER_ANNOTATION.to_string(), es.name_any());
    annotations.insert(HMAC_ANNOTATION.to_string(), fingerprint.to_string());
    let mut metadata = json!({
        "name": target_name(es),
        "namespace": es.namespace(),
        "labels": labels,
        "annotations": annotations,
    });
    if policy == CreationPolicy::Owner
        && let Some(owner) = es.controller_owner_ref(&())
    {
        metadata["ownerReferences"] = json!([owner]);
    }
    let mut document = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
    });
    if let Some(desired) = desired {
        let data: serde_json::Map<String, Value> = desired
            .data
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    Value::String(base64::engine::general_purpose::STANDARD.encode(v)),
                )
            })
            .collect();
        document["data"] = Value::Object(data);
        if policy != CreationPolicy::Merge {
            document["type"] = Value::String(desired.type_.clone());
        }
    }
    document
}

fn wipe(document: &mut Value) {
    if let Some(Value::Object(data)) = document.get_mut("data") {
        for value in data.values_mut() {
            if let Value::String(text) = value {
                text.zeroize();
            }
        }
    }
}

/// Applies the document; returns the Secret's new resourceVersion.
pub async fn apply(
    client: &kube::Client,
    es: &ExternalSecret,
    desired: Option<&Desired>,
    fingerprint: &str,
) -> Result<Option<String>, kube::Error> {
    let namespace = es.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let mut document = apply_document(es, desired, fingerprint);
    let result = api
        .patch(
            &target_name(es),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&document),
        )
        .await;
    wipe(&mut document);
    let mut written = result?;
    wipe_secret(&mut written);
    Ok(written.resource_version())
}

/// Deletes the Secret (only the exact object we saw).
pub async fn delete(client: &kube::Client, live: &Secret) -> Result<(), kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &live.namespace().unwrap_or_default());
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: live.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&live.name_any(), &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Reads the target Secret directly (it may exist without our label).
pub async fn get(
    client: &kube::Client,
    es: &ExternalSecret,
) -> Result<Option<Secret>, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &es.namespace().unwrap_or_default());
    api.get_opt(&target_name(es)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use kube::api::ObjectMeta;
    use zeroize::Zeroizing;

    use crate::api::external_secret::{ExternalSecretSpec, ExternalSecretTarget};

    fn es(policy: CreationPolicy) -> ExternalSecret {
        let mut es = ExternalSecret::new(
            "db",
            ExternalSecretSpec {
                target: ExternalSecretTarget {
                    creation_policy: policy,
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        es.metadata.namespace = Some("app".into());
        es.metadata.uid = Some("uid-1".into());
        es
    }

    fn desired() -> Desired {
        Desired {
            data: BTreeMap::from([("password".to_string(), Zeroizing::new(b"pw".to_vec()))]),
            type_: "Opaque".into(),
            labels: BTreeMap::from([("team".to_string(), "a".to_string())]),
            annotations: BTreeMap::new(),
        }
    }

    fn secret(annotations: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some("db".into()),
                namespace: Some("app".into()),
                annotations: Some(
                    annotations
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn foreign_secrets_are_never_adopted() {
        let unmanaged = secret(&[]);
        assert_eq!(
            ownership(None, "db", CreationPolicy::Owner),
            Ownership::Absent
        );
        assert!(matches!(
            ownership(Some(&unmanaged), "db", CreationPolicy::Owner),
            Ownership::Foreign(_)
        ));
        assert!(matches!(
            ownership(Some(&unmanaged), "db", CreationPolicy::Orphan),
            Ownership::Foreign(_)
        ));
        assert_eq!(
            ownership(Some(&unmanaged), "db", CreationPolicy::Merge),
            Ownership::Ours
        );
        let other = secret(&[(OWNER_ANNOTATION, "other")]);
        for policy in [
            CreationPolicy::Owner,
            CreationPolicy::Merge,
            CreationPolicy::Orphan,
        ] {
            assert!(matches!(
                ownership(Some(&other), "db", policy),
                Ownership::Foreign(m) if m.contains("other")
            ));
        }
        let ours = secret(&[(OWNER_ANNOTATION, "db")]);
        assert_eq!(
            ownership(Some(&ours), "db", CreationPolicy::Owner),
            Ownership::Ours
        );
    }

    #[test]
    fn apply_documents_carry_owner_markers_and_policy_specific_fields() {
        let owner = apply_document(&es(CreationPolicy::Owner), Some(&desired()), "f1");
        assert_eq!(owner["metadata"]["labels"][MANAGED_LABEL], MANAGED_VALUE);
        assert_eq!(owner["metadata"]["labels"]["team"], "a");
        assert_eq!(owner["metadata"]["annotations"][OWNER_ANNOTATION], "db");
        assert_eq!(owner["metadata"]["annotations"][HMAC_ANNOTATION], "f1");
        assert_eq!(owner["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        assert_eq!(owner["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(owner["data"]["password"], "cHc=");
        assert_eq!(owner["type"], "Opaque");
        let merge = apply_document(&es(CreationPolicy::Merge), Some(&desired()), "f1");
        assert!(merge["metadata"].get("ownerReferences").is_none());
        assert!(merge.get("type").is_none(), "Merge leaves the type alone");
        let orphan = apply_document(&es(CreationPolicy::Orphan), Some(&desired()), "f1");
        assert!(orphan["metadata"].get("ownerReferences").is_none());
        let emptied = apply_document(&es(CreationPolicy::Merge), None, "f0");
        assert!(emptied.get("data").is_none());
    }

    #[test]
    fn up_to_date_needs_same_fingerprint_data_and_markers() {
        let hmac = DataHmac::from_key(vec![7; 32]);
        let es = es(CreationPolicy::Orphan);
        let want = desired();
        let fingerprint = hmac.of(want.data.iter());
        let mut live = secret(&[(OWNER_ANNOTATION, "db"), (HMAC_ANNOTATION, &fingerprint)]);
        live.metadata.labels = Some(BTreeMap::from([
            (MANAGED_LABEL.to_string(), MANAGED_VALUE.to_string()),
            ("team".to_string(), "a".to_string()),
        ]));
        live.data = Some(BTreeMap::from([
            ("password".to_string(), ByteString(b"pw".to_vec())),
            ("foreign".to_string(), ByteString(b"x".to_vec())),
        ]));
        live.type_ = Some("Opaque".into());
        assert!(up_to_date(&live, &es, &want, &fingerprint, Some(&hmac)));

        let mut drifted = live.clone();
        drifted
            .data
            .as_mut()
            .expect("data")
            .insert("password".into(), ByteString(b"edited".to_vec()));
        assert!(
            !up_to_date(&drifted, &es, &want, &fingerprint, Some(&hmac)),
            "data drift"
        );
        let mut relabelled = live.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .expect("labels")
            .remove("team");
        assert!(!up_to_date(
            &relabelled,
            &es,
            &want,
            &fingerprint,
            Some(&hmac)
        ));
        assert!(
            !up_to_date(&live, &es, &want, "other", Some(&hmac)),
            "new data"
        );
        assert!(
            up_to_date(&drifted, &es, &want, &fingerprint, None),
            "data not compared"
        );
        let owner = super::tests::es(CreationPolicy::Owner);
        assert!(
            !up_to_date(&live, &owner, &want, &fingerprint, Some(&hmac)),
            "needs ownerRef"
        );
    }
}
