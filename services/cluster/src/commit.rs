//! The writer's commit point in a cluster: a group's events are stored in
//! the token events stream before the writer thread persists them, after
//! the stream's last sequence as the writer last read it
//! (`Nats-Expected-Last-Sequence`), each after the one before it
//! (`Nats-Expected-Last-Msg-Id`). When the fence fails, the writer reads
//! what follows the last event it knows: foreign messages only, and it
//! appends after them (they are noted for the next repair); the next event
//! signed by the key, and the stream moved on without this process: it
//! stops writing until it has caught up again ([`Role::fenced`]).

use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use enspace_core::EventEnvelope;
use enspace_core::events::StoredEvent;
use enspace_store::keyring::Keyring;
use tokio::runtime::Handle;

use super::Role;
use crate::event_stream::Tip;
use crate::event_stream::classify::Keys;
use crate::event_stream::repair::Repairer;
use crate::event_stream::tail::walk;
use crate::outbox::{event_headers, fence, in_place};
use enspace_store::commands::CommandError;
use enspace_store::event_log::LogEntry;
use enspace_store::writer::{Commit, Stored};
use enspace_store::{EventLog, OutboxState, Store, StreamPosition};

/// How long the writer waits for the stream to take a group (all its
/// attempts past foreign messages included): how long after a command was
/// decided its events may still be stored.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);
/// Appends of one group after foreign messages before giving up.
const ATTEMPTS: usize = 4;

pub struct StreamCommit {
    pub role: Role,
    pub js: jetstream::Context,
    pub keys: Keyring,
    pub runtime: Handle,
    log: EventLog,
    /// Where the log's last event is in the stream (kept by the writer
    /// thread).
    position: OutboxState,
    repairer: Repairer,
    /// The stream's last sequence as last read after the event `.0`.
    tail: Mutex<Option<(u64, u64)>>,
}

/// How one attempt at appending went.
enum Attempt {
    /// Every event stored.
    Done,
    /// The fence failed: something follows the last event known.
    Fenced,
    Failed(CommandError),
}

impl StreamCommit {
    pub fn new(
        role: Role,
        js: jetstream::Context,
        keys: Keyring,
        runtime: Handle,
        store: &Store,
        repairer: Repairer,
    ) -> Self {
        StreamCommit {
            role,
            js,
            keys,
            runtime,
            log: store.log.clone(),
            position: store.outbox_state.clone(),
            repairer,
            tail: Mutex::new(None),
        }
    }

    /// The stream sequence the event after `seq` goes after, if known.
    fn base(&self, seq: u64) -> Option<u64> {
        if let Some((at_seq, end)) = self.tail.lock().ok().and_then(|t| *t)
            && at_seq == seq
        {
            return Some(end);
        }
        let position = self.position.position().ok()?;
        (position.seq == seq).then_some(position.at)
    }

    fn set_tail(&self, seq: u64, end: u64) {
        if let Ok(mut t) = self.tail.lock() {
            *t = Some((seq, end));
        }
    }

    /// Publishes `events` after stream sequence `base`, every ack in
    /// flight; answers how many were stored, in order, and how it ended.
    async fn attempt(
        &self,
        events: &[&StoredEvent],
        envelopes: &[EventEnvelope],
        signatures: &[(String, [u8; 64])],
        base: u64,
    ) -> (usize, Attempt) {
        let mut acks = Vec::with_capacity(events.len());
        let mut previous: Option<String> = None;
        for (index, ((stored, envelope), signature)) in
            events.iter().zip(envelopes).zip(signatures).enumerate()
        {
            let entry = LogEntry {
                envelope: envelope.clone(),
                stored: (*stored).clone(),
            };
            let mut headers = event_headers(&entry, &signature.0, &signature.1);
            fence(&mut headers, base, index, previous.as_deref());
            previous = Some(envelope.id.to_string());
            let subject = enspace_nats::token_event_subject(&envelope.token_id.to_string());
            match self
                .js
                .publish_with_headers(subject, headers, stored.payload.clone().into())
                .await
            {
                Ok(ack) => acks.push(ack),
                Err(e) => {
                    return (0, Attempt::Failed(CommandError::Unavailable(e.to_string())));
                }
            }
        }
        let mut count = 0;
        for (index, ack) in acks.into_iter().enumerate() {
            match ack.await {
                // Stored right after the one before it, and not taken for a
                // copy of an earlier message.
                Ok(ack) if ack.sequence == base + index as u64 + 1 && !ack.duplicate => count += 1,
                Ok(ack) => {
                    tracing::error!(
                        seq = envelopes[index].seq,
                        stored_as = ack.sequence,
                        duplicate = ack.duplicate,
                        "the token events stream stored an event elsewhere than expected"
                    );
                    return (count, Attempt::Failed(CommandError::NotWriter));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
                    ) =>
                {
                    return (count, Attempt::Fenced);
                }
                Err(e) => {
                    return (
                        count,
                        Attempt::Failed(CommandError::Unavailable(e.to_string())),
                    );
                }
            }
        }
        (count, Attempt::Done)
    }

