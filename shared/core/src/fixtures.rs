//! Builders of events for tests and benchmarks (feature `test-util`), so
//! that one place knows every field an event has.

use jiff::Timestamp;
use ulid::Ulid;

use std::collections::HashMap;

use crate::events::{EventEnvelope, TokenCreated, TokenEvent, TokenRevoked};
use crate::fold::{Change, Known, change, update};
use crate::secret::SecretHash;
use crate::token::{Expiration, Scope, TokenView};

/// A `token_created` event: by default alice's, read-only, on `acme`, that
/// never expires, with a new token id, made now.
#[derive(Debug, Clone)]
pub struct Created {
    seq: u64,
    at: Timestamp,
    token_id: Ulid,
    data: TokenCreated,
}

pub fn created(seq: u64, hash: &SecretHash) -> Created {
    Created {
        seq,
        at: Timestamp::now(),
        token_id: Ulid::new(),
        data: TokenCreated {
            user_id: "alice".into(),
            description: "fixture".into(),
            expiration: Expiration::Never,
            scopes: vec![Scope::Read],
            workspaces: vec!["acme".into()],
            expires_at: None,
            secret_hash: hash.to_hex(),
            replaces: None,
            allowed_cidrs: Vec::new(),
            not_before: None,
            self_rotate: false,
            decoy: false,
        },
    }
}

impl Created {
    fn data(&mut self) -> &mut TokenCreated {
        &mut self.data
    }

    pub fn token_id(mut self, id: Ulid) -> Self {
        self.token_id = id;
        self
    }

    pub fn user(mut self, user: &str) -> Self {
        self.data().user_id = user.into();
        self
    }

    pub fn workspaces(mut self, workspaces: &[&str]) -> Self {
        self.data().workspaces = workspaces.iter().map(|w| (*w).to_owned()).collect();
        self
    }

    pub fn scopes(mut self, scopes: &[Scope]) -> Self {
        self.data().scopes = scopes.to_vec();
        self
    }

    /// Expires after `expiration` from `at`.
    pub fn expiring(mut self, expiration: Expiration, at: Timestamp) -> Self {
        self.at = at;
        let data = self.data();
        data.expiration = expiration;
        data.expires_at = expiration.expires_at(at);
        self
    }

    /// Made at `at`.
    pub fn at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// Expires at exactly `expires_at`.
    pub fn expires_at(mut self, expires_at: Timestamp) -> Self {
        let data = self.data();
        data.expiration = Expiration::OneMonth;
        data.expires_at = Some(expires_at);
        self
    }

    /// Usable only from `cidrs` (as written, valid or not).
    pub fn allowed_cidrs(mut self, cidrs: &[&str]) -> Self {
        self.data().allowed_cidrs = cidrs.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// Usable only from `not_before` on.
    pub fn not_before(mut self, not_before: Timestamp) -> Self {
        self.data().not_before = Some(not_before);
        self
    }

    /// The secret hash as written, valid or not.
    /// A decoy: no scopes, no workspaces.
    pub fn decoy(mut self) -> Self {
        let data = self.data();
        data.decoy = true;
        data.scopes.clear();
        data.workspaces.clear();
        self
    }

    pub fn raw_hash(mut self, hex: &str) -> Self {
        self.data().secret_hash = hex.into();
        self
    }

    pub fn build(self) -> EventEnvelope {
        EventEnvelope {
            seq: self.seq,
            id: Ulid::new(),
            at: self.at,
            actor: self.data.user_id.clone(),
            token_id: self.token_id,
            event: TokenEvent::TokenCreated(self.data),
        }
    }
}

/// A `token_revoked` event of the token `token_id` with secret `hash`.
pub fn revoked(seq: u64, token_id: Ulid, hash: &SecretHash) -> EventEnvelope {
    EventEnvelope {
        seq,
        id: Ulid::new(),
        at: Timestamp::now(),
        actor: "alice".into(),
        token_id,
        event: TokenEvent::TokenRevoked(TokenRevoked {
            user_id: "alice".into(),
            secret_hash: hash.to_hex(),
            reason: Default::default(),
            url: None,
        }),
    }
}

/// The reference fold: a map by id and one by hash, asking the rules of
/// `crate::fold` event by event, what any other fold is held against.
#[derive(Default)]
pub struct Reference {
    pub by_id: HashMap<Ulid, TokenView>,
    pub by_hash: HashMap<[u8; 32], Ulid>,
}

impl Known for Reference {
    fn id_known(&self, id: Ulid) -> bool {
        self.by_id.contains_key(&id)
    }
    fn by_hash(&self, hash: &SecretHash) -> Option<(Ulid, bool)> {
        let v = self.by_id.get(self.by_hash.get(&hash.0)?)?;
        Some((v.id, v.revoked_at.is_some()))
    }
}

impl Reference {
    /// Folds `e`, answering what it did.
    pub fn fold<'a>(&mut self, e: &'a EventEnvelope) -> Change<'a> {
        let change = change(self, e);
        if let Change::Create { hash, .. } = &change {
            self.by_hash.insert(hash.0, e.token_id);
        }
        let state = self.by_id.remove(&e.token_id);
        if let Some(next) = update(state, e, &change) {
            self.by_id.insert(e.token_id, next);
        }
        change
    }
}
