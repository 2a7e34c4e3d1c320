//! Checking a user name and password at sign-in, and what guards it: the
//! throttle on failed attempts (per user name and per client address) and
//! the bounded pool that hashes passwords; and what a sign-in leaves behind
//! (log lines and metrics, never the password).

pub mod hashing;
pub mod throttle;

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use enspace_http::error::echoable;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

pub use hashing::{HashError, PasswordHashing};
pub use throttle::{SignInThrottle, Standing, Throttled};

/// The client's address as the connection saw it, when the server records
/// it (`ConnectInfo`); `None` where it does not.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|ci| ci.0.ip()),
        ))
    }
}

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

/// `enspace_sign_ins{outcome="ok"|"failed"|"throttled"|"busy"}`.
#[derive(Clone)]
pub struct SignInMetrics {
    outcomes: Family<Outcome, Counter>,
}

impl SignInMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let outcomes = Family::<Outcome, Counter>::default();
        registry.register(
            "enspace_sign_ins",
            "Sign-in attempts by outcome: ok, failed (wrong user name or password), throttled (too many failures), busy (no password hashing slot in time)",
            outcomes.clone(),
        );
        SignInMetrics { outcomes }
    }

    pub fn count(&self, outcome: &'static str) {
        self.outcomes.get_or_create(&Outcome { outcome }).inc();
    }
}

/// Everything a sign-in goes through, shared by every request.
pub struct SignInGuard {
    pub throttle: SignInThrottle,
    pub hashing: PasswordHashing,
    pub metrics: SignInMetrics,
}

impl SignInGuard {
    pub fn new(limits: &crate::limits::Limits, metrics: SignInMetrics) -> Self {
        SignInGuard {
            throttle: SignInThrottle::new(limits),
            hashing: PasswordHashing::new(
                limits.password_hashes_at_once,
                limits.password_hash_wait,
            ),
            metrics,
        }
    }
}
