//! Unsuccessful sign-ins, remembered per user name and per client address
//! over a sliding window.
//!
//! - Failures (a wrong user name or password): once either key holds its
//!   limit of them in the window, further attempts are refused (`429`)
//!   until the oldest ages out. Successful sign-ins are not counted and
//!   reset nothing, so an attacker's failures are not wiped by the owner
//!   signing in.
//! - Any unsuccessful attempt (a failure, or one turned away because every
//!   hashing slot was busy) makes later attempts by that user name or from
//!   that address *suspect* for the window: in a flood they only get a
//!   hashing slot that is free at once, while a clean attempt (someone who
//!   has not been failing) waits its turn ahead of them.
//!
//! IPv6 addresses count per /64, the block one subscriber usually holds.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};

use crate::limits::Limits;

/// After this many recorded attempts, keys with nothing in the window go.
const PRUNE_EVERY: usize = 1024;

/// Which limit refused an attempt, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub by_user: bool,
    pub by_ip: bool,
    /// Seconds until an attempt may pass the checks again (at least 1).
    pub retry_after_secs: u64,
}

/// What an attempt may do, when it is not refused outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No unsuccessful attempt by this user name or from this address in
    /// the window: waits for a hashing slot.
    Clean,
    /// Recent unsuccessful attempts: takes a hashing slot only if one is
    /// free at once.
    Suspect,
}

/// One key's recent history.
#[derive(Default)]
struct Entry {
    /// Failures in the window, oldest first, at most the limit.
    failures: VecDeque<Timestamp>,
    /// The last unsuccessful attempt of any kind.
    last_unsuccessful: Option<Timestamp>,
}

impl Entry {
    /// Drops failures at or before `since`; the wait until the oldest that
    /// remains ages out, if `limit` of them remain.
    fn wait(
        &mut self,
        limit: usize,
        window: SignedDuration,
        now: Timestamp,
    ) -> Option<SignedDuration> {
        let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
        while self.failures.front().is_some_and(|t| *t <= since) {
            self.failures.pop_front();
        }
        if self.failures.len() < limit {
            return None;
        }
        let oldest = self.failures.front().copied().unwrap_or(now);
        Some(
            oldest
                .checked_add(window)
                .unwrap_or(now)
                .duration_since(now),
        )
    }

    fn suspect(&self, since: Timestamp) -> bool {
        self.last_unsuccessful.is_some_and(|t| t > since)
    }

    fn record(&mut self, now: Timestamp, failure: bool, limit: usize) {
        self.last_unsuccessful = Some(now);
        if failure {
            self.failures.push_back(now);
            while self.failures.len() > limit.max(1) {
                self.failures.pop_front();
            }
        }
    }
}

#[derive(Default)]
struct Windows {
    users: HashMap<String, Entry>,
    ips: HashMap<IpAddr, Entry>,
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
pub(crate) fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

fn prune<K: Eq + Hash>(map: &mut HashMap<K, Entry>, since: Timestamp) {
    map.retain(|_, e| e.suspect(since));
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

    fn since(&self, now: Timestamp) -> Timestamp {
        now.checked_sub(self.window).unwrap_or(Timestamp::MIN)
    }

    /// Whether a sign-in as `user` from `ip` may be tried at `now`, and how.
    pub fn check(
        &self,
        user: &str,
        ip: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<Standing, Throttled> {
        let since = self.since(now);
        let mut windows = self.lock();
        let windows = &mut *windows;
        let user_entry = windows.users.get_mut(user);
        let ip_entry = ip.and_then(|ip| windows.ips.get_mut(&ip_key(ip)));
        let suspect = user_entry.as_ref().is_some_and(|e| e.suspect(since))
            || ip_entry.as_ref().is_some_and(|e| e.suspect(since));
        let by_user = user_entry.and_then(|e| e.wait(self.per_user, self.window, now));
        let by_ip = ip_entry.and_then(|e| e.wait(self.per_ip, self.window, now));
        match by_user.into_iter().chain(by_ip).max() {
            None if suspect => Ok(Standing::Suspect),
            None => Ok(Standing::Clean),
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

    /// Remembers a failed sign-in (wrong user name or password).
    pub fn record_failure(&self, user: &str, ip: Option<IpAddr>, now: Timestamp) {
        self.record(user, ip, now, true);
    }

    /// Remembers a sign-in turned away because no hashing slot was free.
    pub fn record_busy(&self, user: &str, ip: Option<IpAddr>, now: Timestamp) {
        self.record(user, ip, now, false);
    }

    fn record(&self, user: &str, ip: Option<IpAddr>, now: Timestamp, failure: bool) {
        let mut windows = self.lock();
        match windows.users.get_mut(user) {
            Some(entry) => entry.record(now, failure, self.per_user),
            None => {
                let mut entry = Entry::default();
                entry.record(now, failure, self.per_user);
                windows.users.insert(user.to_owned(), entry);
            }
        }
        if let Some(ip) = ip {
            windows
                .ips
                .entry(ip_key(ip))
                .or_default()
                .record(now, failure, self.per_ip);
        }
        windows.recorded += 1;
        if windows.recorded >= PRUNE_EVERY {
            windows.recorded = 0;
            let since = self.since(now);
            prune(&mut windows.users, since);
            prune(&mut windows.ips, since);
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
            let now = at(&format!("2026-01-01T{s}Z"));
            assert!(t.check("alice", None, now).is_ok());
            t.record_failure("alice", None, now);
        }
        let refused = t
            .check("alice", None, at("2026-01-01T10:03:00Z"))
            .expect_err("throttled");
        assert!(refused.by_user && !refused.by_ip);
        assert_eq!(refused.retry_after_secs, 120);
        assert_eq!(
            t.check("bob", None, at("2026-01-01T10:03:00Z")),
            Ok(Standing::Clean)
        );
        assert_eq!(
            t.check("alice", None, at("2026-01-01T10:05:00Z")),
            Ok(Standing::Suspect),
            "allowed again, still suspect for the window"
        );
        assert_eq!(
            t.check("alice", None, at("2026-01-01T10:07:01Z")),
            Ok(Standing::Clean)
        );
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
        assert_eq!(t.check("someone-else", other, now), Ok(Standing::Clean));
    }

    #[test]
    fn turned_away_attempts_make_suspects_but_never_reach_the_limit() {
        let t = throttle();
        let now = at("2026-01-01T10:00:00Z");
        for _ in 0..20 {
            t.record_busy("alice", IP, now);
        }
        assert_eq!(t.check("alice", None, now), Ok(Standing::Suspect));
        assert_eq!(t.check("bob", IP, now), Ok(Standing::Suspect));
        assert_eq!(t.check("bob", None, now), Ok(Standing::Clean));
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
    fn keys_with_nothing_in_the_window_are_forgotten() {
        let t = throttle();
        for n in 0..PRUNE_EVERY {
            t.record_failure(&format!("user{n}"), IP, at("2026-01-01T10:00:00Z"));
        }
        t.record_failure("late", IP, at("2026-01-01T11:00:00Z"));
        assert_eq!(t.tracked().0, PRUNE_EVERY + 1);
        for n in 0..PRUNE_EVERY {
            t.record_busy(
                "late",
                None,
                at("2026-01-01T11:00:00Z") + SignedDuration::from_millis(n as i64),
            );
        }
        assert_eq!(t.tracked(), (1, 1));
    }
}
