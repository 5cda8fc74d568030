//! Prometheus metrics shared by the controllers, served on `/metrics` in OpenMetrics format.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming a controller.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

/// Labels of a failed reconcile: the controller and a fixed reason (never a value).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: String,
    pub reason: String,
}

/// Labels of a call to a decrypting route: the route and a fixed outcome word.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcomeLabels {
    pub route: String,
    pub outcome: String,
}

/// Labels of an outcome or action: a fixed word (`fetched`, `created`, `unauthorized`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The registry and the reconcile series every controller reports.
pub struct Metrics {
    registry: Mutex<Registry>,
    reconciles: Family<ControllerLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    durations: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    git_fetches: Family<OutcomeLabels, Counter>,
    applied_objects: Family<OutcomeLabels, Counter>,
    webhook_calls: Family<OutcomeLabels, Counter>,
    decrypt_calls: Family<RouteOutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sigil");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let durations =
            Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram as fn() -> Histogram,
            );
        registry.register(
            "reconciles",
            "Reconciles run, per controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, per controller and reason",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles took",
            durations.clone(),
        );
        let git_fetches = Family::<OutcomeLabels, Counter>::default();
        let applied_objects = Family::<OutcomeLabels, Counter>::default();
        let webhook_calls = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "git_fetches",
            "GitSource fetches by outcome: fetched, unchanged, or the failure reason",
            git_fetches.clone(),
        );
        registry.register(
            "applied_objects",
            "Objects Syncs handled, by outcome: created, configured, unchanged, skipped, pruned",
            applied_objects.clone(),
        );
        registry.register(
            "webhook_calls",
            "Webhook calls by outcome: accepted, unauthorized, rate_limited, too_large, unavailable",
            webhook_calls.clone(),
        );
        let decrypt_calls = Family::<RouteOutcomeLabels, Counter>::default();
        registry.register(
            "decrypt_calls",
            "Calls to the decrypting routes (verify, rotate) by outcome: admitted, rate_limited, busy, too_large",
            decrypt_calls.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            reconciles,
            errors,
            durations,
            git_fetches,
            applied_objects,
            webhook_calls,
            decrypt_calls,
        }
    }
}

impl Metrics {
    /// Records one reconcile; `error_reason` is a fixed reason string, never a message.
    pub fn reconciled(&self, controller: &str, took: Duration, error_reason: Option<&str>) {
        let labels = ControllerLabels {
            controller: controller.to_string(),
        };
        self.reconciles.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some(reason) = error_reason {
            self.errors
                .get_or_create(&ErrorLabels {
                    controller: controller.to_string(),
                    reason: reason.to_string(),
                })
                .inc();
        }
    }

    /// Records one GitSource fetch; `outcome` is a fixed word or reason.
    pub fn git_fetch(&self, outcome: &str) {
        self.git_fetches
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records `count` objects a Sync handled with `outcome` (created, configured, ...).
    pub fn objects_applied(&self, outcome: &str, count: usize) {
        if count > 0 {
            self.applied_objects
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.to_string(),
                })
                .inc_by(count as u64);
        }
    }

    /// Records one webhook call.
    pub fn webhook_call(&self, outcome: &str) {
        self.webhook_calls
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Records one call to a decrypting route (`verify`, `rotate`).
    pub fn decrypt_call(&self, route: &str, outcome: &str) {
        self.decrypt_calls
            .get_or_create(&RouteOutcomeLabels {
                route: route.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Lets a controller register series of its own.
    pub fn register(&self, register: impl FnOnce(&mut Registry)) {
        if let Ok(mut registry) = self.registry.lock() {
            register(&mut registry);
        }
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(registry) = self.registry.lock() {
            // Writing into a String cannot fail.
            let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_series_appear_in_the_exposition() {
        let metrics = Metrics::default();
        metrics.reconciled("sealedsecret", Duration::from_millis(3), None);
        metrics.reconciled(
            "sealedsecret",
            Duration::from_millis(5),
            Some("DecryptFailed"),
        );
        let text = metrics.encode();
        assert!(
            text.contains(r#"sigil_reconciles_total{controller="sealedsecret"} 2"#),
            "{text}"
        );
        assert!(text.contains(r#"sigil_reconcile_errors_total{controller="sealedsecret",reason="DecryptFailed"} 1"#), "{text}");
        assert!(
            text.contains("sigil_reconcile_duration_seconds_count{controller=\"sealedsecret\"} 2"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn git_sync_and_webhook_series_count_by_outcome() {
        let metrics = Metrics::default();
        metrics.git_fetch("fetched");
        metrics.git_fetch("unchanged");
        metrics.git_fetch("unchanged");
        metrics.objects_applied("created", 3);
        metrics.objects_applied("pruned", 0);
        metrics.webhook_call("unauthorized");
        let text = metrics.encode();
        assert!(
            text.contains(r#"sigil_git_fetches_total{outcome="unchanged"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"sigil_applied_objects_total{outcome="created"} 3"#),
            "{text}"
        );
        assert!(
            !text.contains(r#"outcome="pruned""#),
            "zero counts add no series: {text}"
        );
        assert!(
            text.contains(r#"sigil_webhook_calls_total{outcome="unauthorized"} 1"#),
            "{text}"
        );
    }
}
