//! The node's local copy of every token's state, folded from token events,
//! laid out to be small (≈150 bytes a token) and looked up by secret hash in
//! one hash-map probe. Users and workspace sets are interned.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use enspace_core::{EventEnvelope, Scope, SecretHash, TokenEvent};
use ulid::Ulid;

/// Keys here are SHA-256 digests or ULIDs, already uniformly random in their
/// low bytes: hashing them again would only cost time.
#[derive(Default)]
pub struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[bytes.len() - n..]);
        self.0 ^= u64::from_le_bytes(buf);
    }
    fn write_u128(&mut self, v: u128) {
        self.0 ^= v as u64;
    }
}

type Prehashed = BuildHasherDefault<PrehashedHasher>;

pub fn scope_bit(scope: Scope) -> u8 {
    match scope {
        Scope::Read => 1,
        Scope::Write => 2,
        Scope::Delete => 4,
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: u128,
    seq: u64,
    /// `i64::MAX` for a token that never expires.
    expires_at_ms: i64,
    user: u32,
    workspaces: u32,
    scopes: u8,
    revoked: bool,
}

/// What verification needs to know of one token.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub token_id: Ulid,
    pub user_id: Arc<str>,
    pub workspaces: Arc<[String]>,
    pub scopes: u8,
    pub expires_at_ms: i64,
    pub revoked: bool,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<[u8; 32], Entry, Prehashed>,
    hash_of: HashMap<u128, [u8; 32], Prehashed>,
    users: Vec<Arc<str>>,
    user_ids: HashMap<Arc<str>, u32>,
    workspace_sets: Vec<Arc<[String]>>,
    workspace_set_ids: HashMap<Arc<[String]>, u32>,
    last_seq: u64,
}

#[derive(Default)]
pub struct TokenReplica {
    inner: RwLock<Inner>,
}

impl Inner {
    fn intern_user(&mut self, user: &str) -> u32 {
        if let Some(&i) = self.user_ids.get(user) {
            return i;
        }
        let arc: Arc<str> = Arc::from(user);
        let i = self.users.len() as u32;
        self.users.push(arc.clone());
        self.user_ids.insert(arc, i);
        i
    }

    fn intern_workspaces(&mut self, workspaces: &[String]) -> u32 {
        if let Some(&i) = self.workspace_set_ids.get(workspaces) {
            return i;
        }
        let arc: Arc<[String]> = Arc::from(workspaces.to_vec());
        let i = self.workspace_sets.len() as u32;
        self.workspace_sets.push(arc.clone());
        self.workspace_set_ids.insert(arc, i);
        i
    }
}

impl TokenReplica {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event. Idempotent and safe against replays: an event at or
    /// below the token's last applied `seq` changes nothing.
    pub fn apply(&self, envelope: &EventEnvelope) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        let id = u128::from(envelope.token_id);
        inner.last_seq = inner.last_seq.max(envelope.seq);
        match &envelope.event {
            TokenEvent::TokenCreated(created) => {
                if inner.hash_of.contains_key(&id) {
                    return;
                }
                let Some(hash) = SecretHash::from_hex(&created.secret_hash) else {
                    tracing::warn!(token.id = %envelope.token_id, "token_created without a valid secret hash");
                    return;
                };
                let user = inner.intern_user(&created.user_id);
                let workspaces = inner.intern_workspaces(&created.workspaces);
                let scopes = created.scopes.iter().fold(0, |acc, s| acc | scope_bit(*s));
                let entry = Entry {
                    id,
                    seq: envelope.seq,
                    expires_at_ms: created.expires_at.map_or(i64::MAX, |t| t.as_millisecond()),
                    user,
                    workspaces,
                    scopes,
                    revoked: false,
                };
                inner.by_hash.insert(hash.0, entry);
                inner.hash_of.insert(id, hash.0);
            }
            TokenEvent::TokenRevoked(_) => {
                let Some(hash) = inner.hash_of.get(&id).copied() else {
                    return;
                };
                if let Some(entry) = inner.by_hash.get_mut(&hash)
                    && envelope.seq > entry.seq
                {
                    entry.revoked = true;
                    entry.seq = envelope.seq;
                }
            }
        }
    }

    pub fn lookup(&self, hash: &[u8; 32]) -> Option<TokenFacts> {
        let inner = self.inner.read().ok()?;
        let entry = inner.by_hash.get(hash)?;
        Some(TokenFacts {
            token_id: Ulid::from(entry.id),
            user_id: inner.users.get(entry.user as usize)?.clone(),
            workspaces: inner.workspace_sets.get(entry.workspaces as usize)?.clone(),
            scopes: entry.scopes,
            expires_at_ms: entry.expires_at_ms,
            revoked: entry.revoked,
        })
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.by_hash.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest event `seq` folded in.
    pub fn last_seq(&self) -> u64 {
        self.inner.read().map(|i| i.last_seq).unwrap_or(0)
    }
}
