//! The outbox: publishes every committed event to the token events stream
//! (`ENSPACE_TOKEN_EVENTS`), in `seq` order, signed, and keeps the stream an
//! exact copy of the log: message `n` of the stream is event `n`.
//!
//! - Each event is published with `Nats-Expected-Last-Sequence: seq - 1`, so
//!   JetStream stores it only right after event `seq - 1`: the stream can
//!   never hold an event twice or out of place.
//! - Before publishing, and once a second, the outbox reconciles the stream
//!   with the log: a stream that lost messages (NATS store lost, stream
//!   deleted) is refilled from the log; a stream that holds a message the log
//!   does not (a forged or replayed publish) is deleted and refilled. API
//!   nodes see such a reset and wait until the stream extends what they hold.
//! - The cursor (sled tree `outbox`) marks the last `seq` the stream has
//!   acknowledged, so an event committed just before a crash is published on
//!   restart.
//!
//! Beside it runs the heartbeat: the log's head, signed, once a second.

use std::sync::Arc;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use base64::Engine;
use enspace_core::EventSigner;
use enspace_core::signing::Heartbeat;
use enspace_nats::{KEY_ID_HEADER, PREV_HASH_HEADER, SIGNATURE_HEADER};
use tokio::sync::watch;

use crate::store::event_log::LogEntry;
use crate::store::{EventLog, OutboxState, StoreError};

const BATCH: usize = 4096;
/// How often the stream is checked against the log, and heartbeats sent.
pub const TICK: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(100);

#[derive(Clone)]
pub struct Outbox {
    log: EventLog,
    cursor: OutboxState,
    signer: Arc<EventSigner>,
    published: watch::Sender<u64>,
    replicas: usize,
    /// One of several control-plane processes: never delete a stream that
    /// reaches past this log (another process may have written it).
    in_cluster: bool,
}

#[derive(Debug, thiserror::Error)]
enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Nats(String),
    /// The stream moved on without us: reconcile before publishing more.
    #[error("the stream's last sequence is not the one expected")]
    WrongLastSequence,
    /// The stream holds signed events past the log: the log must catch up
    /// with them, they are never replaced.
    #[error("the token events stream holds signed events past the log's head {0}")]
    Behind(u64),
}

fn nats(e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Nats(e.to_string())
}

/// The headers every token event message carries, with the event's
/// signature by `signer` (made by the caller, or kept from before).
pub fn event_headers(entry: &LogEntry, signer: &EventSigner, signature: &[u8; 64]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    headers.insert("Nats-Msg-Id", entry.envelope.id.to_string().as_str());
    headers.insert(SIGNATURE_HEADER, b64.encode(signature).as_str());
    headers.insert(KEY_ID_HEADER, signer.public().key_id());
    headers.insert(
        PREV_HASH_HEADER,
        hex::encode(entry.stored.prev_hash).as_str(),
    );
    headers
}

impl Outbox {
    pub fn new(
        log: EventLog,
        cursor: OutboxState,
        signer: Arc<EventSigner>,
    ) -> Result<Self, StoreError> {
        let published = watch::Sender::new(cursor.get()?);
        Ok(Outbox {
            log,
            cursor,
            signer,
            published,
            replicas: 1,
            in_cluster: false,
        })
    }

    /// The replicas the token events stream is created with.
    pub fn with_replicas(self, replicas: usize) -> Self {
        Outbox { replicas, ..self }
    }

    /// For a process of a cluster (see the field).
    pub fn in_cluster(self) -> Self {
        Outbox {
            in_cluster: true,
            ..self
        }
    }

    fn stream_config(&self) -> stream::Config {
        enspace_nats::with_replicas(enspace_nats::token_events_config(), self.replicas)
    }

