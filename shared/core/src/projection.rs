//! One way to keep a view folded from the event log (cqrs `GenericQuery`
//! and `QueryReplay`): a view says where it is ([`Projection::position`]),
//! folds a run of events ([`Projection::apply`]) and forgets everything
//! ([`Projection::reset`]); [`catch_up`] brings it up to the log, and a
//! [`Runner`] feeds it each committed group with one error policy.
//!
//! The policy: a view that fails to fold is never passed over. It is marked
//! lagging in [`ProjectionHealth`] (the control plane's `/readyz` answers
//! 503 `projections_lagging` while any is), its failure is counted (the
//! `enspace_projection_errors{projection=…}` metric), and it is folded again
//! from the log, with a backoff, until it holds every event; groups
//! committed meanwhile are left to that catch-up.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::backoff::Backoff;
use crate::events::EventEnvelope;

/// Events read from the log at a time.
pub const CATCH_UP_BATCH: usize = 1000;

/// A view folded from the event log.
pub trait Projection: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Its name, in metrics and in `/readyz`.
    fn name(&self) -> &'static str;
    /// The last `seq` folded in (0: none). A view that does not remember
    /// where it is (one in memory, folded from the start each time) says 0.
    fn position(&self) -> Result<u64, Self::Error>;
    /// Folds `events` (in `seq` order); those at or below its position
    /// change nothing.
    fn apply(&self, events: &[EventEnvelope]) -> Result<(), Self::Error>;
    /// Forgets everything folded, to fold the log again from the start.
    fn reset(&self) -> Result<(), Self::Error>;
}

/// Where committed events are read from: the event log.
pub trait EventSource: Send + Sync + 'static {
    type Error: std::error::Error + Send + Sync + 'static;
    /// The `seq` of the last committed event (0: none).
    fn head_seq(&self) -> Result<u64, Self::Error>;
    /// Up to `limit` committed events after `seq` `after`, in order.
    fn read_after(&self, after: u64, limit: usize) -> Result<Vec<EventEnvelope>, Self::Error>;
}

/// The token events as the control plane commits them, for an API node in
/// the same process (`enspace serve` without NATS), whose replica folds them
/// from the log and then from the writer itself. An API node elsewhere reads
/// the token events stream instead.
/// What it reads is an [`EventSource`].
pub trait CommittedEvents: EventSource {
    /// Runs `hook` on every group of events from now on, once it is durable
    /// and before any of the group's commands is answered.
    fn on_commit(&self, hook: impl Fn(&[EventEnvelope]) + Send + Sync + 'static);
}

/// Folds every event of `source` that `projection` has not folded; a view
/// that claims to be ahead of the log (never trusted) is reset and folded
/// again. Answers how many events were read.
pub fn catch_up<S, P>(source: &S, projection: &P) -> Result<u64, P::Error>
where
    S: EventSource + ?Sized,
    P: Projection + ?Sized,
    P::Error: From<S::Error>,
{
    catch_up_with(source, projection, &crate::progress::Silent)
}

/// [`catch_up`], telling `progress` how many events are folded of how many.
pub fn catch_up_with<S, P>(
    source: &S,
    projection: &P,
    progress: &dyn crate::progress::Progress,
) -> Result<u64, P::Error>
where
    S: EventSource + ?Sized,
    P: Projection + ?Sized,
    P::Error: From<S::Error>,
{
    let mut after = projection.position()?;
    let head = source.head_seq()?;
    if after > head {
        tracing::warn!(
            projection = projection.name(),
            folded = after,
            log_head = head,
            "the projection {} is ahead of the event log; folding it again",
            projection.name()
        );
        projection.reset()?;
        after = 0;
    }
    let mut read = 0;
    let to_read = head.saturating_sub(after);
    loop {
        let events = source.read_after(after, CATCH_UP_BATCH)?;
        let Some(last) = events.last() else { break };
        after = last.seq;
        read += events.len() as u64;
        projection.apply(&events)?;
        progress.advance(read, to_read.max(read));
    }
    progress.finish();
    Ok(read)
}

#[derive(Default)]
struct Status {
    lagging: bool,
    errors: u64,
}

/// Which projections lag behind the log, and how often each failed: what
/// `/readyz` and the metrics read.
#[derive(Clone, Default)]
pub struct ProjectionHealth {
    status: Arc<Mutex<BTreeMap<&'static str, Status>>>,
    on_error: Option<Arc<dyn Fn(&'static str) + Send + Sync>>,
    /// Set by the service's stop: retries end, letting go of the store.
    stopping: Arc<AtomicBool>,
}

impl ProjectionHealth {
    /// `on_error` is told the name of a projection each time it fails (to
    /// count it in a metric).
    pub fn new(on_error: impl Fn(&'static str) + Send + Sync + 'static) -> Self {
        ProjectionHealth {
            status: Arc::default(),
            on_error: Some(Arc::new(on_error)),
            stopping: Arc::default(),
        }
    }

    /// Ends every retry (the service is stopping): a retrying runner's
    /// thread returns within [`STOP_CHECK`], letting go of what it holds.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<&'static str, Status>) -> T) -> T {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut status)
    }

