//! The chain a node holds, and what it accepts onto it: only the event with
//! the next `seq`, whose chain hash `SHA-256(held hash ‖ payload)` carries a
//! signature by the pinned event key. Everything else is refused, with the
//! reason counted (`enspace_token_events_refused_total{reason}`).
//!
//! When events are read in bulk (catching up), each one's chain hash is
//! computed and only the last one's signature checked: it covers its chain
//! hash, which covers every event before it, so one valid signature vouches
//! for the whole run. If it fails, each event is checked on its own.
//!
//! The key in force follows the log's rotations ([`KeyChain`]): a
//! `signing_key_rotated` event, signed by the key in force, hands the events
//! after it to the key it names, and from then on only that key is
//! accepted. A run is checked in segments that each end at a rotation.

use enspace_core::events::{EventEnvelope, GENESIS_HASH, chain_hash};
use enspace_core::{EventKey, KeyChain};

use crate::replica::TokenReplica;

/// Why an event was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a decodable event.
    Malformed,
    /// At or below the held `seq`: a duplicate or a replay.
    Replayed,
    /// Past the next `seq`: events are missing before it.
    Gap,
    /// No valid signature by the pinned key.
    BadSignature,
    /// Signed by the pinned key, but extends another chain than the one
    /// held (the control plane's history was replaced): the node rebuilds.
    OtherHistory,
}

impl Refusal {
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Malformed => "malformed",
            Refusal::Replayed => "replayed",
            Refusal::Gap => "gap",
            Refusal::BadSignature => "bad_signature",
            Refusal::OtherHistory => "other_history",
        }
    }
}

/// An event whose place in the chain checks out, waiting for its signature.
pub struct Candidate {
    pub envelope: EventEnvelope,
    pub hash: [u8; 32],
    pub signature: Vec<u8>,
    pub prev_hash_header: Option<[u8; 32]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    pub seq: u64,
    pub hash: [u8; 32],
    /// The chain hash of event 1, which names the history.
    pub first: [u8; 32],
}

impl Default for Chain {
    fn default() -> Self {
        Chain {
            seq: 0,
            hash: GENESIS_HASH,
            first: GENESIS_HASH,
        }
    }
}

impl Chain {
    /// Places a message after `self`: decodes it and computes its chain hash.
    pub fn place(
        &self,
        payload: &[u8],
        signature: Vec<u8>,
        prev_hash_header: Option<[u8; 32]>,
    ) -> Result<Candidate, Refusal> {
        let envelope = EventEnvelope::decode(payload).map_err(|_| Refusal::Malformed)?;
        if envelope.seq <= self.seq {
            return Err(Refusal::Replayed);
        }
        if envelope.seq > self.seq + 1 {
            return Err(Refusal::Gap);
        }
        Ok(Candidate {
            hash: chain_hash(&self.hash, payload),
            envelope,
            signature,
            prev_hash_header,
        })
    }

    /// Extends the chain with a placed event (its signature checked).
    pub fn extend(&mut self, candidate: &Candidate) {
        self.seq = candidate.envelope.seq;
        self.hash = candidate.hash;
        if self.seq == 1 {
            self.first = candidate.hash;
        }
    }
}

/// Checks a candidate's own signature; tells a forgery from an authentic
/// event of another history by its `Enspace-Prev-Hash` header.
pub fn check(candidate: &Candidate, key: &EventKey, payload: &[u8]) -> Result<(), Refusal> {
    if key.verify_event(&candidate.hash, &candidate.signature) {
        return Ok(());
    }
    let theirs = candidate
        .prev_hash_header
        .map(|prev| chain_hash(&prev, payload));
    match theirs {
        Some(hash) if key.verify_event(&hash, &candidate.signature) => Err(Refusal::OtherHistory),
        _ => Err(Refusal::BadSignature),
    }
}

/// Whether a message is an event signed by `key` somewhere in a chain (its
/// chain hash from the `Enspace-Prev-Hash` it carries), wherever it is.
pub fn authentic(
    keys: &KeyChain,
    payload: &[u8],
    signature: &[u8],
    prev: Option<[u8; 32]>,
) -> bool {
    prev.is_some_and(|prev| {
        keys.current()
            .verify_event(&chain_hash(&prev, payload), signature)
    })
}

/// Applies a run of placed events (each placed after the one before it),
/// in segments ending at each key rotation: a whole segment if its last
/// event's signature holds with the key `keys` says, else each event whose
/// own signature holds, up to the first that does not, which is returned
/// with its seq. `keys` moves past every rotation applied.
pub fn apply_run(
    run: &[(Candidate, bytes::Bytes)],
    keys: &mut KeyChain,
    target: &TokenReplica,
    chain: &mut Chain,
) -> Result<(), (Refusal, u64)> {
    let mut rest = run;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|(c, _)| c.envelope.key_rotation().is_some())
            .map_or(rest.len(), |i| i + 1);
        let (segment, after) = rest.split_at(end);
        apply_segment(segment, keys, target, chain)?;
        rest = after;
    }
    Ok(())
}

