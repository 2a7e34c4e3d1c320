//! Which records the index holds, known without reading the tree for most
//! of them: a record delivered again (a redelivery, a republish) must be
//! skipped, and looking each record up in sled costs about as much as
//! writing it.
//!
//! For each token seen since the index opened (or since it last forgot),
//! the greatest record key the tree held then is its *floor*: above it, the
//! tree holds exactly the keys written since, which are remembered here.
//! So a record above its token's floor is a duplicate exactly when its key
//! is remembered, and only a record at or below the floor (older than
//! anything written since) is looked up in the tree. Records arriving out
//! of time order — from several API nodes, or a stream read again — cost a
//! lookup only when they are older than what the tree held before.
//!
//! Bounded: past [`MAX_KEYS`] remembered keys (about 25 MB) or
//! [`MAX_TOKENS`] tokens, everything is forgotten, and each token's floor is
//! read again from the tree (which by then holds every key written).

use std::collections::{HashMap, HashSet};

use ulid::Ulid;

use crate::IndexError;
use crate::layout::RecordKey;

/// Record keys remembered at most.
pub(super) const MAX_KEYS: usize = 500_000;
/// Tokens whose floor is remembered at most.
pub(super) const MAX_TOKENS: usize = 100_000;

#[derive(Default)]
pub(super) struct Known {
    floors: HashMap<Ulid, RecordKey>,
    written: HashSet<RecordKey>,
}

impl Known {
    /// Forgets everything if `more` keys would not fit.
    pub(super) fn make_room(&mut self, more: usize) {
        if self.written.len() + more > MAX_KEYS || self.floors.len() > MAX_TOKENS {
            self.floors.clear();
            self.written.clear();
        }
    }

    /// Whether the tree holds `key` (of `token`): from memory above the
    /// token's floor, from `tree` at or below it. `greatest` reads the
    /// token's greatest key from the tree the first time it is seen.
    pub(super) fn holds(
        &mut self,
        token: Ulid,
        key: &RecordKey,
        tree: &sled::Tree,
        greatest: impl FnOnce() -> Result<RecordKey, IndexError>,
    ) -> Result<bool, IndexError> {
        let floor = match self.floors.get(&token) {
            Some(floor) => *floor,
            None => {
                let floor = greatest()?;
                self.floors.insert(token, floor);
                floor
            }
        };
        if *key > floor {
            Ok(self.written.contains(key))
        } else {
            Ok(tree.contains_key(key)?)
        }
    }

    /// Remembers keys now written to the tree (after their batch applied).
    pub(super) fn wrote(&mut self, keys: impl IntoIterator<Item = RecordKey>) {
        for key in keys {
            let token = key_token(&key);
            if self.floors.get(&token).is_some_and(|floor| key > *floor) {
                self.written.insert(key);
            }
        }
    }
}

fn key_token(key: &RecordKey) -> Ulid {
    let mut token = [0u8; 16];
    token.copy_from_slice(&key[..16]);
    Ulid::from_bytes(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::record_key;

    fn tree() -> sled::Tree {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        db.open_tree("t").expect("tree")
    }

    #[test]
    fn above_the_floor_memory_answers_and_at_or_below_it_the_tree_does() {
        let tree = tree();
        let token = Ulid::new();
        let floor = record_key(token, 100, Ulid::new());
        let stored_below = record_key(token, 50, Ulid::new());
        tree.insert(stored_below, &[][..]).expect("insert");
        let mut known = Known::default();
        let mut reads = 0;
        let above = record_key(token, 200, Ulid::new());
        let mut holds = |known: &mut Known, key: &RecordKey| {
            known
                .holds(token, key, &tree, || {
                    reads += 1;
                    Ok(floor)
                })
                .expect("holds")
        };
        assert!(!holds(&mut known, &above));
        // Written (the test's tree never holds it): memory says so.
        known.wrote([above]);
        assert!(holds(&mut known, &above));
        // Below the floor, only the tree knows.
        assert!(holds(&mut known, &stored_below));
        assert!(!holds(&mut known, &record_key(token, 60, Ulid::new())));
        // Full: everything forgotten, the floor read again.
        known.make_room(MAX_KEYS);
        assert!(!holds(&mut known, &above), "forgotten, the tree asked");
        assert_eq!(reads, 2, "the floor is read once per memory");
    }
}
