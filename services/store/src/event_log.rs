//! The append-only, hash-chained event log: tree `events`, key = `seq` as
//! big-endian u64, value = `prev_hash ‖ hash ‖ payload`. Only the writer
//! appends; anyone may read.

use enspace_core::events::{GENESIS_HASH, StoredEvent};
use enspace_core::{AuditEvent, EventEnvelope};

use super::StoreError;

pub const EVENTS_TREE: &str = "events";

#[derive(Clone)]
pub struct EventLog {
    tree: sled::Tree,
}

/// One decoded entry of the log.
#[derive(Debug, Clone)]
pub struct LogEntry {
    pub envelope: EventEnvelope,
    pub stored: StoredEvent,
}

impl LogEntry {
    /// The entry as auditors see it, signed by its era's key.
    pub fn audit(&self, keys: &crate::keyring::Keyring) -> AuditEvent {
        keys.audit(self)
    }
}

impl EventLog {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(EventLog {
            tree: db.open_tree(EVENTS_TREE)?,
        })
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// `(seq, hash)` of the last event; `(0, zeros)` for an empty log.
    pub fn head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        match self.tree.last()? {
            None => Ok((0, GENESIS_HASH)),
            Some((key, value)) => {
                let seq = decode_seq(&key)?;
                let stored = StoredEvent::from_bytes(&value)
                    .ok_or_else(|| StoreError::Corrupt(format!("event {seq} is truncated")))?;
                Ok((seq, stored.hash))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Up to `limit` entries with `seq > after`, in order.
    pub fn read_after(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let start = after.saturating_add(1).to_be_bytes();
        self.tree
            .range(start..)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                decode_entry(&key, &value)
            })
            .collect()
    }
}

/// The log is where every projection catches up from.
impl enspace_core::projection::EventSource for EventLog {
    type Error = StoreError;

    fn head_seq(&self) -> Result<u64, StoreError> {
        Ok(self.head()?.0)
    }

    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<EventEnvelope>, StoreError> {
        let entries = EventLog::read_after(self, after, limit)?;
        Ok(entries.into_iter().map(|e| e.envelope).collect())
    }
}

pub fn encode_seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

fn decode_seq(key: &[u8]) -> Result<u64, StoreError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::Corrupt("event key is not 8 bytes".into()))?;
    Ok(u64::from_be_bytes(bytes))
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<LogEntry, StoreError> {
    let seq = decode_seq(key)?;
    let stored = StoredEvent::from_bytes(value)
        .ok_or_else(|| StoreError::Corrupt(format!("event {seq} is truncated")))?;
    let envelope = EventEnvelope::decode(&stored.payload)
        .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
    Ok(LogEntry { envelope, stored })
}

impl EventLog {
    /// The entry with this `seq`, if any.
    pub fn get(&self, seq: u64) -> Result<Option<LogEntry>, StoreError> {
        let key = encode_seq(seq);
        self.tree
            .get(key)?
            .map(|value| decode_entry(&key, &value))
            .transpose()
    }
}
