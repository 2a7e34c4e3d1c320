//! Notifications (`enspace-notify`): what a token's owner is told about it. They are a
//! projection of the event log plus the clock:
//!
//! - [`projection`] folds the events: a creation puts the token's expiry
//!   stages in the due index, a revocation takes them out (and tells the
//!   owner when it was `leaked`, or revoked by an administrator or the
//!   directory), a rotation moves them to the new expiry;
//! - [`due`] is that index, keyed by (due time, token id, stage), so that
//!   [`sweep`] finds what fell due with one range scan up to now;
//! - [`store`] keeps the notifications themselves, each once per token and
//!   stage whatever is folded or swept again, and the read marks;
//! - [`delivery`] sends each new one to the webhook ([`webhook`] signs it)
//!   and publishes it on NATS, from a durable queue, on the writer only;
//! - [`notices`], in a cluster, tells every other process the ones only
//!   this one made (the request-log indexer's, a decoy presented here),
//!   through the stream `ENSPACE_NOTICES`.

pub mod client_ip;
pub mod decoy;
pub mod delivery;
pub mod due;
pub mod metrics;
pub mod notices;
pub mod projection;
pub mod store;
pub mod sweep;
pub mod webhook;

use std::sync::{Arc, OnceLock};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ulid::Ulid;

pub use decoy::DecoyUse;
pub use delivery::Delivery;
pub use due::DueIndex;
pub use metrics::NotificationMetrics;
pub use projection::{NotificationFold, NotificationProjection};
pub use store::NotificationStore;

use enspace_store::StoreError;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = NotificationKind)]
pub enum Kind {
    /// The token expires in 7 days, or in 1 day.
    ExpiringSoon,
    /// The token expired.
    Expired,
    /// The token was reported as leaked and revoked.
    Leaked,
    /// Someone other than the owner (an administrator, or the directory when
    /// the owner left a workspace) revoked the token.
    Revoked,
    /// The token was used from a client IP it had not used in the request
    /// retention window.
    NewClientIp,
    /// The token rotated itself (`POST /v1/tokens/self/rotate`).
    TokenSelfRotated,
    /// Someone used a decoy (`POST /v1/decoys`): the detail names the
    /// client address, user agent, call and node; once per address and
    /// hour.
    DecoyUsed,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::ExpiringSoon => "expiring_soon",
            Kind::Expired => "expired",
            Kind::Leaked => "leaked",
            Kind::Revoked => "revoked",
            Kind::NewClientIp => "new_client_ip",
            Kind::TokenSelfRotated => "token_self_rotated",
            Kind::DecoyUsed => "decoy_used",
        }
    }
}

/// Each thing a token's owner is told at most once: an expiry stage, or a
/// revocation. Its byte is part of stored keys: never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// 7 days before expiry.
    SevenDays = 0,
    /// 1 day before expiry.
    OneDay = 1,
    /// At expiry.
    Expired = 2,
    Leaked = 3,
    Revoked = 4,
    /// The token rotated itself.
    SelfRotated = 5,
}

impl Stage {
    /// The expiry stages, earliest first.
    pub const EXPIRY: [Stage; 3] = [Stage::SevenDays, Stage::OneDay, Stage::Expired];

    pub fn byte(self) -> u8 {
        self as u8
    }

    pub fn from_byte(b: u8) -> Option<Stage> {
        [
            Stage::SevenDays,
            Stage::OneDay,
            Stage::Expired,
            Stage::Leaked,
            Stage::Revoked,
            Stage::SelfRotated,
        ]
        .into_iter()
        .find(|s| s.byte() == b)
    }

    pub fn kind(self) -> Kind {
        match self {
            Stage::SevenDays | Stage::OneDay => Kind::ExpiringSoon,
            Stage::Expired => Kind::Expired,
            Stage::Leaked => Kind::Leaked,
            Stage::Revoked => Kind::Revoked,
            Stage::SelfRotated => Kind::TokenSelfRotated,
        }
    }

    /// How long before the expiry an expiry stage falls due.
    pub fn before_expiry(self) -> Option<SignedDuration> {
        match self {
            Stage::SevenDays => Some(SignedDuration::from_hours(7 * 24)),
            Stage::OneDay => Some(SignedDuration::from_hours(24)),
            Stage::Expired => Some(SignedDuration::ZERO),
            Stage::Leaked | Stage::Revoked | Stage::SelfRotated => None,
        }
    }

