//! Everything the control plane keeps in sled: the event log (the truth), the
//! projections folded from it, sessions, and the single writer.

pub mod audit_index;
mod audit_queries;
pub mod commands;
mod counters;
mod error;
pub mod event_log;
pub mod head;
pub mod key_file;
pub mod keyring;
pub mod outbox_state;
pub mod projections;
pub mod sessions;
#[cfg(feature = "test-util")]
pub mod tamper;
pub mod writer;

use std::path::Path;
use std::sync::{Arc, Mutex};

pub use audit_index::AuditIndex;
pub use audit_queries::{ChangesPage, StatePage};
pub use counters::EventCounters;
pub use error::StoreError;
pub use event_log::EventLog;
pub use head::{Head, HeadError, HeadFile};
pub use outbox_state::{OutboxState, StreamPosition};
pub use projections::Projections;
pub use sessions::Sessions;

/// How to open the event store in a data directory (sled's defaults).
pub fn sled_config(dir: &Path) -> sled::Config {
    enspace_sled::config_keeping_segments(dir, sled::Config::new().segment_size)
}

/// Checks the log against what was committed: the head file and the outbox
/// cursor may never be ahead of it. Brings the head file up to the log when
/// the log is ahead (a crash between the log's flush and the head's write,
/// or a data directory from before the head file existed).
pub fn check_committed(
    log: &EventLog,
    head: &mut HeadFile,
    cursor: &OutboxState,
) -> Result<(), StoreError> {
    let (seq, hash) = log.head()?;
    if let Some(committed) = head.current() {
        if seq < committed.seq {
            return Err(StoreError::LogShorter {
                found: seq,
                committed: committed.seq,
                by: "the head file",
            });
        }
        let at = match log.get(committed.seq)? {
            Some(entry) => entry.stored.hash,
            None if committed.seq == 0 => enspace_core::events::GENESIS_HASH,
            None => {
                return Err(StoreError::LogShorter {
                    found: seq,
                    committed: committed.seq,
                    by: "the head file",
                });
            }
        };
        if at != committed.hash {
            return Err(StoreError::HeadMismatch { seq: committed.seq });
        }
    }
    let published = cursor.get()?;
    if seq < published {
        return Err(StoreError::LogShorter {
            found: seq,
            committed: published,
            by: "the outbox cursor (events the token events stream acknowledged)",
        });
    }
    if head.current().is_none_or(|h| h.seq < seq) {
        head.write(Head { seq, hash })?;
    }
    Ok(())
}

/// The opened database with its trees, projections caught up.
#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    pub log: EventLog,
    pub projections: Projections,
    pub sessions: Sessions,
    /// The committed head, written by the writer after every flush.
    pub head: Arc<Mutex<HeadFile>>,
    pub outbox_state: OutboxState,
    /// The log by time, for auditors' questions about moments.
    pub audit: AuditIndex,
}

