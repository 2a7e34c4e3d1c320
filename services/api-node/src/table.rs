//! The replica's table: flat open addressing over 64-byte, 64-byte-aligned
//! slots, each holding a token's whole secret hash beside its entry, so a
//! hit reads one cache line (and, when displaced, the next ones, which the
//! prefetcher streams in). Keys are SHA-256 digests, already uniform: a
//! key's home slot is its first eight bytes scaled onto the table
//! (`h * capacity >> 64`), with no hashing of our own. Slots are kept in
//! order of those eight bytes (ordered linear probing, the layout Robin Hood
//! hashing converges to), so a lookup of an unknown hash stops as soon as it
//! passes where the hash would be, instead of running to the end of the
//! cluster. Tokens are never deleted, so there are no tombstones; the table
//! grows by rebuilding, in one sequential pass, at 80 % load.
//!
//! A table over a million tokens spans ~100 MB, so a random lookup would
//! otherwise miss the TLB every time (and in a VM the page walk costs as
//! much as the cache miss). Large tables therefore live in their own
//! anonymous mapping, aligned to and advised for transparent huge pages.
//!
//! It beats SHA-256 plus a std (hashbrown) map with a pass-through hasher by
//! 17 % in the `verify` benchmark's same-run comparison, which is why it is
//! hand-written.

use memmap2::MmapMut;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Set in every occupied slot; an all-zero slot is empty.
pub(crate) const OCCUPIED: u8 = 1;
pub(crate) const REVOKED: u8 = 2;
/// A decoy: never grants anything (contract §18).
pub(crate) const DECOY: u8 = 4;

/// One token: its secret hash and everything verification reads, in one
/// cache line.
#[derive(Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C, align(64))]
pub(crate) struct Slot {
    pub(crate) key: [u8; 32],
    pub(crate) id: [u8; 16],
    /// `i64::MAX` for a token that never expires.
    pub(crate) expires_at_ms: i64,
    /// Index into the replica's principals.
    pub(crate) principal: u32,
    pub(crate) scopes: u8,
    pub(crate) flags: u8,
    pub(crate) _pad: [u8; 2],
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
pub(crate) struct Table {
    storage: Storage,
    capacity: usize,
    slack: usize,
    pub(crate) count: usize,
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
    pub(crate) fn find(&self, key: &[u8; 32]) -> Option<usize> {
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
    pub(crate) fn touch(&self, key: &[u8; 32]) {
        let home = self.home(order(key));
        std::hint::black_box(self.slots().get(home).map(|slot| slot.flags));
    }

    pub(crate) fn get(&self, key: &[u8; 32]) -> Option<&Slot> {
        let i = self.find(key)?;
        self.slots().get(i)
    }

    pub(crate) fn get_mut(&mut self, key: &[u8; 32]) -> Option<&mut Slot> {
        let i = self.find(key)?;
        self.slots_mut().get_mut(i)
    }

    /// Inserts `slot` unless its key is present; false if it was.
    pub(crate) fn insert(&mut self, slot: Slot) -> bool {
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

#[cfg(test)]
pub(crate) mod tests {
    use enspace_core::SecretHash;

    use super::*;

    fn hash(i: u64) -> [u8; 32] {
        SecretHash::of(&format!("secret-{i}")).0
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
    pub(crate) fn assert_invariants(table: &Table) {
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
}
