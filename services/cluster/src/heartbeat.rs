//! The signed heartbeat: once a second, the log's head and first hash, so
//! API nodes know what they should hold. Each carries the sender's term
//! (the cluster's lease term, or for a single process a counter kept in its
//! store and raised at every start) and its sequence within the term; nodes
//! order heartbeats by them, not by the sender's clock.

use std::time::Duration;

use enspace_core::signing::Heartbeat;
use enspace_store::keyring::Keyring;

use enspace_store::EventLog;

/// How often a heartbeat is sent.
pub const EVERY: Duration = Duration::from_secs(1);

/// Sends the heartbeat every [`EVERY`], forever, while `term` names one (in
/// a cluster only the writer speaks, in its lease's term).
pub async fn heartbeat(
    client: async_nats::Client,
    log: EventLog,
    keys: Keyring,
    writer: String,
    term: impl Fn() -> Option<u64> + Send,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let (mut current, mut beat) = (0, 0);
    loop {
        tick.tick().await;
        let Some(term) = term() else {
            continue;
        };
        if term != current {
            (current, beat) = (term, 0);
        }
        let heads = log.head().and_then(|(seq, hash)| {
            let first = log.get(1)?.map_or([0; 32], |e| e.stored.hash);
            Ok((seq, hash, first))
        });
        let (seq, hash, first_hash) = match heads {
            Ok(heads) => heads,
            Err(e) => {
                tracing::error!(error = %e, "cannot read the event log's head for the heartbeat");
                continue;
            }
        };
        beat += 1;
        // The key of the log's next event: a node that holds the head
        // has followed every rotation before it.
        let Some(signer) = keys.signer_for(seq + 1) else {
            tracing::error!(seq, "no event key for the heartbeat");
            continue;
        };
        let heartbeat = Heartbeat {
            v: Heartbeat::VERSION,
            writer: writer.clone(),
            seq,
            hash,
            first_hash,
            at_ms: jiff::Timestamp::now().as_millisecond(),
            key: *signer.public().as_bytes(),
            term,
            beat,
        };
        if let Err(e) = client
            .publish(
                enspace_nats::HEARTBEAT_SUBJECT,
                heartbeat.sign(&signer).into(),
            )
            .await
        {
            tracing::debug!(error = %e, "heartbeat not sent");
        }
    }
}
