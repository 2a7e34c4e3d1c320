//! The JetStream side of the indexer: the durable pull consumer
//! `request-indexer` on `ENSPACE_REQUESTS`, explicit acks (contract §7).
//!
//! Messages are taken in batches (whatever has arrived, up to [`BATCH`]),
//! decoded, written to the index and flushed, and only then acked. A message
//! that can never decode is terminated (`AckKind::Term`) and logged; if the
//! index cannot be written, the batch is nak'ed with a delay. A crash between
//! the flush and the acks means a redelivery, which the index skips (its
//! keys are the records' identities), so nothing is lost or counted twice.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer};
use enspace_core::RequestRecord;
use futures::{FutureExt, StreamExt};

use super::Indexer;

/// Most messages written in one batch (one sled flush).
pub const BATCH: usize = 1000;
/// How long the server waits for an ack before redelivering.
pub const ACK_WAIT: Duration = Duration::from_secs(10);
/// Messages delivered and not yet acked, at most.
pub const MAX_ACK_PENDING: i64 = 20_000;

/// The consumer's settings; `create_consumer` creates it or brings an
/// existing one up to date.
pub fn consumer_config() -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(enspace_nats::REQUEST_INDEXER.to_owned()),
        description: Some("request-log indexer of enspace tokens".to_owned()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: ACK_WAIT,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    }
}

/// Consumes forever, reconnecting with a backoff after any failure.
pub async fn consume_jetstream(indexer: Indexer, js: jetstream::Context) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match consume(&indexer, &js).await {
            Ok(()) => backoff = Duration::from_millis(100),
            Err(e) => {
                tracing::warn!(error = %e, "request-log indexer interrupted; resuming");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}

async fn consume(indexer: &Indexer, js: &jetstream::Context) -> Result<(), async_nats::Error> {
    let retention = indexer.retention.unsigned_abs();
    let stream = enspace_nats::ensure_stream(js, enspace_nats::requests_config(retention)).await?;
    let consumer = stream.create_consumer(consumer_config()).await?;
    let mut messages = consumer
        .stream()
        .max_messages_per_batch(BATCH)
        .heartbeat(Duration::from_secs(5))
        .expires(Duration::from_secs(30))
        .messages()
        .await?;
    loop {
        let Some(first) = messages.next().await else {
            return Ok(());
        };
        let mut batch = vec![first?];
        // Whatever has already arrived joins the batch; nothing waits for more.
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(Ok(message))) => batch.push(message),
                Some(Some(Err(e))) => {
                    // Index what we have; the stream is rebuilt after.
                    index_batch(indexer, batch).await?;
                    return Err(e.into());
                }
                Some(None) | None => break,
            }
        }
        index_batch(indexer, batch).await?;
    }
}

async fn index_batch(
    indexer: &Indexer,
    batch: Vec<jetstream::Message>,
) -> Result<(), async_nats::Error> {
    let mut records: Vec<RequestRecord> = Vec::with_capacity(batch.len());
    let mut decoded = Vec::with_capacity(batch.len());
    for message in batch {
        match RequestRecord::from_msgpack(&message.payload) {
            Ok(record) => {
                records.push(record);
                decoded.push(message);
            }
            Err(e) => {
                indexer.metrics.undecodable.inc();
                tracing::error!(
                    error = %e,
                    subject = %message.subject,
                    "undecodable request record terminated"
                );
                message.ack_with(AckKind::Term).await?;
            }
        }
    }
    if records.is_empty() {
        return Ok(());
    }
    let (_, result) = indexer.ingest(records).await;
    match result {
        Ok(_) => {
            for message in &decoded {
                message.ack().await?;
            }
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, records = decoded.len(), "cannot write request records to the index; will retry");
            for message in &decoded {
                message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await?;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok(())
        }
    }
}
