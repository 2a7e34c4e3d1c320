//! How fresh a node's copy of token state is, read by every token call.
//!
//! The copy is usable once it has folded what the stream held when the node
//! started, and, with a staleness bound, only while the control plane's
//! signed heartbeat says it is complete: a heartbeat names the head of the
//! committed log, and the node counts as fresh for `max_staleness` from the
//! moment it received a heartbeat whose head it holds. A node that hears
//! nothing (NATS away, control plane away, a feed that stopped) answers
//! token calls `503 token_state_stale` once that runs out, instead of
//! accepting tokens whose revocation it may have missed.
//!
//! Time here is the monotonic clock, not the injectable one: staleness is
//! about how long the node has been cut off, not about token expiry.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Freshness {
    epoch: Instant,
    max_staleness: Option<Duration>,
    caught_up: AtomicBool,
    /// Milliseconds since `epoch` until which the copy is fresh; 0 before
    /// the first heartbeat.
    fresh_until_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last heartbeat whose head we held.
    fresh_at_ms: AtomicU64,
}

impl Freshness {
    /// `max_staleness: None` serves from the copy however old it is.
    pub fn new(max_staleness: Option<Duration>) -> Self {
        Freshness {
            epoch: Instant::now(),
            max_staleness,
            caught_up: AtomicBool::new(false),
            fresh_until_ms: AtomicU64::new(0),
            fresh_at_ms: AtomicU64::new(0),
        }
    }

    /// A copy fed in-process by the writer itself (`enspace serve` without
    /// NATS): always complete.
    pub fn in_process() -> Self {
        let f = Freshness::new(None);
        f.caught_up.store(true, Ordering::Release);
        f
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    pub fn max_staleness(&self) -> Option<Duration> {
        self.max_staleness
    }

    /// The copy holds everything the stream held at start-up.
    pub fn set_caught_up(&self, caught_up: bool) {
        self.caught_up.store(caught_up, Ordering::Release);
    }

    pub fn caught_up(&self) -> bool {
        self.caught_up.load(Ordering::Acquire)
    }

    /// The copy held the head of a heartbeat received at `received`.
    pub fn confirm(&self, received: Instant) {
        let at = received.saturating_duration_since(self.epoch).as_millis() as u64;
        self.fresh_at_ms.fetch_max(at, Ordering::AcqRel);
        if let Some(max) = self.max_staleness {
            self.fresh_until_ms
                .fetch_max(at + max.as_millis().max(1) as u64, Ordering::AcqRel);
        }
    }

    /// Whether token calls may be answered from the copy now.
    #[inline]
    pub fn usable(&self) -> bool {
        if !self.caught_up() {
            return false;
        }
        match self.max_staleness {
            None => true,
            Some(_) => {
                let until = self.fresh_until_ms.load(Ordering::Acquire);
                until > 0 && self.now_ms() <= until
            }
        }
    }

    /// Seconds since the last heartbeat whose head the copy held (since
    /// start if none).
    pub fn staleness_seconds(&self) -> f64 {
        let fresh_at = self.fresh_at_ms.load(Ordering::Acquire);
        self.now_ms().saturating_sub(fresh_at) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_is_usable_only_once_caught_up_and_confirmed_within_the_bound() {
        let f = Freshness::new(Some(Duration::from_millis(50)));
        assert!(!f.usable());
        f.set_caught_up(true);
        assert!(!f.usable(), "no heartbeat yet");
        f.confirm(Instant::now());
        assert!(f.usable());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!f.usable(), "the bound ran out");
        f.confirm(Instant::now());
        assert!(f.usable());
    }

    #[test]
    fn without_a_bound_a_caught_up_copy_is_always_usable() {
        let f = Freshness::new(None);
        assert!(!f.usable());
        f.set_caught_up(true);
        assert!(f.usable());
        assert!(Freshness::in_process().usable());
    }
}
