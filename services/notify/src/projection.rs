//! The fold of token events into the due index and the notifications that
//! events make at once (`leaked`, `revoked`, `token_self_rotated`). It
//! remembers the last `seq` folded (`notifications_meta`), so it is
//! resumable; folding an event again changes nothing (its notifications are
//! made once), so it can be rebuilt from the log at any time.
//!
//! Each group's changes to the due index and the new `last_seq` are one sled
//! transaction; the notifications it makes are written before it, so a
//! crash between the two folds the group again and makes nothing twice.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use enspace_core::EventEnvelope;
use enspace_core::fold::Change;
use enspace_core::token::RevokeReason;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};
use ulid::Ulid;

use super::due::{DueEntry, due_key, key_ms, token_key};
use super::{DueIndex, Kind, Notification, NotificationStore, Stage, notification_id};
use enspace_store::{Projections, StoreError};

const LAST_SEQ: &[u8] = b"last_seq";

#[derive(Clone)]
pub struct NotificationProjection {
    meta: sled::Tree,
    due: DueIndex,
    store: NotificationStore,
    /// One fold at a time: the writer's hook and a catch-up.
    folding: Arc<Mutex<()>>,
}

/// What a group does to a token's expiry stages: put them at an expiry, or
/// take them out.
type Plan = HashMap<Ulid, Option<DueEntry>>;

fn revoked_notification(
    envelope: &EventEnvelope,
    user_id: &str,
    reason: RevokeReason,
    url: Option<&str>,
    description: &str,
) -> Option<(Notification, Stage)> {
    let (stage, detail) = match reason {
        RevokeReason::Leaked => (
            Stage::Leaked,
            match url {
                // Recorded URLs follow the leak URL rules; one recorded
                // before they refused characters that hide or reorder text
                // is left out rather than shown.
                Some(url) if url.chars().any(enspace_core::text::hides_or_reorders) => format!(
                    "“{description}” was reported as leaked and revoked (the URL reported with it \
                     is not shown: it holds characters that could disguise it)"
                ),
                Some(url) if enspace_core::leak_url::escapes_a_disguise(url) => format!(
                    "“{description}” was reported as leaked at {url} and revoked (characters in \
                     the URL that could disguise it are shown percent-encoded)"
                ),
                Some(url) => format!("“{description}” was reported as leaked at {url} and revoked"),
                None => format!("“{description}” was reported as leaked and revoked"),
            },
        ),
        RevokeReason::Admin => (
            Stage::Revoked,
            format!("“{description}” was revoked by a workspace administrator"),
        ),
        RevokeReason::MembershipRemoved => (
            Stage::Revoked,
            format!("“{description}” was revoked: you left one of its workspaces"),
        ),
        // The owner's own revocation, and a rotation's, tell the owner nothing new.
        RevokeReason::User | RevokeReason::Rotated => return None,
    };
    let kind: Kind = stage.kind();
    Some((
        Notification {
            id: notification_id(envelope.token_id, &[stage.byte()], envelope.at),
            kind,
            user_id: user_id.to_owned(),
            token_id: envelope.token_id,
            at: envelope.at,
            detail,
            read: false,
        },
        stage,
    ))
}

/// `token_self_rotated`: the token rotated itself; its owner is told which
/// token replaced it and when it stops working.
fn self_rotated_notification(
    envelope: &EventEnvelope,
    rotated: &enspace_core::events::TokenRotated,
    description: &str,
) -> Notification {
    let stops = if rotated.expires_at <= envelope.at {
        "it stopped working at once".to_owned()
    } else {
        format!("it keeps working until {}", rotated.expires_at)
    };
    Notification {
        id: notification_id(envelope.token_id, &[Stage::SelfRotated.byte()], envelope.at),
        kind: Kind::TokenSelfRotated,
        user_id: rotated.user_id.clone(),
        token_id: envelope.token_id,
        at: envelope.at,
        detail: format!(
            "“{description}” rotated itself: its successor is {}; {stops}",
            rotated.replaced_by
        ),
        read: false,
    }
}

impl NotificationProjection {
    pub fn open(
        db: &sled::Db,
        store: NotificationStore,
        due: DueIndex,
    ) -> Result<Self, StoreError> {
        Ok(NotificationProjection {
            meta: db.open_tree("notifications_meta")?,
            due,
            store,
            folding: Arc::default(),
        })
    }

