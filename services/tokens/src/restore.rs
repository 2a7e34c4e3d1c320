//! Restoring the event log from the token events stream: what the log lacks
//! (all of it, for an empty data directory) is read from the stream, every
//! event's chain hash recomputed and its signature checked against the
//! event key, then appended. The log must be a prefix of the stream: a
//! different history is refused, never merged.

use async_nats::jetstream::{self, consumer};
use enspace_core::EventKey;
use enspace_core::events::{EventEnvelope, StoredEvent, chain_hash};
use futures::StreamExt;

use crate::store::event_log::encode_seq;
use crate::store::{Head, Store, StoreError};

const BATCH: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("reading the token events stream failed: {0}")]
    Nats(String),
    #[error(
        "the stream's event {seq} is not the log's: this data directory and the stream \
         hold different histories"
    )]
    NotAPrefix { seq: u64 },
    #[error("the stream's message {seq} is not event {seq}: {reason}")]
    Invalid { seq: u64, reason: String },
    #[error(
        "the stream's event {seq} is not signed by the event key {key_id}; \
         restore with the key it was signed with (--event-key)"
    )]
    BadSignature { seq: u64, key_id: String },
    #[error(
        "the event log ends at seq {log}, but the token events stream holds signed events up \
         to {stream}: this data directory lost events {}..={stream}. Fill them in with \
         `enspace restore --data <dir> --nats-url <url>`",
        log + 1
    )]
    LogBehindStream { log: u64, stream: u64 },
    #[error(
        "the data directory is empty and the token events stream holds {events} events that \
         the event key {key_id} does not verify: pass the key they were signed with \
         (--event-key), or, to start a new history, delete the stream ENSPACE_TOKEN_EVENTS"
    )]
    Unverifiable { events: u64, key_id: String },
}

/// At start-up, before serving: the log against the stream. A stream that
/// holds signed events past the log restores an empty log, and refuses a
/// non-empty one (it lost committed events). Messages past the log that do
/// not verify are left to the outbox, which replaces them, unless the log
/// is empty: then they may be a history signed by another key, which is
/// never deleted on a guess.
pub async fn check_at_start(
    js: &jetstream::Context,
    store: &Store,
    trust: &EventKey,
) -> Result<u64, RestoreError> {
    let (log_seq, log_hash) = store.log.head()?;
    let last = stream_last(js).await?;
    if last <= log_seq {
        return Ok(0);
    }
    let stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(nats)?;
    let next = stream.get_raw_message(log_seq + 1).await.map_err(nats)?;
    let hash = chain_hash(&log_hash, &next.payload);
    if trust.verify_event(&hash, &enspace_nats::signature_of(Some(&next.headers))) {
        if log_seq == 0 {
            return restore(js, store, trust).await;
        }
        return Err(RestoreError::LogBehindStream {
            log: log_seq,
            stream: last,
        });
    }
    if log_seq == 0 {
        return Err(RestoreError::Unverifiable {
            events: last,
            key_id: trust.key_id().to_owned(),
        });
    }
    tracing::warn!(
        log_head = log_seq,
        stream_last = last,
        "the token events stream holds messages past the log that this control plane did not sign; they will be replaced"
    );
    Ok(0)
}

fn nats(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Nats(e.to_string())
}

/// The stream's last sequence, 0 when it is empty or absent.
pub async fn stream_last(js: &jetstream::Context) -> Result<u64, RestoreError> {
    Ok(crate::outbox::stream_state(js)
        .await
        .map_err(nats)?
        .map_or(0, |s| s.last_sequence))
}

/// Appends every event the stream holds past the log's head; returns how
/// many. Run before the writer starts.
pub async fn restore(
    js: &jetstream::Context,
    store: &Store,
    key: &EventKey,
) -> Result<u64, RestoreError> {
    let (mut seq, mut prev) = store.log.head()?;
    let last = stream_last(js).await?;
    if last <= seq {
        return Ok(0);
    }
    let stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(nats)?;
    if seq > 0 {
        let message = stream.get_raw_message(seq).await.map_err(nats)?;
        let ours = store.log.get(seq)?;
        if ours.is_none_or(|e| e.stored.payload != message.payload.as_ref()) {
            return Err(RestoreError::NotAPrefix { seq });
        }
    }
    let first = seq + 1;
    tracing::info!(
        from = first,
        to = last,
        "restoring events {first}..={last} from the token events stream"
    );
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    while seq < last {
        let Some(message) = messages.next().await else {
            return Err(RestoreError::Nats("the stream ended early".into()));
        };
        let message = message.map_err(nats)?;
        let stream_seq = message.info().map_err(nats)?.stream_sequence;
        let next = seq + 1;
        let invalid = |reason: &str| RestoreError::Invalid {
            seq: next,
            reason: reason.to_owned(),
        };
        if stream_seq != next {
            return Err(invalid("the stream skips a sequence"));
        }
        let envelope =
            EventEnvelope::decode(&message.payload).map_err(|e| invalid(&e.to_string()))?;
        if envelope.seq != next {
            return Err(invalid("its seq differs"));
        }
        let hash = chain_hash(&prev, &message.payload);
        let signature = enspace_nats::signature_of(message.headers.as_ref());
        if !key.verify_event(&hash, &signature) {
            return Err(RestoreError::BadSignature {
                seq: next,
                key_id: key.key_id().to_owned(),
            });
        }
        let stored = StoredEvent {
            prev_hash: prev,
            hash,
            payload: message.payload.to_vec(),
        };
        batch.insert(&encode_seq(next)[..], stored.to_bytes());
        in_batch += 1;
        (seq, prev) = (next, hash);
        if in_batch == BATCH || seq == last {
            store
                .log
                .tree()
                .apply_batch(std::mem::take(&mut batch))
                .map_err(StoreError::from)?;
            in_batch = 0;
        }
    }
    store.projections.catch_up(&store.log)?;
    store.db.flush().map_err(StoreError::from)?;
    store
        .head
        .lock()
        .map_err(|_| StoreError::Corrupt("the head file's lock is poisoned".into()))?
        .write(Head { seq, hash: prev })
        .map_err(StoreError::from)?;
    store.outbox_state.set(seq)?;
    store.db.flush().map_err(StoreError::from)?;
    Ok(seq + 1 - first)
}
