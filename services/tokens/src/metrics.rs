//! The token service's metrics: HTTP traffic plus tokens created, revoked
//! and rotated, leak reports and the event log's length.

use std::sync::Arc;

use enspace_http::HttpMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    pub registry: Arc<Registry>,
    pub http: HttpMetrics,
    /// Tokens created, revoked, rotated; the event log's length.
    pub events: enspace_store::EventCounters,
    pub sign_ins: enspace_accounts::credentials::SignInMetrics,
    pub leak_reports: crate::leaks::LeakMetrics,
    pub notifications: NotificationMetrics,
    pub stream: enspace_cluster::event_stream::repair::StreamMetrics,
    pub cluster: enspace_cluster::ClusterMetrics,
}

/// What the notification sweep and delivery did.
#[derive(Clone, Default)]
pub struct NotificationMetrics {
    /// Sweeps of the due index run.
    pub sweeps: Counter,
    /// Notifications made (each at most once).
    pub made: Counter,
    /// Webhook POSTs answered 2xx.
    pub webhook_delivered: Counter,
    /// Webhook POSTs that failed (to be retried).
    pub webhook_failed: Counter,
    /// Notifications published on NATS.
    pub published: Counter,
}

impl NotificationMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = NotificationMetrics::default();
        registry.register(
            "enspace_notification_sweeps",
            "Sweeps of the notification due index",
            m.sweeps.clone(),
        );
        registry.register(
            "enspace_notifications_made",
            "Notifications made",
            m.made.clone(),
        );
        registry.register(
            "enspace_webhook_delivered",
            "Notification webhook deliveries answered 2xx",
            m.webhook_delivered.clone(),
        );
        registry.register(
            "enspace_webhook_failed",
            "Notification webhook attempts that failed and will be retried",
            m.webhook_failed.clone(),
        );
        registry.register(
            "enspace_notifications_published",
            "Notifications published on NATS",
            m.published.clone(),
        );
        m
    }
}

impl Metrics {
    /// Registers the token service's metrics into `registry`, which may also
    /// hold another service's (as in `enspace serve`).
    pub fn new(mut registry: Registry) -> Self {
        let http = HttpMetrics::register(&mut registry);
        let sign_ins = enspace_accounts::credentials::SignInMetrics::register(&mut registry);
        let leak_reports = crate::leaks::LeakMetrics::register(&mut registry);
        let notifications = NotificationMetrics::register(&mut registry);
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
