//! Task `notices-apply`: this process's durable consumer of the notices
//! stream, `notices-<node id>`, from the first notice kept. Each good
//! notice is kept through [`Notifications::apply_notice`] on a blocking
//! thread (flushed there), then acked; a store that cannot be written naks
//! it with a delay. A refused message is terminated (after
//! [`SIGNATURE_TRIES`] deliveries when only its signature is in doubt),
//! counted and logged by its stream sequence, and the next one is read.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use enspace_store::keyring::Keyring;
use futures::StreamExt;

use super::super::Notifications;
use super::{Refused, open};
use crate::metrics::NotificationMetrics;

/// How long the server waits for an ack before delivering again.
const ACK_WAIT: Duration = Duration::from_secs(30);
/// The wait before a nak'ed notice is delivered again.
const RETRY: Duration = Duration::from_secs(2);
/// Deliveries of a notice no known key verifies before it is terminated:
/// time for this process to fold a key rotation it has not seen yet.
const SIGNATURE_TRIES: i64 = 5;

pub(crate) struct Applier {
    pub notifications: Notifications,
    pub js: jetstream::Context,
    pub keys: Keyring,
    pub stream: jetstream::stream::Config,
    pub durable: String,
    pub metrics: NotificationMetrics,
}

/// The durable consumer `durable` (`notices-<node id>`): every notice
/// kept, explicit acks; forgotten by the server after as long unused as a
/// notice is kept (a process back after longer reads all of them again,
/// which changes nothing it holds).
pub fn consumer_config(durable: &str) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(durable.to_owned()),
        description: Some("notices of enspace tokens' control plane".to_owned()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        inactive_threshold: enspace_nats::NOTICES_MAX_AGE,
        ..Default::default()
    }
}

/// Applies notices forever, starting again with a backoff after any
/// failure.
pub(crate) async fn apply_forever(applier: Applier) {
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        match consume(&applier).await {
            Ok(()) => backoff.reset(),
            Err(e) => {
                tracing::warn!(error = %e, "reading the notices stream interrupted; resuming");
                backoff.wait().await;
            }
        }
    }
}

async fn consume(applier: &Applier) -> Result<(), async_nats::Error> {
    let stream = enspace_nats::ensure_stream(&applier.js, applier.stream.clone()).await?;
    let consumer = stream
        .create_consumer(consumer_config(&applier.durable))
        .await?;
    let mut messages = consumer
        .stream()
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    while let Some(message) = messages.next().await {
        settle(applier, message?).await?;
    }
    Ok(())
}

/// Applies one message and acks, naks or terminates it.
async fn settle(applier: &Applier, message: jetstream::Message) -> Result<(), async_nats::Error> {
    let (sequence, delivered) = message
        .info()
        .map_or((0, 1), |info| (info.stream_sequence, info.delivered));
    let notice = match open(&message.payload, &applier.keys.recent_keys()) {
        Ok(notice) => notice,
        Err(Refused::NotSigned) if delivered < SIGNATURE_TRIES => {
            message.ack_with(AckKind::Nak(Some(RETRY))).await?;
            return Ok(());
        }
        Err(why) => {
            applier.metrics.notices_refused.inc();
            tracing::warn!(
                stream = enspace_nats::NOTICES_STREAM,
                sequence,
                "refused the notice at sequence {sequence} of {}: {}; terminated",
                enspace_nats::NOTICES_STREAM,
                why.as_str()
            );
            message.ack_with(AckKind::Term).await?;
            return Ok(());
        }
    };
    let notifications = applier.notifications.clone();
    let id = notice.notification.id;
    let applied = tokio::task::spawn_blocking(move || notifications.apply_notice(&notice)).await;
    match applied {
        Ok(Ok(new)) => {
            if new {
                applier.metrics.notices_applied.inc();
            }
            message.ack().await?;
        }
        Ok(Err(e)) => {
            tracing::error!(notification.id = %id, error = %e,
                "cannot keep notice {id}; it will be delivered again");
            message.ack_with(AckKind::Nak(Some(RETRY))).await?;
        }
        Err(e) => {
            tracing::error!(notification.id = %id, error = %e,
                "keeping notice {id} failed; it will be delivered again");
            message.ack_with(AckKind::Nak(Some(RETRY))).await?;
        }
    }
    Ok(())
}
