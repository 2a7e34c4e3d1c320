//! Sessions on every process: a sign-in is put in the KV bucket
//! [`SESSIONS_BUCKET`](super::SESSIONS_BUCKET) (key: the session secret's
//! SHA-256 in hex, entries expire with the session) before it is answered,
//! and a sign-out deletes it there. Every process copies the bucket into
//! its own session store as it changes, and looks a session it does not
//! hold up in the bucket, so a session used right after sign-in on another
//! process works.
//!
//! Whoever can write to the bucket must not be able to sign anyone in: each
//! record is signed with the control plane's event key (domain
//! `ENSPACE-SESSION-V1`, over the key's hash and the record, so a record
//! cannot be moved to another session's key) and checked before use, in the
//! copy and in the lookup. A record that does not verify, or claims to last
//! longer than a session does, is ignored, counted
//! (`enspace_session_records_refused`) and logged by its revision (never by
//! anything of the session's secret). A copy never outlives its entry: it
//! ends when the entry would age out of the bucket, and when the entry is
//! deleted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::kv;
use enspace_core::{Clock, EventSigner, SecretHash};
use enspace_store::keyring::Keyring;
use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use prometheus_client::metrics::counter::Counter;
use serde::{Deserialize, Serialize};

use enspace_store::Sessions;
use enspace_store::sessions::SessionRecord;

/// How far another process's clock may be ahead of this one's when it
/// says when a session ends.
const CLOCK_SKEW: SignedDuration = SignedDuration::from_secs(30);
/// The longest a lookup of a session in the bucket may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
/// Refused revisions remembered, so that one bad entry is counted and
/// logged once, however often it is looked up.
const REMEMBERED: usize = 256;

/// A record as the bucket holds it.
#[derive(Serialize, Deserialize)]
struct Shared {
    /// The [`SessionRecord`]'s MessagePack.
    record: Vec<u8>,
    /// Over the session's hash and `record`.
    signature: Vec<u8>,
}

fn signed_bytes(hash: &SecretHash, record: &[u8]) -> Vec<u8> {
    let mut bytes = hash.as_bytes().to_vec();
    bytes.extend_from_slice(record);
    bytes
}

/// `record` of the session `hash`, signed, as the bucket holds it.
pub fn seal(
    hash: &SecretHash,
    record: &SessionRecord,
    signer: &EventSigner,
) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let record = rmp_serde::to_vec_named(record)?;
    let signature = signer.sign_session(&signed_bytes(hash, &record)).to_vec();
    rmp_serde::to_vec_named(&Shared { record, signature })
}

/// Why a record was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    Unreadable,
    NotSigned,
    TooLong,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Unreadable => "it is unreadable",
            Refused::NotSigned => "it is not signed by the event key",
            Refused::TooLong => "it claims to last longer than a session does",
        }
    }
}

#[derive(Clone)]
pub struct SessionMirror {
    kv: kv::Store,
    keys: Keyring,
    lifetime: SignedDuration,
    clock: Arc<dyn Clock>,
    refused: Counter,
    seen_refused: Arc<Mutex<VecDeque<u64>>>,
}

fn key(hash: &SecretHash) -> String {
    hex::encode(hash.as_bytes())
}

fn hash_of(key: &str) -> Option<SecretHash> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(key, &mut bytes).ok()?;
    Some(SecretHash(bytes))
}

fn created_at(entry: &kv::Entry) -> Option<Timestamp> {
    Timestamp::from_nanosecond(entry.created.unix_timestamp_nanos()).ok()
}

impl SessionMirror {
    /// Sessions through `kv`, signed by `signer`, lasting at most
    /// `lifetime`; refused records counted in `refused`.
    pub fn new(
        kv: kv::Store,
        keys: Keyring,
        lifetime: SignedDuration,
        clock: Arc<dyn Clock>,
        refused: Counter,
    ) -> Self {
        SessionMirror {
            kv,
            keys,
            lifetime,
            clock,
            refused,
            seen_refused: Arc::default(),
        }
    }

