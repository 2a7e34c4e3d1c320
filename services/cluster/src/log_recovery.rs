//! Restoring the event log from the token events stream: what the log lacks
//! (all of it, for an empty data directory) is read from the stream, every
//! event's chain hash recomputed and its signature checked against the
//! event key, then appended. Foreign messages between events are skipped
//! (see [`crate::event_stream`]). The log must be a prefix of the stream's
//! events: a different history is refused, never merged.

use std::ops::ControlFlow;

use async_nats::jetstream;
use enspace_core::events::StoredEvent;

use crate::event_stream::classify::{Chain, Keys, Kind, classify};
use crate::event_stream::scan::{ScanError, scan};
use enspace_store::event_log::encode_seq;
use enspace_store::{Head, Store, StoreError, StreamPosition};

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
    #[error("the stream lacks event {seq}: {reason}")]
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
/// non-empty one (it lost committed events). Foreign messages are left to
/// the outbox, which deletes them; with an empty log, a message that claims
/// to be event 1 but does not verify may be a history signed by another
/// key, which is never replaced on a guess.
pub async fn check_at_start(
    js: &jetstream::Context,
    store: &Store,
    trust: Keys,
) -> Result<u64, RestoreError> {
    let (log_seq, log_hash) = store.log.head()?;
    let mut keys = trust.clone();
    let last = stream_last(js).await?;
    if last <= log_seq {
        return Ok(0);
    }
    let stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(nats)?;
    let mut chain = Chain {
        seq: log_seq,
        hash: log_hash,
    };
    let (mut foreign, mut unverified_first) = (0u64, false);
    scan(&stream, log_seq + 1, last, |message| {
        match classify(
            &store.log,
            chain,
            &keys,
            &message.payload,
            message.headers.as_ref(),
        )? {
            Kind::Next(next) => {
                keys.pass(&next.envelope, &next.key);
                chain = Chain::after(&next);
            }
            Kind::Held(_) => {}
            Kind::Foreign(claims) => {
                foreign += 1;
                unverified_first |= claims == Some(1) && message.headers.is_some();
            }
            // Left to the outbox, as any message it did not write.
            Kind::OtherHistory(_) | Kind::Gap(_) => foreign += 1,
        }
        Ok::<_, RestoreError>(ControlFlow::<()>::Continue(()))
    })
    .await?;
    if chain.seq > log_seq {
        if log_seq == 0 {
            return restore_at_start(js, store, trust).await;
        }
        return Err(RestoreError::LogBehindStream {
            log: log_seq,
            stream: chain.seq,
        });
    }
    if log_seq == 0 && unverified_first {
        return Err(RestoreError::Unverifiable {
            events: last,
            key_id: key_id_of(&trust),
        });
    }
    if foreign > 0 {
        tracing::warn!(
            log_head = log_seq,
            stream_last = last,
            foreign,
            "the token events stream holds {foreign} messages past the log that are not its \
             events; they will be deleted"
        );
    }
    Ok(0)
}

fn key_id_of(keys: &Keys) -> String {
    keys.current()
        .map_or_else(String::new, |k| k.key_id().to_owned())
}

fn nats(e: impl std::fmt::Display) -> RestoreError {
    RestoreError::Nats(e.to_string())
}

impl From<ScanError> for RestoreError {
    fn from(e: ScanError) -> Self {
        RestoreError::Nats(e.0)
    }
}

/// The stream's last sequence, 0 when it is empty or absent.
pub async fn stream_last(js: &jetstream::Context) -> Result<u64, RestoreError> {
    Ok(crate::event_stream::tip(js)
        .await
        .map_err(nats)?
        .map_or(0, |t| t.last))
}

/// [`restore`] as a starting control plane does it: a line in the log
/// every few seconds.
pub async fn restore_at_start(
    js: &jetstream::Context,
    store: &Store,
    keys: Keys,
) -> Result<u64, RestoreError> {
    restore(js, store, keys, &restoring()).await
}

/// A line in the log every few seconds while a start restores the log.
fn restoring() -> impl enspace_core::progress::Progress {
    enspace_core::progress::Lines::new(
        "events restored from the token events stream",
        std::time::Duration::from_secs(5),
        |line: &str| tracing::info!("{line}"),
    )
}

/// Appends every event the stream holds past the log's head, skipping what
/// is not the log's next event; returns how many. Run before the writer
/// starts. `progress` hears how far it is.
pub async fn restore(
    js: &jetstream::Context,
    store: &Store,
    mut keys: Keys,
    progress: &dyn enspace_core::progress::Progress,
) -> Result<u64, RestoreError> {
    let (first_seq, first_hash) = store.log.head()?;
    let last = stream_last(js).await?;
    if last <= first_seq {
        return Ok(0);
    }
    let stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(nats)?;
    tracing::info!(
        from = first_seq + 1,
        stream_last = last,
        "restoring events from {} on from the token events stream",
        first_seq + 1
    );
    let mut chain = Chain {
        seq: first_seq,
        hash: first_hash,
    };
    let mut batch = sled::Batch::default();
    let mut in_batch = 0;
    let mut at = 0;
    let mut unverified: Option<u64> = None;
    let stopped = scan(&stream, first_seq + 1, last, |message| {
        let kind = classify(
            &store.log,
            chain,
            &keys,
            &message.payload,
            message.headers.as_ref(),
        )?;
        match kind {
            Kind::Next(next) => {
                keys.pass(&next.envelope, &next.key);
                let stored = StoredEvent {
                    prev_hash: chain.hash,
                    hash: next.hash,
                    payload: message.payload.to_vec(),
                };
                chain = Chain::after(&next);
                progress.advance(chain.seq, last);
                at = message.at;
                batch.insert(&encode_seq(chain.seq)[..], stored.to_bytes());
                in_batch += 1;
                if in_batch == BATCH {
                    store
                        .log
                        .tree()
                        .apply_batch(std::mem::take(&mut batch))
                        .map_err(StoreError::from)?;
                    in_batch = 0;
                }
            }
            Kind::Held(_) => {}
            Kind::Foreign(claims) => {
                if claims == Some(chain.seq + 1) && message.headers.is_some() {
                    unverified.get_or_insert(chain.seq + 1);
                }
            }
            Kind::OtherHistory(seq) => {
                return Ok(ControlFlow::Break(RestoreError::NotAPrefix { seq }));
            }
            Kind::Gap(_) => {
                return Ok(ControlFlow::Break(RestoreError::Invalid {
                    seq: chain.seq + 1,
                    reason: "the stream holds later events signed by the event key without it"
                        .into(),
                }));
            }
        }
        Ok::<_, RestoreError>(ControlFlow::Continue(()))
    })
    .await?;
    store
        .log
        .tree()
        .apply_batch(batch)
        .map_err(StoreError::from)?;
    let (seq, prev) = (chain.seq, chain.hash);
    let restored = seq - first_seq;
    if restored > 0 {
        store.projections.catch_up(&store.log)?;
        store.db.flush().map_err(StoreError::from)?;
        store
            .head
            .lock()
            .map_err(|_| StoreError::Corrupt("the head file's lock is poisoned".into()))?
            .write(Head { seq, hash: prev })
            .map_err(StoreError::from)?;
        store
            .outbox_state
            .set_position(StreamPosition { seq, at })?;
        store.db.flush().map_err(StoreError::from)?;
    }
    if let Some(error) = stopped {
        return Err(error);
    }
    if restored == 0
        && let Some(seq) = unverified
    {
        return Err(RestoreError::BadSignature {
            seq,
            key_id: key_id_of(&keys),
        });
    }
    Ok(restored)
}
