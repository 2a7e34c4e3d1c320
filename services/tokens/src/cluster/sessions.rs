//! Sessions on every process: a sign-in is put in the KV bucket
//! [`SESSIONS_BUCKET`](super::SESSIONS_BUCKET) (key: the session secret's
//! SHA-256 in hex, entries expire with the session) before it is answered,
//! and a sign-out deletes it there. Every process copies the bucket into
//! its own session store as it changes, and looks a session it does not
//! hold up in the bucket, so a session used right after sign-in on another
//! process works.

use std::time::Duration;

use async_nats::jetstream::kv;
use enspace_core::SecretHash;
use futures::StreamExt;

use crate::store::Sessions;
use crate::store::sessions::SessionRecord;

#[derive(Clone)]
pub struct SessionMirror {
    kv: kv::Store,
}

fn key(hash: &SecretHash) -> String {
    hex::encode(hash.as_bytes())
}

fn hash_of(key: &str) -> Option<SecretHash> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(key, &mut bytes).ok()?;
    Some(SecretHash(bytes))
}

impl SessionMirror {
    pub fn new(kv: kv::Store) -> Self {
        SessionMirror { kv }
    }

    /// Shares a new session, and the end of the ones it pushed over the cap.
    pub async fn signed_in(
        &self,
        hash: &SecretHash,
        record: &SessionRecord,
        ended: &[SecretHash],
    ) -> Result<(), async_nats::Error> {
        let bytes = rmp_serde::to_vec_named(record)?;
        self.kv.put(key(hash), bytes.into()).await?;
        for hash in ended {
            self.kv.delete(key(hash)).await?;
        }
        Ok(())
    }

    /// Ends a session everywhere.
    pub async fn signed_out(&self, hash: &SecretHash) -> Result<(), async_nats::Error> {
        self.kv.delete(key(hash)).await?;
        Ok(())
    }

    /// The session as the bucket holds it.
    pub async fn lookup(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<SessionRecord>, async_nats::Error> {
        match self.kv.get(key(hash)).await? {
            Some(bytes) => Ok(rmp_serde::from_slice(&bytes).ok()),
            None => Ok(None),
        }
    }

    /// Copies every change of the bucket into `sessions`, forever.
    pub async fn copy_forever(self, sessions: Sessions) {
        let mut backoff =
            enspace_nats::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        // Resumed after the last change seen, so that a sign-out made while
        // the watch was down is not missed.
        let mut seen: u64 = 0;
        loop {
            match self.kv.watch_all_from_revision(seen + 1).await {
                Ok(mut changes) => {
                    backoff.reset();
                    while let Some(change) = changes.next().await {
                        let Ok(change) = change else { break };
                        seen = seen.max(change.revision);
                        let Some(hash) = hash_of(&change.key) else {
                            continue;
                        };
                        let sessions = sessions.clone();
                        let applied = tokio::task::spawn_blocking(move || match change.operation {
                            kv::Operation::Put => {
                                match rmp_serde::from_slice::<SessionRecord>(&change.value) {
                                    Ok(record) => {
                                        sessions.insert(&hash, &record, usize::MAX).map(drop)
                                    }
                                    Err(_) => Ok(()),
                                }
                            }
                            kv::Operation::Delete | kv::Operation::Purge => sessions.remove(&hash),
                        })
                        .await;
                        if let Ok(Err(e)) = applied {
                            tracing::warn!(error = %e, "cannot copy a session change");
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot watch the sessions bucket"),
            }
            backoff.wait().await;
        }
    }
}
