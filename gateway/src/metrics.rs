//! The gateway's Prometheus metrics. Labels are fixed strings (decision, gate, reason) or configured issuers,
//! never org ids, subjects or error texts, so their number is bounded by the code and the configuration.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
    gate: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerResultLabels {
    issuer: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerReasonLabels {
    issuer: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProtocolLabels {
    frame: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: &'static str,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 2.0, 16))
}

/// Decision counters, latencies, key and route gauges.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    latency: Family<OutcomeLabels, Histogram, fn() -> Histogram>,
    jwks_loads: Family<IssuerResultLabels, Counter>,
    keys: Family<IssuerLabels, Gauge>,
    keys_skipped: Family<IssuerReasonLabels, Counter>,
    routes: Gauge,
    protocol_errors: Family<ProtocolLabels, Counter>,
    /// The allowed decision's counter and latency, taken out of their families once: the request path counts
    /// every allowed request without hashing labels or locking the family.
    allowed: (Counter, Histogram),
    /// The token cache's hit and miss counters, taken out of their family once for the same reason.
    cache_results: (Counter, Counter),
    tunnels: Gauge,
    tunnels_closed: Family<ReasonLabels, Counter>,
    tunnel_bytes: Family<DirectionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric under the `bulkhead_gateway` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bulkhead_gateway");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let latency = Family::<OutcomeLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let jwks_loads = Family::<IssuerResultLabels, Counter>::default();
        let keys = Family::<IssuerLabels, Gauge>::default();
        let keys_skipped = Family::<IssuerReasonLabels, Counter>::default();
        let routes = Gauge::default();
        let cache = Family::<CacheLabels, Counter>::default();
        let protocol_errors = Family::<ProtocolLabels, Counter>::default();
        let allowed = (
            decisions
                .get_or_create(&DecisionLabels {
                    decision: "allow",
                    gate: "none",
                    reason: "ok",
                })
                .clone(),
            latency
                .get_or_create(&OutcomeLabels { decision: "allow" })
                .clone(),
        );
        // One statement each: the family's read guard must be gone before the next series is created.
        let hit = cache.get_or_create(&CacheLabels { result: "hit" }).clone();
        let miss = cache.get_or_create(&CacheLabels { result: "miss" }).clone();
        let cache_results = (hit, miss);
        let tunnels = Gauge::default();
        let tunnels_closed = Family::<ReasonLabels, Counter>::default();
        let tunnel_bytes = Family::<DirectionLabels, Counter>::default();
        registry.register("tunnels", "WebSocket tunnels open now", tunnels.clone());
        registry.register(
            "tunnels_closed",
            "WebSocket tunnels closed, by reason",
            tunnels_closed.clone(),
        );
        registry.register(
            "tunnel_bytes",
            "Bytes copied through closed WebSocket tunnels, by direction (client_to_stack, stack_to_client)",
            tunnel_bytes.clone(),
        );
        registry.register(
            "decisions",
            "Requests decided, by decision (allow/deny), gate and reason",
            decisions.clone(),
        );
        registry.register(
            "decision_seconds",
            "Time from request to response headers, by decision",
            latency.clone(),
        );
        registry.register(
            "key_loads",
            "Key (re)loads per issuer, by result (ok or a failure reason)",
            jwks_loads.clone(),
        );
        registry.register("keys", "Keys in force per issuer", keys.clone());
        registry.register(
            "keys_skipped",
            "JWKs left out of a newly loaded key set, per issuer, by the fixed reason of the key rules",
            keys_skipped.clone(),
        );
        registry.register("routes", "Routable orgs in the route table", routes.clone());
        registry.register(
            "token_cache",
            "Verified-token cache lookups, by result",
            cache.clone(),
        );
        registry.register(
            "http2_refusals",
            "Streams and connections the HTTP/2 layer refused on its own, by frame and error code",
            protocol_errors.clone(),
        );
        Metrics {
            registry,
            decisions,
            latency,
            jwks_loads,
            keys,
            keys_skipped,
            routes,
            protocol_errors,
            allowed,
            cache_results,
            tunnels,
            tunnels_closed,
            tunnel_bytes,
        }
    }

    /// Counts a stream or connection the HTTP/2 layer refused (`frame`: `rst_stream` or `goaway`).
    pub fn protocol_error(&self, frame: &'static str, reason: &'static str) {
        self.protocol_errors
            .get_or_create(&ProtocolLabels { frame, reason })
            .inc();
    }

    /// Sets the number of open tunnels.
    pub fn tunnels_open(&self, count: usize) {
        self.tunnels.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one closed tunnel and its bytes each way.
    pub fn tunnel_closed(&self, reason: &'static str, client_to_stack: u64, stack_to_client: u64) {
        self.tunnels_closed.get_or_create(&ReasonLabels { reason }).inc();
        self.tunnel_bytes
            .get_or_create(&DirectionLabels {
                direction: "client_to_stack",
            })
            .inc_by(client_to_stack);
        self.tunnel_bytes
            .get_or_create(&DirectionLabels {
                direction: "stack_to_client",
            })
            .inc_by(stack_to_client);
    }

    /// Counts one decision and its latency.
    pub fn decision(&self, allowed: bool, gate: &'static str, reason: &'static str, latency: Duration) {
        if allowed && gate == "none" && reason == "ok" {
            self.allowed.0.inc();
            self.allowed.1.observe(latency.as_secs_f64());
            return;
        }
        let decision = if allowed { "allow" } else { "deny" };
        self.decisions
            .get_or_create(&DecisionLabels {
                decision,
                gate,
                reason,
            })
            .inc();
        self.latency
            .get_or_create(&OutcomeLabels { decision })
            .observe(latency.as_secs_f64());
    }

    /// Counts one key load of `issuer` with `result` (`ok` or a failure reason).
    pub fn jwks_load(&self, issuer: &str, result: &'static str) {
        self.jwks_loads
            .get_or_create(&IssuerResultLabels {
                issuer: issuer.to_owned(),
                result,
            })
            .inc();
    }

    /// Counts an unknown-kid refetch that the rate limit skipped.
    pub fn jwks_refetch_limited(&self, issuer: &str) {
        self.jwks_load(issuer, "refetch_rate_limited");
    }

    /// Sets the number of keys in force for `issuer`.
    pub fn keys_loaded(&self, issuer: &str, count: usize) {
        self.keys
            .get_or_create(&IssuerLabels {
                issuer: issuer.to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts one JWK of `issuer` skipped for `reason` (a fixed string).
    pub fn key_skipped(&self, issuer: &str, reason: &'static str) {
        self.keys_skipped
            .get_or_create(&IssuerReasonLabels {
                issuer: issuer.to_owned(),
                reason,
            })
            .inc();
    }

    /// Sets the number of routable orgs.
    pub fn routes(&self, count: usize) {
        self.routes.set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Counts a token cache lookup.
    pub fn cache(&self, hit: bool) {
        if hit {
            self.cache_results.0.inc();
        } else {
            self.cache_results.1.inc();
        }
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_labelled_by_gate_and_reason() {
        let m = Metrics::new();
        m.decision(false, "route", "no_route", Duration::from_millis(1));
        m.decision(false, "route", "no_route", Duration::from_millis(1));
        m.decision(true, "none", "ok", Duration::from_millis(1));
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"bulkhead_gateway_decisions_total{decision="deny",gate="route",reason="no_route"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"bulkhead_gateway_decisions_total{decision="allow",gate="none",reason="ok"} 1"#)
        );
    }
}
