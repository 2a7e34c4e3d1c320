//! The node's local copy of every token's state, folded from token events,
//! laid out so that verifying a token costs one cache line of the replica.
//!
//! The table is flat open addressing over 64-byte, 64-byte-aligned slots,
//! each holding a token's whole secret hash beside its entry, so a hit reads
//! one cache line (and, when displaced, the next ones, which the prefetcher
//! streams in). Keys are SHA-256 digests, already uniform: a key's home slot
//! is its first eight bytes scaled onto the table (`h * capacity >> 64`),
//! with no hashing of our own. Slots are kept in order of those eight bytes
//! (ordered linear probing, the layout Robin Hood hashing converges to), so
//! a lookup of an unknown hash stops as soon as it passes where the hash
//! would be, instead of running to the end of the cluster. Tokens are never
//! deleted, so there are no tombstones; the table grows by rebuilding, in
//! one sequential pass, at 80 % load.
//!
//! A table over a million tokens spans ~100 MB, so a random lookup would
//! otherwise miss the TLB every time (and in a VM the page walk costs as
//! much as the cache miss). Large tables therefore live in their own
//! anonymous mapping, aligned to and advised for transparent huge pages.
//!
//! A token's user and workspace set are interned together as a principal,
//! so an entry carries one 32-bit index. Revocation is monotonic and a
//! creation for a known hash is ignored, so replayed or duplicated events
//! change nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use enspace_core::{EventEnvelope, SecretHash, TokenEvent};
use memmap2::MmapMut;
use ulid::Ulid;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

use crate::verify::Scopes;

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

/// Set in every occupied slot; an all-zero slot is empty.
const OCCUPIED: u8 = 1;
const REVOKED: u8 = 2;

/// One token: its secret hash and everything verification reads, in one
/// cache line.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
struct Slot {
    key: [u8; 32],
    id: [u8; 16],
    /// `i64::MAX` for a token that never expires.
    expires_at_ms: i64,
    /// Index into [`Inner::principals`].
    principal: u32,
    scopes: u8,
    flags: u8,
    _pad: [u8; 2],
}

const SLOT: usize = std::mem::size_of::<Slot>();
const _: () = assert!(SLOT == 64);

impl Slot {
    fn occupied(&self) -> bool {
        self.flags & OCCUPIED != 0
    }

    fn order(&self) -> u64 {
        order(&self.key)
    }
}

/// The eight bytes of a digest that place it in the table.
fn order(key: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&key[..8]);
    u64::from_le_bytes(first)
}

/// Transparent huge pages are 2 MiB on x86-64 and (by default) on aarch64.
const HUGE_PAGE: usize = 2 << 20;

/// Where the slots live: small tables on the heap, large ones in a mapping
/// of their own, aligned to huge pages and advised to use them.
enum Storage {
    Heap(Vec<Slot>),
    Mapped { map: MmapMut, offset: usize },
}

impl Storage {
    /// `len` empty slots.
    fn zeroed(len: usize) -> Storage {
        let bytes = len * SLOT;
        if bytes >= HUGE_PAGE
            && let Some(storage) = Self::mapped(bytes)
        {
            return storage;
        }
        Storage::Heap(vec![Slot::new_zeroed(); len])
    }

    fn mapped(bytes: usize) -> Option<Storage> {
        // Over-allocate by a huge page so the slots can start on a huge-page
        // boundary; the unused head is never touched, so it costs no memory.
        let map = MmapMut::map_anon(bytes + HUGE_PAGE).ok()?;
        let offset = (HUGE_PAGE - map.as_ptr() as usize % HUGE_PAGE) % HUGE_PAGE;
        #[cfg(target_os = "linux")]
        if let Err(e) = map.advise(memmap2::Advice::HugePage) {
            // Still correct, only slower (a TLB miss on most lookups).
            tracing::debug!(error = %e, "madvise(MADV_HUGEPAGE) refused for the token table");
        }
        // Anonymous mappings are page-aligned, so this cannot fail; should it
        // ever, the heap will do.
        <[Slot]>::ref_from_bytes(map.get(offset..offset + bytes)?).ok()?;
        Some(Storage::Mapped { map, offset })
    }

    fn slots(&self, len: usize) -> &[Slot] {
        match self {
            Storage::Heap(slots) => slots,
            Storage::Mapped { map, offset } => map
                .get(*offset..*offset + len * SLOT)
                .and_then(|bytes| <[Slot]>::ref_from_bytes(bytes).ok())
                .unwrap_or_default(),
        }
    }

