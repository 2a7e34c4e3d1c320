//! The event log by time, for auditors' questions about what happened
//! between two moments: tree
//! `audit_by_time`, key = `at` (nanoseconds, order-preserving) ‖ `seq`,
//! value = the event's token id. Folded from the log like every projection
//! and rebuilt from it when it is behind, ahead or gone; it is brought up
//! to the log before each auditor's query, so writes never pay for it.

use jiff::Timestamp;

use crate::StoreError;
use crate::event_log::EventLog;

const BY_TIME_TREE: &str = "audit_by_time";
const META_TREE: &str = "audit_by_time_meta";
const POSITION: &[u8] = b"last_seq";
/// Events folded per sled batch while catching up.
const CHUNK: usize = 4096;

#[derive(Clone)]
pub struct AuditIndex {
    by_time: sled::Tree,
    meta: sled::Tree,
    /// One catch-up at a time: two would only do the same work twice.
    catching_up: std::sync::Arc<std::sync::Mutex<()>>,
}

/// `at` as 8 bytes that sort as the instants do.
fn time_key(at: Timestamp) -> [u8; 8] {
    let nanos = i64::try_from(at.as_nanosecond()).unwrap_or(if at.as_second() < 0 {
        i64::MIN
    } else {
        i64::MAX
    });
    ((nanos as u64) ^ (1 << 63)).to_be_bytes()
}

fn key(at: Timestamp, seq: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&time_key(at));
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let seq: [u8; 8] = key
        .get(8..16)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| StoreError::Corrupt("audit index key".into()))?;
    Ok(u64::from_be_bytes(seq))
}

impl AuditIndex {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(AuditIndex {
            by_time: db.open_tree(BY_TIME_TREE)?,
            meta: db.open_tree(META_TREE)?,
            catching_up: Default::default(),
        })
    }

    /// The last `seq` folded in.
    pub fn position(&self) -> Result<u64, StoreError> {
        match self.meta.get(POSITION)? {
            None => Ok(0),
            Some(bytes) => {
                let bytes: [u8; 8] = bytes
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("audit index position".into()))?;
                Ok(u64::from_be_bytes(bytes))
            }
        }
    }

    /// Empties the index: the next catch-up folds the whole log.
    pub fn reset(&self) -> Result<(), StoreError> {
        self.meta.remove(POSITION)?;
        self.by_time.clear()?;
        Ok(())
    }

    /// Folds in every event of `log` after the position; starts over when
    /// the position is past the log's head (a log replaced by a restore).
    /// Answers how many events it folded in.
    pub fn catch_up(&self, log: &EventLog) -> Result<u64, StoreError> {
        let _one = self
            .catching_up
            .lock()
            .map_err(|_| StoreError::Corrupt("the audit index's lock is poisoned".into()))?;
        let (head, _) = log.head()?;
        let mut position = self.position()?;
        if position > head {
            tracing::warn!(
                position,
                head,
                "audit index ahead of the log: rebuilding it"
            );
            self.reset()?;
            position = 0;
        }
        let mut folded = 0u64;
        while position < head {
            let entries = log.read_after(position, CHUNK)?;
            let Some(last) = entries.last().map(|e| e.envelope.seq) else {
                break;
            };
            let mut batch = sled::Batch::default();
            for entry in &entries {
                let e = &entry.envelope;
                batch.insert(&key(e.at, e.seq), &e.token_id.to_bytes());
            }
            // Keys are the same whenever an event is folded in again, so a
            // crash between the two writes only repeats work.
            self.by_time.apply_batch(batch)?;
            self.meta.insert(POSITION, &last.to_be_bytes())?;
            folded += entries.len() as u64;
            position = last;
        }
        Ok(folded)
    }

    /// The `seq`s of the events at or after `from` and before `to`, in seq
    /// order.
    pub fn seqs_between(&self, from: Timestamp, to: Timestamp) -> Result<Vec<u64>, StoreError> {
        if from >= to {
            return Ok(Vec::new());
        }
        let mut seqs = self
            .by_time
            .range(key(from, 0)..key(to, 0))
            .map(|item| seq_of(&item?.0))
            .collect::<Result<Vec<u64>, StoreError>>()?;
        seqs.sort_unstable();
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enspace_core::SecretHash;
    use enspace_core::events::{GENESIS_HASH, StoredEvent};

    /// A log of `n` creations, an hour apart from 2026-03-01T10:00Z.
    fn log_of(db: &sled::Db, n: u64) -> EventLog {
        let log = EventLog::open(db).expect("log");
        let start: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        let mut prev = GENESIS_HASH;
        for seq in 1..=n {
            let mut envelope =
                enspace_core::fixtures::created(seq, &SecretHash([seq as u8; 32])).build();
            envelope.at = start + jiff::SignedDuration::from_hours(seq as i64);
            let stored = StoredEvent::new(prev, &envelope);
            prev = stored.hash;
            log.tree()
                .insert(crate::event_log::encode_seq(seq), stored.to_bytes())
                .expect("append");
        }
        log
    }

    fn moment(hours: i64) -> Timestamp {
        let start: Timestamp = "2026-03-01T10:00:00Z".parse().expect("ts");
        start + jiff::SignedDuration::from_hours(hours)
    }

    #[test]
    fn the_index_finds_events_by_time_and_follows_the_log() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let log = log_of(&db, 5);
        let index = AuditIndex::open(&db).expect("index");
        assert_eq!(index.catch_up(&log).expect("catch up"), 5);
        assert_eq!(index.catch_up(&log).expect("again"), 0, "nothing new");
        assert_eq!(
            index.seqs_between(moment(2), moment(4)).expect("seqs"),
            [2, 3]
        );
        assert_eq!(
            index.seqs_between(moment(4), moment(2)).expect("seqs"),
            [0u64; 0]
        );
    }

    #[test]
    fn an_index_ahead_of_its_log_or_emptied_is_rebuilt_from_the_log() {
        let db = sled::Config::new().temporary(true).open().expect("sled");
        let log = log_of(&db, 3);
        let index = AuditIndex::open(&db).expect("index");
        // As if the log had been replaced by a shorter one (a restore).
        index
            .meta
            .insert(POSITION, &9u64.to_be_bytes())
            .expect("position");
        index
            .by_time
            .insert([0xFF; 16], &[0u8; 16])
            .expect("stale key");
        assert_eq!(index.catch_up(&log).expect("rebuild"), 3);
        assert_eq!(index.by_time.len(), 3, "the stale key is gone");
        index.by_time.clear().expect("wipe");
        index.reset().expect("reset");
        assert_eq!(index.catch_up(&log).expect("rebuild"), 3);
        assert_eq!(
            index
                .seqs_between(Timestamp::MIN, Timestamp::MAX)
                .expect("all"),
            [1, 2, 3]
        );
    }

    #[test]
    fn time_keys_sort_as_the_instants_do() {
        let instants = [
            Timestamp::MIN,
            Timestamp::from_second(-1).unwrap_or_default(),
            Timestamp::UNIX_EPOCH,
            Timestamp::from_nanosecond(1).unwrap_or_default(),
            Timestamp::from_second(1_780_000_000).unwrap_or_default(),
            Timestamp::MAX,
        ];
        for pair in instants.windows(2) {
            assert!(time_key(pair[0]) < time_key(pair[1]), "{pair:?}");
        }
    }
}
