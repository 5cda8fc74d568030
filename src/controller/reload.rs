//! Rotation reaches the workloads: when a Secret's data really changes, the
//! Deployments, StatefulSets and DaemonSets of its namespace that opt in with
//! the annotation `sigil.dev/reload: "true"` and use the Secret (env
//! `secretKeyRef`, `envFrom`, `secret` volumes, projected volumes) get a
//! rollout restart: their pod template's annotation [`TEMPLATE_ANNOTATION`]
//! is set to the new data fingerprint.
//!
//! Changes are debounced per namespace: every change within the debounce
//! window after the first one joins the same restart, so several Secrets
//! rotating together restart a workload once. Controllers report changes with
//! [`Reloader::secret_changed`] only when the data differs from what the
//! Secret held before (never on first creation, never because the controller
//! restarted) — the ExternalSecret and SealedSecret controllers both do.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::schedule::sleep_until;

/// Workloads opt in with this annotation set to `"true"`.
pub const RELOAD_ANNOTATION: &str = "sigil.dev/reload";
/// Set on the pod template to roll the workload.
pub const TEMPLATE_ANNOTATION: &str = "sigil.dev/secrets-hmac";

struct Change {
    namespace: String,
    secret: String,
    fingerprint: String,
}

/// Hands Secret changes to the debounced restarter. Cheap to clone.
#[derive(Clone)]
pub struct Reloader {
    tx: mpsc::UnboundedSender<Change>,
    rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<Change>>>>,
    debounce: Duration,
    /// Keys the fingerprints of [`Reloader::data_replaced`] (never leaves the process).
    key: Arc<zeroize::Zeroizing<[u8; 32]>>,
}

impl Reloader {
    pub fn new(debounce: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
        Self {
            tx,
            rx: Arc::new(Mutex::new(Some(rx))),
            debounce,
            key: Arc::new(key),
        }
    }

    /// A keyed fingerprint of Secret data, for controllers that keep none of their
    /// own (SealedSecrets): compare the live data's with the new data's and call
    /// [`Reloader::secret_changed`] after a write that changed it.
    pub fn fingerprint<'a>(
        &self,
        data: impl IntoIterator<Item = (&'a String, &'a [u8])>,
    ) -> String {
        use hmac::Mac;
        let mut sorted: Vec<(&String, &[u8])> = data.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&self.key[..]) else {
            return String::new();
        };
        for (key, value) in sorted {
            mac.update(&(key.len() as u64).to_be_bytes());
            mac.update(key.as_bytes());
            mac.update(&(value.len() as u64).to_be_bytes());
            mac.update(value);
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// Reports that the data of Secret `namespace/secret` changed to the
    /// (non-secret) `fingerprint`. Call only for real changes of existing data.
    pub fn secret_changed(&self, namespace: &str, secret: &str, fingerprint: &str) {
        let _ = self.tx.send(Change {
            namespace: namespace.to_string(),
            secret: secret.to_string(),
            fingerprint: fingerprint.to_string(),
        });
    }

    /// Restarts workloads until `shutdown`. Only the first call runs; later ones return at once.
    pub async fn run(&self, client: kube::Client, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().ok().and_then(|mut rx| rx.take()) else {
            return;
        };
        let mut pending: HashMap<String, (Instant, BTreeMap<String, String>)> = HashMap::new();
        loop {
            let next = pending.values().map(|(deadline, _)| *deadline).min();
            tokio::select! {
                () = shutdown.cancelled() => return,
                change = rx.recv() => {
                    let Some(change) = change else { return };
                    let entry = pending
                        .entry(change.namespace)
                        .or_insert_with(|| (Instant::now() + self.debounce, BTreeMap::new()));
                    entry.1.insert(change.secret, change.fingerprint);
                }
                () = sleep_until(next) => {
                    let now = Instant::now();
                    let ready: Vec<String> = pending
                        .iter()
                        .filter(|(_, (deadline, _))| *deadline <= now)
                        .map(|(ns, _)| ns.clone())
                        .collect();
                    for namespace in ready {
                        if let Some((_, secrets)) = pending.remove(&namespace) {
                            restart_users(&client, &namespace, &secrets).await;
                        }
                    }
                }
            }
        }
    }
}

/// Names of the Secrets a pod spec uses.
pub fn secrets_used(pod: &PodSpec) -> Vec<String> {
    let mut names = Vec::new();
    let containers = pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten());
    for container in containers {
        for env in container.env.iter().flatten() {
            if let Some(r) = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
            {
                names.push(r.name.clone());
            }
        }
        for from in container.env_from.iter().flatten() {
            if let Some(r) = &from.secret_ref {
                names.push(r.name.clone());
            }
        }
    }
    for volume in pod.volumes.iter().flatten() {
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            names.push(name);
        }
        for source in volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten())
        {
            if let Some(secret) = &source.secret {
                names.push(secret.name.clone());
            }
        }
    }
    names.sort();
    names.dedup();
    names
}

