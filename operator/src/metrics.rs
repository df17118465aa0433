//! The operator's Prometheus metrics. Labels are fixed strings (controller name, error category), never
//! object names or error texts.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    controller: &'static str,
    category: &'static str,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// Reconcile counters and timings.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ControllerLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    applied: Family<ControllerLabels, Counter>,
    drift: Family<ControllerLabels, Counter>,
    leader: prometheus_client::metrics::gauge::Gauge,
    pass_waiting: prometheus_client::metrics::gauge::Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `bulkhead_operator` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bulkhead_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<ControllerLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram as fn() -> Histogram,
        );
        registry.register(
            "reconciles",
            "Reconciles started, by controller",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by controller and error category",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile, by controller",
            duration.clone(),
        );
        let applied = Family::<ControllerLabels, Counter>::default();
        let drift = Family::<ControllerLabels, Counter>::default();
        let leader = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "objects_applied",
            "Objects created, updated, reverted or pruned",
            applied.clone(),
        );
        registry.register(
            "drift_repairs",
            "Managed objects found edited or deleted by hand and repaired",
            drift.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader lease",
            leader.clone(),
        );
        let pass_waiting = prometheus_client::metrics::gauge::Gauge::default();
        registry.register(
            "full_pass_waiting",
            "Tenants and Customers waiting for their turn in a full pass (after a start or a relist)",
            pass_waiting.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
            applied,
            drift,
            leader,
            pass_waiting,
        }
    }

    /// Counts a reconcile and returns a guard that records its duration when dropped.
    pub fn reconcile_started(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &'static str, category: &'static str) {
        self.failures
            .get_or_create(&FailureLabels { controller, category })
            .inc();
    }

    /// Counts objects written by an apply.
    pub fn objects_applied(&self, controller: &'static str, count: usize) {
        self.applied
            .get_or_create(&ControllerLabels { controller })
            .inc_by(count as u64);
    }

    /// Counts drift repairs.
    pub fn drift_repaired(&self, controller: &'static str, count: usize) {
        self.drift
            .get_or_create(&ControllerLabels { controller })
            .inc_by(count as u64);
    }

    /// Records whether this replica leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Records how many wait for their turn in the full pass.
    pub fn set_pass_waiting(&self, waiting: usize) {
        self.pass_waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Records a reconcile's duration when dropped.
#[derive(Debug)]
pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_reconciles_failures_and_durations_by_fixed_labels() {
        let metrics = Metrics::new();
        drop(metrics.reconcile_started("tenant"));
        drop(metrics.reconcile_started("tenant"));
        metrics.reconcile_failed("tenant", "status_patch");
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("bulkhead_operator_reconciles_total{controller=\"tenant\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "bulkhead_operator_reconcile_errors_total{controller=\"tenant\",category=\"status_patch\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("bulkhead_operator_reconcile_duration_seconds_count{controller=\"tenant\"} 2"),
            "{text}"
        );
    }
}
