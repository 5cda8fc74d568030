//! Syncs woken when a ConfigMap or Secret they read variables from changes
//! (`spec.postBuild.substituteFrom`). Only objects labelled [`WATCH_LABEL`]`: enabled` are
//! watched, as Flux watches only `reconcile.fluxcd.io/watch: Enabled` ones: the controller never
//! streams every Secret of the cluster. A woken Sync's last run is forgotten so that it runs now
//! instead of at its next interval.

use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::post_build::SubstituteKind;
use crate::api::sync::ManifestSync;
use crate::controller::schedule::Schedule;

/// The label that makes a ConfigMap or Secret wake the Syncs reading variables from it.
pub const WATCH_LABEL: &str = "sigil.dev/watch";

/// The watcher configuration for such ConfigMaps and Secrets.
pub fn config() -> watcher::Config {
    watcher::Config::default().labels(&format!("{WATCH_LABEL}=enabled"))
}

/// The Syncs of `object`'s namespace whose `substituteFrom` names it, their last runs forgotten.
pub fn woken(
    syncs: &Store<ManifestSync>,
    schedule: &Schedule,
    kind: SubstituteKind,
    object: &impl ResourceExt,
) -> Vec<ObjectRef<ManifestSync>> {
    let namespace = object.namespace();
    let name = object.name_any();
    syncs
        .state()
        .into_iter()
        .filter(|s| s.namespace() == namespace)
        .filter(|s| {
            s.spec.post_build.as_ref().is_some_and(|p| {
                p.substitute_from
                    .iter()
                    .any(|r| r.kind == kind && r.name == name)
            })
        })
        .map(|s| {
            let key = format!("{}/{}", s.namespace().unwrap_or_default(), s.name_any());
            schedule.forget(&key);
            ObjectRef::from_obj(&*s)
        })
        .collect()
}
