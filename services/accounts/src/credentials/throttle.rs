//! Unsuccessful sign-ins, remembered over a sliding window (5 minutes) per
//! key, and what they do to the next attempt.
//!
//! A client that presents a valid device cookie for the user it signs in as
//! (see [`super::device`]) is a *known device*: it is judged on its own
//! failures only, so that no one else's keep it out. Once it has
//! `per_device` failures in the window its cookie is locked: it is judged
//! as an unknown client until they age out.
//!
//! Any other client is *unknown*:
//! - per client address: after `per_ip` failures from it, whatever the user
//!   names, its attempts are refused (`429`) until the oldest ages out;
//! - per user name and address: after `per_user_ip` failures for one user
//!   from one address, that address's attempts for that user are refused;
//! - per user name: after `per_user` failures from unknown clients, each
//!   further attempt from an unknown client for it is *slowed*, held back
//!   for a delay that doubles with every further failure up to a cap. It is
//!   never refused: the real user, signing in from a new device while
//!   someone guesses from many addresses, waits but gets in.
//!
//! Successful sign-ins are not counted and reset nothing. Any unsuccessful
//! attempt (a failure, or one turned away because every hashing slot was
//! busy) makes later attempts by that user name or from that address
//! *suspect* for the window (a known device: only its own failures do): in
//! a flood they only get a hashing slot that is free at once, while a clean
//! attempt waits its turn ahead of them.
//!
//! IPv6 addresses count per /64, the block one subscriber usually holds.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::device::DeviceId;
use crate::limits::Limits;

/// After this many recorded attempts, keys with nothing in the window go.
const PRUNE_EVERY: usize = 1024;
/// Failures per user name remembered beyond `per_user`: enough for the
/// delay to reach any cap.
const DELAY_STEPS: usize = 32;

/// Which limit refused an attempt, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttled {
    pub by: Refusal,
    /// Seconds until an attempt may pass the checks again (at least 1).
    pub retry_after_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failures from this address.
    Address,
    /// Too many failures for this user name from this address.
    UserAtAddress,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Address => "address",
            Refusal::UserAtAddress => "user name from this address",
        }
    }
}

/// Whether an attempt waits its turn for a hashing slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No recent unsuccessful attempt by this user name or from this address
    /// (a known device: by this device): waits for a hashing slot.
    Clean,
    /// Recent unsuccessful attempts: takes a hashing slot only if one is
    /// free at once.
    Suspect,
}

/// One attempt: who it signs in as, from where, with which device cookie.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub user: &'a str,
    pub ip: Option<IpAddr>,
    /// The device cookie it presented, valid for `user`.
    pub device: Option<DeviceId>,
}

/// What an attempt that is not refused may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    pub standing: Standing,
    /// A known device (its cookie valid and not locked).
    pub known_device: bool,
    /// How long to hold it back before its password is checked.
    pub delay: Duration,
}

/// One key's recent history.
#[derive(Default)]
struct Entry {
    /// Failures in the window, oldest first, at most the limit kept.
    failures: VecDeque<Timestamp>,
    /// The last unsuccessful attempt of any kind.
    last_unsuccessful: Option<Timestamp>,
}

impl Entry {
    /// Drops failures at or before `since`; answers how many remain.
    fn count(&mut self, since: Timestamp) -> usize {
        while self.failures.front().is_some_and(|t| *t <= since) {
            self.failures.pop_front();
        }
        self.failures.len()
    }

    /// The wait until fewer than `limit` failures remain in the window, if
    /// `limit` of them are there now.
    fn wait(
        &mut self,
        limit: usize,
        window: SignedDuration,
        now: Timestamp,
    ) -> Option<SignedDuration> {
        let since = now.checked_sub(window).unwrap_or(Timestamp::MIN);
        let count = self.count(since);
        if count < limit {
            return None;
        }
        // The failure whose ageing out brings the count under the limit.
        let at = self.failures.get(count - limit).copied().unwrap_or(now);
        Some(at.checked_add(window).unwrap_or(now).duration_since(now))
    }

    fn suspect(&self, since: Timestamp) -> bool {
        self.last_unsuccessful.is_some_and(|t| t > since)
    }

    fn record(&mut self, now: Timestamp, failure: bool, keep: usize) {
        self.last_unsuccessful = Some(now);
        if failure {
            self.failures.push_back(now);
            while self.failures.len() > keep.max(1) {
                self.failures.pop_front();
            }
        }
    }
}

