//! The node's local copy of every token's state, folded from token events,
//! laid out so that verifying a token costs one cache line of the replica
//! (the table is in [`crate::table`]).
//!
//! A token's user, workspace set and fences (`allowed_cidrs`, `not_before`)
//! are interned together as a principal, so an entry carries one 32-bit
//! index, and a token without fences costs nothing more to verify; a
//! token's fences are checked under the replica's lock, never copied out.
//! Events are folded by the rules every fold of the log shares (`enspace_core::fold`): revocation is monotonic and
//! a creation for a known id or hash is ignored, so replayed or duplicated
//! events change nothing.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, RwLock};

use enspace_core::fence::{Fence, Refusal};
use enspace_core::fold::{self, Change, Known};
use enspace_core::{EventEnvelope, SecretHash};
use ulid::Ulid;

use crate::scopes::Scopes;
use crate::table::{DECOY, OCCUPIED, REVOKED, Slot, Table};

/// What verification needs to know of one token.
#[derive(Debug, Clone)]
pub struct TokenFacts {
    pub token_id: Ulid,
    pub user_id: Arc<str>,
    pub workspaces: Arc<[String]>,
    pub scopes: Scopes,
    pub expires_at_ms: i64,
    pub revoked: bool,
    /// A decoy: any use is answered as an unknown token's, and recorded.
    pub decoy: bool,
}

/// What a token's fences say of a call (`Ok` for a token without any).
pub(crate) type FenceVerdict = Result<(), Refusal>;

/// A token's user, workspace set and fences, shared by all its tokens.
struct Principal {
    user: Arc<str>,
    workspaces: Arc<[String]>,
    fence: Option<Arc<Fence>>,
}

#[derive(Default)]
struct Inner {
    table: Table,
    principals: Vec<Principal>,
    /// (user, workspace set, fence + 1 or 0 for none) → principal.
    principal_ids: HashMap<(u32, u32, u32), u32>,
    fences: Vec<Arc<Fence>>,
    fence_ids: HashMap<Arc<Fence>, u32>,
    users: Vec<Arc<str>>,
    user_ids: HashMap<Arc<str>, u32>,
    workspace_sets: Vec<Arc<[String]>>,
    workspace_set_ids: HashMap<Arc<[String]>, u32>,
    /// Every token id, so that a creation reusing one changes nothing.
    ids: HashSet<u128, BuildHasherDefault<IdHasher>>,
    last_seq: u64,
}

/// Token ids are ULIDs whose low 80 bits are random: their low 64 bits are
/// a hash already.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
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

    /// The fence's index plus one; 0 for none.
    fn intern_fence(&mut self, fence: Option<Fence>) -> u32 {
        let Some(fence) = fence else {
            return 0;
        };
        if let Some(&i) = self.fence_ids.get(&fence) {
            return i + 1;
        }
        let arc = Arc::new(fence);
        let i = self.fences.len() as u32;
        self.fences.push(arc.clone());
        self.fence_ids.insert(arc, i);
        i + 1
    }

    fn intern_principal(&mut self, user: &str, workspaces: &[String], fence: Option<Fence>) -> u32 {
        let key = (
            self.intern_user(user),
            self.intern_workspaces(workspaces),
            self.intern_fence(fence),
        );
        if let Some(&i) = self.principal_ids.get(&key) {
            return i;
        }
        let i = self.principals.len() as u32;
        let fence = key
            .2
            .checked_sub(1)
            .and_then(|f| self.fences.get(f as usize))
            .cloned();
        self.principals.push(Principal {
            user: self.users[key.0 as usize].clone(),
            workspaces: self.workspace_sets[key.1 as usize].clone(),
            fence,
        });
        self.principal_ids.insert(key, i);
        i
    }
}

impl Known for Inner {
    fn id_known(&self, id: Ulid) -> bool {
        self.ids.contains(&u128::from(id))
    }

    fn by_hash(&self, hash: &SecretHash) -> Option<(Ulid, bool)> {
        let slot = self.table.get(&hash.0)?;
        Some((Ulid::from_bytes(slot.id), slot.flags & REVOKED != 0))
    }
}

