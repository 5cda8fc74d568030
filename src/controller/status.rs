//! What a reconcile reports about its object: the status subresource and Events.

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::Event;
use kube::{Resource, ResourceExt};

use super::Context;

/// Events API servers refuse notes longer than 1 kB.
const MAX_NOTE: usize = 1000;

/// The status of an object could not be written.
#[derive(Debug, thiserror::Error)]
#[error("{object}: cannot write status: {source}")]
pub struct StatusError {
    /// `Kind namespace/name`.
    pub object: String,
    #[source]
    pub source: kube::Error,
}

/// Merge-patches the status of a namespaced object (`None` fields of `status` that serialize
/// as `null` are cleared).
pub async fn patch_status<K>(
    client: &kube::Client,
    object: &K,
    status: &impl serde::Serialize,
) -> Result<(), StatusError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let patch = serde_json::json!({ "status": status });
    Api::<K>::namespaced(client.clone(), &namespace)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| StatusError {
            object: format!("{} {namespace}/{name}", K::kind(&())),
            source,
        })?;
    Ok(())
}

/// Publishes an Event about `reference`, its note cut to what the API accepts. Events are best
/// effort: a failure is only logged.
pub async fn publish(ctx: &Context, mut event: Event, reference: &ObjectReference) {
    event.note = event.note.map(|note| truncate(&note, MAX_NOTE));
    if let Err(error) = ctx.recorder.publish(&event, reference).await {
        tracing::debug!(%error, reason = %event.reason, "cannot publish event");
    }
}

/// Cuts a message to at most `max` bytes on a character boundary.
fn truncate(message: &str, max: usize) -> String {
    if message.len() <= max {
        return message.to_string();
    }
    let mut end = max;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("ok", 10), "ok");
    }
}
