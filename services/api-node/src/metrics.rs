//! API node metrics: verifications by outcome and their latency.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: &'static str,
}

#[derive(Clone)]
pub struct NodeMetrics {
    /// Token events and heartbeats the node would not apply, by reason.
    refused: Family<Reason, Counter>,
    /// Seconds since the node last held the head a heartbeat named.
    pub staleness: Gauge<f64, AtomicU64>,
    /// The last event `seq` folded into the replica.
    pub head_seq: Gauge,
    verifications: Family<Outcome, Counter>,
    /// The common outcome's counter, resolved once instead of per request.
    verified_ok: Counter,
    verification_seconds: Histogram,
    pub replica_tokens: Gauge,
    pub records_dropped: Counter,
    pub records_published: Counter,
    pub rate_limited: Counter,
}

impl NodeMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let verifications = Family::<Outcome, Counter>::default();
        let verified_ok = verifications
            .get_or_create(&Outcome { outcome: "ok" })
            .clone();
        let m = NodeMetrics {
            refused: Family::default(),
            staleness: Gauge::default(),
            head_seq: Gauge::default(),
            verifications,
            verified_ok,
            // 250 ns … ~8 ms
            verification_seconds: Histogram::new(exponential_buckets(0.000_000_25, 2.0, 16)),
            replica_tokens: Gauge::default(),
            records_dropped: Counter::default(),
            records_published: Counter::default(),
            rate_limited: Counter::default(),
        };
        registry.register(
            "enspace_token_verifications",
            "Token verifications by outcome",
            m.verifications.clone(),
        );
        registry.register(
            "enspace_token_verification_seconds",
            "Time to verify a token against the local replica",
            m.verification_seconds.clone(),
        );
        registry.register(
            "enspace_replica_tokens",
            "Tokens in this node's local replica",
            m.replica_tokens.clone(),
        );
        registry.register(
            "enspace_request_records_dropped",
            "Request records dropped because the publish queue was full",
            m.records_dropped.clone(),
        );
        registry.register(
            "enspace_request_records_published",
            "Request records acknowledged by JetStream",
            m.records_published.clone(),
        );
        registry.register(
            "enspace_token_events_refused",
            "Token events and heartbeats refused (bad signature, replayed, gap, other history, malformed)",
            m.refused.clone(),
        );
        registry.register(
            "enspace_replica_staleness_seconds",
            "Seconds since this node last held the head of the control plane's log",
            m.staleness.clone(),
        );
        registry.register(
            "enspace_replica_head_seq",
            "The last token event seq folded into this node's replica",
            m.head_seq.clone(),
        );
        registry.register(
            "enspace_token_rate_limited",
            "Calls refused (429) because their token went over the node's per-token rate limit",
            m.rate_limited.clone(),
        );
        m
    }

    pub fn refused(&self, reason: &'static str) {
        self.refused.get_or_create(&Reason { reason }).inc();
    }

    /// Refusals counted for `reason` so far.
    pub fn refused_count(&self, reason: &'static str) -> u64 {
        self.refused.get_or_create(&Reason { reason }).get()
    }

    pub fn observe_verification(&self, outcome: &'static str, took: Duration) {
        match outcome {
            "ok" => self.verified_ok.inc(),
            _ => self.verifications.get_or_create(&Outcome { outcome }).inc(),
        };
        self.verification_seconds.observe(took.as_secs_f64());
    }
}
