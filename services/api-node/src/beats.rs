//! Which of the control plane's heartbeats a node accepts: they are
//! ordered by the sender's term and their sequence in it
//! ([`Heartbeat::order`]), never by the sender's clock alone, so a writer
//! whose clock is behind keeps nodes fresh and a replayed heartbeat is
//! refused. The clock is consulted twice only:
//! - a heartbeat stamped more than [`MAX_AHEAD`] after the node's own clock
//!   is refused (the sender's clock is far ahead, or it is forged);
//! - a heartbeat that does not come after the last one in that order is
//!   still accepted if it is stamped after every heartbeat accepted so far:
//!   a control plane that lost its term (its store, or the lease bucket,
//!   gone) is heard again; an old heartbeat replayed is not.

use std::time::Duration;

use enspace_core::signing::Heartbeat;

/// How far ahead of the node's clock a heartbeat may be stamped.
pub const MAX_AHEAD: Duration = Duration::from_secs(60);

/// Why a heartbeat was refused: the refusal's metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Stamped far after the node's clock.
    Future,
    /// Not after the last one accepted.
    Replayed,
}

impl Refused {
    pub fn label(self) -> &'static str {
        match self {
            Refused::Future => "heartbeat_future",
            Refused::Replayed => "heartbeat_replayed",
        }
    }
}

/// The heartbeats accepted so far.
#[derive(Debug, Default)]
pub struct BeatOrder {
    last: Option<(u64, u64)>,
    latest_at_ms: i64,
}

impl BeatOrder {
    /// Accepts `beat` (received when the node's clock said `now_ms`), or
    /// says why not.
    pub fn admit(&mut self, beat: &Heartbeat, now_ms: i64) -> Result<(), Refused> {
        if beat.at_ms > now_ms.saturating_add(MAX_AHEAD.as_millis() as i64) {
            return Err(Refused::Future);
        }
        let order = beat.order();
        let after = match self.last {
            None => true,
            Some(last) => order > last || beat.at_ms > self.latest_at_ms,
        };
        if !after {
            return Err(Refused::Replayed);
        }
        self.last = Some(order);
        self.latest_at_ms = self.latest_at_ms.max(beat.at_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000_000;

    fn beat(term: u64, beat: u64, at_ms: i64) -> Heartbeat {
        Heartbeat {
            v: Heartbeat::VERSION,
            writer: "tokens".into(),
            seq: 1,
            hash: [1; 32],
            first_hash: [1; 32],
            at_ms,
            key: [0; 32],
            term,
            beat,
        }
    }

    #[test]
    fn heartbeats_follow_term_and_sequence_not_the_senders_clock() {
        let mut order = BeatOrder::default();
        assert_eq!(order.admit(&beat(4, 1, NOW), NOW), Ok(()));
        assert_eq!(
            order.admit(&beat(4, 2, NOW - 3_600_000), NOW),
            Ok(()),
            "clock stepped back"
        );
        assert_eq!(order.admit(&beat(4, 2, NOW), NOW), Err(Refused::Replayed));
        assert_eq!(order.admit(&beat(4, 1, NOW), NOW), Err(Refused::Replayed));
        // A new writer whose clock is an hour behind.
        assert_eq!(order.admit(&beat(5, 1, NOW - 3_600_000), NOW), Ok(()));
        assert_eq!(order.admit(&beat(5, 2, NOW - 3_599_000), NOW), Ok(()));
        // The old writer's heartbeats, replayed: stamped before the latest.
        assert_eq!(
            order.admit(&beat(4, 9, NOW - 1), NOW),
            Err(Refused::Replayed)
        );
    }

    #[test]
    fn a_heartbeat_from_the_far_future_is_refused_and_changes_nothing() {
        let mut order = BeatOrder::default();
        assert_eq!(order.admit(&beat(2, 1, NOW), NOW), Ok(()));
        assert_eq!(
            order.admit(&beat(3, 1, NOW + 86_400_000), NOW),
            Err(Refused::Future)
        );
        assert_eq!(order.admit(&beat(2, 2, NOW + 1_000), NOW), Ok(()));
        assert_eq!(
            order.admit(&beat(2, 3, NOW + 30_000), NOW),
            Ok(()),
            "a little ahead"
        );
    }

    #[test]
    fn a_control_plane_that_lost_its_term_is_heard_again_once_it_stamps_later() {
        let mut order = BeatOrder::default();
        assert_eq!(order.admit(&beat(9, 40, NOW), NOW), Ok(()));
        assert_eq!(order.admit(&beat(1, 1, NOW + 1_000), NOW + 1_000), Ok(()));
        assert_eq!(order.admit(&beat(1, 2, NOW + 2_000), NOW + 2_000), Ok(()));
        // Its term started over at the same number: heard again all the same.
        assert_eq!(order.admit(&beat(1, 1, NOW + 3_000), NOW + 3_000), Ok(()));
        assert_eq!(
            order.admit(&beat(1, 1, NOW + 3_000), NOW + 3_000),
            Err(Refused::Replayed)
        );
        // Version 1 heartbeats (no term) are ordered by their time.
        let mut old = BeatOrder::default();
        assert_eq!(old.admit(&beat(0, 0, NOW), NOW), Ok(()));
        assert_eq!(old.admit(&beat(0, 0, NOW), NOW), Err(Refused::Replayed));
        assert_eq!(old.admit(&beat(0, 0, NOW + 1), NOW), Ok(()));
        assert_eq!(old.admit(&beat(1, 1, NOW - 5), NOW), Ok(()), "then a term");
    }
}
