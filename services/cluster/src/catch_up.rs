//! Bringing this process's log up to the token events stream at once, by
//! reading the messages it lacks, for the moments a write waits on it: a new
//! writer before it writes, a forwarding process before it answers. The
//! follower ([`super::follow`]) does this all the time, but its consumer may
//! sit on a NATS server that died until its watchdog notices. Every message
//! is classified as the follower classifies it (the next event, signed over
//! the chain hash from the log's head; one the log holds; a foreign one,
//! skipped), and the events go to the log through the writer thread like
//! the follower's, so the two never conflict: what the log holds already is
//! compared and skipped.

use std::ops::ControlFlow;

use async_nats::jetstream;
use enspace_core::events::StoredEvent;

use crate::event_stream::classify::{Chain, Keys, Kind, classify};
use crate::event_stream::scan::{ScanError, scan};
use enspace_store::EventLog;
use enspace_store::keyring::Keyring;
use enspace_store::writer::{Replicated, Writer};

/// Most events fetched this way at once: more is the follower's job.
const MOST: usize = 256;

#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    Store(#[from] enspace_store::StoreError),
    #[error("the stream's message {0} is an event of another chain, or past a gap")]
    Refused(u64),
}

/// What [`fetch_until`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// The log's head after it.
    pub head: u64,
    /// Whether it read to the stream's end (as it was when it started): the
    /// log then holds every event the stream held.
    pub to_end: bool,
}

/// Appends the stream's events after the log's head, up to event `target`
/// (or the stream's end without one; at most [`MOST`]), skipping foreign
/// messages.
pub async fn fetch_until(
    js: &jetstream::Context,
    log: &EventLog,
    writer: &Writer,
    keyring: &Keyring,
    target: Option<u64>,
) -> Result<Fetched, String> {
    let (seq, hash) = log.head().map_err(|e| e.to_string())?;
    if target.is_some_and(|t| seq >= t) {
        return Ok(Fetched {
            head: seq,
            to_end: false,
        });
    }
    let mut stream = js
        .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let last = stream
        .info()
        .await
        .map_err(|e| e.to_string())?
        .state
        .last_sequence;
    let mut chain = Chain { seq, hash };
    let mut keys = Keys::of_log(keyring, seq, None).map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    // Event n is at a stream sequence >= n: start right after the head.
    let scanned = scan(&stream, seq + 1, last, |message| {
        match classify(
            log,
            chain,
            &keys,
            &message.payload,
            message.headers.as_ref(),
        )? {
            Kind::Next(next) => {
                keys.pass(&next.envelope, &next.key);
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
                    at: message.at,
                });
            }
            Kind::Held(_) | Kind::Foreign(_) => {}
            Kind::OtherHistory(_) | Kind::Gap(_) => return Err(FetchError::Refused(message.at)),
        }
        let done = events.len() >= MOST || target.is_some_and(|t| chain.seq >= t);
        Ok(if done {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        })
    })
    .await;
    let to_end = scanned.map_err(|e: FetchError| e.to_string())?.is_none();
    let head = match events.is_empty() {
        true => seq,
        false => writer.replicate(events).await.map_err(|e| e.to_string())?,
    };
    Ok(Fetched { head, to_end })
}
