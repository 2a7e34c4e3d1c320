//! The token service's metrics: HTTP traffic plus tokens created, revoked
//! and rotated, leak reports and the event log's length.

use std::sync::Arc;

use enspace_http::HttpMetrics;
use prometheus_client::registry::Registry;

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
        Metrics {
            registry: Arc::new(registry),
            http,
            events,
            sign_ins,
            leak_reports,
            notifications,
            stream,
            cluster,
        }
    }
}
