//! The cap on a user's active tokens (neither revoked nor expired); decoys
//! never count.
//!
//! Counted exactly even while one user creates many tokens at once: a
//! creation first reserves a place (under one lock, with the user's count),
//! and each committed group, fed by the projection runner
//! (`enspace_core::projection`), turns the reservation into a live token or
//! drops a revoked one, whichever way the change was made (the API, the
//! membership reconciliation, anything later). Each user's tokens are read
//! from the projection once, at their first creation since start-up; the
//! count then lives in memory, a few dozen bytes per active token.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use enspace_core::EventEnvelope;
use enspace_core::events::TokenEventRef;
use jiff::Timestamp;
use ulid::Ulid;

use enspace_store::{Projections, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    #[error("the user holds {0} active tokens, the most allowed")]
    LimitReached(usize),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Default)]
struct UserTokens {
    /// Tokens not revoked, with their expiry (`None`: never).
    live: HashMap<Ulid, Option<Timestamp>>,
    /// Creations reserved and not yet committed or abandoned.
    reserved: usize,
}

impl UserTokens {
    /// Active tokens at `now`, forgetting the ones that have expired.
    fn active(&mut self, now: Timestamp) -> usize {
        self.live
            .retain(|_, expires_at| expires_at.is_none_or(|at| at > now));
        self.live.len() + self.reserved
    }
}

#[derive(Default)]
struct Users(HashMap<String, UserTokens>);

/// Shared by every request; cheap to clone.
#[derive(Clone)]
pub struct TokenQuota {
    max: usize,
    users: Arc<Mutex<Users>>,
    /// The last event folded in: the log's head at start (a user's tokens
    /// are read from the projections, which hold every event before), then
    /// each committed group's last.
    folded: Arc<AtomicU64>,
}

/// A place for one more token, held until the creation is committed (the
/// commit hook takes it over) or abandoned (dropped without `commit`).
pub struct Reservation {
    quota: TokenQuota,
    user: String,
    committed: bool,
}

impl Reservation {
    /// The creation was recorded: its commit already counted the token.
    pub fn commit(mut self) {
        self.committed = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.committed
            && let Some(user) = self.quota.lock().0.get_mut(&self.user)
        {
            user.reserved = user.reserved.saturating_sub(1);
        }
    }
}

impl TokenQuota {
    /// The quota of a log whose last event is `head`.
    pub fn new(max: usize, head: u64) -> Self {
        TokenQuota {
            max,
            users: Arc::new(Mutex::new(Users::default())),
            folded: Arc::new(AtomicU64::new(head)),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Users> {
        // Every change under the lock leaves the counts consistent.
        self.users
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for one more active token of `user`, or `LimitReached`.
    pub fn reserve(
        &self,
        user: &str,
        projections: &Projections,
        now: Timestamp,
    ) -> Result<Reservation, QuotaError> {
        self.reserve_ending(user, projections, now, 0)
    }

    /// A place for a rotation's successor: like [`reserve`](Self::reserve),
    /// but when the rotated token ends at once (no overlap) it frees its
    /// place, so a user at the cap can still rotate.
    pub fn reserve_successor(
        &self,
        user: &str,
        projections: &Projections,
        now: Timestamp,
        ends_at_once: bool,
    ) -> Result<Reservation, QuotaError> {
        self.reserve_ending(user, projections, now, usize::from(ends_at_once))
    }

    /// A place for one more token while `ending` of the active ones end
    /// with its creation.
    fn reserve_ending(
        &self,
        user: &str,
        projections: &Projections,
        now: Timestamp,
        ending: usize,
    ) -> Result<Reservation, QuotaError> {
        let mut users = self.lock();
        if !users.0.contains_key(user) {
            let mut loaded = UserTokens::default();
            for view in projections.tokens_of_user(user)? {
                if view.revoked_at.is_none() && !view.decoy {
                    loaded.live.insert(view.id, view.expires_at);
                }
            }
            users.0.insert(user.to_owned(), loaded);
        }
        let tokens = users.0.entry(user.to_owned()).or_default();
        let active = tokens.active(now);
        if active >= self.max + ending {
            return Err(QuotaError::LimitReached(active));
        }
        tokens.reserved += 1;
        Ok(Reservation {
            quota: self.clone(),
            user: user.to_owned(),
            committed: false,
        })
    }

    /// Counts created tokens (taking over a reservation of their owner's)
    /// and forgets revoked ones, for users whose tokens have been read.
    fn observe(&self, events: &[EventEnvelope]) {
        let mut users = self.lock();
        let folded = self.folded.load(Ordering::Acquire);
        for envelope in events.iter().filter(|e| e.seq > folded) {
            let Some((token_id, event)) = envelope.token_event() else {
                continue;
            };
            match event {
                // A decoy never counts (it reserved no place either).
                TokenEventRef::Created(created) if created.decoy => {}
                TokenEventRef::Created(created) => {
                    if let Some(user) = users.0.get_mut(&created.user_id) {
                        user.reserved = user.reserved.saturating_sub(1);
                        user.live.insert(token_id, created.expires_at);
                    }
                }
                TokenEventRef::Revoked(revoked) => {
                    if let Some(user) = users.0.get_mut(&revoked.user_id) {
                        user.live.remove(&token_id);
                    }
                }
                TokenEventRef::Rotated(rotated) => {
                    if let Some(user) = users.0.get_mut(&rotated.user_id)
                        && let Some(expires_at) = user.live.get_mut(&token_id)
                    {
                        *expires_at =
                            Some(enspace_core::fold::earlier(*expires_at, rotated.expires_at));
                    }
                }
            }
        }
    }
}

/// Folded by the projection runner, like every view of the log.
impl enspace_core::projection::Projection for TokenQuota {
    type Error = StoreError;

    fn name(&self) -> &'static str {
        "token_quota"
    }

    fn position(&self) -> Result<u64, StoreError> {
        Ok(self.folded.load(Ordering::Acquire))
    }

    fn apply(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        self.observe(events);
        if let Some(last) = events.last() {
            self.folded.fetch_max(last.seq, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Forgets every user: each is read from the projections again at their
    /// next creation.
    fn reset(&self) -> Result<(), StoreError> {
        self.lock().0.clear();
        self.folded.store(0, Ordering::Release);
        Ok(())
    }
}
