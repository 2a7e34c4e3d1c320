//! The writer's view of what follows an event it knows the place of: every
//! message after it is either the log's next event (one published before a
//! crash, which the writer takes as stored) or foreign, including a copy
//! of an event that is in place earlier. The walk stops at an event signed
//! by the key that does not extend the log here: another writer's, or
//! another history's.

use std::ops::ControlFlow;

use async_nats::jetstream::stream::Stream;

use super::classify::{Chain, Keys, Kind, classify};
use super::scan::{ScanError, scan};
use enspace_store::{EventLog, StoreError, StreamPosition};

/// Why a walk stopped before the stream's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beyond {
    /// The next event, signed by the key, but not the log's: written by
    /// another process (or lost from this log).
    Unknown(u64),
    /// An event signed by the key on another chain.
    OtherHistory(u64),
    /// An event signed by the key past the next one: events are missing.
    Gap(u64),
}

/// What a walk found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tail {
    /// The last of the log's events found in place, and where.
    pub last: StreamPosition,
    pub hash: [u8; 32],
    /// The last stream sequence read: an append goes right after it.
    pub end: u64,
    /// Foreign messages read (stream sequences).
    pub foreign: Vec<u64>,
    pub beyond: Option<Beyond>,
}

#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads the stream from sequence `from` to `to` after the log's event
/// `start` (at `start.at < from`, with chain hash `hash`).
pub async fn walk(
    stream: &Stream,
    log: &EventLog,
    mut keys: Keys,
    start: StreamPosition,
    hash: [u8; 32],
    from: u64,
    to: u64,
) -> Result<Tail, WalkError> {
    let mut tail = Tail {
        last: start,
        hash,
        end: start.at.max(from.saturating_sub(1)),
        foreign: Vec::new(),
        beyond: None,
    };
    let beyond = scan(stream, from, to, |message| {
        let chain = Chain {
            seq: tail.last.seq,
            hash: tail.hash,
        };
        let kind = classify(
            log,
            chain,
            &keys,
            &message.payload,
            message.headers.as_ref(),
        )?;
        match kind {
            Kind::Next(next) => {
                let seq = next.envelope.seq;
                let ours = log
                    .get(seq)?
                    .is_some_and(|e| e.stored.payload == message.payload.as_ref());
                if !ours {
                    return Ok(ControlFlow::Break(Beyond::Unknown(seq)));
                }
                tail.last = StreamPosition {
                    seq,
                    at: message.at,
                };
                tail.hash = next.hash;
                keys.pass(&next.envelope, &next.key);
            }
            Kind::Held(_) | Kind::Foreign(_) => tail.foreign.push(message.at),
            Kind::OtherHistory(seq) => return Ok(ControlFlow::Break(Beyond::OtherHistory(seq))),
            Kind::Gap(seq) => return Ok(ControlFlow::Break(Beyond::Gap(seq))),
        }
        tail.end = message.at;
        Ok::<_, WalkError>(ControlFlow::Continue(()))
    })
    .await?;
    match beyond {
        Some(beyond) => tail.beyond = Some(beyond),
        None => tail.end = tail.end.max(to),
    }
    Ok(tail)
}
