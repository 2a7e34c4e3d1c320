//! The embedded default's stand-ins for JetStream: the API node's replica
//! is fed in-process, from the event log at start and then by the writer
//! itself, so a change is in force on the node before its request answers;
//! and its request records go from its queue straight into the request-log
//! indexer.

use std::sync::Arc;
use std::time::Duration;

use enspace_api_node::TokenReplica;
use enspace_api_node::record_queue::RecordQueue;
use enspace_tokens::request_log::Indexer;
use enspace_tokens::request_log::indexer::{MAX_BATCH, MIN_WRITE_INTERVAL};
use enspace_tokens::store::EventLog;
use enspace_tokens::store::writer::Writer;

/// Attaches the replica to the writer, then folds the log as it stands.
/// Events committed in between are folded twice, which changes nothing.
pub fn attach(log: &EventLog, writer: &Writer, replica: Arc<TokenReplica>) -> anyhow::Result<()> {
    let live = replica.clone();
    writer.on_commit(move |events| events.iter().for_each(|e| live.apply(e)));
    let mut after = 0;
    loop {
        let entries = log.read_after(after, 1024)?;
        let Some(last) = entries.last() else {
            return Ok(());
        };
        after = last.envelope.seq;
        entries.iter().for_each(|e| replica.apply(&e.envelope));
    }
}

/// The embedded stand-in for the JetStream request-log path: the API node's
/// record queue drained straight into the indexer, in batches, each written
/// and flushed before it counts as delivered (and the next is taken). As in
/// the JetStream indexer, a batch that is not full waits until
/// `MIN_WRITE_INTERVAL` has passed since the previous write began, so that
/// flushes stay few. A batch the index cannot take goes back to the front
/// of the queue.
pub async fn index_records(
    queue: Arc<RecordQueue>,
    indexer: Indexer,
    delivered: prometheus_client::metrics::counter::Counter,
) {
    let mut backoff =
        enspace_nats::Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    let mut next_write = tokio::time::Instant::now();
    loop {
        queue.arrived().await;
        if queue.len() < MAX_BATCH {
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
