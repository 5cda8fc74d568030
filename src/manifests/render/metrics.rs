//! Render series: runs and their duration by renderer and outcome, and cache hits.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::render::RendererKind;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    renderer: String,
    /// `rendered` or a fixed failure reason.
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RendererLabels {
    renderer: String,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.01, 2.0, 14))
}

pub struct RenderMetrics {
    runs: Family<RunLabels, Counter>,
    durations: Family<RunLabels, Histogram, fn() -> Histogram>,
    cache_hits: Family<RendererLabels, Counter>,
}

impl Default for RenderMetrics {
    fn default() -> Self {
        Self {
            runs: Family::default(),
            durations: Family::new_with_constructor(histogram as fn() -> Histogram),
            cache_hits: Family::default(),
        }
    }
}

impl RenderMetrics {
    /// Adds the series to `registry` (prefixed `sigil_` there).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "render_runs",
            "Renderer processes run, by renderer and outcome (rendered or the failure reason)",
            self.runs.clone(),
        );
        registry.register(
            "render_duration_seconds",
            "How long renderer processes took, by renderer and outcome",
            self.durations.clone(),
        );
        registry.register(
            "render_cache_hits",
            "Renders answered from the cache, by renderer",
            self.cache_hits.clone(),
        );
    }

    pub fn rendered(&self, renderer: RendererKind, took: Duration, failure: Option<&str>) {
        let labels = RunLabels {
            renderer: renderer.as_str().to_string(),
            outcome: failure.unwrap_or("rendered").to_string(),
        };
        self.runs.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    pub fn cache_hit(&self, renderer: RendererKind) {
        self.cache_hits
            .get_or_create(&RendererLabels {
                renderer: renderer.as_str().to_string(),
            })
            .inc();
    }
}
