//! Signed-in sessions, kept in tree `sessions` by the SHA-256 of the session
//! secret, so that a restart does not sign everyone out and a stolen data
//! directory holds no usable session.
//!
//! Tree `sessions_by_user` (user id ‖ 0 ‖ `expires_at` in ms, u64 BE ‖ hash
//! → ()) lists each user's sessions in the order they end, which (every
//! session lasting as long) is the order they began: a user over the cap
//! loses the oldest, and a sign-out or expiry removes both entries.

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
    by_user: sled::Tree,
}

fn user_prefix(user_id: &str) -> Vec<u8> {
    let mut prefix = Vec::with_capacity(user_id.len() + 1);
    prefix.extend_from_slice(user_id.as_bytes());
    prefix.push(0);
    prefix
}

fn user_key(hash: &SecretHash, record: &SessionRecord) -> Vec<u8> {
    let mut key = user_prefix(&record.user_id);
    let ms = u64::try_from(record.expires_at.as_millisecond()).unwrap_or(0);
    key.extend_from_slice(&ms.to_be_bytes());
    key.extend_from_slice(hash.as_bytes());
    key
}

fn decode(bytes: &[u8]) -> Result<SessionRecord, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("session: {e}")))
}

impl Sessions {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        let sessions = Sessions {
            tree: db.open_tree("sessions")?,
            by_user: db.open_tree("sessions_by_user")?,
        };
        // Sessions from before the per-user list existed get their entries.
        if sessions.by_user.is_empty() && !sessions.tree.is_empty() {
            for item in sessions.tree.iter() {
                let (key, value) = item?;
                let hash = session_hash(&key)?;
                sessions
                    .by_user
                    .insert(user_key(&hash, &decode(&value)?), &[][..])?;
            }
        }
        Ok(sessions)
    }

    /// Records a session; if its user then holds more than `max_per_user`,
    /// ends their oldest ones. Returns the hashes of those ended.
    pub fn insert(
        &self,
        hash: &SecretHash,
        record: &SessionRecord,
        max_per_user: usize,
    ) -> Result<Vec<SecretHash>, StoreError> {
        let bytes = rmp_serde::to_vec_named(record)
            .map_err(|e| StoreError::Corrupt(format!("encode session: {e}")))?;
        // Held already (copied again, perhaps ending sooner): one entry in
        // the user's list, not two.
        if let Some(old) = self.tree.insert(hash.as_bytes(), bytes)? {
            self.by_user.remove(user_key(hash, &decode(&old)?))?;
        }
        self.by_user.insert(user_key(hash, record), &[][..])?;
        let keys: Vec<sled::IVec> = self
            .by_user
            .scan_prefix(user_prefix(&record.user_id))
            .keys()
            .collect::<Result<_, _>>()?;
        let excess = keys.len().saturating_sub(max_per_user.max(1));
        let mut ended = Vec::with_capacity(excess);
        for key in &keys[..excess] {
            let oldest = session_hash(key.get(key.len().saturating_sub(32)..).unwrap_or_default())?;
            self.tree.remove(oldest.as_bytes())?;
            self.by_user.remove(key)?;
            ended.push(oldest);
        }
        self.tree.flush()?;
        Ok(ended)
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
        let record = decode(&bytes)?;
        if record.expires_at <= now {
            self.delete(hash, &record)?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    pub fn remove(&self, hash: &SecretHash) -> Result<(), StoreError> {
        if let Some(bytes) = self.tree.get(hash.as_bytes())? {
            self.delete(hash, &decode(&bytes)?)?;
        }
        self.tree.flush()?;
        Ok(())
    }

    fn delete(&self, hash: &SecretHash, record: &SessionRecord) -> Result<(), StoreError> {
        self.tree.remove(hash.as_bytes())?;
        self.by_user.remove(user_key(hash, record))?;
        Ok(())
    }

    /// Removes every session that has ended by `now`; returns how many.
    pub fn sweep(&self, now: Timestamp) -> Result<usize, StoreError> {
        let mut ended = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item?;
            let record = decode(&value)?;
            if record.expires_at <= now {
                ended.push((session_hash(&key)?, record));
            }
        }
        for (hash, record) in &ended {
            self.delete(hash, record)?;
        }
        if !ended.is_empty() {
            self.tree.flush()?;
        }
        Ok(ended.len())
    }

    /// Sessions held, of every user.
    pub fn len(&self) -> usize {
        self.tree.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tree.is_empty()
    }

    /// Sessions `user_id` holds (ended ones not yet swept included).
    pub fn count_of(&self, user_id: &str) -> usize {
        self.by_user.scan_prefix(user_prefix(user_id)).count()
    }
}

