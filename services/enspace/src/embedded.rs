//! The embedded default's stand-in for JetStream: the API node's replica
//! follows the event log in-process.

use std::sync::Arc;

use enspace_api_node::TokenReplica;
use enspace_tokens::store::EventLog;
use tokio::sync::watch;

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
