//! The per-token rate limit of an API node (`--token-rate-limit N/s`):
//! each token may make N calls a second with bursts of 2N (governor's GCRA,
//! keyed by token id), measured on the node's clock. A call over the limit
//! answers `429` `rate_limited` with `Retry-After`. `RateLimit-Policy` and
//! `RateLimit` (the IETF httpapi ratelimit-headers draft:
//! `"per-token";q=2N;w=2` and `"per-token";r=<calls left in the burst>;
//! t=<seconds until it is whole>`) come with a refused call and with every
//! allowed call once half of the burst is used: a client nearing the limit
//! learns it, and the common call far below it costs no header work.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use enspace_core::Clock;
use governor::clock::Clock as GovernorClock;
use governor::middleware::{NoOpMiddleware, StateInformationMiddleware};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ulid::Ulid;

pub const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
pub const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The name the two headers give the policy.
const POLICY: &str = "per-token";
/// How often tokens that have been quiet long enough are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The node's clock as governor reads it: time since the Unix epoch.
#[derive(Clone)]
struct NodeClock(Arc<dyn Clock>);

impl GovernorClock for NodeClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::try_from(self.0.now().as_duration()).unwrap_or_default()
    }
}

type Limiter = RateLimiter<Ulid, DashMapStateStore<Ulid>, NodeClock, StateInformationMiddleware>;

/// What the limit says about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed {
        /// Calls left in the burst after this one.
        remaining: u32,
        /// Seconds until the burst is whole again.
        reset_secs: u64,
    },
    Limited {
        retry_after_secs: u64,
    },
}

pub struct TokenRateLimit {
    limiter: Limiter,
    per_second: u32,
    burst: u32,
    policy: HeaderValue,
}

impl TokenRateLimit {
    pub fn new(per_second: NonZeroU32, clock: Arc<dyn Clock>) -> Self {
        let burst = per_second.saturating_mul(NonZeroU32::MIN.saturating_add(1));
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let limiter: Limiter = RateLimiter::<_, _, _, NoOpMiddleware<Duration>>::new(
            quota,
            DashMapStateStore::default(),
            NodeClock(clock),
        )
        .with_middleware::<StateInformationMiddleware>();
        let policy = HeaderValue::try_from(format!("\"{POLICY}\";q={burst};w=2"))
            .unwrap_or(HeaderValue::from_static("\"per-token\""));
        TokenRateLimit {
            limiter,
            per_second: per_second.get(),
            burst: burst.get(),
            policy,
        }
    }

    /// Counts one call of `token` and says whether it may proceed.
    pub fn check(&self, token: Ulid) -> Decision {
        match self.limiter.check_key(&token) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let used = u64::from(self.burst.saturating_sub(remaining));
                Decision::Allowed {
                    remaining,
                    reset_secs: used.div_ceil(u64::from(self.per_second)),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.limiter.clock().now());
                Decision::Limited {
                    retry_after_secs: wait
                        .as_millis()
                        .div_ceil(1000)
                        .try_into()
                        .unwrap_or(u64::MAX)
                        .max(1),
                }
            }
        }
    }

    /// Adds `RateLimit-Policy` and `RateLimit` for this decision: to a
    /// refused call, and to an allowed one once half the burst is used.
    pub fn describe(&self, decision: Decision, headers: &mut HeaderMap) {
        let (remaining, reset) = match decision {
            Decision::Allowed { remaining, .. } if remaining >= self.burst / 2 => return,
            Decision::Allowed {
                remaining,
                reset_secs,
            } => (remaining, reset_secs),
            Decision::Limited { retry_after_secs } => (0, retry_after_secs),
        };
        headers.insert(RATELIMIT_POLICY, self.policy.clone());
        if let Ok(value) = HeaderValue::try_from(format!("\"{POLICY}\";r={remaining};t={reset}")) {
            headers.insert(RATELIMIT, value);
        }
    }

    /// Forgets, every minute, the tokens whose burst is whole again, so
    /// that memory follows the tokens in use, not every token ever seen.
    pub async fn prune_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enspace_core::ManualClock;

    fn limit(per_second: u32) -> (ManualClock, TokenRateLimit) {
        let clock = ManualClock::new("2026-01-01T00:00:00Z".parse().expect("ts"));
        let limit = TokenRateLimit::new(
            NonZeroU32::new(per_second).expect("non-zero"),
            Arc::new(clock.clone()),
        );
        (clock, limit)
    }

    #[test]
    fn a_token_gets_a_burst_of_twice_its_rate_then_waits() {
        let (clock, limit) = limit(5);
        let token = Ulid::new();
        for n in 0..10u32 {
            assert_eq!(
                limit.check(token),
                Decision::Allowed {
                    remaining: 9 - n,
                    reset_secs: u64::from(n + 1).div_ceil(5),
                }
            );
        }
        assert_eq!(
            limit.check(token),
            Decision::Limited {
                retry_after_secs: 1
            }
        );
        assert!(matches!(limit.check(Ulid::new()), Decision::Allowed { .. }));
        clock.advance(jiff::SignedDuration::from_secs(1));
        for _ in 0..5 {
            assert!(matches!(limit.check(token), Decision::Allowed { .. }));
        }
        assert!(matches!(limit.check(token), Decision::Limited { .. }));
    }

    #[test]
    fn the_headers_follow_the_draft() {
        let (_, limit) = limit(100);
        let token = Ulid::new();
        let mut headers = HeaderMap::new();
        limit.describe(limit.check(token), &mut headers);
        assert!(headers.is_empty(), "none far below the limit");
        for _ in 0..100 {
            limit.check(token);
        }
        limit.describe(limit.check(token), &mut headers);
        assert_eq!(headers[RATELIMIT_POLICY], "\"per-token\";q=200;w=2");
        assert_eq!(headers[RATELIMIT], "\"per-token\";r=98;t=2");
        limit.describe(
            Decision::Limited {
                retry_after_secs: 3,
            },
            &mut headers,
        );
        assert_eq!(headers[RATELIMIT], "\"per-token\";r=0;t=3");
    }
}
