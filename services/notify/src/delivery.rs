//! Delivery of new notifications, from the durable queue
//! `notifications_outbox` (notification id → [`Pending`]), which
//! [`super::store`] fills in the same transaction that makes each one: a
//! POST to the webhook, signed (see [`super::webhook`]), and, with NATS, a
//! publish on `enspace.notifications.<user id>`. A queued notification
//! leaves the queue once every sink has it: a restart resumes where it was,
//! and a receiver gets each one at least once, with the same `webhook-id`
//! on every attempt. A failed POST is tried again after 1 s (or
//! `--webhook-retry-min`), then twice as long each time, up to 10 minutes.
//! Runs on its own task, never in a request; in a cluster only the writer
//! delivers, so a receiver does not hear each notification once per process.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ulid::Ulid;

use super::Notifications;
use super::store::{Pending, encode};
use super::webhook::{Webhook, payload};
use crate::metrics::NotificationMetrics;
use enspace_store::StoreError;

/// The NATS subject prefix: `enspace.notifications.<user id>`.
pub const SUBJECT_PREFIX: &str = "enspace.notifications.";
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(600);
/// How often the queue is looked at when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Where notifications go, besides the store.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook: Option<Webhook>,
    /// The wait after the first failed attempt.
    pub retry_min: Duration,
}

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The wait after `attempts` failed attempts.
pub fn backoff(retry_min: Duration, attempts: u32) -> Duration {
    let factor = 1u32
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u32::MAX);
    retry_min.saturating_mul(factor).min(RETRY_MAX)
}

/// A user id that can be one token of a NATS subject.
fn subject_for(user_id: &str) -> Option<String> {
    let ok = !user_id.is_empty()
        && user_id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'));
    ok.then(|| format!("{SUBJECT_PREFIX}{user_id}"))
}

fn queued(tree: &sled::Tree) -> Result<Vec<(Ulid, Pending)>, StoreError> {
    tree.iter()
        .map(|item| {
            let (key, value) = item?;
            let id: [u8; 16] = key
                .as_ref()
                .try_into()
                .map_err(|_| StoreError::Corrupt("notification outbox key".into()))?;
            let id = Ulid::from_bytes(id);
            // A delivery state that does not decode is read as "nothing
            // delivered yet": the notification goes out (again), as a
            // receiver gets each one at least once, and the state is
            // written anew after the attempt.
            let pending = rmp_serde::from_slice(&value).unwrap_or_else(|e| {
                tracing::warn!(notification.id = %id, error = %e,
                    "unreadable delivery state of notification {id}; delivering it from the start");
                Pending::default()
            });
            Ok((id, pending))
        })
        .collect()
}

/// What delivery reads and reports to.
pub struct Sinks {
    pub notifications: Notifications,
    /// Where notifications are published, with NATS.
    pub nats: Option<async_nats::Client>,
    pub metrics: NotificationMetrics,
}

/// Delivers queued notifications, forever.
pub async fn deliver_forever(sinks: Sinks, delivery: Delivery) {
    let state = &sinks;
    loop {
        let wait = if state.notifications.delivers_now() {
            match deliver_due(state, &delivery).await {
                Ok(wait) => wait,
                Err(e) => {
                    tracing::error!(error = %e, "notification delivery failed");
                    IDLE_POLL
                }
            }
        } else {
            IDLE_POLL
        };
        tokio::select! {
            () = state.notifications.wake.notified() => {}
            () = tokio::time::sleep(wait.min(IDLE_POLL)) => {}
        }
    }
}

/// One pass over the queue; answers how long until the next attempt is due.
async fn deliver_due(state: &Sinks, delivery: &Delivery) -> Result<Duration, StoreError> {
    let tree = state.notifications.store.outbox.clone();
    let mut next = IDLE_POLL;
    for (id, mut pending) in queued(&tree)? {
        let now = wall_ms();
        if pending.next_ms > now {
            next = next.min(Duration::from_millis(pending.next_ms - now));
            continue;
        }
        let Some(notification) = state.notifications.store.get(id)? else {
            tree.remove(id.to_bytes())?;
            continue;
        };
        let body = serde_json::to_vec(&payload(&notification))
            .map_err(|e| StoreError::Corrupt(format!("notification payload: {e}")))?;
        if !pending.published
            && let Some(client) = &state.nats
        {
            match subject_for(&notification.user_id) {
                Some(subject) => match client.publish(subject, body.clone().into()).await {
                    Ok(()) => {
                        pending.published = true;
                        state.metrics.published.inc();
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, notification.id = %id, "cannot publish notification {id}");
                    }
                },
                None => pending.published = true,
            }
        }
        let delivered = match &delivery.webhook {
            None => true,
            Some(webhook) => {
                let timestamp = (wall_ms() / 1000) as i64;
                match webhook.post(&id.to_string(), timestamp, body).await {
                    Ok(()) => {
                        state.metrics.webhook_delivered.inc();
                        true
                    }
                    Err(e) => {
                        pending.attempts = pending.attempts.saturating_add(1);
                        let wait = backoff(delivery.retry_min, pending.attempts);
                        pending.next_ms = wall_ms().saturating_add(wait.as_millis() as u64);
                        next = next.min(wait);
                        state.metrics.webhook_failed.inc();
                        tracing::warn!(
                            notification.id = %id,
                            webhook.host = webhook.host(),
                            attempts = pending.attempts,
                            retry_in_ms = wait.as_millis() as u64,
                            error = %e,
                            "webhook delivery of notification {id} failed; retrying"
                        );
                        false
                    }
                }
            }
        };
        let nats_done = pending.published || state.nats.is_none();
        if delivered && nats_done {
            tree.remove(id.to_bytes())?;
        } else {
            tree.insert(id.to_bytes(), encode(&pending)?)?;
        }
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_the_minimum_up_to_ten_minutes() {
        let min = Duration::from_secs(1);
        assert_eq!(backoff(min, 1), Duration::from_secs(1));
        assert_eq!(backoff(min, 2), Duration::from_secs(2));
        assert_eq!(backoff(min, 5), Duration::from_secs(16));
        assert_eq!(backoff(min, 40), RETRY_MAX);
    }

    #[test]
    fn a_user_id_that_cannot_be_a_subject_token_is_not_published() {
        assert_eq!(
            subject_for("alice").as_deref(),
            Some("enspace.notifications.alice")
        );
        for bad in ["", "a.b", "a*", ">", "a b"] {
            assert_eq!(subject_for(bad), None, "{bad:?}");
        }
    }
}
