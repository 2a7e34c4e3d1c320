//! The outbox: publishes every committed event to the token events stream
//! (`ENSPACE_TOKEN_EVENTS`), in `seq` order, signed, and keeps the stream
//! holding the log's events in order, each once, foreign messages only
//! between them (see [`crate::event_stream`] for the rule).
//!
//! - The cursor (sled tree `outbox`) marks the last event the stream holds
//!   and its stream sequence, so an event committed just before a crash is
//!   published on restart.
//! - Each batch is published after the stream's last sequence as the outbox
//!   last read it (`Nats-Expected-Last-Sequence`), each event after the one
//!   before it (`Nats-Expected-Last-Msg-Id`): the stream can never hold an
//!   event twice or out of place. When the fence fails, the outbox reads
//!   what came after the cursor: foreign messages are noted (and deleted by
//!   the next repair) and the events are published after them.
//! - Before publishing, and once a second, the outbox checks the stream
//!   against the log: a stream that lost events (NATS store lost, stream
//!   deleted, an event missing) is deleted and refilled from the log; API
//!   nodes see such a reset and wait until the stream extends what they
//!   hold. Signed events past the log are never replaced.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::jetstream::stream::{LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, context::PublishErrorKind, stream};
use base64::Engine;
use enspace_core::events::GENESIS_HASH;
use enspace_nats::{KEY_ID_HEADER, PREV_HASH_HEADER, SIGNATURE_HEADER};
use tokio::sync::watch;

use crate::event_stream::classify::Keys;
use crate::event_stream::repair::Repairer;
use crate::event_stream::tail::{Beyond, WalkError, walk};
use crate::event_stream::{Tip, identity};
use enspace_store::event_log::LogEntry;
use enspace_store::keyring::Keyring;
use enspace_store::{EventLog, OutboxState, StoreError, StreamPosition};

const BATCH: usize = 4096;
/// How often the stream is checked against the log (and repaired when due).
pub const TICK: Duration = Duration::from_secs(1);
const RETRY: Duration = Duration::from_millis(100);

/// The stream's last sequence as last read after the cursor's event: the
/// next append goes right after it.
#[derive(Debug, Clone, Copy)]
struct Known {
    stream: i128,
    seq: u64,
    end: u64,
}

#[derive(Clone)]
pub struct Outbox {
    log: EventLog,
    cursor: OutboxState,
    keys: Keyring,
    published: watch::Sender<u64>,
    replicas: usize,
    /// One of several control-plane processes: never delete a stream that
    /// holds signed events this log does not (another process wrote them).
    in_cluster: bool,
    repairer: Repairer,
    known: Arc<Mutex<Option<Known>>>,
}

#[derive(Debug, thiserror::Error)]
enum OutboxError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Nats(String),
    /// The stream moved on without us: check it before publishing more.
    #[error("the stream's last sequence is not the one expected")]
    WrongLastSequence,
    /// The stream holds signed events past the log: the log must catch up
    /// with them, they are never replaced.
    #[error("the token events stream holds signed events past the log's head {0}")]
    Behind(u64),
}

impl From<WalkError> for OutboxError {
    fn from(e: WalkError) -> Self {
        match e {
            WalkError::Store(e) => OutboxError::Store(e),
            WalkError::Scan(e) => OutboxError::Nats(e.to_string()),
        }
    }
}

fn nats(e: impl std::fmt::Display) -> OutboxError {
    OutboxError::Nats(e.to_string())
}

/// What checking the stream found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    /// Every event the cursor names is in place; the cursor may have moved
    /// on over events published before a crash.
    InPlace,
    /// The stream lost events the log holds: refill it.
    Lost,
}

/// The headers every token event message carries, with the event's
/// signature by the key `key_id` (made by the caller, or kept from before).
pub fn event_headers(entry: &LogEntry, key_id: &str, signature: &[u8; 64]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    headers.insert("Nats-Msg-Id", entry.envelope.id.to_string().as_str());
    headers.insert(SIGNATURE_HEADER, b64.encode(signature).as_str());
    headers.insert(KEY_ID_HEADER, key_id);
    headers.insert(
        PREV_HASH_HEADER,
        hex::encode(entry.stored.prev_hash).as_str(),
    );
    headers
}

/// The fences of the `index`-th event of a batch published after stream
/// sequence `base`: the stream's last sequence, and for every event but the
/// first the id of the event before it (so a foreign message arriving
/// between two events of a batch stops the rest of it).
pub fn fence(headers: &mut HeaderMap, base: u64, index: usize, previous_id: Option<&str>) {
    headers.insert(
        "Nats-Expected-Last-Sequence",
        (base + index as u64).to_string().as_str(),
    );
    if index > 0
        && let Some(id) = previous_id
    {
        headers.insert("Nats-Expected-Last-Msg-Id", id);
    }
}