    /// The last `seq` JetStream has acknowledged.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Publishes forever: whatever is committed and not yet in the stream.
    pub async fn run(self, js: jetstream::Context, mut head: watch::Receiver<u64>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reconciled = false;
        loop {
            if !reconciled {
                match self.reconcile(&js).await {
                    Ok(()) => reconciled = true,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot check the token events stream; retrying");
                        tokio::time::sleep(RETRY).await;
                        continue;
                    }
                }
            }
            match self.publish_pending(&js).await {
                Ok(0) => {
                    let published = *self.published.borrow();
                    if *head.borrow_and_update() > published {
                        continue;
                    }
                    tokio::select! {
                        changed = head.changed() => if changed.is_err() { return },
                        _ = tick.tick() => reconciled = false,
                    }
                }
                Ok(_) => {}
                Err(OutboxError::WrongLastSequence) => reconciled = false,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing token events failed; retrying");
                    reconciled = false;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Brings the cursor in line with what the stream really holds, and the
    /// stream in line with the log (see the module's documentation).
    async fn reconcile(&self, js: &jetstream::Context) -> Result<(), OutboxError> {
        let stream = enspace_nats::ensure_stream(js, self.stream_config())
            .await
            .map_err(nats)?;
        let state = stream.get_info().await.map_err(nats)?.state;
        let (log_seq, _) = self.log.head()?;
        let cursor = self.cursor.get()?;
        let agreed = if state.last_sequence == 0 {
            Some(0)
        } else if state.first_sequence != 1 || state.messages != state.last_sequence {
            tracing::warn!(
                first = state.first_sequence,
                last = state.last_sequence,
                messages = state.messages,
                "the token events stream has lost messages in the middle"
            );
            None
        } else if state.last_sequence > log_seq && self.signed_after(&stream, log_seq).await? {
            return Err(OutboxError::Behind(log_seq));
        } else if state.last_sequence > log_seq {
            tracing::warn!(
                stream_last = state.last_sequence,
                log_head = log_seq,
                "the token events stream holds messages that are not in the event log"
            );
            None
        } else {
            let message = stream
                .get_raw_message(state.last_sequence)
                .await
                .map_err(nats)?;
            let ours = self.log.get(state.last_sequence)?;
            if ours.is_some_and(|e| e.stored.payload == message.payload.as_ref()) {
                Some(state.last_sequence)
            } else {
                tracing::warn!(
                    seq = state.last_sequence,
                    "the token events stream's last message is not the log's event"
                );
                None
            }
        };
        let agreed = match agreed {
            Some(seq) => seq,
            None if self.in_cluster && state.last_sequence > log_seq => {
                return Err(OutboxError::Behind(log_seq));
            }
            None => {
                tracing::warn!(
                    events = log_seq,
                    "deleting the token events stream to refill it from the event log"
                );
                js.delete_stream(enspace_nats::TOKEN_EVENTS_STREAM)
                    .await
                    .map_err(nats)?;
                enspace_nats::ensure_stream(js, self.stream_config())
                    .await
                    .map_err(nats)?;
                0
            }
        };
        if agreed < cursor {
            tracing::warn!(
                stream_last = agreed,
                published = cursor,
                "the token events stream lost events {}..={cursor}; publishing them again",
                agreed + 1
            );
        }
        if agreed != cursor {
            self.cursor.set(agreed)?;
            self.published.send_replace(agreed);
        }
        Ok(())
    }

    /// Whether the stream's message after `seq` is the log's next event,
    /// signed with this outbox's key.
    async fn signed_after(&self, stream: &stream::Stream, seq: u64) -> Result<bool, OutboxError> {
        let (_, hash) = match self.log.get(seq)? {
            Some(entry) => (seq, entry.stored.hash),
            None => (0, enspace_core::events::GENESIS_HASH),
        };
        let next = stream.get_raw_message(seq + 1).await.map_err(nats)?;
        let hash = enspace_core::events::chain_hash(&hash, &next.payload);
        Ok(self
            .signer
            .public()
            .verify_event(&hash, &enspace_nats::signature_of(Some(&next.headers))))
    }

    /// Brings the stream in line with the log once: refills what it lost,
    /// replaces what the log does not hold (unless it is signed events past
    /// the log: then the log must catch up first, and this fails).
    pub async fn refill(&self, js: &jetstream::Context) -> Result<(), String> {
        self.reconcile(js).await.map_err(|e| e.to_string())?;
        while self.publish_pending(js).await.map_err(|e| e.to_string())? > 0 {}
        Ok(())
    }

    /// Publishes one batch with every ack in flight; returns how many.
    async fn publish_pending(&self, js: &jetstream::Context) -> Result<usize, OutboxError> {
        let after = self.cursor.get()?;
        let entries = self.log.read_after(after, BATCH)?;
        let Some(last) = entries.last().map(|e| e.envelope.seq) else {
            return Ok(0);
        };
        let mut acks = Vec::with_capacity(entries.len());
        let mut signed = Vec::new();
        for entry in &entries {
            let seq = entry.envelope.seq;
            let key_id = self.signer.public().key_id();
            let signature = match self.cursor.signature(seq, key_id)? {
                Some(kept) => kept,
                None => {
                    let made = self.signer.sign_event(&entry.stored.hash);
                    signed.push((seq, made));
                    made
                }
            };
            let mut headers = event_headers(entry, &self.signer, &signature);
            headers.insert(
                "Nats-Expected-Last-Sequence",
                (seq - 1).to_string().as_str(),
            );
            let subject = enspace_nats::token_event_subject(&entry.envelope.token_id.to_string());
            acks.push(
                js.publish_with_headers(subject, headers, entry.stored.payload.clone().into())
                    .await
                    .map_err(nats)?,
            );
        }
        for ack in acks {
            match ack.await {
                Ok(_) => {}
                Err(e) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    return Err(OutboxError::WrongLastSequence);
                }
                Err(e) => return Err(nats(e)),
            }
        }
        self.cursor
            .keep_signatures(self.signer.public().key_id(), &signed)?;
        self.cursor.set(last)?;
        self.published.send_replace(last);
        Ok(entries.len())
    }
}

/// Sends the signed heartbeat every [`TICK`], forever: the log's head and
/// first hash, so API nodes know what they should hold. Only while
/// `speaks` says so (in a cluster, only the writer speaks).
pub async fn heartbeat(
    client: async_nats::Client,
    log: EventLog,
    signer: Arc<EventSigner>,
    writer: String,
    speaks: impl Fn() -> bool + Send,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !speaks() {
            continue;
        }
        let heads = log.head().and_then(|(seq, hash)| {
            let first = log.get(1)?.map_or([0; 32], |e| e.stored.hash);
            Ok((seq, hash, first))
        });
        let (seq, hash, first_hash) = match heads {
            Ok(heads) => heads,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the event log's head for the heartbeat");
                continue;
            }
        };
        let beat = Heartbeat {
            v: Heartbeat::VERSION,
            writer: writer.clone(),
            seq,
            hash,
            first_hash,
            at_ms: jiff::Timestamp::now().as_millisecond(),
            key: *signer.public().as_bytes(),
        };
        if let Err(e) = client
            .publish(enspace_nats::HEARTBEAT_SUBJECT, beat.sign(&signer).into())
            .await
        {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}

/// What the token events stream holds, for start-up checks.
pub async fn stream_state(
    js: &jetstream::Context,
) -> Result<Option<stream::State>, async_nats::Error> {
    match js.get_stream(enspace_nats::TOKEN_EVENTS_STREAM).await {
        Ok(mut stream) => Ok(Some(stream.info().await?.state.clone())),
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(ref j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}