impl Store {
    /// Opens the data directory, refuses a log shorter than what was
    /// committed, and brings every projection up to the log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let store = Self::open_unchecked(dir)?;
        store.check_committed()?;
        Ok(store)
    }

    /// [`check_committed`] for this store.
    pub fn check_committed(&self) -> Result<(), StoreError> {
        let mut head = self
            .head
            .lock()
            .map_err(|_| StoreError::Corrupt("the head file's lock is poisoned".into()))?;
        check_committed(&self.log, &mut head, &self.outbox_state)
    }

    /// Flushes everything and records that the projections are whole, so
    /// the next start need not rebuild them: the last step of a graceful
    /// stop.
    pub fn close_cleanly(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        self.projections.mark_clean()
    }

    /// Opens the data directory without comparing the log with what was
    /// committed (for `enspace restore`, which fills in what is missing).
    pub fn open_unchecked(dir: &Path) -> Result<Self, StoreError> {
        let db = sled_config(dir).open()?;
        let log = EventLog::open(&db)?;
        let head = HeadFile::open(dir)?;
        let outbox_state = OutboxState::open(&db)?;
        let projections = Projections::open(&db)?;
        if !projections.take_clean()? && projections.last_seq()? > 0 {
            tracing::info!(
                "the last stop was not clean: rebuilding the projections from the event log"
            );
            projections.rebuild_from_scratch()?;
            AuditIndex::open(&db)?.reset()?;
        }
        // A long fold (a rebuild after an unclean stop) says how far it is,
        // in the log, every ENSPACE_PROGRESS_EVERY seconds.
        let progress = enspace_core::progress::Lines::new(
            "events folded into the projections",
            enspace_core::progress::every_from_env(),
            |line: &str| tracing::info!("projections: {line}"),
        );
        let applied = projections.catch_up_with(&log, &progress)?;
        if applied > 0 {
            tracing::info!(events = applied, "projections caught up from the event log");
        }
        let sessions = Sessions::open(&db)?;
        let audit = AuditIndex::open(&db)?;
        Ok(Store {
            audit,
            db,
            log,
            projections,
            sessions,
            head: Arc::new(Mutex::new(head)),
            outbox_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enspace_usage::db::{REQUESTS_DIR, REQUESTS_SEGMENT_SIZE, requests_sled_config};

    fn segment_size_on_disk(dir: &Path) -> Option<usize> {
        let conf = std::fs::read(dir.join("conf")).ok()?;
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
    }

    /// Appends alice's creations 1..=n to the log and folds them.
    fn three_tokens(store: &Store) {
        let mut prev = enspace_core::events::GENESIS_HASH;
        let mut envelopes = Vec::new();
        for seq in 1..=3u64 {
            let envelope =
                enspace_core::fixtures::created(seq, &enspace_core::SecretHash([seq as u8; 32]))
                    .build();
            let stored = enspace_core::events::StoredEvent::new(prev, &envelope);
            store
                .log
                .tree()
                .insert(event_log::encode_seq(seq), stored.to_bytes())
                .expect("append");
            prev = stored.hash;
            envelopes.push(envelope);
        }
        store.projections.apply(&envelopes).expect("fold");
    }

    /// `open` once the previous holder's background threads let go of
    /// sled's lock.
    fn when_unlocked<T, E: std::fmt::Display>(open: impl Fn() -> Result<T, E>) -> T {
        let mut last = open();
        for _ in 0..500 {
            if last.is_ok() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            last = open();
        }
        last.unwrap_or_else(|e| panic!("the store stayed locked: {e}"))
    }

    fn reopen(dir: &Path) -> Store {
        when_unlocked(|| Store::open(dir))
    }

    fn alice_tokens(store: &Store) -> usize {
        store
            .projections
            .tokens_of_user("alice")
            .expect("list")
            .len()
    }

    /// What a crash between sled's writes of two trees leaves: the token
    /// and `last_seq` written, its entry in the user's list not.
    fn tear(dir: &Path) {
        let db = when_unlocked(|| sled_config(dir).open());
        let by_user = db.open_tree("proj_tokens_by_user").expect("tree");
        let first = by_user.first().expect("read").expect("an entry").0;
        by_user.remove(first).expect("remove");
        db.flush().expect("flush");
    }

    #[test]
    fn after_an_unclean_stop_the_projections_are_rebuilt_from_the_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        three_tokens(&store);
        store.db.flush().expect("flush");
        drop(store);
        tear(dir.path());
        let store = reopen(dir.path());
        assert_eq!(alice_tokens(&store), 3);
    }

    #[test]
    fn after_a_clean_stop_the_projections_are_trusted_as_they_are() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        three_tokens(&store);
        store.close_cleanly().expect("close");
        drop(store);
        let store = reopen(dir.path());
        assert_eq!(alice_tokens(&store), 3);
        drop(store);
        // The mark is gone once read: a crash now is not taken for a clean stop.
        tear(dir.path());
        let store = reopen(dir.path());
        assert_eq!(alice_tokens(&store), 3);
    }

    #[test]
    fn the_request_log_gets_its_own_database_with_large_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        drop(requests_sled_config(dir.path()).open().expect("open"));
        assert_eq!(
            segment_size_on_disk(&dir.path().join(REQUESTS_DIR)),
            Some(REQUESTS_SEGMENT_SIZE)
        );
        assert_eq!(segment_size_on_disk(dir.path()), Some(512 * 1024));
        drop(Store::open(dir.path()).expect("reopen"));
        drop(requests_sled_config(dir.path()).open().expect("reopen"));
    }

    #[test]
    fn a_request_log_made_with_other_segments_still_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let requests = dir.path().join(REQUESTS_DIR);
        let db = sled::Config::new()
            .path(&requests)
            .segment_size(1 << 20)
            .open()
            .expect("sled");
        db.insert(b"k", b"v").expect("insert");
        db.flush().expect("flush");
        drop(db);
        drop(
            requests_sled_config(dir.path())
                .open()
                .expect("open with the old segment size"),
        );
        assert_eq!(segment_size_on_disk(&requests), Some(1 << 20));
    }
}
