//! The keys a reader of the token events stream checks its messages with:
//! the key chain standing right before the log's next event (a rotation
//! read hands the events after it to the new key), and the key of each
//! earlier event's era, to recognise an authentic event elsewhere in the
//! chain (a copy, another history). An event past the next one is
//! authentic only with the key in force: a key rotated away signs nothing
//! new. With an empty log the chain is not known yet: event 1 is checked
//! with each candidate key.

use enspace_core::{EventEnvelope, EventKey, KeyChain, KeyEras};
use enspace_store::StoreError;
use enspace_store::keyring::Keyring;

#[derive(Debug, Clone)]
pub struct Keys {
    chain: Option<KeyChain>,
    /// Which key signed each event up to the chain's (once it is known).
    eras: Option<KeyEras>,
    /// The next event's seq.
    next: u64,
    /// Keys event 1 may be signed by, while the chain is not known.
    candidates: Vec<EventKey>,
    /// Given explicitly: a break after a lost key to one of them is taken.
    trusted: Vec<EventKey>,
    known: Vec<EventKey>,
}

impl Keys {
    /// Checking against `key` alone (its rotations followed).
    pub fn single(key: EventKey) -> Self {
        Keys {
            chain: None,
            eras: None,
            next: 1,
            candidates: vec![key.clone()],
            trusted: vec![key.clone()],
            known: vec![key],
        }
    }

    /// Event 1 signed by one of `candidates`, rotations followed from it; a
    /// break after a lost key taken to one of `trusted`.
    pub fn starting_with(candidates: Vec<EventKey>, trusted: Vec<EventKey>) -> Self {
        let mut known = candidates.clone();
        for key in &trusted {
            push_new(&mut known, key.clone());
        }
        Keys {
            chain: None,
            eras: None,
            next: 1,
            candidates,
            trusted,
            known,
        }
    }

    /// The keys of a process's log ending at `head`, with `also` (a key
    /// given with `--event-key`) trusted too.
    pub fn of_log(
        keyring: &Keyring,
        head: u64,
        also: Option<&EventKey>,
    ) -> Result<Self, StoreError> {
        let eras = keyring.eras()?;
        let mut trusted: Vec<EventKey> = keyring.held_key().into_iter().collect();
        trusted.extend(also.cloned());
        let mut known = keyring.kept_keys();
        for era in eras.eras() {
            push_new(&mut known, era.key.clone());
        }
        for key in &trusted {
            push_new(&mut known, key.clone());
        }
        let chain = (head > 0).then(|| eras.chain_at(head + 1, trusted.iter().cloned()));
        let mut candidates = also.cloned().into_iter().collect::<Vec<_>>();
        for key in &known {
            push_new(&mut candidates, key.clone());
        }
        Ok(Keys {
            eras: chain.as_ref().map(|_| eras),
            chain,
            next: head + 1,
            candidates,
            trusted,
            known,
        })
    }

    /// The key `envelope`, the next event, must be signed by, given its
    /// chain hash and signature (needed only to pick event 1's key).
    pub fn signer_of(
        &self,
        envelope: &EventEnvelope,
        hash: &[u8; 32],
        signature: &[u8],
    ) -> Option<EventKey> {
        match &self.chain {
            Some(chain) => chain.signer_of(envelope),
            None => self
                .candidates
                .iter()
                .find(|k| k.verify_event(hash, signature))
                .filter(|_| envelope.key_rotation().is_none_or(|r| !r.previous_lost))
                .cloned(),
        }
    }

    /// Moves past the next event, signed by `signer`.
    pub fn pass(&mut self, envelope: &EventEnvelope, signer: &EventKey) {
        let chain = self
            .chain
            .get_or_insert_with(|| KeyChain::trusting(signer.clone(), self.trusted.clone()));
        let eras = self
            .eras
            .get_or_insert_with(|| KeyEras::new(signer.clone(), &[]));
        self.next = envelope.seq + 1;
        if let Some(rotated) = envelope.key_rotation() {
            eras.rotated(envelope.seq, rotated);
        }
        if let Some(new) = chain.pass(envelope) {
            push_new(&mut self.known, new);
        }
    }

    /// Whether the key of event `seq`'s era signed this chain hash: for an
    /// event not yet read, the key in force.
    pub fn authentic(&self, seq: u64, hash: &[u8; 32], signature: &[u8]) -> bool {
        match (&self.chain, &self.eras) {
            (Some(chain), _) if seq >= self.next => chain.current().verify_event(hash, signature),
            (_, Some(eras)) => eras.key_for(seq).verify_event(hash, signature),
            _ => self.known.iter().any(|k| k.verify_event(hash, signature)),
        }
    }

    /// The key in force, for messages naming it.
    pub fn current(&self) -> Option<&EventKey> {
        self.chain
            .as_ref()
            .map(KeyChain::current)
            .or(self.candidates.first())
    }
}

fn push_new(keys: &mut Vec<EventKey>, key: EventKey) {
    if !keys.contains(&key) {
        keys.push(key);
    }
}
