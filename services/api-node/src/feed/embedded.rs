//! Feeding the replica in the control plane's own process (`enspace serve`
//! without NATS): from the log as it stands, then from the writer's commit
//! hook, which applies every group before any of its commands is answered,
//! so a revocation is in force on the node before `DELETE` answers. Nothing
//! crosses a network, so nothing is checked.

use std::sync::Arc;

use enspace_core::CommittedEvents;

use crate::replica::TokenReplica;

/// Events read from the log at a time at start.
const LOG_PAGE: usize = 1024;

/// Attaches the replica to the writer, then folds the log as it stands.
/// Events committed in between are folded twice, which changes nothing.
pub fn attach<C: CommittedEvents>(events: &C, replica: Arc<TokenReplica>) -> Result<(), C::Error> {
    let live = replica.clone();
    events.on_commit(move |group| group.iter().for_each(|e| live.apply(e)));
    let mut after = 0;
    loop {
        let page = events.read_after(after, LOG_PAGE)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        after = last.seq;
        page.iter().for_each(|e| replica.apply(e));
    }
}
