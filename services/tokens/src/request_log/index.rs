//! The request index in sled (tree `request_log`), laid out for the query
//! and for cheap writes:
//!
//! - token id (16) ‖ `at` in ms (u64 BE) ‖ record id (16) → the rest of the
//!   record (versioned, see [`StoredRecord`]). A token's records sit
//!   together in time order, so "newest first in a window" is one reverse
//!   range scan, and the key is the record's identity: indexing a record
//!   again (a redelivery, a republish) finds its key and changes nothing.
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
use super::counts::{self, HOUR_KEY, HourKey, JOURNAL_TOKEN, Pending, journal_key};
use crate::store_error::StoreError;

pub const TREE: &str = "request_log";
pub const HOUR_MS: u64 = 3_600_000;
pub const DAY_MS: u64 = 24 * HOUR_MS;
/// Keys removed per sled batch by the sweep.
const SWEEP_CHUNK: usize = 10_000;
/// `token_last_used` is refreshed when it is this far behind.
const LAST_USED_STEP_MS: u64 = 60_000;
/// Tokens whose stored last use is remembered in memory, at most.
const LAST_USED_CACHE: usize = 100_000;

const RECORD_KEY: usize = 40;
type RecordKey = [u8; RECORD_KEY];

fn record_key(token: Ulid, at_ms: u64, id: Ulid) -> RecordKey {
    let mut key = [0u8; RECORD_KEY];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&at_ms.to_be_bytes());
    key[24..40].copy_from_slice(&id.to_bytes());
    key
}

/// The counts key of the hour starting at `hour_ms`.
fn hour_key(token: Ulid, hour_ms: u64) -> HourKey {
    let mut key = [0u8; HOUR_KEY];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&(hour_ms + HOUR_MS - 1).to_be_bytes());
    key[24] = 0xFF;
    key
}

/// The smallest key of `token` at or after `at_ms`.
fn time_key(token: Ulid, at_ms: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[0..16].copy_from_slice(&token.to_bytes());
    key[16..24].copy_from_slice(&at_ms.to_be_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> Result<u64, StoreError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("request index key".into()))?;
    Ok(u64::from_be_bytes(array))
}

fn be_ulid(bytes: &[u8]) -> Result<Ulid, StoreError> {
    let array: [u8; 16] = bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("request index key".into()))?;
    Ok(Ulid::from_bytes(array))
}

/// A position in a token's records: the key of a record, as (`at`, id).
/// Records strictly before it come next when paging newest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub at_ms: u64,
    pub id: Ulid,
}

/// What the key does not already hold of a record, as a MessagePack array
/// whose first element is the layout's version: positional (no field names)
/// to keep the index small, versioned so that a later layout can be read
/// beside this one. Version 1 is below; a new field means version 2 and a
/// second decoder, never a change to this one.
#[derive(Serialize, Deserialize)]
struct StoredRecord {
    version: u8,
    user_id: String,
    node: String,
    method: String,
    path: String,
    workspace: Option<String>,
    status: u16,
    duration_ms: f64,
    client_ip: String,
    user_agent: Option<String>,
}

const STORED_VERSION: u8 = 1;

fn encode_record(r: &RequestRecord) -> Result<Vec<u8>, StoreError> {
    rmp_serde::to_vec(&StoredRecord {
        version: STORED_VERSION,
        user_id: r.user_id.clone(),
        node: r.node.clone(),
        method: r.method.clone(),
        path: r.path.clone(),
        workspace: r.workspace.clone(),
        status: r.status,
        duration_ms: r.duration_ms,
        client_ip: r.client_ip.clone(),
        user_agent: r.user_agent.clone(),
    })
    .map_err(|e| StoreError::Corrupt(format!("encode request record: {e}")))
}