impl Inner {
    fn apply(&mut self, envelope: &EventEnvelope) {
        self.last_seq = self.last_seq.max(envelope.seq);
        match fold::change(self, envelope) {
            Change::Create { hash, created } => {
                let principal = self.intern_principal(
                    &created.user_id,
                    &created.workspaces,
                    Fence::of(created),
                );
                self.ids.insert(u128::from(envelope.token_id));
                self.table.insert(Slot {
                    key: hash.0,
                    id: envelope.token_id.to_bytes(),
                    expires_at_ms: created.expires_at.map_or(i64::MAX, |t| t.as_millisecond()),
                    principal,
                    // A decoy grants nothing, whatever its event says.
                    scopes: if created.decoy {
                        Scopes::default().bits()
                    } else {
                        Scopes::from_iter(created.scopes.iter().copied()).bits()
                    },
                    flags: if created.decoy {
                        OCCUPIED | DECOY
                    } else {
                        OCCUPIED
                    },
                    _pad: [0; 2],
                });
            }
            Change::Revoke { hash, .. } => {
                if let Some(slot) = self.table.get_mut(&hash.0) {
                    slot.flags |= REVOKED;
                }
            }
            Change::Rotate { hash, rotated } => {
                if let Some(slot) = self.table.get_mut(&hash.0) {
                    slot.expires_at_ms =
                        slot.expires_at_ms.min(rotated.expires_at.as_millisecond());
                }
            }
            Change::Workspace(_) | Change::Nothing => {}
        }
    }

    #[inline]
    fn facts(&self, hash: &[u8; 32]) -> Option<TokenFacts> {
        let slot = self.table.get(hash)?;
        let principal = self.principals.get(slot.principal as usize)?;
        Some(TokenFacts {
            token_id: Ulid::from_bytes(slot.id),
            user_id: principal.user.clone(),
            workspaces: principal.workspaces.clone(),
            scopes: Scopes::from_bits(slot.scopes),
            expires_at_ms: slot.expires_at_ms,
            revoked: slot.flags & REVOKED != 0,
            decoy: slot.flags & DECOY != 0,
        })
    }

    fn fence(&self, hash: &[u8; 32]) -> Option<&Arc<Fence>> {
        let slot = self.table.get(hash)?;
        self.principals.get(slot.principal as usize)?.fence.as_ref()
    }
}

impl TokenReplica {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event by the shared rules (`enspace_core::fold`):
    /// idempotent, and safe against replays and conflicting creations.
    pub fn apply(&self, envelope: &EventEnvelope) {
        let Ok(mut inner) = self.inner.write() else {
            return;
        };
        inner.apply(envelope);
    }

    /// Takes over the state of `rebuilt` at once, leaving it empty (a node
    /// rebuilding its copy keeps serving from the old one until the new one
    /// is complete).
    pub fn replace_with(&self, rebuilt: &TokenReplica) {
        let Ok(mut theirs) = rebuilt.inner.write() else {
            return;
        };
        let new = std::mem::take(&mut *theirs);
        if let Ok(mut inner) = self.inner.write() {
            *inner = new;
        }
    }

    pub fn lookup(&self, hash: &[u8; 32]) -> Option<TokenFacts> {
        self.inner.read().ok()?.facts(hash)
    }

    /// The fences of the token with `hash`, if it has any.
    pub fn fence_of(&self, hash: &[u8; 32]) -> Option<Arc<Fence>> {
        self.inner.read().ok()?.fence(hash).cloned()
    }

    /// Looks `hash` up once `check` passes, and runs `check` while the
    /// table's memory for `hash` is on its way: the load of the home slot
    /// is issued first, so the cache miss overlaps with the check. A token
    /// with fences is judged by `fenced` under the same lock: what it says
    /// comes back beside the facts (`Ok` for a token without fences).
    pub(crate) fn lookup_after<E>(
        &self,
        hash: &[u8; 32],
        check: impl FnOnce() -> Result<(), E>,
        fenced: impl FnOnce(&Fence) -> Result<(), Refusal>,
    ) -> Result<Option<(TokenFacts, FenceVerdict)>, E> {
        let Ok(inner) = self.inner.read() else {
            check()?;
            return Ok(None);
        };
        inner.table.touch(hash);
        check()?;
        let Some(facts) = inner.facts(hash) else {
            return Ok(None);
        };
        let fence = inner.fence(hash).map_or(Ok(()), |f| fenced(f));
        Ok(Some((facts, fence)))
    }

