//! The embedded default's stand-in for JetStream: the API node's replica
//! is fed in-process, from the event log at start and then by the writer
//! itself, so a change is in force on the node before its request answers.

use std::sync::Arc;

use enspace_api_node::TokenReplica;
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