fn session_hash(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    let array: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("session key is not a SHA-256".into()))?;
    Ok(SecretHash(array))
}

/// Removes ended sessions every `interval`, forever (an ended session is
/// refused when presented anyway; the sweep keeps the store from holding
/// every session ever made).
pub async fn sweep_forever(
    sessions: Sessions,
    clock: std::sync::Arc<dyn enspace_core::Clock>,
    interval: std::time::Duration,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = clock.now();
        let sweeping = sessions.clone();
        match tokio::task::spawn_blocking(move || sweeping.sweep(now)).await {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => tracing::info!(sessions = n, "swept {n} ended sessions"),
            Ok(Err(e)) => tracing::error!(error = %e, "sweeping ended sessions failed"),
            Err(e) => tracing::error!(error = %e, "the session sweep task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn open() -> (tempfile::TempDir, Sessions) {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("sled");
        (dir, Sessions::open(&db).expect("sessions"))
    }

    fn record(user: &str, expires_at: &str) -> SessionRecord {
        SessionRecord {
            user_id: user.into(),
            expires_at: at(expires_at),
        }
    }

    #[test]
    fn a_user_over_the_cap_loses_the_oldest_session_and_only_theirs() {
        let (_dir, sessions) = open();
        let bob = SecretHash([9; 32]);
        sessions
            .insert(&bob, &record("bob", "2026-01-01T00:00:00Z"), 2)
            .expect("insert");
        for n in 1..=3u8 {
            let ended = sessions
                .insert(
                    &SecretHash([n; 32]),
                    &record("alice", &format!("2026-01-01T0{n}:00:00Z")),
                    2,
                )
                .expect("insert");
            assert_eq!(ended.len(), usize::from(n == 3));
        }
        let now = at("2025-12-31T00:00:00Z");
        assert!(
            sessions
                .get(&SecretHash([1; 32]), now)
                .expect("get")
                .is_none()
        );
        assert!(
            sessions
                .get(&SecretHash([2; 32]), now)
                .expect("get")
                .is_some()
        );
        assert!(
            sessions
                .get(&SecretHash([3; 32]), now)
                .expect("get")
                .is_some()
        );
        assert!(sessions.get(&bob, now).expect("get").is_some());
        assert_eq!(sessions.count_of("alice"), 2);
    }

    #[test]
    fn a_session_recorded_again_with_another_end_is_listed_once() {
        let (_dir, sessions) = open();
        let hash = SecretHash([4; 32]);
        sessions
            .insert(&hash, &record("alice", "2026-01-01T12:00:00Z"), 10)
            .expect("insert");
        sessions
            .insert(&hash, &record("alice", "2026-01-01T11:00:00Z"), 10)
            .expect("insert again");
        assert_eq!(sessions.count_of("alice"), 1);
        assert_eq!(
            sessions.sweep(at("2026-01-01T11:30:00Z")).expect("sweep"),
            1,
            "it ends at the second end"
        );
        assert_eq!(sessions.count_of("alice"), 0);
    }

    #[test]
    fn the_sweep_removes_ended_sessions_from_both_trees() {
        let (_dir, sessions) = open();
        sessions
            .insert(
                &SecretHash([1; 32]),
                &record("alice", "2026-01-01T00:00:00Z"),
                10,
            )
            .expect("insert");
        sessions
            .insert(
                &SecretHash([2; 32]),
                &record("alice", "2026-01-02T00:00:00Z"),
                10,
            )
            .expect("insert");
        assert_eq!(
            sessions.sweep(at("2026-01-01T00:00:00Z")).expect("sweep"),
            1
        );
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions.count_of("alice"), 1);
        sessions.remove(&SecretHash([2; 32])).expect("remove");
        assert!(sessions.is_empty());
        assert_eq!(sessions.count_of("alice"), 0);
    }
}
