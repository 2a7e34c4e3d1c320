//! Signed-in sessions, kept in tree `sessions` by the SHA-256 of the session
//! secret, so that a restart does not sign everyone out and a stolen data
//! directory holds no usable session.

use enspace_core::SecretHash;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::StoreError;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    pub user_id: String,
    pub expires_at: Timestamp,
}

#[derive(Clone)]
pub struct Sessions {
    tree: sled::Tree,
}

impl Sessions {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(Sessions {
            tree: db.open_tree("sessions")?,
        })
    }

    pub fn insert(&self, hash: &SecretHash, record: &SessionRecord) -> Result<(), StoreError> {
        let bytes = rmp_serde::to_vec_named(record)
            .map_err(|e| StoreError::Corrupt(format!("encode session: {e}")))?;
        self.tree.insert(hash.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    /// The live session for this hash; an expired one is removed and `None`.
    pub fn get(
        &self,
        hash: &SecretHash,
        now: Timestamp,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let Some(bytes) = self.tree.get(hash.as_bytes())? else {
            return Ok(None);
        };
        let record: SessionRecord = rmp_serde::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
        if record.expires_at <= now {
            self.tree.remove(hash.as_bytes())?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub fn remove(&self, hash: &SecretHash) -> Result<(), StoreError> {
        self.tree.remove(hash.as_bytes())?;
        self.tree.flush()?;
        Ok(())
    }
}
