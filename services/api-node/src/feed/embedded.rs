//! Feeding the replica in the control plane's own process (`enspace serve`
//! without NATS): from the log as it stands, then from the writer's commit
//! hook, which applies every group before any of its commands is answered,
//! so a revocation is in force on the node before `DELETE` answers. Nothing
//! crosses a network, so nothing is checked.

use std::marker::PhantomData;
use std::sync::Arc;

use enspace_core::projection::{self, Projection};
use enspace_core::{CommittedEvents, EventEnvelope};

use crate::replica::TokenReplica;

/// The replica as a projection: in memory, so it remembers no position and
/// folds the log from the start; folding cannot fail (`E` is the source's
/// error, never made here).
struct Replica<E>(Arc<TokenReplica>, PhantomData<fn() -> E>);

impl<E: std::error::Error + Send + Sync + 'static> Projection for Replica<E> {
    type Error = E;

    fn name(&self) -> &'static str {
        "replica"
    }

    fn position(&self) -> Result<u64, E> {
        Ok(0)
    }

    fn apply(&self, events: &[EventEnvelope]) -> Result<(), E> {
        events.iter().for_each(|e| self.0.apply(e));
        Ok(())
    }

    fn reset(&self) -> Result<(), E> {
        Ok(())
    }
}

/// Attaches the replica to the writer, then folds the log as it stands
/// (`enspace_core::projection::catch_up`). Events committed in between are
/// folded twice, which changes nothing.
pub fn attach<C: CommittedEvents>(events: &C, replica: Arc<TokenReplica>) -> Result<(), C::Error> {
    let live = replica.clone();
    events.on_commit(move |group| group.iter().for_each(|e| live.apply(e)));
    projection::catch_up(events, &Replica::<C::Error>(replica, PhantomData))?;
    Ok(())
}
