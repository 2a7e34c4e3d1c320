//! What can go wrong reading or writing the token service's sled databases
//! (the event store and the request index alike).

use crate::head::HeadError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Head(#[from] HeadError),
    /// The log lost events that were committed: refuse to serve from it.
    #[error(
        "the event log ends at seq {found}, but {by} says seq {committed} was committed: \
         events {first_missing}..={committed} are missing. Refill them from the token \
         events stream with `enspace restore --data <dir> --nats-url <url>`, or from a backup",
        first_missing = found + 1
    )]
    LogShorter {
        found: u64,
        committed: u64,
        by: &'static str,
    },
    #[error(
        "the event at seq {seq} is not the one that was committed (its hash differs from \
         the head file's): the log was changed"
    )]
    HeadMismatch { seq: u64 },
    /// A view folded after the token projections asked what an event did
    /// before they folded it.
    #[error("the token projections have folded up to seq {folded}, not yet seq {seq}")]
    NotFolded { seq: u64, folded: u64 },
}

/// A store failure answers 500 with nothing of its cause; the cause goes to
/// the log.
impl From<StoreError> for enspace_http::ApiError {
    fn from(e: StoreError) -> Self {
        enspace_http::ApiError::internal(e)
    }
}
