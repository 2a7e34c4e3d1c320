//! Request counts per token and hour, for the chart, kept without a write
//! per token per batch.
//!
//! An ingested batch adds its counts as one journal entry in the same atomic
//! sled batch as its records (key: the nil token, never a real one, ‖ a
//! sequence number), and in memory ([`Pending`]). Every so often the journal
//! is folded into the per-hour count keys and removed, again in one atomic
//! batch. A reader adds the pending deltas to the stored counts; on start
//! the journal is read back. So a record is counted exactly when it is
//! indexed, whatever crashes in between, and a batch over a thousand tokens
//! costs one extra key, not a thousand read-modify-writes.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::layout::{HOUR_KEY, HourKey};
use crate::IndexError;

/// Requests per category; `success` is 1xx–3xx.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub total: u64,
    pub success: u64,
    pub client_error: u64,
    pub server_error: u64,
}

impl Counts {
    pub(super) fn add_status(&mut self, status: u16) {
        self.total += 1;
        match status {
            100..=399 => self.success += 1,
            400..=499 => self.client_error += 1,
            500..=599 => self.server_error += 1,
            _ => {}
        }
    }

    pub(super) fn add(&mut self, other: Counts) {
        self.total += other.total;
        self.success += other.success;
        self.client_error += other.client_error;
        self.server_error += other.server_error;
    }

    pub(super) fn encode(self) -> [u8; COUNTS] {
        let mut out = [0u8; COUNTS];
        for (i, n) in [
            self.total,
            self.success,
            self.client_error,
            self.server_error,
        ]
        .into_iter()
        .enumerate()
        {
            out[i * 8..i * 8 + 8].copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    pub(super) fn decode(bytes: &[u8]) -> Result<Self, IndexError> {
        let n = |i: usize| -> Result<u64, IndexError> {
            let part: [u8; 8] = bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| IndexError::Corrupt("request counts".into()))?;
            Ok(u64::from_be_bytes(part))
        };
        if bytes.len() != COUNTS {
            return Err(IndexError::Corrupt("request counts".into()));
        }
        Ok(Counts {
            total: n(0)?,
            success: n(1)?,
            client_error: n(2)?,
            server_error: n(3)?,
        })
    }
}

const COUNTS: usize = 32;
const ENTRY: usize = HOUR_KEY + COUNTS;

/// Journal entries are folded once this many have accumulated...
pub(super) const FOLD_AFTER_ENTRIES: usize = 256;
/// ... or once the pending deltas cover this many token-hours.
pub(super) const FOLD_AFTER_HOURS: usize = 50_000;

/// The journal's key prefix: the nil token, which no token ever is.
pub(super) const JOURNAL_TOKEN: [u8; 16] = [0; 16];

pub(super) fn journal_key(seq: u64) -> [u8; 24] {
    let mut key = [0u8; 24];
    key[16..24].copy_from_slice(&seq.to_be_bytes());
    key
}

/// A batch's counts as a journal entry: fixed-size (hour key, counts) pairs.
pub(super) fn encode_entry(deltas: &HashMap<HourKey, Counts>) -> Vec<u8> {
    let mut out = Vec::with_capacity(deltas.len() * ENTRY);
    for (key, counts) in deltas {
        out.extend_from_slice(key);
        out.extend_from_slice(&counts.encode());
    }
    out
}

pub(super) fn decode_entry(bytes: &[u8]) -> Result<Vec<(HourKey, Counts)>, IndexError> {
    if !bytes.len().is_multiple_of(ENTRY) {
        return Err(IndexError::Corrupt("request counts journal".into()));
    }
    bytes
        .chunks_exact(ENTRY)
        .map(|chunk| {
            let (key, counts) = chunk.split_at(HOUR_KEY);
            let key: HourKey = key
                .try_into()
                .map_err(|_| IndexError::Corrupt("request counts journal".into()))?;
            Ok((key, Counts::decode(counts)?))
        })
        .collect()
}

/// The journal's entries not yet folded, and their sum per token-hour; the
/// same for the insight counters (`insights.rs`), whose entries share the
/// counts' sequence numbers and are folded with them.
#[derive(Default)]
pub(super) struct Pending {
    pub deltas: HashMap<HourKey, Counts>,
    pub entries: Vec<u64>,
    pub next_seq: u64,
    pub insights: super::insights::Deltas,
    pub insight_entries: Vec<u64>,
    /// Token-hours in `insights`.
    pub insight_hours: usize,
}

impl Pending {
    pub fn add(&mut self, seq: u64, deltas: impl IntoIterator<Item = (HourKey, Counts)>) {
        for (key, counts) in deltas {
            self.deltas.entry(key).or_default().add(counts);
        }
        self.entries.push(seq);
        self.next_seq = self.next_seq.max(seq + 1);
    }

    pub fn add_insights(&mut self, seq: u64, deltas: super::insights::Deltas) {
        for (token, hours) in &deltas {
            let known = self.insights.get(token);
            self.insight_hours += hours
                .keys()
                .filter(|h| known.is_none_or(|k| !k.contains_key(h)))
                .count();
        }
        super::insights::add_deltas(&mut self.insights, deltas);
        self.insight_entries.push(seq);
        self.next_seq = self.next_seq.max(seq + 1);
    }

    pub fn due(&self) -> bool {
        self.entries.len() >= FOLD_AFTER_ENTRIES
            || self.insight_entries.len() >= FOLD_AFTER_ENTRIES
            || self.deltas.len() >= FOLD_AFTER_HOURS
            || self.insight_hours >= FOLD_AFTER_HOURS
    }

    pub fn get(&self, key: &HourKey) -> Counts {
        self.deltas.get(key).copied().unwrap_or_default()
    }

    pub fn clear(&mut self) {
        self.deltas.clear();
        self.entries.clear();
        self.insights.clear();
        self.insight_entries.clear();
        self.insight_hours = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_entry_round_trips() {
        let mut deltas = HashMap::new();
        let counts = Counts {
            total: 3,
            success: 1,
            client_error: 1,
            server_error: 1,
        };
        deltas.insert([7u8; HOUR_KEY], counts);
        deltas.insert([9u8; HOUR_KEY], Counts::default());
        let mut back = decode_entry(&encode_entry(&deltas)).expect("decode");
        back.sort_by_key(|(key, _)| *key);
        assert_eq!(
            back,
            vec![
                ([7u8; HOUR_KEY], counts),
                ([9u8; HOUR_KEY], Counts::default())
            ]
        );
        assert!(decode_entry(&[1, 2, 3]).is_err());
    }
}
