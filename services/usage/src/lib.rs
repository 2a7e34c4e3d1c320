//! Request logs: the sled index of every token's request
//! records, the [`Indexer`] that fills it, the retention sweep, and the
//! opaque paging cursor.
//!
//! The indexer has two ways in, one module each: [`jetstream`], the durable
//! consumer on `ENSPACE_REQUESTS` (records and drop counts published by API
//! nodes), and [`embedded`], which drains an API node's in-process queue
//! (`enspace serve` without NATS). Both batch by [`MAX_BATCH`] and
//! [`MIN_WRITE_INTERVAL`] and end in [`Indexer::ingest`]: a batch is written
//! (idempotently, keyed by token, time and record id) and flushed to disk
//! before it is acknowledged, so a record handed over is never lost by the
//! index and never counted twice. Records are brought within the bounds of
//! `enspace_core::record_bounds` before they are written, whichever node
//! sent them.
//!
//! Reads go through [`reads::UsageReads`]: a token's records are read here
//! when this process serves its partition ([`ownership`]), and otherwise
//! asked of a process that does, over NATS.

pub mod client_ips;
mod counts;
pub mod cursor;
pub mod db;
pub mod drops;
pub mod embedded;
mod error;
pub mod index;
pub mod insights;
pub mod jetstream;
mod layout;
pub mod ownership;
pub mod partitioned;
pub mod reads;

use std::sync::Arc;
use std::time::Duration;

use enspace_core::record::DroppedRecords;
use enspace_core::{Clock, RequestRecord};
use jiff::{SignedDuration, Timestamp};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

pub use error::IndexError;
pub use index::{Ingested, RequestIndex};

/// Most records written in one batch (one sled flush).
pub const MAX_BATCH: usize = 5000;
/// Least time between the starts of two batch writes, unless a batch is
/// full. Every write ends in a flush, and a flush costs sled's I/O threads
/// about the same however few records it carries: at 10,000 records/s,
/// writing whatever had arrived meant a hundred flushes a second and a
/// third of the process's CPU in them. Records become visible at most this
/// much later.
pub const MIN_WRITE_INTERVAL: Duration = Duration::from_millis(50);

/// The indexer's counters (`/metrics`).
#[derive(Clone, Default)]
pub struct IndexerMetrics {
    pub indexed: Counter,
    pub duplicates: Counter,
    pub expired: Counter,
    pub undecodable: Counter,
    pub swept: Counter,
}

impl IndexerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = IndexerMetrics::default();
        registry.register(
            "enspace_request_records_indexed",
            "Request records written to the request index",
            m.indexed.clone(),
        );
        registry.register(
            "enspace_request_records_duplicate",
            "Request records delivered again and skipped (already indexed)",
            m.duplicates.clone(),
        );
        registry.register(
            "enspace_request_records_expired",
            "Request records older than the retention on arrival, not indexed",
            m.expired.clone(),
        );
        registry.register(
            "enspace_request_records_undecodable",
            "Request-record messages (records or batches) refused as undecodable or inconsistent (terminated)",
            m.undecodable.clone(),
        );
        registry.register(
            "enspace_request_records_swept",
            "Request records deleted from the index by the retention sweep",
            m.swept.clone(),
        );
        m
    }
}

/// The request index with its retention and clock: what both ways in (the
/// JetStream consumer, the embedded queue) and the sweep share.
#[derive(Clone)]
pub struct Indexer {
    pub index: RequestIndex,
    pub clock: Arc<dyn Clock>,
    pub retention: SignedDuration,
    pub metrics: IndexerMetrics,
    /// Each token's client IPs, and who to tell about a new one.
    new_ips: Option<(client_ips::ClientIps, NewIpHook)>,
    /// Who to tell of calls answered `401` (a decoy's use is one).
    unauthorized: Option<UnauthorizedHook>,
}

/// Told of the tokens' new client IPs once a batch is indexed.
pub type NewIpHook = Arc<dyn Fn(Vec<client_ips::NewClientIp>) + Send + Sync>;

/// Told of the calls answered `401` once their batch is indexed (the uses
/// of decoys are among them: an API node answers a decoy as an unknown
/// token, and records the call under the decoy).
pub type UnauthorizedHook = Arc<dyn Fn(&[&RequestRecord]) + Send + Sync>;

impl Indexer {
    pub fn new(
        index: RequestIndex,
        clock: Arc<dyn Clock>,
        retention: SignedDuration,
        metrics: IndexerMetrics,
    ) -> Self {
        Indexer {
            index,
            clock,
            retention,
            metrics,
            new_ips: None,
            unauthorized: None,
        }
    }

    /// Also remembers each token's client IPs (in `ips`) and tells `hook`
    /// of every new one (see [`client_ips`]).
    pub fn telling_new_client_ips(mut self, ips: client_ips::ClientIps, hook: NewIpHook) -> Self {
        self.new_ips = Some((ips, hook));
        self
    }

    /// Also tells `hook` of every call answered `401`, once indexed.
    pub fn telling_unauthorized_calls(mut self, hook: UnauthorizedHook) -> Self {
        self.unauthorized = Some(hook);
        self
    }

