//! Which event key signs which part of the log, when the key is rotated.
//!
//! The log starts signed by one key. A `signing_key_rotated` event, signed by
//! the key in force, names the next one: every event after it is signed by
//! the new key, and whoever trusted the old key trusts the new one. A key
//! whose private half was lost cannot sign its own hand-over: the event then
//! says so (`previous_lost`), is signed by the new key, and is accepted only
//! by whoever was given the new key explicitly. Nothing else changes the
//! key: an event signed by any other key is not part of the log.
//!
//! [`KeyChain`] walks the log from a set of trusted keys (what an API node
//! pins, what an auditor passes to `enspace audit verify`); [`KeyEras`] is
//! the same rule read from the rotations a log holds, for the process that
//! signs.

use crate::EventKey;
use crate::events::{EventEnvelope, SigningKeyRotated};

/// The key in force at some point of the log, and the keys given
/// explicitly.
#[derive(Debug, Clone)]
pub struct KeyChain {
    current: EventKey,
    trusted: Vec<EventKey>,
}

impl KeyChain {
    /// A chain trusting `key` alone, from the first event.
    pub fn new(key: EventKey) -> Self {
        KeyChain {
            trusted: vec![key.clone()],
            current: key,
        }
    }

    /// A chain whose key in force is `current`, trusting `trusted` too.
    pub fn trusting(current: EventKey, trusted: impl IntoIterator<Item = EventKey>) -> Self {
        let mut chain = KeyChain::new(current);
        for key in trusted {
            if !chain.trusted.contains(&key) {
                chain.trusted.push(key);
            }
        }
        chain
    }

    /// The key that signs the next event (but a rotation's hand-over, see
    /// [`KeyChain::signer_of`]).
    pub fn current(&self) -> &EventKey {
        &self.current
    }

    /// The keys given explicitly.
    pub fn trusted(&self) -> &[EventKey] {
        &self.trusted
    }

    /// The same trust, with `key` in force (the start of a log whose first
    /// event `key` signed).
    pub fn starting_with(&self, key: &EventKey) -> KeyChain {
        KeyChain {
            current: key.clone(),
            trusted: self.trusted.clone(),
        }
    }

    /// Whether `key` was given explicitly.
    pub fn trusts(&self, key: &EventKey) -> bool {
        self.trusted.contains(key)
    }

    /// The key that must have signed `envelope`, the event right after those
    /// passed: the key in force; for the break after a lost key, the new key
    /// if it was given explicitly. `None`: no key may sign it (a rotation
    /// that does not start from the key in force, or a break to a key nobody
    /// gave): it is not part of the log.
    pub fn signer_of(&self, envelope: &EventEnvelope) -> Option<EventKey> {
        let Some(rotated) = envelope.key_rotation() else {
            return Some(self.current.clone());
        };
        let new = rotated.new_key()?;
        if rotated.previous_lost {
            return self.trusts(&new).then_some(new);
        }
        (rotated.old_key().as_ref() == Some(&self.current)).then(|| self.current.clone())
    }

    /// Moves past `envelope`, whose signature checked out with
    /// [`KeyChain::signer_of`]: after a rotation the new key is in force.
    /// Answers the new key when it changed.
    pub fn pass(&mut self, envelope: &EventEnvelope) -> Option<EventKey> {
        let new = envelope.key_rotation()?.new_key()?;
        self.current = new.clone();
        Some(new)
    }
}

/// The keys a log was signed with, as its rotations say: era `i` signs the
/// events from `first_seq` on, up to the next era's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEras {
    eras: Vec<KeyEra>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyEra {
    pub key: EventKey,
    /// The first event it signs.
    pub first_seq: u64,
    /// It starts with a break: the key before it was lost.
    pub after_loss: bool,
}

impl KeyEras {
    /// The eras of a log signed by `initial` (the key the log started with
    /// when it holds no rotation) and rotated at the events `rotations`
    /// (seq order). A rotation naming no valid key is skipped: it could not
    /// have been written.
    pub fn new(initial: EventKey, rotations: &[(u64, SigningKeyRotated)]) -> Self {
        let first = rotations
            .first()
            .and_then(|(_, r)| r.old_key())
            .unwrap_or(initial);
        let mut eras = vec![KeyEra {
            key: first,
            first_seq: 1,
            after_loss: false,
        }];
        for (seq, rotated) in rotations {
            let Some(key) = rotated.new_key() else {
                continue;
            };
            eras.push(KeyEra {
                key,
                // The hand-over is the old key's last event; a break is
                // the new key's first.
                first_seq: if rotated.previous_lost { *seq } else { seq + 1 },
                after_loss: rotated.previous_lost,
            });
        }
        KeyEras { eras }
    }

    /// The key that signs event `seq`.
    pub fn key_for(&self, seq: u64) -> &EventKey {
        &self.era_of(seq).key
    }

