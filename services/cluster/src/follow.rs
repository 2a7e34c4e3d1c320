//! Every process of a cluster folds the token events stream into its own
//! log and projections: the log's next event is appended once its chain
//! hash is recomputed from the log's own head and its signature checked
//! against the event key; events the log holds are skipped (the writer's
//! own come back this way), and so are foreign messages, counted and noted
//! for the writer's next repair: anything not signed by the key, and a
//! copy of an event whose place is known to be earlier (it was read
//! earlier in this pass, or sits before where the log's head event is). An
//! event signed by the key that does not extend the log (another history,
//! or one past a gap) stops the follower.
//!
//! How far it has read, foreign messages included, is published as a
//! [`Followed`]: the read barrier and a new writer wait on it.

use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use enspace_core::events::StoredEvent;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use crate::event_stream::classify::{Chain, Keys, Kind, classify};
use crate::event_stream::repair::Repairer;
use crate::event_stream::{Followed, Tip};
use crate::outbox::in_place;
use enspace_store::keyring::Keyring;
use enspace_store::writer::{Replicated, Writer};
use enspace_store::{EventLog, OutboxState};

/// Most events handed to the writer thread at once.
const BATCH: usize = 1024;

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("reading the token events stream failed: {0}")]
    Nats(String),
    #[error("the stream's message {at} is refused: {reason}")]
    Refused { at: u64, reason: &'static str },
    #[error(transparent)]
    Store(#[from] enspace_store::StoreError),
}

fn nats(e: impl std::fmt::Display) -> FollowError {
    FollowError::Nats(e.to_string())
}

/// How often the watchdog compares what was read with the stream.
const WATCH_EVERY: Duration = Duration::from_millis(500);

/// What the follower needs.
pub struct Follower {
    pub js: jetstream::Context,
    pub log: EventLog,
    /// Where the log's head event is in the stream.
    pub position: OutboxState,
    pub writer: Writer,
    pub keys: Keyring,
    pub repairer: Repairer,
    pub followed: watch::Sender<Followed>,
}

/// Follows the stream into the log, forever; resumes after every error
/// from the log's head, and whenever the watchdog finds the reading behind
/// the stream without moving (a consumer left on a NATS server that died).
pub async fn follow(follower: Follower) {
    let mut backoff = enspace_core::Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        let outcome = tokio::select! {
            outcome = follower.follow_once() => outcome,
            () = follower.stalled() => Err(FollowError::Nats("the log stopped following the stream".into())),
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

impl Follower {
    /// Resolves once the reading has stayed behind the stream, without
    /// moving, for two checks in a row.
    async fn stalled(&self) {
        let followed = self.followed.subscribe();
        let mut behind_at: Option<Followed> = None;
        loop {
            tokio::time::sleep(WATCH_EVERY).await;
            let Ok(tip) = crate::event_stream::tip(&self.js).await else {
                continue;
            };
            let now = *followed.borrow();
            if now.reached(tip) {
                behind_at = None;
                continue;
            }
            if behind_at == Some(now) {
                return;
            }
            behind_at = Some(now);
        }
    }

    async fn follow_once(&self) -> Result<(), FollowError> {
        let (seq, hash) = self.log.head()?;
        let mut chain = Chain { seq, hash };
        let mut keys = Keys::of_log(&self.keys, seq, None)?;
        let mut stream = self
            .js
            .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
            .await
            .map_err(nats)?;
        let tip = Tip::of(stream.info().await.map_err(nats)?);
        // Event n is at a stream sequence >= n: every message before n + 1
        // is an event the log holds or a foreign one.
        self.followed.send_replace(Followed {
            stream: tip.stream,
            at: chain.seq,
        });
        // An event the log held at the start, read after where its head
        // event is, is a copy; so is one read twice in this pass.
        let position = self.position.position()?;
        let head_at = match position.seq == chain.seq
            && in_place(&stream, &self.log, position)
                .await
                .map_err(FollowError::Nats)?
        {
            true => Some(position),
            false => None,
        };
        let mut seen = 0;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: chain.seq + 1,
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
            let mut foreign = Vec::new();
            let mut read = None;
            let mut refused = None;
            for message in batch {
                let at = message.info().map_err(nats)?.stream_sequence;
                let kind = classify(
                    &self.log,
                    chain,
                    &keys,
                    &message.payload,
                    message.headers.as_ref(),
                )?;
                match kind {
                    Kind::Next(next) => {
                        keys.pass(&next.envelope, &next.key);
                        seen = next.envelope.seq;
                        let prev_hash = chain.hash;
                        chain = Chain::after(&next);
                        events.push(Replicated {
                            envelope: next.envelope,
                            stored: StoredEvent {
                                prev_hash,
                                hash: next.hash,
                                payload: message.payload.to_vec(),
                            },
                            signature: next.signature,
                            at,
                        });
                    }
                    Kind::Held(seq) => {
                        let copy =
                            seq <= seen || head_at.is_some_and(|h| seq <= h.seq && at > h.at);
                        if copy {
                            foreign.push(at);
                        }
                        seen = seen.max(seq);
                    }
                    Kind::Foreign(_) => foreign.push(at),
                    Kind::OtherHistory(_) => {
                        refused = Some(FollowError::Refused {
                            at,
                            reason: "an event signed by the event key on another chain than the log's",
                        });
                        break;
                    }
                    Kind::Gap(_) => {
                        refused = Some(FollowError::Refused {
                            at,
                            reason: "an event signed by the event key past the log's next: events are missing before it",
                        });
                        break;
                    }
                }
                read = Some(at);
            }
            self.repairer.note(tip.stream, &foreign);
            if !events.is_empty() {
                let expected = chain.seq;
                let head = self.writer.replicate(events).await?;
                if head != expected {
                    return Err(FollowError::Nats(format!(
                        "the log is at {head}, the stream at {expected}"
                    )));
                }
            }
            if let Some(at) = read {
                self.followed.send_replace(Followed {
                    stream: tip.stream,
                    at,
                });
            }
            if let Some(refused) = refused {
                return Err(refused);
            }
        }
    }
}
