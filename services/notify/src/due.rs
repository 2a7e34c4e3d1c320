//! The due index: the expiry stages still to be told, in tree
//! `notifications_due` keyed by due time (milliseconds, big-endian) ‖ token
//! id ‖ stage, so that everything due by now is one range scan from the
//! start, and nothing else is read. Each entry carries what its
//! notification says (owner, description, expiry), so the sweep reads
//! nothing more. `notifications_due_by_token` (token id ‖ stage → due time)
//! finds a token's entries when it is revoked or its expiry moves.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::Stage;
use enspace_store::StoreError;

pub const DUE_KEY_LEN: usize = 8 + 16 + 1;

#[derive(Clone)]
pub struct DueIndex {
    pub(super) due: sled::Tree,
    pub(super) by_token: sled::Tree,
}

/// What a due entry's notification needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DueEntry {
    pub user_id: String,
    pub description: String,
    /// When the token stops: its expiry, or a rotation's end of overlap.
    pub expires_at: Timestamp,
    /// The successor, when `expires_at` is the end of a rotation's overlap:
    /// the stages then tell of the old token stopping, not of an expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<Ulid>,
    /// The event that set `expires_at` (the creation or the rotation): no
    /// stage due before it is told, and none is dated before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
}

impl DueEntry {
    /// When `stage` falls due for this entry, if it is told at all: a stage
    /// due at or before the event that set the entry is not (a rotation
    /// with an hour's overlap tells no "expires in 7 days" or "in 1 day",
    /// and one without overlap tells nothing: the owner just did it).
    pub fn due_at(&self, stage: Stage) -> Option<Timestamp> {
        let at = stage.due_at(self.expires_at)?;
        (self.since.is_none_or(|since| at > since)).then_some(at)
    }
}

/// One entry of the index, read back.
#[derive(Debug, Clone, PartialEq)]
pub struct Due {
    pub due_ms: u64,
    pub token_id: Ulid,
    pub stage: Stage,
    pub entry: DueEntry,
}

/// Milliseconds since the epoch as a key part; times before it sort first.
pub fn key_ms(at: Timestamp) -> u64 {
    u64::try_from(at.as_millisecond()).unwrap_or(0)
}

pub fn due_key(due_ms: u64, token_id: Ulid, stage: Stage) -> [u8; DUE_KEY_LEN] {
    let mut key = [0u8; DUE_KEY_LEN];
    key[..8].copy_from_slice(&due_ms.to_be_bytes());
    key[8..24].copy_from_slice(&token_id.to_bytes());
    key[24] = stage.byte();
    key
}

pub fn token_key(token_id: Ulid, stage: Stage) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[..16].copy_from_slice(&token_id.to_bytes());
    key[16] = stage.byte();
    key
}

fn decode(key: &[u8], value: &[u8]) -> Result<Due, StoreError> {
    let corrupt = || StoreError::Corrupt("due index entry".into());
    if key.len() != DUE_KEY_LEN {
        return Err(corrupt());
    }
    let due_ms = u64::from_be_bytes(key[..8].try_into().map_err(|_| corrupt())?);
    let token_id = Ulid::from_bytes(key[8..24].try_into().map_err(|_| corrupt())?);
    let stage = Stage::from_byte(key[24]).ok_or_else(corrupt)?;
    let entry = rmp_serde::from_slice(value).map_err(|_| corrupt())?;
    Ok(Due {
        due_ms,
        token_id,
        stage,
        entry,
    })
}

impl DueIndex {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(DueIndex {
            due: db.open_tree("notifications_due")?,
            by_token: db.open_tree("notifications_due_by_token")?,
        })
    }

    /// Up to `limit` entries due at or before `now_ms`, earliest first.
    pub fn due_by(&self, now_ms: u64, limit: usize) -> Result<Vec<Due>, StoreError> {
        let end = now_ms.saturating_add(1).to_be_bytes();
        self.due
            .range(..end)
            .take(limit)
            .map(|item| {
                let (key, value) = item?;
                decode(&key, &value)
            })
            .collect()
    }

    /// The token's entries, by stage.
    pub fn of_token(&self, token_id: Ulid) -> Result<Vec<(Stage, u64)>, StoreError> {
        let mut out = Vec::new();
        for stage in Stage::EXPIRY {
            if let Some(v) = self.by_token.get(token_key(token_id, stage))? {
                let ms: [u8; 8] = v
                    .as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("due by token".into()))?;
                out.push((stage, u64::from_be_bytes(ms)));
            }
        }
        Ok(out)
    }

    pub fn len(&self) -> usize {
        self.due.len()
    }

    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    pub(super) fn clear(&self) -> Result<(), StoreError> {
        self.due.clear()?;
        self.by_token.clear()?;
        Ok(())
    }
}
