//! The notifications themselves, in trees of their own that no rebuild of
//! the projections clears: `notifications` (id → notification),
//! `notifications_by_user` (user ‖ 0 ‖ id → (), newest last),
//! `notifications_once` (token id ‖ what → id: what was told already), the
//! delivery queue `notifications_outbox` (id → delivery state), and, in a
//! cluster, `notices_to_share` (id → [`ToShare`]: what this process made
//! that the others must be told, see [`super::notices`]).
//!
//! A notification is made at most once per token and `what` (a stage, or a
//! client IP in a window): [`NotificationStore::emit`] writes it, its
//! listing, its once-mark, its place in the delivery queue and, with
//! [`NotificationStore::emit_shared`], in the queue to share, in one sled
//! transaction, or nothing when the once-mark is there already.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use ulid::Ulid;

use super::Notification;
use enspace_store::StoreError;

/// A queued notification's delivery so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pending {
    /// Failed webhook attempts.
    pub attempts: u32,
    /// Not before this (unix milliseconds, the machine's clock).
    pub next_ms: u64,
    /// Whether it was published on NATS.
    pub published: bool,
}

/// A notification to tell the other processes of a cluster, with the
/// `what` it was made once for (MessagePack with named fields, in
/// `notices_to_share` and, signed, on the notices stream).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToShare {
    pub notification: Notification,
    pub what: Vec<u8>,
}

/// Notifications listed at most, the newest.
pub const LIST_LIMIT: usize = 100;

#[derive(Clone)]
pub struct NotificationStore {
    records: sled::Tree,
    by_user: sled::Tree,
    once: sled::Tree,
    pub(super) outbox: sled::Tree,
    pub(super) to_share: sled::Tree,
}

fn user_key(user_id: &str, id: Ulid) -> Vec<u8> {
    let mut key = Vec::with_capacity(user_id.len() + 17);
    key.extend_from_slice(user_id.as_bytes());
    key.push(0);
    key.extend_from_slice(&id.to_bytes());
    key
}

fn once_key(token_id: Ulid, what: &[u8]) -> Vec<u8> {
    let mut key = token_id.to_bytes().to_vec();
    key.extend_from_slice(what);
    key
}

pub(super) fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec_named(value).map_err(|e| StoreError::Corrupt(format!("encode: {e}")))
}

fn decode(bytes: &[u8]) -> Result<Notification, StoreError> {
    rmp_serde::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("notification: {e}")))
}

fn from_transaction(e: TransactionError<StoreError>) -> StoreError {
    match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => StoreError::Sled(e),
    }
}

impl NotificationStore {
    pub fn open(db: &sled::Db) -> Result<Self, StoreError> {
        Ok(NotificationStore {
            records: db.open_tree("notifications")?,
            by_user: db.open_tree("notifications_by_user")?,
            once: db.open_tree("notifications_once")?,
            outbox: db.open_tree("notifications_outbox")?,
            to_share: db.open_tree("notices_to_share")?,
        })
    }

    /// Records `notification` unless its token was told `what` already;
    /// queues it for delivery when `deliver`. Answers whether it is new.
    pub fn emit(
        &self,
        notification: &Notification,
        what: &[u8],
        deliver: bool,
    ) -> Result<bool, StoreError> {
        self.emit_shared(notification, what, deliver, false)
    }

    /// [`Self::emit`], and, when `share` and it is new, queues it (with
    /// `what`) in `notices_to_share` in the same transaction.
    pub fn emit_shared(
        &self,
        notification: &Notification,
        what: &[u8],
        deliver: bool,
        share: bool,
    ) -> Result<bool, StoreError> {
        let once = once_key(notification.token_id, what);
        if self.once.contains_key(&once)? {
            return Ok(false);
        }
        let record = encode(notification)?;
        let pending = encode(&Pending::default())?;
        let shared = if share {
            encode(&ToShare {
                notification: notification.clone(),
                what: what.to_vec(),
            })?
        } else {
            Vec::new()
        };
        let id = notification.id.to_bytes();
        let listed = user_key(&notification.user_id, notification.id);
        let trees = (
            &self.records,
            &self.by_user,
            &self.once,
            &self.outbox,
            &self.to_share,
        );
        trees
            .transaction(|(records, by_user, once_tree, outbox, to_share)| {
                if once_tree.get(&once)?.is_some() {
                    return Ok(false);
                }
                once_tree.insert(once.as_slice(), &id[..])?;
                records.insert(&id[..], record.as_slice())?;
                by_user.insert(listed.as_slice(), &[][..])?;
                if deliver {
                    outbox.insert(&id[..], pending.as_slice())?;
                }
                if share {
                    to_share.insert(&id[..], shared.as_slice())?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(true)
            })
            .map_err(from_transaction)
    }

    /// Whether notification `id` waits in this process's delivery queue.
    pub fn is_queued(&self, id: Ulid) -> Result<bool, StoreError> {
        Ok(self.outbox.contains_key(id.to_bytes())?)
    }

    /// Makes every notification recorded so far durable (the whole
    /// database is flushed). Those made from something acknowledged
    /// elsewhere (a request-log batch) need it before the acknowledgement;
    /// the others are made again from where they came from after a crash.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.records.flush()?;
        Ok(())
    }

    pub fn get(&self, id: Ulid) -> Result<Option<Notification>, StoreError> {
        self.records
            .get(id.to_bytes())?
            .map(|b| decode(&b))
            .transpose()
    }

    /// The user's newest notifications, newest first.
    pub fn list(&self, user_id: &str, limit: usize) -> Result<Vec<Notification>, StoreError> {
        let mut prefix = user_id.as_bytes().to_vec();
        prefix.push(0);
        let mut out = Vec::with_capacity(limit.min(LIST_LIMIT));
        for item in self.by_user.scan_prefix(&prefix).rev() {
            if out.len() == limit {
                break;
            }
            let (key, _) = item?;
            let id: [u8; 16] = key[prefix.len()..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("notifications by user key".into()))?;
            if let Some(n) = self.get(Ulid::from_bytes(id))? {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Marks the user's notification `id` read; `false` when the user has
    /// no such notification.
    pub fn mark_read(&self, user_id: &str, id: Ulid) -> Result<bool, StoreError> {
        let Some(mut n) = self.get(id)? else {
            return Ok(false);
        };
        if n.user_id != user_id {
            return Ok(false);
        }
        if !n.read {
            n.read = true;
            self.records.insert(id.to_bytes(), encode(&n)?)?;
        }
        Ok(true)
    }

    /// How many notifications are kept, all users together.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}
