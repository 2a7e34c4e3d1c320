//! What can go wrong reading or writing the request index.

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("stored value is corrupt: {0}")]
    Corrupt(String),
}

/// A failure of the index answers 500 with nothing of its cause; the cause
/// goes to the log.
impl From<IndexError> for enspace_http::ApiError {
    fn from(e: IndexError) -> Self {
        enspace_http::ApiError::internal(e)
    }
}
