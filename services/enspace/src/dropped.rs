//! In `enspace serve` without NATS, the API node's counts of the request
//! records it dropped go straight into the request index (with NATS, the
//! record publisher sends them through JetStream to the indexer).

use std::sync::Arc;
use std::time::Duration;

use enspace_api_node::record_queue::RecordQueue;
use enspace_tokens::request_log::Indexer;

/// How often the counts are handed on.
const EVERY: Duration = Duration::from_secs(1);

/// Moves the queue's drop counts into the index every second, forever;
/// counts the index cannot take go back to the queue for the next round.
pub async fn index_drops(queue: Arc<RecordQueue>, indexer: Indexer, node: String) {
    let mut tick = tokio::time::interval(EVERY);
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