    pub fn len(&self) -> usize {
        self.inner.read().map(|i| i.table.count).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The highest event `seq` folded in.
    pub fn last_seq(&self) -> u64 {
        self.inner.read().map(|i| i.last_seq).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use enspace_core::Scope;
    use enspace_core::events::TokenEvent;
    use enspace_core::fixtures;
    use enspace_core::fold::{Outcome, cases};

    use super::*;

    fn hash(i: u64) -> [u8; 32] {
        SecretHash::of(&format!("secret-{i}")).0
    }

    fn created(seq: u64, hash: &[u8; 32], user: &str, workspaces: &[&str]) -> EventEnvelope {
        fixtures::created(seq, &SecretHash(*hash))
            .token_id(id_of(hash))
            .user(user)
            .workspaces(workspaces)
            .scopes(&[Scope::Read, Scope::Delete])
            .expires_at(jiff::Timestamp::from_millisecond(1_000_000).expect("ts"))
            .build()
    }

    fn revoked(seq: u64, hash: &[u8; 32]) -> EventEnvelope {
        fixtures::revoked(seq, id_of(hash), &SecretHash(*hash))
    }

    /// Each test token's id, derived from its hash.
    fn id_of(hash: &[u8; 32]) -> Ulid {
        let mut id = [0u8; 16];
        id.copy_from_slice(&hash[..16]);
        Ulid::from_bytes(id)
    }

    #[test]
    fn replica_folds_creations_with_their_facts() {
        let replica = TokenReplica::new();
        assert!(replica.is_empty());
        replica.apply(&created(1, &hash(1), "alice", &["acme", "globex"]));
        replica.apply(&created(2, &hash(2), "alice", &["acme", "globex"]));
        replica.apply(&created(3, &hash(3), "bob", &["acme"]));
        assert_eq!(replica.len(), 3);
        assert_eq!(replica.last_seq(), 3);
        let facts = replica.lookup(&hash(1)).expect("known");
        assert_eq!(&*facts.user_id, "alice");
        assert_eq!(&*facts.workspaces, ["acme".to_owned(), "globex".to_owned()]);
        assert!(facts.scopes.contains(Scope::Read));
        assert!(!facts.scopes.contains(Scope::Write));
        assert!(facts.scopes.contains(Scope::Delete));
        assert_eq!(facts.expires_at_ms, 1_000_000);
        assert!(!facts.revoked);
        // The same user and workspaces are shared, not copied.
        let other = replica.lookup(&hash(2)).expect("known");
        assert!(Arc::ptr_eq(&facts.user_id, &other.user_id));
        assert!(Arc::ptr_eq(&facts.workspaces, &other.workspaces));
        assert_eq!(&*replica.lookup(&hash(3)).expect("known").user_id, "bob");
        assert!(replica.lookup(&hash(4)).is_none());
    }

    #[test]
    fn replica_keeps_the_token_id_and_a_token_that_never_expires() {
        let replica = TokenReplica::new();
        let mut event = created(1, &hash(1), "alice", &[]);
        if let TokenEvent::TokenCreated(c) = &mut event.event {
            c.expires_at = None;
        }
        replica.apply(&event);
        let facts = replica.lookup(&hash(1)).expect("known");
        assert_eq!(facts.token_id, event.token_id);
        assert_eq!(facts.expires_at_ms, i64::MAX);
        assert!(facts.workspaces.is_empty());
    }

    #[test]
    fn replica_ignores_a_duplicate_creation() {
        let replica = TokenReplica::new();
        let first = created(1, &hash(1), "alice", &["acme"]);
        replica.apply(&first);
        replica.apply(&revoked(2, &hash(1)));
        // A replay of the creation, or another creation for the same hash,
        // neither un-revokes it nor changes its facts.
        replica.apply(&first);
        let mut other = created(3, &hash(1), "mallory", &["evil"]);
        other.token_id = Ulid::new();
        replica.apply(&other);
        assert_eq!(replica.len(), 1);
        let facts = replica.lookup(&hash(1)).expect("known");
        assert_eq!(facts.token_id, first.token_id);
        assert_eq!(&*facts.user_id, "alice");
        assert!(facts.revoked);
        assert_eq!(replica.last_seq(), 3);
    }

    #[test]
    fn replica_revocation_is_idempotent() {
        let replica = TokenReplica::new();
        replica.apply(&created(1, &hash(1), "alice", &["acme"]));
        replica.apply(&created(2, &hash(2), "alice", &["acme"]));
        replica.apply(&revoked(3, &hash(1)));
        replica.apply(&revoked(4, &hash(1)));
        assert!(replica.lookup(&hash(1)).expect("known").revoked);
        assert!(!replica.lookup(&hash(2)).expect("known").revoked);
        assert_eq!(replica.len(), 2);
    }

    #[test]
    fn replica_ignores_a_revocation_before_the_creation() {
        let replica = TokenReplica::new();
        replica.apply(&revoked(1, &hash(1)));
        assert!(replica.is_empty());
        assert!(replica.lookup(&hash(1)).is_none());
        replica.apply(&created(2, &hash(1), "alice", &["acme"]));
        assert!(!replica.lookup(&hash(1)).expect("known").revoked);
    }

    #[test]
    fn replica_ignores_an_event_without_a_valid_hash() {
        let replica = TokenReplica::new();
        let mut event = created(5, &hash(1), "alice", &["acme"]);
        if let TokenEvent::TokenCreated(c) = &mut event.event {
            c.secret_hash = "not hex".into();
        }
        replica.apply(&event);
        assert!(replica.is_empty());
        assert_eq!(replica.last_seq(), 5);
    }

    #[test]
    fn replica_folds_every_case_of_the_shared_table() {
        for case in cases() {
            let replica = TokenReplica::new();
            case.events.iter().for_each(|e| replica.apply(e));
            for (hash, want) in &case.expect {
                let got = match replica.lookup(&hash.0) {
                    None => Outcome::Unknown,
                    Some(f) if f.revoked => Outcome::Revoked {
                        token_id: f.token_id,
                    },
                    Some(f) if f.expires_at_ms != i64::MAX => Outcome::Until {
                        token_id: f.token_id,
                        at_ms: f.expires_at_ms,
                    },
                    Some(f) => Outcome::Active {
                        token_id: f.token_id,
                        user_id: f.user_id.to_string(),
                    },
                };
                assert_eq!(&got, want, "{}", case.name);
            }
        }
    }

    #[test]
    fn replica_holds_each_tokens_fences_from_its_creation_and_shares_them() {
        let replica = TokenReplica::new();
        let fenced = |seq: u64, i: u64| {
            fixtures::created(seq, &SecretHash(hash(i)))
                .token_id(id_of(&hash(i)))
                .allowed_cidrs(&["192.0.2.0/24"])
                .not_before(jiff::Timestamp::from_millisecond(5_000).expect("ts"))
                .build()
        };
        replica.apply(&fenced(1, 1));
        replica.apply(&fenced(2, 2));
        replica.apply(&created(3, &hash(3), "alice", &["acme"]));
        let one = replica.fence_of(&hash(1)).expect("fenced");
        assert_eq!(one.not_before_ms, 5_000);
        assert!(one.admits(Some("192.0.2.9".parse().expect("ip"))));
        assert!(!one.admits(Some("198.51.100.1".parse().expect("ip"))));
        // The same fences of the same user are held once.
        let two = replica.fence_of(&hash(2)).expect("fenced");
        assert!(Arc::ptr_eq(&one, &two));
        assert!(replica.fence_of(&hash(3)).is_none());
        // A replayed creation without fences takes nothing away.
        let mut replay = fenced(4, 1);
        if let TokenEvent::TokenCreated(c) = &mut replay.event {
            c.allowed_cidrs.clear();
            c.not_before = None;
        }
        replica.apply(&replay);
        assert!(replica.fence_of(&hash(1)).is_some());
    }

    #[test]
    fn replace_with_takes_over_the_rebuilt_state() {
        let replica = TokenReplica::new();
        replica.apply(&created(1, &hash(1), "alice", &["acme"]));
        let rebuilt = TokenReplica::new();
        rebuilt.apply(&created(1, &hash(2), "bob", &["acme"]));
        replica.replace_with(&rebuilt);
        assert!(replica.lookup(&hash(1)).is_none());
        assert_eq!(&*replica.lookup(&hash(2)).expect("known").user_id, "bob");
    }

    #[test]
    fn replica_holds_many_tokens_across_growth() {
        let replica = TokenReplica::new();
        let n = 50_000;
        for i in 0..n {
            replica.apply(&created(
                i + 1,
                &hash(i),
                &format!("user{}", i % 100),
                &["acme"],
            ));
            if i % 7 == 0 {
                replica.apply(&revoked(i + 1, &hash(i)));
            }
        }
        assert_eq!(replica.len(), n as usize);
        for i in 0..n {
            let facts = replica.lookup(&hash(i)).expect("known");
            assert_eq!(&*facts.user_id, format!("user{}", i % 100));
            assert_eq!(facts.revoked, i % 7 == 0);
        }
        assert!(replica.lookup(&hash(n)).is_none());
        let inner = replica.inner.read().expect("lock");
        assert_eq!(inner.principals.len(), 100);
        crate::table::tests::assert_invariants(&inner.table);
    }
}
