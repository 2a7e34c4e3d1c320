//! The writer's commit point in a cluster: a group's events are stored in
//! the token events stream, each with `Nats-Expected-Last-Sequence` naming
//! the event before it, before the writer thread persists them. A refusal
//! means the stream moved on without this process: it stops writing until
//! it has caught up again ([`Role::fenced`]).

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, context::PublishErrorKind};
use enspace_core::events::StoredEvent;
use enspace_core::{EventEnvelope, EventSigner};
use tokio::runtime::Handle;

use super::Role;
use crate::commands::CommandError;
use crate::outbox::event_headers;
use crate::store::event_log::LogEntry;
use crate::store::writer::{Commit, Stored};

/// How long the writer waits for the stream to take a group, and then for
/// each acknowledgement: how long after a command was decided its events
/// may still be stored.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct StreamCommit {
    pub role: Role,
    pub js: jetstream::Context,
    pub signer: Arc<EventSigner>,
    pub runtime: Handle,
}

impl Commit for StreamCommit {
    fn is_writer(&self) -> bool {
        self.role.is_writer()
    }

    fn key_id(&self) -> &str {
        self.signer.public().key_id()
    }

    fn store(&self, events: &[&StoredEvent], envelopes: &[EventEnvelope]) -> Stored {
        let mut signatures = Vec::with_capacity(events.len());
        let published = self.runtime.block_on(async {
            tokio::time::timeout(ACK_TIMEOUT, async {
                let mut acks = Vec::with_capacity(events.len());
                for (stored, envelope) in events.iter().zip(envelopes) {
                    let signature = self.signer.sign_event(&stored.hash);
                    let entry = LogEntry {
                        envelope: envelope.clone(),
                        stored: (*stored).clone(),
                    };
                    let mut headers = event_headers(&entry, &self.signer, &signature);
                    headers.insert(
                        "Nats-Expected-Last-Sequence",
                        (envelope.seq - 1).to_string().as_str(),
                    );
                    let subject = enspace_nats::token_event_subject(&envelope.token_id.to_string());
                    match self
                        .js
                        .publish_with_headers(subject, headers, stored.payload.clone().into())
                        .await
                    {
                        Ok(ack) => acks.push((envelope.seq, signature, ack)),
                        Err(e) => return (acks, Some(CommandError::Unavailable(e.to_string()))),
                    }
                }
                (acks, None)
            })
            .await
            .unwrap_or_else(|_| {
                (
                    Vec::new(),
                    Some(CommandError::Unavailable(
                        "could not send to the token events stream in time".into(),
                    )),
                )
            })
        });
        let (acks, mut error) = published;
        let mut count = 0;
        for (seq, signature, ack) in acks {
            let answer = self
                .runtime
                .block_on(async { tokio::time::timeout(ACK_TIMEOUT, ack).await });
            match answer {
                // Stored as message `seq`, and not taken for a duplicate of
                // an earlier message: only then is message n event n.
                Ok(Ok(ack)) if ack.sequence == seq && !ack.duplicate => {
                    count += 1;
                    signatures.push((seq, signature));
                }
                Ok(Ok(ack)) => {
                    tracing::error!(
                        seq,
                        stored_as = ack.sequence,
                        duplicate = ack.duplicate,
                        "the token events stream stored an event elsewhere than its seq"
                    );
                    error = Some(CommandError::NotWriter);
                    break;
                }
                Ok(Err(e)) if e.kind() == PublishErrorKind::WrongLastSequence => {
                    error = Some(CommandError::NotWriter);
                    break;
                }
                Ok(Err(e)) => {
                    error = Some(CommandError::Unavailable(e.to_string()));
                    break;
                }
                Err(_) => {
                    error = Some(CommandError::Unavailable(
                        "the token events stream did not acknowledge in time".into(),
                    ));
                    break;
                }
            }
        }
        if count < events.len() {
            // Whatever happened to the rest, the stream and the log must be
            // compared before this process writes again.
            self.role.fenced();
        }
        Stored {
            count,
            signatures,
            error,
        }
    }
}
