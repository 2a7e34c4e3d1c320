//! The control plane's limits against abuse, in one place with their
//! defaults: failed sign-ins per client address, per user name and address,
//! per device and per user name (which slows, never refuses), how many
//! password hashes run at once, active tokens and sessions per user, leak
//! reports per client address.

use std::num::NonZeroU32;
use std::time::Duration;

use jiff::SignedDuration;

#[derive(Debug, Clone)]
pub struct Limits {
    /// Failed sign-ins for one user name by clients without its device
    /// cookie within `sign_in_window`, after which each further attempt by
    /// such a client is slowed (never refused).
    pub failed_sign_ins_per_user: usize,
    /// Failed sign-ins for one user name from one client address within
    /// `sign_in_window`, after which that address's attempts for it answer
    /// 429 until the oldest ages out.
    pub failed_sign_ins_per_user_ip: usize,
    /// Failed sign-ins from one client address within `sign_in_window`,
    /// whatever the user names, after which its attempts answer 429.
    pub failed_sign_ins_per_ip: usize,
    /// Failed sign-ins with one device cookie within `sign_in_window`, after
    /// which the cookie counts for nothing until the oldest ages out.
    pub failed_sign_ins_per_device: usize,
    pub sign_in_window: SignedDuration,
    /// The first hold-back of a slowed sign-in; doubled with each further
    /// failure for the user name, up to `sign_in_max_delay`.
    pub sign_in_first_delay: Duration,
    pub sign_in_max_delay: Duration,
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
            failed_sign_ins_per_user_ip: 10,
            failed_sign_ins_per_ip: 30,
            failed_sign_ins_per_device: 10,
            sign_in_window: SignedDuration::from_mins(5),
            sign_in_first_delay: Duration::from_secs(1),
            sign_in_max_delay: Duration::from_secs(16),
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