    /// Records before this instant are past the retention.
    pub fn cutoff(&self) -> Timestamp {
        retention_cutoff(self.clock.now(), self.retention)
    }

    /// Indexes a batch durably (off the async threads) and hands it back.
    pub async fn ingest(
        &self,
        records: Vec<RequestRecord>,
    ) -> (Vec<RequestRecord>, Result<Ingested, IndexError>) {
        match self.spawn_ingest(records).await {
            Ok(done) => done,
            Err(e) => (
                Vec::new(),
                Err(IndexError::Corrupt(format!(
                    "index writer task failed: {e}"
                ))),
            ),
        }
    }

    /// Starts indexing a batch on a blocking thread; the handle resolves
    /// once it is flushed (and counted in the metrics), with the batch.
    pub fn spawn_ingest(
        &self,
        records: Vec<RequestRecord>,
    ) -> tokio::task::JoinHandle<(Vec<RequestRecord>, Result<Ingested, IndexError>)> {
        let index = self.index.clone();
        let metrics = self.metrics.clone();
        let cutoff = self.cutoff();
        let new_ips = self.new_ips.clone();
        let unauthorized = self.unauthorized.clone();
        let retention_ms = u64::try_from(self.retention.as_millis()).unwrap_or(u64::MAX);
        let mut records = records;
        tokio::task::spawn_blocking(move || {
            // Whatever a node sent, the index keeps records within bounds.
            records.iter_mut().for_each(RequestRecord::bound);
            let cutoff_ms = u64::try_from(cutoff.as_millisecond()).unwrap_or(0);
            // A token's new client IPs are remembered in the flush that
            // makes its records durable, and told once both are.
            let result = match &new_ips {
                Some((ips, _)) => index.ingest_with(&records, cutoff, || {
                    Ok(ips
                        .observe(&records, cutoff_ms, retention_ms)
                        .unwrap_or_else(|e| {
                            tracing::error!(error = %e, "noting the tokens' client IPs failed");
                            Vec::new()
                        }))
                }),
                None => index
                    .ingest(&records, cutoff)
                    .map(|done| (done, Vec::new())),
            };
            let result = match result {
                Ok((done, new)) => {
                    metrics.indexed.inc_by(done.indexed as u64);
                    metrics.duplicates.inc_by(done.duplicates as u64);
                    metrics.expired.inc_by(done.expired as u64);
                    if let Some((_, hook)) = &new_ips
                        && !new.is_empty()
                    {
                        hook(new);
                    }
                    if let Some(hook) = unauthorized {
                        let refused: Vec<&RequestRecord> =
                            records.iter().filter(|r| r.status == 401).collect();
                        if !refused.is_empty() {
                            hook(&refused);
                        }
                    }
                    Ok(done)
                }
                Err(e) => Err(e),
            };
            (records, result)
        })
    }

    /// Records API nodes' counts of the records they dropped (off the async
    /// threads), flushed before it returns; logs each.
    pub async fn record_drops(&self, drops: Vec<DroppedRecords>) -> Result<(), IndexError> {
        let index = self.index.clone();
        let written = tokio::task::spawn_blocking(move || {
            let result = index.record_drops(&drops);
            (drops, result)
        })
        .await;
        match written {
            Ok((drops, Ok(()))) => {
                for d in &drops {
                    tracing::warn!(token.id = %d.token_id, node = %d.node, records = d.count,
                        "node {} dropped {} request records of token {} made in the hour from {}",
                        d.node, d.count, d.token_id, d.hour);
                }
                Ok(())
            }
            Ok((_, Err(e))) => Err(e),
            Err(e) => Err(IndexError::Corrupt(format!(
                "drop count writer task failed: {e}"
            ))),
        }
    }

    /// How often the sweep runs: a tenth of the retention, between 200 ms
    /// and a minute.
    pub fn sweep_interval(&self) -> Duration {
        let tenth = self.retention.unsigned_abs() / 10;
        tenth.clamp(Duration::from_millis(200), Duration::from_secs(60))
    }

    /// Deletes index entries past the retention, forever, every
    /// [`sweep_interval`](Self::sweep_interval).
    pub async fn sweep_forever(self) {
        let mut tick = tokio::time::interval(self.sweep_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.sweep_once().await;
        }
    }

    /// One sweep; returns the records deleted.
    pub async fn sweep_once(&self) -> u64 {
        let index = self.index.clone();
        let cutoff = self.cutoff();
        match tokio::task::spawn_blocking(move || index.sweep(cutoff)).await {
            Ok(Ok(0)) => 0,
            Ok(Ok(n)) => {
                self.metrics.swept.inc_by(n);
                tracing::info!(
                    records = n,
                    cutoff = %cutoff,
                    "retention sweep deleted {n} request records older than {cutoff}"
                );
                n
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "retention sweep of the request index failed");
                0
            }
            Err(e) => {
                tracing::error!(error = %e, "retention sweep task failed");
                0
            }
        }
    }
}

/// `now - retention`, or the beginning of time if that underflows.
pub fn retention_cutoff(now: Timestamp, retention: SignedDuration) -> Timestamp {
    now.checked_sub(retention).unwrap_or(Timestamp::MIN)
}
