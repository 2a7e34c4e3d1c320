//! The bounded in-memory queue between the request path and whatever ships
//! request records on (the JetStream [`Publisher`](crate::publisher), or, as
//! a [`RecordSource`], the embedded request-log indexer in `enspace serve`),
//! fair between tokens.
//!
//! Records wait in one queue per token. Handing a record over never waits:
//! it is a push under a short lock. The consumer takes records in batches,
//! the tokens in turn (up to [`TURN`] records each), so a token with a few
//! records is never stuck behind one with a hundred thousand; and puts back
//! (at the front of their tokens' queues) any it could not deliver.
//!
//! When the queue is full, the oldest record of the token holding the most
//! of it is dropped: one token's flood can push out only its own records,
//! never another's. Every dropped record is counted in
//! `enspace_request_records_dropped` and, per token and hour, in the counts
//! [`take_drops`](RecordQueue::take_drops) hands on to the token's owner;
//! a warning is logged at most once per interval.
//!
//! Finding the heaviest token is O(1) in the common case: the queue knows
//! how many tokens hold each number of records, so it knows the largest
//! number, and it remembers the token last found holding it; only when that
//! token no longer does it look through the tokens, resuming where the last
//! search stopped.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use enspace_core::record::DroppedRecords;
use enspace_core::{RecordSink, RecordSource, RequestRecord};
use jiff::Timestamp;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Notify;
use ulid::Ulid;

/// Records held by default: ~30 MB of records, about two seconds of a busy
/// node's traffic at 50 k requests/s, or minutes of a quiet one's.
pub const DEFAULT_CAPACITY: usize = 100_000;
pub const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(10);
/// Records taken from one token before the next token's turn.
pub const TURN: usize = 64;

const HOUR_MS: i64 = 3_600_000;

/// One token's waiting records, oldest first.
struct TokenRecords {
    records: VecDeque<RequestRecord>,
    /// Its entries in the turn order carry this; a stale entry (left when
    /// the queue emptied and was made anew) does not match and is skipped.
    generation: u64,
}

#[derive(Default)]
struct Queues {
    tokens: HashMap<Ulid, TokenRecords>,
    /// Tokens with records, in the order they take turns: (token, generation).
    turns: VecDeque<(Ulid, u64)>,
    len: usize,
    next_generation: u64,
    /// `holding[n]`: how many tokens hold exactly `n` records (n >= 1).
    holding: Vec<usize>,
    /// The most records one token holds.
    largest: usize,
    /// The token last found holding `largest` records.
    heaviest: Option<Ulid>,
    /// Where in `turns` the last search for the heaviest stopped.
    search_from: usize,
    /// Dropped records per (token, start of hour in ms), not yet handed on.
    drops: HashMap<(Ulid, i64), u64>,
}

impl Queues {
    fn count_of(&self, token: &Ulid) -> usize {
        self.tokens.get(token).map_or(0, |t| t.records.len())
    }

    /// A token's count went from `from` to `to`.
    fn recount(&mut self, from: usize, to: usize) {
        if from > 0 {
            self.holding[from] -= 1;
        }
        if to > 0 {
            if self.holding.len() <= to {
                self.holding.resize(to + 1, 0);
            }
            self.holding[to] += 1;
        }
        if to > self.largest {
            self.largest = to;
        }
        while self.largest > 0 && self.holding[self.largest] == 0 {
            self.largest -= 1;
        }
    }

    fn push_back(&mut self, record: RequestRecord) {
        let token = record.token_id;
        let before = self.add(token, |records| records.push_back(record));
        if before + 1 >= self.largest {
            self.heaviest = Some(token);
        }
    }

    fn push_front(&mut self, record: RequestRecord) {
        let token = record.token_id;
        self.add(token, |records| records.push_front(record));
    }

