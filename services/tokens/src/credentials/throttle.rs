//! Failed sign-ins, remembered per user name and per client address over a
//! sliding window: once either holds its limit of failures in the window,
//! further attempts are refused (`429`) until the oldest of them ages out.
//! Successful sign-ins are not counted and do not reset anything, so that an
//! attacker's failures are not wiped by the owner signing in.
//!
//! IPv6 addresses count per /64, the block one subscriber usually holds.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::limits::Limits;

/// After this many recorded failures, keys with nothing in the window go.
const PRUNE_EVERY: usize = 1024;

/// Which limit refused an attempt, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub by_user: bool,
    pub by_ip: bool,
    /// Seconds until an attempt may succeed the checks again (at least 1).
    pub retry_after_secs: u64,
}

#[derive(Default)]
struct Windows {
    users: HashMap<String, VecDeque<Timestamp>>,
    ips: HashMap<IpAddr, VecDeque<Timestamp>>,
    recorded: usize,
}

pub struct SignInThrottle {
    per_user: usize,
    per_ip: usize,
    window: SignedDuration,
    windows: Mutex<Windows>,
}

/// The key an address counts under: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

/// Drops failures older than the window; the wait until the oldest that
/// remains ages out, if `limit` of them remain.
fn wait(
    failures: &mut VecDeque<Timestamp>,
    limit: usize,
    window: SignedDuration,
    now: Timestamp,
) -> Option<SignedDuration> {
    let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
    while failures.front().is_some_and(|t| *t <= since) {
        failures.pop_front();
    }
    if failures.len() < limit {
        return None;
    }
    let oldest = failures.front().copied().unwrap_or(now);
    Some(
        oldest
            .checked_add(window)
            .unwrap_or(now)
            .duration_since(now),
    )
}

fn record(failures: &mut VecDeque<Timestamp>, limit: usize, now: Timestamp) {
    failures.push_back(now);
    while failures.len() > limit.max(1) {
        failures.pop_front();
    }
}

impl SignInThrottle {
    pub fn new(limits: &Limits) -> Self {
        SignInThrottle {
            per_user: limits.failed_sign_ins_per_user,
            per_ip: limits.failed_sign_ins_per_ip,
            window: limits.sign_in_window,
            windows: Mutex::new(Windows::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Windows> {
        // Every change under the lock leaves the maps consistent.
        self.windows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a sign-in as `user` from `ip` may be tried at `now`.
    pub fn check(&self, user: &str, ip: Option<IpAddr>, now: Timestamp) -> Result<(), Throttled> {
        let mut windows = self.lock();
        let by_user = windows
            .users
            .get_mut(user)
            .and_then(|f| wait(f, self.per_user, self.window, now));
        let by_ip = ip.and_then(|ip| {
            windows
                .ips
                .get_mut(&ip_key(ip))
                .and_then(|f| wait(f, self.per_ip, self.window, now))
        });
        match by_user.into_iter().chain(by_ip).max() {
            None => Ok(()),
            Some(longest) => Err(Throttled {
                by_user: by_user.is_some(),
                by_ip: by_ip.is_some(),
                retry_after_secs: longest
                    .unsigned_abs()
                    .as_millis()
                    .div_ceil(1000)
                    .try_into()
                    .unwrap_or(u64::MAX)
                    .max(1),
            }),
        }
    }

    /// Remembers a failed sign-in as `user` from `ip`.
    pub fn record_failure(&self, user: &str, ip: Option<IpAddr>, now: Timestamp) {
        let mut windows = self.lock();
        match windows.users.get_mut(user) {
            Some(failures) => record(failures, self.per_user, now),
            None => {
                let mut failures = VecDeque::new();
                record(&mut failures, self.per_user, now);
                windows.users.insert(user.to_owned(), failures);
            }
        }
        if let Some(ip) = ip {
            let failures = windows.ips.entry(ip_key(ip)).or_default();
            record(failures, self.per_ip, now);
        }
        windows.recorded += 1;
        if windows.recorded >= PRUNE_EVERY {
            windows.recorded = 0;
            let since = now.checked_sub(self.window).unwrap_or(Timestamp::MIN);
            windows
                .users
                .retain(|_, f| f.back().is_some_and(|t| *t > since));
            windows
                .ips
                .retain(|_, f| f.back().is_some_and(|t| *t > since));
        }
    }

    /// User names and addresses remembered (for tests and metrics).
    pub fn tracked(&self) -> (usize, usize) {
        let windows = self.lock();
        (windows.users.len(), windows.ips.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> SignInThrottle {
        SignInThrottle::new(&Limits {
            failed_sign_ins_per_user: 3,
            failed_sign_ins_per_ip: 5,
            ..Limits::default()
        })
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn the_limit_of_failures_per_user_refuses_until_the_oldest_ages_out() {
        let t = throttle();
        for s in ["10:00:00", "10:01:00", "10:02:00"] {
            assert!(
                t.check("alice", None, at(&format!("2026-01-01T{s}Z")))
                    .is_ok()
            );
            t.record_failure("alice", None, at(&format!("2026-01-01T{s}Z")));
        }
        let refused = t
            .check("alice", None, at("2026-01-01T10:03:00Z"))
            .expect_err("throttled");
        assert!(refused.by_user && !refused.by_ip);
        assert_eq!(refused.retry_after_secs, 120);
        assert!(t.check("bob", None, at("2026-01-01T10:03:00Z")).is_ok());
        assert!(t.check("alice", None, at("2026-01-01T10:05:00Z")).is_ok());
    }

    #[test]
    fn an_address_is_refused_after_its_limit_whatever_the_user_names() {
        let t = throttle();
        let now = at("2026-01-01T10:00:00Z");
        for n in 0..5 {
            t.record_failure(&format!("user{n}"), IP, now);
        }
        let refused = t.check("someone-else", IP, now).expect_err("throttled");
        assert!(refused.by_ip && !refused.by_user);
        assert_eq!(refused.retry_after_secs, 300);
        let other = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2)));
        assert!(t.check("someone-else", other, now).is_ok());
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(ip_key(mapped), IP.expect("ip"));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t = throttle();
        for n in 0..PRUNE_EVERY {
            t.record_failure(&format!("user{n}"), IP, at("2026-01-01T10:00:00Z"));
        }
        t.record_failure("late", IP, at("2026-01-01T11:00:00Z"));
        assert_eq!(t.tracked().0, PRUNE_EVERY + 1);
        for n in 0..PRUNE_EVERY {
            t.record_failure(
                "late",
                None,
                at("2026-01-01T11:00:00Z") + SignedDuration::from_millis(n as i64),
            );
        }
        assert_eq!(t.tracked(), (1, 1));
    }
}