/// The annotation value for a set of changed Secrets a workload uses.
pub fn template_value(changed: &BTreeMap<&str, &str>) -> String {
    if let [(_, fingerprint)] = changed.iter().collect::<Vec<_>>().as_slice() {
        return fingerprint.to_string();
    }
    let mut digest = Sha256::new();
    for (name, fingerprint) in changed {
        digest.update(name.as_bytes());
        digest.update(b"=");
        digest.update(fingerprint.as_bytes());
        digest.update(b";");
    }
    hex::encode(digest.finalize())
}

async fn restart_users(client: &kube::Client, namespace: &str, secrets: &BTreeMap<String, String>) {
    restart_kind::<Deployment>(client, namespace, secrets, |d| {
        d.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    })
    .await;
    restart_kind::<StatefulSet>(client, namespace, secrets, |s| {
        s.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    })
    .await;
    restart_kind::<DaemonSet>(client, namespace, secrets, |d| {
        d.spec.as_ref().and_then(|s| s.template.spec.as_ref())
    })
    .await;
}

async fn restart_kind<K>(
    client: &kube::Client,
    namespace: &str,
    secrets: &BTreeMap<String, String>,
    pod_spec: impl Fn(&K) -> Option<&PodSpec>,
) where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let list = match api.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(error) => {
            tracing::warn!(%namespace, %kind, %error, "cannot list workloads to restart");
            return;
        }
    };
    for workload in list.items {
        if workload
            .annotations()
            .get(RELOAD_ANNOTATION)
            .map(String::as_str)
            != Some("true")
        {
            continue;
        }
        let Some(pod) = pod_spec(&workload) else {
            continue;
        };
        let used = secrets_used(pod);
        let changed: BTreeMap<&str, &str> = secrets
            .iter()
            .filter(|(name, _)| used.contains(name))
            .map(|(name, fingerprint)| (name.as_str(), fingerprint.as_str()))
            .collect();
        if changed.is_empty() {
            continue;
        }
        let patch = serde_json::json!({
            "spec": {"template": {"metadata": {"annotations": {
                TEMPLATE_ANNOTATION: template_value(&changed)
            }}}}
        });
        let name = workload.name_any();
        match api
            .patch(
                &name,
                &PatchParams::apply(crate::api::FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await
        {
            Ok(_) => {
                tracing::info!(%namespace, %kind, %name, secrets = ?changed.keys().collect::<Vec<_>>(), "restarted workload after Secret rotation")
            }
            Err(error) => {
                tracing::warn!(%namespace, %kind, %name, %error, "cannot restart workload")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, EnvFromSource, EnvVar, EnvVarSource, ProjectedVolumeSource, SecretEnvSource,
        SecretKeySelector, SecretProjection, SecretVolumeSource, Volume, VolumeProjection,
    };

    #[test]
    fn finds_secrets_in_env_env_from_volumes_and_projections() {
        let pod = PodSpec {
            containers: vec![Container {
                name: "app".into(),
                env: Some(vec![EnvVar {
                    name: "PW".into(),
                    value_from: Some(EnvVarSource {
                        secret_key_ref: Some(SecretKeySelector {
                            name: "env-secret".into(),
                            key: "pw".into(),
                            optional: None,
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            init_containers: Some(vec![Container {
                name: "init".into(),
                env_from: Some(vec![EnvFromSource {
                    secret_ref: Some(SecretEnvSource {
                        name: "env-from-secret".into(),
                        optional: None,
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            volumes: Some(vec![
                Volume {
                    name: "v".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("volume-secret".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                Volume {
                    name: "p".into(),
                    projected: Some(ProjectedVolumeSource {
                        sources: Some(vec![VolumeProjection {
                            secret: Some(SecretProjection {
                                name: "projected-secret".into(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        assert_eq!(
            secrets_used(&pod),
            [
                "env-from-secret",
                "env-secret",
                "projected-secret",
                "volume-secret"
            ]
        );
    }

    #[tokio::test]
    async fn fingerprints_tell_data_apart_and_changes_reach_the_restarter() {
        let reloader = Reloader::new(Duration::from_secs(1));
        let mut rx = reloader.rx.lock().expect("lock").take().expect("receiver");
        let key = "password".to_string();
        let one = reloader.fingerprint(vec![(&key, &b"pw-1"[..])]);
        assert_eq!(one, reloader.fingerprint(vec![(&key, &b"pw-1"[..])]));
        let two = reloader.fingerprint(vec![(&key, &b"pw-2"[..])]);
        assert_ne!(one, two);
        reloader.secret_changed("app", "db", &two);
        let change = rx.try_recv().expect("a change");
        assert_eq!(
            (change.namespace.as_str(), change.secret.as_str()),
            ("app", "db")
        );
        assert_eq!(change.fingerprint.len(), 64);
        assert!(!change.fingerprint.contains("pw"));
    }

    #[test]
    fn one_changed_secret_gives_its_fingerprint_several_a_combined_one() {
        let one = BTreeMap::from([("a", "f1")]);
        assert_eq!(template_value(&one), "f1");
        let two = BTreeMap::from([("a", "f1"), ("b", "f2")]);
        let combined = template_value(&two);
        assert_eq!(combined.len(), 64);
        assert_ne!(
            combined,
            template_value(&BTreeMap::from([("a", "f1"), ("b", "f3")]))
        );
    }
}