    /// Adds one record to `token`'s queue with `put`; its count before.
    fn add(&mut self, token: Ulid, put: impl FnOnce(&mut VecDeque<RequestRecord>)) -> usize {
        let generation = self.next_generation;
        let entry = self.tokens.entry(token).or_insert_with(|| TokenRecords {
            records: VecDeque::new(),
            generation,
        });
        let before = entry.records.len();
        put(&mut entry.records);
        if before == 0 {
            if entry.generation == generation {
                self.next_generation += 1;
            }
            let generation = entry.generation;
            self.turns.push_back((token, generation));
        }
        self.len += 1;
        self.recount(before, before + 1);
        before
    }

    /// Removes `token`'s queue once it is empty.
    fn forget_if_empty(&mut self, token: &Ulid) {
        if self.tokens.get(token).is_some_and(|t| t.records.is_empty()) {
            self.tokens.remove(token);
        }
    }

    /// A token holding the most records.
    fn find_heaviest(&mut self) -> Option<Ulid> {
        if let Some(token) = self.heaviest
            && self.count_of(&token) == self.largest
        {
            return Some(token);
        }
        let n = self.turns.len();
        for i in 0..n {
            let at = (self.search_from + i) % n;
            let (token, generation) = self.turns[at];
            if self
                .tokens
                .get(&token)
                .is_some_and(|t| t.generation == generation && t.records.len() == self.largest)
            {
                self.search_from = at;
                self.heaviest = Some(token);
                return Some(token);
            }
        }
        None
    }

    /// Drops the oldest record of a token holding the most; the token.
    fn drop_one(&mut self) -> Option<Ulid> {
        let token = self.find_heaviest()?;
        let entry = self.tokens.get_mut(&token)?;
        let before = entry.records.len();
        let record = entry.records.pop_front()?;
        self.len -= 1;
        self.recount(before, before - 1);
        self.forget_if_empty(&token);
        let at_ms = record.at.as_millisecond();
        *self
            .drops
            .entry((token, at_ms - at_ms.rem_euclid(HOUR_MS)))
            .or_default() += 1;
        Some(token)
    }

    /// Up to `max` records, the tokens taking turns of up to [`TURN`].
    fn take(&mut self, max: usize) -> Vec<RequestRecord> {
        let mut out = Vec::with_capacity(max.min(self.len));
        while out.len() < max {
            let Some((token, generation)) = self.turns.pop_front() else {
                break;
            };
            let Some(entry) = self.tokens.get_mut(&token) else {
                continue;
            };
            if entry.generation != generation || entry.records.is_empty() {
                continue;
            }
            let before = entry.records.len();
            let n = before.min(TURN).min(max - out.len());
            out.extend(entry.records.drain(..n));
            let left = before - n;
            if left > 0 {
                self.turns.push_back((token, generation));
            }
            self.len -= n;
            self.recount(before, left);
            self.forget_if_empty(&token);
        }
        if self.search_from >= self.turns.len() {
            self.search_from = 0;
        }
        out
    }
}

