use std::sync::atomic::AtomicUsize;

use super::*;
use crate::SecretHash;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Failed(&'static str);

/// A log in memory.
#[derive(Default)]
struct Log(Mutex<Vec<EventEnvelope>>);

impl Log {
    fn push(&self, n: u64) -> EventEnvelope {
        let e = crate::fixtures::created(n, &SecretHash([n as u8; 32])).build();
        self.0.lock().expect("log").push(e.clone());
        e
    }
}

impl EventSource for Log {
    type Error = Failed;
    fn head_seq(&self) -> Result<u64, Failed> {
        Ok(self.0.lock().expect("log").last().map_or(0, |e| e.seq))
    }
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<EventEnvelope>, Failed> {
        let log = self.0.lock().expect("log");
        Ok(log
            .iter()
            .filter(|e| e.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// A view that remembers the seqs it folded, and fails while told to.
#[derive(Default)]
struct Seen {
    seqs: Mutex<Vec<u64>>,
    failures_left: AtomicUsize,
}

impl Projection for Seen {
    type Error = Failed;
    fn name(&self) -> &'static str {
        "seen"
    }
    fn position(&self) -> Result<u64, Failed> {
        Ok(self.seqs.lock().expect("seen").last().copied().unwrap_or(0))
    }
    fn apply(&self, events: &[EventEnvelope]) -> Result<(), Failed> {
        if self
            .failures_left
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Failed("told to fail"));
        }
        let mut seqs = self.seqs.lock().expect("seen");
        let at = seqs.last().copied().unwrap_or(0);
        seqs.extend(events.iter().map(|e| e.seq).filter(|s| *s > at));
        Ok(())
    }
    fn reset(&self) -> Result<(), Failed> {
        self.seqs.lock().expect("seen").clear();
        Ok(())
    }
}

fn seqs(p: &Seen) -> Vec<u64> {
    p.seqs.lock().expect("seen").clone()
}

#[test]
fn catch_up_folds_what_is_missing_in_batches_and_resets_a_view_ahead_of_the_log() {
    let log = Log::default();
    for n in 1..=2500 {
        log.push(n);
    }
    let seen = Seen::default();
    assert_eq!(catch_up(&log, &seen).expect("caught up"), 2500);
    assert_eq!(seqs(&seen).len(), 2500);
    assert_eq!(catch_up(&log, &seen).expect("caught up"), 0);
    seen.seqs.lock().expect("seen").push(9999);
    assert_eq!(catch_up(&log, &seen).expect("caught up"), 2500);
    assert_eq!(seqs(&seen), (1..=2500).collect::<Vec<_>>());
}

#[test]
fn a_group_after_a_gap_folds_the_log_up_to_it() {
    let log = Arc::new(Log::default());
    let seen = Arc::new(Seen::default());
    let runner = Runner::new(log.clone(), seen.clone(), ProjectionHealth::default());
    log.push(1);
    log.push(2);
    let third = log.push(3);
    runner.on_commit(&[third]);
    assert_eq!(seqs(&seen), [1, 2, 3]);
}

#[test]
fn a_failing_projection_is_counted_lagging_and_folded_again_until_it_holds_the_log() {
    let log = Arc::new(Log::default());
    let seen = Arc::new(Seen::default());
    let counted = Arc::new(AtomicUsize::new(0));
    let count = counted.clone();
    let health = ProjectionHealth::new(move |name| {
        assert_eq!(name, "seen");
        count.fetch_add(1, Ordering::AcqRel);
    });
    let runner = Runner::new(log.clone(), seen.clone(), health.clone())
        .with_backoff(Duration::from_millis(1), Duration::from_millis(5));
    runner.on_commit(&[log.push(1)]);
    seen.failures_left.store(3, Ordering::Release);
    runner.on_commit(&[log.push(2)]);
    assert_eq!(health.lagging(), ["seen"]);
    // Committed while it lags: left to the catch-up.
    runner.on_commit(&[log.push(3)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !health.lagging().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never caught up");
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(seqs(&seen), [1, 2, 3]);
    assert_eq!(health.errors("seen"), 3);
    assert_eq!(counted.load(Ordering::Acquire), 3);
    runner.on_commit(&[log.push(4)]);
    assert_eq!(seqs(&seen), [1, 2, 3, 4]);
}
