//! The outbox's state, sled tree `outbox`:
//! - the cursor: the last event the token events stream holds (key
//!   `published_seq`) and the stream sequence it is stored at (key
//!   `published_at`; absent in data directories from before foreign
//!   messages were tolerated, where event `n` was message `n`);
//! - the signature of every event published (key `sig` ‖ seq), so that
//!   refilling a lost stream does not sign the whole log again (a lost
//!   signature is only made again);
//! - the heartbeat term of a single control-plane process (key
//!   `heartbeat_term`), one more at every start;
//! - the stream messages found to be foreign and not yet deleted (key
//!   `foreign` ‖ stream sequence → the stream's identity), so that a
//!   restart does not forget them.

use super::StoreError;

/// Where an event sits in the token events stream: event `seq` is message
/// `at` (`at >= seq`: foreign messages may sit before it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamPosition {
    pub seq: u64,
    pub at: u64,
}

/// The state, over its tree; cheap to clone.
#[derive(Clone)]
pub struct OutboxState {
    tree: sled::Tree,
}

const PUBLISHED_SEQ: &[u8] = b"published_seq";
const PUBLISHED_AT: &[u8] = b"published_at";
const HEARTBEAT_TERM: &[u8] = b"heartbeat_term";
const FOREIGN: &[u8] = b"foreign";

fn signature_key(seq: u64) -> [u8; 11] {
    let mut key = [0u8; 11];
    key[..3].copy_from_slice(b"sig");
    key[3..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn foreign_key(at: u64) -> [u8; 15] {
    let mut key = [0u8; 15];
    key[..7].copy_from_slice(FOREIGN);
    key[7..].copy_from_slice(&at.to_be_bytes());
    key
}

fn read_u64(value: Option<sled::IVec>, what: &str) -> Result<Option<u64>, StoreError> {
    value
        .map(|v| {
            v.as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt(what.into()))
        })
        .transpose()
}

impl OutboxState {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(OutboxState {
            tree: db.open_tree("outbox")?,
        })
    }

    /// The last event the stream holds, as far as this process knows.
    pub fn get(&self) -> Result<u64, StoreError> {
        Ok(read_u64(self.tree.get(PUBLISHED_SEQ)?, "outbox cursor")?.unwrap_or(0))
    }

    /// The last event the stream holds and where.
    pub fn position(&self) -> Result<StreamPosition, StoreError> {
        let seq = self.get()?;
        let at = read_u64(self.tree.get(PUBLISHED_AT)?, "outbox cursor position")?;
        Ok(StreamPosition {
            seq,
            at: at.unwrap_or(seq).max(seq),
        })
    }

    pub fn set_position(&self, position: StreamPosition) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        batch.insert(PUBLISHED_SEQ, &position.seq.to_be_bytes());
        batch.insert(PUBLISHED_AT, &position.at.to_be_bytes());
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The kept signature of event `seq` by the key `key_id`.
    pub fn signature(&self, seq: u64, key_id: &str) -> Result<Option<[u8; 64]>, StoreError> {
        let Some(value) = self.tree.get(signature_key(seq))? else {
            return Ok(None);
        };
        let (id, signature) = value.split_at(value.len().saturating_sub(64));
        Ok((id == key_id.as_bytes())
            .then(|| <[u8; 64]>::try_from(signature).ok())
            .flatten())
    }

    /// Keeps signatures: `(seq, key id, signature)`.
    pub fn keep_signatures(
        &self,
        signatures: &[(u64, String, [u8; 64])],
    ) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for (seq, key_id, signature) in signatures {
            let mut value = key_id.as_bytes().to_vec();
            value.extend_from_slice(signature);
            batch.insert(&signature_key(*seq)[..], value);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// The next heartbeat term: one more than the last, kept durably
    /// before it is used.
    pub fn next_term(&self) -> Result<u64, StoreError> {
        let last = read_u64(self.tree.get(HEARTBEAT_TERM)?, "heartbeat term")?.unwrap_or(0);
        let next = last + 1;
        self.tree.insert(HEARTBEAT_TERM, &next.to_be_bytes())?;
        self.tree.flush()?;
        Ok(next)
    }

    /// Keeps the stream sequences `at` of the stream `stream` (its
    /// identity: when it was created) as foreign; returns how many were not
    /// kept already.
    pub fn note_foreign(&self, stream: i128, at: &[u64]) -> Result<usize, StoreError> {
        let mut new = 0;
        for seq in at {
            let before = self
                .tree
                .insert(foreign_key(*seq), &stream.to_be_bytes()[..])?;
            if before.is_none_or(|b| b.as_ref() != stream.to_be_bytes()) {
                new += 1;
            }
        }
        Ok(new)
    }

    /// Up to `limit` kept foreign messages: (stream sequence, stream).
    pub fn foreign(&self, limit: usize) -> Result<Vec<(u64, i128)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree.scan_prefix(FOREIGN).take(limit) {
            let (key, value) = item?;
            let corrupt = || StoreError::Corrupt("a foreign message's mark".into());
            let at = key
                .get(FOREIGN.len()..)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
                .ok_or_else(corrupt)?;
            let stream = <[u8; 16]>::try_from(value.as_ref())
                .map(i128::from_be_bytes)
                .map_err(|_| corrupt())?;
            out.push((at, stream));
        }
        Ok(out)
    }

    pub fn forget_foreign(&self, at: &[u64]) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        for seq in at {
            batch.remove(&foreign_key(*seq)[..]);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> (tempfile::TempDir, OutboxState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        (dir, OutboxState::open(&db).expect("tree"))
    }

    #[test]
    fn a_cursor_without_a_position_is_where_event_n_was_message_n() {
        let (_dir, state) = state();
        assert_eq!(state.position().expect("read"), StreamPosition::default());
        state
            .tree
            .insert(PUBLISHED_SEQ, &7u64.to_be_bytes())
            .expect("old cursor");
        assert_eq!(
            state.position().expect("read"),
            StreamPosition { seq: 7, at: 7 }
        );
        state
            .set_position(StreamPosition { seq: 8, at: 11 })
            .expect("write");
        assert_eq!(state.get().expect("read"), 8);
        assert_eq!(state.position().expect("read").at, 11);
    }

    #[test]
    fn terms_only_grow_and_foreign_marks_are_kept_per_stream() {
        let (_dir, state) = state();
        assert_eq!(state.next_term().expect("term"), 1);
        assert_eq!(state.next_term().expect("term"), 2);
        assert_eq!(state.note_foreign(5, &[3, 9]).expect("note"), 2);
        assert_eq!(state.note_foreign(5, &[9]).expect("note"), 0);
        assert_eq!(state.note_foreign(6, &[9]).expect("note"), 1);
        assert_eq!(state.foreign(10).expect("read"), vec![(3, 5), (9, 6)]);
        state.forget_foreign(&[3]).expect("forget");
        assert_eq!(state.foreign(10).expect("read"), vec![(9, 6)]);
    }
}
