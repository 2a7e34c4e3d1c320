//! Every process of a cluster folds the token events stream into its own
//! log and projections: each message must be the next `seq`, its chain
//! hash is recomputed from the log's own head, and its signature checked
//! against the event key. The writer's own events come back this way too;
//! the log holds them already and they are only compared.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use enspace_core::EventKey;
use enspace_core::events::{EventEnvelope, StoredEvent, chain_hash};
use futures::{FutureExt, StreamExt};

use crate::store::EventLog;
use crate::store::writer::{Replicated, Writer};

/// Most events handed to the writer thread at once.
const BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("reading the token events stream failed: {0}")]
    Nats(String),
    #[error("the stream's message {seq} is refused: {reason}")]
    Refused { seq: u64, reason: &'static str },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

fn nats(e: impl std::fmt::Display) -> FollowError {
    FollowError::Nats(e.to_string())
}

/// How often the watchdog compares the log with the stream.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// Follows the stream into the log, forever; resumes after every error
/// from the log's head, and whenever the watchdog finds the log behind the
/// stream without moving (a consumer left on a NATS server that died).
pub async fn follow(js: jetstream::Context, log: EventLog, writer: Writer, key: EventKey) {
    let mut backoff = enspace_nats::Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(&js, &log, &writer, &key) => outcome,
            () = stalled(&js, &writer) => Err(FollowError::Nats("the log stopped following the stream".into())),
        };
        match outcome {
            // The consumer ended (NATS went away): not straight back at it.
            Ok(()) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e @ FollowError::Refused { .. }) => {
                tracing::warn!(error = %e, "not following the token events stream past the log's head");
                backoff.wait().await;
            }
            Err(e) => {
                tracing::debug!(error = %e, "following the token events stream again");
                backoff.wait().await;
            }
        }
    }
}

/// Resolves once the log has stayed behind the stream, without moving, for
/// two checks in a row.
async fn stalled(js: &jetstream::Context, writer: &Writer) {
    let head = writer.head();
    let mut behind_at: Option<u64> = None;
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Ok(last) = crate::restore::stream_last(js).await else {
            continue;
        };
        let now = *head.borrow();
        if now >= last {
            behind_at = None;
            continue;
        }
        if behind_at == Some(now) {
            return;
        }
        behind_at = Some(now);
    }
}

async fn follow_once(
    js: &jetstream::Context,
    log: &EventLog,
    writer: &Writer,
    key: &EventKey,
) -> Result<(), FollowError> {
    let (mut seq, mut prev) = log.head()?;
    let stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(nats)?;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: seq + 1,
            },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    loop {
        let Some(first) = messages.next().await else {
            return Ok(());
        };
        let mut batch = vec![first.map_err(nats)?];
        while batch.len() < BATCH {
            match messages.next().now_or_never() {
                Some(Some(message)) => batch.push(message.map_err(nats)?),
                _ => break,
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        for message in batch {
            let stream_seq = message.info().map_err(nats)?.stream_sequence;
            let next = seq + 1;
            let refused = |reason| FollowError::Refused { seq: next, reason };
            if stream_seq != next {
                // A reset stream (refilled from a log) starts over: resume
                // from the log's head.
                return Err(FollowError::Nats(format!(
                    "expected message {next}, got {stream_seq}"
                )));
            }
            let envelope =
                EventEnvelope::decode(&message.payload).map_err(|_| refused("not an event"))?;
            if envelope.seq != next {
                return Err(refused("its seq is not its place in the stream"));
            }
            let hash = chain_hash(&prev, &message.payload);
            let signature = enspace_nats::signature_of(message.headers.as_ref());
            if !key.verify_event(&hash, &signature) {
                return Err(refused("not signed by the event key over this chain"));
            }
            let signature = <[u8; 64]>::try_from(signature.as_slice())
                .map_err(|_| refused("malformed signature"))?;
            events.push(Replicated {
                envelope,
                stored: StoredEvent {
                    prev_hash: prev,
                    hash,
                    payload: message.payload.to_vec(),
                },
                signature,
            });
            (seq, prev) = (next, hash);
        }
        let head = writer.replicate(events).await?;
        if head != seq {
            return Err(FollowError::Nats(format!(
                "the log is at {head}, the stream at {seq}"
            )));
        }
    }
}
