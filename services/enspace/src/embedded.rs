//! The embedded default's stand-ins for JetStream: the API node's replica
//! follows the event log in-process, and its request records go from its
//! queue straight into the request-log indexer.

use std::sync::Arc;
use std::time::Duration;

use enspace_api_node::TokenReplica;
use enspace_api_node::record_queue::RecordQueue;
use enspace_tokens::request_log::Indexer;
use enspace_tokens::store::EventLog;
use tokio::sync::watch;

/// Most records written in one batch (one sled flush).
const INDEX_BATCH: usize = 1000;

/// Folds every event of the log into the replica, then each new one as the
/// writer commits it. Ready once the log as it stood is folded.
pub async fn follow_log(
    log: EventLog,
    mut head: watch::Receiver<u64>,
    replica: Arc<TokenReplica>,
    ready: watch::Sender<bool>,
) {
    let mut after = 0;
    loop {
        let entries = match log.read_after(after, 1024) {
            Ok(entries) => entries,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the event log for the local replica");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        if entries.is_empty() {
            ready.send_replace(true);
            let known = *head.borrow_and_update();
            if known <= after && head.changed().await.is_err() {
                return;
            }
            continue;
        }
        for entry in &entries {
            replica.apply(&entry.envelope);
            after = entry.envelope.seq;
        }
    }
}

/// The embedded stand-in for the JetStream request-log path: the API node's
/// record queue drained straight into the indexer, in batches, each written
/// and flushed before it counts as delivered (and the next is taken). A batch
/// the index cannot take goes back to the front of the queue.
pub async fn index_records(
    queue: Arc<RecordQueue>,
    indexer: Indexer,
    delivered: prometheus_client::metrics::counter::Counter,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        queue.arrived().await;
        let batch = queue.take(INDEX_BATCH);
        if batch.is_empty() {
            continue;
        }
        let n = batch.len();
        match indexer.ingest(batch).await {
            (_, Ok(_)) => {
                delivered.inc_by(n as u64);
                queue.settle(n);
                backoff = Duration::from_millis(100);
            }
            (batch, Err(e)) => {
                tracing::error!(error = %e, records = n, "cannot write request records to the index; will retry");
                queue.put_back(batch);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
}
