//! The token service's metrics: HTTP traffic plus tokens created, revoked
//! and rotated, leak reports and the event log's length.

use std::sync::Arc;

use enspace_http::HttpMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    projection: &'static str,
}

/// `enspace_projection_errors{projection}`, counted by the projections'
/// health, which `/readyz` reads.
fn projection_health(registry: &mut Registry) -> enspace_core::projection::ProjectionHealth {
    let errors = Family::<ProjectionLabels, Counter>::default();
    registry.register(
        "enspace_projection_errors",
        "Times a projection failed to fold events (it is folded again from the log)",
        errors.clone(),
    );
    enspace_core::projection::ProjectionHealth::new(move |projection| {
        errors.get_or_create(&ProjectionLabels { projection }).inc();
    })
}

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub http: HttpMetrics,
    /// Tokens created, revoked, rotated; the event log's length.
    pub events: enspace_store::EventCounters,
    pub sign_ins: enspace_accounts::credentials::SignInMetrics,
    pub leak_reports: crate::leaks::LeakMetrics,
    pub notifications: enspace_notify::NotificationMetrics,
    pub stream: enspace_cluster::event_stream::repair::StreamMetrics,
    pub cluster: enspace_cluster::ClusterMetrics,
    /// Which projections lag after a failure, and the count of failures.
    pub projections: enspace_core::projection::ProjectionHealth,
}

impl Metrics {
    /// Registers the token service's metrics into `registry`, which may also
    /// hold another service's (as in `enspace serve`).
    pub fn new(mut registry: Registry) -> Self {
        let http = HttpMetrics::register(&mut registry);
        let sign_ins = enspace_accounts::credentials::SignInMetrics::register(&mut registry);
        let leak_reports = crate::leaks::LeakMetrics::register(&mut registry);
        let notifications = enspace_notify::NotificationMetrics::register(&mut registry);
        let stream = enspace_cluster::event_stream::repair::StreamMetrics::register(&mut registry);
        let cluster = enspace_cluster::ClusterMetrics::register(&mut registry);
        let events = enspace_store::EventCounters::register(&mut registry);
        let projections = projection_health(&mut registry);
        Metrics {
            registry: Arc::new(registry),
            http,
            events,
            sign_ins,
            leak_reports,
            notifications,
            stream,
            cluster,
            projections,
        }
    }
}
