//! The request index in sled (tree `request_log`), laid out for the query
//! and for cheap writes:
//!
//! - token id (16) ‖ `at` in ms (u64 BE) ‖ record id (16) → the rest of the
//!   record (versioned, see `StoredRecord` in `layout.rs`, which builds and
//!   reads every key and value). A token's records sit together in time
//!   order, so "newest first in a window" is one reverse range scan, and the
//!   key is the record's identity: indexing a record again (a redelivery, a
//!   republish) finds its key and changes nothing.
//! - token id ‖ the last ms of an hour (u64 BE) ‖ `0xFF` → request counts of
//!   that hour (total, 1xx–3xx, 4xx, 5xx), for the chart; the 25-byte key
//!   sorts right after the hour's last records. Only records new to the
//!   index are counted, through a journal written in the same atomic batch
//!   as the records and folded into these keys now and then (`counts.rs`),
//!   so a record is never counted twice or missed. Readers tell records,
//!   counts and journal entries (the nil token ‖ a sequence number) apart
//!   by key length.
//!
//! A token's last use is the newest of its records here, or, once those are
//! swept, what `token_last_used` (token id → ms, u64 BE) remembers: the
//! sweep writes it before deleting, and ingestion refreshes it at most once
//! a minute per token.
//!
//! - per token and hour, and per token and day, the insight counters (tree
//!   `request_insights`, see `insights.rs`): calls per scope, workspace and
//!   outcome and per client IP, journaled beside the hourly counts (the nil
//!   token ‖ seq ‖ `0x01`) and folded with them in one transaction over
//!   both trees.
//!
//! One writer at a time (ingest and the retention sweep take a lock); a
//! batch is flushed to disk before [`RequestIndex::ingest`] returns, which is
//! when the JetStream indexer acks it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use enspace_core::RequestRecord;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use ulid::Ulid;

pub use super::counts::Counts;
use super::counts::{self, JOURNAL_TOKEN, Pending, journal_key};
use super::insights::{self, BUILT_KEY, DAY, Deltas, HOUR, HourInsight, Summary, bucket_key};
use super::layout::HourKey;
pub use super::layout::{DAY_MS, HOUR_MS, Position, key_ms};
use super::layout::{
    RECORD_KEY, RecordKey, be_u64, be_ulid, decode_record, encode_record, hour_key, record_key,
    stored_call, stored_status, time_key,
};
use crate::IndexError;

pub const TREE: &str = "request_log";
/// Keys removed per sled batch by the sweep.
const SWEEP_CHUNK: usize = 10_000;
/// `token_last_used` is refreshed when it is this far behind.
const LAST_USED_STEP_MS: u64 = 60_000;
/// Tokens whose stored last use is remembered in memory, at most.
const LAST_USED_CACHE: usize = 100_000;

/// What one [`RequestIndex::ingest`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ingested {
    /// New records, now in the index.
    pub indexed: usize,
    /// Records already in the index (or twice in the batch): skipped.
    pub duplicates: usize,
    /// Records older than the retention: never indexed.
    pub expired: usize,
}

/// One stats bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start_ms: u64,
    pub counts: Counts,
}

#[derive(Clone)]
pub struct RequestIndex {
    db: sled::Db,
    tree: sled::Tree,
    last_used: sled::Tree,
    /// Ingest and sweep write one at a time; the map is `token_last_used`
    /// as last read or written, so that ingestion need not read it.
    writer: Arc<Mutex<HashMap<Ulid, u64>>>,
    /// Hourly counts journaled but not yet folded (see `counts.rs`).
    pending: Arc<Mutex<Pending>>,
    /// Which records the tree holds, mostly known without reading it
    /// (`known.rs`), to skip what is delivered again.
    known: Arc<Mutex<known::Known>>,
    /// Records API nodes dropped, per token and hour.
    pub drops: super::drops::DropCounts,
    /// The insight counters per token and hour; `None` when they are not
    /// kept (benchmarks of the index without them).
    insights: Option<sled::Tree>,
}

impl RequestIndex {
    /// Opens the index in its own database inside the data directory
    /// ([`crate::db::requests_sled_config`]), apart from the event store.
    pub fn open_in(data_dir: &std::path::Path) -> Result<Self, IndexError> {
        let db = crate::db::requests_sled_config(data_dir).open()?;
        let last_used = db.open_tree("token_last_used")?;
        Self::open(&db, last_used)
    }

