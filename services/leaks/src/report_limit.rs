//! How many leak reports one client address may send
//! (`--leak-report-limit N/min`): N a minute, in bursts of up to N
//! (governor's GCRA, keyed by address), on the service's clock. IPv6
//! addresses count per /64, as the sign-in throttle counts them. Clients
//! whose address the server does not know share one allowance.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use enspace_core::Clock;
use governor::clock::Clock as GovernorClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use enspace_accounts::credentials::throttle::ip_key;

/// After this many reports, addresses whose allowance is whole again go.
const PRUNE_EVERY: usize = 1024;

/// The service's clock as governor reads it: time since the Unix epoch.
#[derive(Clone)]
struct ServiceClock(Arc<dyn Clock>);

impl GovernorClock for ServiceClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        Duration::try_from(self.0.now().as_duration()).unwrap_or_default()
    }
}

type Limiter =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr>, ServiceClock, NoOpMiddleware<Duration>>;

pub struct LeakReportLimit {
    limiter: Limiter,
    checked: AtomicUsize,
}

impl LeakReportLimit {
    pub fn new(per_minute: NonZeroU32, clock: Arc<dyn Clock>) -> Self {
        LeakReportLimit {
            limiter: RateLimiter::new(
                Quota::per_minute(per_minute),
                DashMapStateStore::default(),
                ServiceClock(clock),
            ),
            checked: AtomicUsize::new(0),
        }
    }

    /// Counts one report from `ip`: `Err(seconds to wait)` once over the limit.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), u64> {
        let key = ip.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), ip_key);
        let outcome = self.limiter.check_key(&key).map_err(|not_until| {
            not_until
                .wait_time_from(self.limiter.clock().now())
                .as_millis()
                .div_ceil(1000)
                .try_into()
                .unwrap_or(u64::MAX)
                .max(1)
        });
        if self.checked.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        outcome
    }

    /// Addresses remembered (for tests).
    pub fn tracked(&self) -> usize {
        self.limiter.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enspace_core::ManualClock;

    fn limit(n: u32) -> (LeakReportLimit, ManualClock) {
        let clock = ManualClock::new("2026-01-01T10:00:00Z".parse().expect("timestamp"));
        let per_minute = NonZeroU32::new(n).expect("non-zero");
        (
            LeakReportLimit::new(per_minute, Arc::new(clock.clone())),
            clock,
        )
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    #[test]
    fn an_address_may_send_its_burst_then_waits_for_the_next_report_to_be_due() {
        let (limit, clock) = limit(10);
        for _ in 0..10 {
            assert_eq!(limit.check(ip("192.0.2.1")), Ok(()));
        }
        assert_eq!(limit.check(ip("192.0.2.1")), Err(6), "one report every 6 s");
        assert_eq!(limit.check(ip("192.0.2.2")), Ok(()), "another address");
        clock.advance(jiff::SignedDuration::from_secs(6));
        assert_eq!(limit.check(ip("192.0.2.1")), Ok(()));
        assert!(limit.check(ip("192.0.2.1")).is_err());
    }

    #[test]
    fn an_ipv6_64_shares_one_allowance_and_unknown_addresses_share_another() {
        let (limit, _clock) = limit(2);
        assert_eq!(limit.check(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(limit.check(ip("2001:db8:1:2::ffff")), Ok(()));
        assert!(limit.check(ip("2001:db8:1:2::9")).is_err());
        assert_eq!(limit.check(ip("2001:db8:1:3::1")), Ok(()));
        assert_eq!(limit.check(None), Ok(()));
        assert_eq!(limit.check(None), Ok(()));
        assert!(limit.check(None).is_err());
    }
}
