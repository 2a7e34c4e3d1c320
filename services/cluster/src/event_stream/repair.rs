//! Foreign messages in the token events stream are noted as they are read
//! (kept in sled, so a restart does not forget them) and deleted by the
//! writer, all at once, at most once per repair interval
//! (`--stream-repair-interval`): a flood of them costs one JetStream
//! request each, paced, and never a reset of the stream. A mark holds only
//! for the stream it was read from: one deleted and made again reuses
//! sequences.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

use enspace_store::OutboxState;

/// Most messages deleted in one repair.
const MAX_PER_REPAIR: usize = 10_000;
/// The default repair interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// What the token events stream's readers and writer found and did.
#[derive(Clone, Default)]
pub struct StreamMetrics {
    /// Foreign messages found (each counted once).
    pub foreign: Counter,
    /// Repairs: passes that deleted foreign messages.
    pub repairs: Counter,
    /// Times the stream was deleted and refilled from the log (it lost
    /// events).
    pub refills: Counter,
}

impl StreamMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = StreamMetrics::default();
        registry.register(
            "enspace_token_stream_foreign_messages",
            "Messages found in the token events stream that are not the next signed event",
            m.foreign.clone(),
        );
        registry.register(
            "enspace_token_stream_repairs",
            "Repairs of the token events stream (foreign messages deleted), at most one per interval",
            m.repairs.clone(),
        );
        registry.register(
            "enspace_token_stream_refills",
            "Times the token events stream was deleted and refilled from the event log",
            m.refills.clone(),
        );
        m
    }
}

/// Notes foreign messages and deletes them; cheap to clone.
#[derive(Clone)]
pub struct Repairer {
    state: OutboxState,
    interval: Duration,
    last: Arc<Mutex<Option<Instant>>>,
    metrics: StreamMetrics,
}

impl Repairer {
    pub fn new(state: OutboxState, interval: Duration, metrics: StreamMetrics) -> Self {
        Repairer {
            state,
            interval,
            last: Arc::default(),
            metrics,
        }
    }

    pub fn metrics(&self) -> &StreamMetrics {
        &self.metrics
    }

    /// Notes messages `at` of stream `stream` as foreign; logs and counts
    /// the ones not noted before.
    pub fn note(&self, stream: i128, at: &[u64]) {
        if at.is_empty() {
            return;
        }
        match self.state.note_foreign(stream, at) {
            Ok(0) => {}
            Ok(new) => {
                self.metrics.foreign.inc_by(new as u64);
                tracing::warn!(
                    count = new,
                    first = at.first().copied().unwrap_or_default(),
                    "found {new} foreign messages in the token events stream (not events signed \
                     by the event key in their place): skipped, and to be deleted"
                );
            }
            Err(e) => tracing::error!(error = %e, "cannot note foreign messages"),
        }
    }

    /// Deletes the noted foreign messages if there are any and the last
    /// repair was at least an interval ago; answers how many went.
    pub async fn repair_if_due(&self, js: &jetstream::Context) -> Result<usize, String> {
        let marks = self
            .state
            .foreign(MAX_PER_REPAIR)
            .map_err(|e| e.to_string())?;
        if marks.is_empty() {
            return Ok(0);
        }
        {
            let Ok(mut last) = self.last.lock() else {
                return Err("the repair clock's lock is poisoned".into());
            };
            if last.is_some_and(|at| at.elapsed() < self.interval) {
                return Ok(0);
            }
            *last = Some(Instant::now());
        }
        let mut stream = js
            .get_stream(enspace_nats::TOKEN_EVENTS_STREAM)
            .await
            .map_err(|e| e.to_string())?;
        let current = super::identity(stream.info().await.map_err(|e| e.to_string())?);
        let mut done = Vec::with_capacity(marks.len());
        let mut deleted = 0;
        let mut failure = None;
        for (at, of) in marks {
            if of != current {
                done.push(at);
                continue;
            }
            match stream.delete_message(at).await {
                Ok(_) => {
                    deleted += 1;
                    done.push(at);
                }
                // Gone already (deleted, or the stream cut before it).
                Err(e)
                    if matches!(
                        e.kind(),
                        jetstream::stream::DeleteMessageErrorKind::JetStream(_)
                    ) =>
                {
                    done.push(at);
                }
                Err(e) => {
                    failure = Some(e.to_string());
                    break;
                }
            }
        }
        self.state
            .forget_foreign(&done)
            .map_err(|e| e.to_string())?;
        if deleted > 0 {
            self.metrics.repairs.inc();
            tracing::warn!(
                deleted,
                "repaired the token events stream: deleted {deleted} foreign messages"
            );
        }
        match failure {
            Some(e) => Err(format!("deleting foreign messages failed: {e}")),
            None => Ok(deleted),
        }
    }
}