    /// What follows `anchor` (the event with chain hash `hash`, where the
    /// stream holds it; checked unless `exact`): the stream sequence to
    /// append after, if only foreign messages follow it.
    async fn after_foreign(
        &self,
        anchor: StreamPosition,
        hash: [u8; 32],
        exact: bool,
    ) -> Result<u64, String> {
        let mut stream = self
            .js
            .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let tip = Tip::of(stream.info().await.map_err(|e| e.to_string())?);
        if !exact && !in_place(&stream, &self.log, anchor).await? {
            return Err(format!(
                "the stream's message {} is not event {}",
                anchor.at, anchor.seq
            ));
        }
        let tail = walk(
            &stream,
            &self.log,
            Keys::of_log(&self.keys, anchor.seq, None).map_err(|e| e.to_string())?,
            anchor,
            hash,
            anchor.at + 1,
            tip.last,
        )
        .await
        .map_err(|e| e.to_string())?;
        self.repairer.note(tip.stream, &tail.foreign);
        match tail.beyond {
            None if tail.last.seq == anchor.seq => Ok(tail.end),
            _ => Err("the next event in the stream is not this writer's".into()),
        }
    }

    async fn append(&self, events: &[&StoredEvent], envelopes: &[EventEnvelope]) -> Stored {
        let run: Vec<_> = envelopes
            .iter()
            .zip(events)
            .map(|(e, stored)| (e.seq, e.key_rotation(), stored.hash))
            .collect();
        let signatures = match self.keys.sign_run(&run) {
            Ok(signatures) => signatures,
            Err(e) => {
                return Stored {
                    count: 0,
                    signatures: Vec::new(),
                    at: 0,
                    error: Some(CommandError::Unavailable(e.to_string())),
                };
            }
        };
        let start = envelopes.first().map_or(0, |e| e.seq - 1);
        let mut stored = Stored {
            count: 0,
            signatures: Vec::new(),
            at: 0,
            error: None,
        };
        let Some(mut base) = self.base(start) else {
            stored.error = Some(CommandError::NotWriter);
            return stored;
        };
        // Every attempt within one ACK_TIMEOUT: past it, nothing of this
        // group is stored any more (forwarding processes count on it).
        let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
        for _ in 0..ATTEMPTS {
            let done = stored.count;
            let attempt = tokio::time::timeout_at(
                deadline,
                self.attempt(
                    &events[done..],
                    &envelopes[done..],
                    &signatures[done..],
                    base,
                ),
            )
            .await;
            let (count, outcome) = attempt.unwrap_or_else(|_| {
                (
                    0,
                    Attempt::Failed(CommandError::Unavailable(
                        "the token events stream did not acknowledge in time".into(),
                    )),
                )
            });
            for i in done..done + count {
                stored.signatures.push((envelopes[i].seq, signatures[i].1));
            }
            stored.count += count;
            if count > 0 {
                base += count as u64;
                stored.at = base;
                self.set_tail(start + stored.count as u64, base);
            }
            match outcome {
                Attempt::Done => return stored,
                Attempt::Failed(e) => {
                    stored.error = Some(e);
                    return stored;
                }
                Attempt::Fenced => {}
            }
            // Where the last event known is: just stored, or as the writer
            // thread last recorded it (checked before anything is noted).
            let (anchor, hash, exact) = match stored.count {
                0 => match self.position.position() {
                    Ok(p) if p.seq == start => (p, events[0].prev_hash, false),
                    _ => {
                        stored.error = Some(CommandError::NotWriter);
                        return stored;
                    }
                },
                n => (
                    StreamPosition {
                        seq: start + n as u64,
                        at: stored.at,
                    },
                    events[n - 1].hash,
                    true,
                ),
            };
            match self.after_foreign(anchor, hash, exact).await {
                Ok(end) => {
                    base = end;
                    self.set_tail(anchor.seq, end);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the token events stream refused an append");
                    stored.error = Some(CommandError::NotWriter);
                    return stored;
                }
            }
        }
        stored.error = Some(CommandError::Unavailable(
            "foreign messages keep arriving in the token events stream".into(),
        ));
        stored
    }
}

impl Commit for StreamCommit {
    fn is_writer(&self) -> bool {
        self.role.is_writer()
    }

    fn key_id(&self) -> String {
        self.keys.current().public().key_id().to_owned()
    }

    fn store(&self, events: &[&StoredEvent], envelopes: &[EventEnvelope]) -> Stored {
        let stored = self.runtime.block_on(self.append(events, envelopes));
        if stored.count < events.len() {
            // Whatever happened to the rest, the stream and the log must be
            // compared before this process writes again.
            self.role.fenced();
        }
        stored
    }
}