    pub fn open(db: &sled::Db, last_used: sled::Tree) -> Result<Self, IndexError> {
        let tree = db.open_tree(TREE)?;
        let insight_tree = db.open_tree(insights::TREE)?;
        let mut pending = Pending::default();
        for item in tree.scan_prefix(JOURNAL_TOKEN) {
            let (key, value) = item?;
            let seq = be_u64(key.get(16..24).unwrap_or_default())?;
            match key.len() {
                24 => pending.add(seq, counts::decode_entry(&value)?),
                25 if key[24] == 0x01 => {
                    pending.add_insights(seq, insights::decode_entry(&value)?);
                }
                _ => return Err(IndexError::Corrupt("request index journal key".into())),
            }
        }
        if !insight_tree.contains_key(BUILT_KEY)? {
            build_insights(&tree, &insight_tree)?;
        }
        Ok(RequestIndex {
            db: db.clone(),
            tree,
            last_used,
            writer: Arc::new(Mutex::new(HashMap::new())),
            pending: Arc::new(Mutex::new(pending)),
            known: Arc::default(),
            drops: super::drops::DropCounts::open(db)?,
            insights: Some(insight_tree),
        })
    }

    /// The same index without insight counters: ingestion neither counts
    /// nor journals them (for benchmarks, as the index was before them).
    pub fn without_insights(mut self) -> Self {
        self.insights = None;
        self
    }

    /// Each token's client IPs, in this index's database.
    pub fn client_ips(&self) -> Result<super::client_ips::ClientIps, IndexError> {
        super::client_ips::ClientIps::open(&self.db)
    }

    /// The raw tree, for tools and benchmarks.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// The raw insight tree (if kept), for tools and benchmarks.
    pub fn insight_tree(&self) -> Option<&sled::Tree> {
        self.insights.as_ref()
    }