pub struct RecordQueue {
    queues: Mutex<Queues>,
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
            queues: Mutex::new(Queues::default()),
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Queues> {
        // A panic while holding this lock cannot happen between the steps
        // of one change (none of them panics), so poison is ignored.
        self.queues
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Records waiting (not counting those in flight).
    pub fn len(&self) -> usize {
        self.lock().len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records of `token` waiting.
    pub fn len_of(&self, token: Ulid) -> usize {
        self.lock().count_of(&token)
    }

    /// Records taken by the consumer and not yet settled.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Appends a record; if the queue is full, drops the oldest record of
    /// the token holding the most. Never waits.
    pub fn push(&self, record: RequestRecord) {
        let dropped = {
            let mut queues = self.lock();
            queues.push_back(record);
            if queues.len > self.capacity {
                queues.drop_one()
            } else {
                None
            }
        };
        if let Some(token) = dropped {
            self.count_dropped(1, token);
        }
        self.arrived.notify_one();
    }

    /// Takes up to `max` records, the tokens in turn; they count as in
    /// flight until [`settle`](Self::settle)d or [`put_back`](Self::put_back).
    pub fn take(&self, max: usize) -> Vec<RequestRecord> {
        let taken = self.lock().take(max);
        self.in_flight.fetch_add(taken.len(), Ordering::SeqCst);
        taken
    }

    /// `n` records taken earlier were delivered.
    pub fn settle(&self, n: usize) {
        let before = self.in_flight.fetch_sub(n, Ordering::SeqCst);
        if before <= n && self.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Records taken earlier could not be delivered: they go back to the
    /// front of their tokens' queues, to be taken first. If newer records
    /// filled the queue in the meantime, the heaviest tokens' oldest go
    /// (and are counted) to keep the bound.
    pub fn put_back(&self, returned: Vec<RequestRecord>) {
        let n = returned.len();
        let mut dropped = Vec::new();
        {
            let mut queues = self.lock();
            for record in returned.into_iter().rev() {
                queues.push_front(record);
            }
            while queues.len > self.capacity {
                match queues.drop_one() {
                    Some(token) => dropped.push(token),
                    None => break,
                }
            }
        }
        self.in_flight.fetch_sub(n, Ordering::SeqCst);
        if let Some(token) = dropped.last() {
            self.count_dropped(dropped.len(), *token);
        }
        self.arrived.notify_one();
    }

    /// The records dropped so far, per token and hour, since the last call;
    /// give back with [`put_back_drops`](Self::put_back_drops) what could
    /// not be handed on.
    pub fn take_drops(&self, node: &str) -> Vec<DroppedRecords> {
        let drops = std::mem::take(&mut self.lock().drops);
        drops
            .into_iter()
            .filter_map(|((token_id, hour_ms), count)| {
                Some(DroppedRecords {
                    id: Ulid::new(),
                    token_id,
                    hour: Timestamp::from_millisecond(hour_ms).ok()?,
                    count,
                    node: node.to_owned(),
                })
            })
            .collect()
    }

    /// Drop counts that could not be handed on, to be taken again.
    pub fn put_back_drops(&self, drops: Vec<DroppedRecords>) {
        let mut queues = self.lock();
        for d in drops {
            *queues
                .drops
                .entry((d.token_id, d.hour.as_millisecond()))
                .or_default() += d.count;
        }
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

    fn count_dropped(&self, n: usize, token: Ulid) {
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
            let held = self.len_of(token);
            tracing::warn!(
                queue.capacity = self.capacity,
                token.id = %token,
                token.queued = held,
                records.dropped_total = self.dropped.get(),
                "request record queue full: dropping the oldest records of token {token}, which holds {held} of {} (total dropped so far: {})",
                self.capacity,
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

/// The embedded request-log indexer drains the queue through this.
impl RecordSource for RecordQueue {
    fn waiting(&self) -> usize {
        self.len()
    }
    fn arrived(&self) -> impl Future<Output = ()> + Send {
        RecordQueue::arrived(self)
    }
    fn take(&self, max: usize) -> Vec<RequestRecord> {
        RecordQueue::take(self, max)
    }
    fn settle(&self, n: usize) {
        RecordQueue::settle(self, n);
    }
    fn put_back(&self, records: Vec<RequestRecord>) {
        RecordQueue::put_back(self, records);
    }
    fn take_drops(&self, node: &str) -> Vec<DroppedRecords> {
        RecordQueue::take_drops(self, node)
    }
    fn put_back_drops(&self, drops: Vec<DroppedRecords>) {
        RecordQueue::put_back_drops(self, drops);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A record told apart by its status.
    pub(crate) fn record(n: u16) -> RequestRecord {
        record_of(Ulid::nil(), n)
    }

    fn record_of(token: Ulid, n: u16) -> RequestRecord {
        RequestRecord {
            id: Ulid::new(),
            token_id: token,
            user_id: "alice".into(),
            at: jiff::Timestamp::UNIX_EPOCH,
            node: "n".into(),
            method: "GET".into(),
            path: "/".into(),
            path_truncated: false,
            workspace: None,
            status: n,
            duration_ms: 0.0,
            client_ip: String::new(),
            user_agent: None,
        }
    }

    fn statuses(records: &[RequestRecord]) -> Vec<u16> {
        records.iter().map(|r| r.status).collect()
    }

    #[test]
    fn a_full_queue_of_one_token_drops_its_oldest_and_counts_it() {
        let dropped = Counter::default();
        let q = RecordQueue::new(3, dropped.clone());
        for n in 1..=5 {
            q.push(record(n));
        }
        assert_eq!(dropped.get(), 2);
        assert_eq!(statuses(&q.take(10)), [3, 4, 5]);
        assert_eq!(q.in_flight(), 3);
    }

    #[test]
    fn a_flooding_token_pushes_out_only_its_own_records() {
        let dropped = Counter::default();
        let q = RecordQueue::new(100, dropped.clone());
        let (light, heavy) = (Ulid::from(1u128), Ulid::from(2u128));
        for n in 0..10_000u16 {
            q.push(record_of(heavy, n));
            if n % 250 == 0 {
                q.push(record_of(light, n));
            }
        }
        assert_eq!(q.len(), 100);
        assert_eq!(q.len_of(light), 40, "every light record kept");
        assert_eq!(q.len_of(heavy), 60);
        let drops = q.take_drops("n");
        assert_eq!(drops.len(), 1);
        assert_eq!((drops[0].token_id, drops[0].count), (heavy, 9_940));
        assert_eq!(dropped.get(), 9_940);
        assert!(q.take_drops("n").is_empty(), "handed on once");
    }

    #[test]
    fn the_heaviest_loses_first_and_tokens_even_out() {
        let q = RecordQueue::new(9, Counter::default());
        let tokens = [Ulid::from(1u128), Ulid::from(2u128), Ulid::from(3u128)];
        for _ in 0..6 {
            q.push(record_of(tokens[0], 0));
        }
        for _ in 0..3 {
            q.push(record_of(tokens[1], 0));
        }
        for _ in 0..3 {
            q.push(record_of(tokens[2], 0));
        }
        assert_eq!(
            tokens.map(|t| q.len_of(t)),
            [3, 3, 3],
            "the first token lost its three extra records"
        );
        q.push(record_of(tokens[2], 0));
        assert_eq!(q.len(), 9);
        assert_eq!(tokens.iter().map(|t| q.len_of(*t)).sum::<usize>(), 9);
        assert!(tokens.iter().all(|t| q.len_of(*t) >= 2));
    }

    #[test]
    fn tokens_take_turns_so_a_light_token_is_not_stuck_behind_a_heavy_one() {
        let q = RecordQueue::new(1_000, Counter::default());
        let (heavy, light) = (Ulid::from(1u128), Ulid::from(2u128));
        for n in 0..500 {
            q.push(record_of(heavy, n));
        }
        q.push(record_of(light, 7));
        let first = q.take(TURN + 1);
        assert_eq!(first.last().map(|r| r.token_id), Some(light));
        assert_eq!(q.len(), 500 - TURN);
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
        assert_eq!(statuses(&q.take(10)), [3, 4, 5]);
    }

    #[test]
    fn drop_counts_put_back_are_handed_on_again_summed() {
        let q = RecordQueue::new(1, Counter::default());
        let token = Ulid::from(5u128);
        q.push(record_of(token, 1));
        q.push(record_of(token, 2));
        let drops = q.take_drops("n");
        q.push(record_of(token, 3));
        q.put_back_drops(drops);
        let again = q.take_drops("n");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].count, 2);
        assert_eq!(again[0].hour, jiff::Timestamp::UNIX_EPOCH);
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