    /// Holds off every fold (the sweep takes it, so that a fold does not
    /// move an entry while it is being told).
    pub(super) fn lock(&self) -> Result<std::sync::MutexGuard<'_, ()>, StoreError> {
        self.folding
            .lock()
            .map_err(|_| StoreError::Corrupt("the notification fold's lock is poisoned".into()))
    }

    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(match self.meta.get(LAST_SEQ)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("notifications last_seq".into()))?,
            ),
            None => 0,
        })
    }

    /// Forgets the due index and what was folded, to fold the log again.
    /// The notifications made stay, and are not made again.
    pub fn rebuild_from_scratch(&self) -> Result<(), StoreError> {
        let _one = self.lock()?;
        self.due.clear()?;
        self.meta.remove(LAST_SEQ)?;
        Ok(())
    }

    /// Folds events in `seq` order; those at or below `last_seq` are skipped.
    pub(super) fn fold(
        &self,
        envelopes: &[EventEnvelope],
        tokens: &Projections,
        deliver: bool,
    ) -> Result<(), StoreError> {
        let already = self.last_seq()?;
        let mut plan = Plan::new();
        let mut last = already;
        // What each event did, as the token projections (folded first)
        // decided it by the shared fold rules: an event those rules ignored
        // (a second creation of an id or a hash, a revocation naming
        // another token's hash, a rotation of a revoked token) tells
        // nothing here either, also on a catch-up long after.
        for (envelope, change) in tokens.changes(envelopes, already)? {
            last = envelope.seq;
            let token_id = envelope.token_id;
            match change {
                Change::Create { created, .. } => {
                    if let Some(expires_at) = created.expires_at {
                        plan.insert(
                            token_id,
                            Some(DueEntry {
                                user_id: created.user_id.clone(),
                                description: created.description.clone(),
                                expires_at,
                                replaced_by: None,
                                since: Some(envelope.at),
                            }),
                        );
                    }
                }
                Change::Revoke { revoked, .. } => {
                    // The token, for its description (no event changes it).
                    let Some(view) = tokens.token(token_id)? else {
                        continue;
                    };
                    plan.insert(token_id, None);
                    if let Some((notification, stage)) = revoked_notification(
                        envelope,
                        &revoked.user_id,
                        revoked.reason,
                        revoked.url.as_deref(),
                        &view.description,
                    ) {
                        self.store.emit(&notification, &[stage.byte()], deliver)?;
                    }
                }
                Change::Rotate { rotated, .. } => {
                    let Some(view) = tokens.token(token_id)? else {
                        continue;
                    };
                    if rotated.self_rotated {
                        let notification =
                            self_rotated_notification(envelope, rotated, &view.description);
                        self.store
                            .emit(&notification, &[Stage::SelfRotated.byte()], deliver)?;
                    }
                    // Its stages move to the new end, if that is earlier.
                    let current = match plan.get(&token_id) {
                        Some(planned) => planned.as_ref().map(|e| e.expires_at),
                        None => self.current_expiry(token_id)?,
                    };
                    let expires_at = match current {
                        Some(at) if at <= rotated.expires_at => continue,
                        _ => rotated.expires_at,
                    };
                    // Revoked since (the projections are ahead on a
                    // catch-up): its revocation, folded next, takes its
                    // stages out; none are put back meanwhile.
                    if view.revoked_at.is_some() && !plan.contains_key(&token_id) {
                        continue;
                    }
                    plan.insert(
                        token_id,
                        Some(DueEntry {
                            user_id: rotated.user_id.clone(),
                            description: view.description,
                            expires_at,
                            // The token's successor: its first rotation's.
                            replaced_by: view.replaced_by.or(Some(rotated.replaced_by)),
                            since: Some(envelope.at),
                        }),
                    );
                }
                // A workspace's event, or one that changed no token.
                Change::Workspace(_) | Change::Nothing => {}
            }
        }
        if last == already {
            return Ok(());
        }
        self.write_plan(&plan, last)
    }

    /// The expiry a token's due entries are for, if it has any left.
    fn current_expiry(&self, token_id: Ulid) -> Result<Option<jiff::Timestamp>, StoreError> {
        for (stage, ms) in self.due.of_token(token_id)? {
            if let Some(value) = self.due.due.get(due_key(ms, token_id, stage))? {
                let entry: DueEntry = rmp_serde::from_slice(&value)
                    .map_err(|_| StoreError::Corrupt("due index entry".into()))?;
                return Ok(Some(entry.expires_at));
            }
        }
        Ok(None)
    }

    /// Moves the planned tokens' due entries and records `last`, atomically.
    fn write_plan(&self, plan: &Plan, last: u64) -> Result<(), StoreError> {
        let mut values: HashMap<Ulid, Vec<u8>> = HashMap::new();
        for (id, entry) in plan {
            if let Some(entry) = entry {
                values.insert(*id, super::store::encode(entry)?);
            }
        }
        (&self.due.due, &self.due.by_token, &self.meta)
            .transaction(|(due, by_token, meta)| {
                for (token_id, entry) in plan {
                    for stage in Stage::EXPIRY {
                        let reverse = token_key(*token_id, stage);
                        if let Some(old) = by_token.remove(&reverse[..])?
                            && let Ok(ms) = <[u8; 8]>::try_from(old.as_ref())
                        {
                            due.remove(&due_key(u64::from_be_bytes(ms), *token_id, stage)[..])?;
                        }
                        let (Some(entry), Some(value)) = (entry, values.get(token_id)) else {
                            continue;
                        };
                        let Some(due_at) = entry.due_at(stage) else {
                            continue;
                        };
                        let ms = key_ms(due_at);
                        due.insert(&due_key(ms, *token_id, stage)[..], value.as_slice())?;
                        by_token.insert(&reverse[..], &ms.to_be_bytes()[..])?;
                    }
                }
                meta.insert(LAST_SEQ, &last.to_be_bytes()[..])?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Sled(e),
            })
    }
}

/// The notification fold as the projection runner feeds it
/// (`enspace_core::projection::Runner`): it reads the token projections,
/// which the writer folds first, inside each commit, and queues what it
/// makes for delivery when this process delivers.
#[derive(Clone)]
pub struct NotificationFold {
    pub notifications: super::Notifications,
    pub tokens: Projections,
}

impl enspace_core::projection::Projection for NotificationFold {
    type Error = StoreError;

    fn name(&self) -> &'static str {
        "notifications"
    }

    fn position(&self) -> Result<u64, StoreError> {
        self.notifications.projection.last_seq()
    }

    fn apply(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        let projection = &self.notifications.projection;
        let deliver = self.notifications.delivers_now();
        {
            let _one = projection.lock()?;
            projection.fold(events, &self.tokens, deliver)?;
        }
        if deliver {
            self.notifications.wake_delivery();
        }
        Ok(())
    }

    fn reset(&self) -> Result<(), StoreError> {
        self.notifications.projection.rebuild_from_scratch()
    }
}
