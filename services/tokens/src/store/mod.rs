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

/// The request log's own sled database, a directory inside the data
/// directory. Apart from the event store so that neither's flushes wait on
/// the other's writes, and so that each has the segment size its writes want.
pub const REQUESTS_DIR: &str = "requests";

/// sled's log segment size for a new request-log database: 16 MiB, where
/// sled's default is 512 KiB. sled reclaims the space of rewritten pages a
/// whole segment at a time, and the request index rewrites pages all over
/// the tree (each batch lands on the pages of a thousand tokens); with
/// 10,000 active tokens the index took 4.2x its records' MessagePack size on
/// disk with 512 KiB segments and 1.2x with 16 MiB (sled's largest).
pub const REQUESTS_SEGMENT_SIZE: usize = 16 << 20;

/// How to open the event store in a data directory (sled's defaults).
pub fn sled_config(dir: &Path) -> sled::Config {
    config_keeping_segments(dir, sled::Config::new().segment_size)
}

/// How to open the request-log database in a data directory.
pub fn requests_sled_config(data_dir: &Path) -> sled::Config {
    config_keeping_segments(&data_dir.join(REQUESTS_DIR), REQUESTS_SEGMENT_SIZE)
}

/// A new database gets `segment_size`; an existing one keeps the size it
/// was created with (sled refuses to open a database with another).
fn config_keeping_segments(dir: &Path, segment_size: usize) -> sled::Config {
    // The file is text lines followed by a binary checksum.
    let existing = std::fs::read(dir.join("conf")).ok().and_then(|conf| {
        String::from_utf8_lossy(&conf)
            .lines()
            .find_map(|l| l.strip_prefix("segment_size:")?.trim().parse().ok())
    });
    sled::Config::new()
        .path(dir)
        .segment_size(existing.unwrap_or(segment_size))
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
    /// Request records by token and time, and each token's last use (the
    /// request-log indexer's), in their own database.
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
        let requests_db = requests_sled_config(dir).open()?;
        let last_used = requests_db.open_tree("token_last_used")?;
        let requests = crate::request_log::RequestIndex::open(&requests_db, last_used)?;
        Ok(Store {
            db,
            log,
            projections,
            sessions,
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
    fn the_request_log_gets_its_own_database_with_large_segments() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(Store::open(dir.path()).expect("open"));
        assert_eq!(
            segment_size_on_disk(&dir.path().join(REQUESTS_DIR)),
            Some(REQUESTS_SEGMENT_SIZE)
        );
        assert_eq!(segment_size_on_disk(dir.path()), Some(512 * 1024));
        drop(Store::open(dir.path()).expect("reopen"));
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
        drop(Store::open(dir.path()).expect("open with the old segment size"));
        assert_eq!(segment_size_on_disk(&requests), Some(1 << 20));
    }
}
