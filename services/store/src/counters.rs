//! What the writer counts as it commits (`/metrics`): tokens created,
//! revoked and rotated, and the event log's length.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct EventCounters {
    pub tokens_created: Counter,
    pub tokens_revoked: Counter,
    pub tokens_rotated: Counter,
    pub event_log_length: Gauge,
}

impl EventCounters {
    pub fn register(registry: &mut Registry) -> Self {
        let c = EventCounters::default();
        registry.register(
            "enspace_tokens_created",
            "Personal access tokens created",
            c.tokens_created.clone(),
        );
        registry.register(
            "enspace_tokens_revoked",
            "Personal access tokens revoked",
            c.tokens_revoked.clone(),
        );
        registry.register(
            "enspace_tokens_rotated",
            "Personal access tokens replaced by a rotation",
            c.tokens_rotated.clone(),
        );
        registry.register(
            "enspace_event_log_length",
            "Events in the event log",
            c.event_log_length.clone(),
        );
        c
    }
}