    pub fn era_of(&self, seq: u64) -> &KeyEra {
        let at = self.eras.partition_point(|era| era.first_seq <= seq);
        &self.eras[at.saturating_sub(1)]
    }

    /// The key in force now.
    pub fn current(&self) -> &EventKey {
        // Never empty: `new` makes the first era.
        &self.eras[self.eras.len() - 1].key
    }

    pub fn eras(&self) -> &[KeyEra] {
        &self.eras
    }

    /// A chain standing right before event `seq`, trusting `trusted` too.
    pub fn chain_at(&self, seq: u64, trusted: impl IntoIterator<Item = EventKey>) -> KeyChain {
        KeyChain::trusting(self.key_for(seq).clone(), trusted)
    }

    /// Adds the rotation at `seq` (past every era's start).
    pub fn rotated(&mut self, seq: u64, rotated: &SigningKeyRotated) {
        if let Some(key) = rotated.new_key() {
            self.eras.push(KeyEra {
                key,
                first_seq: if rotated.previous_lost { seq } else { seq + 1 },
                after_loss: rotated.previous_lost,
            });
        }
    }
}

/// The rotation from `old` to `new` (`lost`: `old`'s private half is gone).
pub fn rotation(old: &EventKey, new: &EventKey, lost: bool) -> SigningKeyRotated {
    SigningKeyRotated {
        key: new.to_base64(),
        key_id: new.key_id().to_owned(),
        previous_key: old.to_base64(),
        previous_key_id: old.key_id().to_owned(),
        previous_lost: lost,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventSigner, TokenEvent};

    fn event(seq: u64, data: TokenEvent) -> EventEnvelope {
        EventEnvelope {
            seq,
            id: ulid::Ulid::new(),
            at: "2026-12-01T00:00:00Z".parse().expect("ts"),
            actor: crate::SYSTEM_ACTOR.into(),
            token_id: ulid::Ulid::nil(),
            event: data,
        }
    }

    fn rotate(seq: u64, old: &EventSigner, new: &EventSigner, lost: bool) -> EventEnvelope {
        event(
            seq,
            TokenEvent::SigningKeyRotated(rotation(old.public(), new.public(), lost)),
        )
    }

    fn plain(seq: u64) -> EventEnvelope {
        crate::fixtures::created(seq, &crate::SecretHash([seq as u8; 32])).build()
    }

    #[test]
    fn a_rotation_is_signed_by_the_old_key_and_hands_over_to_the_new_one() {
        let (k0, k1) = (EventSigner::generate(), EventSigner::generate());
        let mut chain = KeyChain::new(k0.public().clone());
        assert_eq!(chain.signer_of(&plain(1)).as_ref(), Some(k0.public()));
        chain.pass(&plain(1));
        let r = rotate(2, &k0, &k1, false);
        assert_eq!(chain.signer_of(&r).as_ref(), Some(k0.public()));
        assert_eq!(chain.pass(&r).as_ref(), Some(k1.public()));
        assert_eq!(chain.signer_of(&plain(3)).as_ref(), Some(k1.public()));
    }

    #[test]
    fn a_rotation_from_another_key_than_the_one_in_force_is_no_part_of_the_log() {
        let (k0, k1, k2) = (
            EventSigner::generate(),
            EventSigner::generate(),
            EventSigner::generate(),
        );
        let chain = KeyChain::new(k0.public().clone());
        assert_eq!(chain.signer_of(&rotate(1, &k1, &k2, false)), None);
    }

    #[test]
    fn a_break_after_a_lost_key_is_accepted_only_with_the_new_key_given() {
        let (k0, k1) = (EventSigner::generate(), EventSigner::generate());
        let lost = rotate(5, &k0, &k1, true);
        assert_eq!(KeyChain::new(k0.public().clone()).signer_of(&lost), None);
        let told = KeyChain::trusting(k0.public().clone(), [k1.public().clone()]);
        assert_eq!(told.signer_of(&lost).as_ref(), Some(k1.public()));
    }

    #[test]
    fn eras_say_which_key_signs_each_event() {
        let (k0, k1, k2) = (
            EventSigner::generate(),
            EventSigner::generate(),
            EventSigner::generate(),
        );
        let rotations = [
            (3, rotation(k0.public(), k1.public(), false)),
            (7, rotation(k1.public(), k2.public(), true)),
        ];
        // The key the process holds now does not rename the first era.
        let eras = KeyEras::new(k2.public().clone(), &rotations);
        let keys: Vec<_> = (1..=8).map(|seq| eras.key_for(seq).key_id()).collect();
        let (a, b, c) = (
            k0.public().key_id(),
            k1.public().key_id(),
            k2.public().key_id(),
        );
        assert_eq!(keys, [a, a, a, b, b, b, c, c]);
        assert_eq!(eras.current(), k2.public());
        assert!(eras.era_of(7).after_loss);
        let fresh = KeyEras::new(k0.public().clone(), &[]);
        assert_eq!(fresh.key_for(100), k0.public());
    }
}
