//! Everything the token service keeps in sled: the event log (the truth), the
//! projections folded from it, sessions, and the single writer.

pub mod event_log;
pub mod projections;
pub mod sessions;
pub mod writer;

use std::path::Path;

pub use event_log::EventLog;
pub use projections::Projections;
pub use sessions::Sessions;

/// sled's log segment size for a new data directory: 16 MiB, where sled's
/// default is 512 KiB. sled reclaims the space of rewritten pages a whole
/// segment at a time, and the request index rewrites pages all over the
/// tree (each batch lands on the pages of a thousand tokens); with 10,000
/// active tokens the index took 4.2x its records' MessagePack size on disk
/// with 512 KiB segments and 1.2x with 16 MiB (sled's largest).
pub const SEGMENT_SIZE: usize = 16 << 20;

/// How to open a data directory: a new one with [`SEGMENT_SIZE`], an
/// existing one with the segment size it was created with (sled refuses to
/// open a database with another).
pub fn sled_config(dir: &Path) -> sled::Config {
    // The file is text lines followed by a binary checksum.
    let existing = std::fs::read(dir.join("conf")).ok().and_then(|conf| {
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
    });
    sled::Config::new()
        .path(dir)
        .segment_size(existing.unwrap_or(SEGMENT_SIZE))
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// The opened database with its trees, projections caught up.
#[derive(Clone)]
pub struct Store {
    pub db: sled::Db,
    pub log: EventLog,
    pub projections: Projections,
    pub sessions: Sessions,
    /// Token id → when it was last used, kept by the request-log indexer.
    pub last_used: sled::Tree,
    /// Request records by token and time (the request-log indexer's).
    pub requests: crate::request_log::RequestIndex,
}

impl Store {
    /// Opens the data directory and brings every projection up to the log.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled_config(dir).open()?;
        let log = EventLog::open(&db)?;
        let projections = Projections::open(&db)?;
        let applied = projections.catch_up(&log)?;
        if applied > 0 {
            tracing::info!(events = applied, "projections caught up from the event log");
        }
        let sessions = Sessions::open(&db)?;
        let last_used = db.open_tree("token_last_used")?;
        let requests = crate::request_log::RequestIndex::open(&db, last_used.clone())?;
        Ok(Store {
            db,
            log,
            projections,
            sessions,
            last_used,
            requests,
        })
    }
}

impl Store {
    /// When the token was last used, by the request-log index.
    pub fn last_used(&self, token_id: ulid::Ulid) -> Result<Option<jiff::Timestamp>, StoreError> {
        self.requests.last_used(token_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment_size_on_disk(dir: &Path) -> Option<usize> {
        let conf = std::fs::read(dir.join("conf")).ok()?;
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
    }

    #[test]
    fn a_new_data_directory_gets_large_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        assert_eq!(segment_size_on_disk(dir.path()), Some(SEGMENT_SIZE));
        drop(Store::open(dir.path()).expect("reopen"));
    }

    #[test]
    fn a_data_directory_made_with_sleds_default_segments_still_opens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        db.insert(b"k", b"v").expect("insert");
        db.flush().expect("flush");
        drop(db);
        let store = Store::open(dir.path()).expect("open with the old segment size");
        assert_eq!(store.db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
        assert_eq!(segment_size_on_disk(dir.path()), Some(512 * 1024));
    }
}
