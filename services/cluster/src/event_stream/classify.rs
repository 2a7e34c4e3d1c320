//! What one message of the token events stream is to a log that ends at a
//! given event: its next event, a copy of one it holds, or something else.
//! Only a signature by the event key decides: an event is authentic when
//! its signature verifies over its chain hash, computed from the log's own
//! head (the next event) or from the `Enspace-Prev-Hash` it carries (an
//! event elsewhere in a chain signed by the key).

use async_nats::HeaderMap;
use enspace_core::EventKey;
use enspace_core::events::{EventEnvelope, chain_hash};

pub use super::keys::Keys;

use enspace_store::{EventLog, StoreError};

/// The event a log ends at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub seq: u64,
    pub hash: [u8; 32],
}

impl Chain {
    pub const GENESIS: Chain = Chain {
        seq: 0,
        hash: enspace_core::events::GENESIS_HASH,
    };

    /// The chain after `event`.
    pub fn after(event: &Next) -> Chain {
        Chain {
            seq: event.envelope.seq,
            hash: event.hash,
        }
    }
}

/// The log's next event, checked.
#[derive(Debug, Clone)]
pub struct Next {
    pub envelope: EventEnvelope,
    pub hash: [u8; 32],
    pub signature: [u8; 64],
    /// The key that signed it.
    pub key: EventKey,
}

#[derive(Debug, Clone)]
pub enum Kind {
    /// The next event: `seq` one past the chain, signed over the chain hash
    /// from the chain's head.
    Next(Box<Next>),
    /// An authentic event the log holds (same chain hash): read again, or
    /// a copy of it.
    Held(u64),
    /// Not an event signed by the key; the seq it claims, if it decodes as
    /// an event.
    Foreign(Option<u64>),
    /// An authentic event of another chain than the log's: the stream and
    /// the log hold different histories.
    OtherHistory(u64),
    /// An authentic event past the next one: events are missing before it.
    Gap(u64),
}

/// Classifies one message (its payload and headers) after `chain`, looking
/// up held events in `log`; `keys` stand right before `chain`'s next event.
/// A caller moves `keys` past every [`Kind::Next`] ([`Keys::pass`]).
pub fn classify(
    log: &EventLog,
    chain: Chain,
    keys: &Keys,
    payload: &[u8],
    headers: Option<&HeaderMap>,
) -> Result<Kind, StoreError> {
    let Ok(envelope) = EventEnvelope::decode(payload) else {
        return Ok(Kind::Foreign(None));
    };
    let seq = envelope.seq;
    let signature = enspace_nats::signature_of(headers);
    if seq == chain.seq + 1 {
        let hash = chain_hash(&chain.hash, payload);
        if let Some(key) = keys.signer_of(&envelope, &hash, &signature)
            && key.verify_event(&hash, &signature)
            && let Ok(signature) = <[u8; 64]>::try_from(signature.as_slice())
        {
            return Ok(Kind::Next(Box::new(Next {
                envelope,
                hash,
                signature,
                key,
            })));
        }
    }
    let Some(prev) = enspace_nats::prev_hash_of(headers) else {
        return Ok(Kind::Foreign(Some(seq)));
    };
    let hash = chain_hash(&prev, payload);
    if !keys.authentic(seq, &hash, &signature) {
        return Ok(Kind::Foreign(Some(seq)));
    }
    if seq > chain.seq + 1 {
        return Ok(Kind::Gap(seq));
    }
    if seq == chain.seq + 1 {
        return Ok(Kind::OtherHistory(seq));
    }
    Ok(match log.get(seq)? {
        Some(entry) if entry.stored.hash == hash => Kind::Held(seq),
        _ => Kind::OtherHistory(seq),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use enspace_core::events::StoredEvent;
    use enspace_core::{EventSigner, SecretHash, fixtures};

    use super::*;

    fn headers(signer: &EventSigner, stored: &StoredEvent) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            enspace_nats::SIGNATURE_HEADER,
            base64::engine::general_purpose::STANDARD
                .encode(signer.sign_event(&stored.hash))
                .as_str(),
        );
        h.insert(
            enspace_nats::PREV_HASH_HEADER,
            hex::encode(stored.prev_hash).as_str(),
        );
        h
    }

    #[test]
    fn the_next_event_a_copy_junk_another_history_and_a_gap_are_told_apart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        let log = EventLog::open(&db).expect("log");
        let signer = EventSigner::generate();
        let keys = Keys::single(signer.public().clone());
        let mut prev = enspace_core::events::GENESIS_HASH;
        let mut events = Vec::new();
        for seq in 1..=3u64 {
            let stored = StoredEvent::new(
                prev,
                &fixtures::created(seq, &SecretHash([seq as u8; 32])).build(),
            );
            prev = stored.hash;
            events.push(stored);
        }
        // The log holds event 1 only.
        log.tree()
            .insert(
                enspace_store::event_log::encode_seq(1),
                events[0].to_bytes(),
            )
            .expect("append");
        let chain = Chain {
            seq: 1,
            hash: events[0].hash,
        };
        let kind = |stored: &StoredEvent, h: Option<&HeaderMap>| {
            classify(&log, chain, &keys, &stored.payload, h).expect("classify")
        };
        let h2 = headers(&signer, &events[1]);
        assert!(matches!(kind(&events[1], Some(&h2)), Kind::Next(n) if n.envelope.seq == 2));
        let h1 = headers(&signer, &events[0]);
        assert!(matches!(kind(&events[0], Some(&h1)), Kind::Held(1)));
        let h3 = headers(&signer, &events[2]);
        assert!(matches!(kind(&events[2], Some(&h3)), Kind::Gap(3)));
        assert!(matches!(kind(&events[1], None), Kind::Foreign(Some(2))));
        let other = EventSigner::generate();
        let forged = headers(&other, &events[1]);
        assert!(matches!(
            kind(&events[1], Some(&forged)),
            Kind::Foreign(Some(2))
        ));
        assert!(matches!(
            classify(&log, chain, &keys, b"a PubAck", None).expect("classify"),
            Kind::Foreign(None)
        ));
        // Event 2 of another chain, signed by the key.
        let elsewhere =
            StoredEvent::new([7; 32], &fixtures::created(2, &SecretHash([9; 32])).build());
        let h = headers(&signer, &elsewhere);
        assert!(matches!(kind(&elsewhere, Some(&h)), Kind::OtherHistory(2)));
    }
}