    fn slots_mut(&mut self, len: usize) -> &mut [Slot] {
        match self {
            Storage::Heap(slots) => slots,
            Storage::Mapped { map, offset } => map
                .get_mut(*offset..*offset + len * SLOT)
                .and_then(|bytes| <[Slot]>::mut_from_bytes(bytes).ok())
                .unwrap_or_default(),
        }
    }
}

/// No room at the end of the table for a run of displaced slots.
struct Overflow;

/// The flat table. Homes are `0..capacity`; displaced slots may run on into
/// `slack` further slots past the end (the table does not wrap around, so
/// the order of slots is the order of their keys).
struct Table {
    storage: Storage,
    capacity: usize,
    slack: usize,
    count: usize,
}

const MIN_CAPACITY: usize = 64;
const MIN_SLACK: usize = 16;
const MAX_SLACK: usize = 1024;

fn default_slack(capacity: usize) -> usize {
    capacity.clamp(MIN_SLACK, MAX_SLACK)
}

impl Default for Table {
    fn default() -> Self {
        Table::with_capacity(MIN_CAPACITY, default_slack(MIN_CAPACITY))
    }
}

impl Table {
    fn with_capacity(capacity: usize, slack: usize) -> Table {
        Table {
            storage: Storage::zeroed(capacity + slack),
            capacity,
            slack,
            count: 0,
        }
    }

    fn slots(&self) -> &[Slot] {
        self.storage.slots(self.capacity + self.slack)
    }

    fn slots_mut(&mut self) -> &mut [Slot] {
        self.storage.slots_mut(self.capacity + self.slack)
    }

    fn home(&self, order: u64) -> usize {
        ((u128::from(order) * self.capacity as u128) >> 64) as usize
    }