    /// Shares a new session, and the end of the ones it pushed over the cap.
    pub async fn signed_in(
        &self,
        hash: &SecretHash,
        record: &SessionRecord,
        ended: &[SecretHash],
    ) -> Result<(), async_nats::Error> {
        let bytes = seal(hash, record, &self.keys.current())?;
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

    /// The session as the bucket holds it, if its record is good. Asked
    /// for a session this process has not copied (yet): at most
    /// [`LOOKUP_TIMEOUT`], as it may be anyone's guess.
    pub async fn lookup(
        &self,
        hash: &SecretHash,
    ) -> Result<Option<SessionRecord>, async_nats::Error> {
        let entry = tokio::time::timeout(LOOKUP_TIMEOUT, self.kv.entry(key(hash)))
            .await
            .map_err(|_| "the sessions bucket did not answer in time")??;
        match entry {
            Some(entry) if entry.operation == kv::Operation::Put => Ok(self.open(hash, &entry)),
            _ => Ok(None),
        }
    }

    /// The record of `entry` (the session `hash`'s), checked, ending no
    /// later than the entry leaves the bucket; `None` (counted and logged)
    /// if it is not good.
    fn open(&self, hash: &SecretHash, entry: &kv::Entry) -> Option<SessionRecord> {
        match self.check(hash, entry) {
            Ok(record) => Some(record),
            Err(why) => {
                self.refuse(entry.revision, why);
                None
            }
        }
    }

    fn check(&self, hash: &SecretHash, entry: &kv::Entry) -> Result<SessionRecord, Refused> {
        let shared: Shared =
            rmp_serde::from_slice(&entry.value).map_err(|_| Refused::Unreadable)?;
        let signed = signed_bytes(hash, &shared.record);
        if !self
            .keys
            .recent_keys()
            .iter()
            .any(|k| k.verify_session(&signed, &shared.signature))
        {
            return Err(Refused::NotSigned);
        }
        let mut record: SessionRecord =
            rmp_serde::from_slice(&shared.record).map_err(|_| Refused::Unreadable)?;
        let now = self.clock.now();
        let latest = now
            .checked_add(self.lifetime)
            .map_err(|_| Refused::TooLong)?;
        if record.expires_at > latest.checked_add(CLOCK_SKEW).unwrap_or(latest) {
            return Err(Refused::TooLong);
        }
        let mut ends = record.expires_at.min(latest);
        if let Some(aged_out) = created_at(entry).and_then(|c| c.checked_add(self.lifetime).ok()) {
            ends = ends.min(aged_out);
        }
        record.expires_at = ends;
        Ok(record)
    }

    fn refuse(&self, revision: u64, why: Refused) {
        let first = self.seen_refused.lock().is_ok_and(|mut seen| {
            if seen.contains(&revision) {
                return false;
            }
            if seen.len() >= REMEMBERED {
                seen.pop_front();
            }
            seen.push_back(revision);
            true
        });
        if first {
            self.refused.inc();
            tracing::warn!(
                bucket = super::SESSIONS_BUCKET,
                revision,
                "ignored the session record at revision {revision} of {}: {}",
                super::SESSIONS_BUCKET,
                why.as_str()
            );
        }
    }

    /// Copies every change of the bucket into `sessions`, forever.
    pub async fn copy_forever(self, sessions: Sessions) {
        let mut backoff =
            enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
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
                        let record = match change.operation {
                            kv::Operation::Put => match self.open(&hash, &change) {
                                Some(record) => Some(record),
                                None => continue,
                            },
                            kv::Operation::Delete | kv::Operation::Purge => None,
                        };
                        let sessions = sessions.clone();
                        let applied = tokio::task::spawn_blocking(move || match record {
                            Some(record) => sessions.insert(&hash, &record, usize::MAX).map(drop),
                            None => sessions.remove(&hash),
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