fn decode_record(key: &[u8], value: &[u8]) -> Result<RequestRecord, StoreError> {
    if key.len() != RECORD_KEY {
        return Err(StoreError::Corrupt("request index key".into()));
    }
    let stored: StoredRecord = rmp_serde::from_slice(value)
        .map_err(|e| StoreError::Corrupt(format!("request record: {e}")))?;
    if stored.version != STORED_VERSION {
        return Err(StoreError::Corrupt(format!(
            "request record layout version {}",
            stored.version
        )));
    }
    let at_ms = be_u64(&key[16..24])?;
    Ok(RequestRecord {
        id: be_ulid(&key[24..40])?,
        token_id: be_ulid(&key[0..16])?,
        user_id: stored.user_id,
        at: Timestamp::from_millisecond(at_ms as i64)
            .map_err(|_| StoreError::Corrupt("request time".into()))?,
        node: stored.node,
        method: stored.method,
        path: stored.path,
        workspace: stored.workspace,
        status: stored.status,
        duration_ms: stored.duration_ms,
        client_ip: stored.client_ip,
        user_agent: stored.user_agent,
    })
}

/// The status of a stored record, without decoding its strings.
fn stored_status(value: &[u8]) -> Result<u16, StoreError> {
    struct StatusOnly;
    impl<'de> serde::de::Visitor<'de> for StatusOnly {
        type Value = (u8, u16);
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a stored request record")
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<(u8, u16), A::Error> {
            use serde::de::{Error, IgnoredAny};
            let version: u8 = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(0, &self))?;
            for i in 1..6 {
                seq.next_element::<IgnoredAny>()?
                    .ok_or_else(|| A::Error::invalid_length(i, &self))?;
            }
            let status: u16 = seq
                .next_element()?
                .ok_or_else(|| A::Error::invalid_length(6, &self))?;
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok((version, status))
        }
    }
    let mut de = rmp_serde::Deserializer::from_read_ref(value);
    let (version, status) = serde::Deserializer::deserialize_seq(&mut de, StatusOnly)
        .map_err(|e| StoreError::Corrupt(format!("request record: {e}")))?;
    if version != STORED_VERSION {
        return Err(StoreError::Corrupt(format!(
            "request record layout version {version}"
        )));
    }
    Ok(status)
}

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// Records API nodes dropped, per token and hour.
    pub drops: super::drops::DropCounts,
}

/// `ms` as an unsigned key part; times before 1970 clamp to 0.
pub fn key_ms(ts: Timestamp) -> u64 {
    u64::try_from(ts.as_millisecond()).unwrap_or(0)
}

impl RequestIndex {
    /// Opens the index in its own database inside the data directory
    /// ([`crate::store::requests_sled_config`]), apart from the event store.
    pub fn open_in(data_dir: &std::path::Path) -> Result<Self, StoreError> {
        let db = crate::store::requests_sled_config(data_dir).open()?;
        let last_used = db.open_tree("token_last_used")?;
        Self::open(&db, last_used)
    }

    pub fn open(db: &sled::Db, last_used: sled::Tree) -> Result<Self, StoreError> {
        let tree = db.open_tree(TREE)?;
        let mut pending = Pending::default();
        for item in tree.range(journal_key(0)..=journal_key(u64::MAX)) {
            let (key, value) = item?;
            pending.add(
                be_u64(key.get(16..).unwrap_or_default())?,
                counts::decode_entry(&value)?,
            );
        }
        Ok(RequestIndex {
            db: db.clone(),
            tree,
            last_used,
            writer: Arc::new(Mutex::new(HashMap::new())),
            pending: Arc::new(Mutex::new(pending)),
            drops: super::drops::DropCounts::open(db)?,
        })
    }

