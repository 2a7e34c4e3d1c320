//! Notices: in a cluster, the notifications one control-plane process made
//! from what only it saw reach every other process as the same
//! notification (same id, same once key), so that `GET /v1/notifications`
//! answers alike wherever it lands and the writer delivers each once.
//!
//! Which ones: those the request-log indexer makes (`new_client_ip`,
//! `decoy_used`), which only the owners of a token's partition of the
//! request stream make, and a decoy presented to one process (introspection,
//! self-rotation). The others (expiry stages, revocations, self-rotations)
//! are folded from the event log or the clock by every process alike and
//! are never shared.
//!
//! How, durably:
//!
//! 1. The maker records the notification, and in the same sled transaction
//!    its [`ToShare`] in the tree `notices_to_share`
//!    ([`crate::store::NotificationStore::emit_shared`]); the flush before
//!    the indexer acknowledges the record batch makes both durable.
//! 2. `publish.rs` (task `notices-publish`) publishes each entry, signed with
//!    the event key in force (domain `ENSPACE-NOTICE-V1`), on
//!    [`NOTICES_SUBJECT`](enspace_nats::NOTICES_SUBJECT) into the stream
//!    [`NOTICES_STREAM`](enspace_nats::NOTICES_STREAM) (7 days) with
//!    `Nats-Msg-Id` = the notification's id, and removes the entry once
//!    JetStream acknowledged it. Two owners making the same notification
//!    within the duplicate window store it once; later copies are kept
//!    once by each receiver's once-mark anyway.
//! 3. The indexer's hook waits for that acknowledgement before the batch is
//!    acknowledged ([`Notifications::wait_shared`], at most [`SHARE_WAIT`]):
//!    a maker SIGKILLed right after the ack has already put its notices in
//!    the stream, and the others need not wait for it to come back. When
//!    NATS did not confirm in time, the entry stays in the tree and goes
//!    out when it can (after a restart, from the tree); with two owners per
//!    partition the other owner makes and shares the same notice meanwhile.
//! 4. `apply.rs` (task `notices-apply`): every process consumes the stream
//!    with its durable consumer `notices-<node id>` (deliver all: a process
//!    that joins late, or was down, catches up on the last 7 days) and
//!    keeps each notice as the maker did ([`Notifications::apply_notice`]:
//!    the same `what`, so the same once-mark), queued for delivery only
//!    where this process delivers ([`Notifications::delivers_now`]: the
//!    writer), then flushes, then acks. Its own notices come back too and
//!    change nothing.
//!
//! Why a local queue and a stream rather than publishing from the hook
//! alone: the queue is written in the transaction that makes the
//! notification, so nothing made is ever lost to a failed publish or a
//! crash; the stream, not the maker, then holds it for whoever is down.
//!
//! Whoever could publish on the subject must not make anyone's bell say
//! anything: a notice is signed, checked against the key in force and the
//! one before it, and its id must be the one its token, `what` and time
//! give. A notice that does not decode or whose id does not match is
//! terminated (`AckKind::Term`), counted (`enspace_notices_refused`) and
//! logged by its stream sequence; one not signed by a key this process
//! knows may be signed by a key whose rotation it has not folded yet: it is
//! tried again a few times, then terminated the same way. Standalone
//! processes share nothing and make no stream.

mod apply;
mod publish;

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use enspace_core::{EventKey, EventSigner};
use enspace_store::StoreError;
use enspace_store::keyring::Keyring;
use serde::{Deserialize, Serialize};

use super::store::ToShare;
use super::{Kind, Notifications, notification_id};
use crate::metrics::NotificationMetrics;

pub use apply::consumer_config;

/// How long the indexer's hook waits for the notices it made to be in the
/// stream before its batch is acknowledged.
pub const SHARE_WAIT: Duration = Duration::from_secs(1);

/// The kinds shared: the others every process makes by itself.
const SHARED_KINDS: [Kind; 2] = [Kind::NewClientIp, Kind::DecoyUsed];

/// A task of sharing's, not started yet.
pub type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// What a process of a cluster shares notices with: its node id names its
/// consumer; `replicas` as the control plane's other streams.
#[derive(Debug, Clone)]
pub struct NoticeConfig {
    pub node_id: String,
    pub replicas: usize,
}

/// Set once sharing is on: wakes the publisher, and the waiters when it
/// published.
#[derive(Default)]
pub(crate) struct Sharing {
    wake: tokio::sync::Notify,
    /// Held while checking the tree (waiters) and while telling them.
    published: Mutex<()>,
    told: Condvar,
}

impl Sharing {
    /// Wakes whoever waits for the queue to empty.
    fn tell_published(&self) {
        let _held = self.published.lock();
        self.told.notify_all();
    }
}

