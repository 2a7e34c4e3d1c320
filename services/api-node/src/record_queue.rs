//! The bounded in-memory queue between the request path and whatever ships
//! request records on (the JetStream [`Publisher`](crate::publisher), or the
//! embedded indexer in `enspace serve`).
//!
//! Handing a record over never waits: it is a push under a short lock. When
//! the queue is full the oldest record is dropped, counted in
//! `enspace_request_records_dropped`, and a warning is logged at most once
//! per interval. The consumer takes records in batches and puts back (at the
//! front) any it could not deliver.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use enspace_core::{RecordSink, RequestRecord};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;

/// Records held by default: ~30 MB of records, about two seconds of a busy
/// node's traffic at 50 k requests/s, or minutes of a quiet one's.
pub const DEFAULT_CAPACITY: usize = 100_000;
pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(10);

pub struct RecordQueue {
    records: Mutex<VecDeque<RequestRecord>>,
    capacity: usize,
    /// Records taken by the consumer and not yet settled (delivered, or put back).
    in_flight: AtomicUsize,
    /// Wakes the consumer when records arrive.
    arrived: Notify,
    /// Wakes `wait_idle` when the queue is empty and nothing is in flight.
    idle: Notify,
    dropped: Counter,
    warn_interval: Duration,
    started: Instant,
    /// Milliseconds after `started` of the last drop warning, plus one (0 = never).
    last_warning: AtomicU64,
}

impl RecordQueue {
    /// `dropped` is the counter to bump for each record the queue drops.
    pub fn new(capacity: usize, dropped: Counter) -> Self {
        Self::with_warn_interval(capacity, dropped, DEFAULT_WARN_INTERVAL)
    }

    pub fn with_warn_interval(capacity: usize, dropped: Counter, warn_interval: Duration) -> Self {
        RecordQueue {
            records: Mutex::new(VecDeque::with_capacity(capacity.min(4096))),
            capacity: capacity.max(1),
            in_flight: AtomicUsize::new(0),
            arrived: Notify::new(),
            idle: Notify::new(),
            dropped,
            warn_interval,
            started: Instant::now(),
            last_warning: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<RequestRecord>> {
        // A panic while holding this lock cannot leave the deque half-changed
        // (every operation on it is a single std call), so poison is ignored.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records waiting (not counting those in flight).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records taken by the consumer and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Appends a record, dropping the oldest if the queue is full. Never waits.
    pub fn push(&self, record: RequestRecord) {
        let dropped = {
            let mut records = self.lock();
            let dropped = if records.len() >= self.capacity {
                records.pop_front().is_some()
            } else {
                false
            };
            records.push_back(record);
            dropped
        };
        if dropped {
            self.count_dropped(1);
        }
        self.arrived.notify_one();
    }

    /// Takes up to `max` records from the front; they count as in flight
    /// until [`settle`](Self::settle)d or [`put_back`](Self::put_back).
    pub fn take(&self, max: usize) -> Vec<RequestRecord> {
        let mut records = self.lock();
        let n = records.len().min(max);
        self.in_flight.fetch_add(n, Ordering::SeqCst);
        records.drain(..n).collect()
    }

    /// `n` records taken earlier were delivered.
    pub fn settle(&self, n: usize) {
        let before = self.in_flight.fetch_sub(n, Ordering::SeqCst);
        if before <= n && self.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Records taken earlier could not be delivered: they go back to the
    /// front, to be taken first. If newer records filled the queue in the
    /// meantime, the oldest are dropped (and counted) to keep the bound.
    pub fn put_back(&self, returned: Vec<RequestRecord>) {
        let n = returned.len();
        let dropped = {
            let mut records = self.lock();
            for record in returned.into_iter().rev() {
                records.push_front(record);
            }
            let excess = records.len().saturating_sub(self.capacity);
            records.drain(..excess);
            excess
        };
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        if dropped > 0 {
            self.count_dropped(dropped);
        }
        self.arrived.notify_one();
    }

    /// Resolves once a record may have arrived (at once if any is waiting).
    pub async fn arrived(&self) {
        let notified = self.arrived.notified();
        if !self.is_empty() {
            return;
        }
        notified.await;
    }

    /// Waits until every record pushed so far is delivered (the queue is
    /// empty and nothing is in flight) or `deadline` passes; returns how
    /// many records were still undelivered.
    pub async fn wait_idle(&self, deadline: tokio::time::Instant) -> usize {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.len() + self.in_flight();
            if left == 0 {
                return 0;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len() + self.in_flight();
            }
        }
    }

    fn count_dropped(&self, n: usize) {
        self.dropped.inc_by(n as u64);
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.warn_interval.as_millis() as u64;
        if due
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                queue.capacity = self.capacity,
                records.dropped_total = self.dropped.get(),
                "request record queue full: dropping the oldest records (total dropped so far: {})",
                self.dropped.get()
            );
        }
    }
}

impl RecordSink for RecordQueue {
    fn record(&self, record: RequestRecord) {
        self.push(record);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use ulid::Ulid;

    /// A record told apart by its status.
    pub(crate) fn record(n: u16) -> RequestRecord {
        RequestRecord {
            id: Ulid::new(),
            token_id: Ulid::nil(),
            user_id: "alice".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
            node: "n".into(),
            method: "GET".into(),
            path: "/".into(),
            workspace: None,
            status: n,
            duration_ms: 0.0,
            client_ip: String::new(),
            user_agent: None,
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_it() {
        let dropped = Counter::default();
        let q = RecordQueue::new(3, dropped.clone());
        for n in 1..=5 {
            q.push(record(n));
        }
        assert_eq!(dropped.get(), 2);
        let statuses: Vec<u16> = q.take(10).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [3, 4, 5]);
        assert_eq!(q.in_flight(), 3);
    }

    #[test]
    fn put_back_records_come_first_and_keep_the_bound() {
        let dropped = Counter::default();
        let q = RecordQueue::new(3, dropped.clone());
        q.push(record(1));
        q.push(record(2));
        let taken = q.take(2);
        q.push(record(3));
        q.push(record(4));
        q.push(record(5));
        q.put_back(taken);
        assert_eq!(q.in_flight(), 0);
        assert_eq!(dropped.get(), 2, "the two oldest (the returned ones) go");
        let statuses: Vec<u16> = q.take(10).iter().map(|r| r.status).collect();
        assert_eq!(statuses, [3, 4, 5]);
    }

    #[tokio::test]
    async fn wait_idle_returns_once_everything_is_settled() {
        let q = std::sync::Arc::new(RecordQueue::new(10, Counter::default()));
        q.push(record(1));
        let deadline = tokio::time::Instant::now() + Duration::from_millis(20);
        assert_eq!(q.wait_idle(deadline).await, 1, "nothing delivered yet");
        let taken = q.take(10);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                q.wait_idle(tokio::time::Instant::now() + Duration::from_secs(10))
                    .await
            })
        };
        q.settle(taken.len());
        assert_eq!(waiter.await.expect("join"), 0);
    }
}
