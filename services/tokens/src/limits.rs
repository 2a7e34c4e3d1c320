//! The control plane's limits against abuse, in one place with their
//! defaults: failed sign-ins per user name and per client address, how many
//! password hashes run at once, active tokens and sessions per user, leak
//! reports per client address.

use std::num::NonZeroU32;
use std::time::Duration;

use jiff::SignedDuration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Failed sign-ins for one user name within `sign_in_window`, after
    /// which further attempts for it answer 429 until the oldest ages out.
    pub failed_sign_ins_per_user: usize,
    /// Failed sign-ins from one client address within `sign_in_window`.
    pub failed_sign_ins_per_ip: usize,
    pub sign_in_window: SignedDuration,
    /// Password hashes (argon2id, about 19 MiB and tens of milliseconds of
    /// one core each) computed at once; further sign-ins wait.
    pub password_hashes_at_once: usize,
    /// How long a sign-in waits for a hashing slot before it answers 503.
    pub password_hash_wait: Duration,
    /// Active (neither revoked nor expired) tokens one user may hold.
    pub max_tokens_per_user: usize,
    /// Sessions one user may hold; signing in once more ends the oldest.
    pub max_sessions_per_user: usize,
    /// Leak reports (`POST /v1/tokens/report-leak`) one client address may
    /// send a minute, in bursts of as many; `None`: no limit.
    pub leak_reports_per_minute: Option<NonZeroU32>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            failed_sign_ins_per_user: 10,
            failed_sign_ins_per_ip: 30,
            sign_in_window: SignedDuration::from_mins(5),
            password_hashes_at_once: default_hashes_at_once(),
            password_hash_wait: Duration::from_secs(2),
            max_tokens_per_user: 200,
            max_sessions_per_user: 20,
            leak_reports_per_minute: NonZeroU32::new(10),
        }
    }
}

/// Half the cores (at least one, at most four): hashing never takes every
/// core from the HTTP workers and the API node, however many sign in.
pub fn default_hashes_at_once() -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    (cores / 2).clamp(1, 4)
}
