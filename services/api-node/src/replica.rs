//! The node's local copy of every token's state, folded from token events,
//! laid out to be small and fast: one hash map from secret hash to a
//! 40-byte entry, so a lookup is one probe. Users and workspace sets are
//! interned. Revocation is monotonic and a creation for a known hash is
//! ignored, so replayed or duplicated events change nothing.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use enspace_core::{EventEnvelope, SecretHash, TokenEvent};
use ulid::Ulid;

use crate::verify::Scopes;

/// Keys are SHA-256 digests, already uniform: hashing them again would only
/// cost time, so the map uses eight of their bytes as the hash.
#[derive(Default)]
pub struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        let mut buf = [0u8; 8];
        let n = bytes.len().min(8);
        buf[..n].copy_from_slice(&bytes[bytes.len() - n..]);
        self.0 ^= u64::from_le_bytes(buf);
    }
}

type ByDigest = BuildHasherDefault<DigestHasher>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    id: [u8; 16],
    /// `i64::MAX` for a token that never expires.
    expires_at_ms: i64,
    user: u32,
    workspaces: u32,
    scopes: Scopes,
    revoked: bool,
}

/// What verification needs to know of one token.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub token_id: Ulid,
    pub user_id: Arc<str>,
    pub workspaces: Arc<[String]>,
    pub scopes: Scopes,
    pub expires_at_ms: i64,
    pub revoked: bool,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<[u8; 32], Entry, ByDigest>,
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

    /// Folds one event; idempotent, and safe against replays.
    pub fn apply(&self, envelope: &EventEnvelope) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        inner.last_seq = inner.last_seq.max(envelope.seq);
        let hex = match &envelope.event {
            TokenEvent::TokenCreated(c) => &c.secret_hash,
            TokenEvent::TokenRevoked(r) => &r.secret_hash,
        };
        let Some(hash) = SecretHash::from_hex(hex) else {
            tracing::warn!(token.id = %envelope.token_id, "token event without a valid secret hash");
            return;
        };
        match &envelope.event {
            TokenEvent::TokenCreated(created) => {
                if inner.by_hash.contains_key(&hash.0) {
                    return;
                }
                let entry = Entry {
                    id: envelope.token_id.to_bytes(),
                    expires_at_ms: created.expires_at.map_or(i64::MAX, |t| t.as_millisecond()),
                    user: inner.intern_user(&created.user_id),
                    workspaces: inner.intern_workspaces(&created.workspaces),
                    scopes: Scopes::from_iter(created.scopes.iter().copied()),
                    revoked: false,
                };
                inner.by_hash.insert(hash.0, entry);
            }
            TokenEvent::TokenRevoked(_) => {
                if let Some(entry) = inner.by_hash.get_mut(&hash.0) {
                    entry.revoked = true;
                }
            }
        }
    }

    pub fn lookup(&self, hash: &[u8; 32]) -> Option<TokenFacts> {
        let inner = self.inner.read().ok()?;
        let entry = inner.by_hash.get(hash)?;
        Some(TokenFacts {
            token_id: Ulid::from_bytes(entry.id),
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
