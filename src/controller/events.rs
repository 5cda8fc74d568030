//! Event publishing spread over independent recorders.
//!
//! kube-runtime's [`Recorder`] keeps the Events of the last minutes to count repeats as a series,
//! and on every publish walks that whole cache under one lock. At thousands of objects that walk
//! dominates a reconcile and serializes them all; a recorder per slice of objects keeps each walk
//! short and the series intact, since an Event's series key includes the object it is about.

use std::hash::{BuildHasher, RandomState};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder, Reporter};

/// Enough that a recorder holds a few hundred Events at 10,000 objects.
const SLICES: usize = 64;

pub struct Recorders {
    slices: Vec<Recorder>,
    hasher: RandomState,
}

impl Recorders {
    pub fn new(client: &kube::Client, reporter: &Reporter) -> Self {
        Self {
            slices: (0..SLICES)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
            hasher: RandomState::new(),
        }
    }

    pub async fn publish(
        &self,
        event: &Event,
        reference: &ObjectReference,
    ) -> Result<(), kube::Error> {
        self.slices[self.slice_of(reference)]
            .publish(event, reference)
            .await
    }

    /// The recorder of an object: always the same one, so its repeated Events form a series.
    fn slice_of(&self, reference: &ObjectReference) -> usize {
        let hash = self.hasher.hash_one((
            &reference.kind,
            &reference.namespace,
            &reference.name,
            &reference.uid,
        ));
        (hash % self.slices.len() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_api;
    use kube::runtime::events::EventType;
    use serde_json::Value;

    fn reference(i: usize) -> ObjectReference {
        ObjectReference {
            kind: Some("SealedSecret".into()),
            namespace: Some(format!("ns-{}", i % 10)),
            name: Some(format!("sealed-{i}")),
            uid: Some(format!("uid-{i}")),
            ..ObjectReference::default()
        }
    }

    #[tokio::test]
    async fn a_repeated_event_of_an_object_is_counted_as_a_series() {
        let (mut api, run) = test_api::spawn(|ctx| async move {
            let event = Event {
                type_: EventType::Warning,
                reason: "DecryptFailed".into(),
                note: Some("no key opens spec.encryptedData.password".into()),
                action: "Unseal".into(),
                secondary: None,
            };
            for other in 0..20 {
                ctx.recorder.publish(&event, &reference(other)).await?;
            }
            ctx.recorder.publish(&event, &reference(3)).await
        });
        let mut first = Value::Null;
        for other in 0..20 {
            let event = api.expect_event(&format!("ns-{}", other % 10)).await;
            if other == 3 {
                first = event;
            }
        }
        let name = first["metadata"]["name"].as_str().expect("named");
        let repeat = api
            .expect_merge_patch(&format!(
                "/apis/events.k8s.io/v1/namespaces/ns-3/events/{name}"
            ))
            .await;
        assert_eq!(repeat.body["series"]["count"], 2);
        repeat.echo();
        api.finish(run).await.expect("published");
    }

    #[tokio::test]
    async fn objects_spread_over_every_recorder() {
        let (service, _) = tower_test::mock::pair::<
            http::Request<kube::client::Body>,
            http::Response<kube::client::Body>,
        >();
        let client = kube::Client::new(service, "default");
        let reporter = Reporter {
            controller: "sigil".into(),
            instance: None,
        };
        let recorders = Recorders::new(&client, &reporter);
        let mut counts = vec![0usize; SLICES];
        for i in 0..10_000 {
            counts[recorders.slice_of(&reference(i))] += 1;
        }
        let mean = 10_000 / SLICES;
        assert!(
            counts.iter().all(|&c| c > mean / 2 && c < mean * 2),
            "{counts:?}"
        );
    }
}
