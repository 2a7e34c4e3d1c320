//! Bringing this process's log up to a position of the token events stream
//! at once, by getting the messages it lacks one by one, for the moments a
//! write waits on it: a new writer before it writes, a forwarding process
//! before it answers. The follower ([`super::follow`]) does this all the
//! time, but its consumer may sit on a NATS server that died until its
//! watchdog notices. Every message is checked as the follower checks it
//! (its `seq`, the chain hash from the log's head, the signature), and goes
//! to the log through the writer thread like the follower's, so the two
//! never conflict: what the log holds already is compared and skipped.

use async_nats::jetstream;
use enspace_core::EventKey;
use enspace_core::events::{EventEnvelope, StoredEvent, chain_hash};

use crate::store::EventLog;
use crate::store::writer::{Replicated, Writer};

/// Most messages fetched this way at once: more is the follower's job.
const MOST: u64 = 256;

/// Appends the stream's messages after the log's head up to `last` (at
/// most [`MOST`]); answers the head after them.
pub async fn fetch_until(
    js: &jetstream::Context,
    log: &EventLog,
    writer: &Writer,
    key: &EventKey,
    last: u64,
) -> Result<u64, String> {
    let (mut seq, mut prev) = log.head().map_err(|e| e.to_string())?;
    if seq >= last {
        return Ok(seq);
    }
    let stream = js
        .get_stream_no_info(enspace_nats::TOKEN_EVENTS_STREAM)
        .await
        .map_err(|e| e.to_string())?;
    let mut events = Vec::new();
    while seq < last.min(seq + MOST) {
        let next = seq + 1;
        let message = stream
            .get_raw_message(next)
            .await
            .map_err(|e| e.to_string())?;
        let refused = |why: &str| format!("the stream's message {next} is refused: {why}");
        let envelope =
            EventEnvelope::decode(&message.payload).map_err(|_| refused("not an event"))?;
        if envelope.seq != next {
            return Err(refused("its seq is not its place in the stream"));
        }
        let hash = chain_hash(&prev, &message.payload);
        let signature = enspace_nats::signature_of(Some(&message.headers));
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
    writer.replicate(events).await.map_err(|e| e.to_string())
}