    fn failed(&self, name: &'static str) {
        self.with(|s| {
            let status = s.entry(name).or_default();
            status.lagging = true;
            status.errors += 1;
        });
        if let Some(on_error) = &self.on_error {
            on_error(name);
        }
    }

    fn caught_up(&self, name: &'static str) {
        self.with(|s| s.entry(name).or_default().lagging = false);
    }

    /// The projections behind the log because folding failed, by name.
    pub fn lagging(&self) -> Vec<&'static str> {
        self.with(|s| {
            s.iter()
                .filter(|(_, status)| status.lagging)
                .map(|(name, _)| *name)
                .collect()
        })
    }

    /// How often `name` failed to fold.
    pub fn errors(&self, name: &str) -> u64 {
        self.with(|s| s.get(name).map_or(0, |status| status.errors))
    }
}

/// How soon a retrying runner sees that the service stops.
pub const STOP_CHECK: Duration = Duration::from_millis(50);

/// Feeds one projection from a source: [`Runner::catch_up`] at start, then
/// [`Runner::on_commit`] with every committed group (the writer's commit
/// hook), under the error policy of this module.
pub struct Runner<S, P> {
    source: Arc<S>,
    projection: Arc<P>,
    health: ProjectionHealth,
    /// A catch-up after a failure is under way: it folds what is committed
    /// meanwhile.
    retrying: Arc<AtomicBool>,
    backoff: (Duration, Duration),
}

impl<S, P> Clone for Runner<S, P> {
    fn clone(&self) -> Self {
        Runner {
            source: self.source.clone(),
            projection: self.projection.clone(),
            health: self.health.clone(),
            retrying: self.retrying.clone(),
            backoff: self.backoff,
        }
    }
}

impl<S, P> Runner<S, P>
where
    S: EventSource,
    P: Projection,
    P::Error: From<S::Error>,
{
    pub fn new(source: Arc<S>, projection: Arc<P>, health: ProjectionHealth) -> Self {
        Runner {
            source,
            projection,
            health,
            retrying: Arc::default(),
            backoff: (Duration::from_millis(50), Duration::from_secs(5)),
        }
    }

    /// Retries after a failure wait from `min`, doubling up to `max`.
    pub fn with_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.backoff = (min, max);
        self
    }

    pub fn projection(&self) -> &Arc<P> {
        &self.projection
    }

    /// Brings the projection up to the log (at start: a failure is the
    /// caller's, who cannot start without it).
    pub fn catch_up(&self) -> Result<u64, P::Error> {
        let read = catch_up(&*self.source, &*self.projection)?;
        if read > 0 {
            tracing::info!(
                projection = self.projection.name(),
                events = read,
                "{} caught up with {read} events",
                self.projection.name()
            );
        }
        Ok(read)
    }

    /// Folds a committed group; when events before it were missed (a gap
    /// after its position), folds the log up to it instead. A failure is
    /// handled here: logged, counted, and the retries started.
    pub fn on_commit(&self, group: &[EventEnvelope]) {
        if self.retrying.load(Ordering::Acquire) {
            return;
        }
        if let Err(e) = self.fold(group) {
            tracing::error!(
                projection = self.projection.name(),
                error = %e,
                "folding {} failed; retrying from the event log",
                self.projection.name()
            );
            self.retry();
        }
    }

    fn fold(&self, group: &[EventEnvelope]) -> Result<(), P::Error> {
        let position = self.projection.position()?;
        match group.first() {
            Some(first) if first.seq > position + 1 => {
                catch_up(&*self.source, &*self.projection).map(|_| ())
            }
            _ => self.projection.apply(group),
        }
    }

    /// Marks the projection lagging and folds it from the log on a thread of
    /// its own, with a backoff, until it succeeds.
    fn retry(&self) {
        self.health.failed(self.projection.name());
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        let runner = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("catch-up {}", self.projection.name()))
            .spawn(move || runner.retry_until_caught_up());
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a projection's catch-up thread");
            self.retrying.store(false, Ordering::Release);
        }
    }

    fn retry_until_caught_up(&self) {
        let name = self.projection.name();
        let mut backoff = Backoff::new(self.backoff.0, self.backoff.1);
        loop {
            if !backoff.wait_blocking_unless(STOP_CHECK, || self.health.stopping()) {
                tracing::info!(
                    projection = name,
                    "the service stops: {name} is not retried"
                );
                return;
            }
            match catch_up(&*self.source, &*self.projection) {
                Ok(_) => {
                    // Groups committed from here on are folded by the hook
                    // again; one committed between the catch-up's last read
                    // and this store is read by the next catch-up or gap.
                    self.retrying.store(false, Ordering::Release);
                    match catch_up(&*self.source, &*self.projection) {
                        Ok(_) => {
                            self.health.caught_up(name);
                            tracing::info!(projection = name, "{name} caught up again");
                            return;
                        }
                        Err(e) => {
                            tracing::error!(projection = name, error = %e, "folding {name} failed again");
                            self.health.failed(name);
                            if self.retrying.swap(true, Ordering::AcqRel) {
                                return;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(projection = name, error = %e, "folding {name} failed again");
                    self.health.failed(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
