//! The expiry sweep: one range scan of the due index up to now. Each entry
//! found is told (once: see [`super::store`]) and taken out of the index, so
//! a sweep with nothing due reads one empty range and writes nothing.
//!
//! A stage whose next stage is due as well (the service was stopped over
//! both) is taken out untold: the owner hears the newest news only, not
//! "expires in 7 days" about a token that expired yesterday.

use std::time::Duration;

use jiff::Timestamp;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::due::{Due, due_key, key_ms, token_key};
use super::{Notification, Notifications, Stage, expiry_detail, notification_id};
use crate::metrics::NotificationMetrics;
use enspace_store::StoreError;

/// Entries read and handled per step, under the fold's lock.
const BATCH: usize = 1000;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Notifications made.
    pub told: usize,
    /// Entries taken out untold: already told (a fold again), or overtaken
    /// by a later stage also due.
    pub dropped: usize,
}

fn overtaken(due: &Due, now: Timestamp) -> bool {
    let next = match due.stage {
        Stage::SevenDays => Stage::OneDay,
        Stage::OneDay => Stage::Expired,
        _ => return false,
    };
    next.due_at(due.entry.expires_at)
        .is_some_and(|at| at <= now)
}

impl Notifications {
    /// Tells everything due at or before `now`; queues what it makes for
    /// delivery when `deliver`.
    pub fn sweep(&self, now: Timestamp, deliver: bool) -> Result<Swept, StoreError> {
        let mut swept = Swept::default();
        let now_ms = key_ms(now);
        loop {
            let _one = self.projection.lock()?;
            let batch = self.due.due_by(now_ms, BATCH)?;
            if batch.is_empty() {
                return Ok(swept);
            }
            for due in &batch {
                let told = !overtaken(due, now) && {
                    // When it fell due, never before the event that set it.
                    let at = Timestamp::from_millisecond(due.due_ms as i64)
                        .unwrap_or(due.entry.expires_at)
                        .max(due.entry.since.unwrap_or(Timestamp::MIN));
                    let notification = Notification {
                        id: notification_id(due.token_id, &[due.stage.byte()], at),
                        kind: due.stage.kind(),
                        user_id: due.entry.user_id.clone(),
                        token_id: due.token_id,
                        at,
                        detail: expiry_detail(due.stage, &due.entry),
                        read: false,
                    };
                    self.store
                        .emit(&notification, &[due.stage.byte()], deliver)?
                };
                if told {
                    swept.told += 1;
                } else {
                    swept.dropped += 1;
                }
                self.take_out(due)?;
            }
        }
    }

    /// Removes a swept entry, and its reverse entry if it still names it.
    fn take_out(&self, due: &Due) -> Result<(), StoreError> {
        let key = due_key(due.due_ms, due.token_id, due.stage);
        let reverse = token_key(due.token_id, due.stage);
        let ms = due.due_ms.to_be_bytes();
        (&self.due.due, &self.due.by_token)
            .transaction(|(tree, by_token)| {
                tree.remove(&key[..])?;
                if by_token
                    .get(&reverse[..])?
                    .is_some_and(|v| v.as_ref() == ms)
                {
                    by_token.remove(&reverse[..])?;
                }
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(|e| match e {
                TransactionError::Abort(e) => e,
                TransactionError::Storage(e) => StoreError::Sled(e),
            })
    }
}

/// Sweeps every `period`, by `clock`, forever.
pub async fn sweep_forever(
    notifications: Notifications,
    clock: std::sync::Arc<dyn enspace_core::Clock>,
    metrics: NotificationMetrics,
    period: Duration,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = clock.now();
        let deliver = notifications.delivers_now();
        let sweeping = notifications.clone();
        let result = tokio::task::spawn_blocking(move || sweeping.sweep(now, deliver)).await;
        metrics.sweeps.inc();
        match result {
            Ok(Ok(swept)) => {
                if swept.told > 0 {
                    metrics.made.inc_by(swept.told as u64);
                    notifications.wake_delivery();
                    tracing::info!(told = swept.told, "told {} notifications", swept.told);
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "the notification sweep failed"),
            Err(e) => tracing::error!(error = %e, "the notification sweep stopped"),
        }
    }
}