#[derive(Default)]
struct Windows {
    /// Failures of unknown clients per user name.
    users: HashMap<String, Entry>,
    ips: HashMap<IpAddr, Entry>,
    user_ips: HashMap<(String, IpAddr), Entry>,
    devices: HashMap<DeviceId, Entry>,
    recorded: usize,
}

pub struct SignInThrottle {
    per_user: usize,
    per_user_ip: usize,
    per_ip: usize,
    per_device: usize,
    window: SignedDuration,
    first_delay: Duration,
    max_delay: Duration,
    windows: Mutex<Windows>,
}

/// The key an address counts under: IPv4 as is (also when mapped into
/// IPv6), IPv6 by its /64.
pub fn ip_key(ip: IpAddr) -> IpAddr {
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

fn whole_seconds(wait: SignedDuration) -> u64 {
    wait.unsigned_abs()
        .as_millis()
        .div_ceil(1000)
        .try_into()
        .unwrap_or(u64::MAX)
        .max(1)
}

impl SignInThrottle {
    pub fn new(limits: &Limits) -> Self {
        SignInThrottle {
            per_user: limits.failed_sign_ins_per_user,
            per_user_ip: limits.failed_sign_ins_per_user_ip,
            per_ip: limits.failed_sign_ins_per_ip,
            per_device: limits.failed_sign_ins_per_device,
            window: limits.sign_in_window,
            first_delay: limits.sign_in_first_delay,
            max_delay: limits.sign_in_max_delay,
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

    /// The hold-back after `failures` failures of unknown clients for one
    /// user name: none below `per_user`, then the first delay, doubled with
    /// each further failure, up to the cap.
    fn delay(&self, failures: usize) -> Duration {
        let Some(beyond) = failures.checked_sub(self.per_user) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(beyond.min(31) as u32).unwrap_or(u32::MAX);
        self.first_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Whether `attempt` may be tried at `now`, and how.
    pub fn check(&self, attempt: &Attempt<'_>, now: Timestamp) -> Result<Admission, Throttled> {
        let since = self.since(now);
        let mut windows = self.lock();
        let windows = &mut *windows;
        if let Some(device) = attempt.device {
            let (count, suspect) = match windows.devices.get_mut(&device) {
                Some(e) => (e.count(since), e.suspect(since)),
                None => (0, false),
            };
            if count < self.per_device {
                return Ok(Admission {
                    standing: if suspect {
                        Standing::Suspect
                    } else {
                        Standing::Clean
                    },
                    known_device: true,
                    delay: Duration::ZERO,
                });
            }
        }
        let ip = attempt.ip.map(ip_key);
        let ip_entry = ip.and_then(|ip| windows.ips.get_mut(&ip));
        let suspect_ip = ip_entry.as_ref().is_some_and(|e| e.suspect(since));
        let by_ip = ip_entry.and_then(|e| e.wait(self.per_ip, self.window, now));
        let by_user_ip = ip
            .and_then(|ip| windows.user_ips.get_mut(&(attempt.user.to_owned(), ip)))
            .and_then(|e| e.wait(self.per_user_ip, self.window, now));
        let refusal = [
            (Refusal::Address, by_ip),
            (Refusal::UserAtAddress, by_user_ip),
        ]
        .into_iter()
        .filter_map(|(by, wait)| Some((by, wait?)))
        .max_by_key(|(_, wait)| *wait);
        if let Some((by, wait)) = refusal {
            return Err(Throttled {
                by,
                retry_after_secs: whole_seconds(wait),
            });
        }
        let (failures, suspect_user) = match windows.users.get_mut(attempt.user) {
            Some(e) => (e.count(since), e.suspect(since)),
            None => (0, false),
        };
        Ok(Admission {
            standing: if suspect_user || suspect_ip {
                Standing::Suspect
            } else {
                Standing::Clean
            },
            known_device: false,
            delay: self.delay(failures),
        })
    }

    /// Remembers a failed sign-in (wrong user name or password).
    pub fn record_failure(&self, attempt: &Attempt<'_>, admitted: &Admission, now: Timestamp) {
        self.record(attempt, admitted, now, true);
    }

    /// Remembers a sign-in turned away because no hashing slot was free.
    pub fn record_busy(&self, attempt: &Attempt<'_>, admitted: &Admission, now: Timestamp) {
        self.record(attempt, admitted, now, false);
    }

    fn record(&self, attempt: &Attempt<'_>, admitted: &Admission, now: Timestamp, failure: bool) {
        let mut windows = self.lock();
        // A known device turned away by a flood of others did nothing
        // wrong: only its failures make it suspect, or it would be kept
        // out by the flood it could not get past once.
        if let Some(device) = attempt.device
            && (failure || !admitted.known_device)
        {
            windows
                .devices
                .entry(device)
                .or_default()
                .record(now, failure, self.per_device);
        }
        if !admitted.known_device {
            match windows.users.get_mut(attempt.user) {
                Some(entry) => entry.record(now, failure, self.per_user + DELAY_STEPS),
                None => {
                    let mut entry = Entry::default();
                    entry.record(now, failure, self.per_user + DELAY_STEPS);
                    windows.users.insert(attempt.user.to_owned(), entry);
                }
            }
            if let Some(ip) = attempt.ip.map(ip_key) {
                windows
                    .ips
                    .entry(ip)
                    .or_default()
                    .record(now, failure, self.per_ip);
                // Only its limit is read from this key: a flood turned away
                // (new user names each time) adds nothing here.
                if failure {
                    windows
                        .user_ips
                        .entry((attempt.user.to_owned(), ip))
                        .or_default()
                        .record(now, failure, self.per_user_ip);
                }
            }
        }
        windows.recorded += 1;
        if windows.recorded >= PRUNE_EVERY {
            windows.recorded = 0;
            let since = self.since(now);
            prune(&mut windows.users, since);
            prune(&mut windows.ips, since);
            prune(&mut windows.user_ips, since);
            prune(&mut windows.devices, since);
        }
    }

    /// User names, addresses, (user name, address) pairs and devices
    /// remembered (for tests).
    pub fn tracked(&self) -> [usize; 4] {
        let w = self.lock();
        [
            w.users.len(),
            w.ips.len(),
            w.user_ips.len(),
            w.devices.len(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttle() -> SignInThrottle {
        SignInThrottle::new(&Limits {
            failed_sign_ins_per_user: 3,
            failed_sign_ins_per_user_ip: 2,
            failed_sign_ins_per_ip: 5,
            failed_sign_ins_per_device: 2,
            sign_in_first_delay: Duration::from_secs(1),
            sign_in_max_delay: Duration::from_secs(5),
            ..Limits::default()
        })
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn ip(n: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n)))
    }

    fn unknown(user: &str, ip: Option<IpAddr>) -> Attempt<'_> {
        Attempt {
            user,
            ip,
            device: None,
        }
    }

    /// Fails `attempt` at `now` as the throttle admitted it.
    fn fail(t: &SignInThrottle, attempt: &Attempt<'_>, now: Timestamp) {
        let admitted = t.check(attempt, now).expect("admitted");
        t.record_failure(attempt, &admitted, now);
    }

    const NOON: &str = "2026-01-01T12:00:00Z";

    #[test]
    fn failures_for_a_user_from_many_addresses_slow_it_down_more_and_more_but_never_refuse() {
        let t = throttle();
        let now = at(NOON);
        for n in 0..3 {
            let admitted = t.check(&unknown("alice", ip(n)), now).expect("admitted");
            assert_eq!(admitted.delay, Duration::ZERO);
            t.record_failure(&unknown("alice", ip(n)), &admitted, now);
        }
        let delays: Vec<Duration> = (3..9)
            .map(|n| {
                let attempt = unknown("alice", ip(n));
                let admitted = t.check(&attempt, now).expect("slowed, not refused");
                t.record_failure(&attempt, &admitted, now);
                admitted.delay
            })
            .collect();
        let secs: Vec<u64> = delays.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5, 5], "doubling up to the cap");
        // Another user name is not slowed; the window passing ends it.
        assert_eq!(
            t.check(&unknown("bob", ip(20)), now).map(|a| a.delay),
            Ok(Duration::ZERO)
        );
        let later = now + SignedDuration::from_mins(5);
        assert_eq!(
            t.check(&unknown("alice", ip(21)), later).map(|a| a.delay),
            Ok(Duration::ZERO)
        );
    }

    #[test]
    fn a_known_device_is_judged_on_its_own_failures_and_locked_after_its_limit() {
        let t = throttle();
        let now = at(NOON);
        // Someone else failed for alice from everywhere, and from the
        // device's own address too.
        for n in 0..20 {
            let attempt = unknown("alice", ip(n / 2));
            if let Ok(admitted) = t.check(&attempt, now) {
                t.record_failure(&attempt, &admitted, now);
            }
        }
        assert!(t.check(&unknown("alice", ip(1)), now).is_err());
        let device = Attempt {
            user: "alice",
            ip: ip(1),
            device: Some([1; 16]),
        };
        assert_eq!(
            t.check(&device, now),
            Ok(Admission {
                standing: Standing::Clean,
                known_device: true,
                delay: Duration::ZERO,
            })
        );
        // Its own failures: suspect after one, locked (an unknown client,
        // here refused for its address) after two.
        fail(&t, &device, now);
        assert_eq!(
            t.check(&device, now).map(|a| (a.standing, a.known_device)),
            Ok((Standing::Suspect, true))
        );
        fail(&t, &device, now);
        assert!(t.check(&device, now).is_err(), "locked: judged as unknown");
        let elsewhere = Attempt {
            ip: ip(99),
            ..device
        };
        let admitted = t.check(&elsewhere, now).expect("slowed, not refused");
        assert!(!admitted.known_device && !admitted.delay.is_zero());
        // Another device of alice's is not affected.
        let other = Attempt {
            device: Some([2; 16]),
            ..device
        };
        assert!(t.check(&other, now).expect("admitted").known_device);
        // The window passing unlocks the device.
        let later = now + SignedDuration::from_mins(5);
        assert!(t.check(&device, later).expect("admitted").known_device);
    }

    #[test]
    fn an_address_is_refused_after_its_limit_for_one_user_or_for_all() {
        let t = throttle();
        let now = at(NOON);
        fail(&t, &unknown("alice", ip(1)), now);
        fail(
            &t,
            &unknown("alice", ip(1)),
            now + SignedDuration::from_secs(60),
        );
        let refused = t
            .check(
                &unknown("alice", ip(1)),
                now + SignedDuration::from_secs(120),
            )
            .expect_err("refused");
        assert_eq!(refused.by, Refusal::UserAtAddress);
        assert_eq!(
            refused.retry_after_secs, 180,
            "until the first is 5 minutes old"
        );
        assert!(
            t.check(&unknown("alice", ip(2)), now).is_ok(),
            "another address"
        );
        assert!(t.check(&unknown("bob", ip(1)), now).is_ok(), "another user");
        for n in 0..3 {
            fail(&t, &unknown(&format!("user{n}"), ip(1)), now);
        }
        let refused = t.check(&unknown("carol", ip(1)), now).expect_err("refused");
        assert_eq!(refused.by, Refusal::Address);
        assert_eq!(refused.retry_after_secs, 300);
    }

    #[test]
    fn a_known_device_turned_away_by_a_flood_stays_clean() {
        let t = throttle();
        let now = at(NOON);
        let device = Attempt {
            user: "bob",
            ip: ip(1),
            device: Some([3; 16]),
        };
        for _ in 0..5 {
            let admitted = t.check(&device, now).expect("admitted");
            t.record_busy(&device, &admitted, now);
        }
        assert_eq!(
            t.check(&device, now).map(|a| a.standing),
            Ok(Standing::Clean)
        );
        fail(&t, &device, now);
        assert_eq!(
            t.check(&device, now).map(|a| a.standing),
            Ok(Standing::Suspect)
        );
    }

    #[test]
    fn turned_away_attempts_make_suspects_but_never_reach_a_limit() {
        let t = throttle();
        let now = at(NOON);
        for _ in 0..20 {
            let attempt = unknown("alice", ip(1));
            let admitted = t.check(&attempt, now).expect("admitted");
            t.record_busy(&attempt, &admitted, now);
        }
        let standing = |user, ip| {
            t.check(&unknown(user, ip), now)
                .map(|a| (a.standing, a.delay))
        };
        assert_eq!(
            standing("alice", None),
            Ok((Standing::Suspect, Duration::ZERO))
        );
        assert_eq!(
            standing("bob", ip(1)),
            Ok((Standing::Suspect, Duration::ZERO))
        );
        assert_eq!(standing("bob", None), Ok((Standing::Clean, Duration::ZERO)));
    }

    #[test]
    fn ipv6_addresses_count_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(ip_key(a), ip_key(b));
        assert_ne!(ip_key(a), ip_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(Some(ip_key(mapped)), ip(1));
    }

    #[test]
    fn keys_with_nothing_in_the_window_are_forgotten() {
        let t = throttle();
        let start = at(NOON);
        for n in 0..PRUNE_EVERY {
            let user = format!("user{n}");
            fail(&t, &unknown(&user, ip((n % 250) as u8)), start);
        }
        assert_eq!(t.tracked()[0], PRUNE_EVERY);
        let later = start + SignedDuration::from_hours(1);
        for n in 0..PRUNE_EVERY {
            let attempt = unknown("late", None);
            let now = later + SignedDuration::from_millis(n as i64);
            let admitted = t.check(&attempt, now).expect("admitted");
            t.record_busy(&attempt, &admitted, now);
        }
        assert_eq!(t.tracked(), [1, 0, 0, 0]);
    }
}