    /// The slot index holding `key`, if any.
    #[inline]
    fn find(&self, key: &[u8; 32]) -> Option<usize> {
        let wanted = order(key);
        let slots = self.slots();
        let mut i = self.home(wanted);
        while let Some(slot) = slots.get(i) {
            // Slots past `wanted` in order, or an empty one, mean absent.
            if !slot.occupied() || slot.order() > wanted {
                return None;
            }
            if slot.key == *key {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Loads `key`'s home slot and throws the value away: a prefetch in
    /// safe code (the load is issued; what follows runs while it misses).
    #[inline]
    fn touch(&self, key: &[u8; 32]) {
        let home = self.home(order(key));
        std::hint::black_box(self.slots().get(home).map(|slot| slot.flags));
    }

    fn get(&self, key: &[u8; 32]) -> Option<&Slot> {
        let i = self.find(key)?;
        self.slots().get(i)
    }

    fn get_mut(&mut self, key: &[u8; 32]) -> Option<&mut Slot> {
        let i = self.find(key)?;
        self.slots_mut().get_mut(i)
    }

    /// Inserts `slot` unless its key is present; false if it was.
    fn insert(&mut self, slot: Slot) -> bool {
        if (self.count + 1) * 5 > self.capacity * 4 {
            self.grow(self.capacity + self.capacity / 2, self.slack);
        }
        loop {
            match self.try_insert(slot) {
                Ok(inserted) => return inserted,
                Err(Overflow) => self.grow(self.capacity, self.slack * 2),
            }
        }
    }

    fn try_insert(&mut self, slot: Slot) -> Result<bool, Overflow> {
        let wanted = slot.order();
        let home = self.home(wanted);
        let slots = self.slots_mut();
        // The insertion point: past every slot that sorts at or before it.
        let mut at = home;
        loop {
            let here = slots.get(at).ok_or(Overflow)?;
            if !here.occupied() || here.order() > wanted {
                break;
            }
            if here.key == slot.key {
                return Ok(false);
            }
            at += 1;
        }
        // Shift the rest of the run one slot on, into its first empty slot.
        let mut end = at;
        while slots.get(end).ok_or(Overflow)?.occupied() {
            end += 1;
        }
        slots.copy_within(at..end, at + 1);
        slots[at] = slot;
        self.count += 1;
        Ok(true)
    }

    /// Rebuilds with `capacity` homes and at least `slack` more slots, in
    /// one ordered pass.
    fn grow(&mut self, capacity: usize, slack: usize) {
        let mut slack = slack.max(default_slack(capacity));
        loop {
            let mut next = Table::with_capacity(capacity, slack);
            if next.refill_from(self.slots()).is_ok() {
                *self = next;
                return;
            }
            // Only a run past the end can fail, and enough slack holds any.
            slack *= 2;
        }
    }

    fn refill_from(&mut self, old: &[Slot]) -> Result<(), Overflow> {
        let capacity = self.capacity;
        let slots = self.slots_mut();
        let mut next = 0;
        let mut count = 0;
        for slot in old.iter().filter(|s| s.occupied()) {
            let home = ((u128::from(slot.order()) * capacity as u128) >> 64) as usize;
            let at = home.max(next);
            *slots.get_mut(at).ok_or(Overflow)? = *slot;
            next = at + 1;
            count += 1;
        }
        self.count = count;
        Ok(())
    }
}

/// A token's user and workspace set, shared by all its tokens.
struct Principal {
    user: Arc<str>,
    workspaces: Arc<[String]>,
}

#[derive(Default)]
struct Inner {
    table: Table,
    principals: Vec<Principal>,
    /// (user, workspace set) → principal.
    principal_ids: HashMap<(u32, u32), u32>,
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

    fn intern_principal(&mut self, user: &str, workspaces: &[String]) -> u32 {
        let key = (self.intern_user(user), self.intern_workspaces(workspaces));
        if let Some(&i) = self.principal_ids.get(&key) {
            return i;
        }
        let i = self.principals.len() as u32;
        self.principals.push(Principal {
            user: self.users[key.0 as usize].clone(),
            workspaces: self.workspace_sets[key.1 as usize].clone(),
        });
        self.principal_ids.insert(key, i);
        i
    }
}

impl Inner {
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
        })
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
                if inner.table.find(&hash.0).is_some() {
                    return;
                }
                let principal = inner.intern_principal(&created.user_id, &created.workspaces);
                inner.table.insert(Slot {
                    key: hash.0,
                    id: envelope.token_id.to_bytes(),
                    expires_at_ms: created.expires_at.map_or(i64::MAX, |t| t.as_millisecond()),
                    principal,
                    scopes: Scopes::from_iter(created.scopes.iter().copied()).bits(),
                    flags: OCCUPIED,
                    _pad: [0; 2],
                });
            }
            TokenEvent::TokenRevoked(_) => {
                if let Some(slot) = inner.table.get_mut(&hash.0) {
                    slot.flags |= REVOKED;
                }
            }
        }
    }

    pub fn lookup(&self, hash: &[u8; 32]) -> Option<TokenFacts> {
        self.inner.read().ok()?.facts(hash)
    }

    /// Looks `hash` up once `check` passes, and runs `check` while the
    /// table's memory for `hash` is on its way: the load of the home slot
    /// is issued first, so the cache miss overlaps with the check.
    pub(crate) fn lookup_after<E>(
        &self,
        hash: &[u8; 32],
        check: impl FnOnce() -> Result<(), E>,
    ) -> Result<Option<TokenFacts>, E> {
        let Ok(inner) = self.inner.read() else {
            check()?;
            return Ok(None);
        };
        inner.table.touch(hash);
        check()?;
        Ok(inner.facts(hash))
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
    use enspace_core::events::{TokenCreated, TokenRevoked};
    use enspace_core::{Expiration, Scope};

    use super::*;

    fn hash(i: u64) -> [u8; 32] {
        SecretHash::of(&format!("secret-{i}")).0
    }

    fn created(seq: u64, hash: &[u8; 32], user: &str, workspaces: &[&str]) -> EventEnvelope {
        EventEnvelope {
            seq,
            id: Ulid::new(),
            at: jiff::Timestamp::now(),
            actor: user.to_owned(),
            token_id: Ulid::new(),
            event: TokenEvent::TokenCreated(TokenCreated {
                user_id: user.to_owned(),
                description: "test".into(),
                expiration: Expiration::OneMonth,
                scopes: vec![Scope::Read, Scope::Delete],
                workspaces: workspaces.iter().map(|w| (*w).to_owned()).collect(),
                expires_at: Some(jiff::Timestamp::from_millisecond(1_000_000).expect("ts")),
                secret_hash: hex_of(hash),
            }),
        }
    }

    fn revoked(seq: u64, hash: &[u8; 32]) -> EventEnvelope {
        EventEnvelope {
            seq,
            id: Ulid::new(),
            at: jiff::Timestamp::now(),
            actor: "alice".into(),
            token_id: Ulid::new(),
            event: TokenEvent::TokenRevoked(TokenRevoked {
                user_id: "alice".into(),
                secret_hash: hex_of(hash),
                reason: Default::default(),
            }),
        }
    }

    fn hex_of(hash: &[u8; 32]) -> String {
        SecretHash(*hash).to_hex()
    }

    fn slot(key: [u8; 32], principal: u32) -> Slot {
        Slot {
            key,
            id: [7; 16],
            expires_at_ms: i64::from(principal),
            principal,
            scopes: 1,
            flags: OCCUPIED,
            _pad: [0; 2],
        }
    }

    /// Every occupied slot is at or after its home, runs are unbroken back
    /// to each slot's home, and slots are in key order.
    fn assert_invariants(table: &Table) {
        let slots = table.slots();
        let mut last = None;
        let mut count = 0;
        for (i, s) in slots.iter().enumerate().filter(|(_, s)| s.occupied()) {
            let home = table.home(s.order());
            assert!(home <= i, "slot {i} sits before its home {home}");
            assert!(
                slots[home..i].iter().all(Slot::occupied),
                "gap before slot {i}"
            );
            assert!(last.is_none_or(|l| l <= s.order()), "slot {i} out of order");
            last = Some(s.order());
            count += 1;
        }
        assert_eq!(count, table.count);
    }

    #[test]
    fn table_holds_many_keys_and_finds_each_and_no_other() {
        let mut table = Table::default();
        let n = 100_000;
        for i in 0..n {
            assert!(table.insert(slot(hash(i), i as u32)));
        }
        assert_eq!(table.count, n as usize);
        assert_invariants(&table);
        // Large enough to live in its own huge-page-aligned mapping.
        assert!(matches!(table.storage, Storage::Mapped { .. }));
        for i in 0..n {
            let found = table.get(&hash(i)).expect("present");
            assert_eq!(found.principal, i as u32);
            assert_eq!(found.key, hash(i));
        }
        for i in n..n + 10_000 {
            assert!(table.get(&hash(i)).is_none());
        }
        assert!(table.get(&[0; 32]).is_none());
        assert!(table.get(&[0xff; 32]).is_none());
    }

    #[test]
    fn table_grows_at_its_load_factor_and_keeps_every_key() {
        let mut table = Table::default();
        let mut capacities = vec![table.capacity];
        for i in 0..5_000 {
            table.insert(slot(hash(i), i as u32));
            assert!(table.count * 5 <= table.capacity * 4, "over 80 % load");
            if capacities.last() != Some(&table.capacity) {
                capacities.push(table.capacity);
                assert_invariants(&table);
                assert!((0..=i).all(|j| table.get(&hash(j)).is_some()));
            }
        }
        assert!(capacities.len() > 5, "grew only {capacities:?}");
        assert!(capacities.windows(2).all(|w| w[1] > w[0]));
        assert!(matches!(table.storage, Storage::Heap(_)));
    }

    #[test]
    fn table_ignores_a_duplicate_key() {
        let mut table = Table::default();
        assert!(table.insert(slot(hash(1), 1)));
        assert!(!table.insert(slot(hash(1), 2)));
        assert_eq!(table.count, 1);
        assert_eq!(table.get(&hash(1)).map(|s| s.principal), Some(1));
    }

    #[test]
    fn table_tells_apart_keys_that_share_their_placing_bytes() {
        let mut table = Table::default();
        // Same first eight bytes, so the same home and the same order.
        let keys: Vec<[u8; 32]> = (0..50u8)
            .map(|i| {
                let mut k = [0x42; 32];
                k[31] = i;
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(table.insert(slot(*k, i as u32)));
        }
        for (i, k) in keys.iter().enumerate() {
            assert!(!table.insert(slot(*k, 999)));
            assert_eq!(table.get(k).map(|s| s.principal), Some(i as u32));
        }
        let mut absent = [0x42; 32];
        absent[31] = 200;
        assert!(table.get(&absent).is_none());
        assert_invariants(&table);
    }

    #[test]
    fn table_survives_a_run_past_its_end() {
        // Keys that all belong in the last home slot: the run outgrows the
        // slack, which must grow rather than lose keys or loop.
        let mut table = Table::default();
        let keys: Vec<[u8; 32]> = (0..3_000u32)
            .map(|i| {
                let mut k = [0xff; 32];
                k[28..].copy_from_slice(&i.to_le_bytes());
                k
            })
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(table.insert(slot(*k, i as u32)));
        }
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(table.get(k).map(|s| s.principal), Some(i as u32));
        }
        assert!(table.slack >= 3_000, "slack {}", table.slack);
        assert_invariants(&table);
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
        replica.apply(&created(3, &hash(1), "mallory", &["evil"]));
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
        assert_invariants(&inner.table);
    }
}