/// [`apply_run`] for events of which only the last may be a rotation.
fn apply_segment(
    segment: &[(Candidate, bytes::Bytes)],
    keys: &mut KeyChain,
    target: &TokenReplica,
    chain: &mut Chain,
) -> Result<(), (Refusal, u64)> {
    let Some((last, payload)) = segment.last() else {
        return Ok(());
    };
    let signed_by = |keys: &KeyChain| {
        keys.signer_of(&last.envelope)
            .is_some_and(|key| check(last, &key, payload).is_ok())
    };
    let mut whole = signed_by(keys);
    // From the log's start, the key in force is whichever pinned key signed
    // it (pinned keys come in any order: a key file lists them as it may).
    if !whole && chain.seq == 0 {
        let first = keys
            .trusted()
            .iter()
            .map(|k| keys.starting_with(k))
            .find(|start| signed_by(start));
        if let Some(first) = first {
            *keys = first;
            whole = true;
        }
    }
    for (candidate, payload) in segment {
        if !whole {
            let key = keys
                .signer_of(&candidate.envelope)
                .ok_or((Refusal::BadSignature, candidate.envelope.seq))?;
            check(candidate, &key, payload).map_err(|r| (r, candidate.envelope.seq))?;
        }
        target.apply(&candidate.envelope);
        chain.extend(candidate);
        keys.pass(&candidate.envelope);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use enspace_core::events::StoredEvent;
    use enspace_core::{EventSigner, SecretHash, fixtures};

    use super::*;

    fn event(seq: u64) -> EventEnvelope {
        fixtures::created(seq, &SecretHash([seq as u8; 32])).build()
    }

    /// A signed log of `n` events: (payload, signature, prev hash).
    fn log(signer: &EventSigner, n: u64) -> Vec<(Vec<u8>, Vec<u8>, [u8; 32])> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let stored = StoredEvent::new(prev, &event(seq));
                let out = (
                    stored.payload.clone(),
                    signer.sign_event(&stored.hash).to_vec(),
                    prev,
                );
                prev = stored.hash;
                out
            })
            .collect()
    }

    #[test]
    fn a_signed_log_extends_the_chain_event_by_event() {
        let signer = EventSigner::generate();
        let mut chain = Chain::default();
        for (payload, sig, prev) in log(&signer, 5) {
            let c = chain.place(&payload, sig, Some(prev)).expect("placed");
            assert_eq!(check(&c, signer.public(), &payload), Ok(()));
            chain.extend(&c);
        }
        assert_eq!(chain.seq, 5);
        assert_ne!(chain.first, GENESIS_HASH);
    }

    #[test]
    fn replays_gaps_forgeries_and_other_histories_are_refused() {
        let signer = EventSigner::generate();
        let events = log(&signer, 3);
        let mut chain = Chain::default();
        let (p1, s1, h1) = &events[0];
        chain.extend(&chain.place(p1, s1.clone(), Some(*h1)).expect("placed"));

        let (p1, s1, _) = &events[0];
        assert_eq!(
            chain.place(p1, s1.clone(), None).err(),
            Some(Refusal::Replayed)
        );
        let (p3, s3, _) = &events[2];
        assert_eq!(chain.place(p3, s3.clone(), None).err(), Some(Refusal::Gap));
        assert_eq!(
            chain.place(b"junk", vec![], None).err(),
            Some(Refusal::Malformed)
        );

        // Event 2 unsigned, and signed by another key.
        let (p2, s2, h2) = &events[1];
        let unsigned = chain.place(p2, vec![], Some(*h2)).expect("placed");
        assert_eq!(
            check(&unsigned, signer.public(), p2),
            Err(Refusal::BadSignature)
        );
        let other = EventSigner::generate();
        let forged = chain
            .place(p2, other.sign_event(&unsigned.hash).to_vec(), Some(*h2))
            .expect("placed");
        assert_eq!(
            check(&forged, signer.public(), p2),
            Err(Refusal::BadSignature)
        );
        let good = chain.place(p2, s2.clone(), Some(*h2)).expect("placed");
        assert_eq!(check(&good, signer.public(), p2), Ok(()));

        // Event 2 of another history signed by the same key.
        let elsewhere = log(&signer, 2);
        let (q2, t2, g2) = &elsewhere[1];
        let theirs = chain.place(q2, t2.clone(), Some(*g2)).expect("placed");
        assert_eq!(
            check(&theirs, signer.public(), q2),
            Err(Refusal::OtherHistory)
        );
    }

    #[test]
    fn a_run_is_applied_whole_when_its_last_signature_holds_and_up_to_a_forgery_when_not() {
        let signer = EventSigner::generate();
        let events = log(&signer, 4);
        let place_all = |sigs: &[Vec<u8>]| {
            let mut tentative = Chain::default();
            events
                .iter()
                .zip(sigs)
                .map(|((payload, _, prev), sig)| {
                    let c = tentative
                        .place(payload, sig.clone(), Some(*prev))
                        .expect("placed");
                    tentative.extend(&c);
                    (c, bytes::Bytes::from(payload.clone()))
                })
                .collect::<Vec<_>>()
        };
        let good: Vec<Vec<u8>> = events.iter().map(|(_, s, _)| s.clone()).collect();
        let keys = || KeyChain::new(signer.public().clone());
        let (replica, mut chain) = (TokenReplica::new(), Chain::default());
        assert_eq!(
            apply_run(&place_all(&good), &mut keys(), &replica, &mut chain),
            Ok(())
        );
        assert_eq!((chain.seq, replica.len()), (4, 4));

        // The last event unsigned: the run falls back to one check per
        // event and applies everything before it.
        let mut last_unsigned = good.clone();
        last_unsigned[3] = vec![];
        let (replica, mut chain) = (TokenReplica::new(), Chain::default());
        assert_eq!(
            apply_run(
                &place_all(&last_unsigned),
                &mut keys(),
                &replica,
                &mut chain
            ),
            Err((Refusal::BadSignature, 4))
        );
        assert_eq!((chain.seq, replica.len()), (3, 3));
    }

    /// Events 1..=`len`, event `rotate_at` rotating from `old` to `new`
    /// (signed by `old`, as the events before it; those after by `new`),
    /// placed in a chain; and the last event's hash.
    fn across_rotation(
        len: u64,
        rotate_at: u64,
        old: &EventSigner,
        new: &EventSigner,
    ) -> (Vec<(Candidate, bytes::Bytes)>, [u8; 32]) {
        let mut prev = GENESIS_HASH;
        let mut placed = Vec::new();
        let mut tentative = Chain::default();
        for seq in 1..=len {
            let mut envelope = event(seq);
            if seq == rotate_at {
                envelope.event = enspace_core::TokenEvent::SigningKeyRotated(
                    enspace_core::key_chain::rotation(old.public(), new.public(), false),
                );
            }
            let stored = StoredEvent::new(prev, &envelope);
            let signer = if seq <= rotate_at { old } else { new };
            let c = tentative
                .place(
                    &stored.payload,
                    signer.sign_event(&stored.hash).to_vec(),
                    Some(prev),
                )
                .expect("placed");
            tentative.extend(&c);
            placed.push((c, bytes::Bytes::from(stored.payload.clone())));
            prev = stored.hash;
        }
        (placed, prev)
    }

    #[test]
    fn a_run_across_a_rotation_moves_to_the_new_key_and_the_old_one_then_signs_nothing() {
        let (old, new) = (EventSigner::generate(), EventSigner::generate());
        let (placed, prev) = across_rotation(5, 3, &old, &new);
        let (replica, mut chain) = (TokenReplica::new(), Chain::default());
        let mut keys = KeyChain::new(old.public().clone());
        assert_eq!(apply_run(&placed, &mut keys, &replica, &mut chain), Ok(()));
        assert_eq!(chain.seq, 5);
        assert_eq!(keys.current(), new.public());
        // Event 6 signed by the old key is refused.
        let stored = StoredEvent::new(prev, &event(6));
        let forged = chain
            .place(
                &stored.payload,
                old.sign_event(&stored.hash).to_vec(),
                Some(prev),
            )
            .expect("placed");
        let run = [(forged, bytes::Bytes::from(stored.payload.clone()))];
        assert_eq!(
            apply_run(&run, &mut keys, &replica, &mut chain),
            Err((Refusal::BadSignature, 6))
        );
        assert_eq!(chain.seq, 5);
    }

    #[test]
    fn a_log_is_followed_from_whichever_pinned_key_signed_its_start() {
        let (old, new) = (EventSigner::generate(), EventSigner::generate());
        let (placed, _) = across_rotation(3, 2, &old, &new);
        // Pinned newest first, as a key file may list them.
        let mut keys = KeyChain::trusting(new.public().clone(), [old.public().clone()]);
        let (replica, mut chain) = (TokenReplica::new(), Chain::default());
        assert_eq!(apply_run(&placed, &mut keys, &replica, &mut chain), Ok(()));
        assert_eq!((chain.seq, keys.current()), (3, new.public()));
    }
}
