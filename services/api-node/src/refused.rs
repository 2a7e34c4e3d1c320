//! Calls refused before a token was known: no token, a malformed one, a bad
//! checksum, or a well-formed token the replica does not hold. They make no
//! request record (there is no token to file one under, and anyone could
//! fill the stream with them); they are counted instead, per node and hour:
//!
//! - in `/metrics`, `enspace_token_verifications_total{outcome="missing"|
//!   "malformed"|"bad_checksum"|"unknown"}` (one counter per outcome, as
//!   every verification is counted);
//! - in one log line per node and hour that had any, with the count of each
//!   reason, written by the first such call after the hour ends or by the
//!   minute tick of [`RefusedBeforeToken::report_forever`], whichever comes
//!   first.
//!
//! Counting is two relaxed atomic operations on the refused call's path and
//! none on any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use enspace_core::Clock;
use jiff::Timestamp;

use crate::verify::Rejection;

const HOUR_MS: i64 = 3_600_000;
/// No hour counted yet.
const NONE: i64 = i64::MIN;
/// How often a finished hour is looked for when no refused call comes.
const TICK: Duration = Duration::from_secs(60);

/// The reasons counted, in the order of [`HourOfRefusals::counts`].
pub const REASONS: [&str; 4] = ["missing", "malformed", "bad_checksum", "unknown"];

/// The counts of the hour in progress.
pub struct RefusedBeforeToken {
    /// Start of the hour being counted, in ms since the epoch.
    hour_ms: AtomicI64,
    counts: [AtomicU64; REASONS.len()],
}

/// One finished hour's counts, per reason of [`REASONS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourOfRefusals {
    pub hour: Timestamp,
    pub counts: [u64; REASONS.len()],
}

impl HourOfRefusals {
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// One log line for the hour.
    pub fn log(&self, node: &str) {
        let [missing, malformed, bad_checksum, unknown] = self.counts;
        tracing::warn!(
            node,
            hour = %self.hour,
            refused.total = self.total(),
            refused.missing = missing,
            refused.malformed = malformed,
            refused.bad_checksum = bad_checksum,
            refused.unknown = unknown,
            "node {node} refused {} calls before a token was known in the hour from {} \
             (no token {missing}, malformed {malformed}, bad checksum {bad_checksum}, \
             unknown token {unknown}); none of them is a request record",
            self.total(),
            self.hour
        );
    }
}

impl Default for RefusedBeforeToken {
    fn default() -> Self {
        RefusedBeforeToken {
            hour_ms: AtomicI64::new(NONE),
            counts: Default::default(),
        }
    }
}

impl RefusedBeforeToken {
    /// Where `rejection` is counted, if it refuses a call before a token
    /// is known.
    pub fn reason(rejection: &Rejection) -> Option<usize> {
        let outcome = rejection.outcome();
        REASONS.iter().position(|r| *r == outcome)
    }

    /// Counts one refused call at `now_ms`; the finished hour's counts when
    /// this call is the first of a new hour.
    pub fn count(&self, reason: usize, now_ms: i64) -> Option<HourOfRefusals> {
        let finished = self.roll(now_ms);
        if let Some(n) = self.counts.get(reason) {
            n.fetch_add(1, Ordering::Relaxed);
        }
        finished
    }

    /// Starts counting the hour of `now_ms` if that is not the one being
    /// counted; the hour that ended, if it counted any call. Of concurrent
    /// callers, one gets it.
    pub fn roll(&self, now_ms: i64) -> Option<HourOfRefusals> {
        let hour = now_ms - now_ms.rem_euclid(HOUR_MS);
        let current = self.hour_ms.load(Ordering::Relaxed);
        if current == hour
            || self
                .hour_ms
                .compare_exchange(current, hour, Ordering::AcqRel, Ordering::Relaxed)
                .is_err()
        {
            return None;
        }
        let counts = self.counts.each_ref().map(|n| n.swap(0, Ordering::AcqRel));
        let ended = HourOfRefusals {
            hour: Timestamp::from_millisecond(current).ok()?,
            counts,
        };
        (current != NONE && ended.total() > 0).then_some(ended)
    }

    /// Logs each finished hour within a minute of its end, forever, even
    /// when no refused call comes after it.
    pub async fn report_forever(self: Arc<Self>, clock: Arc<dyn Clock>, node: Arc<str>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(hour) = self.roll(clock.now().as_millisecond()) {
                hour.log(&node);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use enspace_core::SecretParseError;

    use super::*;

    const H: i64 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS;

    #[test]
    fn only_refusals_before_a_token_is_known_are_counted() {
        let counted = [
            Rejection::Missing,
            Rejection::Malformed(SecretParseError::BadChecksum),
            Rejection::Unknown,
        ];
        assert!(
            counted
                .iter()
                .all(|r| RefusedBeforeToken::reason(r).is_some())
        );
        for known in [
            Rejection::Revoked,
            Rejection::Expired,
            Rejection::WorkspaceNotAllowed,
        ] {
            assert_eq!(RefusedBeforeToken::reason(&known), None);
        }
    }

    #[test]
    fn each_hour_is_handed_on_once_with_its_counts_per_reason() {
        let refused = RefusedBeforeToken::default();
        assert_eq!(refused.count(0, H + 5), None, "the first hour just began");
        assert_eq!(refused.count(3, H + 6), None);
        assert_eq!(refused.count(3, H + HOUR_MS - 1), None);
        let first = refused.count(2, H + HOUR_MS).expect("the first hour ended");
        assert_eq!(first.hour, Timestamp::from_millisecond(H).expect("ts"));
        assert_eq!(first.counts, [1, 0, 0, 2]);
        assert_eq!(refused.roll(H + HOUR_MS + 10), None, "handed on once");
        // The tick finds the second hour over, with its one call.
        let second = refused.roll(H + 2 * HOUR_MS + 1).expect("the second hour");
        assert_eq!(second.counts, [0, 0, 1, 0]);
        // A quiet hour is not reported.
        assert_eq!(refused.roll(H + 3 * HOUR_MS), None);
    }
}
