//! Faults made on purpose, for tests: the bytes of a stopped store changed
//! the way a disk, a crash or an intruder would, through the store's own
//! layout. A test that names trees and keys itself keeps passing, without
//! testing anything, once the layout moves on; this one does not compile.

use std::path::Path;

use ulid::Ulid;

use crate::event_log::{EVENTS_TREE, encode_seq};
use crate::projections::{LAST_SEQ, PROJECTION_TREES, user_key};
use crate::{StoreError, sled_config};

/// A stopped store, opened to be damaged. Everything it changed is flushed
/// when it is dropped, and the database is let go.
pub struct Tamper {
    db: sled::Db,
}

/// The trees the token projections live in: every one of them can be
/// rebuilt from the log.
pub const PROJECTIONS: [&str; 9] = PROJECTION_TREES;

impl Tamper {
    /// Opens the store in `dir`, which no process may hold.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Tamper {
            db: sled_config(dir).open()?,
        })
    }

    fn events(&self) -> Result<sled::Tree, StoreError> {
        Ok(self.db.open_tree(EVENTS_TREE)?)
    }

    /// The stored bytes of event `seq` (prev hash, hash, payload).
    pub fn event(&self, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.events()?.get(encode_seq(seq))?.map(|v| v.to_vec()))
    }

    /// Stores `bytes` as event `seq`, whatever they are.
    pub fn put_event(&self, seq: u64, bytes: &[u8]) -> Result<(), StoreError> {
        self.events()?.insert(encode_seq(seq), bytes)?;
        Ok(())
    }

    /// Removes event `seq`; answers whether it was there.
    pub fn remove_event(&self, seq: u64) -> Result<bool, StoreError> {
        Ok(self.events()?.remove(encode_seq(seq))?.is_some())
    }

    /// Removes the last `n` events, as sled's recovery does when it cuts a
    /// damaged tail.
    pub fn cut_log(&self, n: u64) -> Result<(), StoreError> {
        let events = self.events()?;
        for _ in 0..n {
            if let Some((key, _)) = events.last()? {
                events.remove(key)?;
            }
        }
        Ok(())
    }

    /// Stores a value under a key that is not an event's seq, among the
    /// events.
    pub fn put_foreign_key_in_log(&self, key: &[u8], bytes: &[u8]) -> Result<(), StoreError> {
        self.events()?.insert(key, bytes)?;
        Ok(())
    }

    /// Drops one of [`PROJECTIONS`]; answers whether it existed.
    pub fn drop_projection(&self, tree: &str) -> Result<bool, StoreError> {
        Ok(self.db.drop_tree(tree)?)
    }

    /// Overwrites every value of the tree `tree` (any of the data
    /// directory's, a notification index's say) with bytes nothing decodes;
    /// answers how many.
    pub fn garble_tree(&self, tree: &str) -> Result<usize, StoreError> {
        let tree = self.db.open_tree(tree)?;
        let keys: Vec<sled::IVec> = tree.iter().keys().collect::<Result<_, sled::Error>>()?;
        for key in &keys {
            tree.insert(key, &[0xC1, 0xFF, 0x00][..])?;
        }
        Ok(keys.len())
    }

    /// Whether the store holds a tree of that name.
    pub fn has_tree(&self, tree: &str) -> bool {
        self.db
            .tree_names()
            .iter()
            .any(|n| n.as_ref() == tree.as_bytes())
    }

    /// Makes the projections claim to have folded the log up to `seq`.
    pub fn set_projections_mark(&self, seq: u64) -> Result<(), StoreError> {
        self.db
            .open_tree(PROJECTION_TREES[4])?
            .insert(LAST_SEQ, &seq.to_be_bytes())?;
        Ok(())
    }

    /// Forgets the state of one token in the projections (as if its events
    /// had never been folded).
    pub fn forget_token(&self, id: Ulid) -> Result<(), StoreError> {
        self.db
            .open_tree(PROJECTION_TREES[0])?
            .remove(id.to_bytes())?;
        Ok(())
    }

    /// Lists a token no event ever created among `user`'s.
    pub fn list_phantom_token(&self, user: &str, id: Ulid) -> Result<(), StoreError> {
        self.db
            .open_tree(PROJECTION_TREES[1])?
            .insert(user_key(user, id), &[][..])?;
        Ok(())
    }
}

impl Drop for Tamper {
    fn drop(&mut self) {
        if let Err(e) = self.db.flush() {
            tracing::error!(error = %e, "cannot flush a tampered store");
        }
    }
}