/// Whether message `position.at` of `stream` is the log's event
/// `position.seq` (trivially, for no event).
pub async fn in_place(
    stream: &Stream,
    log: &EventLog,
    position: StreamPosition,
) -> Result<bool, String> {
    if position.seq == 0 {
        return Ok(true);
    }
    let message = match stream.get_raw_message(position.at).await {
        Ok(message) => message,
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => return Ok(false),
        Err(e) => return Err(e.to_string()),
    };
    let ours = log.get(position.seq).map_err(|e| e.to_string())?;
    Ok(ours.is_some_and(|e| e.stored.payload == message.payload.as_ref()))
}

impl Outbox {
    pub fn new(
        log: EventLog,
        cursor: OutboxState,
        keys: Keyring,
        repairer: Repairer,
    ) -> Result<Self, StoreError> {
        let published = watch::Sender::new(cursor.get()?);
        Ok(Outbox {
            log,
            cursor,
            keys,
            published,
            replicas: 1,
            in_cluster: false,
            repairer,
            known: Arc::default(),
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

    /// What notes and deletes foreign messages.
    pub fn repairer(&self) -> &Repairer {
        &self.repairer
    }

    /// The last `seq` JetStream has acknowledged.
    pub fn published(&self) -> watch::Receiver<u64> {
        self.published.subscribe()
    }

    fn known(&self) -> Option<Known> {
        self.known.lock().ok().and_then(|k| *k)
    }

    fn set_known(&self, known: Option<Known>) {
        if let Ok(mut k) = self.known.lock() {
            *k = known;
        }
    }

    /// Publishes forever: whatever is committed and not yet in the stream.
    /// Once a [`TICK`], checks the stream and repairs it when due.
    pub async fn run(self, js: jetstream::Context, mut head: watch::Receiver<u64>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut checked = false;
        let mut last_tick = Instant::now();
        loop {
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                checked = false;
                if let Err(e) = self.repairer.repair_if_due(&js).await {
                    tracing::warn!(error = %e, "cannot repair the token events stream yet");
                }
            }
            if !checked {
                let outcome = match self.reconcile(&js).await {
                    Ok(Check::InPlace) => Ok(()),
                    Ok(Check::Lost) => self.reset(&js).await,
                    Err(e) => Err(e),
                };
                match outcome {
                    Ok(()) => checked = true,
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
                        _ = tick.tick() => {}
                    }
                }
                Ok(_) => {}
                Err(OutboxError::WrongLastSequence) => checked = false,
                Err(e) => {
                    tracing::warn!(error = %e, "publishing token events failed; retrying");
                    checked = false;
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    }

    /// Reads what the stream holds past the cursor's event: moves the
    /// cursor over events published before a crash, notes foreign
    /// messages, and says whether the stream lost events.
    async fn reconcile(&self, js: &jetstream::Context) -> Result<Check, OutboxError> {
        let mut stream = enspace_nats::ensure_stream(js, self.stream_config())
            .await
            .map_err(nats)?;
        let tip = Tip::of(stream.info().await.map_err(nats)?);
        let position = self.cursor.position()?;
        if position.seq > 0 && (tip.last < position.at || tip.messages < position.seq) {
            tracing::warn!(
                stream_last = tip.last,
                messages = tip.messages,
                published = position.seq,
                "the token events stream has lost events it acknowledged"
            );
            return Ok(Check::Lost);
        }
        let hash_of = |seq: u64| -> Result<[u8; 32], OutboxError> {
            Ok(self.log.get(seq)?.map_or(GENESIS_HASH, |e| e.stored.hash))
        };
        let known = self
            .known()
            .filter(|k| k.stream == tip.stream && k.seq == position.seq);
        let (start, from) = match known {
            Some(k) => (position, k.end + 1),
            None if position.seq == 0 => (position, 1),
            None if in_place(&stream, &self.log, position).await.map_err(nats)? => {
                (position, position.at + 1)
            }
            None => {
                tracing::warn!(
                    seq = position.seq,
                    at = position.at,
                    "the token events stream's message {} is not event {}: reading the whole stream",
                    position.at,
                    position.seq
                );
                (StreamPosition::default(), 1)
            }
        };
        let tail = walk(
            &stream,
            &self.log,
            Keys::of_log(&self.keys, start.seq, None)?,
            start,
            hash_of(start.seq)?,
            from,
            tip.last,
        )
        .await?;
        self.repairer.note(tip.stream, &tail.foreign);
        let log_head = self.log.head()?.0;
        match tail.beyond {
            None => {}
            Some(Beyond::Unknown(_)) => return Err(OutboxError::Behind(log_head)),
            Some(Beyond::Gap(seq)) if self.in_cluster && seq > log_head => {
                return Err(OutboxError::Behind(log_head));
            }
            Some(Beyond::OtherHistory(_)) if self.in_cluster => {
                return Err(OutboxError::Behind(log_head));
            }
            Some(beyond) => {
                tracing::warn!(
                    ?beyond,
                    "the token events stream holds events that do not extend the log in their place"
                );
                return Ok(Check::Lost);
            }
        }
        if tail.last.seq < position.seq {
            tracing::warn!(
                stream_last = tail.last.seq,
                published = position.seq,
                "the token events stream lost events {}..={}",
                tail.last.seq + 1,
                position.seq
            );
            return Ok(Check::Lost);
        }
        if tail.last != position {
            self.cursor.set_position(tail.last)?;
            self.published.send_replace(tail.last.seq);
        }
        self.set_known(Some(Known {
            stream: tip.stream,
            seq: tail.last.seq,
            end: tail.end,
        }));
        Ok(Check::InPlace)
    }

    /// Deletes the stream and makes it again, empty, to be refilled from
    /// the log.
    async fn reset(&self, js: &jetstream::Context) -> Result<(), OutboxError> {
        tracing::warn!(
            events = self.log.head()?.0,
            "deleting the token events stream to refill it from the event log"
        );
        match js.delete_stream(enspace_nats::TOKEN_EVENTS_STREAM).await {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    jetstream::context::DeleteStreamErrorKind::JetStream(ref j)
                        if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                ) => {}
            Err(e) => return Err(nats(e)),
        }
        let mut stream = enspace_nats::ensure_stream(js, self.stream_config())
            .await
            .map_err(nats)?;
        let created = identity(stream.info().await.map_err(nats)?);
        self.cursor.set_position(StreamPosition::default())?;
        self.published.send_replace(0);
        self.set_known(Some(Known {
            stream: created,
            seq: 0,
            end: 0,
        }));
        self.repairer.metrics().refills.inc();
        Ok(())
    }

    /// Whether the stream holds every event the cursor names (noting what
    /// else it holds); `false`: it lost events and must be refilled.
    pub async fn check(&self, js: &jetstream::Context) -> Result<bool, String> {
        Ok(self.reconcile(js).await.map_err(|e| e.to_string())? == Check::InPlace)
    }

    /// Brings the stream in line with the log once: refills what it lost
    /// (unless it holds signed events past the log: then the log must
    /// catch up first, and this fails) and publishes what it lacks.
    pub async fn refill(&self, js: &jetstream::Context) -> Result<(), String> {
        let check = self.reconcile(js).await.map_err(|e| e.to_string())?;
        if check == Check::Lost {
            self.reset(js).await.map_err(|e| e.to_string())?;
        }
        loop {
            match self.publish_pending(js).await {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(OutboxError::WrongLastSequence) => {
                    if self.reconcile(js).await.map_err(|e| e.to_string())? == Check::Lost {
                        return Err("the token events stream lost events meanwhile".into());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    /// Publishes one batch with every ack in flight; returns how many.
    async fn publish_pending(&self, js: &jetstream::Context) -> Result<usize, OutboxError> {
        let position = self.cursor.position()?;
        let entries = self.log.read_after(position.seq, BATCH)?;
        let Some(last) = entries.last().map(|e| e.envelope.seq) else {
            return Ok(0);
        };
        let base = self
            .known()
            .filter(|k| k.seq == position.seq)
            .map_or(position.at, |k| k.end);
        let mut acks = Vec::with_capacity(entries.len());
        let mut signed = Vec::new();
        let eras = self.keys.eras()?;
        let mut previous: Option<String> = None;
        for (index, entry) in entries.iter().enumerate() {
            let seq = entry.envelope.seq;
            // Each event by its era's key; one whose key is lost only with
            // the signature kept when it was first published.
            let key_id = eras.key_for(seq).key_id();
            let signature = match self.cursor.signature(seq, key_id)? {
                Some(kept) => kept,
                None => match self.keys.signer(key_id) {
                    Some(signer) => {
                        let made = signer.sign_event(&entry.stored.hash);
                        signed.push((seq, key_id.to_owned(), made));
                        made
                    }
                    None => {
                        tracing::warn!(seq, key.id = key_id, "no key to sign event {seq} with");
                        [0; 64]
                    }
                },
            };
            let mut headers = event_headers(entry, key_id, &signature);
            fence(&mut headers, base, index, previous.as_deref());
            previous = Some(entry.envelope.id.to_string());
            let subject = enspace_nats::token_event_subject(&entry.envelope.token_id.to_string());
            acks.push(
                js.publish_with_headers(subject, headers, entry.stored.payload.clone().into())
                    .await
                    .map_err(nats)?,
            );
        }
        for (index, ack) in acks.into_iter().enumerate() {
            match ack.await {
                Ok(ack) if ack.sequence == base + index as u64 + 1 && !ack.duplicate => {}
                // Taken for a copy of an earlier message: read the stream.
                Ok(_) => return Err(OutboxError::WrongLastSequence),
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                    ) =>
                {
                    return Err(OutboxError::WrongLastSequence);
                }
                Err(e) => return Err(nats(e)),
            }
        }
        let end = base + entries.len() as u64;
        self.cursor.keep_signatures(&signed)?;
        self.cursor
            .set_position(StreamPosition { seq: last, at: end })?;
        if let Some(k) = self.known() {
            self.set_known(Some(Known {
                seq: last,
                end,
                ..k
            }));
        }
        self.published.send_replace(last);
        Ok(entries.len())
    }
}
