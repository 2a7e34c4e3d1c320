//! The request-log indexer's embedded path (`enspace serve` without NATS):
//! the API node's record queue, a [`RecordSource`], drained straight into
//! the [`Indexer`], and its counts of dropped records with it. With NATS,
//! both travel through `ENSPACE_REQUESTS` to [`super::jetstream`] instead.

use std::sync::Arc;
use std::time::Duration;

use enspace_core::RecordSource;
use prometheus_client::metrics::counter::Counter;

use super::{Indexer, MAX_BATCH, MIN_WRITE_INTERVAL};

/// How often the counts of dropped records are handed on.
const DROPS_EVERY: Duration = Duration::from_secs(1);

/// Drains `queue` into the indexer, in batches, forever: each is written
/// and flushed before it counts as delivered (in `delivered` too) and the
/// next is taken. As on the JetStream path, a batch that is not full waits
/// until [`MIN_WRITE_INTERVAL`] has passed since the previous write began,
/// so that flushes stay few. A batch the index cannot take goes back to the
/// front of the queue.
pub async fn index_records<Q: RecordSource>(queue: Arc<Q>, indexer: Indexer, delivered: Counter) {
    let mut backoff =
        enspace_core::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut next_write = tokio::time::Instant::now();
    loop {
        queue.arrived().await;
        if queue.waiting() < MAX_BATCH {
            tokio::time::sleep_until(next_write).await;
        }
        next_write = tokio::time::Instant::now() + MIN_WRITE_INTERVAL;
        let batch = queue.take(MAX_BATCH);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        match indexer.ingest(batch).await {
            (_, Ok(_)) => {
                delivered.inc_by(n as u64);
                queue.settle(n);
                backoff.reset();
            }
            (batch, Err(e)) => {
                tracing::error!(error = %e, records = n, "cannot write request records to the index; will retry");
                queue.put_back(batch);
                backoff.wait().await;
            }
        }
    }
}

/// Moves the queue's counts of dropped records (as `node`'s) into the index
/// every second, forever; counts the index cannot take go back to the queue
/// for the next round.
pub async fn index_drops<Q: RecordSource>(queue: Arc<Q>, indexer: Indexer, node: String) {
    let mut tick = tokio::time::interval(DROPS_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let drops = queue.take_drops(&node);
        if drops.is_empty() {
            continue;
        }
        if let Err(e) = indexer.record_drops(drops.clone()).await {
            tracing::error!(error = %e, "cannot record counts of dropped request records; will retry");
            queue.put_back_drops(drops);
        }
    }
}
