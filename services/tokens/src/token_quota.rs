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
use enspace_core::fold::Change;
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
    /// Where what each event did is read, and each user's tokens.
    projections: Projections,
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
    /// The quota of a log whose last event is `head`, folded into
    /// `projections`.
    pub fn new(max: usize, head: u64, projections: Projections) -> Self {
        TokenQuota {
            max,
            users: Arc::new(Mutex::new(Users::default())),
            folded: Arc::new(AtomicU64::new(head)),
            projections,
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
    pub fn reserve(&self, user: &str, now: Timestamp) -> Result<Reservation, QuotaError> {
        self.reserve_ending(user, now, 0)
    }

    /// A place for a rotation's successor: like [`reserve`](Self::reserve),
    /// but when the rotated token ends at once (no overlap) it frees its
    /// place, so a user at the cap can still rotate.
    pub fn reserve_successor(
        &self,
        user: &str,
        now: Timestamp,
        ends_at_once: bool,
    ) -> Result<Reservation, QuotaError> {
        self.reserve_ending(user, now, usize::from(ends_at_once))
    }

    /// A place for one more token while `ending` of the active ones end
    /// with its creation.
    fn reserve_ending(
        &self,
        user: &str,
        now: Timestamp,
        ending: usize,
    ) -> Result<Reservation, QuotaError> {
        let mut users = self.lock();
        if !users.0.contains_key(user) {
            let mut loaded = UserTokens::default();
            for view in self.projections.tokens_of_user(user)? {
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
    /// and forgets revoked ones, for users whose tokens have been read:
    /// what each event did as the token projections decided it (an event
    /// the fold rules ignored counts for nothing). Folded and moved past
    /// under the lock, so that a group is counted once.
    fn observe(&self, events: &[EventEnvelope]) -> Result<(), StoreError> {
        let mut users = self.lock();
        let folded = self.folded.load(Ordering::Acquire);
        let changes = self.projections.changes(events, folded)?;
        for (envelope, change) in &changes {
            let token_id = envelope.token_id;
            match change {
                // A decoy never counts (it reserved no place either).
                Change::Create { created, .. } if created.decoy => {}
                Change::Create { created, .. } => {
                    if let Some(user) = users.0.get_mut(&created.user_id) {
                        user.reserved = user.reserved.saturating_sub(1);
                        user.live.insert(token_id, created.expires_at);
                    }
                }
                Change::Revoke { revoked, .. } => {
                    if let Some(user) = users.0.get_mut(&revoked.user_id) {
                        user.live.remove(&token_id);
                    }
                }
                Change::Rotate { rotated, .. } => {
                    if let Some(user) = users.0.get_mut(&rotated.user_id)
                        && let Some(expires_at) = user.live.get_mut(&token_id)
                    {
                        *expires_at =
                            Some(enspace_core::fold::earlier(*expires_at, rotated.expires_at));
                    }
                }
                Change::Workspace(_) | Change::Nothing => {}
            }
        }
        if let Some(last) = events.last() {
            self.folded.fetch_max(last.seq, Ordering::AcqRel);
        }
        Ok(())
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
        self.observe(events)
    }

    /// Forgets every user: each is read from the projections again at their
    /// next creation.
    fn reset(&self) -> Result<(), StoreError> {
        self.lock().0.clear();
        self.folded.store(0, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use enspace_core::events::TokenRotated;
    use enspace_core::fixtures::{created, revoked};
    use enspace_core::projection::Projection;
    use enspace_core::{SecretHash, TokenEvent};
    use jiff::SignedDuration;

    use super::*;

    fn hash(n: u8) -> SecretHash {
        SecretHash([n; 32])
    }

    /// A rotation of `token_id` naming `hash`, ending it at `expires_at`.
    fn rotated(
        seq: u64,
        token_id: Ulid,
        hash: &SecretHash,
        expires_at: Timestamp,
    ) -> EventEnvelope {
        EventEnvelope {
            event: TokenEvent::TokenRotated(TokenRotated {
                user_id: "alice".into(),
                secret_hash: hash.to_hex(),
                replaced_by: Ulid::new(),
                expires_at,
                self_rotated: false,
            }),
            ..revoked(seq, token_id, hash)
        }
    }

    /// Alice's tokens 1, 2 and 3, and a time an hour ago.
    fn three() -> ([EventEnvelope; 3], Timestamp) {
        let past = Timestamp::now() - SignedDuration::from_hours(1);
        ([1, 2, 3].map(|n| created(n.into(), &hash(n)).build()), past)
    }

    /// Alice's active tokens once the quota (her tokens read before any
    /// event) folds `log`, both ways: each event just after the token
    /// projections folded it, and all of it with the projections already
    /// at the end of the log (a catch-up).
    fn active_after(log: &[EventEnvelope]) -> [usize; 2] {
        let now = Timestamp::now();
        [false, true].map(|catching_up| {
            let db = sled::Config::new().temporary(true).open().expect("sled");
            let projections = Projections::open(&db).expect("projections");
            let quota = TokenQuota::new(100, 0, projections.clone());
            drop(quota.reserve("alice", now).expect("reserve"));
            if catching_up {
                projections.apply(log).expect("projections");
                quota.apply(log).expect("quota");
            } else {
                for e in log {
                    projections
                        .apply(std::slice::from_ref(e))
                        .expect("projections");
                    quota.apply(std::slice::from_ref(e)).expect("quota");
                }
            }
            quota
                .lock()
                .0
                .get_mut("alice")
                .map_or(0, |user| user.active(now))
        })
    }

    #[test]
    fn a_creation_takes_a_place_a_revocation_or_an_ended_rotation_frees_it() {
        let ([a, b, c], past) = three();
        let log = [
            a.clone(),
            b.clone(),
            c,
            revoked(4, a.token_id, &hash(1)),
            rotated(5, b.token_id, &hash(2), past),
        ];
        assert_eq!(active_after(&log), [1, 1]);
    }

    #[test]
    fn a_second_creation_of_an_id_or_of_a_hash_takes_no_place() {
        let a = created(1, &hash(1)).build();
        let log = [
            a.clone(),
            revoked(2, a.token_id, &hash(1)),
            // The same id again, with a new hash: the first creation won.
            created(3, &hash(2)).token_id(a.token_id).build(),
            // Another id with a hash already held.
            created(4, &hash(1)).build(),
        ];
        assert_eq!(active_after(&log), [0, 0]);
    }

    #[test]
    fn a_revocation_naming_another_token_s_hash_frees_no_place() {
        let (a, b) = (created(1, &hash(1)).build(), created(2, &hash(2)).build());
        let log = [a, b.clone(), revoked(3, b.token_id, &hash(1))];
        assert_eq!(active_after(&log), [2, 2]);
    }

    #[test]
    fn a_rotation_of_a_revoked_token_or_naming_another_hash_ends_nothing() {
        let ([a, b, c], past) = three();
        let log = [
            a.clone(),
            b.clone(),
            c.clone(),
            revoked(4, c.token_id, &hash(3)),
            rotated(5, c.token_id, &hash(3), past),
            // `b` names `a`'s hash: neither ends.
            rotated(6, b.token_id, &hash(1), past),
        ];
        assert_eq!(active_after(&log), [2, 2]);
    }
}
