//! The publisher's batches awaiting their ack, by the sequence number that
//! ends their reply subject. Sequence numbers grow by one per publish, so
//! the window is a deque from the oldest unanswered one; answered slots
//! are emptied and the front is trimmed past them.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

pub struct Window<T> {
    /// Sequence number of `slots[0]`.
    base: u64,
    slots: VecDeque<Option<(T, Instant)>>,
    /// Slots still holding an item.
    len: usize,
}

impl<T> Window<T> {
    pub fn new() -> Self {
        Window {
            base: 0,
            slots: VecDeque::new(),
            len: 0,
        }
    }

    /// Items awaiting an ack.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Holds a record published at `sent`; returns its sequence number.
    pub fn insert(&mut self, record: T, sent: Instant) -> u64 {
        let seq = self.base + self.slots.len() as u64;
        self.slots.push_back(Some((record, sent)));
        self.len += 1;
        seq
    }

    /// The record published as `seq`, if it is still awaiting its ack.
    pub fn remove(&mut self, seq: u64) -> Option<T> {
        let index = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        let (record, _) = self.slots.get_mut(index)?.take()?;
        self.len -= 1;
        self.trim();
        Some(record)
    }

    /// Takes out every record sent at least `timeout` ago. Slots are in
    /// the order they were sent, so this only looks at the front.
    pub fn expired(&mut self, timeout: Duration) -> Vec<T> {
        let now = Instant::now();
        let mut out = Vec::new();
        while let Some(front) = self.slots.front_mut() {
            match front {
                Some((_, sent)) if now.duration_since(*sent) < timeout => break,
                Some(_) => {
                    if let Some((record, _)) = front.take() {
                        out.push(record);
                        self.len -= 1;
                    }
                }
                None => {}
            }
            self.slots.pop_front();
            self.base += 1;
        }
        out
    }

    fn trim(&mut self) {
        while matches!(self.slots.front(), Some(None)) {
            self.slots.pop_front();
            self.base += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_records::queue::tests::record;

    #[test]
    fn acks_in_any_order_settle_each_record_once() {
        let mut w = Window::new();
        let now = Instant::now();
        let seqs: Vec<u64> = (1..=4).map(|n| w.insert(record(n), now)).collect();
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(w.remove(2).map(|r| r.status), Some(3));
        assert!(w.remove(2).is_none(), "a second ack for the same publish");
        assert_eq!(w.remove(0).map(|r| r.status), Some(1));
        assert_eq!(w.len(), 2);
        assert!(w.remove(99).is_none(), "an ack for nothing sent");
        assert_eq!(w.insert(record(5), now), 4, "sequence numbers never repeat");
    }

    #[test]
    fn only_records_older_than_the_timeout_expire_and_late_acks_are_ignored() {
        let mut w = Window::new();
        let old = Instant::now() - Duration::from_secs(10);
        let a = w.insert(record(1), old);
        let b = w.insert(record(2), old);
        let c = w.insert(record(3), Instant::now());
        assert_eq!(w.remove(b).map(|r| r.status), Some(2));
        let expired: Vec<u16> = w
            .expired(Duration::from_secs(5))
            .iter()
            .map(|r| r.status)
            .collect();
        assert_eq!(expired, [1]);
        assert!(w.remove(a).is_none(), "its ack came after it was retried");
        assert_eq!(w.len(), 1);
        assert_eq!(w.remove(c).map(|r| r.status), Some(3));
        assert_eq!(w.len(), 0);
    }
}