    /// When an expiry stage falls due for a token expiring at `expires_at`.
    pub fn due_at(self, expires_at: Timestamp) -> Option<Timestamp> {
        expires_at.checked_sub(self.before_expiry()?).ok()
    }
}

/// One notification as stored (MessagePack with named fields) and shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub id: Ulid,
    pub kind: Kind,
    pub user_id: String,
    pub token_id: Ulid,
    /// When it fell due (an expiry stage) or happened (a revocation).
    pub at: Timestamp,
    /// A short sentence for people: the token's description and what
    /// happened (its expiry, the leak's URL).
    pub detail: String,
    pub read: bool,
}

/// The notification id of a token's stage (or of another once-only thing,
/// named by `what`): a ULID whose time is `at`, so ids sort by time, and
/// whose random part is a hash of the token and `what`, so the same
/// notification gets the same id however often it is made.
pub fn notification_id(token_id: Ulid, what: &[u8], at: Timestamp) -> Ulid {
    let mut h = Sha256::new();
    h.update(token_id.to_bytes());
    h.update(what);
    let digest = h.finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let ms = u64::try_from(at.as_millisecond()).unwrap_or(0);
    Ulid::from_parts(ms, u128::from_be_bytes(random))
}

/// Everything notifications need, opened on the event store's database.
#[derive(Clone)]
pub struct Notifications {
    pub store: NotificationStore,
    pub due: DueIndex,
    pub projection: NotificationProjection,
    /// Whether anything delivers notifications (a webhook, NATS).
    delivery_enabled: bool,
    /// Whether this process hands new notifications to delivery: always
    /// alone, only while it holds the writer lease in a cluster.
    delivers: Arc<OnceLock<enspace_cluster::Role>>,
    /// Wakes delivery when something was queued.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// Set in a cluster: what this process makes alone is shared.
    pub(crate) sharing: Arc<OnceLock<notices::Sharing>>,
}

impl Notifications {
    /// Opens the trees; `delivery_enabled` when a webhook or NATS will take
    /// new notifications (queued only then).
    pub fn open(db: &sled::Db, delivery_enabled: bool) -> Result<Self, StoreError> {
        let store = NotificationStore::open(db)?;
        let due = DueIndex::open(db)?;
        let projection = NotificationProjection::open(db, store.clone(), due.clone())?;
        Ok(Notifications {
            store,
            due,
            projection,
            delivery_enabled,
            delivers: Arc::default(),
            wake: Arc::default(),
            sharing: Arc::default(),
        })
    }

    /// In a cluster, only the writer delivers.
    pub fn join_cluster(&self, role: enspace_cluster::Role) {
        let _ = self.delivers.set(role);
    }

    /// Whether new notifications made here now are to be queued and
    /// delivered: a sink is configured and this process is the writer.
    pub fn delivers_now(&self) -> bool {
        self.delivery_enabled && self.delivers.get().is_none_or(|role| role.is_writer())
    }

    /// After notifications were made from a request-log batch, which is
    /// acknowledged once the caller returns: makes the `made` ones durable
    /// (they must outlive a crash), then wakes delivery and sharing as they
    /// apply; answers `made`.
    pub(crate) fn made_from_batch(
        &self,
        made: usize,
        deliver: bool,
        share: bool,
    ) -> Result<usize, StoreError> {
        if made > 0 {
            self.store.flush()?;
            if deliver {
                self.wake_delivery();
            }
            if share {
                self.wake_sharing();
            }
        }
        Ok(made)
    }

    /// Tells delivery that something was queued.
    pub fn wake_delivery(&self) {
        self.wake.notify_one();
    }
}

/// The short human sentence for an expiry stage: the token's expiry, or,
/// after a rotation, the old token's end of overlap, said as what it is.
pub fn expiry_detail(stage: Stage, entry: &due::DueEntry) -> String {
    let description = &entry.description;
    let at = entry.expires_at.strftime("%Y-%m-%d %H:%M UTC");
    match (entry.replaced_by, stage) {
        (Some(successor), Stage::Expired) => format!(
            "the old token of “{description}” stopped at {at}; it was replaced by {successor}"
        ),
        (Some(successor), _) => format!(
            "the old token of “{description}” stops at {at}; it was replaced by {successor}"
        ),
        (None, Stage::SevenDays) => format!("“{description}” expires in 7 days, at {at}"),
        (None, Stage::OneDay) => format!("“{description}” expires in 1 day, at {at}"),
        (None, _) => format!("“{description}” expired at {at}"),
    }
}

#[cfg(test)]
mod tests;