    /// The raw tree, for tools and benchmarks.
    pub fn tree(&self) -> &sled::Tree {
        &self.tree
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
    fn fold(&self) -> Result<(), StoreError> {
        let mut pending = self.pending();
        if pending.entries.is_empty() {
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

    fn stored_last_used(&self, token: Ulid) -> Result<Option<u64>, StoreError> {
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
    ) -> Result<Ingested, StoreError> {
        let mut known_last_used = self.lock();
        let cutoff_ms = key_ms(cutoff);
        let mut outcome = Ingested::default();
        let mut batch = sled::Batch::default();
        let mut seen: HashSet<RecordKey> = HashSet::with_capacity(records.len());
        let mut hourly: HashMap<HourKey, Counts> = HashMap::new();
        let mut newest: HashMap<Ulid, u64> = HashMap::new();
        for r in records {
            let at_ms = key_ms(r.at);
            let seen_at = newest.entry(r.token_id).or_default();
            *seen_at = (*seen_at).max(at_ms);
            if at_ms < cutoff_ms {
                outcome.expired += 1;
                continue;
            }
            let key = record_key(r.token_id, at_ms, r.id);
            if !seen.insert(key) || self.tree.contains_key(key)? {
                outcome.duplicates += 1;
                continue;
            }
            batch.insert(&key[..], encode_record(r)?);
            hourly
                .entry(hour_key(r.token_id, at_ms - at_ms % HOUR_MS))
                .or_default()
                .add_status(r.status);
            outcome.indexed += 1;
        }
        let seq = self.pending().next_seq;
        if !hourly.is_empty() {
            batch.insert(&journal_key(seq)[..], counts::encode_entry(&hourly));
        }
        // Records and their counts land together or not at all.
        self.tree.apply_batch(batch)?;
        if !hourly.is_empty() {
            self.pending().add(seq, hourly);
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
        self.db.flush()?;
        // Folded now, durable with the next flush; until then the journal
        // entries it removes stay on disk, and so does the count.
        if self.pending().due() {
            self.fold()?;
        }
        Ok(outcome)
    }

    /// When `token` was last used: its newest record, or what was
    /// remembered of records already swept.
    pub fn last_used(&self, token: Ulid) -> Result<Option<Timestamp>, StoreError> {
        let mut newest = self.stored_last_used(token)?;
        let lo = time_key(token, 0);
        let hi = time_key(token, u64::MAX);
        for item in self.tree.range(lo..=hi).rev() {
            let (key, _) = item?;
            if key.len() == RECORD_KEY {
                let at_ms = be_u64(&key[16..24])?;
                newest = Some(newest.map_or(at_ms, |ms| ms.max(at_ms)));
                break;
            }
        }
        Ok(newest.and_then(|ms| Timestamp::from_millisecond(i64::try_from(ms).ok()?).ok()))
    }

    /// Up to `limit` records of `token` with `from_ms <= at`, strictly
    /// before `upper` (a position) or before `to_ms`, newest first; and the
    /// position to continue from when more remain.
    pub fn query(
        &self,
        token: Ulid,
        from_ms: u64,
        upper: Upper,
        limit: usize,
    ) -> Result<(Vec<RequestRecord>, Option<Position>), StoreError> {
        let lo = record_key(token, from_ms, Ulid::nil());
        let hi = match upper {
            Upper::Before(p) => record_key(token, p.at_ms, p.id),
            Upper::To(to_ms) => record_key(token, to_ms, Ulid::nil()),
        };
        if lo >= hi {
            return Ok((Vec::new(), None));
        }
        let mut out = Vec::with_capacity(limit.min(1024));
        let mut more = false;
        for item in self.tree.range(lo..hi).rev() {
            let (key, value) = item?;
            if key.len() != RECORD_KEY {
                continue;
            }
            if out.len() == limit {
                more = true;
                break;
            }
            out.push(decode_record(&key, &value)?);
        }
        let next = match (more, out.last()) {
            (true, Some(last)) => Some(Position {
                at_ms: key_ms(last.at),
                id: last.id,
            }),
            _ => None,
        };
        Ok((out, next))
    }

    /// Counts per bucket of `bucket_ms` (an hour or a day, aligned to UTC),
    /// covering `[from_ms, to_ms)`; each bucket counts only the records of
    /// the window. Whole hours come from the hourly counts (one lookup
    /// each); the partial hours at either edge are counted from the records.
    pub fn stats(
        &self,
        token: Ulid,
        from_ms: u64,
        to_ms: u64,
        bucket_ms: u64,
    ) -> Result<Vec<Bucket>, StoreError> {
        if from_ms >= to_ms || bucket_ms == 0 || !bucket_ms.is_multiple_of(HOUR_MS) {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        // Held throughout, so that no fold moves counts under the reader.
        let pending = self.pending();
        let mut start = from_ms - from_ms % bucket_ms;
        while start < to_ms {
            let (a, e) = (start.max(from_ms), (start + bucket_ms).min(to_ms));
            let mut counts = Counts::default();
            let mut hour = a - a % HOUR_MS;
            while hour < e {
                let (ha, he) = (hour.max(a), (hour + HOUR_MS).min(e));
                if ha == hour && he == hour + HOUR_MS {
                    let key = hour_key(token, hour);
                    if let Some(bytes) = self.tree.get(key)? {
                        counts.add(Counts::decode(&bytes)?);
                    }
                    counts.add(pending.get(&key));
                } else {
                    counts.add(self.count_records(token, ha, he)?);
                }
                hour += HOUR_MS;
            }
            out.push(Bucket {
                start_ms: start,
                counts,
            });
            start += bucket_ms;
        }
        Ok(out)
    }

    fn count_records(&self, token: Ulid, from_ms: u64, to_ms: u64) -> Result<Counts, StoreError> {
        let mut counts = Counts::default();
        for item in self
            .tree
            .range(time_key(token, from_ms)..time_key(token, to_ms))
        {
            let (key, value) = item?;
            if key.len() == RECORD_KEY {
                counts.add_status(stored_status(&value)?);
            }
        }
        Ok(counts)
    }

    /// Deletes every record with `at` before `cutoff`, and the counts of
    /// hours that ended by then, remembering each token's last use first;
    /// returns how many records went. One seek per token, then its oldest keys.
    pub fn sweep(&self, cutoff: Timestamp) -> Result<u64, StoreError> {
        let mut known_last_used = self.lock();
        // The hours about to go must not come back from the journal.
        self.fold()?;
        let cutoff_ms = key_ms(cutoff);
        let mut removed = 0u64;
        let mut seek: Vec<u8> = JOURNAL_TOKEN.to_vec();
        seek.push(0xFF);
        loop {
            let Some(item) = self.tree.range(seek.as_slice()..).next() else {
                break;
            };
            let (key, _) = item?;
            let token = be_ulid(key.get(0..16).unwrap_or_default())?;
            let (lo, hi) = (time_key(token, 0), time_key(token, cutoff_ms));
            let mut newest_swept: Option<u64> = None;
            loop {
                let mut batch = sled::Batch::default();
                let mut n = 0;
                for item in self.tree.range(lo..hi).take(SWEEP_CHUNK) {
                    let (key, _) = item?;
                    if key.len() == RECORD_KEY {
                        removed += 1;
                        let at_ms = be_u64(&key[16..24])?;
                        newest_swept = Some(newest_swept.map_or(at_ms, |ms| ms.max(at_ms)));
                    }
                    batch.remove(key);
                    n += 1;
                }
                if n == 0 {
                    break;
                }
                if let Some(at_ms) = newest_swept
                    && self.stored_last_used(token)?.is_none_or(|ms| ms < at_ms)
                {
                    self.last_used
                        .insert(token.to_bytes(), &at_ms.to_be_bytes()[..])?;
                    known_last_used.insert(token, at_ms);
                }
                self.tree.apply_batch(batch)?;
            }
            // Next token: the smallest key above every key of this one.
            match u128::from(token).checked_add(1) {
                Some(next) => seek = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        let counts_removed = self.drops.sweep(cutoff_ms)?;
        if removed > 0 || counts_removed > 0 {
            self.db.flush()?;
        }
        Ok(removed)
    }

    /// Records in the index for `token` (all of them; for tests and tools).
    pub fn count(&self, token: Ulid) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.tree.scan_prefix(token.to_bytes()) {
            let (key, _) = item?;
            n += usize::from(key.len() == RECORD_KEY);
        }
        Ok(n)
    }

    /// Records drop counts from API nodes, durably.
    pub fn record_drops(
        &self,
        drops: &[enspace_core::record::DroppedRecords],
    ) -> Result<(), StoreError> {
        self.drops.record(drops)?;
        self.db.flush()?;
        Ok(())
    }

    /// Records in the whole index.
    pub fn len(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for item in self.tree.iter() {
            let (key, _) = item?;
            n += usize::from(key.len() == RECORD_KEY);
        }
        Ok(n)
    }

    pub fn is_empty(&self) -> Result<bool, StoreError> {
        for item in self.tree.iter() {
            let (key, _) = item?;
            if key.len() == RECORD_KEY {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The exclusive upper end of a query.
#[derive(Debug, Clone, Copy)]
pub enum Upper {
    /// Before this time (the window's `to`).
    To(u64),
    /// Before this record (a cursor's position).
    Before(Position),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> RequestIndex {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .expect("temp sled");
        let last_used = db.open_tree("token_last_used").expect("tree");
        RequestIndex::open(&db, last_used).expect("index")
    }

    fn record(token: Ulid, at_ms: i64, status: u16) -> RequestRecord {
        RequestRecord {
            id: Ulid::new(),
            token_id: token,
            user_id: "alice".into(),
            at: Timestamp::from_millisecond(at_ms).expect("ts"),
            node: "node-1".into(),
            method: "GET".into(),
            path: "/api/v1/workspaces/acme/records".into(),
            workspace: Some("acme".into()),
            status,
            duration_ms: 0.125,
            client_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
        }
    }

    const T0: i64 = 1_790_000_000_000 - 1_790_000_000_000 % HOUR_MS as i64;

    #[test]
    fn a_record_round_trips_and_is_indexed_once() {
        let idx = index();
        let token = Ulid::new();
        let r = record(token, T0 + 5, 200);
        let cutoff = Timestamp::UNIX_EPOCH;
        let first = idx.ingest(&[r.clone(), r.clone()], cutoff).expect("ingest");
        assert_eq!((first.indexed, first.duplicates), (1, 1));
        let again = idx.ingest(std::slice::from_ref(&r), cutoff).expect("again");
        assert_eq!((again.indexed, again.duplicates), (0, 1));
        let (got, next) = idx.query(token, 0, Upper::To(u64::MAX), 10).expect("query");
        assert_eq!(got, vec![r]);
        assert_eq!(next, None);
        let buckets = idx
            .stats(token, T0 as u64, T0 as u64 + HOUR_MS, HOUR_MS)
            .expect("stats");
        assert_eq!(buckets[0].counts.total, 1, "counted once");
    }

    #[test]
    fn paging_is_newest_first_and_exact() {
        let idx = index();
        let token = Ulid::new();
        let records: Vec<_> = (0..25).map(|i| record(token, T0 + i / 3, 200)).collect();
        idx.ingest(&records, Timestamp::UNIX_EPOCH).expect("ingest");
        let mut seen = Vec::new();
        let mut upper = Upper::To(u64::MAX);
        loop {
            let (page, next) = idx.query(token, 0, upper, 4).expect("query");
            seen.extend(page);
            match next {
                Some(p) => upper = Upper::Before(p),
                None => break,
            }
        }
        let mut want = records.clone();
        want.sort_by_key(|r| std::cmp::Reverse((r.at, r.id)));
        assert_eq!(seen, want);
    }

    #[test]
    fn stats_split_by_class_and_respect_partial_edges() {
        let idx = index();
        let token = Ulid::new();
        let h = HOUR_MS as i64;
        let records = vec![
            record(token, T0 + 10, 200),
            record(token, T0 + h / 2, 404),
            record(token, T0 + h + 1, 503),
            record(token, T0 + 2 * h + 7, 301),
            record(Ulid::new(), T0 + 11, 200),
        ];
        idx.ingest(&records, Timestamp::UNIX_EPOCH).expect("ingest");
        let t0 = T0 as u64;
        let b = idx
            .stats(token, t0, t0 + 3 * HOUR_MS, HOUR_MS)
            .expect("stats");
        let totals: Vec<_> = b.iter().map(|b| b.counts).collect();
        assert_eq!(
            totals,
            [
                Counts {
                    total: 2,
                    success: 1,
                    client_error: 1,
                    server_error: 0
                },
                Counts {
                    total: 1,
                    success: 0,
                    client_error: 0,
                    server_error: 1
                },
                Counts {
                    total: 1,
                    success: 1,
                    client_error: 0,
                    server_error: 0
                },
            ]
        );
        // A window starting mid-hour counts only what it covers.
        let b = idx
            .stats(token, t0 + 11, t0 + 2 * HOUR_MS, DAY_MS)
            .expect("stats");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].start_ms, t0 - t0 % DAY_MS);
        assert_eq!(b[0].counts.total, 2);
    }

    #[test]
    fn the_sweep_deletes_records_and_counts_before_the_cutoff() {
        let idx = index();
        let (a, b) = (Ulid::new(), Ulid::new());
        let h = HOUR_MS as i64;
        idx.ingest(
            &[
                record(a, T0, 200),
                record(a, T0 + 2 * h, 200),
                record(b, T0 + 1, 200),
                record(b, T0 + 3 * h, 200),
            ],
            Timestamp::UNIX_EPOCH,
        )
        .expect("ingest");
        let cutoff = Timestamp::from_millisecond(T0 + h + 5).expect("ts");
        assert_eq!(idx.sweep(cutoff).expect("sweep"), 2);
        assert_eq!(idx.count(a).expect("count"), 1);
        assert_eq!(idx.count(b).expect("count"), 1);
        let stats = idx
            .stats(a, T0 as u64, T0 as u64 + 4 * HOUR_MS, HOUR_MS)
            .expect("stats");
        assert_eq!(stats.iter().map(|b| b.counts.total).sum::<u64>(), 1);
        // Records arriving already older than the retention are not indexed.
        let late = idx.ingest(&[record(a, T0, 200)], cutoff).expect("ingest");
        assert_eq!(late.expired, 1);
        assert_eq!(idx.count(a).expect("count"), 1);
    }

    #[test]
    fn hourly_counts_are_exact_across_reopening_folding_and_redelivery() {
        let idx = index();
        let token = Ulid::new();
        let t0 = T0 as u64;
        let total = |idx: &RequestIndex| {
            idx.stats(token, t0, t0 + HOUR_MS, HOUR_MS).expect("stats")[0]
                .counts
                .total
        };
        let journal = |idx: &RequestIndex| {
            idx.tree
                .range(journal_key(0)..=journal_key(u64::MAX))
                .count()
        };
        let mut sent = Vec::new();
        for i in 0..3 {
            let r = record(token, T0 + i, 200);
            idx.ingest(std::slice::from_ref(&r), Timestamp::UNIX_EPOCH)
                .expect("ingest");
            sent.push(r);
        }
        assert_eq!(journal(&idx), 3, "journaled, not folded yet");
        // A restart reads the journal back.
        let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
        assert_eq!(total(&idx), 3);
        for i in 3..(3 + counts::FOLD_AFTER_ENTRIES as i64) {
            let r = record(token, T0 + i, 404);
            idx.ingest(std::slice::from_ref(&r), Timestamp::UNIX_EPOCH)
                .expect("ingest");
            sent.push(r);
        }
        assert!(journal(&idx) < counts::FOLD_AFTER_ENTRIES, "folded");
        assert_eq!(total(&idx), sent.len() as u64);
        // Every record again, as a redelivery: nothing is counted twice.
        let again = idx.ingest(&sent, Timestamp::UNIX_EPOCH).expect("again");
        assert_eq!(again.duplicates, sent.len());
        let idx = RequestIndex::open(&idx.db, idx.last_used.clone()).expect("reopen");
        assert_eq!(total(&idx), sent.len() as u64);
        assert_eq!(
            idx.stats(token, t0, t0 + HOUR_MS, HOUR_MS).expect("stats")[0]
                .counts
                .client_error,
            counts::FOLD_AFTER_ENTRIES as u64
        );
    }

    #[test]
    fn the_last_use_is_the_newest_record_and_survives_the_sweep() {
        let idx = index();
        let token = Ulid::new();
        let ms = |t: Option<Timestamp>| t.map(|t| t.as_millisecond());
        assert_eq!(idx.last_used(token).expect("last used"), None);
        idx.ingest(&[record(token, T0 + 5, 200)], Timestamp::UNIX_EPOCH)
            .expect("ingest");
        // Within the minute the tree is not rewritten; the records answer.
        idx.ingest(&[record(token, T0 + 30_000, 500)], Timestamp::UNIX_EPOCH)
            .expect("ingest");
        assert_eq!(
            ms(idx.last_used(token).expect("last used")),
            Some(T0 + 30_000)
        );
        let cutoff = Timestamp::from_millisecond(T0 + HOUR_MS as i64 * 2).expect("ts");
        assert_eq!(idx.sweep(cutoff).expect("sweep"), 2);
        assert_eq!(idx.count(token).expect("count"), 0);
        assert_eq!(
            ms(idx.last_used(token).expect("last used")),
            Some(T0 + 30_000)
        );
    }
}