/// Turns sharing on for `notifications` and makes the notices stream (so
/// that it is there before anything is published into it); answers the
/// tasks that publish this process's notices and apply everyone's. Call
/// once, in a cluster, before the request intake starts.
pub async fn join(
    notifications: &Notifications,
    js: &jetstream::Context,
    keys: &Keyring,
    config: &NoticeConfig,
    metrics: &NotificationMetrics,
) -> Result<Vec<(&'static str, Task)>, async_nats::Error> {
    let stream = stream_config(config.replicas);
    enspace_nats::ensure_stream(js, stream.clone()).await?;
    let _ = notifications.sharing.set(Sharing::default());
    let publisher = publish::Publisher {
        notifications: notifications.clone(),
        js: js.clone(),
        keys: keys.clone(),
        stream: stream.clone(),
        metrics: metrics.clone(),
    };
    let applier = apply::Applier {
        notifications: notifications.clone(),
        js: js.clone(),
        keys: keys.clone(),
        stream,
        durable: format!(
            "{}{}",
            enspace_nats::NOTICES_CONSUMER_PREFIX,
            config.node_id
        ),
        metrics: metrics.clone(),
    };
    Ok(vec![
        (
            "notices-publish",
            Box::pin(publish::publish_forever(publisher)),
        ),
        ("notices-apply", Box::pin(apply::apply_forever(applier))),
    ])
}

fn stream_config(replicas: usize) -> jetstream::stream::Config {
    enspace_nats::with_replicas(enspace_nats::notices_config(), replicas)
}

impl Notifications {
    /// Whether notifications made here are shared (a process of a cluster).
    pub fn shares(&self) -> bool {
        self.sharing.get().is_some()
    }

    /// Wakes the publisher: something was queued to share.
    pub(crate) fn wake_sharing(&self) {
        if let Some(sharing) = self.sharing.get() {
            sharing.wake.notify_one();
        }
    }

    /// Waits (blocking this thread, at most `wait`) until every notice
    /// queued to share is in the stream; answers whether they are. Called
    /// by the indexer's hooks before their batch is acknowledged; returns
    /// at once when nothing is shared.
    pub fn wait_shared(&self, wait: Duration) -> bool {
        let Some(sharing) = self.sharing.get() else {
            return true;
        };
        sharing.wake.notify_one();
        let deadline = Instant::now() + wait;
        let Ok(mut held) = sharing.published.lock() else {
            return false;
        };
        loop {
            if self.store.to_share.is_empty() {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    queued = self.store.to_share.len(),
                    "notices are not in {} after {wait:?}; they stay queued to share",
                    enspace_nats::NOTICES_STREAM
                );
                return false;
            }
            match sharing.told.wait_timeout(held, left) {
                Ok((again, _)) => held = again,
                Err(_) => return false,
            }
        }
    }

    /// Keeps a notice another process (or this one) made, as the maker
    /// did: once per token and `what`, queued for delivery where this
    /// process delivers; durable when this returns. Answers whether it was
    /// new here.
    pub fn apply_notice(&self, notice: &ToShare) -> Result<bool, StoreError> {
        let deliver = self.delivers_now();
        let notification = super::Notification {
            read: false,
            ..notice.notification.clone()
        };
        let new = self.store.emit(&notification, &notice.what, deliver)?;
        if new {
            self.store.flush()?;
            if deliver {
                self.wake_delivery();
            }
        }
        Ok(new)
    }
}

/// A notice as the stream holds it.
#[derive(Serialize, Deserialize)]
struct Signed {
    /// The [`ToShare`]'s MessagePack.
    notice: Vec<u8>,
    /// Over `notice`, domain `ENSPACE-NOTICE-V1`.
    signature: Vec<u8>,
}

/// `notice`, signed, as the stream holds it.
pub fn seal(notice: &ToShare, signer: &EventSigner) -> Result<Vec<u8>, rmp_serde::encode::Error> {
    let notice = rmp_serde::to_vec_named(notice)?;
    let signature = signer.sign_notice(&notice).to_vec();
    rmp_serde::to_vec_named(&Signed { notice, signature })
}

/// Why a message of the stream is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not a notice, or one that cannot be what it says.
    Malformed(&'static str),
    /// Not signed by a key this process knows (yet).
    NotSigned,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Malformed(why) => why,
            Refused::NotSigned => "it is not signed by the event key",
        }
    }
}

/// The notice `payload` carries, checked against `keys`.
pub fn open(payload: &[u8], keys: &[EventKey]) -> Result<ToShare, Refused> {
    let signed: Signed =
        rmp_serde::from_slice(payload).map_err(|_| Refused::Malformed("it does not decode"))?;
    if !keys
        .iter()
        .any(|k| k.verify_notice(&signed.notice, &signed.signature))
    {
        return Err(Refused::NotSigned);
    }
    let notice: ToShare = rmp_serde::from_slice(&signed.notice)
        .map_err(|_| Refused::Malformed("its notification does not decode"))?;
    let n = &notice.notification;
    if !SHARED_KINDS.contains(&n.kind) {
        return Err(Refused::Malformed("its kind is not one that is shared"));
    }
    if n.user_id.is_empty() || notice.what.is_empty() {
        return Err(Refused::Malformed("it names no user or nothing told"));
    }
    if n.id != notification_id(n.token_id, &notice.what, n.at) {
        return Err(Refused::Malformed(
            "its id is not the one its token, what and time give",
        ));
    }
    Ok(notice)
}

#[cfg(test)]
mod tests;
