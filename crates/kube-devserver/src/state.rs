//! Everything behind the server's one lock: the objects and the served resources.

use std::sync::Arc;

use serde_json::Value;

use super::crd;
use super::object;
use super::registry::{Registry, ResourceType};
use super::store::Store;

pub struct State {
    pub store: Store,
    pub registry: Registry,
}

impl State {
    pub fn new(history: usize, broadcast: usize) -> Self {
        Self {
            store: Store::new(history, broadcast),
            registry: Registry::with_builtins(),
        }
    }

    /// The type a CRD-backed or built-in object is written through when the server acts on its own
    /// (garbage collection, namespace cleanup).
    pub fn preferred(&self, storage: &(String, String)) -> Option<Arc<ResourceType>> {
        self.registry.preferred_for_storage(storage)
    }

    /// A namespace object, if it exists.
    pub fn namespace(&self, name: &str) -> Option<Arc<Value>> {
        self.store
            .get(&(String::new(), "namespaces".into()), "", name)
    }

    /// Re-derives the resources one CRD serves from its stored state.
    pub fn sync_crd(&mut self, crd_name: &str) {
        self.registry.remove_crd(crd_name);
        let Some(stored) = self.store.get(
            &(
                "apiextensions.k8s.io".into(),
                "customresourcedefinitions".into(),
            ),
            "",
            crd_name,
        ) else {
            return;
        };
        let established = stored["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Established" && c["status"] == "True")
        });
        if established {
            for t in crd::resource_types(&stored) {
                self.registry.insert(t);
            }
        }
    }

    /// The CRD behind a custom resource type, if it is being deleted.
    pub fn crd_terminating(&self, rt: &ResourceType) -> bool {
        rt.custom().is_some_and(|c| {
            self.store
                .get(
                    &(
                        "apiextensions.k8s.io".into(),
                        "customresourcedefinitions".into(),
                    ),
                    "",
                    &c.crd_name,
                )
                .is_some_and(|crd| object::deletion_timestamp(&crd).is_some())
        })
    }
}
