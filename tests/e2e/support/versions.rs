//! Every version of the Secrets (or ConfigMaps) of a namespace, as a watch straight to the API
//! server saw them (never through a fault proxy), so a test can check that no Secret was ever
//! half-written, emptied or deleted on the way — not only how it ended.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher;
use kube::{Api, Resource, ResourceExt};

/// One version of an object (or its deletion).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    pub name: String,
    pub resource_version: String,
    /// Its data as text (a test's values are UTF-8).
    pub data: BTreeMap<String, String>,
    pub deleted: bool,
}

impl Version {
    fn of<K: Resource>(object: &K, data: BTreeMap<String, String>, deleted: bool) -> Version {
        Version {
            name: object.name_any(),
            resource_version: object.resource_version().unwrap_or_default(),
            data,
            deleted,
        }
    }
}

/// A Secret's data as text.
pub fn data_of(secret: &Secret) -> BTreeMap<String, String> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), String::from_utf8_lossy(&v.0).into_owned()))
        .collect()
}

/// Records every version while it lives; stops watching when dropped.
pub struct Versions {
    kind: String,
    namespace: String,
    seen: Arc<Mutex<Vec<Version>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Versions {
    /// Watches the Secrets of `namespace`, from when the watch listed what exists.
    pub async fn secrets(client: &kube::Client, namespace: &str) -> Versions {
        Versions::start::<Secret>(client, namespace, data_of).await
    }

    /// Watches the ConfigMaps of `namespace`, from when the watch listed what exists.
    pub async fn config_maps(client: &kube::Client, namespace: &str) -> Versions {
        Versions::start::<ConfigMap>(client, namespace, |cm| cm.data.clone().unwrap_or_default())
            .await
    }

    async fn start<K>(
        client: &kube::Client,
        namespace: &str,
        data: fn(&K) -> BTreeMap<String, String>,
    ) -> Versions
    where
        K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned
            + Send
            + 'static,
    {
        let api: Api<K> = Api::namespaced(client.clone(), namespace);
        let seen = Arc::new(Mutex::new(Vec::<Version>::new()));
        let (listed, ready) = tokio::sync::oneshot::channel();
        let task = tokio::spawn({
            let seen = seen.clone();
            async move {
                let mut listed = Some(listed);
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    let version = match event {
                        Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                            Version::of(&o, data(&o), false)
                        }
                        Ok(watcher::Event::Delete(o)) => Version::of(&o, data(&o), true),
                        Ok(watcher::Event::InitDone) => {
                            if let Some(listed) = listed.take() {
                                let _ = listed.send(());
                            }
                            continue;
                        }
                        Ok(watcher::Event::Init) | Err(_) => continue,
                    };
                    let mut seen = seen.lock().expect("versions");
                    // A relist repeats versions already seen.
                    if !seen.iter().any(|v| {
                        v.name == version.name
                            && v.resource_version == version.resource_version
                            && v.deleted == version.deleted
                    }) {
                        seen.push(version);
                    }
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .unwrap_or_else(|_| panic!("the watch of {} in {namespace} never listed", K::kind(&())))
            .expect("the watch stopped");
        Versions {
            kind: K::kind(&()).to_string(),
            namespace: namespace.to_string(),
            seen,
            task,
        }
    }

    /// Every version seen so far, in order.
    pub fn all(&self) -> Vec<Version> {
        self.seen.lock().expect("versions").clone()
    }

    /// Panics naming the first version of an object named in `names` that it refuses: a
    /// deletion, or data that is not whole (`whole` gets the name and the data). Returns how many
    /// versions it checked.
    pub fn assert_whole(
        &self,
        names: &[&str],
        whole: impl Fn(&str, &BTreeMap<String, String>) -> bool,
    ) -> usize {
        let versions: Vec<Version> = self
            .all()
            .into_iter()
            .filter(|v| names.contains(&v.name.as_str()))
            .collect();
        for version in &versions {
            assert!(
                !version.deleted,
                "{} {}/{} was deleted (resourceVersion {})",
                self.kind, self.namespace, version.name, version.resource_version
            );
            assert!(
                whole(&version.name, &version.data),
                "{} {}/{} was seen half-written or emptied at resourceVersion {}: keys {:?}",
                self.kind,
                self.namespace,
                version.name,
                version.resource_version,
                version.data.keys().collect::<Vec<_>>()
            );
        }
        versions.len()
    }
}

impl Drop for Versions {
    fn drop(&mut self) {
        self.task.abort();
    }
}
