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
        let db = sled::Config::new().path(dir).open()?;
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
