//! What the notification sweep and delivery count.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

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
    /// Notices (notifications made here alone) put in the notices stream.
    pub notices_published: Counter,
    /// Notices from the stream that were new here.
    pub notices_applied: Counter,
    /// Messages of the notices stream refused (terminated).
    pub notices_refused: Counter,
}

impl NotificationMetrics {
    pub fn register(registry: &mut Registry) -> Self {
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
        registry.register(
            "enspace_notices_published",
            "Notifications made by this process alone put in the notices stream",
            m.notices_published.clone(),
        );
        registry.register(
            "enspace_notices_applied",
            "Notices from the notices stream that were new to this process",
            m.notices_applied.clone(),
        );
        registry.register(
            "enspace_notices_refused",
            "Messages of the notices stream refused and terminated",
            m.notices_refused.clone(),
        );
        m
    }
}
