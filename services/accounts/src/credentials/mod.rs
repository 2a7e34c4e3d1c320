//! Checking a user name and password at sign-in, and what guards it: the
//! throttle on failed attempts (per client address, per user name and
//! address, per device; slowing per user name), the device cookies that
//! tell a client that signed in before, and the bounded pool that hashes
//! passwords; and what a sign-in leaves behind (log lines and metrics,
//! never the password).

pub mod device;
pub mod hashing;
pub mod throttle;

use enspace_http::error::echoable;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use device::DeviceCookies;
pub use hashing::{HashError, PasswordHashing};
pub use throttle::{Admission, Attempt, SignInThrottle, Standing, Throttled};

/// A user name as a log line may show it: quoted and escaped, and not at
/// all when it is long or looks like a secret (someone typed a token or a
/// password into the wrong field).
pub fn loggable_user_name(name: &str) -> String {
    if echoable(name) {
        format!("{name:?}")
    } else {
        "(withheld: long or secret-like)".to_owned()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    outcome: &'static str,
}

/// `enspace_sign_ins{outcome="ok"|"failed"|"throttled"|"busy"}` and
/// `enspace_sign_ins_slowed`.
#[derive(Clone)]
pub struct SignInMetrics {
    outcomes: Family<Outcome, Counter>,
    pub slowed: Counter,
}

impl SignInMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let outcomes = Family::<Outcome, Counter>::default();
        registry.register(
            "enspace_sign_ins",
            "Sign-in attempts by outcome: ok, failed (wrong user name or password), throttled (too many failures), busy (no password hashing slot in time)",
            outcomes.clone(),
        );
        let slowed = Counter::default();
        registry.register(
            "enspace_sign_ins_slowed",
            "Sign-in attempts held back because their user name had many recent failures from clients without its device cookie",
            slowed.clone(),
        );
        SignInMetrics { outcomes, slowed }
    }

    pub fn count(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&Outcome { outcome }).inc();
    }
}

/// Everything a sign-in goes through, shared by every request.
pub struct SignInGuard {
    pub throttle: SignInThrottle,
    pub devices: DeviceCookies,
    pub hashing: PasswordHashing,
    pub metrics: SignInMetrics,
}

impl SignInGuard {
    /// `device_secret` keys the device cookies (the event signing key's
    /// seed; random when there is none).
    pub fn new(
        limits: &crate::limits::Limits,
        metrics: SignInMetrics,
        device_secret: Option<&[u8; 32]>,
    ) -> Self {
        SignInGuard {
            throttle: SignInThrottle::new(limits),
            devices: DeviceCookies::new(device_secret),
            hashing: PasswordHashing::new(
                limits.password_hashes_at_once,
                limits.password_hash_wait,
            ),
            metrics,
        }
    }
}