    /// The greatest record key of `token` in the tree (zeros: none).
    fn greatest_record_key(&self, token: Ulid) -> Result<RecordKey, IndexError> {
        for item in self.tree.scan_prefix(token.to_bytes()).rev() {
            let (key, _) = item?;
            if let Ok(key) = RecordKey::try_from(key.as_ref()) {
                return Ok(key);
            }
        }
        Ok([0; RECORD_KEY])
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Ulid, u64>> {
        self.writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds the journaled counts to the hourly count keys and removes the
    /// journal, in one atomic batch. Callers hold the writer lock.
    fn fold(&self) -> Result<(), IndexError> {
        let mut pending = self.pending();
        if pending.entries.is_empty() && pending.insight_entries.is_empty() {
            return Ok(());
        }
        if let Some(insight_tree) = &self.insights
            && !pending.insight_entries.is_empty()
        {
            self.fold_with_insights(&pending, insight_tree)?;
            pending.clear();
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (key, delta) in &pending.deltas {
            let mut counts = match self.tree.get(key)? {
                Some(bytes) => Counts::decode(&bytes)?,
                None => Counts::default(),
            };
            counts.add(*delta);
            batch.insert(&key[..], &counts.encode()[..]);
        }
        for seq in &pending.entries {
            batch.remove(&journal_key(*seq)[..]);
        }
        self.tree.apply_batch(batch)?;
        pending.clear();
        Ok(())
    }

    /// [`fold`](Self::fold) of counts and insights: one transaction over
    /// both trees (sled takes the same global write lock for a batch).
    fn fold_with_insights(
        &self,
        pending: &Pending,
        insight_tree: &sled::Tree,
    ) -> Result<(), IndexError> {
        use sled::Transactional;
        use sled::transaction::{ConflictableTransactionError, TransactionError};
        let abort = ConflictableTransactionError::Abort;
        let days = insights::days_of(&pending.insights);
        let done = (&self.tree, insight_tree).transaction(|(tree, hours)| {
            for (key, delta) in &pending.deltas {
                let mut counts = match tree.get(key)? {
                    Some(bytes) => Counts::decode(&bytes).map_err(abort)?,
                    None => Counts::default(),
                };
                counts.add(*delta);
                tree.insert(&key[..], &counts.encode()[..])?;
            }
            for seq in &pending.entries {
                tree.remove(&journal_key(*seq)[..])?;
            }
            for seq in &pending.insight_entries {
                tree.remove(&insights::journal_key(*seq)[..])?;
            }
            let spans = pending
                .insights
                .iter()
                .flat_map(|(token, deltas)| {
                    deltas
                        .iter()
                        .map(|(hour_ms, delta)| (bucket_key(*token, HOUR, *hour_ms), delta))
                })
                .chain(days.iter().map(|(key, delta)| (*key, delta)));
            for (key, delta) in spans {
                let value = match hours.get(key)? {
                    Some(bytes) => {
                        let mut stored = HourInsight::decode(&bytes).map_err(abort)?;
                        stored.merge(delta);
                        stored.encode()
                    }
                    None => delta.encode(),
                };
                hours.insert(&key[..], value)?;
            }
            Ok(())
        });
        done.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => IndexError::Sled(e),
        })
    }

    fn stored_last_used(&self, token: Ulid) -> Result<Option<u64>, IndexError> {
        self.last_used
            .get(token.to_bytes())?
            .map(|bytes| be_u64(&bytes))
            .transpose()
    }

    /// Writes a batch of records, skipping those already indexed and those
    /// older than `cutoff`, updates the hourly counts and each token's last
    /// use, and flushes to disk before returning.
    pub fn ingest(
        &self,
        records: &[RequestRecord],
        cutoff: Timestamp,
    ) -> Result<Ingested, IndexError> {
        let mut writer = self.lock();
        let outcome = self.apply(&mut writer, records, cutoff)?;
        self.finish(outcome, Ok(())).map(|(done, ())| done)
    }

    /// [`ingest`](Self::ingest), running `also` (more writes to this
    /// database, not flushed) on a thread of its own beside the records'
    /// writes, then the one flush that makes both durable. (A failure of
    /// the records' writes still waits for `also`, whose writes are then
    /// flushed with a later batch.)
    pub fn ingest_with<T: Send>(
        &self,
        records: &[RequestRecord],
        cutoff: Timestamp,
        also: impl FnOnce() -> Result<T, IndexError> + Send,
    ) -> Result<(Ingested, T), IndexError> {
        let mut writer = self.lock();
        let (outcome, also) = std::thread::scope(|scope| {
            let beside = scope.spawn(also);
            let outcome = self.apply(&mut writer, records, cutoff);
            let also = beside.join().unwrap_or_else(|_| {
                Err(IndexError::Corrupt(
                    "the writes beside the records stopped".into(),
                ))
            });
            (outcome, also)
        });
        self.finish(outcome?, also)
    }

    /// Flushes what a batch wrote, then folds the journal when it is due.
    /// Callers hold the writer lock.
    fn finish<T>(
        &self,
        outcome: Ingested,
        also: Result<T, IndexError>,
    ) -> Result<(Ingested, T), IndexError> {
        self.db.flush()?;
        // Folded now, durable with the next flush; until then the journal
        // entries it removes stay on disk, and so does the count.
        if self.pending().due() {
            self.fold()?;
        }
        Ok((outcome, also?))
    }

    /// A batch's writes, not flushed. Callers hold the writer lock
    /// (`known_last_used`).
    fn apply(
        &self,
        known_last_used: &mut HashMap<Ulid, u64>,
        records: &[RequestRecord],
        cutoff: Timestamp,
    ) -> Result<Ingested, IndexError> {
        let cutoff_ms = key_ms(cutoff);
        let mut outcome = Ingested::default();
        let mut batch = sled::Batch::default();
        let mut seen: HashSet<RecordKey> = HashSet::with_capacity(records.len());
        let mut hourly: HashMap<HourKey, Counts> = HashMap::new();
        let mut newest: HashMap<Ulid, u64> = HashMap::new();
        let mut insight_deltas = Deltas::new();
        let counting = self.insights.is_some();
        let mut known = self
            .known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.make_room(records.len());
        for r in records {
            let at_ms = key_ms(r.at);
            let seen_at = newest.entry(r.token_id).or_default();
            *seen_at = (*seen_at).max(at_ms);
            if at_ms < cutoff_ms {
                outcome.expired += 1;
                continue;
            }
            let key = record_key(r.token_id, at_ms, r.id);
            if seen.contains(&key)
                || known.holds(r.token_id, &key, &self.tree, || {
                    self.greatest_record_key(r.token_id)
                })?
            {
                outcome.duplicates += 1;
                continue;
            }
            seen.insert(key);
            batch.insert(&key[..], encode_record(r)?);
            hourly
                .entry(hour_key(r.token_id, at_ms - at_ms % HOUR_MS))
                .or_default()
                .add_status(r.status);
            if counting {
                insight_deltas
                    .entry(r.token_id)
                    .or_default()
                    .entry(at_ms - at_ms % HOUR_MS)
                    .or_default()
                    .add_record(r, at_ms);
            }
            outcome.indexed += 1;
        }
        let seq = self.pending().next_seq;
        if !hourly.is_empty() {
            batch.insert(&journal_key(seq)[..], counts::encode_entry(&hourly));
        }
        if !insight_deltas.is_empty() {
            batch.insert(
                &insights::journal_key(seq)[..],
                insights::encode_entry(&insight_deltas),
            );
        }
        // Records, their counts and their insights land together or not at all.
        self.tree.apply_batch(batch)?;
        known.wrote(seen);
        drop(known);
        if !hourly.is_empty() {
            self.pending().add(seq, hourly);
        }
        if !insight_deltas.is_empty() {
            self.pending().add_insights(seq, insight_deltas);
        }
        // The last use is exact from the records themselves; the tree only
        // has to keep up to within a minute (and exactly, by the sweep).
        let mut used = sled::Batch::default();
        if known_last_used.len() > LAST_USED_CACHE {
            known_last_used.clear();
        }
        for (token, at_ms) in newest {
            let stored = match known_last_used.get(&token) {
                Some(ms) => Some(*ms),
                None => self.stored_last_used(token)?,
            };
            if stored.is_none_or(|ms| at_ms >= ms + LAST_USED_STEP_MS) {
                used.insert(&token.to_bytes()[..], &at_ms.to_be_bytes()[..]);
                known_last_used.insert(token, at_ms);
            } else if let Some(ms) = stored {
                known_last_used.insert(token, ms);
            }
        }
        self.last_used.apply_batch(used)?;
        Ok(outcome)
    }

    /// Records drop counts from API nodes, durably.
    pub fn record_drops(
        &self,
        drops: &[enspace_core::record::DroppedRecords],
    ) -> Result<(), IndexError> {
        self.drops.record(drops)?;
        self.db.flush()?;
        Ok(())
    }

    /// Records in the whole index.
    /// Writes everything indexed so far to disk.
    pub async fn flush(&self) -> Result<(), IndexError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

/// Builds the insight counters from the records already indexed (an index
/// from before they existed), then marks the tree built. Runs once, at open,
/// before anything is ingested; a crash half-way starts it again.
fn build_insights(tree: &sled::Tree, hours: &sled::Tree) -> Result<(), IndexError> {
    hours.clear()?;
    let mut built: HashMap<insights::BucketKey, HourInsight> = HashMap::new();
    let mut records = 0u64;
    let write = |built: &mut HashMap<insights::BucketKey, HourInsight>| -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for (key, hour) in built.drain() {
            let value = match hours.get(key)? {
                Some(bytes) => {
                    let mut stored = HourInsight::decode(&bytes)?;
                    stored.merge(&hour);
                    stored.encode()
                }
                None => hour.encode(),
            };
            batch.insert(&key[..], value);
        }
        hours.apply_batch(batch)?;
        Ok(())
    };
    for item in tree.iter() {
        let (key, value) = item?;
        if key.len() != RECORD_KEY || key[0..16] == JOURNAL_TOKEN {
            continue;
        }
        let record = decode_record(&key, &value)?;
        let at_ms = key_ms(record.at);
        for (span, start) in [
            (HOUR, at_ms - at_ms % HOUR_MS),
            (DAY, at_ms - at_ms % DAY_MS),
        ] {
            built
                .entry(bucket_key(record.token_id, span, start))
                .or_default()
                .add_record(&record, at_ms);
        }
        records += 1;
        if built.len() >= counts::FOLD_AFTER_HOURS {
            write(&mut built)?;
        }
    }
    write(&mut built)?;
    hours.insert(BUILT_KEY, &[][..])?;
    hours.flush()?;
    if records > 0 {
        tracing::info!(
            records,
            "built the request insights from {records} request records already indexed"
        );
    }
    Ok(())
}

/// The exclusive upper end of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Upper {
    /// Before this time (the window's `to`).
    To(u64),
    /// Before this record (a cursor's position).
    Before(Position),
}

#[cfg(test)]
impl RequestIndex {
    fn lock_and_fold(&self) {
        let _writer = self.lock();
        self.fold().expect("fold");
    }
}

mod known;
mod query;
mod sweep;
#[cfg(test)]
mod tests;
